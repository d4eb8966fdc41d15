#include "lowbit/nn/lora.h"

#include <algorithm>

namespace lowbit::nn {

std::vector<std::pair<std::string, Linear*>> add_lora(Module& model, const LoraOptions& opts, Generator* gen) {
  LOWBIT_CHECK(!opts.targets.empty(), "LoRA: no target modules given");
  std::vector<std::pair<std::string, Linear*>> out;
  std::vector<bool> used(opts.targets.size(), false);
  for (auto& [name, m] : model.named_modules()) {
    auto* lin = dynamic_cast<Linear*>(m);
    if (!lin || name.ends_with(".lora_A") || name.ends_with(".lora_B")) continue;
    const std::string last = name.substr(name.rfind('.') + 1);
    const auto it = std::find(opts.targets.begin(), opts.targets.end(), last);
    if (it == opts.targets.end()) continue;
    used[static_cast<size_t>(it - opts.targets.begin())] = true;
    out.emplace_back(name, lin);
  }
  for (size_t i = 0; i < used.size(); ++i)
    LOWBIT_CHECK(used[i], "LoRA: target '", opts.targets[i], "' matches no linear layer of the model");
  for (auto& [name, p] : model.named_parameters()) p.set_requires_grad(false);  // the whole base is frozen
  for (auto& [name, lin] : out) lin->add_lora(opts.rank, opts.alpha, opts.dropout, gen);
  return out;
}

std::vector<std::pair<std::string, Tensor>> lora_parameters(Module& model) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, p] : model.named_parameters())
    if (name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos)
      out.emplace_back(name, p);
  return out;
}

int64_t merge_lora(Module& model) {
  std::vector<Linear*> adapted;
  for (auto& [name, m] : model.named_modules())
    if (auto* lin = dynamic_cast<Linear*>(m); lin && lin->has_lora()) adapted.push_back(lin);
  for (Linear* lin : adapted) lin->merge_lora();
  return static_cast<int64_t>(adapted.size());
}

}  // namespace lowbit::nn
