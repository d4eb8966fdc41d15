// Quantizer: a QuantSpec plus its state: calibrated statistics or learned scales, an enabled
// flag and the global step at which fake quantization switches on. Whether it is active is a
// pure function of the step passed in (the persisted global step), so a run resumed inside
// the delay window behaves exactly like an uninterrupted one. Calibration observes N batches
// (max, percentile or MSE search per scale group), then freezes. The state saves and loads
// with a versioned schema checked strictly: a different spec, version or shape is an error.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "lowbit/quant/fake_quant.h"

namespace lowbit::quant {

enum class CalibMethod { max, percentile, mse };

struct CalibOptions {
  CalibMethod method = CalibMethod::max;
  double percentile = 99.99;        // of |x| per scale group (percentile method)
  int mse_candidates = 64;          // amax candidates amax * (0.3 + 0.7 i / n), i = 1..n (mse method)
  int64_t max_samples_per_group = 1 << 16;  // values kept per group for percentile / mse (seeded reservoir)
  uint64_t seed = 0;
};

class Quantizer {
 public:
  explicit Quantizer(QuantSpec spec);

  const QuantSpec& spec() const { return spec_; }
  bool enabled() const { return enabled_; }
  void set_enabled(bool on) { enabled_ = on; }
  int64_t start_step() const { return start_step_; }
  void set_start_step(int64_t step);
  bool active(int64_t step) const { return enabled_ && step >= start_step_; }

  // Fake quantization of x at global step `step`; x itself (no copy) while inactive.
  Tensor forward(const Tensor& x, int64_t step) const;

  // Calibration: observe() any number of batches with the same scale grid (per-tensor scales
  // accept any shape; per-channel ones the same channels), then finish_calibration()
  // computes the per-group statistics and freezes them. Learned policies initialise their
  // scales (and zero points) from the calibrated statistics and make them trainable.
  void begin_calibration(const CalibOptions& opts = {});
  void observe(const Tensor& x);
  void finish_calibration();
  bool calibrating() const { return calibrating_; }
  bool has_params() const { return has_params_; }
  const QParams& params() const { return params_; }
  // Learned scales / zero points (empty unless scale_policy is learned and calibrated).
  std::vector<Tensor> learnable_parameters() const;

  // Persistence. state_json: {"schema": 1, "spec": {...}, "enabled", "start_step",
  // "has_params", "shape"}; state_tensors: the calibrated / learned tensors by name.
  std::string state_json() const;
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  void load_state(const std::string& json, const std::vector<std::pair<std::string, Tensor>>& tensors,
                  const std::string& source = "quantizer state");

 private:
  QuantSpec spec_;
  bool enabled_ = true;
  int64_t start_step_ = 0;
  bool calibrating_ = false, has_params_ = false;
  CalibOptions calib_;
  Shape shape_;  // the observed tensor shape (scale grid follows it)
  QParams params_;
  // Calibration accumulators per group: running min / max / amax and a sample reservoir.
  std::vector<float> run_min_, run_max_, run_amax_;
  std::vector<std::vector<float>> samples_;
  std::vector<int64_t> seen_;
};

}  // namespace lowbit::quant
