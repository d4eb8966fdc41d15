// Durable file writing and whole-file reading shared by every writer in io/: an AtomicFile
// writes to a temporary file in the target's directory, fsyncs it and renames it over the
// target on commit(), so readers see either the old file or the complete new one, never a
// torn write; an uncommitted AtomicFile deletes its temporary file. Every byte written is
// also fed to a CRC-32C, so writers get the file checksum for free.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lowbit::io {

class AtomicFile {
 public:
  // what: the component named in error messages ("safetensors", "checkpoint", ...).
  AtomicFile(std::string path, std::string what);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  // fsync, close, rename over the target, fsync the directory. Returns the file's CRC-32C.
  uint32_t commit();
  uint32_t crc() const { return crc_; }

 private:
  std::string path_, what_, tmp_;
  int fd_ = -1;
  uint32_t crc_ = 0;
  bool committed_ = false;
};

// A whole file mapped into memory (read-only, or private copy-on-write so views of it can be
// written without reaching the file). An empty file maps to a null pointer and size 0.
class MappedFile {
 public:
  MappedFile(const std::string& path, const std::string& what, bool copy_on_write = false);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(addr_); }
  uint8_t* mutable_data() const { return static_cast<uint8_t*>(addr_); }  // copy_on_write only
  size_t size() const { return size_; }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

// Writes a whole file atomically; returns its CRC-32C.
uint32_t write_file_atomic(const std::string& path, const std::string& contents, const std::string& what);
// Reads a whole file; throws "<what>: <path>: cannot open/read ..." on failure.
std::string read_file(const std::string& path, const std::string& what);
// fsync a directory so renames and creations inside it are durable.
void fsync_dir(const std::string& dir);
// The directory part of a path ("." when there is none).
std::string parent_dir(const std::string& path);

}  // namespace lowbit::io
