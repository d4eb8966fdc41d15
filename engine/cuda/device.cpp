// CUDA device queries. cudaGetDeviceCount leaves the count untouched on failure (for example
// cudaErrorInsufficientDriver on a host without a GPU driver), so the return code decides.
#include "lowbit/engine/cuda/device.h"

#include <cuda_runtime_api.h>

#include "lowbit/engine/cuda/cuda_check.h"
#include "lowbit/engine/error.h"

namespace lowbit {
namespace {

int query_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // keep the failed probe out of later launch checks
    return 0;
  }
  return count;
}

void check_device_index(int device) {
  const int count = cuda_device_count();
  LOWBIT_CHECK(count > 0, "CUDA device ", device, " requested but no CUDA device is available");
  LOWBIT_CHECK(device >= 0 && device < count, "CUDA device index ", device, " out of range: ", count,
               " device(s) visible");
}

}  // namespace

int cuda_device_count() {
  static const int count = query_device_count();
  return count;
}

CudaDeviceProperties cuda_device_properties(int device) {
  check_device_index(device);
  cudaDeviceProp p{};
  LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  CudaDeviceProperties out;
  out.index = device;
  out.name = p.name;
  out.major = p.major;
  out.minor = p.minor;
  out.total_memory = static_cast<int64_t>(p.totalGlobalMem);
  out.multiprocessor_count = p.multiProcessorCount;
  out.max_threads_per_block = p.maxThreadsPerBlock;
  out.warp_size = p.warpSize;
  out.shared_memory_per_block = static_cast<int64_t>(p.sharedMemPerBlock);
  out.shared_memory_per_block_optin = static_cast<int64_t>(p.sharedMemPerBlockOptin);
  out.l2_cache_size = p.l2CacheSize;
  return out;
}

int cuda_current_device() {
  LOWBIT_CHECK(cuda_device_count() > 0, "no CUDA device is available");
  int device = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

void cuda_set_device(int device) {
  check_device_index(device);
  LOWBIT_CUDA_CHECK(cudaSetDevice(device));
}

CudaDeviceGuard::CudaDeviceGuard(int device) : previous_(cuda_current_device()) {
  if (device != previous_) {
    cuda_set_device(device);
    switched_ = true;
  }
}

CudaDeviceGuard::~CudaDeviceGuard() {
  // Re-selecting a device that was current a moment ago cannot fail; a destructor must not
  // throw, so the result is deliberately ignored.
  if (switched_) (void)cudaSetDevice(previous_);
}

}  // namespace lowbit
