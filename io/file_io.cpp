#include "lowbit/io/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "lowbit/engine/error.h"
#include "lowbit/io/crc32c.h"

namespace lowbit::io {

namespace {
std::string errno_str() { return std::strerror(errno); }
}  // namespace

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

AtomicFile::AtomicFile(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)) {
  const size_t slash = path_.find_last_of('/');
  const std::string base = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  LOWBIT_CHECK(!base.empty(), what_, ": ", path_, ": not a file path");
  tmp_ = (slash == std::string::npos ? std::string() : path_.substr(0, slash + 1)) + "." + base + ".tmp.XXXXXX";
  fd_ = ::mkostemp(tmp_.data(), O_CLOEXEC);
  LOWBIT_CHECK(fd_ >= 0, what_, ": ", path_, ": cannot create a temporary file in ", parent_dir(path_), ": ",
               errno_str());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  LOWBIT_CHECK(fd_ >= 0, what_, ": ", path_, ": write after commit");
  crc_ = crc32c(data, n, crc_);
  const char* c = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, c, n);
    if (w < 0 && errno == EINTR) continue;
    LOWBIT_CHECK(w > 0, what_, ": ", tmp_, ": write failed: ", errno_str());
    c += w;
    n -= static_cast<size_t>(w);
  }
}

uint32_t AtomicFile::commit() {
  LOWBIT_CHECK(fd_ >= 0, what_, ": ", path_, ": committed twice");
  LOWBIT_CHECK(::fchmod(fd_, 0644) == 0, what_, ": ", tmp_, ": chmod failed: ", errno_str());
  LOWBIT_CHECK(::fsync(fd_) == 0, what_, ": ", tmp_, ": fsync failed: ", errno_str());
  const int f = fd_;
  fd_ = -1;
  LOWBIT_CHECK(::close(f) == 0, what_, ": ", tmp_, ": close failed: ", errno_str());
  LOWBIT_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, what_, ": cannot rename ", tmp_, " to ", path_, ": ",
               errno_str());
  committed_ = true;
  fsync_dir(parent_dir(path_));
  return crc_;
}

MappedFile::MappedFile(const std::string& path, const std::string& what, bool copy_on_write) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LOWBIT_CHECK(fd >= 0, what, ": cannot open ", path, ": ", errno_str());
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  const int err = errno;
  if (!stat_ok || !S_ISREG(st.st_mode)) {
    ::close(fd);
    LOWBIT_CHECK(stat_ok, what, ": cannot stat ", path, ": ", std::strerror(err));
    LOWBIT_FAIL(what, ": ", path, ": not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    const int prot = copy_on_write ? PROT_READ | PROT_WRITE : PROT_READ;
    void* a = ::mmap(nullptr, size_, prot, MAP_PRIVATE, fd, 0);
    const int merr = errno;
    ::close(fd);
    LOWBIT_CHECK(a != MAP_FAILED, what, ": cannot map ", path, ": ", std::strerror(merr));
    addr_ = a;
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  if (addr_) ::munmap(addr_, size_);
}

uint32_t write_file_atomic(const std::string& path, const std::string& contents, const std::string& what) {
  AtomicFile f(path, what);
  f.write(contents);
  return f.commit();
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  LOWBIT_CHECK(f.good(), what, ": ", path, ": cannot open: ", errno_str());
  std::ostringstream ss;
  ss << f.rdbuf();
  LOWBIT_CHECK(!f.bad(), what, ": ", path, ": read failed");
  return ss.str();
}

}  // namespace lowbit::io
