// BlockCache: the host-only bookkeeping of the CUDA caching allocator. It never touches device
// memory, so tests drive it with fake addresses on machines without a GPU; it is header-only
// because engine/cuda/*.cpp is compiled only in CUDA builds, and the tests must run in all.
//
// Size classes: a request is rounded up to a multiple of 512 bytes. Requests up to 1 MiB are
// served from the small pool, whose segments are 2 MiB; larger ones from the large pool, whose
// segments are the request rounded up to 2 MiB. A segment is one device allocation (cudaMalloc)
// carved into blocks. Free blocks sit in per-device, per-pool sets ordered by (size, address):
// allocation takes the best fit, lowest address among equal sizes, and splits off the remainder
// when it is a useful block of its pool (>= 512 bytes in the small pool, > 1 MiB in the large
// pool, so large segments do not fragment into small pieces). A freed block merges with free
// neighbours of its segment. Segments return to the device only in release_cached(), or, for the
// device that ran out, just before a failed device allocation is retried.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lowbit/engine/error.h"

namespace lowbit {

// Where segments come from: cudaMalloc/cudaFree in the CUDA allocator, a fake range in tests.
struct SegmentSource {
  virtual ~SegmentSource() = default;
  // Returns nullptr when the device is out of memory; throws lowbit::Error on other failures.
  virtual void* allocate(int device, size_t nbytes) = 0;
  virtual void free(int device, void* p, size_t nbytes) = 0;
};

struct BlockCacheStats {
  int64_t allocated_bytes = 0;  // rounded sizes of live blocks
  int64_t requested_bytes = 0;  // sizes the callers asked for, of live blocks
  int64_t reserved_bytes = 0;   // segments held from the device
  int64_t peak_allocated_bytes = 0;
  int64_t peak_reserved_bytes = 0;
  int64_t num_allocations = 0;     // requests served, from the cache or not
  int64_t num_device_allocs = 0;   // successful segment allocations (cudaMalloc calls)
  int64_t num_device_frees = 0;    // segments returned (cudaFree calls)
};

struct BlockInfo {
  uintptr_t address = 0;
  size_t size = 0;
  bool allocated = false;
};

struct SegmentInfo {
  int device = 0;
  bool small = false;  // small pool (2 MiB segments) or large pool
  uintptr_t address = 0;
  size_t size = 0;
  std::vector<BlockInfo> blocks;  // in address order, covering the segment exactly
};

class BlockCache {
 public:
  static constexpr size_t kMinBlockSize = 512;
  static constexpr size_t kSmallRequest = size_t{1} << 20;  // largest request of the small pool
  static constexpr size_t kSmallSegment = size_t{2} << 20;
  static constexpr size_t kLargeSegmentRound = size_t{2} << 20;
  static constexpr size_t kMaxRequest = std::numeric_limits<size_t>::max() / 2;

  static constexpr size_t round_size(size_t nbytes) {
    return nbytes <= kMinBlockSize ? kMinBlockSize : (nbytes + kMinBlockSize - 1) / kMinBlockSize * kMinBlockSize;
  }
  static constexpr bool is_small(size_t rounded) { return rounded <= kSmallRequest; }
  // Bytes of the segment allocated from the device when no cached block fits `rounded`.
  static constexpr size_t segment_size(size_t rounded) {
    return is_small(rounded) ? kSmallSegment
                             : (rounded + kLargeSegmentRound - 1) / kLargeSegmentRound * kLargeSegmentRound;
  }

  explicit BlockCache(SegmentSource& source) : source_(source) {}
  // Frees the bookkeeping only: segments still held are not returned to the source (the CUDA
  // allocator lives for the whole process; tests call release_cached() first).
  ~BlockCache();
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // Returns nullptr for 0 bytes; throws lowbit::Error when the device is out of memory even
  // after releasing that device's cached segments.
  void* allocate(int device, size_t nbytes);
  // Accepts nullptr; throws lowbit::Error for a pointer that allocate() did not return.
  void free(void* p);
  // Returns every fully free segment (of one device, or of all) to the source.
  void release_cached();
  void release_cached(int device);

  BlockCacheStats stats(int device) const;
  void reset_peak_stats(int device);
  // All segments, ordered by (device, address).
  std::vector<SegmentInfo> snapshot() const;

 private:
  struct Block {
    int device = 0;
    bool small = false;
    uintptr_t address = 0;
    size_t size = 0;
    size_t requested = 0;
    bool allocated = false;
    Block* prev = nullptr;  // neighbours inside the same segment
    Block* next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->address < b->address;
    }
  };
  using FreeSet = std::set<Block*, BySizeThenAddress>;
  struct DeviceState {
    FreeSet small_free, large_free;
    BlockCacheStats stats;
    FreeSet& pool(bool small) { return small ? small_free : large_free; }
  };

  DeviceState& state(int device);
  Block* take_best_fit(DeviceState& st, bool small, size_t size);
  Block* new_segment(int device, DeviceState& st, bool small, size_t size);
  void split(DeviceState& st, Block* b, size_t size);
  void release_free_segments(int device, DeviceState& st);

  SegmentSource& source_;
  mutable std::mutex mu_;
  std::vector<DeviceState> devices_;
  std::unordered_map<uintptr_t, Block*> live_;
};

inline BlockCache::~BlockCache() {
  for (auto& [address, b] : live_) delete b;
  for (DeviceState& st : devices_) {
    for (Block* b : st.small_free) delete b;
    for (Block* b : st.large_free) delete b;
  }
}

inline BlockCache::DeviceState& BlockCache::state(int device) {
  LOWBIT_CHECK(device >= 0, "cuda allocator: invalid device index ", device);
  if (static_cast<size_t>(device) >= devices_.size()) devices_.resize(static_cast<size_t>(device) + 1);
  return devices_[static_cast<size_t>(device)];
}

inline BlockCache::Block* BlockCache::take_best_fit(DeviceState& st, bool small, size_t size) {
  FreeSet& pool = st.pool(small);
  Block key;
  key.size = size;
  auto it = pool.lower_bound(&key);
  if (it == pool.end()) return nullptr;
  Block* b = *it;
  pool.erase(it);
  return b;
}

inline BlockCache::Block* BlockCache::new_segment(int device, DeviceState& st, bool small, size_t size) {
  const size_t seg = segment_size(size);
  auto b = std::make_unique<Block>();
  void* p = source_.allocate(device, seg);
  if (p == nullptr) {
    release_free_segments(device, st);
    p = source_.allocate(device, seg);
  }
  LOWBIT_CHECK(p != nullptr, "CUDA out of memory on device ", device, ": a segment of ", seg,
               " bytes could not be allocated (", st.stats.allocated_bytes, " bytes allocated, ",
               st.stats.reserved_bytes, " bytes reserved by lowbit on this device)");
  b->device = device;
  b->small = small;
  b->address = reinterpret_cast<uintptr_t>(p);
  b->size = seg;
  BlockCacheStats& s = st.stats;
  s.reserved_bytes += static_cast<int64_t>(seg);
  s.peak_reserved_bytes = std::max(s.peak_reserved_bytes, s.reserved_bytes);
  ++s.num_device_allocs;
  return b.release();
}

inline void BlockCache::split(DeviceState& st, Block* b, size_t size) {
  auto* rest = new Block;
  rest->device = b->device;
  rest->small = b->small;
  rest->address = b->address + size;
  rest->size = b->size - size;
  rest->prev = b;
  rest->next = b->next;
  if (b->next) b->next->prev = rest;
  b->next = rest;
  b->size = size;
  st.pool(b->small).insert(rest);
}

inline void* BlockCache::allocate(int device, size_t nbytes) {
  if (nbytes == 0) return nullptr;
  LOWBIT_CHECK(nbytes <= kMaxRequest, "cuda allocator: request of ", nbytes, " bytes is too large");
  const size_t size = round_size(nbytes);
  const bool small = is_small(size);
  std::lock_guard lock(mu_);
  DeviceState& st = state(device);
  Block* b = take_best_fit(st, small, size);
  if (b == nullptr) b = new_segment(device, st, small, size);
  const size_t remainder = b->size - size;
  if (small ? remainder >= kMinBlockSize : remainder > kSmallRequest) split(st, b, size);
  b->allocated = true;
  b->requested = nbytes;
  live_.emplace(b->address, b);
  BlockCacheStats& s = st.stats;
  s.allocated_bytes += static_cast<int64_t>(b->size);
  s.requested_bytes += static_cast<int64_t>(nbytes);
  s.peak_allocated_bytes = std::max(s.peak_allocated_bytes, s.allocated_bytes);
  ++s.num_allocations;
  return reinterpret_cast<void*>(b->address);
}

inline void BlockCache::free(void* p) {
  if (p == nullptr) return;
  std::lock_guard lock(mu_);
  auto it = live_.find(reinterpret_cast<uintptr_t>(p));
  LOWBIT_CHECK(it != live_.end(), "cuda allocator: free of ", p, ", which is not a live allocation");
  Block* b = it->second;
  live_.erase(it);
  DeviceState& st = devices_[static_cast<size_t>(b->device)];
  st.stats.allocated_bytes -= static_cast<int64_t>(b->size);
  st.stats.requested_bytes -= static_cast<int64_t>(b->requested);
  b->allocated = false;
  b->requested = 0;
  FreeSet& pool = st.pool(b->small);
  if (Block* prev = b->prev; prev && !prev->allocated) {
    pool.erase(prev);
    b->address = prev->address;
    b->size += prev->size;
    b->prev = prev->prev;
    if (b->prev) b->prev->next = b;
    delete prev;
  }
  if (Block* next = b->next; next && !next->allocated) {
    pool.erase(next);
    b->size += next->size;
    b->next = next->next;
    if (b->next) b->next->prev = b;
    delete next;
  }
  pool.insert(b);
}

inline void BlockCache::release_free_segments(int device, DeviceState& st) {
  for (FreeSet* pool : {&st.small_free, &st.large_free}) {
    for (auto it = pool->begin(); it != pool->end();) {
      Block* b = *it;
      if (b->prev != nullptr || b->next != nullptr) {  // part of a segment still in use
        ++it;
        continue;
      }
      source_.free(device, reinterpret_cast<void*>(b->address), b->size);
      st.stats.reserved_bytes -= static_cast<int64_t>(b->size);
      ++st.stats.num_device_frees;
      it = pool->erase(it);
      delete b;
    }
  }
}

inline void BlockCache::release_cached() {
  std::lock_guard lock(mu_);
  for (size_t d = 0; d < devices_.size(); ++d) release_free_segments(static_cast<int>(d), devices_[d]);
}

inline void BlockCache::release_cached(int device) {
  std::lock_guard lock(mu_);
  if (device >= 0 && static_cast<size_t>(device) < devices_.size())
    release_free_segments(device, devices_[static_cast<size_t>(device)]);
}

inline BlockCacheStats BlockCache::stats(int device) const {
  std::lock_guard lock(mu_);
  if (device < 0 || static_cast<size_t>(device) >= devices_.size()) return {};
  return devices_[static_cast<size_t>(device)].stats;
}

inline void BlockCache::reset_peak_stats(int device) {
  std::lock_guard lock(mu_);
  if (device < 0 || static_cast<size_t>(device) >= devices_.size()) return;
  BlockCacheStats& s = devices_[static_cast<size_t>(device)].stats;
  s.peak_allocated_bytes = s.allocated_bytes;
  s.peak_reserved_bytes = s.reserved_bytes;
}

inline std::vector<SegmentInfo> BlockCache::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<const Block*> heads;
  for (const auto& [address, b] : live_)
    if (b->prev == nullptr) heads.push_back(b);
  for (const DeviceState& st : devices_) {
    for (const Block* b : st.small_free)
      if (b->prev == nullptr) heads.push_back(b);
    for (const Block* b : st.large_free)
      if (b->prev == nullptr) heads.push_back(b);
  }
  std::vector<SegmentInfo> out;
  out.reserve(heads.size());
  for (const Block* head : heads) {
    SegmentInfo seg;
    seg.device = head->device;
    seg.small = head->small;
    seg.address = head->address;
    for (const Block* b = head; b != nullptr; b = b->next) {
      seg.blocks.push_back({b->address, b->size, b->allocated});
      seg.size += b->size;
    }
    out.push_back(std::move(seg));
  }
  std::sort(out.begin(), out.end(), [](const SegmentInfo& a, const SegmentInfo& b) {
    return a.device != b.device ? a.device < b.device : a.address < b.address;
  });
  return out;
}

}  // namespace lowbit
