// Quantization-aware linear layers. prepare() attaches a LinearQuant to every selected
// nn::Linear of a model (a module swap in effect, without renaming anything: parameter names
// stay the HF keys): the weight, the input and optionally the output pass through their
// Quantizers before and after the matmul. The global step every quantizer reads lives in one
// shared QuantContext that the trainer sets from the persisted step.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/io/checkpoint.h"
#include "lowbit/nn/module.h"
#include "lowbit/quant/presets.h"
#include "lowbit/quant/quantizer.h"

namespace lowbit::quant {

struct QuantContext {
  int64_t step = 0;  // the global step; set by the trainer before each forward
};

class LinearQuant {
 public:
  LinearQuant(const QuantPreset& preset, std::shared_ptr<const QuantContext> ctx);

  // x: (..., in), w: (out, in), b: (out) or undefined -> (..., out). While calibrating: the
  // plain layer, observing x and w.
  Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b);

  Quantizer& weight() { return weight_; }
  Quantizer* input() { return input_ ? &*input_ : nullptr; }
  Quantizer* output() { return output_ ? &*output_ : nullptr; }
  // (role, quantizer) for "weight", "input", "output" as present.
  std::vector<std::pair<std::string, Quantizer*>> quantizers();

  // Calibrates the quantizers whose policy needs it (calibrated / learned, nvfp4 global amax).
  void begin_calibration(const CalibOptions& opts);
  void finish_calibration();
  void set_start_step(int64_t step);

 private:
  QuantPreset preset_;
  std::shared_ptr<const QuantContext> ctx_;
  Quantizer weight_;
  std::optional<Quantizer> input_, output_;
  bool calibrating_ = false;
};

struct PrepareOptions {
  // Linear layers whose dotted name equals an entry or ends with "." + entry are skipped.
  std::vector<std::string> exclude = {"lm_head"};
  int64_t start_step = 0;  // delayed fake quant: every quantizer switches on at this step
};

// Attaches LinearQuant (sharing ctx) to every nn::Linear below model that is not excluded;
// returns them by dotted module name. Throws if a layer is already prepared.
std::vector<std::pair<std::string, LinearQuant*>> prepare(nn::Module& model, const QuantPreset& preset,
                                                          std::shared_ptr<const QuantContext> ctx,
                                                          const PrepareOptions& opts = {});
// Every prepared layer of model, by dotted module name.
std::vector<std::pair<std::string, LinearQuant*>> prepared_layers(nn::Module& model);

// Calibration over batches: begin on every prepared layer, run forwards, finish.
void begin_calibration(nn::Module& model, const CalibOptions& opts = {});
void finish_calibration(nn::Module& model);

// All quantizer state of a model as one checkpoint component: tensors named
// "<module>.<role>.<tensor>", JSON {"<module>.<role>": state}. A resumed run must have been
// prepared with the same preset (spec mismatch = error).
void register_quantizers(io::CheckpointManager& m, const std::string& name, nn::Module& model);

}  // namespace lowbit::quant
