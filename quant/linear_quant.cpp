#include "lowbit/quant/linear_quant.h"

#include <map>
#include <nlohmann/json.hpp>

#include "lowbit/engine/ops/matmul.h"
#include "lowbit/nn/linear.h"

namespace lowbit::quant {

namespace {

bool needs_calibration(const QuantSpec& s) {
  return s.scale_policy != ScalePolicy::dynamic || s.format == Format::nvfp4;
}

}  // namespace

LinearQuant::LinearQuant(const QuantPreset& preset, std::shared_ptr<const QuantContext> ctx)
    : preset_(preset), ctx_(std::move(ctx)), weight_(preset.weight) {
  LOWBIT_CHECK(ctx_ != nullptr, "LinearQuant: null QuantContext");
  if (preset.input) input_.emplace(*preset.input);
  if (preset.output) output_.emplace(*preset.output);
}

std::vector<std::pair<std::string, Quantizer*>> LinearQuant::quantizers() {
  std::vector<std::pair<std::string, Quantizer*>> out{{"weight", &weight_}};
  if (input_) out.emplace_back("input", &*input_);
  if (output_) out.emplace_back("output", &*output_);
  return out;
}

Tensor LinearQuant::forward(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t step = ctx_->step;
  Tensor xq = x, wq = w;
  if (calibrating_) {
    for (auto& [role, q] : quantizers()) {
      if (!q->calibrating()) continue;
      if (role == "weight") q->observe(w);
      if (role == "input") q->observe(x);
    }
  } else {
    if (input_) xq = input_->forward(x, step);
    wq = weight_.forward(w, step);
  }
  Tensor y = linear(xq, wq, b);
  if (calibrating_ && output_ && output_->calibrating()) output_->observe(y);
  if (!calibrating_ && output_) y = output_->forward(y, step);
  return y;
}

void LinearQuant::begin_calibration(const CalibOptions& opts) {
  calibrating_ = true;
  for (auto& [role, q] : quantizers())
    if (needs_calibration(q->spec())) q->begin_calibration(opts);
}

void LinearQuant::finish_calibration() {
  LOWBIT_CHECK(calibrating_, "LinearQuant: finish_calibration() without begin_calibration()");
  for (auto& [role, q] : quantizers())
    if (q->calibrating()) q->finish_calibration();
  calibrating_ = false;
}

void LinearQuant::set_start_step(int64_t step) {
  for (auto& [role, q] : quantizers()) q->set_start_step(step);
}

std::vector<std::pair<std::string, LinearQuant*>> prepare(nn::Module& model, const QuantPreset& preset,
                                                          std::shared_ptr<const QuantContext> ctx,
                                                          const PrepareOptions& opts) {
  std::vector<std::pair<std::string, LinearQuant*>> out;
  for (auto& [name, m] : model.named_modules()) {
    auto* lin = dynamic_cast<nn::Linear*>(m);
    if (!lin) continue;
    bool skip = false;
    for (const std::string& e : opts.exclude)
      skip = skip || name == e || (name.size() > e.size() && name.ends_with("." + e));
    if (skip) continue;
    LOWBIT_CHECK(!lin->quant, "prepare: layer '", name, "' is already prepared");
    try {
      (void)scale_grid_shape(lin->weight.shape(), preset.weight);
    } catch (const Error& e) {
      const std::string m = e.what();
      LOWBIT_FAIL("prepare: layer '", name, "' (weight ", shape_str(lin->weight.shape()), ") cannot use preset ",
                  preset.name, ": ", m.substr(m.find("quant: ") == std::string::npos ? 0 : m.find("quant: ") + 7),
                  " (exclude it or pick another group size)");
    }
    lin->quant = std::make_shared<LinearQuant>(preset, ctx);
    lin->quant->set_start_step(opts.start_step);
    out.emplace_back(name, lin->quant.get());
  }
  LOWBIT_CHECK(!out.empty(), "prepare: no linear layer left to quantize (exclude list too broad?)");
  return out;
}

std::vector<std::pair<std::string, LinearQuant*>> prepared_layers(nn::Module& model) {
  std::vector<std::pair<std::string, LinearQuant*>> out;
  for (auto& [name, m] : model.named_modules())
    if (auto* lin = dynamic_cast<nn::Linear*>(m); lin && lin->quant) out.emplace_back(name, lin->quant.get());
  return out;
}

void begin_calibration(nn::Module& model, const CalibOptions& opts) {
  for (auto& [name, l] : prepared_layers(model)) l->begin_calibration(opts);
}

void finish_calibration(nn::Module& model) {
  for (auto& [name, l] : prepared_layers(model)) l->finish_calibration();
}

void register_quantizers(io::CheckpointManager& m, const std::string& name, nn::Module& model) {
  using json = nlohmann::json;
  m.register_component(
      name,
      [&model] {
        io::ComponentState st;
        json j = json::object();
        for (auto& [mod, l] : prepared_layers(model))
          for (auto& [role, q] : l->quantizers()) {
            const std::string key = mod + "." + role;
            j[key] = json::parse(q->state_json());
            for (auto& [tn, t] : q->state_tensors()) st.tensors.emplace_back(key + "." + tn, t);
          }
        st.json = j.dump();
        return st;
      },
      [&model, name](const io::ComponentState& st) {
        const json j = json::parse(st.json, nullptr, false);
        LOWBIT_CHECK(j.is_object(), "checkpoint component '", name, "': JSON state is not an object");
        size_t used = 0;
        std::map<std::string, Tensor> all(st.tensors.begin(), st.tensors.end());
        for (auto& [mod, l] : prepared_layers(model))
          for (auto& [role, q] : l->quantizers()) {
            const std::string key = mod + "." + role;
            LOWBIT_CHECK(j.contains(key), "checkpoint component '", name, "': no state for quantizer '", key,
                         "' (prepared with a different preset or exclude list?)");
            std::vector<std::pair<std::string, Tensor>> mine;
            for (const auto& [tn, t] : all)
              if (tn.rfind(key + ".", 0) == 0 && tn.find('.', key.size() + 1) == std::string::npos)
                mine.emplace_back(tn.substr(key.size() + 1), t);
            q->load_state(j[key].dump(), mine, "checkpoint component '" + name + "' quantizer '" + key + "'");
            ++used;
          }
        LOWBIT_CHECK(used == j.size(), "checkpoint component '", name, "': holds ", j.size(),
                     " quantizers, this model has ", used);
      });
}

}  // namespace lowbit::quant
