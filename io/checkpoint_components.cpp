#include "lowbit/io/checkpoint_components.h"

#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "lowbit/engine/autograd/grad_mode.h"

namespace lowbit::io {

using json = nlohmann::json;

namespace {

json parse_object(const std::string& text, const std::string& name) {
  json j = json::parse(text, nullptr, false);
  LOWBIT_CHECK(j.is_object(), "checkpoint component '", name, "': JSON state is not an object");
  return j;
}

template <class T>
T field(const json& j, const char* key, const std::string& name) {
  LOWBIT_CHECK(j.contains(key), "checkpoint component '", name, "': missing field '", key, "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    LOWBIT_FAIL("checkpoint component '", name, "': field '", key, "' has the wrong type: ", j.at(key).dump());
  }
}

}  // namespace

void register_module(CheckpointManager& m, const std::string& name, const nn::Module& module) {
  register_tensors(m, name, module.named_parameters());
}

void register_tensors(CheckpointManager& m, const std::string& name,
                      std::vector<std::pair<std::string, Tensor>> tensors) {
  auto params = std::make_shared<const std::vector<std::pair<std::string, Tensor>>>(std::move(tensors));
  m.register_component(
      name,
      [params] {
        ComponentState s;
        for (const auto& [n, p] : *params) s.tensors.emplace_back(n, p.detach());
        return s;
      },
      [params, name](const ComponentState& s) {
        std::map<std::string, Tensor> in(s.tensors.begin(), s.tensors.end());
        for (const auto& [n, p] : *params) {
          const auto it = in.find(n);
          LOWBIT_CHECK(it != in.end(), "checkpoint component '", name, "': parameter '", n, "' is missing");
          LOWBIT_CHECK(it->second.shape() == p.shape() && it->second.dtype() == p.dtype(), "checkpoint component '",
                       name, "': parameter '", n, "' is ", it->second.str(), ", the model has ", p.str());
        }
        LOWBIT_CHECK(in.size() == params->size(), "checkpoint component '", name, "': holds ", in.size(),
                     " tensors, the model has ", params->size(), " parameters");
        NoGradGuard no_grad;
        for (const auto& [n, p] : *params) copy_(p, in.at(n));
      });
}

void register_optimizer(CheckpointManager& m, const std::string& name, optim::Optimizer& opt) {
  m.register_component(
      name, [&opt] { return ComponentState{opt.state_dict(), "{}"}; },
      [&opt](const ComponentState& s) { opt.load_state_dict(s.tensors); });
}

void register_generator(CheckpointManager& m, const std::string& name, Generator& gen) {
  m.register_component(
      name,
      [&gen] {
        return ComponentState{{}, json{{"seed", gen.seed()}, {"offset", gen.offset()}}.dump()};
      },
      [&gen, name](const ComponentState& s) {
        const json j = parse_object(s.json, name);
        gen.manual_seed(field<uint64_t>(j, "seed", name));
        gen.set_offset(field<uint64_t>(j, "offset", name));
      });
}

void register_loader(CheckpointManager& m, const std::string& name, TokenLoader& loader) {
  m.register_component(
      name,
      [&loader] {
        const LoaderPosition& p = loader.position();
        return ComponentState{{}, json{{"epoch", p.epoch}, {"cursor", p.cursor}, {"windows", loader.num_windows()}}.dump()};
      },
      [&loader, name](const ComponentState& s) {
        const json j = parse_object(s.json, name);
        const auto windows = field<int64_t>(j, "windows", name);
        LOWBIT_CHECK(windows == loader.num_windows(), "checkpoint component '", name, "': saved with ", windows,
                     " windows, the data now has ", loader.num_windows(), " (different data or seq_len?)");
        loader.set_position({field<uint64_t>(j, "epoch", name), field<uint64_t>(j, "cursor", name)});
      });
}

void register_quantizer(CheckpointManager& m, const std::string& name, quant::Quantizer& q) {
  m.register_component(
      name, [&q] { return ComponentState{q.state_tensors(), q.state_json()}; },
      [&q, name](const ComponentState& s) { q.load_state(s.json, s.tensors, "checkpoint component '" + name + "'"); });
}

}  // namespace lowbit::io
