// config.json parser (both transformers layouts) and its writer on whatever it accepts.
#include "fuzz_input.h"
#include "lowbit/models/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lowbit::fuzz::expect_clean([&] {
    const lowbit::models::ModelConfig c = lowbit::models::parse_model_config(text, "fuzz.json");
    // What we accept must survive our own writer and parser unchanged.
    if (lowbit::models::parse_model_config(lowbit::models::model_config_to_json(c, c.torch_dtype)) != c) std::abort();
  });
  return 0;
}
