// Storage: a refcounted byte buffer on one device. Allocators are per device type: the CPU
// allocator is 64-byte aligned, caches freed blocks of 1 MiB and more for reuse (fresh pages
// cost a page fault each), and counts live and peak bytes (tests use the peak to prove
// kernels stay memory-efficient); the CUDA caching allocator registers itself when built.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "lowbit/engine/device.h"

namespace lowbit {

struct Allocator {
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes, Device device) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
};

void register_allocator(DeviceType type, Allocator* alloc);
Allocator* get_allocator(DeviceType type);

struct MemoryStats {
  int64_t live_bytes = 0;    // bytes requested by live storages
  int64_t peak_bytes = 0;    // highest live_bytes since the last reset
  int64_t cached_bytes = 0;  // freed large blocks kept for reuse (not live)
};
MemoryStats cpu_memory_stats();
// Resets the CPU peak to the current live bytes.
void reset_cpu_peak_memory();
// Returns the CPU allocator's cached blocks to the system.
void cpu_empty_cache();

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  // Wraps `nbytes` at `data` owned by someone else (a memory-mapped file): no copy, no
  // allocator, not counted in the memory stats; `owner` is kept alive as long as this storage.
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  // Bumped by every in-place write; autograd compares it with the value at save time.
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  uint64_t version_ = 0;
  std::shared_ptr<void> owner_;  // set for external memory, which is never deallocated here
};

}  // namespace lowbit
