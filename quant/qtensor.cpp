#include "lowbit/quant/qtensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/quant/block_formats.h"
#include "lowbit/quant/scale_groups.h"

namespace lowbit::quant {

namespace detail {

GroupLayout group_layout(const Shape& shape, const QuantSpec& s) {
  GroupLayout L;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const int64_t K = shape.empty() ? 1 : shape.back();
  switch (s.granularity) {
    case Granularity::per_tensor: L.G = 1; L.B = n; break;
    case Granularity::per_token:
      LOWBIT_CHECK(!shape.empty(), "quant: per_token needs at least one dim");
      L.G = K > 0 ? n / K : 0;
      L.B = K;
      break;
    case Granularity::per_group:
      LOWBIT_CHECK(!shape.empty() && K % s.group_size == 0, "quant: key 'group_size' (", s.group_size,
                   ") must divide the last dim of ", shape_str(shape));
      L.G = n / s.group_size;
      L.B = s.group_size;
      break;
    case Granularity::per_channel: {
      LOWBIT_CHECK(s.axis < static_cast<int64_t>(shape.size()), "quant: key 'axis' (", s.axis, ") out of range for ",
                   shape_str(shape));
      L.A = 1;
      for (int64_t d = 0; d < s.axis; ++d) L.A *= shape[static_cast<size_t>(d)];
      L.G = shape[static_cast<size_t>(s.axis)];
      L.B = 1;
      for (size_t d = static_cast<size_t>(s.axis) + 1; d < shape.size(); ++d) L.B *= shape[d];
      break;
    }
    case Granularity::block2d: {
      LOWBIT_CHECK(shape.size() >= 2, "quant: block2d needs at least 2 dims, got ", shape_str(shape));
      L.block = true;
      L.R = shape[shape.size() - 2];
      L.C = K;
      L.br = s.block_rows;
      L.bc = s.block_cols;
      LOWBIT_CHECK(L.R % L.br == 0 && L.C % L.bc == 0, "quant: keys 'block_rows'/'block_cols' (", L.br, "x", L.bc,
                   ") must divide the last two dims of ", shape_str(shape));
      L.nrb = L.R / L.br;
      L.ncb = L.C / L.bc;
      const int64_t lead = (L.R * L.C) > 0 ? n / (L.R * L.C) : 0;
      L.groups = lead * L.nrb * L.ncb;
      L.segs = L.br;
      L.seg_len = L.bc;
      return L;
    }
  }
  L.groups = L.G;
  L.segs = L.A;
  L.seg_len = L.B;
  return L;
}

template <class T>
std::vector<GroupStats> group_stats(const T* x, const GroupLayout& L, bool min_max) {
  std::vector<GroupStats> st(static_cast<size_t>(L.groups));
  const int64_t gsize = L.segs * L.seg_len;
  auto add = [min_max](StatsAcc& acc, const T* p, int64_t n) {
    if (min_max) {
      acc.add<true>(p, n);
    } else {
      acc.add<false>(p, n);
    }
  };
  if (L.groups >= kManyGroups) {
#pragma omp parallel for schedule(static) if (L.groups * gsize > kParallelMin)
    for (int64_t g = 0; g < L.groups; ++g) {
      StatsAcc acc;
      const int64_t base = L.offset(g, 0);
      for (int64_t j = 0; j < L.segs; ++j) add(acc, x + base + j * L.stride(), L.seg_len);
      st[static_cast<size_t>(g)] = acc.finish();
    }
    return st;
  }
  // Few large groups: each group's runs split into pieces over the threads.
  const int64_t pieces = (L.seg_len + kPiece - 1) / kPiece;
  for (int64_t g = 0; g < L.groups; ++g) {
    StatsAcc acc;
#pragma omp parallel if (gsize > kParallelMin)
    {
      StatsAcc part;
#pragma omp for schedule(static) nowait
      for (int64_t c = 0; c < L.segs * pieces; ++c) {
        const int64_t j = c / pieces, at = c % pieces * kPiece;
        add(part, x + L.offset(g, j) + at, std::min(kPiece, L.seg_len - at));
      }
#pragma omp critical
      acc.merge(part);
    }
    st[static_cast<size_t>(g)] = acc.finish();
  }
  return st;
}

Tensor as_f32_contiguous(const Tensor& x) {
  const Tensor d = x.detach();
  if (d.dtype() == DType::f32 && d.is_contiguous()) return d;
  return d.to(DType::f32).contiguous();
}

namespace {

std::vector<float> values_of(const Tensor& t, int64_t groups, const char* what) {
  LOWBIT_CHECK(t.defined() && t.numel() == groups, "quant: ", what, " has ", t.defined() ? t.numel() : 0,
               " values for ", groups, " scale groups");
  return t.detach().to(kCPU).to(DType::f32).contiguous().to_vector<float>();
}

}  // namespace

template <class T>
std::vector<ScaledParams> group_params(const T* x, const GroupLayout& L, const QuantSpec& spec, DType xdtype,
                                       const QParams* params) {
  const Kind k = kind_of(spec);
  std::vector<ScaledParams> out(static_cast<size_t>(L.groups));
  if (spec.scale_policy == ScalePolicy::dynamic || params == nullptr) {
    LOWBIT_CHECK(spec.scale_policy == ScalePolicy::dynamic, "quant: scale_policy '",
                 spec.scale_policy == ScalePolicy::learned ? "learned" : "calibrated",
                 "' needs quantization parameters (calibrate or initialise the quantizer first)");
    const std::vector<GroupStats> st = group_stats(x, L, needs_min_max(k));
    for (size_t g = 0; g < out.size(); ++g) out[g] = params_from_stats(spec, st[g], xdtype);
    return out;
  }
  if (spec.scale_policy == ScalePolicy::calibrated) {
    std::vector<GroupStats> st(out.size());
    const bool asym = k == Kind::int_torchao_asym || k == Kind::uint4_float_zero;
    if (asym) {
      const auto mn = values_of(params->min, L.groups, "calibrated min"), mx = values_of(params->max, L.groups, "calibrated max");
      for (size_t g = 0; g < st.size(); ++g) st[g] = {mn[g], mx[g], std::max(std::fabs(mn[g]), std::fabs(mx[g]))};
    } else {
      const auto am = values_of(params->amax, L.groups, "calibrated amax");
      for (size_t g = 0; g < st.size(); ++g) st[g] = {-am[g], am[g], am[g]};
    }
    for (size_t g = 0; g < out.size(); ++g) out[g] = params_from_stats(spec, st[g], xdtype);
    return out;
  }
  // learned (LSQ, torchao int convention)
  const auto s = values_of(params->scale, L.groups, "learned scale");
  std::vector<float> zp(out.size(), 0.0f);
  if (!spec.symmetric) zp = values_of(params->zero_point, L.groups, "learned zero_point");
  for (size_t g = 0; g < out.size(); ++g) {
    ScaledParams& p = out[g];
    int_range(spec, &p.qmin, &p.qmax);
    LOWBIT_CHECK(s[g] > 0 && std::isfinite(s[g]), "quant: learned scale of group ", g, " is ", s[g],
                 "; scales must stay positive");
    p.scale = s[g];
    p.inv = 1.0f / s[g];
    p.zp = zp[g];
    p.amax = s[g] * p.qmax;
  }
  return out;
}

template std::vector<GroupStats> group_stats(const float*, const GroupLayout&, bool);
template std::vector<GroupStats> group_stats(const BFloat16*, const GroupLayout&, bool);
template std::vector<ScaledParams> group_params(const float*, const GroupLayout&, const QuantSpec&, DType, const QParams*);
template std::vector<ScaledParams> group_params(const BFloat16*, const GroupLayout&, const QuantSpec&, DType,
                                                const QParams*);

}  // namespace detail

using namespace detail;

Shape scale_grid_shape(const Shape& shape, const QuantSpec& s) {
  validate(s);
  (void)group_layout(shape, s);  // checks divisibility
  Shape out;
  switch (s.granularity) {
    case Granularity::per_tensor: return {1};
    case Granularity::per_channel: return {shape[static_cast<size_t>(s.axis)]};
    case Granularity::per_token:
      out.assign(shape.begin(), shape.end() - 1);
      out.push_back(1);
      return out;
    case Granularity::per_group:
      out.assign(shape.begin(), shape.end() - 1);
      out.push_back(shape.back() / s.group_size);
      return out;
    case Granularity::block2d:
      out.assign(shape.begin(), shape.end() - 2);
      out.push_back(shape[shape.size() - 2] / s.block_rows);
      out.push_back(shape.back() / s.block_cols);
      return out;
  }
  return out;
}

QTensor quantize(const Tensor& x, const QuantSpec& spec, const QParams* params) {
  validate(spec);
  LOWBIT_CHECK(x.defined() && is_float(x.dtype()) && x.device().is_cpu(), "quantize: x must be a floating CPU tensor, got ",
               x.defined() ? x.str() : "undefined");
  if (is_block_format(spec.format)) return quantize_blocks(x, spec, params ? params->global_amax : 0.0f);
  NoGradGuard no_grad;
  const Tensor xf = as_f32_contiguous(x);
  const GroupLayout L = group_layout(x.shape(), spec);
  const std::vector<ScaledParams> P = group_params(xf.data<float>(), L, spec, x.dtype(), params);
  const Kind k = kind_of(spec);
  QTensor q;
  q.spec = spec;
  q.shape = x.shape();
  const Shape grid = scale_grid_shape(x.shape(), spec);
  q.scales = empty(grid, DType::f32);
  const bool has_zp = k == Kind::int_torchao_asym || k == Kind::uint4_float_zero;
  if (has_zp) q.zero_points = empty(grid, DType::f32);
  for (size_t g = 0; g < P.size(); ++g) {
    q.scales.data<float>()[g] = P[g].scale;
    if (has_zp) q.zero_points.data<float>()[g] = P[g].zp;
  }
  const int64_t n = x.numel();
  const bool nibbles = spec.format == Format::int4 || spec.format == Format::uint4;
  if (nibbles) {
    LOWBIT_CHECK(n % 2 == 0 && !x.shape().empty() && x.shape().back() % 2 == 0, "quantize: ", format_name(spec.format),
                 " packs two codes per byte and needs an even last dim, got ", shape_str(x.shape()));
    Shape cs = x.shape();
    cs.back() /= 2;
    q.codes = zeros(cs, DType::u8);
  } else if (spec.format == Format::int8) {
    q.codes = empty(x.shape(), DType::i8);
  } else {
    q.codes = empty(x.shape(), spec.format == Format::fp8_e5m2 ? DType::fp8_e5m2 : DType::fp8_e4m3);
  }
  // Nibble formats: every run must start and end on a byte boundary so groups never share a byte.
  if (nibbles)
    LOWBIT_CHECK(L.seg_len % 2 == 0, "quantize: ", format_name(spec.format), " groups must cover whole bytes; ",
                 "runs of ", L.seg_len, " elements along ", shape_str(x.shape()), " split a byte (use an even group, ",
                 "block or channel stride)");
  const float* xp = xf.data<float>();
  auto* cp = static_cast<uint8_t*>(q.codes.raw_data());
  const bool integer = is_integer_format(spec.format);
  int nan_seen = 0;
#pragma omp parallel for schedule(static) reduction(| : nan_seen) if (n > kParallelMin)
  for (int64_t g = 0; g < L.groups; ++g) {
    const ScaledParams& p = P[static_cast<size_t>(g)];
    for (int64_t j = 0; j < L.segs; ++j) {
      const int64_t off = L.offset(g, j);
      for (int64_t i = off; i < off + L.seg_len; ++i) {
        float c = code_of(k, p, scaled_value(k, p, xp[i]), spec.format);
        if (integer && c != c) {
          nan_seen |= 1;
          c = 0;
        }
        if (nibbles) {
          const auto nib = static_cast<uint8_t>(static_cast<int>(c) & 0xF);
          uint8_t& byte = cp[i / 2];
          if (i % 2 == 0) byte = static_cast<uint8_t>((byte & 0xF0) | nib);
          else byte = static_cast<uint8_t>((byte & 0x0F) | (nib << 4));
        } else if (spec.format == Format::int8) {
          cp[i] = static_cast<uint8_t>(static_cast<int8_t>(c));
        } else {
          cp[i] = spec.format == Format::fp8_e5m2 ? f32_to_fp8_e5m2_bits(c) : f32_to_fp8_e4m3_bits(c);
        }
      }
    }
  }
  LOWBIT_CHECK(!nan_seen, "quantize: x ", x.str(), " contains NaN, which ", format_name(spec.format),
               " cannot encode (fake_quant propagates it instead)");
  return q;
}

Tensor dequantize(const QTensor& q, DType dtype) {
  if (is_block_format(q.spec.format)) return dequantize_blocks(q, dtype);
  const Kind k = kind_of(q.spec);
  const GroupLayout L = group_layout(q.shape, q.spec);
  const float* sp = q.scales.data<float>();
  const float* zp = q.zero_points.defined() ? q.zero_points.data<float>() : nullptr;
  Tensor out = empty(q.shape, DType::f32);
  float* op = out.data<float>();
  const auto* cp = static_cast<const uint8_t*>(q.codes.raw_data());
  const Format f = q.spec.format;
  const int64_t n = out.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t g = 0; g < L.groups; ++g) {
    ScaledParams p;
    p.scale = sp[g];
    p.zp = zp ? zp[g] : 0.0f;
    for (int64_t j = 0; j < L.segs; ++j) {
      const int64_t off = L.offset(g, j);
      for (int64_t i = off; i < off + L.seg_len; ++i) {
        float c;
        if (f == Format::int4) {
          const int nib = (cp[i / 2] >> (4 * (i % 2))) & 0xF;
          c = static_cast<float>(nib >= 8 ? nib - 16 : nib);
        } else if (f == Format::uint4) {
          c = static_cast<float>((cp[i / 2] >> (4 * (i % 2))) & 0xF);
        } else if (f == Format::int8) {
          c = static_cast<float>(static_cast<int8_t>(cp[i]));
        } else {
          c = f == Format::fp8_e5m2 ? fp8_e5m2_bits_to_f32(cp[i]) : fp8_e4m3_bits_to_f32(cp[i]);
        }
        op[i] = dequant_code(k, p, c);
      }
    }
  }
  return dtype == DType::f32 ? out : out.to(dtype);
}

}  // namespace lowbit::quant
