// Encoding arbitrary bytes with the committed Llama-3-style tokenizer: decode(encode(s)) == s
// must hold for every byte string (invalid UTF-8 included).
#include <cstdlib>

#include "fuzz_input.h"
#include "lowbit/io/tokenizer.h"

#ifndef LOWBIT_FUZZ_TOKENIZER
#error "LOWBIT_FUZZ_TOKENIZER must name a tokenizer.json"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lowbit::tok::Tokenizer t = lowbit::tok::Tokenizer::from_file(LOWBIT_FUZZ_TOKENIZER);
  const std::string s(reinterpret_cast<const char*>(data), size);
  if (s.find("<|") != std::string::npos) return 0;  // added tokens may strip spaces by design
  if (t.decode(t.encode(s)) != s) std::abort();
  return 0;
}
