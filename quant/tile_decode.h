// Tile decoding of a QTensor for the real low-bit matmul (scaled_matmul.h). Internal to quant/.
// A QTensor of shape (..., K) is viewed as rows x K (rows = numel / K). decode_tile writes the
// f32 values of rows [r0, r1) x columns [k0, k1): exactly dequantize()'s values, element for
// element, because it calls the same per-element (dequant_code) and per-block (decode_block)
// functions with the same scales; it only reads the codes and scales of that tile.
#pragma once
#include <cstdint>

#include "lowbit/quant/qtensor.h"

namespace lowbit::quant::detail {

// Checks that q's codes, scales and zero points are CPU tensors of the dtypes and shapes its
// format and spec promise (one-line Error naming `op` otherwise). Returns K = q.shape.back().
int64_t check_qtensor(const QTensor& q, const char* op);

// Alignment decode_tile needs of k0 and k1 (other than k1 == K): the block size for block
// formats, 2 for the nibble formats, else 1.
int64_t tile_k_align(const QTensor& q);

// q viewed as (rows, K): rows [r0, r1) x cols [k0, k1) -> out (r1 - r0, k1 - k0) f32, row
// stride ld. k0 and k1 (unless k1 == K) must be multiples of tile_k_align(q).
void decode_tile(const QTensor& q, int64_t r0, int64_t r1, int64_t k0, int64_t k1, float* out, int64_t ld);

// The integer path: q int8 or int4 (any int kind). Codes of rows [r0, r1) x cols [k0, k1) as
// int16, written transposed: out[(k - k0) * ld + (r - r0)] (ld >= r1 - r0). k0, k1 even for int4.
void decode_codes_transposed(const QTensor& q, int64_t r0, int64_t r1, int64_t k0, int64_t k1, int16_t* out,
                             int64_t ld);

// How q's scale groups run along K, for the integer path: every group covers whole runs of
// `seg` consecutive columns of one row (seg divides K), and the group of (row r, column k) is
// row_base(r) + k / seg where row_base(r) = (r / rdiv) * rmul. ok = false when the granularity
// does not split that way (per_channel on another axis, block2d over several rows is fine:
// rdiv = block_rows).
struct KGroups {
  bool ok = false;
  int64_t seg = 0;
  int64_t rdiv = 1, rmul = 0;
  int64_t group(int64_t r, int64_t k) const { return (r / rdiv) * rmul + k / seg; }
};
KGroups k_groups(const QTensor& q);

}  // namespace lowbit::quant::detail
