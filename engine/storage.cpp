#include "lowbit/engine/storage.h"

#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#include "lowbit/engine/error.h"

namespace lowbit {
namespace {

std::atomic<int64_t> g_live{0}, g_peak{0};
std::atomic<int64_t> g_hwm{0};  // highest live bytes since the last cpu_empty_cache (the cache's budget)

// Large blocks (>= kCacheMin) are their own anonymous mappings, cached on free and handed out
// again: fresh pages from the OS cost a page fault each, which made a 64 MiB elementwise op
// spend most of its time in the kernel. Requests are rounded to classes of 1/8 of a power of
// two (<= 12.5% slack). A request takes the smallest cached block of its class or up to 25%
// larger. On a miss, cached blocks are unmapped (the smallest block that is big enough, else
// the largest ones) while live + cached + the new block would exceed the budget: the highest
// live byte count seen (since the last cpu_empty_cache) plus 1/8. So the resident set stays
// within ~12% of the peak of live bytes instead of accumulating one block of every size a
// training step ever used, and a repeating pattern (training steps) still finds most of its
// blocks (the rest costs fresh pages: ~5K faults per 50M-model step). Own mappings (not malloc)
// make unmapping really return the pages: glibc serves blocks below its dynamic mmap threshold
// (which rises to 32 MiB after the first large free) from a heap that keeps freed memory
// resident. Blocks of 2 MiB and more
// ask for transparent huge pages (fewer faults and TLB misses). The cache holds at most
// kCpuCacheCap bytes. Sanitizer builds use malloc and cache nothing, so ASan still sees every
// use after free.
constexpr size_t kCacheMin = size_t{1} << 20;
constexpr size_t kHugeMin = size_t{2} << 20;
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kCpuCacheCap = 0;
constexpr bool kOwnMappings = false;
#else
constexpr size_t kCpuCacheCap = size_t{2} << 30;
constexpr bool kOwnMappings = true;
#endif

size_t size_class(size_t nbytes) {
  if (nbytes < kCacheMin) return (nbytes + 63) / 64 * 64;
  size_t pow2 = kCacheMin;
  while (pow2 * 2 <= nbytes) pow2 *= 2;
  const size_t step = pow2 / 8;
  return (nbytes + step - 1) / step * step;
}

void* map_block(size_t n) {
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#if defined(MADV_HUGEPAGE)
  if (n >= kHugeMin) madvise(p, n, MADV_HUGEPAGE);
#endif
  return p;
}

struct CpuAllocator final : Allocator {
  CpuAllocator() {
#if defined(__GLIBC__)
    // Small blocks stay with malloc. Fix its mmap threshold at our own 1 MiB boundary: glibc
    // would otherwise mmap (and page-fault afresh) every 128 KiB - 1 MiB block, e.g. attention's
    // per-call workspaces, since its dynamic threshold no longer rises (large frees are ours).
    if (kOwnMappings) {
      mallopt(M_MMAP_THRESHOLD, static_cast<int>(kCacheMin));
      mallopt(M_TRIM_THRESHOLD, static_cast<int>(8 * kCacheMin));
    }
#endif
  }
  void* allocate(size_t nbytes, Device) override {
    if (nbytes == 0) return nullptr;
    const size_t cls = size_class(nbytes);
    void* p = nullptr;
    if (kOwnMappings && cls >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      size_t size = cls;
      auto it = cache_.lower_bound(cls);
      if (it != cache_.end() && it->first <= cls + cls / 4) {
        p = it->second;
        size = it->first;
        cached_bytes_ -= size;
        cache_.erase(it);
      } else {
        evict(cls, it);
        p = map_block(cls);
      }
      if (p) block_size_[p] = size;
    } else {
      p = std::aligned_alloc(64, cls);
    }
    LOWBIT_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", nbytes, " bytes");
    const int64_t live = g_live.fetch_add(static_cast<int64_t>(nbytes)) + static_cast<int64_t>(nbytes);
    for (std::atomic<int64_t>* hw : {&g_peak, &g_hwm}) {
      int64_t peak = hw->load();
      while (live > peak && !hw->compare_exchange_weak(peak, live)) {
      }
    }
    return p;
  }
  void deallocate(void* p, size_t nbytes) override {
    if (!p) return;
    g_live.fetch_sub(static_cast<int64_t>(nbytes));
    if (kOwnMappings && size_class(nbytes) >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      auto b = block_size_.find(p);
      LOWBIT_CHECK(b != block_size_.end(), "cpu allocator: freeing an unknown block");
      const size_t size = b->second;
      block_size_.erase(b);
      if (cached_bytes_ + size <= kCpuCacheCap) {
        cache_.emplace(size, p);
        cached_bytes_ += size;
      } else {
        munmap(p, size);
      }
      return;
    }
    std::free(p);
  }
  void empty_cache() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [size, p] : cache_) munmap(p, size);
      cache_.clear();
      cached_bytes_ = 0;
    }
    malloc_trim(0);  // also hand back free pages of the small-block heap
    g_hwm.store(g_live.load());
  }
  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_bytes_;
  }

 private:
  // Before mapping a new block of `need` bytes: unmaps cached blocks while live + cached + need
  // exceeds the budget, first the block at `fit` (the smallest one >= need) if any, then the
  // largest ones. Caller holds mu_.
  void evict(size_t need, std::multimap<size_t, void*>::iterator fit) {
    const int64_t hwm = std::max(g_hwm.load(), g_live.load() + static_cast<int64_t>(need));
    const int64_t budget = hwm + hwm / 8;
    auto over = [&] {
      return g_live.load() + static_cast<int64_t>(cached_bytes_ + need) > budget;
    };
    if (fit != cache_.end() && over()) {
      munmap(fit->second, fit->first);
      cached_bytes_ -= fit->first;
      cache_.erase(fit);
    }
    while (!cache_.empty() && over()) {
      auto last = std::prev(cache_.end());
      munmap(last->second, last->first);
      cached_bytes_ -= last->first;
      cache_.erase(last);
    }
  }

  std::mutex mu_;
  std::multimap<size_t, void*> cache_;           // size -> block
  std::unordered_map<void*, size_t> block_size_;  // live large blocks -> mapped size
  size_t cached_bytes_ = 0;
};

// Never destroyed: a static Storage may be freed after this file's statics at exit.
CpuAllocator* g_cpu_allocator = new CpuAllocator;
Allocator* g_allocators[3] = {g_cpu_allocator, nullptr, nullptr};

}  // namespace

std::string Device::str() const {
  switch (type) {
    case DeviceType::CPU: return "cpu";
    case DeviceType::Meta: return "meta";
    case DeviceType::CUDA: return "cuda:" + std::to_string(index);
  }
  return "?";
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return kCPU;
  if (s == "meta") return kMeta;
  if (s == "cuda") return cuda_device(0);
  if (s.rfind("cuda:", 0) == 0) {
    size_t pos = 0;
    int idx = -1;
    try {
      idx = std::stoi(s.substr(5), &pos);
    } catch (const std::exception&) {
    }
    LOWBIT_CHECK(idx >= 0 && pos == s.size() - 5, "invalid device '", s, "' (expected cpu, meta, cuda or cuda:N)");
    return cuda_device(idx);
  }
  LOWBIT_FAIL("invalid device '", s, "' (expected cpu, meta, cuda or cuda:N)");
}

void register_allocator(DeviceType type, Allocator* alloc) { g_allocators[static_cast<int>(type)] = alloc; }

#if defined(LOWBIT_HAVE_CUDA)
void register_cuda_backend();  // engine/cuda/caching_allocator.cpp
#endif

Allocator* get_allocator(DeviceType type) {
#if defined(LOWBIT_HAVE_CUDA)
  // A static library may drop the backend's self-registering object file: register on first use.
  if (type == DeviceType::CUDA && g_allocators[1] == nullptr) register_cuda_backend();
#endif
  Allocator* a = g_allocators[static_cast<int>(type)];
  LOWBIT_CHECK(a != nullptr || type == DeviceType::Meta, "no allocator for device type ",
               Device(type).str(), ": lowbit was built without that backend");
  return a;
}

MemoryStats cpu_memory_stats() {
  return {g_live.load(), g_peak.load(), static_cast<int64_t>(g_cpu_allocator->cached_bytes())};
}
void cpu_empty_cache() { g_cpu_allocator->empty_cache(); }
void reset_cpu_peak_memory() { g_peak.store(g_live.load()); }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (!device.is_meta()) data_ = get_allocator(device.type)->allocate(nbytes, device);
}

Storage::Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner)
    : data_(data), nbytes_(nbytes), device_(device), owner_(std::move(owner)) {
  LOWBIT_CHECK(owner_ != nullptr, "Storage: external memory needs an owner that keeps it alive");
}

Storage::~Storage() {
  if (data_ && !owner_) get_allocator(device_.type)->deallocate(data_, nbytes_);
}

}  // namespace lowbit


