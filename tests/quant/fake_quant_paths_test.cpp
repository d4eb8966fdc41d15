// The fused fake-quant kernels on tensors large enough for every code path: groups split over
// the threads with dynamic scales computed group by group, many groups with given scales, a
// few large groups split into pieces, strided per-channel groups, 2-D tiles, and block formats
// with a partial last chunk of blocks and poisoned (NaN / Inf) blocks. Each case must equal
// dequantize(quantize(x)) bit for bit, give the same output and mask with 1 and 2 threads, and
// have a mask consistent with the stored codes.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "lowbit/engine/lowbit.h"
#include "lowbit/quant/block_formats.h"
#include "lowbit/quant/fake_quant.h"
#include "lowbit/quant/quantizer.h"

namespace lowbit::quant {
namespace {

std::vector<float> vals(const Tensor& t) { return t.to(DType::f32).contiguous().to_vector<float>(); }

bool same(float a, float b) { return (a != a && b != b) || f32_bits(a) == f32_bits(b); }

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(gen) * (gen() % 64 == 0 ? 30.0f : 1.0f);
  return x;
}

struct FakeRun {
  std::vector<float> out, mask;
};

// fake_quant with the given thread count; the mask is read back through the backward pass.
FakeRun run_fake(const Tensor& x, const QuantSpec& s, const QParams* p, int threads) {
  const int prev = omp_get_max_threads();
  omp_set_num_threads(threads);
  Tensor xi = x.detach().clone().set_requires_grad(true);
  Tensor y = fake_quant(xi, s, p);
  y.backward(ones_like(y));
  omp_set_num_threads(prev);
  return {vals(y), vals(xi.grad())};
}

void expect_same_runs(const FakeRun& a, const FakeRun& b, const std::string& what) {
  ASSERT_EQ(a.out.size(), b.out.size());
  for (size_t i = 0; i < a.out.size(); ++i) {
    ASSERT_TRUE(same(a.out[i], b.out[i])) << what << " element " << i << ": " << a.out[i] << " vs " << b.out[i];
    ASSERT_EQ(a.mask[i], b.mask[i]) << what << " mask element " << i;
  }
}

// Integer codes of a scaled-format QTensor, one per element.
std::vector<int> int_codes(const QTensor& q) {
  const auto* b = static_cast<const uint8_t*>(q.codes.raw_data());
  std::vector<int> out;
  const int64_t n = q.codes.numel();
  if (q.spec.format == Format::int8) {
    for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<int8_t>(b[i]));
  } else {
    for (int64_t i = 0; i < 2 * n; ++i) {
      const int nib = (b[i / 2] >> (4 * (i % 2))) & 0xF;
      out.push_back(q.spec.format == Format::int4 ? (nib >= 8 ? nib - 16 : nib) : nib);
    }
  }
  return out;
}

struct Case {
  std::string name;
  Shape shape;
  QuantSpec spec;
  bool calibrated = false;
};

std::vector<Case> cases() {
  auto spec = [](Format f, Granularity g) {
    QuantSpec s;
    s.format = f;
    s.granularity = g;
    return s;
  };
  std::vector<Case> c;
  c.push_back({"int8 per_tensor (pieces)", {256, 512}, spec(Format::int8, Granularity::per_tensor)});
  c.push_back({"fp8_e5m2 per_tensor (pieces)", {256, 512}, spec(Format::fp8_e5m2, Granularity::per_tensor)});
  Case asym{"int8 asym per_token (fused)", {256, 512}, spec(Format::int8, Granularity::per_token)};
  asym.spec.symmetric = false;
  c.push_back(asym);
  Case g32{"int4 per_group 32 (fused)", {256, 512}, spec(Format::int4, Granularity::per_group)};
  g32.spec.group_size = 32;
  c.push_back(g32);
  Case u4{"uint4 per_group 128 (fused)", {256, 512}, spec(Format::uint4, Granularity::per_group)};
  u4.spec.group_size = 128;
  u4.spec.symmetric = false;
  c.push_back(u4);
  Case ch1{"fp8_e4m3 per_channel axis 1 (strided groups)", {256, 512},
           spec(Format::fp8_e4m3, Granularity::per_channel)};
  ch1.spec.axis = 1;
  c.push_back(ch1);
  Case tiles{"fp8_e4m3 block2d 64x64 (fused tiles)", {2, 128, 512}, spec(Format::fp8_e4m3, Granularity::block2d)};
  tiles.spec.block_rows = tiles.spec.block_cols = 64;
  c.push_back(tiles);
  // 84 tiles, 7 per block row: the 16-tile chunks of the fused path span block rows and layers.
  Case band{"int8 block2d 32x32 (chunks across block rows)", {4, 96, 224}, spec(Format::int8, Granularity::block2d)};
  band.spec.block_rows = band.spec.block_cols = 32;
  c.push_back(band);
  Case g128{"int8 per_group 128 calibrated (constant-length runs, given scales)", {256, 512},
            spec(Format::int8, Granularity::per_group), true};
  g128.spec.group_size = 128;
  g128.spec.scale_policy = ScalePolicy::calibrated;
  c.push_back(g128);
  c.push_back({"int8 per_token, few long rows (pieces)", {8, 20000}, spec(Format::int8, Granularity::per_token)});
  Case cal{"int8 modelopt per_channel calibrated (given scales)", {256, 512},
           spec(Format::int8, Granularity::per_channel), true};
  cal.spec.convention = Convention::modelopt;
  cal.spec.scale_policy = ScalePolicy::calibrated;
  c.push_back(cal);
  Case amax{"int4 per_group 64 clipped_amax", {256, 512}, spec(Format::int4, Granularity::per_group)};
  amax.spec.group_size = 64;
  amax.spec.grad = GradRule::clipped_amax;
  c.push_back(amax);
  return c;
}

TEST(FakeQuantPaths, ScaledFormatsEqualTheCodecOnEveryPath) {
  int seed = 1;
  for (const Case& c : cases())
    for (DType dt : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(c.name + " " + std::string(dtype_name(dt)));
      std::vector<float> xv = random_values(shape_numel(c.shape), static_cast<uint32_t>(seed++));
      xv[3 * 512 + 7] = NAN;  // one poisoned group (per_tensor: the whole tensor)
      if (c.spec.granularity == Granularity::per_tensor || c.calibrated) xv[3 * 512 + 7] = 0.5f;
      const Tensor x = from_vector(xv, c.shape).to(dt);
      std::optional<Quantizer> q;
      if (c.calibrated) {
        q.emplace(c.spec);
        q->begin_calibration();
        q->observe(x);
        q->finish_calibration();
      }
      const QParams* p = q ? &q->params() : nullptr;
      const FakeRun one = run_fake(x, c.spec, p, 1), two = run_fake(x, c.spec, p, 2);
      expect_same_runs(one, two, "1 vs 2 threads");
      // NaN is not an int code: compare against the codec with the poisoned group zeroed there.
      const bool has_nan = !c.calibrated && c.spec.granularity != Granularity::per_tensor;
      const std::vector<float> deq = is_integer_format(c.spec.format) && has_nan
                                         ? std::vector<float>()
                                         : vals(dequantize(quantize(x, c.spec, p), dt));
      for (size_t i = 0; i < deq.size(); ++i)
        ASSERT_TRUE(same(one.out[i], deq[i])) << "fake vs codec at " << i << ": " << one.out[i] << " vs " << deq[i];
      if (!deq.empty() || !has_nan) continue;
      // Integer formats with a NaN group: the clean groups still match the codec of a clean copy.
      std::vector<float> clean = xv;
      clean[3 * 512 + 7] = 0.0f;
      const FakeRun r = run_fake(from_vector(clean, c.shape).to(dt), c.spec, p, 2);
      const std::vector<float> dq = vals(dequantize(quantize(from_vector(clean, c.shape).to(dt), c.spec, p), dt));
      for (size_t i = 0; i < dq.size(); ++i) ASSERT_TRUE(same(r.out[i], dq[i])) << "clean copy at " << i;
      size_t poisoned = 0;
      for (size_t i = 0; i < one.out.size(); ++i) {
        if (std::isnan(one.out[i])) {
          ++poisoned;
          EXPECT_EQ(one.mask[i], 0.0f) << i;
        } else {
          ASSERT_TRUE(same(one.out[i], dq[i])) << "unpoisoned group at " << i;
        }
      }
      EXPECT_GT(poisoned, 0u);
      EXPECT_LE(poisoned, one.out.size() / 8);
    }
}

TEST(FakeQuantPaths, IntMaskIsOneInsideTheCodeRangeAndZeroOnlyAtItsEnds) {
  for (const Case& c : cases()) {
    if (!is_integer_format(c.spec.format) || c.spec.grad != GradRule::clipped_rounded || c.calibrated) continue;
    SCOPED_TRACE(c.name);
    const Tensor x = from_vector(random_values(shape_numel(c.shape), 99), c.shape);
    const FakeRun r = run_fake(x, c.spec, nullptr, 2);
    const std::vector<int> codes = int_codes(quantize(x, c.spec));
    const int qmax = c.spec.format == Format::int8 ? 127 : (c.spec.format == Format::int4 ? 7 : 15);
    const int qmin = c.spec.format == Format::uint4 ? 0 : -qmax - 1;
    for (size_t i = 0; i < codes.size(); ++i) {
      if (r.mask[i] == 0.0f) ASSERT_TRUE(codes[i] == qmin || codes[i] == qmax) << i << " code " << codes[i];
      if (codes[i] > qmin && codes[i] < qmax) ASSERT_EQ(r.mask[i], 1.0f) << i << " code " << codes[i];
    }
  }
}

TEST(FakeQuantPaths, BlockFormatsWithPoisonedBlocksAndAPartialChunk) {
  const Shape shape{37, 96 * 5};  // 555 MX blocks, 1110 NVFP4 blocks: not a multiple of 16
  std::vector<float> xv = random_values(shape_numel(shape), 5);
  xv[100] = NAN;
  xv[3000] = INFINITY;
  xv[shape_numel(shape) - 1] = -INFINITY;
  for (Format f : {Format::nvfp4, Format::mxfp4, Format::mxfp8, Format::gguf_q4_0, Format::gguf_q8_0})
    for (DType dt : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(format_name(f) + " " + std::string(dtype_name(dt)));
      QuantSpec s;
      s.format = f;
      s.granularity = Granularity::per_group;
      s.group_size = f == Format::nvfp4 ? 16 : 32;
      const Tensor x = from_vector(xv, shape).to(dt);
      const FakeRun one = run_fake(x, s, nullptr, 1), two = run_fake(x, s, nullptr, 2);
      expect_same_runs(one, two, "1 vs 2 threads");
      const std::vector<float> deq = vals(dequantize(quantize(x, s), dt));
      const int bs = static_cast<int>(s.group_size);
      for (size_t i = 0; i < deq.size(); ++i) {
        ASSERT_TRUE(same(one.out[i], deq[i])) << "fake vs codec at " << i << ": " << one.out[i] << " vs " << deq[i];
        const size_t b = i / static_cast<size_t>(bs);
        const bool poisoned = b == 100 / bs || b == 3000 / bs || b == deq.size() / bs - 1;
        ASSERT_EQ(std::isnan(one.out[i]), poisoned) << i;
        if (poisoned) ASSERT_EQ(one.mask[i], 0.0f) << i;
      }
    }
}

}  // namespace
}  // namespace lowbit::quant
