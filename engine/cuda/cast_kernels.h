// Device casts between contiguous f32 buffers and the 16- and 8-bit float formats. The kernels
// call the same LOWBIT_HD codecs (engine/scalar_types.h, through convert<>) as the CPU loops, so
// a GPU cast is bit-identical to the CPU cast of the same values.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "lowbit/engine/dtype.h"

namespace lowbit {

// Casts n f32 values at src (device memory) to dtype at dst (device memory, n elements of
// dtype). dtype is bf16, f16, fp8_e4m3 or fp8_e5m2; anything else throws lowbit::Error.
// Asynchronous on `stream` (nullptr: the legacy default stream).
void cuda_cast_f32_to(DType dtype, const float* src, void* dst, int64_t n, cudaStream_t stream = nullptr);
// The inverse widening (exact for all four formats).
void cuda_cast_to_f32(DType dtype, const void* src, float* dst, int64_t n, cudaStream_t stream = nullptr);

}  // namespace lowbit
