// How a tensor splits into scale groups for each granularity, and the per-group statistics and
// parameters shared by quantize() and fake_quant(). Internal to quant/.
#pragma once
#include <cstdint>
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
  // offset(g, j) == offset(g, 0) + j * stride()
  int64_t stride() const { return block ? C : G * B; }
};

GroupLayout group_layout(const Shape& shape, const QuantSpec& spec);

// Threading of the group loops: at least kManyGroups groups are split over the threads; fewer
// (larger) groups have their runs split into kPiece-element pieces. Below kParallelMin elements
// everything stays serial.
inline constexpr int64_t kParallelMin = 32768;
inline constexpr int64_t kManyGroups = 64;
inline constexpr int64_t kPiece = 16384;

// Whether a kind's parameters read the group's min and max (the others read only amax).
LOWBIT_HD constexpr bool needs_min_max(Kind k) { return k == Kind::int_torchao_asym || k == Kind::uint4_float_zero; }

// Running min, max and amax of a group as integer keys that order like the floats (-0 below
// +0), so the scans vectorize and any split of the group gives the same result. NaN anywhere
// makes all three NaN; an empty group has zeros, and so have min and max when only amax was
// tracked (add<false>).
struct StatsAcc {
  int32_t min_key = INT32_MAX, max_key = INT32_MIN;
  uint32_t amax_bits = 0;  // |x| bits: NaN sorts above Inf
  int64_t count = 0;

  // x: (n) contiguous, any float type.
  template <bool kMinMax = true, class T>
  void add(const T* x, int64_t n) {
    int32_t mn = min_key, mx = max_key;
    uint32_t am = amax_bits;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t b = f32_bits(convert<float>(x[i]));
      const uint32_t a = b & 0x7FFFFFFFu;
      am = a > am ? a : am;
      if constexpr (kMinMax) {
        const auto k = static_cast<int32_t>(b ^ (static_cast<uint32_t>(static_cast<int32_t>(b) >> 31) >> 1));
        mn = k < mn ? k : mn;
        mx = k > mx ? k : mx;
      }
    }
    min_key = mn;
    max_key = mx;
    amax_bits = am;
    count += n;
  }
  void merge(const StatsAcc& o) {
    min_key = o.min_key < min_key ? o.min_key : min_key;
    max_key = o.max_key > max_key ? o.max_key : max_key;
    amax_bits = o.amax_bits > amax_bits ? o.amax_bits : amax_bits;
    count += o.count;
  }
  GroupStats finish() const {
    if (count == 0) return {};
    if (amax_bits > 0x7F800000u) {
      const float nan = f32_from_bits(0x7FC00000u);
      return {nan, nan, nan};
    }
    if (min_key > max_key) return {0.0f, 0.0f, f32_from_bits(amax_bits)};
    auto value = [](int32_t k) {
      const auto b = static_cast<uint32_t>(k);
      return f32_from_bits(b ^ (static_cast<uint32_t>(k >> 31) >> 1));
    };
    return {value(min_key), value(max_key), f32_from_bits(amax_bits)};
  }
};

// x: contiguous data of the layout's tensor (f32 or bf16) -> per-group min, max, amax (min and
// max only when min_max). Deterministic for any thread count.
template <class T>
std::vector<GroupStats> group_stats(const T* x, const GroupLayout& L, bool min_max = true);

// Per-group parameters: from x's statistics (dynamic), from calibrated statistics, or from
// learned scales (params->scale / params->zero_point), per spec.scale_policy.
template <class T>
std::vector<ScaledParams> group_params(const T* x, const GroupLayout& L, const QuantSpec& spec, DType xdtype,
                                       const QParams* params);

// x as contiguous f32 (a view when it already is one).
Tensor as_f32_contiguous(const Tensor& x);

}  // namespace lowbit::quant::detail
