// How a tensor splits into scale groups for each granularity, and the per-group statistics and
// parameters shared by quantize() and fake_quant(). Internal to quant/.
#pragma once
#include <vector>

#include "lowbit/engine/tensor.h"
#include "lowbit/quant/qtensor.h"
#include "lowbit/quant/scaled_codecs.h"

namespace lowbit::quant::detail {

// Group g consists of `segs` runs of `seg_len` contiguous elements of the flattened tensor.
//   axis form  (per_tensor, per_channel, per_token, per_group): x viewed as (A, G, B); group g
//              is x[:, g, :], run j = x[j, g, :]
//   block form (block2d): x viewed as (L, R, C); group (l, rb, cb) is a br x bc tile, run j = row j
struct GroupLayout {
  int64_t groups = 1, segs = 1, seg_len = 0;
  bool block = false;
  int64_t A = 1, G = 1, B = 0;                        // axis form
  int64_t R = 0, C = 0, br = 0, bc = 0, nrb = 0, ncb = 0;  // block form

  int64_t offset(int64_t g, int64_t j) const {
    if (!block) return j * G * B + g * B;
    const int64_t l = g / (nrb * ncb), rb = (g / ncb) % nrb, cb = g % ncb;
    return l * R * C + (rb * br + j) * C + cb * bc;
  }
};

GroupLayout group_layout(const Shape& shape, const QuantSpec& spec);

// x: contiguous f32 data of the layout's tensor -> per-group min, max, amax. NaN propagates
// into amax (a NaN group stays NaN), deterministic for any thread count.
std::vector<GroupStats> group_stats(const float* x, const GroupLayout& L);

// Per-group parameters: from x's statistics (dynamic), from calibrated statistics, or from
// learned scales (params->scale / params->zero_point), per spec.scale_policy.
std::vector<ScaledParams> group_params(const float* x, const GroupLayout& L, const QuantSpec& spec, DType xdtype,
                                       const QParams* params);

// x as contiguous f32 (a view when it already is one).
Tensor as_f32_contiguous(const Tensor& x);

}  // namespace lowbit::quant::detail
