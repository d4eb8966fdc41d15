// Broadcasting binary arithmetic, scalar variants, where/masked_fill, comparisons and the
// in-place updates optimizers use. Mixed dtypes promote (promote_types); bf16/f16 compute in f32.
#pragma once
#include "lowbit/engine/macros.h"
#include "lowbit/engine/tensor.h"

namespace lowbit {

// a, b: broadcastable -> broadcast shape
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& a);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rdiv(double s, const Tensor& a);  // s / a

// cond: u8 (nonzero = true), a, b: broadcastable -> broadcast shape
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// Comparisons give u8 masks (not differentiable).
Tensor gt(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double s);
Tensor lt(const Tensor& a, double s);

// In-place (no autograd; refused on tensors that require grad while grad mode is on):
// a += alpha * b, a *= s.
void add_(const Tensor& a, const Tensor& b, double alpha = 1.0);
void mul_(const Tensor& a, double s);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return div(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

// Kernel bodies (host and device).
struct AddF { template <class C> LOWBIT_HD C operator()(C a, C b) const { return a + b; } };
struct SubF { template <class C> LOWBIT_HD C operator()(C a, C b) const { return a - b; } };
struct MulF { template <class C> LOWBIT_HD C operator()(C a, C b) const { return a * b; } };
struct DivF { template <class C> LOWBIT_HD C operator()(C a, C b) const { return a / b; } };
struct NegF { template <class C> LOWBIT_HD C operator()(C a) const { return -a; } };
struct AddScalarF { double s; template <class C> LOWBIT_HD C operator()(C a) const { return a + C(s); } };
struct RSubScalarF { double s; template <class C> LOWBIT_HD C operator()(C a) const { return C(s) - a; } };
struct MulScalarF { double s; template <class C> LOWBIT_HD C operator()(C a) const { return a * C(s); } };
struct RDivScalarF { double s; template <class C> LOWBIT_HD C operator()(C a) const { return C(s) / a; } };
struct AxpyF { double alpha; template <class C> LOWBIT_HD C operator()(C a, C b) const { return a + C(alpha) * b; } };

}  // namespace lowbit
