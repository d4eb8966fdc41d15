// The CUDA backend's registration point: the caching allocator (a BlockCache over
// cudaMalloc/cudaFree) and the device copy function. Static-initialization order: the engine
// core's allocator and copy tables are constant-initialized arrays, so registering into them from
// this file's dynamic initializer is safe in any TU order; the cache itself is created on first
// use and deliberately never destroyed, so Storage objects released during static destruction
// (possibly after the CUDA runtime has shut down) only touch host bookkeeping.
#include "lowbit/engine/cuda/caching_allocator.h"

#include <cuda_runtime_api.h>

#include <mutex>

#include "lowbit/engine/cuda/cuda_check.h"
#include "lowbit/engine/cuda/device.h"
#include "lowbit/engine/device_copy.h"
#include "lowbit/engine/error.h"
#include "lowbit/engine/storage.h"

namespace lowbit {
namespace {

struct CudaSegmentSource final : SegmentSource {
  void* allocate(int device, size_t nbytes) override {
    CudaDeviceGuard guard(device);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, nbytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    if (err != cudaSuccess) detail::throw_cuda_error(err, "cudaMalloc(&p, nbytes)", __FILE__, __LINE__);
    return p;
  }
  void free(int device, void* p, size_t) override {
    CudaDeviceGuard guard(device);
    LOWBIT_CUDA_CHECK(cudaFree(p));
  }
};

struct CudaMemory {
  CudaSegmentSource source;
  BlockCache cache{source};
};

BlockCache& cache() {
  static CudaMemory* memory = new CudaMemory;  // never destroyed: see the file comment
  return memory->cache;
}

struct CudaAllocator final : Allocator {
  void* allocate(size_t nbytes, Device device) override {
    if (nbytes == 0) return nullptr;
    LOWBIT_CHECK(cuda_available(), "cannot allocate ", nbytes, " bytes of CUDA memory: no CUDA device is available");
    return cuda_allocate(nbytes, device.index);
  }
  void deallocate(void* p, size_t) override { cuda_free(p); }
};

void cuda_copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (dst_dev.is_cuda() && src_dev.is_cuda() && dst_dev.index != src_dev.index) {
    LOWBIT_CUDA_CHECK(cudaMemcpyPeer(dst, dst_dev.index, src, src_dev.index, nbytes));
    return;
  }
  const cudaMemcpyKind kind = !src_dev.is_cuda()   ? cudaMemcpyHostToDevice
                              : !dst_dev.is_cuda() ? cudaMemcpyDeviceToHost
                                                   : cudaMemcpyDeviceToDevice;
  CudaDeviceGuard guard(dst_dev.is_cuda() ? dst_dev.index : src_dev.index);
  LOWBIT_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, kind));
}

struct CudaBackendRegistrar {
  CudaBackendRegistrar() { register_cuda_backend(); }
};
const CudaBackendRegistrar g_registrar;

}  // namespace

void register_cuda_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_allocator(DeviceType::CUDA, new CudaAllocator);  // never destroyed: outlives every Storage
    register_device_copy(DeviceType::CUDA, &cuda_copy_bytes);
  });
}

void* cuda_allocate(size_t nbytes, int device) {
  if (nbytes == 0) return nullptr;
  const int count = cuda_device_count();
  LOWBIT_CHECK(count > 0, "cuda allocator: cannot allocate ", nbytes, " bytes on cuda:", device,
               ": no CUDA device is available");
  LOWBIT_CHECK(device >= 0 && device < count, "cuda allocator: device index ", device, " out of range: ", count,
               " device(s) visible");
  return cache().allocate(device, nbytes);
}

void cuda_free(void* p) { cache().free(p); }

BlockCacheStats cuda_memory_stats(int device) { return cache().stats(device); }
void cuda_reset_peak_memory_stats(int device) { cache().reset_peak_stats(device); }
void cuda_empty_cache() { cache().release_cached(); }
std::vector<SegmentInfo> cuda_memory_snapshot() { return cache().snapshot(); }

}  // namespace lowbit
