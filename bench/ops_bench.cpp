// Memory-bound op throughput beside the same run's memcpy bandwidth (the ceiling), and
// attention tokens/s. Bytes counted: every operand read once plus the output written once.
#include <benchmark/benchmark.h>

#include <cstring>

#include "lowbit/engine/lowbit.h"
#include "lowbit/engine/ops/attention.h"

namespace lowbit {
namespace {

constexpr int64_t kElems = 1 << 24;  // 64 MiB per f32 operand: far beyond the caches

void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] = benchmark::Counter(bytes_per_iter * static_cast<double>(state.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

void BM_Memcpy(benchmark::State& state) {
  Tensor a = rand({kElems}), b = empty({kElems});
  for (auto _ : state) {
    std::memcpy(b.raw_data(), a.raw_data(), kElems * 4);
    benchmark::DoNotOptimize(b.raw_data());
  }
  set_bytes(state, 2.0 * kElems * 4);
}
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();

// Same-run reference with every thread copying its part, as the ops' loops do.
void BM_MemcpyParallel(benchmark::State& state) {
  Tensor a = rand({kElems}), b = empty({kElems});
  for (auto _ : state) {
    const char* src = static_cast<const char*>(a.raw_data());
    char* dst = static_cast<char*>(b.raw_data());
    constexpr int64_t kChunk = 1 << 20;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < kElems * 4 / kChunk; ++c) std::memcpy(dst + c * kChunk, src + c * kChunk, kChunk);
    benchmark::DoNotOptimize(b.raw_data());
  }
  set_bytes(state, 2.0 * kElems * 4);
}
BENCHMARK(BM_MemcpyParallel)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_AddF32(benchmark::State& state) {
  Tensor a = rand({kElems}), b = rand({kElems});
  for (auto _ : state) benchmark::DoNotOptimize(add(a, b).raw_data());
  set_bytes(state, 3.0 * kElems * 4);
}
BENCHMARK(BM_AddF32)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_MulBf16(benchmark::State& state) {
  Tensor a = rand({kElems}, 0, 1, DType::bf16), b = rand({kElems}, 0, 1, DType::bf16);
  for (auto _ : state) benchmark::DoNotOptimize(mul(a, b).raw_data());
  set_bytes(state, 3.0 * kElems * 2);
}
BENCHMARK(BM_MulBf16)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SiluF32(benchmark::State& state) {
  Tensor a = rand({kElems}, -4, 4);
  for (auto _ : state) benchmark::DoNotOptimize(silu(a).raw_data());
  set_bytes(state, 2.0 * kElems * 4);
}
BENCHMARK(BM_SiluF32)->Unit(benchmark::kMillisecond)->UseRealTime();

// Row-broadcast add, the bias shape: (4096, 4096) + (4096).
void BM_AddBroadcastF32(benchmark::State& state) {
  Tensor a = rand({4096, 4096}), b = rand({4096});
  for (auto _ : state) benchmark::DoNotOptimize(add(a, b).raw_data());
  set_bytes(state, 2.0 * kElems * 4);
}
BENCHMARK(BM_AddBroadcastF32)->Unit(benchmark::kMillisecond)->UseRealTime();

// Softmax over vocab-sized rows: (1024, 16384).
void BM_SoftmaxF32(benchmark::State& state) {
  Tensor a = rand({1024, 16384}, -8, 8);
  for (auto _ : state) benchmark::DoNotOptimize(softmax(a).raw_data());
  set_bytes(state, 2.0 * 1024 * 16384 * 4);
}
BENCHMARK(BM_SoftmaxF32)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CrossEntropyF32(benchmark::State& state) {
  Tensor logits = rand({1024, 16384}, -8, 8);
  Tensor targets = randint({1024}, 0, 16384);
  for (auto _ : state) benchmark::DoNotOptimize(cross_entropy(logits, targets).raw_data());
  set_bytes(state, 1.0 * 1024 * 16384 * 4);
}
BENCHMARK(BM_CrossEntropyF32)->Unit(benchmark::kMillisecond)->UseRealTime();

// Causal attention, B=1, 6 heads of 64 (the 10M model's 384 hidden), T = state.range(0).
void BM_AttentionForward(benchmark::State& state) {
  const int64_t T = state.range(0), H = 6, D = 64;
  Tensor q = randn({1, H, T, D}), k = randn({1, H, T, D}), v = randn({1, H, T, D});
  for (auto _ : state) benchmark::DoNotOptimize(scaled_dot_product_attention(q, k, v, true).raw_data());
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(T * state.iterations()),
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttentionForward)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_AttentionForwardBackward(benchmark::State& state) {
  const int64_t T = state.range(0), H = 6, D = 64;
  Tensor q = randn({1, H, T, D}).set_requires_grad(true);
  Tensor k = randn({1, H, T, D}).set_requires_grad(true);
  Tensor v = randn({1, H, T, D}).set_requires_grad(true);
  Tensor g = randn({1, H, T, D});
  for (auto _ : state) {
    Tensor o = scaled_dot_product_attention(q, k, v, true);
    o.backward(g);
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(T * state.iterations()),
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttentionForwardBackward)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace lowbit

BENCHMARK_MAIN();
