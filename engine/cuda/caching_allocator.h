// CUDA caching allocator and backend registration. Device memory comes from one process-wide
// BlockCache (engine/cuda/block_cache.h: size classes, free lists, splitting) over
// cudaMalloc/cudaFree, so a freed block is reused without another cudaMalloc and without the
// device synchronization cudaFree implies.
// Stream model: a freed block is reusable at once, which is safe while all work on a device is
// issued in order on one stream (as the engine does); code that frees memory another stream may
// still be using must synchronize that stream first.
#pragma once
#include <cstddef>
#include <vector>

#include "lowbit/engine/cuda/block_cache.h"

namespace lowbit {

// Registers the CUDA allocator (get_allocator(DeviceType::CUDA), which allocates on the calling
// thread's current device) and the CUDA byte copy (device_copy_bytes: H2D, D2H, D2D, peer) with
// the engine core. Idempotent and thread-safe; caching_allocator.cpp calls it from a static
// initializer, so linking that object file activates the backend.
void register_cuda_backend();

// Device memory on `device`, 512-byte aligned; nullptr for 0 bytes. Throws lowbit::Error when no
// CUDA device is available, the index is out of range, or the device is out of memory.
void* cuda_allocate(size_t nbytes, int device);
// Accepts nullptr; throws lowbit::Error for a pointer cuda_allocate did not return.
void cuda_free(void* p);

BlockCacheStats cuda_memory_stats(int device);
// Sets the peaks of `device` to the current allocated and reserved bytes.
void cuda_reset_peak_memory_stats(int device);
// Returns every fully free cached segment to the driver (cudaFree).
void cuda_empty_cache();
// Every segment held, ordered by (device, address), for memory debugging.
std::vector<SegmentInfo> cuda_memory_snapshot();

}  // namespace lowbit
