// Strict parsing of a JSON document from an untrusted file: any parser exception (syntax,
// number overflow, ...) and any NUL byte (nlohmann's parser stops at one, so "{}\0garbage"
// would pass) become one lowbit::Error line naming `source`.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "lowbit/engine/error.h"

namespace lowbit {

template <class Json = nlohmann::json>
Json parse_json_text(std::string_view text, const std::string& source) {
  const size_t nul = text.find('\0');
  LOWBIT_CHECK(nul == std::string_view::npos, source, ": invalid JSON: NUL byte at offset ", nul);
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    LOWBIT_FAIL(source, ": invalid JSON: ", e.what());
  }
}

}  // namespace lowbit
