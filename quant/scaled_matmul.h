// The real low-bit matmul on the CPU: y = a_dq · b_dqᵀ straight from packed QTensors, never
// materializing a dequantized operand.
//
// f32-tile path (every format): the output is cut into 256 x 256 blocks, one task each; a task
// walks K in 256-column tiles, decodes the tile of a (if quantized) and of b into per-thread f32
// buffers (256 x 256 each) with the codec's own per-element/per-block functions (so each tile
// holds exactly dequantize()'s values) and accumulates with cpu::gemm (beta = 1 after the first
// tile). Extra memory: two 256 KiB tiles per thread, whatever M, N, K.
//
// Integer path (a int8, b int8 or int4 with symmetric scales; a symmetric or asymmetric with
// integer zero points; scale groups along K of each operand: per tensor / token / channel /
// group / 2-D block): codes are multiplied and summed in int32 per scale-group segment, and the
// scales (and the zero-point correction za · Σ qb) are applied once per segment:
//   y[m, n] += ma · mb · (Σ_k qa[m, k] qb[n, k] − za[m] Σ_k qb[n, k])
// where ma, mb are the dequant multipliers (torchao: scale; modelopt: 1 / s'). Three kernels
// (int_gemm.h), bitwise equal, picked at run time (capped by LOWBIT_MAX_CPU_ISA): AVX-512 VNNI
// (vpdpbusd; segments a multiple of 4 columns), AVX2 (s16 vpmaddwd; segments a multiple of 2)
// and a portable one.
//
// Results of both paths equal dequantize(a) · dequantize(b)ᵀ up to f32 accumulation order
// (tests/quant/scaled_matmul_test.cpp checks the bound 2 γ_(K+4) Σ_k |a_dq||b_dq|,
// γ_n = n u / (1 − n u), u = 2^-24). Deterministic for any thread count: each output block is
// computed by one thread in a fixed K order.
#pragma once
#include "lowbit/engine/tensor.h"
#include "lowbit/quant/qtensor.h"

namespace lowbit::quant {

enum class MatmulPath {
  automatic,  // integer where a SIMD kernel runs (VNNI; AVX2 for int4 weights, or int8 ones
              // from 64 rows on), else f32 tiles (the portable integer kernel is slower than
              // f32 tiles + oneDNN's sgemm; bench/README.md)
  f32_tiles,
  integer,    // the best SIMD kernel, else the portable one; an Error when not integer_path_supported
};

struct ScaledMatmulOptions {
  MatmulPath path = MatmulPath::automatic;
};

// The integer kernel int8 x int8/int4 GEMMs take on this CPU (segments a multiple of 4), e.g.
// "avx512_vnni (vpdpbusd)".
std::string integer_kernel_description();

// Whether the integer path can run a · bᵀ (see above).
bool integer_path_supported(const QTensor& a, const QTensor& b);

// a: (..., K) quantized activations, b: (N, K) quantized weights (HF (out, in)) -> (..., N) f32.
Tensor scaled_matmul(const QTensor& a, const QTensor& b, const ScaledMatmulOptions& opts = {});
// Weight-only presets: a: (..., K) float activations (computed in f32), b: (N, K) -> (..., N) f32.
Tensor scaled_matmul(const Tensor& a, const QTensor& b);

// The input gradient of a real-mode linear layer: dy: (..., N) float, b: (N, K) ->
// (..., K) f32 = dy · dequantize(b), b decoded tile by tile (never whole).
Tensor matmul_dequantized(const Tensor& dy, const QTensor& b);

}  // namespace lowbit::quant
