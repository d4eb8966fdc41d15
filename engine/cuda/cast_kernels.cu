// Grid-stride cast kernels; the element conversion is convert<To>(From), i.e. the shared
// LOWBIT_HD codecs of engine/scalar_types.h, compiled here for the device.
#include "lowbit/engine/cuda/cast_kernels.h"

#include <algorithm>

#include "lowbit/engine/cuda/cuda_check.h"
#include "lowbit/engine/error.h"
#include "lowbit/engine/scalar_types.h"

namespace lowbit {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // enough to fill any current GPU; the loop strides over the rest

template <class To, class From>
__global__ void cast_kernel(const From* __restrict__ src, To* __restrict__ dst, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = convert<To>(src[i]);
}

template <class To, class From>
void launch_cast(const void* src, void* dst, int64_t n, cudaStream_t stream) {
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks);
  cast_kernel<To, From><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const From*>(src), static_cast<To*>(dst), n);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

template <class Fn>
void dispatch_narrow_float(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::bf16: return fn(TypeTag<BFloat16>{});
    case DType::f16: return fn(TypeTag<Half>{});
    case DType::fp8_e4m3: return fn(TypeTag<Float8E4M3>{});
    case DType::fp8_e5m2: return fn(TypeTag<Float8E5M2>{});
    default: LOWBIT_FAIL(op, ": unsupported dtype ", dtype, " (expected bf16, f16, fp8_e4m3 or fp8_e5m2)");
  }
}

void check_args(const char* op, const void* src, const void* dst, int64_t n) {
  LOWBIT_CHECK(n >= 0, op, ": negative element count ", n);
  LOWBIT_CHECK(n == 0 || (src != nullptr && dst != nullptr), op, ": null buffer for ", n, " elements");
}

}  // namespace

void cuda_cast_f32_to(DType dtype, const float* src, void* dst, int64_t n, cudaStream_t stream) {
  check_args("cuda_cast_f32_to", src, dst, n);
  dispatch_narrow_float(dtype, "cuda_cast_f32_to", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (n > 0) launch_cast<T, float>(src, dst, n, stream);
  });
}

void cuda_cast_to_f32(DType dtype, const void* src, float* dst, int64_t n, cudaStream_t stream) {
  check_args("cuda_cast_to_f32", src, dst, n);
  dispatch_narrow_float(dtype, "cuda_cast_to_f32", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (n > 0) launch_cast<float, T>(src, dst, n, stream);
  });
}

}  // namespace lowbit
