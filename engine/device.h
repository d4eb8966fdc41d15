// Device: where a tensor's bytes live. Meta tensors carry shape and dtype only, so a model
// can be built and sharded before any memory is allocated.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>

namespace lowbit {

enum class DeviceType : uint8_t { CPU, CUDA, Meta };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  constexpr Device() = default;
  constexpr Device(DeviceType t, int i = 0) : type(t), index(i) {}
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool is_meta() const { return type == DeviceType::Meta; }
  bool operator==(const Device&) const = default;
  std::string str() const;
};

inline constexpr Device kCPU{DeviceType::CPU, 0};
inline constexpr Device kMeta{DeviceType::Meta, 0};
inline Device cuda_device(int index = 0) { return Device(DeviceType::CUDA, index); }
// Parses "cpu", "meta", "cuda" or "cuda:N".
Device parse_device(const std::string& s);

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

}  // namespace lowbit
