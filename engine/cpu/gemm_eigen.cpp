// Eigen GEMM backend. Operands are Maps over the caller's memory (row-major, OuterStride = ld);
// transposes are Eigen expressions, so nothing is copied. Eigen's GEMM threads itself with
// OpenMP (this file is compiled with -fopenmp) and runs serially inside a parallel region,
// which the batched path uses to spread batches over threads.
//
// bf16: Eigen has no bf16 x bf16 -> f32 kernel (its bfloat16 GEMM would accumulate in bf16),
// so bf16 tiles are widened to f32 (exact) into per-thread scratch and fed to the f32 GEMM.
// Tiles are at most kTile^3, so scratch stays bounded (2 * kTile^2 floats per thread) and each
// element is widened about once per kTile output columns.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports -W(maybe-)uninitialized inside its own AVX-512 intrinsics (_mm*_undefined_*)
// when Eigen's kernels are inlined here; the values are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/cpu/isa.h"

namespace lowbit::cpu::detail {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T, class OpA, class OpB>
void eval(MutMap<T>& c, T alpha, const OpA& a, const OpB& b, T beta) {
  // Eigen folds the scalar factor into its GEMM's alpha (no temporary for alpha * a).
  if (beta == T(0)) {
    c.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

template <class T>
void gemm_one(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
              const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const ConstMap<T> a(A, ta ? K : M, ta ? M : K, Eigen::OuterStride<>(lda));
  const ConstMap<T> b(B, tb ? N : K, tb ? K : N, Eigen::OuterStride<>(ldb));
  MutMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (!ta && !tb) eval(c, alpha, a, b, beta);
  else if (ta && !tb) eval(c, alpha, a.transpose(), b, beta);
  else if (!ta && tb) eval(c, alpha, a, b.transpose(), beta);
  else eval(c, alpha, a.transpose(), b.transpose(), beta);
}

// ---- bf16 -> f32 widening (exact: the bits shifted into the high half) ----
void widen_row_scalar(const uint16_t* s, int64_t n, float* d) {
  for (int64_t i = 0; i < n; ++i) d[i] = bf16_bits_to_f32(s[i]);
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) void widen_row_avx512(const uint16_t* s, int64_t n, float* d) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
  widen_row_scalar(s + i, n - i, d + i);
}

__attribute__((target("avx2"))) void widen_row_avx2(const uint16_t* s, int64_t n, float* d) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    _mm256_storeu_ps(d + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
  widen_row_scalar(s + i, n - i, d + i);
}
#endif

// The widest widening loop the CPU (and LOWBIT_MAX_CPU_ISA) allows.
struct Widen {
  void (*row)(const uint16_t*, int64_t, float*);
  const char* name;
};
Widen widen_kernel() {
#if defined(__x86_64__)
  if (isa_allows(Isa::avx512)) return {widen_row_avx512, "avx512"};
  if (isa_allows(Isa::avx2)) return {widen_row_avx2, "avx2"};
#endif
  return {widen_row_scalar, "scalar"};
}

// dst (rows x cols, dense) = widen(src rows x cols with row stride ld).
void widen_block(const BFloat16* src, int64_t ld, int64_t rows, int64_t cols, float* dst) {
  const auto* s = reinterpret_cast<const uint16_t*>(src);
  const auto widen_row = widen_kernel().row;
  if (rows * cols < (int64_t{1} << 16) || rows == 1 || omp_in_parallel()) {
    for (int64_t r = 0; r < rows; ++r) widen_row(s + r * ld, cols, dst + r * cols);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) widen_row(s + r * ld, cols, dst + r * cols);
}

struct Scratch {
  std::vector<float> a, b;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

constexpr int64_t kTile = 1024;

void gemm_one_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const BFloat16* A, int64_t lda, const BFloat16* B, int64_t ldb, float beta,
                   float* C, int64_t ldc) {
  Scratch& sc = scratch();
  const int64_t mt = std::min(M, kTile), nt = std::min(N, kTile), kt = std::min(K, kTile);
  if (static_cast<int64_t>(sc.a.size()) < mt * kt) sc.a.resize(mt * kt);
  if (static_cast<int64_t>(sc.b.size()) < kt * nt) sc.b.resize(kt * nt);
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t kb = std::min(kTile, K - k0);
    const float beta_k = k0 == 0 ? beta : 1.0f;
    for (int64_t n0 = 0; n0 < N; n0 += kTile) {
      const int64_t nb = std::min(kTile, N - n0);
      // op(B) tile rows k0..k0+kb, cols n0..n0+nb; stored layout kept (ld = stored cols).
      if (tb) widen_block(B + n0 * ldb + k0, ldb, nb, kb, sc.b.data());
      else widen_block(B + k0 * ldb + n0, ldb, kb, nb, sc.b.data());
      const int64_t ldbt = tb ? kb : nb;
      for (int64_t m0 = 0; m0 < M; m0 += kTile) {
        const int64_t mb = std::min(kTile, M - m0);
        // A tiles are widened once per N tile: one conversion per kTile output columns.
        if (ta) widen_block(A + k0 * lda + m0, lda, kb, mb, sc.a.data());
        else widen_block(A + m0 * lda + k0, lda, mb, kb, sc.a.data());
        const int64_t ldat = ta ? mb : kb;
        gemm_one<float>(ta, tb, mb, nb, kb, alpha, sc.a.data(), ldat, sc.b.data(), ldbt, beta_k,
                        C + m0 * ldc + n0, ldc);
      }
    }
  }
}

// Batches in parallel (each GEMM serial) when they split evenly over the threads or are many;
// otherwise one batch at a time with Eigen's own threading inside.
// The serial case must not open a parallel region at all: an `if (false)` region is still a
// nesting level, and libgomp then starts fresh threads for Eigen's inner region on every call
// (measured: 64^3 took 207 us instead of 5 us).
template <class F>
void for_each_batch(const GemmShape& s, F&& one) {
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool par = s.batch > 1 && nt > 1 && (s.batch % nt == 0 || s.batch >= 4 * nt);
  if (!par) {
    for (int64_t b = 0; b < s.batch; ++b) one(b);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < s.batch; ++b) one(b);
}

}  // namespace

std::string eigen_description() {
#if defined(EIGEN_VECTORIZE_AVX512)
  const char* simd = "avx512";
#elif defined(EIGEN_VECTORIZE_AVX2) && defined(EIGEN_VECTORIZE_FMA)
  const char* simd = "avx2+fma";
#elif defined(EIGEN_VECTORIZE_AVX)
  const char* simd = "avx";
#else
  const char* simd = "sse";
#endif
  return std::string("Eigen ") + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
         " (" + simd + ", compiled in; bf16 widening " + widen_kernel().name + ")";
}

void gemm_eigen(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
                float* C) {
  for_each_batch(s, [&](int64_t b) {
    gemm_one<float>(s.trans_a, s.trans_b, s.M, s.N, s.K, alpha, A + b * s.stride_a, s.lda,
                    B + b * s.stride_b, s.ldb, beta, C + b * s.stride_c, s.ldc);
  });
}

void gemm_eigen(const GemmShape& s, double alpha, const double* A, const double* B, double beta,
                double* C) {
  for_each_batch(s, [&](int64_t b) {
    gemm_one<double>(s.trans_a, s.trans_b, s.M, s.N, s.K, alpha, A + b * s.stride_a, s.lda,
                     B + b * s.stride_b, s.ldb, beta, C + b * s.stride_c, s.ldc);
  });
}

void gemm_eigen(const GemmShape& s, float alpha, const BFloat16* A, const BFloat16* B, float beta,
                float* C) {
  for_each_batch(s, [&](int64_t b) {
    gemm_one_bf16(s.trans_a, s.trans_b, s.M, s.N, s.K, alpha, A + b * s.stride_a, s.lda,
                  B + b * s.stride_b, s.ldb, beta, C + b * s.stride_c, s.ldc);
  });
}

}  // namespace lowbit::cpu::detail
