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

// How a prepared layer computes (see LinearQuant::convert):
//   fake         fake_quant(x) · fake_quant(w)ᵀ through linear() - QAT
//   dequantized  fake_quant(x) · dequantize(packed w)ᵀ through linear(): the converted weights
//                on the fake path's matmul (bitwise equal to fake; a reference for tests)
//   real         scaled_matmul(quantize(x), packed w): the real low-bit matmul; dx by
//                straight-through gradients from the dequantized operands
enum class LinearMode { fake, dequantized, real };

struct QuantContext {
  int64_t step = 0;  // the global step; set by the trainer before each forward
};

class LinearQuant {
 public:
  LinearQuant(const QuantPreset& preset, std::shared_ptr<const QuantContext> ctx);

  // x: (..., in), w: (out, in), b: (out) or undefined -> (..., out). While calibrating: the
  // plain layer, observing x and w.
  Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b);
  // Embeddings (weight-only): ids (...) integer, w: (V, C) -> (..., C) in w's dtype: the rows
  // of fake_quant(w), or, once converted, rows decoded from the packed table (only the rows
  // looked up are decoded; the dequantized and real modes are the same here).
  Tensor embed(const Tensor& ids, const Tensor& w);

  Quantizer& weight() { return weight_; }
  Quantizer* input() { return input_ ? &*input_ : nullptr; }
  Quantizer* output() { return output_ ? &*output_ : nullptr; }
  // (role, quantizer) for "weight", "input", "output" as present.
  std::vector<std::pair<std::string, Quantizer*>> quantizers();

  // Calibrates the quantizers whose policy needs it (calibrated / learned, nvfp4 global amax).
  void begin_calibration(const CalibOptions& opts);
  void finish_calibration();
  void set_start_step(int64_t step);

  // Convert: quantizes w once with the weight quantizer's spec and current parameters
  // (calibrated or learned scales honoured) into a packed QTensor kept here, and switches to
  // LinearMode::real. From then on the packed weight is used in the dequantized and real modes
  // whatever the weight quantizer's start step; w gets no gradient in those modes (frozen).
  // The input and output quantizers still follow their spec, parameters and start step.
  void convert(const Tensor& w);
  bool converted() const { return packed_ != nullptr; }
  const QTensor& packed_weight() const;
  // fake is always available; dequantized and real need convert().
  void set_mode(LinearMode mode);
  LinearMode mode() const { return mode_; }

 private:
  Tensor converted_forward(const Tensor& x, const Tensor& b);

  std::shared_ptr<const QTensor> packed_;
  LinearMode mode_ = LinearMode::fake;
  QuantPreset preset_;
  std::shared_ptr<const QuantContext> ctx_;
  Quantizer weight_;
  std::optional<Quantizer> input_, output_;
  bool calibrating_ = false;
};

struct PrepareOptions {
  // Layers whose dotted name equals an entry or ends with "." + entry are skipped.
  std::vector<std::string> exclude = {"lm_head"};
  int64_t start_step = 0;  // delayed fake quant: every quantizer switches on at this step
  // Also quantize nn::Embedding tables, weight-only with the preset's weight spec (a tied
  // output projection reads the unquantized table, as an excluded lm_head would).
  bool embeddings = false;
};

// Attaches LinearQuant (sharing ctx) to every nn::Linear below model that is not excluded, and
// with opts.embeddings a weight-only one to every nn::Embedding; returns them by dotted module
// name. Throws if a layer is already prepared.
std::vector<std::pair<std::string, LinearQuant*>> prepare(nn::Module& model, const QuantPreset& preset,
                                                          std::shared_ptr<const QuantContext> ctx,
                                                          const PrepareOptions& opts = {});
// Every prepared layer (linear or embedding) of model, by dotted module name.
std::vector<std::pair<std::string, LinearQuant*>> prepared_layers(nn::Module& model);

// Converts every prepared layer of model (LinearQuant::convert with its nn::Linear's weight);
// returns them by dotted module name. Throws when nothing is prepared.
std::vector<std::pair<std::string, LinearQuant*>> convert(nn::Module& model);
// Sets the mode of every prepared layer of model.
void set_mode(nn::Module& model, LinearMode mode);

// Calibration over batches: begin on every prepared layer, run forwards, finish.
void begin_calibration(nn::Module& model, const CalibOptions& opts = {});
void finish_calibration(nn::Module& model);

// All quantizer state of a model as one checkpoint component: tensors named
// "<module>.<role>.<tensor>", JSON {"<module>.<role>": state}. A resumed run must have been
// prepared with the same preset (spec mismatch = error).
void register_quantizers(io::CheckpointManager& m, const std::string& name, nn::Module& model);

}  // namespace lowbit::quant
