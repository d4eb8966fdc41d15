// Machine ceilings the GEMM and elementwise numbers are judged against:
//   fma_f32_zmm   : register-blocked AVX-512 FMA loop (16 independent accumulators), f32
//   fma_f32_ymm   : the same with 256-bit FMAs (Zen 4 runs 512-bit FMAs as two 256-bit halves)
//   dot_bf16_zmm  : _mm512_dpbf16_ps loop (each instruction: 16 lanes x 2 products = 64 flops)
//   memcpy        : large-buffer copy, GB/s counting bytes read + bytes written (2 x size)
// Compute benchmarks run on one thread and on all OpenMP threads (threads counter); counters are
// GFLOPS = flops / wall time / 1e9 and GBps = bytes / wall time / 1e9. Each loop is compiled for
// its own ISA and runs where the CPU (and LOWBIT_MAX_CPU_ISA) allows it, else reports a skip.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <immintrin.h>

#include "lowbit/engine/cpu/isa.h"

#define LOWBIT_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define LOWBIT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#define LOWBIT_AVX2 __attribute__((target("avx2,fma")))

namespace {

constexpr int64_t kInner = 1 << 20;  // loop trips per thread per iteration (~5 ms at 16 FMA/trip)

volatile float g_sink;

// (_mm512_reduce_add_ps trips a GCC 12 -Wuninitialized false positive in its own header.)
LOWBIT_AVX512 float hsum(__m512 v) {
  alignas(64) float f[16];
  _mm512_store_ps(f, v);
  float s = 0;
  for (float x : f) s += x;
  return s;
}

// 16 chains: FMA latency 4 cycles x 2 pipes on Zen 4 needs >= 8 in flight; 16 leaves margin.
LOWBIT_AVX512 __attribute__((noinline)) float fma_zmm_loop(int64_t n) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t t = 0; t < n; ++t) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  return hsum(s);
}
constexpr double kFmaZmmFlops = 16.0 * 16 * 2;  // per trip

LOWBIT_AVX512BF16 __attribute__((noinline)) float dot_bf16_loop(int64_t n) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80);  // 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3380);  // ~6e-8
  for (int64_t t = 0; t < n; ++t) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  return hsum(s);
}
constexpr double kDotBf16Flops = 16.0 * 16 * 2 * 2;  // per trip: 16 instr x 16 lanes x 2 pairs

LOWBIT_AVX2 __attribute__((noinline)) float fma_ymm_loop(int64_t n) {
  __m256 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t t = 0; t < n; ++t) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}
constexpr double kFmaYmmFlops = 16.0 * 8 * 2;

void bm_compute(benchmark::State& st, float (*loop)(int64_t), double flops_per_trip, lowbit::cpu::Isa needs) {
  if (!lowbit::cpu::isa_allows(needs)) {
    st.SkipWithError((std::string("needs ") + lowbit::cpu::isa_name(needs)).c_str());
    return;
  }
  const int threads = static_cast<int>(st.range(0));
  for (auto _ : st) {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += loop(kInner);
    g_sink = total;
  }
  st.counters["GFLOPS"] = benchmark::Counter(flops_per_trip * kInner * threads * 1e-9,
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = threads;
}

// memcpy of `bytes` split into one contiguous chunk per thread.
void bm_memcpy(benchmark::State& st) {
  const size_t bytes = static_cast<size_t>(st.range(0)) << 20;
  const int threads = static_cast<int>(st.range(1));
  char* src = static_cast<char*>(std::aligned_alloc(4096, bytes));
  char* dst = static_cast<char*>(std::aligned_alloc(4096, bytes));
  // First touch from the threads that copy (matters on NUMA machines; harmless here).
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const size_t lo = bytes * t / nt, hi = bytes * (t + 1) / nt;
    std::memset(src + lo, 1, hi - lo);
    std::memset(dst + lo, 0, hi - lo);
  }
  for (auto _ : st) {
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t lo = bytes * t / nt, hi = bytes * (t + 1) / nt;
      std::memcpy(dst + lo, src + lo, hi - lo);
    }
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  st.counters["GBps"] = benchmark::Counter(2.0 * bytes * 1e-9,
                                           benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = threads;
  std::free(src);
  std::free(dst);
}

void thread_args(benchmark::internal::Benchmark* b) {
  const int nt = omp_get_max_threads();
  b->Arg(1);
  if (nt > 1) b->Arg(nt);
}

void memcpy_args(benchmark::internal::Benchmark* b) {
  const int nt = omp_get_max_threads();
  for (int mib : {256}) {  // >> L3 (32 MiB here): a DRAM-bound copy
    b->Args({mib, 1});
    if (nt > 1) b->Args({mib, nt});
  }
}

void fma_f32_zmm(benchmark::State& st) { bm_compute(st, fma_zmm_loop, kFmaZmmFlops, lowbit::cpu::Isa::avx512); }
BENCHMARK(fma_f32_zmm)->Apply(thread_args)->UseRealTime();
void fma_f32_ymm(benchmark::State& st) { bm_compute(st, fma_ymm_loop, kFmaYmmFlops, lowbit::cpu::Isa::avx2); }
BENCHMARK(fma_f32_ymm)->Apply(thread_args)->UseRealTime();
void dot_bf16_zmm(benchmark::State& st) { bm_compute(st, dot_bf16_loop, kDotBf16Flops, lowbit::cpu::Isa::avx512_bf16); }
BENCHMARK(dot_bf16_zmm)->Apply(thread_args)->UseRealTime();
void memcpy_bw(benchmark::State& st) { bm_memcpy(st); }
BENCHMARK(memcpy_bw)->Apply(memcpy_args)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
