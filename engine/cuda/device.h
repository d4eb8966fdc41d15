// CUDA device discovery and selection. cuda_device_count() is the one query every caller may
// make: it returns 0 (never throws) when there is no driver or no device, and in builds without
// the CUDA backend it is an inline 0, so code and tests need no #if to ask "is there a GPU?".
// The rest of this header exists only when lowbit is built with CUDA (LOWBIT_HAVE_CUDA).
#pragma once
#include <cstdint>
#include <string>

namespace lowbit {

#if defined(LOWBIT_HAVE_CUDA)

// Number of usable CUDA devices; 0 when cudaGetDeviceCount fails for any reason (no driver,
// driver too old, no device). Queried once per process.
int cuda_device_count();

#else

inline int cuda_device_count() { return 0; }

#endif

inline bool cuda_available() { return cuda_device_count() > 0; }

#if defined(LOWBIT_HAVE_CUDA)

struct CudaDeviceProperties {
  int index = 0;
  std::string name;
  int major = 0;  // compute capability major.minor, e.g. 9.0 for H100
  int minor = 0;
  int64_t total_memory = 0;
  int multiprocessor_count = 0;
  int max_threads_per_block = 0;
  int warp_size = 0;
  int64_t shared_memory_per_block = 0;        // default limit
  int64_t shared_memory_per_block_optin = 0;  // with cudaFuncAttributeMaxDynamicSharedMemorySize
  int64_t l2_cache_size = 0;
};

// Throws lowbit::Error if device is not in [0, cuda_device_count()).
CudaDeviceProperties cuda_device_properties(int device);

// The calling thread's current device (cudaGetDevice / cudaSetDevice); both throw
// lowbit::Error when no device is available or the index is out of range.
int cuda_current_device();
void cuda_set_device(int device);

// Makes `device` current for a scope and restores the previous device on exit.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_;
  bool switched_ = false;
};

#endif

}  // namespace lowbit
