// GEMM front end: argument checks, trivial cases, batch folding, backend selection.
// The backends (gemm_eigen.cpp, gemm_onednn.cpp) receive validated, non-empty problems.
#include "lowbit/engine/cpu/gemm.h"

#include <omp.h>

#include <atomic>
#include <cstring>
#include <type_traits>

#include "lowbit/engine/error.h"

namespace lowbit::cpu {

namespace {

constexpr GemmBackend kDefaultBackend =
#if defined(LOWBIT_HAVE_DNNL)
    GemmBackend::OneDNN;
#else
    GemmBackend::Eigen;
#endif

std::atomic<GemmBackend> g_backend{kDefaultBackend};
std::atomic<int64_t> g_onednn_min_work{detail::kOneDnnMinWork};

int64_t max1(int64_t v) { return v > 1 ? v : 1; }

// Stored shape of op(X)'s operand: rows x cols.
struct Stored {
  int64_t rows, cols;
};
Stored stored_a(bool ta, int64_t M, int64_t K) { return ta ? Stored{K, M} : Stored{M, K}; }
Stored stored_b(bool tb, int64_t K, int64_t N) { return tb ? Stored{N, K} : Stored{K, N}; }

void check_args(const char* op, const detail::GemmShape& s, const void* A, const void* B,
                const void* C) {
  LOWBIT_CHECK(s.batch >= 0 && s.M >= 0 && s.N >= 0 && s.K >= 0, op,
               ": negative size (batch=", s.batch, ", M=", s.M, ", N=", s.N, ", K=", s.K, ")");
  const Stored a = stored_a(s.trans_a, s.M, s.K), b = stored_b(s.trans_b, s.K, s.N);
  LOWBIT_CHECK(s.lda >= max1(a.cols), op, ": lda=", s.lda, " < ", max1(a.cols), " (A stored ",
               a.rows, "x", a.cols, s.trans_a ? ", trans_a" : "", ")");
  LOWBIT_CHECK(s.ldb >= max1(b.cols), op, ": ldb=", s.ldb, " < ", max1(b.cols), " (B stored ",
               b.rows, "x", b.cols, s.trans_b ? ", trans_b" : "", ")");
  LOWBIT_CHECK(s.ldc >= max1(s.N), op, ": ldc=", s.ldc, " < ", max1(s.N), " (C ", s.M, "x", s.N, ")");
  LOWBIT_CHECK(s.stride_a >= 0 && s.stride_b >= 0 && s.stride_c >= 0, op,
               ": negative batch stride (", s.stride_a, ", ", s.stride_b, ", ", s.stride_c, ")");
  if (s.batch == 0 || s.M == 0 || s.N == 0) return;
  LOWBIT_CHECK(C != nullptr, op, ": C is null");
  if (s.K > 0) LOWBIT_CHECK(A != nullptr && B != nullptr, op, ": A or B is null");
  if (s.batch > 1 && s.stride_c != 0) {
    // Output batches must be disjoint: one after another ((M-1)*ldc + N apart or more), or
    // side by side within each row (N apart or more, all inside ldc).
    const int64_t span = (s.M - 1) * s.ldc + s.N;
    const bool stacked = s.stride_c >= span;
    const bool side_by_side = s.stride_c >= s.N && (s.batch - 1) * s.stride_c + s.N <= s.ldc;
    LOWBIT_CHECK(stacked || side_by_side, op, ": stride_c=", s.stride_c,
                 " makes output batches overlap (need >= ", span,
                 ", or side by side within ldc, or 0 to reduce over the batch)");
  }
}

template <class T, class S>
void scale_c(const detail::GemmShape& s, S beta, T* C) {
  const int64_t nb = s.stride_c == 0 ? 1 : s.batch;
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t i = 0; i < s.M; ++i) {
      T* row = C + b * s.stride_c + i * s.ldc;
      if (beta == S(0)) {
        std::memset(row, 0, sizeof(T) * s.N);  // BLAS: beta == 0 does not read C
      } else if (beta != S(1)) {
        for (int64_t j = 0; j < s.N; ++j) row[j] = static_cast<T>(beta * row[j]);
      }
    }
}

// Strides of op(A)'s M and K axes, op(B)'s K and N axes in the stored layouts.
struct AxisStrides {
  int64_t a_m, a_k, b_k, b_n;
};
AxisStrides axis_strides(const detail::GemmShape& s) {
  return {s.trans_a ? 1 : s.lda, s.trans_a ? s.lda : 1, s.trans_b ? 1 : s.ldb,
          s.trans_b ? s.ldb : 1};
}

// Rewrites a batched problem as one GEMM when the batches tile a bigger matrix:
//   B broadcast and A_b, C_b stacked along M        -> M' = batch * M
//   A broadcast and B_b, C_b side by side along N   -> N' = batch * N
//   C reduced (stride_c == 0), A_b and B_b along K  -> K' = batch * K
// The folded matrix's ld must cover the folded extent (checked through the ld conditions).
bool fold_batch(detail::GemmShape& s) {
  if (s.batch <= 1) return false;
  const AxisStrides ax = axis_strides(s);
  const int64_t bt = s.batch;
  if (s.stride_c == 0) {
    // K fold: element k of batch b sits at k + b*K along op(A)'s and op(B)'s K axes.
    const bool a_ok = s.stride_a == s.K * ax.a_k && (s.trans_a || s.lda >= bt * s.K);
    const bool b_ok = s.stride_b == s.K * ax.b_k && (!s.trans_b || s.ldb >= bt * s.K);
    if (a_ok && b_ok) {
      s.K *= bt;
      s.batch = 1;
      s.stride_a = s.stride_b = 0;
      return true;
    }
    return false;
  }
  if (s.stride_b == 0) {
    const bool a_ok = s.stride_a == s.M * ax.a_m && (!s.trans_a || s.lda >= bt * s.M);
    const bool c_ok = s.stride_c == s.M * s.ldc;
    if (a_ok && c_ok) {
      s.M *= bt;
      s.batch = 1;
      s.stride_a = s.stride_c = 0;
      return true;
    }
  }
  if (s.stride_a == 0) {
    const bool b_ok = s.stride_b == s.N * ax.b_n && (s.trans_b || s.ldb >= bt * s.N);
    const bool c_ok = s.stride_c == s.N && s.ldc >= bt * s.N;
    if (b_ok && c_ok) {
      s.N *= bt;
      s.batch = 1;
      s.stride_b = s.stride_c = 0;
      return true;
    }
  }
  return false;
}

std::atomic<int> g_gemm_max_threads{0};

// Lowers the calling thread's OpenMP thread count to the GEMM cap for one call.
class GemmThreadScope {
 public:
  GemmThreadScope() {
    const int cap = g_gemm_max_threads.load(std::memory_order_relaxed);
    if (cap > 0 && !omp_in_parallel() && omp_get_max_threads() > cap) {
      prev_ = omp_get_max_threads();
      omp_set_num_threads(cap);
    }
  }
  ~GemmThreadScope() {
    if (prev_ > 0) omp_set_num_threads(prev_);
  }
  GemmThreadScope(const GemmThreadScope&) = delete;
  GemmThreadScope& operator=(const GemmThreadScope&) = delete;

 private:
  int prev_ = 0;
};

template <class TA, class TC, class S>
void run_backend(const detail::GemmShape& s, S alpha, const TA* A, const TA* B, S beta, TC* C) {
  const GemmThreadScope threads;
  if constexpr (std::is_same_v<TA, double>) {
    detail::gemm_eigen(s, alpha, A, B, beta, C);  // oneDNN has no f64 matmul
  } else {
#if defined(LOWBIT_HAVE_DNNL)
    const double work = static_cast<double>(s.batch) * s.M * s.N * s.K;
    if (g_backend.load(std::memory_order_relaxed) == GemmBackend::OneDNN &&
        work >= static_cast<double>(g_onednn_min_work.load(std::memory_order_relaxed))) {
      detail::gemm_onednn(s, alpha, A, B, beta, C);
      return;
    }
#endif
    detail::gemm_eigen(s, alpha, A, B, beta, C);
  }
}

template <class TA, class TC, class S>
void gemm_impl(const char* op, detail::GemmShape s, S alpha, const TA* A, const TA* B, S beta,
               TC* C) {
  check_args(op, s, A, B, C);
  if (s.batch == 0 || s.M == 0 || s.N == 0) return;
  if (s.batch == 1) s.stride_a = s.stride_b = s.stride_c = 0;
  if (s.K == 0 || alpha == S(0)) {  // BLAS: alpha == 0 does not read A or B
    scale_c(s, beta, C);
    return;
  }
  fold_batch(s);
  if (s.batch > 1 && s.stride_c == 0) {
    // Reduction over the batch that does not fold into K: accumulate batch by batch.
    detail::GemmShape one = s;
    one.batch = 1;
    one.stride_a = one.stride_b = one.stride_c = 0;
    for (int64_t b = 0; b < s.batch; ++b)
      run_backend(one, alpha, A + b * s.stride_a, B + b * s.stride_b, b == 0 ? beta : S(1), C);
    return;
  }
  run_backend(s, alpha, A, B, beta, C);
}

}  // namespace

const char* gemm_backend_name(GemmBackend b) {
  switch (b) {
    case GemmBackend::Eigen: return "eigen";
    case GemmBackend::OneDNN: return "onednn";
  }
  return "?";
}

bool gemm_backend_available(GemmBackend b) {
  switch (b) {
    case GemmBackend::Eigen: return true;
    case GemmBackend::OneDNN:
#if defined(LOWBIT_HAVE_DNNL)
      return true;
#else
      return false;
#endif
  }
  return false;
}

GemmBackend default_gemm_backend() { return kDefaultBackend; }

int set_gemm_max_threads(int n) {
  LOWBIT_CHECK(n >= 0, "set_gemm_max_threads: n=", n, " must be >= 0 (0: no cap)");
  return g_gemm_max_threads.exchange(n);
}

std::string gemm_kernels_description() {
#if defined(LOWBIT_HAVE_DNNL)
  if (gemm_backend() == GemmBackend::OneDNN)
    return "f32: " + detail::onednn_description(false) + " | bf16: " + detail::onednn_description(true) +
           " | small and f64: " + detail::eigen_description();
#endif
  return "f32, bf16, f64: " + detail::eigen_description();
}
GemmBackend gemm_backend() { return g_backend.load(std::memory_order_relaxed); }

void set_gemm_backend(GemmBackend b) {
  LOWBIT_CHECK(gemm_backend_available(b), "set_gemm_backend: backend ", gemm_backend_name(b),
               " is not built (oneDNN was not found at configure time)");
  g_backend.store(b, std::memory_order_relaxed);
}

int64_t detail::set_onednn_min_work(int64_t work) {
  return g_onednn_min_work.exchange(work < 0 ? 0 : work, std::memory_order_relaxed);
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_impl("gemm(f32)", {1, trans_a, trans_b, M, N, K, lda, ldb, ldc, 0, 0, 0}, alpha, A, B, beta, C);
}
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_impl("gemm(f64)", {1, trans_a, trans_b, M, N, K, lda, ldb, ldc, 0, 0, 0}, alpha, A, B, beta, C);
}
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const BFloat16* A, int64_t lda, const BFloat16* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  gemm_impl("gemm(bf16)", {1, trans_a, trans_b, M, N, K, lda, ldb, ldc, 0, 0, 0}, alpha, A, B, beta, C);
}

void gemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const float* A, int64_t lda, int64_t stride_a, const float* B,
                  int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                  int64_t stride_c) {
  gemm_impl("gemm_batched(f32)",
            {batch, trans_a, trans_b, M, N, K, lda, ldb, ldc, stride_a, stride_b, stride_c}, alpha,
            A, B, beta, C);
}
void gemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  double alpha, const double* A, int64_t lda, int64_t stride_a, const double* B,
                  int64_t ldb, int64_t stride_b, double beta, double* C, int64_t ldc,
                  int64_t stride_c) {
  gemm_impl("gemm_batched(f64)",
            {batch, trans_a, trans_b, M, N, K, lda, ldb, ldc, stride_a, stride_b, stride_c}, alpha,
            A, B, beta, C);
}
void gemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const BFloat16* A, int64_t lda, int64_t stride_a,
                  const BFloat16* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                  int64_t ldc, int64_t stride_c) {
  gemm_impl("gemm_batched(bf16)",
            {batch, trans_a, trans_b, M, N, K, lda, ldb, ldc, stride_a, stride_b, stride_c}, alpha,
            A, B, beta, C);
}

}  // namespace lowbit::cpu
