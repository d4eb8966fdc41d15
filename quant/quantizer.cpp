#include "lowbit/quant/quantizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/quant/scale_groups.h"

namespace lowbit::quant {

using namespace detail;
using json = nlohmann::json;

namespace {

constexpr int kSchema = 1;

bool asymmetric_stats(const QuantSpec& s) { return s.format == Format::uint4 || !s.symmetric; }

// Sum of squared fake-quantization errors of samples under statistics st.
double mse_of(const QuantSpec& spec, const GroupStats& st, const std::vector<float>& samples) {
  const Kind k = kind_of(spec);
  const ScaledParams p = params_from_stats(spec, st, DType::f32);
  double err = 0;
  for (float v : samples) {
    const float y = dequant_code(k, p, code_of(k, p, scaled_value(k, p, v), spec.format));
    err += static_cast<double>(y - v) * static_cast<double>(y - v);
  }
  return err;
}

}  // namespace

Quantizer::Quantizer(QuantSpec spec) : spec_(spec) { validate(spec_); }

void Quantizer::set_start_step(int64_t step) {
  LOWBIT_CHECK(step >= 0, "quantizer: start_step must be >= 0, got ", step);
  start_step_ = step;
}

Tensor Quantizer::forward(const Tensor& x, int64_t step) const {
  if (!active(step)) return x;
  LOWBIT_CHECK(!calibrating_, "quantizer: forward while calibrating; call finish_calibration() first");
  return fake_quant(x, spec_, has_params_ ? &params_ : nullptr);
}

void Quantizer::begin_calibration(const CalibOptions& opts) {
  LOWBIT_CHECK(spec_.scale_policy != ScalePolicy::dynamic || spec_.format == Format::nvfp4,
               "quantizer: a dynamic ", format_name(spec_.format), " quantizer has nothing to calibrate");
  LOWBIT_CHECK(opts.percentile > 0 && opts.percentile <= 100, "quantizer: percentile must be in (0, 100], got ",
               opts.percentile);
  LOWBIT_CHECK(opts.mse_candidates >= 1 && opts.max_samples_per_group >= 1,
               "quantizer: mse_candidates and max_samples_per_group must be >= 1");
  calib_ = opts;
  calibrating_ = true;
  shape_.clear();
  run_min_.clear();
  run_max_.clear();
  run_amax_.clear();
  samples_.clear();
  seen_.clear();
}

void Quantizer::observe(const Tensor& x) {
  LOWBIT_CHECK(calibrating_, "quantizer: observe() outside begin_calibration() / finish_calibration()");
  NoGradGuard no_grad;
  const Tensor xf = as_f32_contiguous(x);
  // nvfp4 calibrates one global amax; the others their scale grid.
  QuantSpec grid_spec = spec_;
  if (is_block_format(spec_.format)) {
    grid_spec = QuantSpec{};
    grid_spec.format = Format::int8;
  }
  if (shape_.empty()) {
    shape_ = x.shape();
    const GroupLayout L = group_layout(shape_, grid_spec);
    run_min_.assign(static_cast<size_t>(L.groups), INFINITY);
    run_max_.assign(static_cast<size_t>(L.groups), -INFINITY);
    run_amax_.assign(static_cast<size_t>(L.groups), 0.0f);
    samples_.assign(static_cast<size_t>(L.groups), {});
    seen_.assign(static_cast<size_t>(L.groups), 0);
  }
  LOWBIT_CHECK(scale_grid_shape(x.shape(), grid_spec) == scale_grid_shape(shape_, grid_spec),
               "quantizer: calibration batch has shape ", shape_str(x.shape()), ", earlier batches had ",
               shape_str(shape_), " (the scale grid must not change)");
  const GroupLayout L = group_layout(x.shape(), grid_spec);
  const std::vector<GroupStats> st = group_stats(xf.data<float>(), L);
  for (size_t g = 0; g < st.size(); ++g) {
    LOWBIT_CHECK(!std::isnan(st[g].amax), "quantizer: calibration batch contains NaN (group ", g, ")");
    run_min_[g] = std::min(run_min_[g], st[g].min);
    run_max_[g] = std::max(run_max_[g], st[g].max);
    run_amax_[g] = std::max(run_amax_[g], st[g].amax);
  }
  if (calib_.method == CalibMethod::max) return;
  // Seeded reservoir per group, visited in a fixed order: deterministic for any thread count.
  std::mt19937_64 rng(calib_.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(seen_.empty() ? 0 : seen_[0]));
  const float* xp = xf.data<float>();
  const auto cap = static_cast<size_t>(calib_.max_samples_per_group);
  for (int64_t g = 0; g < L.groups; ++g) {
    auto& res = samples_[static_cast<size_t>(g)];
    int64_t& seen = seen_[static_cast<size_t>(g)];
    for (int64_t j = 0; j < L.segs; ++j) {
      const int64_t off = L.offset(g, j);
      for (int64_t i = off; i < off + L.seg_len; ++i) {
        ++seen;
        if (res.size() < cap) {
          res.push_back(xp[i]);
        } else {
          const uint64_t r = rng() % static_cast<uint64_t>(seen);
          if (r < cap) res[r] = xp[i];
        }
      }
    }
  }
}

void Quantizer::finish_calibration() {
  LOWBIT_CHECK(calibrating_, "quantizer: finish_calibration() without begin_calibration()");
  LOWBIT_CHECK(!shape_.empty(), "quantizer: finish_calibration() before any observe()");
  calibrating_ = false;
  params_ = QParams{};
  if (is_block_format(spec_.format)) {
    params_.global_amax = run_amax_[0];
    has_params_ = true;
    return;
  }
  const size_t G = run_amax_.size();
  std::vector<float> mn(run_min_), mx(run_max_), am(run_amax_);
  for (size_t g = 0; g < G; ++g) {
    float cut = am[g];
    if (calib_.method == CalibMethod::percentile) {
      std::vector<float> a;
      for (float v : samples_[g]) a.push_back(std::fabs(v));
      std::sort(a.begin(), a.end());
      const double pos = std::ceil(calib_.percentile / 100.0 * static_cast<double>(a.size()));
      cut = a.empty() ? 0.0f : a[static_cast<size_t>(std::max(1.0, pos)) - 1];
    } else if (calib_.method == CalibMethod::mse) {
      double best = INFINITY;
      for (int i = calib_.mse_candidates; i >= 1; --i) {  // largest first: ties keep the wider range
        const float f = static_cast<float>(0.3 + 0.7 * i / calib_.mse_candidates);
        const GroupStats st{std::max(mn[g], -am[g] * f), std::min(mx[g], am[g] * f), am[g] * f};
        const double e = mse_of(spec_, st, samples_[g]);
        if (e < best) {
          best = e;
          cut = am[g] * f;
        }
      }
    }
    am[g] = cut;
    mn[g] = std::max(mn[g], -cut);
    mx[g] = std::min(mx[g], cut);
  }
  const Shape grid = scale_grid_shape(shape_, spec_);
  auto tensor_of = [&](const std::vector<float>& v) { return from_vector(v, grid); };
  if (asymmetric_stats(spec_)) {
    params_.min = tensor_of(mn);
    params_.max = tensor_of(mx);
  } else {
    params_.amax = tensor_of(am);
  }
  if (spec_.scale_policy == ScalePolicy::learned) {
    // LSQ starts from the calibrated scales, in the torchao int convention it trains in.
    std::vector<float> sc(G), zp(G);
    for (size_t g = 0; g < G; ++g) {
      const GroupStats st{mn[g], mx[g], am[g]};
      const ScaledParams p = params_from_stats(spec_, st, DType::f32);
      sc[g] = p.scale;
      zp[g] = p.zp;
    }
    params_.scale = tensor_of(sc).set_requires_grad(true);
    if (!spec_.symmetric) params_.zero_point = tensor_of(zp).set_requires_grad(true);
  }
  has_params_ = true;
  samples_.clear();
  samples_.shrink_to_fit();
}

std::vector<Tensor> Quantizer::learnable_parameters() const {
  std::vector<Tensor> out;
  if (params_.scale.defined()) out.push_back(params_.scale);
  if (params_.zero_point.defined()) out.push_back(params_.zero_point);
  return out;
}

std::string Quantizer::state_json() const {
  json j;
  j["schema"] = kSchema;
  j["spec"] = json::parse(to_json(spec_));
  j["enabled"] = enabled_;
  j["start_step"] = start_step_;
  j["has_params"] = has_params_;
  j["shape"] = shape_;
  return j.dump();
}

std::vector<std::pair<std::string, Tensor>> Quantizer::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"amax", &params_.amax},
                                {"min", &params_.min},
                                {"max", &params_.max},
                                {"scale", &params_.scale},
                                {"zero_point", &params_.zero_point}})
    if (t->defined()) out.emplace_back(name, t->detach().clone());
  if (has_params_ && is_block_format(spec_.format))
    out.emplace_back("global_amax", from_vector(std::vector<float>{params_.global_amax}, {1}));
  return out;
}

void Quantizer::load_state(const std::string& text, const std::vector<std::pair<std::string, Tensor>>& tensors,
                           const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    LOWBIT_FAIL(source, ": invalid JSON: ", e.what());
  }
  LOWBIT_CHECK(j.is_object() && j.contains("schema") && j["schema"].is_number_integer(), source,
               ": missing 'schema' (not a quantizer state)");
  LOWBIT_CHECK(j["schema"].get<int>() == kSchema, source, ": schema ", j["schema"].get<int>(),
               " is not the supported version ", kSchema);
  for (const char* key : {"spec", "enabled", "start_step", "has_params", "shape"})
    LOWBIT_CHECK(j.contains(key), source, ": missing key '", key, "'");
  const QuantSpec saved = parse_quant_spec(j["spec"].dump(), source + " spec");
  LOWBIT_CHECK(saved == spec_, source, ": spec mismatch: saved ", to_json(saved), ", this quantizer has ",
               to_json(spec_));
  LOWBIT_CHECK(j["enabled"].is_boolean() && j["has_params"].is_boolean() && j["start_step"].is_number_integer() &&
                   j["shape"].is_array(),
               source, ": wrong types for enabled/has_params/start_step/shape");
  const bool has = j["has_params"].get<bool>();
  Shape shape;
  for (const auto& d : j["shape"]) {
    LOWBIT_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, source, ": bad 'shape'");
    shape.push_back(d.get<int64_t>());
  }
  std::map<std::string, Tensor> in(tensors.begin(), tensors.end());
  LOWBIT_CHECK(in.size() == tensors.size(), source, ": duplicate tensor names");
  QParams p;
  if (has) {
    std::vector<std::string> want;
    if (is_block_format(spec_.format)) {
      want = {"global_amax"};
    } else {
      if (asymmetric_stats(spec_)) want = {"min", "max"};
      else want = {"amax"};
      if (spec_.scale_policy == ScalePolicy::learned) {
        want.push_back("scale");
        if (!spec_.symmetric) want.push_back("zero_point");
      }
    }
    const Shape grid = is_block_format(spec_.format) ? Shape{1} : scale_grid_shape(shape, spec_);
    for (const std::string& n : want) {
      const auto it = in.find(n);
      LOWBIT_CHECK(it != in.end(), source, ": missing tensor '", n, "'");
      LOWBIT_CHECK(it->second.shape() == grid && it->second.dtype() == DType::f32, source, ": tensor '", n, "' is ",
                   it->second.str(), ", expected f32 ", shape_str(grid));
      for (float v : it->second.contiguous().to_vector<float>())
        LOWBIT_CHECK(std::isfinite(v), source, ": tensor '", n, "' has non-finite values");
    }
    LOWBIT_CHECK(in.size() == want.size(), source, ": ", in.size(), " tensors, expected ", want.size());
    auto get = [&](const char* n) { return in.at(n).detach().contiguous().clone(); };
    if (is_block_format(spec_.format)) {
      p.global_amax = get("global_amax").to_vector<float>()[0];
    } else {
      if (in.count("amax")) p.amax = get("amax");
      if (in.count("min")) p.min = get("min");
      if (in.count("max")) p.max = get("max");
      // Learned tensors are loaded in place when they exist, so an optimizer that already holds
      // them keeps training the same tensors.
      auto learned = [&](const char* n, const Tensor& existing) {
        if (existing.defined() && existing.shape() == in.at(n).shape()) {
          NoGradGuard no_grad;
          copy_(existing, in.at(n));
          return existing;
        }
        return get(n).set_requires_grad(true);
      };
      if (in.count("scale")) p.scale = learned("scale", params_.scale);
      if (in.count("zero_point")) p.zero_point = learned("zero_point", params_.zero_point);
    }
  } else {
    LOWBIT_CHECK(in.empty(), source, ": tensors present but has_params is false");
  }
  enabled_ = j["enabled"].get<bool>();
  set_start_step(j["start_step"].get<int64_t>());
  has_params_ = has;
  shape_ = shape;
  params_ = p;
  calibrating_ = false;
}

}  // namespace lowbit::quant
