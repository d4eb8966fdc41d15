#include "lowbit/engine/device_copy.h"

#include <cstring>

#include "lowbit/engine/error.h"

namespace lowbit {
namespace {
DeviceCopyFn g_copy_fns[3] = {nullptr, nullptr, nullptr};
}

#if defined(LOWBIT_HAVE_CUDA)
void register_cuda_backend();  // engine/cuda/caching_allocator.cpp
#endif

void register_device_copy(DeviceType type, DeviceCopyFn fn) { g_copy_fns[static_cast<int>(type)] = fn; }

void device_copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  LOWBIT_CHECK(!dst_dev.is_meta() && !src_dev.is_meta(), "copy between ", src_dev, " and ", dst_dev,
               ": meta tensors have no data");
  if (nbytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  const DeviceType t = dst_dev.is_cpu() ? src_dev.type : dst_dev.type;
#if defined(LOWBIT_HAVE_CUDA)
  if (t == DeviceType::CUDA && g_copy_fns[1] == nullptr) register_cuda_backend();
#endif
  DeviceCopyFn fn = g_copy_fns[static_cast<int>(t)];
  LOWBIT_CHECK(fn != nullptr, "copy between ", src_dev, " and ", dst_dev, ": lowbit was built without that backend");
  fn(dst, dst_dev, src, src_dev, nbytes);
}

}  // namespace lowbit
