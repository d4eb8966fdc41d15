// safetensors reader: header parsing, validation, and reading every tensor it accepts.
#include "fuzz_input.h"
#include "lowbit/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = lowbit::fuzz::write_input(data, size, ".safetensors");
  lowbit::fuzz::expect_clean([&] {
    const lowbit::io::SafetensorsReader r(path);
    for (const std::string& n : r.names()) {
      const lowbit::Tensor t = r.get(n);
      if (t.numel() > 0 && lowbit::is_float(t.dtype())) (void)t.to(lowbit::DType::f32).to_vector<float>();
    }
  });
  return 0;
}
