// Byte copies between devices. CPU<->CPU is memcpy; a backend (CUDA) registers the copy
// function for its device type, so the engine core needs no CUDA headers.
#pragma once
#include <cstddef>

#include "lowbit/engine/device.h"

namespace lowbit {

using DeviceCopyFn = void (*)(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);

void register_device_copy(DeviceType type, DeviceCopyFn fn);
void device_copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);

}  // namespace lowbit
