#include "lowbit/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "lowbit/engine/error.h"
#include "lowbit/io/file_io.h"

namespace lowbit::io {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

using nlohmann::json;

// The reference implementation refuses larger headers too; real ones are a few MB at most.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

constexpr std::pair<std::string_view, DType> kDTypeNames[] = {
    {"F64", DType::f64}, {"F32", DType::f32},         {"BF16", DType::bf16},        {"F16", DType::f16},
    {"I64", DType::i64}, {"I32", DType::i32},         {"I8", DType::i8},            {"U8", DType::u8},
    {"F8_E4M3", DType::fp8_e4m3}, {"F8_E5M2", DType::fp8_e5m2},
};

std::string supported_names() {
  std::string s;
  for (const auto& [name, d] : kDTypeNames) s += (s.empty() ? "" : ", ") + std::string(name);
  return s;
}


// Parses the header, refusing duplicate keys at any depth (plain json::parse keeps the last).
json parse_header(const char* text, size_t n, const std::string& path) {
  std::vector<std::set<std::string>> open_objects;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (ev == json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        if (depth == 1) LOWBIT_FAIL("safetensors: ", path, ": duplicate tensor name '", key, "' in header");
        LOWBIT_FAIL("safetensors: ", path, ": duplicate JSON key '", key, "' in header");
      }
    }
    return true;
  };
  // The parser takes a NUL as the end of input, so "{}\0garbage" would pass: no valid JSON
  // text holds a raw NUL, so refuse it first.
  if (const void* nul = std::memchr(text, '\0', n))
    LOWBIT_FAIL("safetensors: ", path, ": malformed JSON header: NUL byte at header offset ",
                static_cast<const char*>(nul) - text);
  try {
    return json::parse(text, text + n, cb);
  } catch (const json::exception& e) {
    LOWBIT_FAIL("safetensors: ", path, ": malformed JSON header: ", e.what());
  }
}

// Non-negative JSON integer that fits int64, else an error naming `what`.
int64_t read_index(const json& v, const std::string& path, const std::string& name, const char* what) {
  LOWBIT_CHECK(v.is_number_integer(), "safetensors: ", path, ": tensor '", name, "': ", what,
               " must be an integer, got ", v.dump());
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    LOWBIT_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "safetensors: ", path,
                 ": tensor '", name, "': ", what, " ", u, " is too large");
    return static_cast<int64_t>(u);
  }
  const int64_t i = v.get<int64_t>();
  LOWBIT_CHECK(i >= 0, "safetensors: ", path, ": tensor '", name, "': negative ", what, " ", i);
  return i;
}

SafetensorsInfo parse_entry(const std::string& name, const json& e, int64_t data_size, const std::string& path) {
  const std::string where = "safetensors: " + path + ": tensor '" + name + "': ";
  LOWBIT_CHECK(e.is_object(), where, "entry must be a JSON object, got ", e.type_name());
  for (const char* key : {"dtype", "shape", "data_offsets"})
    LOWBIT_CHECK(e.contains(key), where, "missing '", key, "'");
  const json& dt = e.at("dtype");
  const json& shape = e.at("shape");
  const json& offs = e.at("data_offsets");
  LOWBIT_CHECK(dt.is_string(), where, "'dtype' must be a string, got ", dt.dump());
  LOWBIT_CHECK(shape.is_array(), where, "'shape' must be an array of integers, got ", shape.dump());
  LOWBIT_CHECK(offs.is_array() && offs.size() == 2, where, "'data_offsets' must be an array [begin, end], got ",
               offs.dump());

  SafetensorsInfo info;
  info.name = name;
  const auto dtype = dtype_from_safetensors_name(dt.get_ref<const std::string&>());
  LOWBIT_CHECK(dtype.has_value(), where, "unknown or unsupported dtype '", dt.get_ref<const std::string&>(),
               "' (supported: ", supported_names(), ")");
  info.dtype = *dtype;
  for (const json& d : shape) info.shape.push_back(read_index(d, path, name, "dimension"));
  info.begin = read_index(offs[0], path, name, "data offset");
  info.end = read_index(offs[1], path, name, "data offset");
  LOWBIT_CHECK(info.begin <= info.end, where, "data_offsets begin ", info.begin, " > end ", info.end);
  LOWBIT_CHECK(info.end <= data_size, where, "data_offsets [", info.begin, ", ", info.end,
               "] out of range of the ", data_size, "-byte data section");

  int64_t numel = 1;
  for (int64_t d : info.shape)
    LOWBIT_CHECK(!__builtin_mul_overflow(numel, d, &numel), where, "element count of shape ", shape_str(info.shape),
                 " overflows");
  int64_t nbytes = 0;
  LOWBIT_CHECK(!__builtin_mul_overflow(numel, traits(info.dtype).bits / 8, &nbytes), where, "byte size of shape ",
               shape_str(info.shape), " overflows");
  LOWBIT_CHECK(nbytes == info.end - info.begin, where, "data_offsets span ", info.end - info.begin,
               " bytes but shape ", shape_str(info.shape), " of ", dt.get_ref<const std::string&>(), " needs ", nbytes);
  return info;
}


}  // namespace

std::optional<DType> dtype_from_safetensors_name(std::string_view name) {
  for (const auto& [n, d] : kDTypeNames)
    if (n == name) return d;
  return std::nullopt;
}

std::optional<std::string_view> safetensors_name(DType dtype) {
  for (const auto& [n, d] : kDTypeNames)
    if (d == dtype) return n;
  return std::nullopt;
}

// ---- reading ----

struct SafetensorsReader::Mapping : MappedFile {
  using MappedFile::MappedFile;
};

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  // Private and writable: tensors viewing the mapping behave like ordinary tensors and a
  // write into one copies the page instead of reaching the file.
  map_ = std::make_shared<Mapping>(path, "safetensors", /*copy_on_write=*/true);
  const uint64_t file_size = map_->size();
  LOWBIT_CHECK(file_size >= 8, "safetensors: ", path, ": file is ", file_size,
               " bytes, shorter than the 8-byte header length");
  const uint8_t* bytes = map_->data();

  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);
  LOWBIT_CHECK(header_len <= kMaxHeaderBytes, "safetensors: ", path, ": header length ", header_len,
               " exceeds the ", kMaxHeaderBytes, "-byte limit");
  LOWBIT_CHECK(header_len <= file_size - 8, "safetensors: ", path, ": header length ", header_len,
               " exceeds the ", file_size - 8, " bytes after the length field");
  data_start_ = 8 + header_len;
  const auto data_size = static_cast<int64_t>(file_size - data_start_);

  const json header = parse_header(reinterpret_cast<const char*>(bytes + 8), header_len, path);
  LOWBIT_CHECK(header.is_object(), "safetensors: ", path, ": header must be a JSON object, got ",
               header.type_name());

  std::vector<SafetensorsInfo> infos;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      LOWBIT_CHECK(value.is_object(), "safetensors: ", path, ": __metadata__ must be an object of strings, got ",
                   value.type_name());
      for (const auto& [mk, mv] : value.items()) {
        LOWBIT_CHECK(mv.is_string(), "safetensors: ", path, ": __metadata__ value of '", mk,
                     "' must be a string, got ", mv.dump());
        metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    infos.push_back(parse_entry(key, value, data_size, path));
  }

  // The entries must tile the data section: sorted by range, each starts where the last ended.
  std::sort(infos.begin(), infos.end(), [](const SafetensorsInfo& a, const SafetensorsInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  int64_t covered = 0;
  const SafetensorsInfo* prev = nullptr;
  for (const SafetensorsInfo& info : infos) {
    LOWBIT_CHECK(info.begin >= covered, "safetensors: ", path, ": tensor '", info.name, "' bytes [", info.begin,
                 ", ", info.end, ") overlap tensor '", prev ? prev->name : "", "'");
    LOWBIT_CHECK(info.begin == covered, "safetensors: ", path, ": tensor '", info.name, "' starts at ", info.begin,
                 ", leaving a gap after byte ", covered, " of the data section");
    covered = info.end;
    prev = &info;
  }
  LOWBIT_CHECK(covered == data_size, "safetensors: ", path, ": tensors cover ", covered, " of the ", data_size,
               " bytes in the data section");

  for (SafetensorsInfo& info : infos) {
    names_.push_back(info.name);
    entries_.emplace(info.name, std::move(info));
  }
}

const SafetensorsInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = entries_.find(name);
  LOWBIT_CHECK(it != entries_.end(), "safetensors: ", path_, ": no tensor '", name, "'");
  return it->second;
}

Tensor SafetensorsReader::get(const std::string& name) const {
  const SafetensorsInfo& e = info(name);
  const auto nbytes = static_cast<size_t>(e.end - e.begin);
  if (nbytes == 0) return empty(e.shape, e.dtype);
  uint8_t* src = map_->mutable_data() + data_start_ + static_cast<size_t>(e.begin);
  const auto align = static_cast<uintptr_t>(traits(e.dtype).bits / 8);
  if (reinterpret_cast<uintptr_t>(src) % align != 0) {
    Tensor t = empty(e.shape, e.dtype);
    std::memcpy(t.raw_data(), src, nbytes);
    return t;
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(src, nbytes, kCPU, map_);
  impl->shape = e.shape;
  impl->strides = contiguous_strides(e.shape);
  impl->dtype = e.dtype;
  impl->device = kCPU;
  return Tensor(std::move(impl));
}

const uint8_t* SafetensorsReader::mapped_data() const { return map_->data(); }
size_t SafetensorsReader::mapped_size() const { return map_->size(); }

std::vector<std::pair<std::string, Tensor>> load_safetensors(const std::string& path) {
  const SafetensorsReader reader(path);
  std::vector<std::pair<std::string, Tensor>> out;
  out.reserve(reader.names().size());
  for (const std::string& name : reader.names()) out.emplace_back(name, reader.get(name));
  return out;
}

// ---- writing ----

uint32_t save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    const std::string where = "safetensors: " + path + ": tensor '" + name + "': ";
    LOWBIT_CHECK(name != "__metadata__", where, "name is reserved for the metadata");
    LOWBIT_CHECK(seen.insert(name).second, where, "duplicate name");
    LOWBIT_CHECK(t.defined(), where, "undefined tensor");
    LOWBIT_CHECK(!t.device().is_meta(), where, "meta tensor has no data to save");
    LOWBIT_CHECK(safetensors_name(t.dtype()).has_value(), where, "dtype ", t.dtype(), " has no safetensors name");
  }

  // Largest element first keeps every tensor aligned: the data section starts 8-aligned and
  // each byte size is a multiple of its own (power of two) element size.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return traits(tensors[a].second.dtype()).bits > traits(tensors[b].second.dtype()).bits;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  int64_t offset = 0;
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    const int64_t nbytes = dtype_nbytes(t.dtype(), t.numel());
    header[name] = {{"dtype", std::string(*safetensors_name(t.dtype()))},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    LOWBIT_FAIL("safetensors: ", path, ": cannot encode header (names and metadata must be UTF-8): ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  AtomicFile out(path, "safetensors");
  out.write(&header_len, 8);
  out.write(text);
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    if (t.numel() == 0) continue;
    Tensor c = t.device().is_cpu() ? t : t.to(kCPU);
    if (!c.is_contiguous()) c = c.contiguous();
    out.write(c.raw_data(), static_cast<size_t>(dtype_nbytes(c.dtype(), c.numel())));
  }
  return out.commit();
}

}  // namespace lowbit::io
