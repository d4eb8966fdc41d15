#include "lowbit/quant/fake_quant.h"

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
  Tensor out32 = empty(x.shape(), DType::f32);
  std::vector<ScaledParams> P;
  GroupLayout L;
  {
    NoGradGuard no_grad;
    const Tensor xf = as_f32_contiguous(x);
    L = group_layout(x.shape(), spec);
    P = group_params(xf.data<float>(), L, spec, x.dtype(), params);
    const float* xp = xf.data<float>();
    float* op = out32.data<float>();
    const GradRule rule = spec.grad;
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t g = 0; g < L.groups; ++g) {
      const ScaledParams& p = P[static_cast<size_t>(g)];
      for (int64_t j = 0; j < L.segs; ++j) {
        const int64_t off = L.offset(g, j);
        for (int64_t i = off; i < off + L.seg_len; ++i) {
          const float v = scaled_value(k, p, xp[i]);
          op[i] = dequant_code(k, p, code_of(k, p, v, spec.format));
          if (mp) {
            mp[i] = rule == GradRule::clipped_amax ? static_cast<uint8_t>(std::fabs(xp[i]) <= p.amax)
                                                   : static_cast<uint8_t>(v >= p.qmin && v <= p.qmax);
          }
        }
      }
    }
  }
  const Tensor out = x.dtype() == DType::f32 ? out32 : out32.to(x.dtype());

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
