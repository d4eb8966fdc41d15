// DType: one enum, one constexpr traits table, and dispatch helpers that pick a kernel's
// template instantiation once per call. Type promotion for mixed inputs: docs/dtypes.md.
#pragma once
#include <cstdint>
#include <ostream>
#include <string_view>

#include "lowbit/engine/error.h"
#include "lowbit/engine/scalar_types.h"

namespace lowbit {

enum class DType : uint8_t { f64, f32, bf16, f16, fp8_e4m3, fp8_e5m2, fp4_e2m1, i8, u8, i32, i64 };
inline constexpr int kNumDTypes = 11;

struct DTypeTraits {
  std::string_view name;
  int bits;           // bits per element (4 for packed fp4)
  bool is_float;      // floating point (including fp8/fp4)
  bool is_packed;     // several elements per byte
  bool is_signed;
  int promote_rank;   // higher wins in promotion among floats / among ints
};

inline constexpr DTypeTraits kDTypeTraits[kNumDTypes] = {
    {"f64", 64, true, false, true, 6},      {"f32", 32, true, false, true, 5},
    {"bf16", 16, true, false, true, 4},     {"f16", 16, true, false, true, 4},
    {"fp8_e4m3", 8, true, false, true, 2},  {"fp8_e5m2", 8, true, false, true, 2},
    {"fp4_e2m1", 4, true, true, true, 1},   {"i8", 8, false, false, true, 1},
    {"u8", 8, false, false, false, 1},      {"i32", 32, false, false, true, 3},
    {"i64", 64, false, false, true, 4},
};

constexpr const DTypeTraits& traits(DType d) { return kDTypeTraits[static_cast<int>(d)]; }
constexpr std::string_view dtype_name(DType d) { return traits(d).name; }
constexpr bool is_float(DType d) { return traits(d).is_float; }
constexpr bool is_packed(DType d) { return traits(d).is_packed; }
// Bytes for n elements (n must be even for packed fp4).
constexpr int64_t dtype_nbytes(DType d, int64_t n) { return n * traits(d).bits / 8; }
inline std::ostream& operator<<(std::ostream& os, DType d) { return os << dtype_name(d); }
DType dtype_from_name(std::string_view name);

// Result dtype of a binary op on a and b (docs/dtypes.md, "Type promotion").
DType promote_types(DType a, DType b);

template <class T> struct CppType;
template <> struct CppType<double> { static constexpr DType value = DType::f64; };
template <> struct CppType<float> { static constexpr DType value = DType::f32; };
template <> struct CppType<BFloat16> { static constexpr DType value = DType::bf16; };
template <> struct CppType<Half> { static constexpr DType value = DType::f16; };
template <> struct CppType<Float8E4M3> { static constexpr DType value = DType::fp8_e4m3; };
template <> struct CppType<Float8E5M2> { static constexpr DType value = DType::fp8_e5m2; };
template <> struct CppType<Float4E2M1x2> { static constexpr DType value = DType::fp4_e2m1; };
template <> struct CppType<int8_t> { static constexpr DType value = DType::i8; };
template <> struct CppType<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct CppType<int32_t> { static constexpr DType value = DType::i32; };
template <> struct CppType<int64_t> { static constexpr DType value = DType::i64; };
template <class T> inline constexpr DType dtype_of = CppType<T>::value;

template <class T> struct TypeTag { using type = T; };

// Calls fn(TypeTag<T>{}) for the float dtypes kernels compute on (f64, f32, bf16, f16).
template <class Fn>
decltype(auto) dispatch_float(DType d, const char* op, Fn&& fn) {
  switch (d) {
    case DType::f64: return fn(TypeTag<double>{});
    case DType::f32: return fn(TypeTag<float>{});
    case DType::bf16: return fn(TypeTag<BFloat16>{});
    case DType::f16: return fn(TypeTag<Half>{});
    default: LOWBIT_FAIL(op, ": unsupported dtype ", d, " (expected f64, f32, bf16 or f16)");
  }
}

// Every dtype with a one-element-per-slot storage type (all but packed fp4).
template <class Fn>
decltype(auto) dispatch_all(DType d, const char* op, Fn&& fn) {
  switch (d) {
    case DType::f64: return fn(TypeTag<double>{});
    case DType::f32: return fn(TypeTag<float>{});
    case DType::bf16: return fn(TypeTag<BFloat16>{});
    case DType::f16: return fn(TypeTag<Half>{});
    case DType::fp8_e4m3: return fn(TypeTag<Float8E4M3>{});
    case DType::fp8_e5m2: return fn(TypeTag<Float8E5M2>{});
    case DType::i8: return fn(TypeTag<int8_t>{});
    case DType::u8: return fn(TypeTag<uint8_t>{});
    case DType::i32: return fn(TypeTag<int32_t>{});
    case DType::i64: return fn(TypeTag<int64_t>{});
    default: LOWBIT_FAIL(op, ": unsupported dtype ", d);
  }
}

}  // namespace lowbit
