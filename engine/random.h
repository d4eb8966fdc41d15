// Seeded random numbers that are identical across runs and thread counts: element i of a
// draw uses Philox4x32-10 with key = seed and counter = (offset + i), so the value depends on
// (seed, offset, i) only. Each draw advances the generator's offset by the element count.
#pragma once
#include <array>
#include <cstdint>
#include <mutex>

#include "lowbit/engine/tensor.h"

namespace lowbit {

// Philox4x32-10 block function (Salmon et al., SC'11): 4 x u32 out per (counter, key).
std::array<uint32_t, 4> philox4x32(uint64_t counter, uint64_t key);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5EED) : seed_(seed) {}
  void manual_seed(uint64_t seed);
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // Reserves n counters; returns the first.
  uint64_t advance(uint64_t n);

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
  std::mutex mu_;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

// shape -> uniform [low, high)
Tensor rand(const Shape& shape, double low = 0.0, double high = 1.0, DType dtype = DType::f32,
            Generator* gen = nullptr);
// shape -> normal(mean, std) via Box-Muller
Tensor randn(const Shape& shape, double mean = 0.0, double std = 1.0, DType dtype = DType::f32,
             Generator* gen = nullptr);
// shape -> normal(mean, std) truncated to [a, b] (absolute bounds, as torch.nn.init.trunc_normal_),
// by inverse-CDF sampling: no rejection loop, so still one counter per element.
Tensor trunc_normal(const Shape& shape, double mean = 0.0, double std = 1.0, double a = -2.0, double b = 2.0,
                    DType dtype = DType::f32, Generator* gen = nullptr);
// shape -> integers uniform in [low, high)
Tensor randint(const Shape& shape, int64_t low, int64_t high, DType dtype = DType::i64, Generator* gen = nullptr);

}  // namespace lowbit
