// GEMM throughput: our Eigen and oneDNN backends (f32, bf16 -> f32), and OpenBLAS cblas_sgemm
// as a reference (when BLAS is found; set OPENBLAS_CORETYPE, see bench/README.md).
// Counter GFLOPS = 2*M*N*K per iteration / wall time / 1e9 (all threads).
//
// Shapes: squares 256, 1024, 2048 and the transformer GEMMs of the 10M model (hidden 384, ffn
// 1024, vocab 8192) and 50M model (768, 2048, 16384) at M = 1024 token rows:
//   qkv/out proj (M,h)x(h,h), ffn up (M,h)x(h,f), ffn down (M,f)x(f,h), logits (M,h)x(h,v);
// plus the backward layouts of the 50M ffn-up GEMM: dX = dY W^T ("nt") and dW = X^T dY ("tn"),
// and two batched attention GEMMs (gemm_batched; OpenBLAS: a loop of sgemm calls).
//
// Benchmarks are registered implementation by implementation with OpenBLAS last: its idle
// worker threads spin for a while after each call and would steal a core from whatever runs
// next.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lowbit/engine/cpu/gemm.h"

#if defined(LOWBIT_BENCH_HAVE_BLAS)
#include <cblas.h>  // OpenBLAS's (Debian: /usr/include/x86_64-linux-gnu/cblas.h alternative)
#pragma weak openblas_get_corename
#pragma weak openblas_get_config
#endif

namespace {

using lowbit::BFloat16;
using lowbit::cpu::GemmBackend;

template <class T>
struct Buf {
  T* p = nullptr;
  explicit Buf(size_t n) {
    p = static_cast<T*>(std::aligned_alloc(64, ((n * sizeof(T) + 63) / 64) * 64));
    std::memset(static_cast<void*>(p), 0, n * sizeof(T));
  }
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

template <class T>
void fill(Buf<T>& b, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, BFloat16>) b.p[i] = BFloat16(d(rng));
    else b.p[i] = d(rng);
  }
}

struct Shape {
  std::string label;
  int64_t M, N, K;
  bool ta = false, tb = false;
  int64_t batch = 1;  // > 1: gemm_batched over dense stacked matrices
};

std::vector<Shape> shapes() {
  std::vector<Shape> v{{"square", 256, 256, 256}, {"square", 1024, 1024, 1024},
                       {"square", 2048, 2048, 2048}};
  struct Model {
    const char* name;
    int64_t h, f, vocab;
  };
  for (const Model& m : {Model{"10M", 384, 1024, 8192}, Model{"50M", 768, 2048, 16384}}) {
    const std::string n = m.name;
    v.push_back({n + "_qkv", 1024, m.h, m.h});
    v.push_back({n + "_ffn_up", 1024, m.f, m.h});
    v.push_back({n + "_ffn_down", 1024, m.h, m.f});
    v.push_back({n + "_logits", 1024, m.vocab, m.h});
  }
  v.push_back({"50M_ffn_up_dX_nt", 1024, 768, 2048, false, true});  // dY (M,f) @ W^T
  v.push_back({"50M_ffn_up_dW_tn", 768, 2048, 1024, true, false});  // X^T (h,M) @ dY (M,f)
  // Attention, 16 (sequence, head) pairs of 256 tokens, head dim 64: Q K^T and P V.
  v.push_back({"attn_qk_b16", 256, 256, 64, false, true, 16});
  v.push_back({"attn_pv_b16", 256, 64, 256, false, false, 16});
  return v;
}

void set_counters(benchmark::State& st, const Shape& s) {
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * s.batch * s.M * s.N * s.K * 1e-9,
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = omp_get_max_threads();
}

// Stored extents of op(A) (M,K) and op(B) (K,N); lda/ldb are the stored row lengths.
int64_t lda_of(const Shape& s) { return s.ta ? s.M : s.K; }
int64_t ldb_of(const Shape& s) { return s.tb ? s.K : s.N; }

template <class TI>
void bm_lowbit(benchmark::State& st, Shape s, GemmBackend be) {
  lowbit::cpu::GemmBackendGuard guard(be);
  const size_t na = s.batch * s.M * s.K, nb = s.batch * s.K * s.N, nc = s.batch * s.M * s.N;
  Buf<TI> a(na), b(nb);
  Buf<float> c(nc);
  fill(a, na, 1);
  fill(b, nb, 2);
  auto run = [&] {
    if (s.batch == 1)
      lowbit::cpu::gemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.p, lda_of(s), b.p, ldb_of(s), 0.0f,
                        c.p, s.N);
    else
      lowbit::cpu::gemm_batched(s.batch, s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.p, lda_of(s),
                                s.M * s.K, b.p, ldb_of(s), s.K * s.N, 0.0f, c.p, s.N, s.M * s.N);
  };
  run();  // oneDNN: creates and caches the primitive outside the timed loop
  for (auto _ : st) {
    run();
    benchmark::DoNotOptimize(c.p);
    benchmark::ClobberMemory();
  }
  set_counters(st, s);
}

#if defined(LOWBIT_BENCH_HAVE_BLAS)
void bm_openblas(benchmark::State& st, Shape s) {
  const size_t na = s.batch * s.M * s.K, nb = s.batch * s.K * s.N, nc = s.batch * s.M * s.N;
  Buf<float> a(na), b(nb), c(nc);
  fill(a, na, 1);
  fill(b, nb, 2);
  auto run = [&] {  // batched: one sgemm per batch (OpenBLAS 0.3.21 has no strided batch API)
    for (int64_t i = 0; i < s.batch; ++i)
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans,
                  s.tb ? CblasTrans : CblasNoTrans, s.M, s.N, s.K, 1.0f, a.p + i * s.M * s.K,
                  lda_of(s), b.p + i * s.K * s.N, ldb_of(s), 0.0f, c.p + i * s.M * s.N, s.N);
  };
  run();
  for (auto _ : st) {
    run();
    benchmark::DoNotOptimize(c.p);
    benchmark::ClobberMemory();
  }
  set_counters(st, s);
}
#endif

std::string shape_name(const Shape& s) {
  return s.label + "/" + (s.batch > 1 ? std::to_string(s.batch) + "x" : "") +
         std::to_string(s.M) + "x" + std::to_string(s.N) + "x" + std::to_string(s.K);
}

void register_all() {
  struct Impl {
    const char* name;
    GemmBackend be;
    bool bf16;
  };
  std::vector<Impl> impls;
  if (lowbit::cpu::gemm_backend_available(GemmBackend::OneDNN)) {
    impls.push_back({"f32_onednn", GemmBackend::OneDNN, false});
    impls.push_back({"bf16_onednn", GemmBackend::OneDNN, true});
  }
  impls.push_back({"f32_eigen", GemmBackend::Eigen, false});
  impls.push_back({"bf16_eigen", GemmBackend::Eigen, true});
  for (const Impl& im : impls)
    for (const Shape& s : shapes()) {
      const std::string name = std::string(im.name) + "/" + shape_name(s);
      auto* b = im.bf16 ? benchmark::RegisterBenchmark(name.c_str(), bm_lowbit<BFloat16>, s, im.be)
                        : benchmark::RegisterBenchmark(name.c_str(), bm_lowbit<float>, s, im.be);
      b->UseRealTime()->Unit(benchmark::kMillisecond);
    }
#if defined(LOWBIT_BENCH_HAVE_BLAS)
  for (const Shape& s : shapes())
    benchmark::RegisterBenchmark(("f32_openblas/" + shape_name(s)).c_str(), bm_openblas, s)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext(
      "gemm_default_backend",
      lowbit::cpu::gemm_backend_name(lowbit::cpu::default_gemm_backend()));
#if defined(LOWBIT_BENCH_HAVE_BLAS)
  if (openblas_get_corename) benchmark::AddCustomContext("openblas_core", openblas_get_corename());
  if (openblas_get_config) benchmark::AddCustomContext("openblas_config", openblas_get_config());
  const char* ct = std::getenv("OPENBLAS_CORETYPE");
  benchmark::AddCustomContext("OPENBLAS_CORETYPE", ct ? ct : "(unset)");
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
