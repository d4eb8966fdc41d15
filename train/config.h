// The train_llama configuration: one schema in code (every key with its type, default, range
// and meaning) from which parsing, validation, --print-config and docs/config.md all come.
// A config file is a JSON object of sections; command-line overrides are "section.key=value".
// Unknown keys, wrong types and out-of-range values are one-line errors naming the key path
// (and, for an unknown key, the closest valid one).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lowbit::train {

enum class KeyType { integer, number, boolean, string, string_list };

struct KeyDef {
  std::string path;  // "section.key"
  KeyType type;
  nlohmann::json default_value;
  std::string help;
  double min = -1e300, max = 1e300;  // numeric range (inclusive)
  std::vector<std::string> choices;  // allowed strings (empty = any)
};

const std::vector<KeyDef>& schema();
std::string type_name(KeyType t);

// Resolves a config: defaults, then the file's values, then the overrides in order. Returns
// the full config (every key present). `source` names the file in errors.
nlohmann::json resolve_config(const nlohmann::json& file, const std::vector<std::string>& overrides,
                              const std::string& source = "config");
nlohmann::json load_config(const std::string& path, const std::vector<std::string>& overrides);

// The markdown table of docs/config.md (one row per key, schema order).
std::string config_markdown_table();

// Typed access to a resolved config.
struct Config {
  nlohmann::json j;
  int64_t i(const std::string& path) const;
  double f(const std::string& path) const;
  bool b(const std::string& path) const;
  std::string s(const std::string& path) const;
  std::vector<std::string> list(const std::string& path) const;
};

}  // namespace lowbit::train
