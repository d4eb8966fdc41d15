#include "lowbit/engine/dtype.h"

namespace lowbit {

DType dtype_from_name(std::string_view name) {
  for (int i = 0; i < kNumDTypes; ++i)
    if (kDTypeTraits[i].name == name) return static_cast<DType>(i);
  LOWBIT_FAIL("unknown dtype '", name, "' (expected one of f64, f32, bf16, f16, fp8_e4m3, fp8_e5m2, ",
              "fp4_e2m1, i8, u8, i32, i64)");
}

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  const bool fa = is_float(a), fb = is_float(b);
  if (fa != fb) return fa ? (traits(a).promote_rank >= traits(DType::bf16).promote_rank ? a : DType::f32)
                          : (traits(b).promote_rank >= traits(DType::bf16).promote_rank ? b : DType::f32);
  if (fa) {
    const int ra = traits(a).promote_rank, rb = traits(b).promote_rank;
    if (ra != rb) {
      const DType hi = ra > rb ? a : b;
      // Anything mixed below 16 bits widens to at least f32 unless the other side is 16-bit.
      return traits(hi).promote_rank >= traits(DType::bf16).promote_rank ? hi : DType::f32;
    }
    return DType::f32;  // bf16 with f16, e4m3 with e5m2: no common narrow type
  }
  // Integers: i8 with u8 -> i32 (no 16-bit ints here); otherwise the wider one.
  const int ra = traits(a).promote_rank, rb = traits(b).promote_rank;
  if (ra != rb) return ra > rb ? a : b;
  return DType::i32;
}

}  // namespace lowbit
