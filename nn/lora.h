// LoRA adapters (Hu et al., 2021) on nn::Linear, with PEFT's names and initialisation so an
// adapter file reads like PEFT's: <layer>.lora_A.weight (r, in) ~ U(-1/sqrt(in), 1/sqrt(in))
// (kaiming-uniform with a = sqrt(5)) and <layer>.lora_B.weight (out, r) = 0, and
//   y = base(x) + (alpha / r) * lora_B(lora_A(dropout(x))).
// The base is whatever the Linear computes (plain, fake-quantized, or a real low-bit matmul for
// QLoRA) and is frozen: its weight and bias stop requiring gradients.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "lowbit/engine/random.h"
#include "lowbit/nn/linear.h"

namespace lowbit::nn {

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0;
  // Linear layers whose last name component is one of these ("q_proj", "v_proj", ...).
  std::vector<std::string> targets = {"q_proj", "v_proj"};
};

// Freezes every parameter below model, then adds adapters to every targeted Linear (gen draws
// lora_A and, in training, the dropout masks); returns the adapted layers by dotted name. Throws when a target matches no
// layer or a layer already has an adapter.
std::vector<std::pair<std::string, Linear*>> add_lora(Module& model, const LoraOptions& opts, Generator* gen);
// Every adapter parameter below model, by dotted name (the trainable set of a LoRA run).
std::vector<std::pair<std::string, Tensor>> lora_parameters(Module& model);
// W += (alpha / r) * B A for every adapted layer, then removes the adapters; returns how many
// layers were merged. The merged model computes the same function without the adapters.
int64_t merge_lora(Module& model);

}  // namespace lowbit::nn
