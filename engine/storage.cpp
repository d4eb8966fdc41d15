#include "lowbit/engine/storage.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#include "lowbit/engine/error.h"

namespace lowbit {
namespace {

std::atomic<int64_t> g_live{0}, g_peak{0};

// Large blocks are cached on free and handed out again for requests of the same size class:
// fresh pages from the OS cost a page fault each, which made a 64 MiB elementwise op spend
// most of its time in the kernel. Classes are 1/8 of a power of two (<= 12.5% slack); the
// cache holds at most kCpuCacheCap bytes. Sanitizer builds cache nothing, so ASan still sees
// every use after free.
constexpr size_t kCacheMin = size_t{1} << 20;
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kCpuCacheCap = 0;
#else
constexpr size_t kCpuCacheCap = size_t{2} << 30;
#endif

size_t size_class(size_t nbytes) {
  if (nbytes < kCacheMin) return (nbytes + 63) / 64 * 64;
  size_t pow2 = kCacheMin;
  while (pow2 * 2 <= nbytes) pow2 *= 2;
  const size_t step = pow2 / 8;
  return (nbytes + step - 1) / step * step;
}

struct CpuAllocator final : Allocator {
  void* allocate(size_t nbytes, Device) override {
    if (nbytes == 0) return nullptr;
    const size_t cls = size_class(nbytes);
    void* p = nullptr;
    if (cls >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = cache_.find(cls);
      if (it != cache_.end()) {
        p = it->second;
        cache_.erase(it);
        cached_bytes_ -= cls;
      }
    }
    if (!p) p = std::aligned_alloc(64, cls);
    LOWBIT_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", nbytes, " bytes");
    const int64_t live = g_live.fetch_add(static_cast<int64_t>(nbytes)) + static_cast<int64_t>(nbytes);
    int64_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
    return p;
  }
  void deallocate(void* p, size_t nbytes) override {
    if (!p) return;
    g_live.fetch_sub(static_cast<int64_t>(nbytes));
    const size_t cls = size_class(nbytes);
    if (cls >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_bytes_ + cls <= kCpuCacheCap) {
        cache_.emplace(cls, p);
        cached_bytes_ += cls;
        return;
      }
    }
    std::free(p);
  }
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [cls, p] : cache_) std::free(p);
    cache_.clear();
    cached_bytes_ = 0;
  }
  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_bytes_;
  }

 private:
  std::mutex mu_;
  std::multimap<size_t, void*> cache_;
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


