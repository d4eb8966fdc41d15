#include "lowbit/engine/random.h"

#include <algorithm>
#include <cmath>

namespace lowbit {

std::array<uint32_t, 4> philox4x32(uint64_t counter, uint64_t key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c0, p1 = static_cast<uint64_t>(kM1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0, n1 = static_cast<uint32_t>(p1);
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1, n3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
}

void Generator::manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(mu_);
  seed_ = seed;
  offset_ = 0;
}

uint64_t Generator::advance(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t start = offset_;
  offset_ += n;
  return start;
}

Generator& default_generator() {
  static Generator gen;
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {

// 53-bit uniform in [0, 1) from two words.
double unit_double(uint32_t hi, uint32_t lo) {
  return static_cast<double>(((static_cast<uint64_t>(hi) << 32) | lo) >> 11) * 0x1.0p-53;
}

double erfinv(double y) {
  // Giles (2010) single-precision approximation, refined by two Newton steps on erf.
  double w = -std::log((1.0 - y) * (1.0 + y)), x;
  if (w < 5.0) {
    w -= 2.5;
    double p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w;
    p = -3.5233877e-06 + p * w;
    p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
    x = p * y;
  } else {
    w = std::sqrt(w) - 3.0;
    double p = -0.000200214257;
    p = 0.000100950558 + p * w;
    p = 0.00134934322 + p * w;
    p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;
    p = -0.0076224613 + p * w;
    p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;
    p = 2.83297682 + p * w;
    x = p * y;
  }
  for (int i = 0; i < 2; ++i) x -= (std::erf(x) - y) / (1.1283791670955126 * std::exp(-x * x));
  return x;
}

// Fills a new tensor with sample(words of element i) converted to dtype.
template <class Sample>
Tensor draw(const Shape& shape, DType dtype, Generator* gen, Sample sample) {
  Generator& g = gen ? *gen : default_generator();
  Tensor out = empty(shape, dtype, kCPU);
  const int64_t n = out.numel();
  const uint64_t start = g.advance(static_cast<uint64_t>(n));
  const uint64_t key = g.seed();
  Tensor tmp = dtype == DType::f64 ? out : empty(shape, DType::f64, kCPU);
  double* p = tmp.data<double>();
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) p[i] = sample(philox4x32(start + static_cast<uint64_t>(i), key));
  if (!tmp.same(out)) copy_(out, tmp);
  return out;
}

}  // namespace

Tensor rand(const Shape& shape, double low, double high, DType dtype, Generator* gen) {
  LOWBIT_CHECK(is_float(dtype), "rand: dtype must be float, got ", dtype);
  LOWBIT_CHECK(low < high, "rand: need low < high, got [", low, ", ", high, ")");
  // Draw only as many bits as the dtype's significand holds, so rounding can never reach `high`
  // when it is representable (the same rule as torch's uniform_).
  int bits = 53;
  if (dtype == DType::f32) bits = 24;
  if (dtype == DType::f16) bits = 11;
  if (dtype == DType::bf16) bits = 8;
  if (dtype == DType::fp8_e4m3) bits = 4;
  if (dtype == DType::fp8_e5m2) bits = 3;
  if (dtype == DType::fp4_e2m1) bits = 2;
  return draw(shape, dtype, gen, [=](const std::array<uint32_t, 4>& w) {
    const uint64_t r = ((static_cast<uint64_t>(w[0]) << 32) | w[1]) >> (64 - bits);
    return low + (high - low) * std::ldexp(static_cast<double>(r), -bits);
  });
}

Tensor randn(const Shape& shape, double mean, double std, DType dtype, Generator* gen) {
  LOWBIT_CHECK(is_float(dtype), "randn: dtype must be float, got ", dtype);
  LOWBIT_CHECK(std >= 0, "randn: std must be >= 0, got ", std);
  return draw(shape, dtype, gen, [=](const std::array<uint32_t, 4>& w) {
    const double u1 = 1.0 - unit_double(w[0], w[1]);  // (0, 1]: log is finite
    const double u2 = unit_double(w[2], w[3]);
    return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  });
}

Tensor trunc_normal(const Shape& shape, double mean, double std, double a, double b, DType dtype, Generator* gen) {
  LOWBIT_CHECK(is_float(dtype), "trunc_normal: dtype must be float, got ", dtype);
  LOWBIT_CHECK(std > 0 && a < b, "trunc_normal: need std > 0 and a < b, got std=", std, " [", a, ", ", b, "]");
  auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  const double lo = cdf((a - mean) / std), hi = cdf((b - mean) / std);
  return draw(shape, dtype, gen, [=](const std::array<uint32_t, 4>& w) {
    const double p = lo + (hi - lo) * unit_double(w[0], w[1]);
    const double x = mean + std * std::sqrt(2.0) * erfinv(std::clamp(2.0 * p - 1.0, -1.0 + 1e-16, 1.0 - 1e-16));
    return std::clamp(x, a, b);
  });
}

Tensor randint(const Shape& shape, int64_t low, int64_t high, DType dtype, Generator* gen) {
  LOWBIT_CHECK(low < high, "randint: need low < high, got [", low, ", ", high, ")");
  const uint64_t range = static_cast<uint64_t>(high - low);
  Tensor f = draw(shape, DType::f64, gen, [=](const std::array<uint32_t, 4>& w) {
    const uint64_t r = (static_cast<uint64_t>(w[0]) << 32) | w[1];
    return static_cast<double>(low + static_cast<int64_t>(r % range));
  });
  return f.to(dtype);
}

}  // namespace lowbit
