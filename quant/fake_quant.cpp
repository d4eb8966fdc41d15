#include "lowbit/quant/fake_quant.h"

#include <algorithm>
#include <cmath>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/autograd/node.h"
#include "lowbit/quant/block_formats.h"
#include "lowbit/quant/scale_groups.h"

namespace lowbit::quant {

using namespace detail;

namespace {

// grad: any float dtype, contiguous copy made; mask: u8 of the same numel -> grad * mask
Tensor masked_grad(const Tensor& grad, const Tensor& mask) {
  const Tensor g = as_f32_contiguous(grad);
  Tensor out = empty(grad.shape(), DType::f32);
  const float* gp = g.data<float>();
  const auto* mp = mask.data<uint8_t>();
  float* op = out.data<float>();
  const int64_t n = out.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) op[i] = mp[i] ? gp[i] : 0.0f;
  return grad.dtype() == DType::f32 ? out : out.to(grad.dtype());
}

enum class MaskRule : uint8_t { none, rounded, amax };

// x: (n) -> y: (n), mask: (n) (null for MaskRule::none). One run of a scale group with
// parameters p, through the codec's scaled_value / code_of / dequant_code; kind, fp8 flavour,
// mask rule and dtype are template parameters so the loop has no switches and vectorizes.
template <Kind K, bool kE5m2, MaskRule R, class T>
void fake_quant_run(const T* __restrict x, T* __restrict y, uint8_t* __restrict mask, int64_t n, ScaledParams p) {
  constexpr Format f = kE5m2 ? Format::fp8_e5m2 : Format::fp8_e4m3;  // read by code_of for fp8 kinds only
  for (int64_t i = 0; i < n; ++i) {
    const float xv = convert<float>(x[i]);
    const float v = scaled_value(K, p, xv);
    y[i] = convert<T>(dequant_code(K, p, code_of(K, p, v, f)));
    if constexpr (R == MaskRule::rounded) mask[i] = static_cast<uint8_t>((v >= p.qmin) & (v <= p.qmax));
    if constexpr (R == MaskRule::amax) mask[i] = static_cast<uint8_t>(std::fabs(xv) <= p.amax);
  }
}

// Groups [g0, g1) of L (x, y, mask: the whole tensor), in chunks of up to 16 groups and
// kChunkElems elements. With dyn (dynamic scales) the chunk's parameters are first computed
// from its statistics into P, while the chunk is in cache; otherwise P holds them. P[i] belongs
// to group g0 + i. Both passes go run-major (run j of every group of the chunk, then run j + 1),
// so the groups of a 2-D block row are read as long contiguous rows. Flattened: the per-group
// calls (statistics, parameters, run) are all inlined. kLen > 0: every run has kLen elements, so
// the inner loops have a constant trip count and unroll into whole vectors.
template <Kind K, bool kE5m2, MaskRule R, class T, int64_t kLen = 0>
[[gnu::flatten]] void fake_quant_groups(const T* x, T* y, uint8_t* mask, const GroupLayout& L, int64_t g0,
                                        int64_t g1, const QuantSpec* dyn, DType xdtype, ScaledParams* P) {
  constexpr int64_t kMaxChunk = 16, kChunkElems = 8 * kPiece;
  const int64_t segs = L.segs, seg_len = kLen ? kLen : L.seg_len, stride = L.stride();
  const int64_t chunk = std::clamp<int64_t>(kChunkElems / std::max<int64_t>(1, segs * seg_len), 1, kMaxChunk);
  int64_t base[kMaxChunk];
  for (int64_t c0 = g0; c0 < g1; c0 += chunk) {
    const int64_t c1 = std::min(g1, c0 + chunk), nc = c1 - c0;
    for (int64_t i = 0; i < nc; ++i) base[i] = L.offset(c0 + i, 0);
    if (dyn) {
      StatsAcc acc[kMaxChunk];
      for (int64_t j = 0; j < segs; ++j)
        for (int64_t i = 0; i < nc; ++i) acc[i].add<needs_min_max(K)>(x + base[i] + j * stride, seg_len);
      for (int64_t i = 0; i < nc; ++i) P[c0 + i - g0] = params_from_stats(*dyn, K, acc[i].finish(), xdtype);
    }
    for (int64_t j = 0; j < segs; ++j) {
      for (int64_t i = 0; i < nc; ++i) {
        const int64_t off = base[i] + j * stride;
        fake_quant_run<K, kE5m2, R>(x + off, y + off, R == MaskRule::none ? nullptr : mask + off, seg_len,
                                    P[c0 + i - g0]);
      }
    }
  }
}

// The two entry points of one (kind, fp8 flavour, mask rule, dtype), chosen once per tensor.
// groups32 / groups128: fake_quant_groups for runs of 32 / 128 elements.
template <class T>
struct Kernels {
  using Groups = void (*)(const T*, T*, uint8_t*, const GroupLayout&, int64_t, int64_t, const QuantSpec*, DType,
                          ScaledParams*);
  Groups groups, groups32, groups128;
  void (*run)(const T*, T*, uint8_t*, int64_t, ScaledParams);

  Groups groups_for(const GroupLayout& L) const {
    return L.seg_len == 32 ? groups32 : L.seg_len == 128 ? groups128 : groups;
  }
};

template <class T, Kind K, bool kE5m2, MaskRule R>
Kernels<T> kernels() {
  return {&fake_quant_groups<K, kE5m2, R, T>, &fake_quant_groups<K, kE5m2, R, T, 32>,
          &fake_quant_groups<K, kE5m2, R, T, 128>, &fake_quant_run<K, kE5m2, R, T>};
}

template <class T, Kind K, bool kE5m2>
Kernels<T> kernels_for_rule(MaskRule r) {
  switch (r) {
    case MaskRule::none: return kernels<T, K, kE5m2, MaskRule::none>();
    case MaskRule::rounded: return kernels<T, K, kE5m2, MaskRule::rounded>();
    case MaskRule::amax: return kernels<T, K, kE5m2, MaskRule::amax>();
  }
  return {};
}

template <class T>
Kernels<T> kernels_for(Kind k, bool e5m2, MaskRule r) {
  switch (k) {
    case Kind::int_torchao_sym: return kernels_for_rule<T, Kind::int_torchao_sym, false>(r);
    case Kind::int_torchao_asym: return kernels_for_rule<T, Kind::int_torchao_asym, false>(r);
    case Kind::int_modelopt: return kernels_for_rule<T, Kind::int_modelopt, false>(r);
    case Kind::uint4_float_zero: return kernels_for_rule<T, Kind::uint4_float_zero, false>(r);
    case Kind::fp8_torchao:
      return e5m2 ? kernels_for_rule<T, Kind::fp8_torchao, true>(r)  //
                  : kernels_for_rule<T, Kind::fp8_torchao, false>(r);
    case Kind::fp8_modelopt:
      return e5m2 ? kernels_for_rule<T, Kind::fp8_modelopt, true>(r)  //
                  : kernels_for_rule<T, Kind::fp8_modelopt, false>(r);
  }
  return {};
}

// x: contiguous, shape of L -> y: same, mask: same numel or null; P receives every group's
// parameters (left empty for fused dynamic scales unless spec.grad is lsq). Many groups are
// split over the threads in tasks of consecutive groups (dynamic scales of small groups computed
// right before each group is quantized); fewer, larger groups get a statistics pass first and
// have their runs split into pieces.
template <class T>
void scaled_forward(const T* x, T* y, uint8_t* mask, const GroupLayout& L, const QuantSpec& spec, DType xdtype,
                    const QParams* params, MaskRule rule, std::vector<ScaledParams>& P) {
  const Kernels<T> k = kernels_for<T>(kind_of(spec), spec.format == Format::fp8_e5m2, rule);
  const int64_t gsize = L.segs * L.seg_len, n = L.groups * gsize;
  if (L.groups >= kManyGroups) {
    constexpr int64_t kTask = 16;  // groups per task
    const bool fuse = spec.scale_policy == ScalePolicy::dynamic && gsize <= kPiece;
    // Fused dynamic scales live in the task's own buffer unless the caller needs them (lsq).
    const bool task_local = fuse && spec.grad != GradRule::lsq;
    if (!fuse) {
      P = group_params(x, L, spec, xdtype, params);
    } else if (!task_local) {
      P.resize(static_cast<size_t>(L.groups));
    }
    const int64_t tasks = (L.groups + kTask - 1) / kTask;
    const auto groups = k.groups_for(L);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t t = 0; t < tasks; ++t) {
      ScaledParams local[kTask];
      const int64_t g0 = t * kTask;
      groups(x, y, mask, L, g0, std::min(L.groups, g0 + kTask), fuse ? &spec : nullptr, xdtype,
             task_local ? local : P.data() + g0);
    }
    return;
  }
  P = group_params(x, L, spec, xdtype, params);
  const int64_t pieces = (L.seg_len + kPiece - 1) / kPiece;
  for (int64_t g = 0; g < L.groups; ++g) {
#pragma omp parallel for schedule(static) if (gsize > kParallelMin)
    for (int64_t c = 0; c < L.segs * pieces; ++c) {
      const int64_t off = L.offset(g, c / pieces) + c % pieces * kPiece;
      const int64_t len = std::min(kPiece, L.seg_len - c % pieces * kPiece);
      k.run(x + off, y + off, mask ? mask + off : nullptr, len, P[static_cast<size_t>(g)]);
    }
  }
}

}  // namespace

Tensor fake_quant(const Tensor& x, const QuantSpec& spec, const QParams* params) {
  validate(spec);
  LOWBIT_CHECK(x.defined() && is_float(x.dtype()) && x.device().is_cpu(),
               "fake_quant: x must be a floating CPU tensor, got ", x.defined() ? x.str() : "undefined");
  const bool need_mask = spec.grad != GradRule::ste;
  Tensor mask = need_mask ? empty(x.shape(), DType::u8) : Tensor();
  auto* mp = need_mask ? mask.data<uint8_t>() : nullptr;

  if (is_block_format(spec.format)) {
    Tensor out;
    {
      NoGradGuard no_grad;
      out = fake_quant_blocks(x, spec, params ? params->global_amax : 0.0f, mp);
    }
    if (spec.grad == GradRule::clipped_amax) mask = Tensor();  // |x| <= block amax always holds
    return record("fake_quant", out, {x}, {}, [mask](const BackwardArgs& a) {
      return std::vector<Tensor>{mask.defined() ? masked_grad(a.grad, mask) : a.grad};
    });
  }

  const Kind k = kind_of(spec);
  const GroupLayout L = group_layout(x.shape(), spec);
  const MaskRule rule = !need_mask ? MaskRule::none
                        : spec.grad == GradRule::clipped_amax ? MaskRule::amax
                                                              : MaskRule::rounded;
  std::vector<ScaledParams> P;
  Tensor out;
  {
    NoGradGuard no_grad;
    const DType dt = x.dtype();
    if (dt == DType::f32 || dt == DType::bf16) {
      const Tensor xc = x.detach().contiguous();
      out = empty(x.shape(), dt);
      if (dt == DType::f32) {
        scaled_forward(xc.data<float>(), out.data<float>(), mp, L, spec, dt, params, rule, P);
      } else {
        scaled_forward(xc.data<BFloat16>(), out.data<BFloat16>(), mp, L, spec, dt, params, rule, P);
      }
    } else {  // other float dtypes compute on their f32 values, as quantize() does
      const Tensor xf = as_f32_contiguous(x);
      Tensor out32 = empty(x.shape(), DType::f32);
      scaled_forward(xf.data<float>(), out32.data<float>(), mp, L, spec, dt, params, rule, P);
      out = out32.to(dt);
    }
  }

  if (spec.grad != GradRule::lsq) {
    return record("fake_quant", out, {x}, {}, [mask](const BackwardArgs& a) {
      return std::vector<Tensor>{mask.defined() ? masked_grad(a.grad, mask) : a.grad};
    });
  }

  LOWBIT_CHECK(params && params->scale.defined(), "fake_quant: grad 'lsq' needs learned params (scale)");
  const Tensor scale = params->scale, zp = spec.symmetric ? Tensor() : params->zero_point;
  std::vector<Tensor> inputs{x, scale};
  if (zp.defined()) inputs.push_back(zp);
  const double factor =
      spec.lsq_grad_scaling ? 1.0 / std::sqrt(static_cast<double>(L.segs * L.seg_len) * P[0].qmax) : 1.0;
  const Shape s_shape = scale.shape(), z_shape = zp.defined() ? zp.shape() : Shape{};
  const DType s_dtype = scale.dtype(), z_dtype = zp.defined() ? zp.dtype() : DType::f32;
  const bool has_zp = zp.defined();
  return record("fake_quant_lsq", out, inputs, {x}, [=, fmt = spec.format](const BackwardArgs& a) {
    std::vector<Tensor> grads(has_zp ? 3 : 2);
    grads[0] = masked_grad(a.grad, mask);
    const Tensor xf = as_f32_contiguous(a.saved(0));
    const Tensor g = as_f32_contiguous(a.grad);
    const float* xp = xf.data<float>();
    const float* gp = g.data<float>();
    std::vector<double> ds(P.size(), 0.0), dz(P.size(), 0.0);
    for (int64_t gi = 0; gi < L.groups; ++gi) {
      const ScaledParams& p = P[static_cast<size_t>(gi)];
      double s_acc = 0, z_acc = 0;
      for (int64_t j = 0; j < L.segs; ++j) {
        const int64_t off = L.offset(gi, j);
        for (int64_t i = off; i < off + L.seg_len; ++i) {
          const float v = scaled_value(k, p, xp[i]);
          if (v < p.qmin || v > p.qmax) {
            s_acc += static_cast<double>(gp[i]) * ((v < p.qmin ? p.qmin : p.qmax) - p.zp);
            z_acc += static_cast<double>(gp[i]) * -p.scale;
          } else {
            const float xhat = dequant_code(k, p, code_of(k, p, v, fmt));
            s_acc += static_cast<double>(gp[i]) * ((xhat - xp[i]) * p.inv);
          }
        }
      }
      ds[static_cast<size_t>(gi)] = s_acc * factor;
      dz[static_cast<size_t>(gi)] = z_acc * factor;
    }
    if (a.needs_grad(1)) grads[1] = from_vector(ds, s_shape, DType::f64).to(s_dtype);
    if (has_zp && a.needs_grad(2)) grads[2] = from_vector(dz, z_shape, DType::f64).to(z_dtype);
    return grads;
  });
}

}  // namespace lowbit::quant
