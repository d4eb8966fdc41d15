// GGUF v3, the model file of ggml / llama.cpp: export of a CausalLM (with its byte-level BPE
// tokenizer) that llama.cpp loads as architecture llama, qwen2 or qwen3, and a strict reader.
//
// File layout (little-endian): magic "GGUF", u32 version 3, u64 tensor count, u64 key-value
// count; the key-value pairs (string key, u32 value type, value); one info per tensor (name,
// u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset into the data section);
// zero padding to general.alignment (32 when absent); the data section, each tensor starting at
// a multiple of the alignment. Strings are a u64 byte count and the bytes; arrays are a u32
// element type, a u64 count and the elements.
//
// Export follows llama.cpp's convert_hf_to_gguf.py: HF names map to token_embd /
// blk.N.attn_q ... / output, llama's q and k rows are permuted from HF's rotate-half RoPE layout
// to ggml's interleaved one, 1-D tensors stay F32, and Q8_0 / Q4_0 payloads come from our
// gguf_q8_0 / gguf_q4_0 codecs (ggml's reference quantizers bit for bit). docs/gguf.md has the
// rules, the golden files and the llama.cpp check.
//
// The reader treats the file as hostile: every count, size and offset is checked against the
// file size before use and each violation is one lowbit::Error line naming the file.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "lowbit/engine/tensor.h"
#include "lowbit/models/llama.h"

namespace lowbit::io {

class MappedFile;

// Metadata value types (GGUF's gguf_type numbering).
enum class GgufType : uint32_t { u8 = 0, i8, u16, i16, u32, i32, f32, boolean, string, array, u64, i64, f64 };
std::string gguf_type_name(GgufType t);

// Tensor types (ggml_type numbering). The reader accepts every type ggml defines (for sizes);
// these five are the ones written and dequantized here.
enum class GgmlType : uint32_t { f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8, bf16 = 30 };
std::string ggml_type_name(GgmlType t);  // "F32", "Q4_0", ... ("type N" when not a ggml type)

struct GgufValue;
struct GgufArray {
  GgufType type = GgufType::u8;  // element type
  std::vector<GgufValue> items;
  bool operator==(const GgufArray& o) const;  // defined below, once GgufValue is complete
};

// One metadata value, exactly typed. Unsigned types hold uint64_t, signed int64_t, f32/f64 double
// (an f32 exactly), bool, string (raw bytes), array.
struct GgufValue {
  GgufType type = GgufType::u32;
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> value;

  static GgufValue u32(uint32_t v) { return {GgufType::u32, uint64_t{v}}; }
  static GgufValue f32(float v) { return {GgufType::f32, double{v}}; }
  static GgufValue boolean(bool v) { return {GgufType::boolean, v}; }
  static GgufValue string(std::string v) { return {GgufType::string, std::move(v)}; }
  static GgufValue strings(const std::vector<std::string>& v);
  static GgufValue i32s(const std::vector<int32_t>& v);
  static GgufValue f32s(const std::vector<float>& v);

  // Typed access; a mismatch throws naming the expected and actual type. as_uint accepts any
  // integer type holding a non-negative value, as_float f32/f64.
  uint64_t as_uint() const;
  int64_t as_int() const;
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;
  const GgufArray& as_array() const;
  bool operator==(const GgufValue&) const = default;
};
inline bool GgufArray::operator==(const GgufArray& o) const { return type == o.type && items == o.items; }

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the row length
  GgmlType type = GgmlType::f32;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t nbytes = 0;
  Shape shape() const;  // row-major (ne reversed): an HF (out, in) weight has ne = {in, out}
};

// A parsed GGUF file; the tensor bytes stay in a read-only mapping of the file.
class GgufFile {
 public:
  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
  // Key-value pairs in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;  // null when absent
  const GgufValue& get(const std::string& key) const;   // throws naming the file and key
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo& tensor(const std::string& name) const;  // throws naming the file
  std::span<const uint8_t> tensor_data(const GgufTensorInfo& t) const;

 private:
  friend GgufFile read_gguf(const std::string& path);
  std::string path_;
  std::shared_ptr<const MappedFile> map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

GgufFile read_gguf(const std::string& path);

// The tensor as f32 in row-major shape: F32 copied, F16 / BF16 widened, Q8_0 / Q4_0 decoded by
// our gguf codecs' dequantize. Other types throw naming the tensor and type.
Tensor gguf_tensor_to_f32(const GgufFile& file, const std::string& name);

// Writes a GGUF v3 file atomically: metadata in the given order (general.alignment, when given,
// sets the data alignment, else 32), tensors in the given order, each padded to the alignment.
struct GgufTensorBytes {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  GgmlType type = GgmlType::f32;
  std::vector<uint8_t> bytes;
};
void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufTensorBytes>& tensors);

// llama.cpp's q/k row permutation for architecture llama: within each of n_head groups of
// head_dim rows, HF's rotate-half order (first half, second half) becomes interleaved pairs
// (row i of the first half, row i of the second half). w: (n_head * head_dim, ...) -> same.
Tensor gguf_permute_qk(const Tensor& w, int64_t n_head);
Tensor gguf_unpermute_qk(const Tensor& w, int64_t n_head);  // the inverse

struct GgufSaveOptions {
  GgmlType type = GgmlType::f16;  // f32, f16, bf16, q8_0 or q4_0 (the 2-D tensors' type)
  std::string tokenizer = {};     // tokenizer.json, or a directory holding one (required)
  std::string name = {};          // general.name; empty = the output file's stem
  // More metadata, written after general.* (e.g. lowbit.quant.*: the spec a QAT model was
  // trained for). Keys must not repeat the writer's own.
  std::vector<std::pair<std::string, GgufValue>> extra = {};
};

// Writes `model` (llama, qwen2 or qwen3) with its tokenizer as a GGUF file llama.cpp loads.
// Type rules: 1-D tensors (norms, biases, rope_freqs) stay F32; with Q8_0 / Q4_0 a 2-D tensor
// whose row length is not a multiple of 32 stays F32. Throws naming the path and the reason
// for a model or tokenizer it cannot express (e.g. a pre-tokenizer llama.cpp does not have).
void save_gguf(const models::CausalLM& model, const std::string& path, const GgufSaveOptions& opts);

// "f32", "f16", "bf16", "q8_0", "q4_0" (case-insensitive) -> type, for command lines.
GgmlType parse_gguf_save_type(const std::string& name);

}  // namespace lowbit::io
