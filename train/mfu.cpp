#include "lowbit/train/mfu.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/error.h"

namespace lowbit::train {

namespace {

constexpr int64_t kN = 512;
constexpr double kProbeSeconds = 0.04;
constexpr int kProbesPerRound = 5, kMaxRounds = 3;
constexpr double kAgree = 0.05;

// GFLOP/s of one probe: `gemm` repeated for about kProbeSeconds.
double probe(const std::function<void()>& gemm) {
  int reps = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double secs = 0;
  while (secs < kProbeSeconds) {
    gemm();
    ++reps;
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return 2.0 * kN * kN * kN * reps / secs / 1e9;
}

}  // namespace

GemmRate measure_gemm_rate(DType dtype) {
  LOWBIT_CHECK(dtype == DType::f32 || dtype == DType::bf16, "measure_gemm_rate: dtype ", dtype_name(dtype),
               " has no GEMM to measure against (f32 or bf16)");
  std::vector<float> a(kN * kN, 0.5f), b(kN * kN, 0.25f), c(kN * kN);
  std::vector<BFloat16> ah(kN * kN, BFloat16(0.5f)), bh(kN * kN, BFloat16(0.25f));
  const std::function<void()> gemm = dtype == DType::f32
      ? std::function<void()>([&] { cpu::gemm(false, false, kN, kN, kN, 1.0f, a.data(), kN, b.data(), kN, 0.0f, c.data(), kN); })
      : std::function<void()>([&] { cpu::gemm(false, false, kN, kN, kN, 1.0f, ah.data(), kN, bh.data(), kN, 0.0f, c.data(), kN); });
  gemm();  // primitive creation, JIT, first touch
  GemmRate r;
  for (int round = 0; round < kMaxRounds; ++round) {
    std::vector<double> rates;
    for (int i = 0; i < kProbesPerRound; ++i) rates.push_back(probe(gemm));
    r.probes += kProbesPerRound;
    std::sort(rates.rbegin(), rates.rend());
    r.gflops = std::max(r.gflops, rates[0]);
    r.spread = (rates[0] - rates[1]) / rates[0];
    if (r.spread <= kAgree) break;
  }
  return r;
}

MfuMeter::MfuMeter(DType dtype) : dtype_(dtype), rate_(measure_gemm_rate(dtype)) {}

double MfuMeter::mfu(double flops_per_s) {
  double m = flops_per_s / 1e9 / rate_.gflops;
  while (m > 1.0 && !flagged_) {
    if (remeasures_ == kMaxRemeasures) {
      flagged_ = true;
      break;
    }
    ++remeasures_;
    const GemmRate again = measure_gemm_rate(dtype_);
    std::printf("MFU %.1f%% is above its reference: measured the %s GEMM again (%d/%d): %.1f GFLOP/s (was %.1f)\n",
                100 * m, std::string(dtype_name(dtype_)).c_str(), remeasures_, kMaxRemeasures, again.gflops, rate_.gflops);
    rate_.gflops = std::max(rate_.gflops, again.gflops);
    rate_.probes += again.probes;
    m = flops_per_s / 1e9 / rate_.gflops;
  }
  return m;
}

std::string MfuMeter::describe() const {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s GEMM %lld^3 on %d threads: %.1f GFLOP/s (best of %d probes, next within %.1f%%)",
                std::string(dtype_name(dtype_)).c_str(), static_cast<long long>(kN), omp_get_max_threads(), rate_.gflops, rate_.probes,
                100 * rate_.spread);
  return buf;
}

}  // namespace lowbit::train
