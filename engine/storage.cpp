#include "lowbit/engine/storage.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "lowbit/engine/error.h"

namespace lowbit {
namespace {

std::atomic<int64_t> g_live{0}, g_peak{0};

struct CpuAllocator final : Allocator {
  void* allocate(size_t nbytes, Device) override {
    if (nbytes == 0) return nullptr;
    const size_t rounded = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    LOWBIT_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", nbytes, " bytes");
    const int64_t live = g_live.fetch_add(static_cast<int64_t>(nbytes)) + static_cast<int64_t>(nbytes);
    int64_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
    return p;
  }
  void deallocate(void* p, size_t nbytes) override {
    if (!p) return;
    std::free(p);
    g_live.fetch_sub(static_cast<int64_t>(nbytes));
  }
};

// Never destroyed: a static Storage may be freed after this file's statics at exit.
Allocator* g_allocators[3] = {new CpuAllocator, nullptr, nullptr};

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

MemoryStats cpu_memory_stats() { return {g_live.load(), g_peak.load()}; }
void reset_cpu_peak_memory() { g_peak.store(g_live.load()); }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (!device.is_meta()) data_ = get_allocator(device.type)->allocate(nbytes, device);
}

Storage::~Storage() {
  if (data_) get_allocator(device_.type)->deallocate(data_, nbytes_);
}

}  // namespace lowbit


