#include "lowbit/quant/linear_quant.h"

#include <map>
#include <nlohmann/json.hpp>

#include "lowbit/engine/ops/matmul.h"
#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/embedding.h"
#include "lowbit/nn/linear.h"
#include "lowbit/nn/norm_embedding.h"
#include "lowbit/quant/scaled_matmul.h"
#include "lowbit/quant/tile_decode.h"

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
  if (!calibrating_ && mode_ != LinearMode::fake) return converted_forward(x, b);
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

Tensor LinearQuant::embed(const Tensor& ids, const Tensor& w) {
  LOWBIT_CHECK(!input_ && !output_, "LinearQuant::embed: an embedding is quantized weight-only");
  if (calibrating_) {
    if (weight_.calibrating()) weight_.observe(w);
    return embedding(w, ids);
  }
  if (mode_ == LinearMode::fake) return embedding(weight_.forward(w, ctx_->step), ids);
  // ids: (...) -> (..., C): decode only the rows looked up.
  const int64_t V = packed_->shape.at(0), C = packed_->shape.at(1);
  const Tensor idx = ids.to(DType::i64).contiguous();
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor out = empty(out_shape, DType::f32);
  const int64_t* id = idx.data<int64_t>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < idx.numel(); ++i) {
    LOWBIT_CHECK(id[i] >= 0 && id[i] < V, "embedding: id ", id[i], " is outside the vocabulary [0, ", V, ")");
    detail::decode_tile(*packed_, id[i], id[i] + 1, 0, C, o + i * C, C);
  }
  return out.dtype() == w.dtype() ? out : out.to(w.dtype());
}

void LinearQuant::convert(const Tensor& w) {
  LOWBIT_CHECK(!calibrating_, "LinearQuant::convert: finish_calibration() first");
  LOWBIT_CHECK(w.defined() && w.dim() == 2, "LinearQuant::convert: weight must be (out, in), got ",
               w.defined() ? w.str() : "undefined");
  LOWBIT_CHECK(weight_.enabled(), "LinearQuant::convert: the weight quantizer is disabled; nothing to convert");
  packed_ = std::make_shared<const QTensor>(quantize(w, weight_.spec(), weight_.has_params() ? &weight_.params() : nullptr));
  mode_ = LinearMode::real;
}

const QTensor& LinearQuant::packed_weight() const {
  LOWBIT_CHECK(packed_ != nullptr, "LinearQuant: not converted (call convert() first)");
  return *packed_;
}

void LinearQuant::set_mode(LinearMode mode) {
  LOWBIT_CHECK(mode == LinearMode::fake || packed_ != nullptr, "LinearQuant::set_mode: the ",
               mode == LinearMode::real ? "real" : "dequantized", " mode needs convert() first");
  mode_ = mode;
}

Tensor LinearQuant::converted_forward(const Tensor& x, const Tensor& b) {
  const int64_t step = ctx_->step;
  const bool quant_input = input_ && input_->active(step);
  Tensor y;
  if (mode_ == LinearMode::dequantized) {
    Tensor wq;
    {
      NoGradGuard ng;
      wq = dequantize(*packed_);
    }
    y = linear(quant_input ? input_->forward(x, step) : x, wq, b);
  } else {
    // x: (..., in) -> y: (..., out) f32 from the packed operands.
    {
      NoGradGuard ng;
      if (quant_input) {
        const QTensor qa = quantize(x, input_->spec(), input_->has_params() ? &input_->params() : nullptr);
        y = scaled_matmul(qa, *packed_);
      } else {
        y = scaled_matmul(x, *packed_);
      }
    }
    if (any_requires_grad({&x})) {
      // Straight-through: the gradient reaches x through the input quantizer's own fake_quant
      // node (its gradient rule: mask, LSQ scale gradients); the matmul's part is dy · W_dq.
      const Tensor xs = quant_input ? input_->forward(x, step) : x;
      y = record("scaled_linear", y, {xs}, {}, [w = packed_](const BackwardArgs& a) {
        return std::vector<Tensor>{a.needs_grad(0) ? matmul_dequantized(a.grad, *w) : Tensor()};
      });
    }
    if (y.dtype() != x.dtype()) y = y.to(x.dtype());
    if (b.defined()) y = add(y, b.dtype() == y.dtype() ? b : b.to(y.dtype()));
  }
  if (output_) y = output_->forward(y, step);
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

namespace {

// The weight of a quantizable layer: nn::Linear, or nn::Embedding when embeddings is set.
struct Quantizable {
  Tensor weight;
  std::shared_ptr<LinearQuant>* hook = nullptr;
};

Quantizable quantizable(nn::Module* m, bool embeddings) {
  if (auto* lin = dynamic_cast<nn::Linear*>(m)) return {lin->weight, &lin->quant};
  if (auto* emb = dynamic_cast<nn::Embedding*>(m); emb && embeddings) return {emb->weight, &emb->quant};
  return {};
}

}  // namespace

std::vector<std::pair<std::string, LinearQuant*>> prepare(nn::Module& model, const QuantPreset& preset,
                                                          std::shared_ptr<const QuantContext> ctx,
                                                          const PrepareOptions& opts) {
  std::vector<std::pair<std::string, LinearQuant*>> out;
  const QuantPreset weight_only{preset.name, preset.weight, std::nullopt, std::nullopt};
  for (auto& [name, m] : model.named_modules()) {
    const Quantizable q = quantizable(m, opts.embeddings);
    if (!q.hook) continue;
    bool skip = false;
    for (const std::string& e : opts.exclude)
      skip = skip || name == e || (name.size() > e.size() && name.ends_with("." + e));
    if (skip) continue;
    LOWBIT_CHECK(!*q.hook, "prepare: layer '", name, "' is already prepared");
    try {
      (void)scale_grid_shape(q.weight.shape(), preset.weight);
    } catch (const Error& e) {
      const std::string m = e.what();
      LOWBIT_FAIL("prepare: layer '", name, "' (weight ", shape_str(q.weight.shape()), ") cannot use preset ",
                  preset.name, ": ", m.substr(m.find("quant: ") == std::string::npos ? 0 : m.find("quant: ") + 7),
                  " (exclude it or pick another group size)");
    }
    const bool is_embedding = dynamic_cast<nn::Embedding*>(m) != nullptr;
    *q.hook = std::make_shared<LinearQuant>(is_embedding ? weight_only : preset, ctx);
    (*q.hook)->set_start_step(opts.start_step);
    out.emplace_back(name, q.hook->get());
  }
  LOWBIT_CHECK(!out.empty(), "prepare: no linear layer left to quantize (exclude list too broad?)");
  return out;
}

std::vector<std::pair<std::string, LinearQuant*>> prepared_layers(nn::Module& model) {
  std::vector<std::pair<std::string, LinearQuant*>> out;
  for (auto& [name, m] : model.named_modules())
    if (const Quantizable q = quantizable(m, true); q.hook && *q.hook) out.emplace_back(name, q.hook->get());
  return out;
}

std::vector<std::pair<std::string, LinearQuant*>> convert(nn::Module& model) {
  std::vector<std::pair<std::string, LinearQuant*>> out;
  for (auto& [name, m] : model.named_modules()) {
    const Quantizable q = quantizable(m, true);
    if (!q.hook || !*q.hook) continue;
    try {
      (*q.hook)->convert(q.weight);
    } catch (const Error& e) {
      LOWBIT_FAIL("convert: layer '", name, "': ", e.what());
    }
    out.emplace_back(name, q.hook->get());
  }
  LOWBIT_CHECK(!out.empty(), "convert: the model has no prepared layer (call prepare() first)");
  return out;
}

void set_mode(nn::Module& model, LinearMode mode) {
  for (auto& [name, l] : prepared_layers(model)) l->set_mode(mode);
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
