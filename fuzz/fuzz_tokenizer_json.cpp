// tokenizer.json parser; an accepted tokenizer must also encode and decode a fixed text.
#include "fuzz_input.h"
#include "lowbit/io/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  lowbit::fuzz::expect_clean([&] {
    const lowbit::tok::Tokenizer t = lowbit::tok::Tokenizer::from_json(text, "fuzz.json");
    const std::vector<int32_t> ids = t.encode("Hello, world! 1234 \xff\xfe caf\xc3\xa9");
    (void)t.decode(ids);
  });
  return 0;
}
