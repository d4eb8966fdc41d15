// LOWBIT_CUDA_CHECK wraps every CUDA runtime call: a failure throws lowbit::Error with
// file:line, the call text and cudaGetErrorString, through the same channel as LOWBIT_CHECK.
// The runtime's last-error slot is cleared before throwing, so a later
// LOWBIT_CUDA_CHECK_LAUNCH() does not report the same (non-sticky) error twice.
#pragma once
#include <cuda_runtime_api.h>

#include "lowbit/engine/error.h"

namespace lowbit::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  (void)cudaGetLastError();
  throw_error(file, line, call, "CUDA call ", call, " failed: ", cudaGetErrorString(err), " (",
              cudaGetErrorName(err), ")");
}

}  // namespace lowbit::detail

#define LOWBIT_CUDA_CHECK(call)                                                       \
  do {                                                                                \
    const cudaError_t lowbit_cuda_err_ = (call);                                      \
    if (lowbit_cuda_err_ != cudaSuccess)                                              \
      ::lowbit::detail::throw_cuda_error(lowbit_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

// Checks the launch of the kernel just enqueued (bad configuration, missing kernel image).
#define LOWBIT_CUDA_CHECK_LAUNCH() LOWBIT_CUDA_CHECK(cudaGetLastError())
