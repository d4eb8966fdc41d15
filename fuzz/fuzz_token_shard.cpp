// Token shard header and file validation, and reading every token of an accepted shard.
#include "fuzz_input.h"
#include "lowbit/io/token_data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lowbit::fuzz::expect_clean([&] { lowbit::io::parse_token_shard_header(data, size, "fuzz.bin"); });
  const std::string& path = lowbit::fuzz::write_input(data, size, ".bin");
  lowbit::fuzz::expect_clean([&] {
    const lowbit::io::TokenShard s(path);
    uint64_t acc = 0;
    for (uint32_t t : s.tokens(0, s.size())) acc += t;
    if (s.size() > 0 && acc == ~uint64_t{0}) std::abort();
  });
  return 0;
}
