// The integer GEMM of scaled_matmul's integer path (scaled_matmul.h). Internal to quant/.
//
// a (M, K) int8 codes, b (N, K) int8 or int4 codes, scale groups along K of each operand cut
// into segments of seg = gcd(group lengths) columns. For every output element and segment g the
// exact integer sum S_g = Σ_(k in g) (qa[m, k] − za[m, g]) qb[n, k] is formed in int32 (exact:
// |S_g| < 2^31 for seg <= 2^16), then y = fma(fa[m, g] · fb[n, g], float(S_g), y) segment after
// segment, y starting at +0 (fa, fb: the dequant multipliers, za: a's integer zero point). All
// kernels do exactly this, so their results are bitwise equal, and each output element is
// computed by one thread in a fixed order: deterministic for any thread count.
#pragma once
#include <cstdint>
#include <optional>

#include "lowbit/quant/qtensor.h"

namespace lowbit::quant::detail {

enum class IntKernel {
  vnni,      // AVX-512 VNNI (vpdpbusd: u8 x s8 -> s32), chosen at run time; needs seg % 4 == 0
  avx2,      // AVX2 (codes widened to s16, vpmaddwd: s16 x s16 pairs -> s32); needs seg % 2 == 0
  portable,  // plain C++ (int16 x int16 -> int32 loops the compiler vectorizes)
};

const char* int_kernel_name(IntKernel k);

// Whether this CPU (and LOWBIT_MAX_CPU_ISA) allows kernel k at all.
bool int_kernel_allowed(IntKernel k);
// Whether kernel k can run a · bᵀ on this CPU, given that integer_path_supported(a, b).
bool int_kernel_runs(IntKernel k, const QTensor& a, const QTensor& b);

// The fastest SIMD kernel that runs a · bᵀ here (VNNI, then AVX2; both capped by
// LOWBIT_MAX_CPU_ISA), or none.
std::optional<IntKernel> best_int_kernel(const QTensor& a, const QTensor& b);

// y (M, N) = a_dq · b_dqᵀ with kernel k (an Error when !int_kernel_runs(k, a, b)); a (..., K)
// viewed as (M, K). Requires integer_path_supported(a, b).
void int_matmul(const QTensor& a, const QTensor& b, IntKernel k, float* y);

}  // namespace lowbit::quant::detail
