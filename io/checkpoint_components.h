// Ready-made checkpoint components for the state every training run has: a module's
// parameters, an optimizer's state, a random generator, a data loader's position, a quantizer.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "lowbit/engine/random.h"
#include "lowbit/io/checkpoint.h"
#include "lowbit/io/token_data.h"
#include "lowbit/nn/module.h"
#include "lowbit/optim/optimizer.h"
#include "lowbit/quant/quantizer.h"

namespace lowbit::io {

// Parameters by their dotted names; loading requires exactly the same names, shapes, dtypes.
void register_module(CheckpointManager& m, const std::string& name, const nn::Module& module);
// The same for a chosen set of named tensors (e.g. a LoRA run's adapters).
void register_tensors(CheckpointManager& m, const std::string& name, std::vector<std::pair<std::string, Tensor>> tensors);
void register_optimizer(CheckpointManager& m, const std::string& name, optim::Optimizer& opt);
void register_generator(CheckpointManager& m, const std::string& name, Generator& gen);
void register_loader(CheckpointManager& m, const std::string& name, TokenLoader& loader);
// Spec (checked strictly on load), enabled flag, start step, calibrated / learned tensors.
void register_quantizer(CheckpointManager& m, const std::string& name, quant::Quantizer& q);

}  // namespace lowbit::io
