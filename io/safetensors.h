// safetensors checkpoints (the format Hugging Face models ship in): an 8-byte little-endian
// header length, a JSON header giving each tensor's dtype, shape and [begin, end) byte range
// in the data section (plus an optional "__metadata__" object of strings), then the data.
//
// Reading maps the file privately (copy-on-write): a tensor whose bytes are aligned for its
// dtype is a zero-copy view whose storage keeps the mapping alive, so writing into it never
// touches the file; a misaligned tensor is copied. The header is treated as hostile: every
// inconsistency is a one-line lowbit::Error naming the file and, where there is one, the
// tensor. Writing goes to a temporary file in the same directory that is fsynced and renamed
// over the target, so a crash never leaves a half-written checkpoint.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit::io {

// One header entry. begin/end are byte offsets into the data section (after the header).
struct SafetensorsInfo {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  int64_t begin = 0;
  int64_t end = 0;
};

// "F32" <-> DType::f32 for F64, F32, BF16, F16, F8_E4M3, F8_E5M2, I8, U8, I32, I64. Names
// without a lowbit dtype (BOOL, U16, ...) give nullopt; fp4_e2m1 has no safetensors name.
std::optional<DType> dtype_from_safetensors_name(std::string_view name);
std::optional<std::string_view> safetensors_name(DType dtype);

class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);

  const std::string& path() const { return path_; }
  // Tensor names in file order (by data offset).
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  // dtype, shape and byte range without touching the data.
  const SafetensorsInfo& info(const std::string& name) const;
  // A CPU tensor: a view of the mapping when aligned (two get()s of one name then share
  // bytes), else a copy.
  Tensor get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The mapped file bytes, e.g. to tell whether a tensor is zero-copy.
  const uint8_t* mapped_data() const;
  size_t mapped_size() const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  size_t data_start_ = 0;  // file offset of the data section
  std::vector<std::string> names_;
  std::map<std::string, SafetensorsInfo> entries_;
  std::map<std::string, std::string> metadata_;
};

// Every tensor of a file, in file order.
std::vector<std::pair<std::string, Tensor>> load_safetensors(const std::string& path);

// Writes tensors (any device, any strides) and metadata atomically. The header is padded with
// spaces to a multiple of 8 bytes and tensors are laid out largest element size first (input
// order otherwise), so every tensor lands aligned and reads back zero-copy. Returns the
// CRC-32C of the file's bytes.
uint32_t save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                          const std::map<std::string, std::string>& metadata = {});

}  // namespace lowbit::io
