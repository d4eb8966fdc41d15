#include <gtest/gtest.h>

#include "lowbit/engine/lowbit.h"

namespace lowbit {
namespace {

Tensor iota(const Shape& shape, DType dt = DType::f32) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return from_vector(v, shape, dt);
}

TEST(Tensor, ContiguousStridesAndNumel) {
  Tensor t = zeros({2, 3, 4});
  EXPECT_EQ(t.strides(), (Strides{12, 4, 1}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.dtype(), DType::f32);
}

TEST(Tensor, TransposeIsAViewWithSwappedStrides) {
  Tensor t = iota({2, 3});
  Tensor u = t.t();
  EXPECT_EQ(u.shape(), (Shape{3, 2}));
  EXPECT_EQ(u.strides(), (Strides{1, 3}));
  EXPECT_EQ(u.storage(), t.storage());
  EXPECT_FALSE(u.is_contiguous());
  EXPECT_EQ(u.contiguous().to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST(Tensor, NarrowSliceSelectShareStorage) {
  Tensor t = iota({4, 5});
  Tensor n = t.narrow(1, 1, 3);
  EXPECT_EQ(n.shape(), (Shape{4, 3}));
  EXPECT_EQ(n.offset(), 1);
  EXPECT_EQ(n.select(0, 2).to_vector<float>(), (std::vector<float>{11, 12, 13}));
  Tensor s = t.slice(0, 0, 4, 2);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 10, 11, 12, 13, 14}));
  EXPECT_THROW(t.narrow(1, 3, 3), Error);
}

TEST(Tensor, ViewReshapeExpandSqueeze) {
  Tensor t = iota({2, 6});
  EXPECT_EQ(t.view({3, -1}).shape(), (Shape{3, 4}));
  EXPECT_THROW(t.view({5, -1}), Error);
  Tensor tt = t.t();  // (6, 2), non-contiguous: view must refuse, reshape copies
  EXPECT_THROW(tt.view({12}), Error);
  EXPECT_EQ(tt.reshape({12}).to_vector<float>()[1], 6.0f);
  Tensor e = iota({3, 1}).expand({2, 3, 4});
  EXPECT_EQ(e.strides(), (Strides{0, 1, 0}));
  EXPECT_EQ(e.contiguous().to_vector<float>()[5], 1.0f);
  EXPECT_EQ(iota({3, 1}).squeeze(1).shape(), (Shape{3}));
  EXPECT_EQ(iota({3}).unsqueeze(0).shape(), (Shape{1, 3}));
  EXPECT_EQ(iota({3}).unsqueeze(-1).shape(), (Shape{3, 1}));
  // A view of a permuted tensor that keeps the permuted dims intact needs no copy.
  Tensor p = iota({2, 3, 4}).permute({1, 0, 2});
  EXPECT_EQ(p.view({3, 2, 2, 2}).storage(), p.storage());
}

TEST(Tensor, BroadcastingAdd) {
  Tensor a = iota({2, 1, 3});
  Tensor b = iota({4, 1});
  Tensor c = a + b;
  EXPECT_EQ(c.shape(), (Shape{2, 4, 3}));
  std::vector<float> v = c.to_vector<float>();
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_EQ(v[1 * 12 + 2 * 3 + 1], 4.0f + 2.0f);
  EXPECT_THROW(iota({2, 3}) + iota({4}), Error);
}

TEST(Tensor, MetaTensorsHaveShapesButNoData) {
  Tensor a = empty({1024, 1024}, DType::f32, kMeta);
  Tensor b = empty({1024}, DType::f32, kMeta);
  Tensor c = add(a, b);
  EXPECT_EQ(c.shape(), (Shape{1024, 1024}));
  EXPECT_TRUE(c.device().is_meta());
  EXPECT_EQ(c.raw_data(), nullptr);
  EXPECT_THROW(c.item(), Error);
}

TEST(Tensor, DeviceMismatchIsAnError) {
  Tensor a = zeros({2});
  Tensor b = empty({2}, DType::f32, kMeta);
  EXPECT_THROW(add(a, b), Error);
}

TEST(Tensor, Fp4PackedLayout) {
  Tensor t = from_vector(std::vector<float>{0.5f, -1.0f, 6.0f, 2.5f}, {2, 2}, DType::fp4_e2m1);
  EXPECT_EQ(dtype_nbytes(t.dtype(), t.numel()), 2);
  const auto* bytes = static_cast<const uint8_t*>(t.raw_data());
  EXPECT_EQ(bytes[0], 0xA1);  // element 0 (0.5 = 0x1) low nibble, element 1 (-1 = 0xA) high nibble
  EXPECT_EQ(bytes[1], 0x47);  // 6 = 0x7 low, 2.5 -> 2 (tie to even) = 0x4 high
  EXPECT_EQ(t.to(DType::f32).to_vector<float>(), (std::vector<float>{0.5f, -1.0f, 6.0f, 2.0f}));
  EXPECT_THROW(t.narrow(1, 1, 1), Error);                 // would split a byte
  EXPECT_THROW(empty({3}, DType::fp4_e2m1), Error);        // odd innermost size
  EXPECT_NO_THROW(t.select(0, 1));                          // whole rows are fine
  EXPECT_THROW(from_vector(std::vector<float>{NAN, 1.f}, {2}, DType::fp4_e2m1), Error);
}

TEST(Tensor, CastsRoundToNearestEven) {
  // 1 + 2^-8 is exactly between bf16 neighbours 1 and 1 + 2^-7: ties to even -> 1.
  Tensor t = from_vector(std::vector<float>{1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 3.4e38f}, {3});
  std::vector<float> v = t.to(DType::bf16).to(DType::f32).to_vector<float>();
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isinf(v[2]));  // 3.4e38 rounds past bf16's max finite
  EXPECT_EQ(from_vector(std::vector<float>{1000.0f}, {1}).to(DType::fp8_e4m3).to(DType::f32).item(), 448.0);
}

TEST(Tensor, PromotionTable) {
  EXPECT_EQ(promote_types(DType::bf16, DType::f16), DType::f32);
  EXPECT_EQ(promote_types(DType::bf16, DType::f32), DType::f32);
  EXPECT_EQ(promote_types(DType::f64, DType::bf16), DType::f64);
  EXPECT_EQ(promote_types(DType::i64, DType::bf16), DType::bf16);
  EXPECT_EQ(promote_types(DType::fp8_e4m3, DType::fp8_e5m2), DType::f32);
  EXPECT_EQ(promote_types(DType::i8, DType::u8), DType::i32);
  EXPECT_EQ((from_vector(std::vector<float>{1}, {1}, DType::bf16) + from_vector(std::vector<float>{1}, {1}, DType::f16)).dtype(),
            DType::f32);
}

TEST(Tensor, BadInputsGiveClearErrors) {
  try {
    (void)iota({2, 3}).permute({0, 0});
    FAIL() << "permute with a repeated dim must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("permute"), std::string::npos);
  }
  EXPECT_THROW(dtype_from_name("f8"), Error);
  EXPECT_THROW(parse_device("gpu"), Error);
  EXPECT_EQ(parse_device("cuda:1"), cuda_device(1));
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

TEST(CpuAllocator, LargeBlocksAreReusedAndCountedOnlyWhileLive) {
  cpu_empty_cache();
  const int64_t live0 = cpu_memory_stats().live_bytes;
  void* first = nullptr;
  {
    Tensor a = empty({1 << 21});  // 8 MiB
    first = a.raw_data();
    EXPECT_EQ(cpu_memory_stats().live_bytes, live0 + (8 << 20));
  }
  EXPECT_EQ(cpu_memory_stats().live_bytes, live0);
#if defined(__SANITIZE_ADDRESS__)
  EXPECT_EQ(cpu_memory_stats().cached_bytes, 0);  // sanitizer builds never cache
#else
  EXPECT_EQ(cpu_memory_stats().cached_bytes, 8 << 20);
  Tensor b = empty({(1 << 21) - 1000});  // same size class: the cached block comes back
  EXPECT_EQ(b.raw_data(), first);
  EXPECT_EQ(cpu_memory_stats().cached_bytes, 0);
#endif
  cpu_empty_cache();
  EXPECT_EQ(cpu_memory_stats().cached_bytes, 0);
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

TEST(Tensor, FloatToIntCastsTruncateAndSaturate) {
  Tensor f = from_vector(std::vector<double>{2.9, -2.9, NAN, 1e20, -1e20, 3e9}, {6}, DType::f64);
  EXPECT_EQ(f.to(DType::i32).to_vector<int32_t>(),
            (std::vector<int32_t>{2, -2, 0, INT32_MAX, INT32_MIN, INT32_MAX}));
  EXPECT_EQ(f.to(DType::u8).to_vector<uint8_t>(), (std::vector<uint8_t>{2, 0, 0, 255, 0, 255}));
  EXPECT_EQ(f.to(DType::i64).to_vector<int64_t>()[5], 3000000000LL);
}

}  // namespace
}  // namespace lowbit
