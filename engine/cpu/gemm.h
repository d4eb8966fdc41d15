// CPU GEMM: one row-major BLAS-style interface over two backends (Eigen, always built; oneDNN,
// built when the library is found, LOWBIT_HAVE_DNNL=1). Every matrix is row-major; a stored
// matrix's rows are `ld` elements apart (ld >= its column count), elements within a row are
// contiguous. Transposed operands are read in place (no copies).
//
//   C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C
//   op(A) = A      : A stored (M,K), lda >= max(1,K)
//   op(A) = A^T    : A stored (K,M), lda >= max(1,M)      (trans_a)
//   op(B) = B      : B stored (K,N), ldb >= max(1,N)
//   op(B) = B^T    : B stored (N,K), ldb >= max(1,K)      (trans_b)
//   C stored (M,N), ldc >= max(1,N)
//
// BLAS conventions: beta == 0 means C is write-only (NaN/garbage in C is not propagated);
// alpha == 0 or K == 0 gives C = beta * C without reading A or B; M == 0 or N == 0 is a no-op. Bad arguments (negative dims, ld too
// small, null pointers with non-empty extents, overlapping output batches) throw lowbit::Error.
//
// Precision: f32 and f64 accumulate in their own type. bf16 x bf16 multiplies exactly and
// accumulates in f32 (output f32); the oneDNN bf16 kernel (vdpbf16ps) flushes denormals. The
// Eigen bf16 path widens tiles to f32 in per-thread scratch it keeps (up to 8 MiB per thread).
//
// Threading: both backends use the OpenMP thread pool (omp_get_max_threads()).
// Called from inside an OpenMP parallel region, a GEMM runs on the calling thread only.
#pragma once
#include <cstdint>
#include <string>

#include "lowbit/engine/scalar_types.h"

namespace lowbit::cpu {

enum class GemmBackend { Eigen, OneDNN };

const char* gemm_backend_name(GemmBackend b);
// Eigen: always. OneDNN: when built with oneDNN.
bool gemm_backend_available(GemmBackend b);
// Process-wide selection used by every gemm call. Default: OneDNN when available, else Eigen.
// With OneDNN selected, tiny problems (batch*M*N*K < detail::kOneDnnMinWork) and f64 still run
// on Eigen: oneDNN's ~2 us per-call overhead loses to Eigen below roughly 40^3.
GemmBackend default_gemm_backend();
GemmBackend gemm_backend();
// Throws lowbit::Error if the backend is not available.
void set_gemm_backend(GemmBackend b);

// Selects a backend for a scope and restores the previous one on exit. The selection is
// process-wide: do not race guards from several threads.
class GemmBackendGuard {
 public:
  explicit GemmBackendGuard(GemmBackend b) : prev_(gemm_backend()) { set_gemm_backend(b); }
  ~GemmBackendGuard() { set_gemm_backend(prev_); }
  GemmBackendGuard(const GemmBackendGuard&) = delete;
  GemmBackendGuard& operator=(const GemmBackendGuard&) = delete;

 private:
  GemmBackend prev_;
};

// Caps the threads every GEMM runs on (0: no cap, the default: omp_get_max_threads()); returns
// the previous cap. Other kernels keep the OpenMP thread count. Tests pin GEMM to one thread to
// show that everything else is thread-count invariant (oneDNN's AVX2 sgemm is not).
int set_gemm_max_threads(int n);

// One line naming the kernels the f32 and bf16 GEMMs run on this CPU, e.g.
// "f32: oneDNN 2.6.3 brg:avx512_core | bf16: oneDNN 2.6.3 brg:avx512_core_bf16".
std::string gemm_kernels_description();

// ---- Single GEMM ----
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// f64: always computed by Eigen (oneDNN has no f64 matmul), whatever backend is selected.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);
// bf16 inputs, f32 accumulation and f32 output.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const BFloat16* A, int64_t lda, const BFloat16* B, int64_t ldb, float beta, float* C,
          int64_t ldc);

// ---- Batched strided GEMM ----
// For b in [0, batch): C_b = alpha * op(A_b) @ op(B_b) + beta * C_b, where
// A_b = A + b * stride_a, B_b = B + b * stride_b, C_b = C + b * stride_c (elements, >= 0).
// stride_a == 0 or stride_b == 0 broadcasts that operand over the batch.
// stride_c == 0 (batch > 1) reduces over the batch: C = alpha * sum_b op(A_b) @ op(B_b) + beta * C
// (the gradient of a broadcast operand). Otherwise output batches must not overlap:
// stride_c >= (M-1)*ldc + N.
void gemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const float* A, int64_t lda, int64_t stride_a, const float* B,
                  int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                  int64_t stride_c);
void gemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  double alpha, const double* A, int64_t lda, int64_t stride_a, const double* B,
                  int64_t ldb, int64_t stride_b, double beta, double* C, int64_t ldc,
                  int64_t stride_c);
void gemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const BFloat16* A, int64_t lda, int64_t stride_a,
                  const BFloat16* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                  int64_t ldc, int64_t stride_c);

// ---- Backend entry points (internal) ----
// Called by gemm.cpp after validation with batch >= 1, M, N, K >= 1 and stride_c != 0 unless
// batch == 1. Not for direct use: call gemm / gemm_batched.
namespace detail {
inline constexpr int64_t kOneDnnMinWork = int64_t{1} << 16;
// Sets the batch*M*N*K below which the OneDNN selection runs on Eigen; returns the previous
// value. Tests set 0 to exercise oneDNN on every shape.
int64_t set_onednn_min_work(int64_t work);

struct GemmShape {
  int64_t batch;
  bool trans_a, trans_b;
  int64_t M, N, K;
  int64_t lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c;
};
void gemm_eigen(const GemmShape& s, float alpha, const float* A, const float* B, float beta, float* C);
void gemm_eigen(const GemmShape& s, double alpha, const double* A, const double* B, double beta,
                double* C);
void gemm_eigen(const GemmShape& s, float alpha, const BFloat16* A, const BFloat16* B, float beta,
                float* C);
std::string eigen_description();
#if defined(LOWBIT_HAVE_DNNL)
// The implementation oneDNN picks for a 512^3 f32 or bf16 matmul here.
std::string onednn_description(bool bf16);
void gemm_onednn(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
                 float* C);
void gemm_onednn(const GemmShape& s, float alpha, const BFloat16* A, const BFloat16* B, float beta,
                 float* C);
// Drops the cached primitives (tests; memory).
void onednn_clear_cache();
int64_t onednn_cache_size();
#endif
}  // namespace detail

}  // namespace lowbit::cpu
