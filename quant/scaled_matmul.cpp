// scaled_matmul (scaled_matmul.h): tiled decode + cpu::gemm, or the integer GEMM (int_gemm.h).
#include "lowbit/quant/scaled_matmul.h"

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/quant/int_gemm.h"
#include "lowbit/quant/scale_groups.h"
#include "lowbit/quant/tile_decode.h"

namespace lowbit::quant {

using namespace detail;

namespace {

constexpr int64_t kMC = 256;  // output rows per task
constexpr int64_t kNC = 256;  // output columns per task
constexpr int64_t kKC = 256;  // K per tile (a multiple of every block size and of 2)
// Largest integer segment: |qa qb| <= 2^14, so 2^17 products stay inside int32.
constexpr int64_t kMaxIntSegment = int64_t{1} << 16;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

Shape out_shape(const Shape& a, int64_t N) {
  Shape s = a;
  s.back() = N;
  return s;
}

void check_weight(const QTensor& b, int64_t K, const char* op) {
  const int64_t Kb = check_qtensor(b, op);
  LOWBIT_CHECK(b.shape.size() == 2, op, ": b must be (N, K) (HF (out, in) weights), got ", shape_str(b.shape));
  LOWBIT_CHECK(Kb == K, op, ": inner dims differ: a has K = ", K, ", b is ", shape_str(b.shape));
}

// Per-thread f32 scratch, allocated as tensors so the allocator's peak counter sees it.
struct Scratch {
  std::vector<Tensor> bufs;
  Scratch(int threads, int64_t floats) {
    for (int t = 0; t < threads; ++t) bufs.push_back(empty({floats}, DType::f32));
  }
  float* get(int t) { return bufs[static_cast<size_t>(t)].data<float>(); }
};

int threads_for(int64_t tasks) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), tasks)));
}

// y (M, N) = a_dq (M, K) · b_dqᵀ; a either quantized (qa) or f32 rows (af, row stride K).
void f32_tiles(const QTensor* qa, const float* af, const QTensor& b, int64_t M, int64_t N, int64_t K, float* y) {
  const int64_t mb = ceil_div(M, kMC), nb = ceil_div(N, kNC), tasks = mb * nb;
  const int threads = threads_for(tasks);
  const int64_t tile = kMC * kKC + kNC * kKC;
  Scratch scratch(threads, tile);
  // Task t: rows [m0, m1) x columns [n0, n1) of y, K walked in tiles of kKC.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t m0 = (t / nb) * kMC, m1 = std::min(M, m0 + kMC);
    const int64_t n0 = (t % nb) * kNC, n1 = std::min(N, n0 + kNC);
    float* at = scratch.get(omp_get_thread_num());
    float* bt = at + kMC * kKC;
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int64_t kc = std::min(kKC, K - k0);
      decode_tile(b, n0, n1, k0, k0 + kc, bt, kc);  // (n1 - n0, kc)
      const float* A = af ? af + m0 * K + k0 : at;
      const int64_t lda = af ? K : kc;
      if (qa) decode_tile(*qa, m0, m1, k0, k0 + kc, at, kc);  // (m1 - m0, kc)
      // y[m0:m1, n0:n1] (+)= A (m1 - m0, kc) · btᵀ (kc, n1 - n0)
      cpu::gemm(false, true, m1 - m0, n1 - n0, kc, 1.0f, A, lda, bt, kc, k0 == 0 ? 0.0f : 1.0f, y + m0 * N + n0, N);
    }
  }
}

bool int_kind(const QTensor& q, bool allow_asym) {
  const Kind k = kind_of(q.spec);
  return k == Kind::int_torchao_sym || k == Kind::int_modelopt || (allow_asym && k == Kind::int_torchao_asym);
}

int64_t int_segment(const QTensor& a, const QTensor& b) {
  return std::gcd(k_groups(a).seg, k_groups(b).seg);
}

}  // namespace

bool integer_path_supported(const QTensor& a, const QTensor& b) {
  if (a.spec.format != Format::int8 || (b.spec.format != Format::int8 && b.spec.format != Format::int4)) return false;
  if (!int_kind(a, true) || !int_kind(b, false) || b.shape.size() != 2 || a.shape.empty()) return false;
  if (a.shape.back() != b.shape.back()) return false;
  const KGroups ga = k_groups(a), gb = k_groups(b);
  if (!ga.ok || !gb.ok) return false;
  return int_segment(a, b) <= kMaxIntSegment;
}

std::string integer_kernel_description() {
  if (int_kernel_allowed(IntKernel::vnni)) return "avx512_vnni (vpdpbusd)";
  if (int_kernel_allowed(IntKernel::avx2)) return "avx2 (s16 vpmaddwd)";
  return "none: dequantized f32 tiles (the portable integer kernel only on request)";
}

Tensor scaled_matmul(const QTensor& a, const QTensor& b, const ScaledMatmulOptions& opts) {
  constexpr const char* op = "scaled_matmul";
  const int64_t K = check_qtensor(a, op);
  check_weight(b, K, op);
  const int64_t M = shape_numel(a.shape) / K, N = b.shape[0];
  const bool supported = integer_path_supported(a, b);
  if (opts.path == MatmulPath::integer)
    LOWBIT_CHECK(supported, op, ": the integer path needs int8 activations and int8/int4 ",
                 "symmetric weights with scale groups along K, got ", format_name(a.spec.format), " x ",
                 format_name(b.spec.format));
  // The best SIMD kernel, else the portable one (a plain value: GCC 12 -O3 misreads an optional).
  IntKernel kernel = IntKernel::portable;
  if (supported)
    if (const std::optional<IntKernel> k = best_int_kernel(a, b)) kernel = *k;
  // The AVX2 kernel packs b to s16 panels (a fixed cost per call, ~1.4 ms for 2048 x 2048 int8
  // here) and beats f32 tiles from about 56 rows on for int8 weights, at any M for int4 weights
  // (bench/README.md "Any x86-64 CPU").
  constexpr int64_t kAvx2MinRowsInt8 = 64;
  const bool simd_wins = kernel == IntKernel::vnni ||
                         (kernel == IntKernel::avx2 && (b.spec.format == Format::int4 || M >= kAvx2MinRowsInt8));
  Tensor y = empty(out_shape(a.shape, N), DType::f32);
  if (opts.path == MatmulPath::integer || (opts.path == MatmulPath::automatic && simd_wins))
    int_matmul(a, b, kernel, y.data<float>());
  else f32_tiles(&a, nullptr, b, M, N, K, y.data<float>());
  return y;
}

Tensor scaled_matmul(const Tensor& a, const QTensor& b) {
  constexpr const char* op = "scaled_matmul";
  LOWBIT_CHECK(a.defined() && a.device().is_cpu() && is_float(a.dtype()) && a.dim() >= 1 && a.numel() > 0, op,
               ": a must be a non-empty floating CPU tensor (..., K), got ", a.defined() ? a.str() : "undefined");
  const int64_t K = a.size(-1);
  check_weight(b, K, op);
  NoGradGuard ng;
  const Tensor af = as_f32_contiguous(a);
  const int64_t M = af.numel() / K, N = b.shape[0];
  Tensor y = empty(out_shape(a.shape(), N), DType::f32);
  f32_tiles(nullptr, af.data<float>(), b, M, N, K, y.data<float>());
  return y;
}

Tensor matmul_dequantized(const Tensor& dy, const QTensor& b) {
  constexpr const char* op = "matmul_dequantized";
  LOWBIT_CHECK(dy.defined() && dy.device().is_cpu() && is_float(dy.dtype()) && dy.dim() >= 1 && dy.numel() > 0, op,
               ": dy must be a non-empty floating CPU tensor (..., N), got ", dy.defined() ? dy.str() : "undefined");
  const int64_t K = check_qtensor(b, op);
  LOWBIT_CHECK(b.shape.size() == 2 && b.shape[0] == dy.size(-1), op, ": dy ", shape_str(dy.shape()),
               " does not match b ", shape_str(b.shape), " (N, K)");
  NoGradGuard ng;
  const Tensor g = as_f32_contiguous(dy);
  const int64_t N = b.shape[0], M = g.numel() / N;
  Tensor dx = empty(out_shape(dy.shape(), K), DType::f32);
  const float* gp = g.data<float>();
  float* xp = dx.data<float>();
  const int64_t mb = ceil_div(M, kMC), kb = ceil_div(K, kKC), tasks = mb * kb;
  const int threads = threads_for(tasks);
  Scratch scratch(threads, kNC * kKC);
  // Task t: rows [m0, m1) x columns [k0, k1) of dx, N walked in tiles of kNC.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t m0 = (t / kb) * kMC, m1 = std::min(M, m0 + kMC);
    const int64_t k0 = (t % kb) * kKC, k1 = std::min(K, k0 + kKC);
    float* bt = scratch.get(omp_get_thread_num());
    for (int64_t n0 = 0; n0 < N; n0 += kNC) {
      const int64_t n1 = std::min(N, n0 + kNC);
      decode_tile(b, n0, n1, k0, k1, bt, k1 - k0);  // (n1 - n0, k1 - k0)
      // dx[m0:m1, k0:k1] (+)= dy[m0:m1, n0:n1] · bt
      cpu::gemm(false, false, m1 - m0, k1 - k0, n1 - n0, 1.0f, gp + m0 * N + n0, N, bt, k1 - k0,
                n0 == 0 ? 0.0f : 1.0f, xp + m0 * K + k0, K);
    }
  }
  return dx;
}

}  // namespace lowbit::quant
