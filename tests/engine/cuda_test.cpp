// CUDA backend tests. The caching allocator's bookkeeping (BlockCache: size classes, best fit,
// splitting, merging, per-device pools, stats, out-of-memory retry, thread safety) runs on every
// machine against a fake segment source whose addresses are never dereferenced. Tests that need
// a GPU skip when cuda_device_count() == 0; in builds without CUDA only the host tests run.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lowbit/engine/cuda/block_cache.h"
#include "lowbit/engine/cuda/device.h"
#include "lowbit/engine/error.h"

#if defined(LOWBIT_HAVE_CUDA)
#include <cuda_runtime_api.h>

#include <memory>

#include "lowbit/engine/cuda/caching_allocator.h"
#include "lowbit/engine/cuda/cast_kernels.h"
#include "lowbit/engine/cuda/cuda_check.h"
#include "lowbit/engine/device_copy.h"
#include "lowbit/engine/dtype.h"
#include "lowbit/engine/scalar_types.h"
#include "lowbit/engine/storage.h"
#endif

namespace lowbit {
namespace {

constexpr size_t KiB = size_t{1} << 10;
constexpr size_t MiB = size_t{1} << 20;

// Hands out addresses from a private range, 2 MiB aligned with a gap after each segment so two
// segments are never adjacent. `capacity` bounds the live bytes to simulate a full device.
class FakeSource final : public SegmentSource {
 public:
  explicit FakeSource(size_t capacity = std::numeric_limits<size_t>::max()) : capacity_(capacity) {}

  void* allocate(int device, size_t nbytes) override {
    std::lock_guard lock(mu_);
    if (nbytes > capacity_ - live_bytes_) {
      ++failed_;
      return nullptr;
    }
    const uintptr_t address = next_;
    next_ += (nbytes + 2 * MiB - 1) / (2 * MiB) * (2 * MiB) + 2 * MiB;
    segments_[address] = {device, nbytes};
    live_bytes_ += nbytes;
    return reinterpret_cast<void*>(address);
  }

  void free(int device, void* p, size_t nbytes) override {
    std::lock_guard lock(mu_);
    auto it = segments_.find(reinterpret_cast<uintptr_t>(p));
    ASSERT_NE(it, segments_.end()) << "segment " << p << " was not handed out";
    EXPECT_EQ(it->second.device, device);
    EXPECT_EQ(it->second.nbytes, nbytes);
    live_bytes_ -= nbytes;
    segments_.erase(it);
  }

  size_t live_bytes() const {
    std::lock_guard lock(mu_);
    return live_bytes_;
  }
  size_t live_segments() const {
    std::lock_guard lock(mu_);
    return segments_.size();
  }
  int failed() const {
    std::lock_guard lock(mu_);
    return failed_;
  }

 private:
  struct Segment {
    int device;
    size_t nbytes;
  };
  mutable std::mutex mu_;
  size_t capacity_;
  size_t live_bytes_ = 0;
  int failed_ = 0;
  uintptr_t next_ = uintptr_t{1} << 32;
  std::map<uintptr_t, Segment> segments_;
};

uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// ---- BlockCache: host-only, runs everywhere ----

TEST(CudaBlockCache, RoundsRequestsToSizeClasses) {
  static_assert(BlockCache::round_size(1) == 512);
  EXPECT_EQ(BlockCache::round_size(512), 512u);
  EXPECT_EQ(BlockCache::round_size(513), 1024u);
  EXPECT_EQ(BlockCache::round_size(MiB), MiB);
  EXPECT_EQ(BlockCache::round_size(MiB + 1), MiB + 512);
  EXPECT_TRUE(BlockCache::is_small(MiB));
  EXPECT_FALSE(BlockCache::is_small(MiB + 512));
  EXPECT_EQ(BlockCache::segment_size(512), 2 * MiB);
  EXPECT_EQ(BlockCache::segment_size(MiB), 2 * MiB);
  EXPECT_EQ(BlockCache::segment_size(MiB + 512), 2 * MiB);
  EXPECT_EQ(BlockCache::segment_size(2 * MiB), 2 * MiB);
  EXPECT_EQ(BlockCache::segment_size(2 * MiB + 512), 4 * MiB);
  EXPECT_EQ(BlockCache::segment_size(10 * MiB), 10 * MiB);
}

TEST(CudaBlockCache, SmallRequestsShareOneSegment) {
  FakeSource source;
  BlockCache cache(source);
  void* a = cache.allocate(0, 1000);
  void* b = cache.allocate(0, 1000);
  EXPECT_EQ(addr(b), addr(a) + 1024);
  const BlockCacheStats s = cache.stats(0);
  EXPECT_EQ(s.num_device_allocs, 1);
  EXPECT_EQ(s.num_allocations, 2);
  EXPECT_EQ(s.reserved_bytes, int64_t(2 * MiB));
  EXPECT_EQ(s.allocated_bytes, 2048);
  EXPECT_EQ(s.requested_bytes, 2000);

  const auto snap = cache.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_TRUE(snap[0].small);
  EXPECT_EQ(snap[0].address, addr(a));
  EXPECT_EQ(snap[0].size, 2 * MiB);
  ASSERT_EQ(snap[0].blocks.size(), 3u);
  EXPECT_TRUE(snap[0].blocks[0].allocated);
  EXPECT_TRUE(snap[0].blocks[1].allocated);
  EXPECT_FALSE(snap[0].blocks[2].allocated);
  EXPECT_EQ(snap[0].blocks[2].size, 2 * MiB - 2048);
  cache.free(a);
  cache.free(b);
}

TEST(CudaBlockCache, ReusesFreedBlocksByBestFitThenLowestAddress) {
  FakeSource source;
  BlockCache cache(source);
  void* a = cache.allocate(0, 512);
  void* b = cache.allocate(0, 512);
  void* c = cache.allocate(0, 2048);
  void* d = cache.allocate(0, 512);
  cache.free(a);  // holes: a (512), c (2048), and the segment's tail
  cache.free(c);
  void* e = cache.allocate(0, 1500);  // 1536: the 2048 hole fits best; 512 are split off
  EXPECT_EQ(e, c);
  void* f = cache.allocate(0, 100);  // two 512 holes (a and c + 1536): the lower address wins
  EXPECT_EQ(f, a);
  void* g = cache.allocate(0, 512);
  EXPECT_EQ(addr(g), addr(c) + 1536);
  EXPECT_EQ(cache.stats(0).num_device_allocs, 1);
  EXPECT_EQ(source.live_segments(), 1u);
  for (void* p : {b, d, e, f, g}) cache.free(p);
}

TEST(CudaBlockCache, FreeMergesNeighboursAndReleaseReturnsWholeSegments) {
  FakeSource source;
  BlockCache cache(source);
  std::vector<void*> ps;
  for (int i = 0; i < 6; ++i) ps.push_back(cache.allocate(0, 4 * KiB));
  for (int i : {1, 4, 2, 0, 5}) cache.free(ps[static_cast<size_t>(i)]);

  cache.release_cached();  // ps[3] still lives in the segment: nothing to release
  EXPECT_EQ(cache.stats(0).reserved_bytes, int64_t(2 * MiB));
  EXPECT_EQ(source.live_segments(), 1u);
  auto snap = cache.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  ASSERT_EQ(snap[0].blocks.size(), 3u);  // [free 12 KiB][ps[3]][free tail]
  EXPECT_EQ(snap[0].blocks[0].size, 12 * KiB);
  EXPECT_TRUE(snap[0].blocks[1].allocated);

  cache.free(ps[3]);
  snap = cache.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  ASSERT_EQ(snap[0].blocks.size(), 1u);
  EXPECT_EQ(snap[0].blocks[0].size, 2 * MiB);
  EXPECT_FALSE(snap[0].blocks[0].allocated);

  cache.release_cached();
  const BlockCacheStats s = cache.stats(0);
  EXPECT_EQ(s.reserved_bytes, 0);
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.requested_bytes, 0);
  EXPECT_EQ(s.num_device_frees, 1);
  EXPECT_EQ(source.live_segments(), 0u);
  EXPECT_TRUE(cache.snapshot().empty());
}

TEST(CudaBlockCache, LargeRequestsGetRoundedSegmentsAndSplitOnlyLargeRemainders) {
  FakeSource source;
  BlockCache cache(source);
  void* a = cache.allocate(0, 1536 * KiB);  // 2 MiB segment; the 512 KiB rest is not split off
  EXPECT_EQ(cache.stats(0).allocated_bytes, int64_t(2 * MiB));
  cache.free(a);
  void* b = cache.allocate(0, 1200 * KiB);
  EXPECT_EQ(b, a);
  EXPECT_EQ(cache.stats(0).num_device_allocs, 1);

  void* big = cache.allocate(0, 10 * MiB);
  EXPECT_EQ(cache.stats(0).num_device_allocs, 2);
  EXPECT_EQ(cache.stats(0).reserved_bytes, int64_t(12 * MiB));
  cache.free(big);
  void* c = cache.allocate(0, 3 * MiB);  // reuses the 10 MiB segment: 7 MiB split off
  EXPECT_EQ(c, big);
  void* d = cache.allocate(0, 2 * MiB);
  EXPECT_EQ(addr(d), addr(big) + 3 * MiB);
  const BlockCacheStats s = cache.stats(0);
  EXPECT_EQ(s.num_device_allocs, 2);
  EXPECT_EQ(s.allocated_bytes, int64_t(7 * MiB));
  auto snap = cache.snapshot();
  ASSERT_EQ(snap.size(), 2u);
  const SegmentInfo& seg = snap[0].address == addr(big) ? snap[0] : snap[1];
  EXPECT_FALSE(seg.small);
  ASSERT_EQ(seg.blocks.size(), 3u);
  EXPECT_EQ(seg.blocks[2].size, 5 * MiB);
  for (void* p : {b, c, d}) cache.free(p);
}

TEST(CudaBlockCache, SmallAndLargePoolsAreSeparate) {
  FakeSource source;
  BlockCache cache(source);
  void* big = cache.allocate(0, 4 * MiB);
  cache.free(big);
  void* small = cache.allocate(0, 100);  // the free 4 MiB large block is not carved up
  EXPECT_EQ(cache.stats(0).num_device_allocs, 2);
  EXPECT_TRUE(addr(small) < addr(big) || addr(small) >= addr(big) + 4 * MiB);
  void* mid = cache.allocate(0, MiB + 1);  // large pool: takes the cached 4 MiB block
  EXPECT_EQ(mid, big);
  EXPECT_EQ(cache.stats(0).num_device_allocs, 2);
  cache.free(small);
  cache.free(mid);
}

TEST(CudaBlockCache, DevicesHaveSeparatePoolsAndStats) {
  FakeSource source;
  BlockCache cache(source);
  void* a0 = cache.allocate(0, 4096);
  cache.free(a0);
  void* a1 = cache.allocate(1, 4096);  // device 0's cached block is not used for device 1
  EXPECT_NE(a1, a0);
  EXPECT_EQ(cache.stats(0).allocated_bytes, 0);
  EXPECT_EQ(cache.stats(0).reserved_bytes, int64_t(2 * MiB));
  EXPECT_EQ(cache.stats(1).allocated_bytes, 4096);
  EXPECT_EQ(cache.stats(1).num_device_allocs, 1);
  EXPECT_EQ(cache.stats(7).reserved_bytes, 0);  // never used
  const auto snap = cache.snapshot();
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap[0].device, 0);
  EXPECT_EQ(snap[1].device, 1);

  cache.release_cached(0);
  EXPECT_EQ(cache.stats(0).reserved_bytes, 0);
  EXPECT_EQ(cache.stats(1).reserved_bytes, int64_t(2 * MiB));
  cache.free(a1);
  EXPECT_EQ(cache.stats(1).allocated_bytes, 0);
  EXPECT_THROW(cache.allocate(-1, 16), Error);
}

TEST(CudaBlockCache, TracksAndResetsPeaks) {
  FakeSource source;
  BlockCache cache(source);
  void* a = cache.allocate(0, MiB);
  void* b = cache.allocate(0, MiB);
  EXPECT_EQ(cache.stats(0).peak_allocated_bytes, int64_t(2 * MiB));
  cache.free(a);
  BlockCacheStats s = cache.stats(0);
  EXPECT_EQ(s.allocated_bytes, int64_t(MiB));
  EXPECT_EQ(s.peak_allocated_bytes, int64_t(2 * MiB));
  cache.reset_peak_stats(0);
  s = cache.stats(0);
  EXPECT_EQ(s.peak_allocated_bytes, int64_t(MiB));
  EXPECT_EQ(s.peak_reserved_bytes, int64_t(2 * MiB));
  cache.free(b);
}

TEST(CudaBlockCache, ReleasesCachedSegmentsAndRetriesWhenTheDeviceIsFull) {
  FakeSource source(6 * MiB);
  BlockCache cache(source);
  cache.free(cache.allocate(0, 100));  // leaves a cached 2 MiB small segment
  void* big = cache.allocate(0, 5 * MiB);  // a 6 MiB segment fits only once the cache is released
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(source.failed(), 1);
  BlockCacheStats s = cache.stats(0);
  EXPECT_EQ(s.num_device_allocs, 2);
  EXPECT_EQ(s.num_device_frees, 1);
  EXPECT_EQ(s.reserved_bytes, int64_t(6 * MiB));

  try {
    cache.allocate(0, 100);
    FAIL() << "expected an out-of-memory error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  s = cache.stats(0);  // the failure leaves the bookkeeping unchanged
  EXPECT_EQ(s.allocated_bytes, int64_t(6 * MiB));
  EXPECT_EQ(s.reserved_bytes, int64_t(6 * MiB));
  cache.free(big);
  cache.release_cached();
  EXPECT_EQ(source.live_bytes(), 0u);
}

TEST(CudaBlockCache, ZeroBytesAndForeignPointers) {
  FakeSource source;
  BlockCache cache(source);
  EXPECT_EQ(cache.allocate(0, 0), nullptr);
  EXPECT_EQ(cache.stats(0).num_allocations, 0);
  EXPECT_NO_THROW(cache.free(nullptr));
  void* a = cache.allocate(0, 4096);
  EXPECT_THROW(cache.free(reinterpret_cast<void*>(addr(a) + 512)), Error);  // interior pointer
  EXPECT_THROW(cache.free(reinterpret_cast<void*>(uintptr_t{0x1000})), Error);
  EXPECT_THROW(cache.allocate(0, std::numeric_limits<size_t>::max()), Error);
  cache.free(a);
  EXPECT_THROW(cache.free(a), Error);  // double free
}

TEST(CudaBlockCache, ConcurrentUseKeepsLiveBlocksDisjoint) {
  FakeSource source;
  BlockCache cache(source);
  std::mutex live_mu;
  std::map<uintptr_t, uintptr_t> live;  // start -> end of every live block, across threads
  std::atomic<int> overlaps{0};

  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::pair<void*, size_t>> mine;
    for (int op = 0; op < 3000; ++op) {
      if (mine.empty() || rng() % 3 != 0) {
        const size_t n = rng() % 8 == 0 ? MiB + rng() % (3 * MiB) : 1 + rng() % (64 * KiB);
        const int device = static_cast<int>(rng() % 2);
        void* p = cache.allocate(device, n);
        const uintptr_t begin = addr(p), end = begin + BlockCache::round_size(n);
        {
          std::lock_guard lock(live_mu);
          auto next = live.lower_bound(begin);
          if (next != live.end() && next->first < end) ++overlaps;
          if (next != live.begin() && std::prev(next)->second > begin) ++overlaps;
          live[begin] = end;
        }
        mine.emplace_back(p, n);
      } else {
        const size_t i = rng() % mine.size();
        {
          std::lock_guard lock(live_mu);
          live.erase(addr(mine[i].first));
        }
        cache.free(mine[i].first);
        mine[i] = mine.back();
        mine.pop_back();
      }
    }
    for (auto& [p, n] : mine) {
      {
        std::lock_guard lock(live_mu);
        live.erase(addr(p));
      }
      cache.free(p);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, 1234u + t);
  for (auto& t : threads) t.join();

  EXPECT_EQ(overlaps.load(), 0);
  for (int device : {0, 1}) {
    EXPECT_EQ(cache.stats(device).allocated_bytes, 0);
    EXPECT_EQ(cache.stats(device).requested_bytes, 0);
  }
  for (const SegmentInfo& seg : cache.snapshot()) {  // everything merged back
    ASSERT_EQ(seg.blocks.size(), 1u);
    EXPECT_FALSE(seg.blocks[0].allocated);
  }
  cache.release_cached();
  EXPECT_EQ(source.live_segments(), 0u);
  EXPECT_EQ(cache.stats(0).reserved_bytes + cache.stats(1).reserved_bytes, 0);
}

// ---- Device discovery: runs everywhere, including builds without CUDA ----

TEST(CudaDevice, CountNeverThrows) {
  int n = -1;
  EXPECT_NO_THROW(n = cuda_device_count());
  EXPECT_GE(n, 0);
  EXPECT_EQ(cuda_device_count(), n);
  EXPECT_EQ(cuda_available(), n > 0);
}

#if defined(LOWBIT_HAVE_CUDA)

#define LOWBIT_SKIP_WITHOUT_CUDA_DEVICE() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

struct CudaDeleter {
  void operator()(void* p) const { cuda_free(p); }
};
using CudaBuffer = std::unique_ptr<void, CudaDeleter>;

// ---- No GPU needed ----

TEST(CudaCheck, ThrowsErrorWithLocationCallAndMessage) {
  EXPECT_NO_THROW(LOWBIT_CUDA_CHECK(cudaSuccess));
  try {
    LOWBIT_CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "expected lowbit::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cuda_test.cpp:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("CUDA call cudaErrorInvalidValue failed"), std::string::npos) << msg;
    EXPECT_NE(msg.find(cudaGetErrorString(cudaErrorInvalidValue)), std::string::npos) << msg;
  }
}

TEST(CudaBackend, RegisteredByLinkingTheLibrary) {
  Allocator* a = get_allocator(DeviceType::CUDA);
  EXPECT_NE(a, nullptr);
  register_cuda_backend();  // idempotent
  EXPECT_EQ(get_allocator(DeviceType::CUDA), a);
}

TEST(CudaBackend, FailsCleanlyWithoutADevice) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW(cuda_device_properties(0), Error);
  EXPECT_THROW(cuda_current_device(), Error);
  EXPECT_THROW(cuda_set_device(0), Error);
  EXPECT_THROW(CudaDeviceGuard guard(0), Error);
  EXPECT_EQ(cuda_allocate(0, 0), nullptr);
  EXPECT_THROW(cuda_allocate(16, 0), Error);
  EXPECT_THROW({ Storage s(16, cuda_device(0)); }, Error);
  float host[4] = {};
  float* fake_device = host;
  EXPECT_THROW(device_copy_bytes(fake_device, cuda_device(0), host, kCPU, sizeof(host)), Error);
  EXPECT_NO_THROW(cuda_empty_cache());
  EXPECT_EQ(cuda_memory_stats(0).reserved_bytes, 0);
}

TEST(CudaCast, RejectsUnsupportedDtypesAndCounts) {
  EXPECT_THROW(cuda_cast_f32_to(DType::f32, nullptr, nullptr, 0), Error);
  EXPECT_THROW(cuda_cast_f32_to(DType::fp4_e2m1, nullptr, nullptr, 0), Error);
  EXPECT_THROW(cuda_cast_to_f32(DType::i8, nullptr, nullptr, 0), Error);
  EXPECT_THROW(cuda_cast_f32_to(DType::bf16, nullptr, nullptr, -1), Error);
  EXPECT_THROW(cuda_cast_f32_to(DType::bf16, nullptr, nullptr, 4), Error);
  EXPECT_NO_THROW(cuda_cast_f32_to(DType::bf16, nullptr, nullptr, 0));  // no launch, no device needed
}

// ---- Need a GPU ----

TEST(CudaDevice, PropertiesAndGuard) {
  LOWBIT_SKIP_WITHOUT_CUDA_DEVICE();
  const CudaDeviceProperties p = cuda_device_properties(0);
  EXPECT_FALSE(p.name.empty());
  EXPECT_GE(p.major, 7);
  EXPECT_GT(p.total_memory, 0);
  EXPECT_GT(p.multiprocessor_count, 0);
  EXPECT_EQ(p.warp_size, 32);
  EXPECT_THROW(cuda_device_properties(cuda_device_count()), Error);
  EXPECT_THROW(cuda_set_device(-1), Error);

  const int before = cuda_current_device();
  {
    CudaDeviceGuard guard(cuda_device_count() - 1);
    EXPECT_EQ(cuda_current_device(), cuda_device_count() - 1);
  }
  EXPECT_EQ(cuda_current_device(), before);
}

TEST(CudaAllocator, ReusesFreedBlocksAndCountsDeviceAllocations) {
  LOWBIT_SKIP_WITHOUT_CUDA_DEVICE();
  cuda_empty_cache();
  const BlockCacheStats before = cuda_memory_stats(0);
  void* p = cuda_allocate(1000, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(addr(p) % 512, 0u);
  cuda_free(p);
  void* q = cuda_allocate(900, 0);
  EXPECT_EQ(q, p);
  const BlockCacheStats after = cuda_memory_stats(0);
  EXPECT_LE(after.num_device_allocs - before.num_device_allocs, 1);
  EXPECT_EQ(after.allocated_bytes - before.allocated_bytes, 1024);
  cuda_free(q);
  cuda_empty_cache();
  EXPECT_EQ(cuda_memory_stats(0).reserved_bytes, before.reserved_bytes);
}

TEST(CudaAllocator, StorageRoundTripsThroughDeviceCopies) {
  LOWBIT_SKIP_WITHOUT_CUDA_DEVICE();
  constexpr size_t n = 10000;
  Storage host(n * sizeof(float), kCPU), back(n * sizeof(float), kCPU);
  auto* h = static_cast<float*>(host.data());
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>(i) * 0.5f - 7.0f;
  {
    Storage d1(n * sizeof(float), cuda_device(0)), d2(n * sizeof(float), cuda_device(0));
    EXPECT_GE(cuda_memory_stats(0).allocated_bytes, int64_t(2 * n * sizeof(float)));
    device_copy_bytes(d1.data(), d1.device(), host.data(), kCPU, n * sizeof(float));
    device_copy_bytes(d2.data(), d2.device(), d1.data(), d1.device(), n * sizeof(float));
    device_copy_bytes(back.data(), kCPU, d2.data(), d2.device(), n * sizeof(float));
  }
  EXPECT_EQ(std::memcmp(host.data(), back.data(), n * sizeof(float)), 0);
}

// f32 inputs covering every exponent, both signs, subnormals, ties, overflow, inf and NaN.
std::vector<float> cast_inputs() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 448.0f, 464.0f, 480.0f, 1e9f, -1e9f, 57344.0f, 61440.0f,
                          65504.0f, 65520.0f, 1e-8f, -1e-8f, 1.00390625f, 1.01171875f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min()};
  for (uint32_t i = 0; i < (1u << 16); ++i) {
    const uint32_t bits = i * 65537u + (i & 0xFFu);
    float f;
    std::memcpy(&f, &bits, 4);
    v.push_back(f);
  }
  return v;
}

template <class T>
void expect_cast_matches_host(DType dtype) {
  SCOPED_TRACE(std::string(dtype_name(dtype)));
  const std::vector<float> in = cast_inputs();
  const auto n = static_cast<int64_t>(in.size());
  CudaBuffer d_in(cuda_allocate(in.size() * sizeof(float), 0));
  CudaBuffer d_out(cuda_allocate(in.size() * sizeof(T), 0));
  LOWBIT_CUDA_CHECK(cudaMemcpy(d_in.get(), in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice));
  cuda_cast_f32_to(dtype, static_cast<const float*>(d_in.get()), d_out.get(), n);
  std::vector<T> got(in.size());
  LOWBIT_CUDA_CHECK(cudaMemcpy(got.data(), d_out.get(), in.size() * sizeof(T), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < in.size(); ++i) {
    const T want = convert<T>(in[i]);
    ASSERT_EQ(std::memcmp(&got[i], &want, sizeof(T)), 0) << "input " << in[i];
  }

  // Widening every code of the format back to f32.
  const size_t codes = size_t{1} << (8 * sizeof(T));
  std::vector<T> all(codes);
  for (size_t c = 0; c < codes; ++c) std::memcpy(&all[c], &c, sizeof(T));  // little-endian low bytes
  CudaBuffer d_codes(cuda_allocate(codes * sizeof(T), 0));
  CudaBuffer d_wide(cuda_allocate(codes * sizeof(float), 0));
  LOWBIT_CUDA_CHECK(cudaMemcpy(d_codes.get(), all.data(), codes * sizeof(T), cudaMemcpyHostToDevice));
  cuda_cast_to_f32(dtype, d_codes.get(), static_cast<float*>(d_wide.get()), static_cast<int64_t>(codes));
  std::vector<float> wide(codes);
  LOWBIT_CUDA_CHECK(cudaMemcpy(wide.data(), d_wide.get(), codes * sizeof(float), cudaMemcpyDeviceToHost));
  for (size_t c = 0; c < codes; ++c) {
    const float want = convert<float>(all[c]);
    ASSERT_EQ(std::memcmp(&wide[c], &want, sizeof(float)), 0) << "code " << c;
  }
}

TEST(CudaCast, MatchesHostCodecsBitForBit) {
  LOWBIT_SKIP_WITHOUT_CUDA_DEVICE();
  expect_cast_matches_host<BFloat16>(DType::bf16);
  expect_cast_matches_host<Half>(DType::f16);
  expect_cast_matches_host<Float8E4M3>(DType::fp8_e4m3);
  expect_cast_matches_host<Float8E5M2>(DType::fp8_e5m2);
}

#else

TEST(CudaBackend, NotBuilt) { GTEST_SKIP() << "lowbit was built without CUDA"; }

#endif

}  // namespace
}  // namespace lowbit
