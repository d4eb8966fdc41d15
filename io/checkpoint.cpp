#include "lowbit/io/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "lowbit/io/crc32c.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/safetensors.h"

namespace lowbit::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "lowbit-checkpoint";
constexpr int kVersion = 1;
constexpr const char* kMarker = "COMPLETE";
constexpr const char* kManifest = "manifest.json";

template <class... Args>
[[noreturn]] void corrupt(const Args&... args) {
  std::ostringstream os;
  os << "checkpoint ";
  (os << ... << args);
  throw CorruptCheckpoint(os.str());
}

std::string marker_text(uint32_t manifest_crc) { return std::string(kManifest) + " crc32c " + crc_hex(manifest_crc) + "\n"; }

uint32_t tensor_crc(const Tensor& t) {
  const Tensor c = t.device().is_cpu() ? t.contiguous() : t.to(kCPU).contiguous();
  return crc32c(c.raw_data(), static_cast<size_t>(dtype_nbytes(c.dtype(), c.numel())));
}

// "step_" followed by 8 to 18 digits.
std::optional<int64_t> step_of(const std::string& dirname) {
  constexpr std::string_view prefix = "step_";
  if (dirname.rfind(prefix, 0) != 0) return std::nullopt;
  const std::string digits = dirname.substr(prefix.size());
  if (digits.size() < 8 || digits.size() > 18) return std::nullopt;
  for (char c : digits)
    if (c < '0' || c > '9') return std::nullopt;
  return std::stoll(digits);
}

bool is_component_name(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return false;
  return true;
}

}  // namespace

CheckpointManager::CheckpointManager(std::string root, CheckpointOptions opts) : root_(std::move(root)), opts_(opts) {
  LOWBIT_CHECK(!root_.empty(), "checkpoint: empty root directory");
  LOWBIT_CHECK(opts_.keep_last >= 1, "checkpoint: keep_last must be >= 1, got ", opts_.keep_last);
  warn_ = [](const std::string& m) { std::cerr << "warning: " << m << "\n"; };
}

void CheckpointManager::register_component(const std::string& name, SaveFn save, LoadFn load) {
  LOWBIT_CHECK(is_component_name(name), "checkpoint: component name '", name, "' must match [A-Za-z0-9_-]+");
  for (const auto& c : components_) LOWBIT_CHECK(c.name != name, "checkpoint: component '", name, "' registered twice");
  components_.push_back({name, std::move(save), std::move(load)});
}

std::string CheckpointManager::dir_for(int64_t step) const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return root_ + "/" + buf;
}

std::string CheckpointManager::save(int64_t step) {
  LOWBIT_CHECK(step >= 0, "checkpoint: step must be >= 0, got ", step);
  LOWBIT_CHECK(!components_.empty(), "checkpoint: nothing registered to save");
  std::error_code ec;
  fs::create_directories(root_, ec);
  LOWBIT_CHECK(!ec, "checkpoint: cannot create ", root_, ": ", ec.message());
  const std::string final_dir = dir_for(step), tmp = final_dir + ".tmp";
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  LOWBIT_CHECK(!ec, "checkpoint: cannot create ", tmp, ": ", ec.message());

  json files = json::object();
  json names = json::array();
  auto record = [&](const std::string& file, uint32_t crc) {
    files[file] = {{"bytes", fs::file_size(tmp + "/" + file)}, {"crc32c", crc_hex(crc)}};
  };
  for (const Component& c : components_) {
    const ComponentState st = c.save();
    json doc;
    try {
      doc = json::parse(st.json);
    } catch (const json::exception& e) {
      LOWBIT_FAIL("checkpoint: component '", c.name, "' produced invalid JSON: ", e.what());
    }
    LOWBIT_CHECK(doc.is_object(), "checkpoint: component '", c.name, "' must produce a JSON object");
    const std::string jf = c.name + ".json";
    record(jf, write_file_atomic(tmp + "/" + jf, doc.dump(1) + "\n", "checkpoint"));
    if (!st.tensors.empty()) {
      std::map<std::string, std::string> meta;
      for (const auto& [n, t] : st.tensors) meta["crc32c:" + n] = crc_hex(tensor_crc(t));
      const std::string sf = c.name + ".safetensors";
      record(sf, save_safetensors(tmp + "/" + sf, st.tensors, meta));
    }
    names.push_back(c.name);
  }
  const json manifest = {{"format", kFormat}, {"version", kVersion}, {"step", step}, {"components", names},
                         {"files", files}};
  const uint32_t mcrc = write_file_atomic(tmp + "/" + kManifest, manifest.dump(1) + "\n", "checkpoint");
  write_file_atomic(tmp + "/" + kMarker, marker_text(mcrc), "checkpoint");
  fsync_dir(tmp);

  if (fs::exists(final_dir)) {
    const std::string old = final_dir + ".old";
    fs::remove_all(old, ec);
    fs::rename(final_dir, old, ec);
    LOWBIT_CHECK(!ec, "checkpoint: cannot move aside ", final_dir, ": ", ec.message());
    fs::rename(tmp, final_dir, ec);
    LOWBIT_CHECK(!ec, "checkpoint: cannot rename ", tmp, " to ", final_dir, ": ", ec.message());
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp, final_dir, ec);
    LOWBIT_CHECK(!ec, "checkpoint: cannot rename ", tmp, " to ", final_dir, ": ", ec.message());
  }
  fsync_dir(root_);
  prune();
  return final_dir;
}

std::vector<int64_t> CheckpointManager::complete_steps() const {
  std::vector<int64_t> steps;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return steps;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    if (!e.is_directory()) continue;
    const auto s = step_of(e.path().filename().string());
    if (s && fs::exists(e.path() / kMarker)) steps.push_back(*s);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

void CheckpointManager::prune() {
  const std::vector<int64_t> steps = complete_steps();
  std::error_code ec;
  for (size_t i = 0; i + static_cast<size_t>(opts_.keep_last) < steps.size(); ++i) fs::remove_all(dir_for(steps[i]), ec);
  // Leftovers of interrupted saves.
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && (n.ends_with(".tmp") || n.ends_with(".old")))
      fs::remove_all(e.path(), ec);
  }
}

std::vector<ComponentState> CheckpointManager::read_verified(const std::string& dir, int64_t* step_out,
                                                             bool registered_subset) const {
  const std::string marker_path = dir + "/" + kMarker;
  if (!fs::exists(marker_path)) corrupt(dir, ": no ", kMarker, " marker (incomplete save)");
  const std::string marker = read_file(marker_path, "checkpoint");
  const std::string manifest_path = dir + "/" + kManifest;
  if (!fs::exists(manifest_path)) corrupt(dir, ": ", kManifest, " is missing");
  const std::string mtext = read_file(manifest_path, "checkpoint");
  if (marker != marker_text(crc32c(mtext.data(), mtext.size())))
    corrupt(manifest_path, ": checksum does not match the ", kMarker, " marker (manifest or marker corrupted)");
  json m;
  try {
    m = json::parse(mtext);
  } catch (const json::exception& e) {
    corrupt(manifest_path, ": invalid JSON: ", e.what());
  }
  if (!m.is_object() || m.value("format", "") != kFormat || !m.contains("version") || !m["version"].is_number_integer())
    corrupt(manifest_path, ": not a ", kFormat, " manifest");
  if (m["version"].get<int>() != kVersion)
    corrupt(manifest_path, ": version ", m["version"].get<int>(), " (this build reads ", kVersion, ")");
  if (!m.contains("step") || !m["step"].is_number_integer() || !m.contains("components") ||
      !m["components"].is_array() || !m.contains("files") || !m["files"].is_object())
    corrupt(manifest_path, ": missing or mistyped step/components/files");
  *step_out = m["step"].get<int64_t>();

  // Every listed file: present, same size, same checksum.
  for (const auto& [file, info] : m["files"].items()) {
    const std::string path = dir + "/" + file;
    if (file.find('/') != std::string::npos || !info.is_object() || !info.contains("bytes") || !info.contains("crc32c"))
      corrupt(manifest_path, ": bad entry for file '", file, "'");
    if (!fs::exists(path)) corrupt(path, ": missing");
    const MappedFile f(path, "checkpoint");
    if (f.size() != info["bytes"].get<uint64_t>())
      corrupt(path, ": ", f.size(), " bytes, manifest says ", info["bytes"].get<uint64_t>(), " (truncated?)");
    if (crc_hex(crc32c(f.data(), f.size())) != info["crc32c"].get<std::string>())
      corrupt(path, ": checksum mismatch (corrupted data)");
  }

  std::vector<std::string> names;
  for (const auto& n : m["components"]) {
    if (!n.is_string()) corrupt(manifest_path, ": component names must be strings");
    names.push_back(n.get<std::string>());
  }
  std::vector<std::string> want;
  for (const auto& c : components_) want.push_back(c.name);
  if (registered_subset) {
    for (const std::string& w : want)
      LOWBIT_CHECK(std::find(names.begin(), names.end(), w) != names.end(), "checkpoint ", dir,
                   ": has no component '", w, "' (it holds ", m["components"].dump(), ")");
    names = want;
  } else {
    LOWBIT_CHECK(names == want, "checkpoint ", dir, ": holds components [", m["components"].dump(),
                 "] but this run registers a different set (", want.size(), " components); resume with the same setup");
  }

  std::vector<ComponentState> states;
  for (const std::string& name : names) {
    ComponentState st;
    const std::string jf = name + ".json", sf = name + ".safetensors";
    if (!m["files"].contains(jf)) corrupt(manifest_path, ": component '", name, "' has no ", jf);
    st.json = read_file(dir + "/" + jf, "checkpoint");
    if (m["files"].contains(sf)) {
      try {
        const SafetensorsReader r(dir + "/" + sf);
        for (const std::string& n : r.names()) {
          const Tensor t = r.get(n);
          const auto it = r.metadata().find("crc32c:" + n);
          if (it == r.metadata().end()) corrupt(dir, "/", sf, ": tensor '", n, "' has no checksum");
          if (it->second != crc_hex(tensor_crc(t))) corrupt(dir, "/", sf, ": tensor '", n, "' checksum mismatch");
          st.tensors.emplace_back(n, t);
        }
      } catch (const CorruptCheckpoint&) {
        throw;
      } catch (const Error& e) {
        corrupt(dir, "/", sf, ": ", e.what());
      }
    }
    states.push_back(std::move(st));
  }
  return states;
}

int64_t CheckpointManager::verify(const std::string& dir) const {
  int64_t step = -1;
  read_verified(dir, &step, true);
  return step;
}

void CheckpointManager::load(const std::string& dir) {
  int64_t step = -1;
  const std::vector<ComponentState> states = read_verified(dir, &step, false);
  for (size_t i = 0; i < components_.size(); ++i) components_[i].load(states[i]);
}

int64_t CheckpointManager::load_registered(const std::string& dir) {
  int64_t step = -1;
  const std::vector<ComponentState> states = read_verified(dir, &step, true);
  for (size_t i = 0; i < components_.size(); ++i) components_[i].load(states[i]);
  return step;
}

std::optional<int64_t> CheckpointManager::resume() {
  const std::vector<int64_t> steps = complete_steps();
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const std::string dir = dir_for(*it);
    try {
      load(dir);
      return *it;
    } catch (const CorruptCheckpoint& e) {
      warn_(std::string("skipping checkpoint: ") + e.what());
    }
  }
  return std::nullopt;
}

}  // namespace lowbit::io
