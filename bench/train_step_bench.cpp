// One full training step (forward, backward, AdamW) of Llama-shaped models of about 1M, 10M,
// 50M and 124M parameters, in f32 and in bf16 mixed precision (bf16 activations, f32 master
// weights and AdamW states).
//
// Counters:
//   tok/s         tokens per second
//   GFLOPS        model FLOP/s: (6 N tokens + 12 L C seq tokens) / step time, N = non-embedding
//                 parameters + lm_head (recomputation not counted)
//   gemm_GFLOPS   the same process's f32 GEMM rate on the model's own ffn-up shape
//                 (tokens x C) x (C x I), measured right before the model's steps
//   of_gemm       GFLOPS / gemm_GFLOPS
//   base_MB       resident set right before the model is built (VmRSS: process code, libraries,
//                 OpenMP threads, oneDNN's JIT kernels from the GEMM measurement); the peak is
//                 reset at the same moment
//   peak_MB       peak resident set (VmHWM) from then on: model build, first step, timed steps
//   min_MB        analytic minimum: parameters + gradients + AdamW moments (f32) plus the
//                 activations a hand-written trainer must keep for backward (see activation_bytes)
//   of_min        (peak_MB - base_MB) / min_MB: the memory the model and training add, against
//                 what they must add. The baseline is subtracted because it does not depend on
//                 the model (13-19 MB here) and would otherwise inflate the small presets.
//   live_MB       the CPU allocator's peak of live tensor bytes over the same span (cached free
//                 blocks not counted): peak_MB - base_MB - live_MB is allocator cache, heap
//                 fragmentation and non-tensor memory
//
// The 124M model is shaped like GPT-2 small: 12 layers, 768 wide, 12 heads, vocabulary 50304,
// tied embeddings, SwiGLU width 2048 (the parameter count of GPT-2's 4x GELU MLP).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/models/llama.h"
#include "lowbit/optim/adamw.h"

namespace {

using namespace lowbit;

struct Preset {
  const char* name;
  int64_t layers, hidden, heads, intermediate, vocab, batch, seq;
};

const Preset kPresets[] = {
    {"1M", 4, 128, 4, 352, 2048, 8, 256},
    {"10M", 8, 288, 6, 768, 8192, 8, 256},
    {"50M", 8, 640, 10, 1728, 16384, 4, 256},
    {"124M", 12, 768, 12, 2048, 50304, 4, 64},
};

models::ModelConfig config_of(const Preset& p) {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = p.vocab;
  c.hidden_size = p.hidden;
  c.intermediate_size = p.intermediate;
  c.num_hidden_layers = p.layers;
  c.num_attention_heads = c.num_key_value_heads = p.heads;
  c.head_dim = p.hidden / p.heads;
  c.max_position_embeddings = p.seq;
  c.tie_word_embeddings = true;
  return c;
}

// Per token, what backward needs from forward in a lean implementation: per layer the two
// normed inputs (2C), q/k/v (3C), attention output (C) and its per-head logsumexp (H, f32),
// the residual after attention (C), gate, up and their product (3I); then the final normed
// hidden (C) and the logits (V).
double activation_bytes(const Preset& p, double bytes_per_value) {
  const double per_layer = 7.0 * p.hidden + 3.0 * p.intermediate;
  const double per_token = p.layers * per_layer + p.hidden + p.vocab;
  return static_cast<double>(p.batch * p.seq) * (per_token * bytes_per_value + p.layers * p.heads * 4.0);
}

// A field of /proc/self/status in MiB ("VmHWM:", "VmRSS:").
double status_mb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string key(field);
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) / 1024.0;
  return 0;
}

void reset_peak_rss() {
  cpu_empty_cache();
  std::ofstream("/proc/self/clear_refs") << "5";
  reset_cpu_peak_memory();
}

double gemm_gflops(int64_t M, int64_t K, int64_t N) {
  std::vector<float> a(static_cast<size_t>(M * K), 0.5f), b(static_cast<size_t>(K * N), 0.25f),
      c(static_cast<size_t>(M * N));
  cpu::gemm(false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
  int reps = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double secs = 0;
  while (secs < 0.3 || reps < 3) {
    cpu::gemm(false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
    ++reps;
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return 2.0 * static_cast<double>(M * N * K) * reps / secs / 1e9;
}

void BM_TrainStep(benchmark::State& state, const Preset& p, DType compute) {
  const double gemm = gemm_gflops(p.batch * p.seq, p.hidden, p.intermediate);
  reset_peak_rss();
  const double base = status_mb("VmRSS:");
  const models::ModelConfig c = config_of(p);
  models::ModelOptions o;
  o.compute_dtype = compute;
  o.seed = 1;
  models::CausalLM model(c, o);
  optim::AdamW opt({optim::ParamGroup{model.parameters(), 0.1}}, optim::AdamWOptions{1e-4});
  Generator gen(2);
  const Tensor data = randint({p.batch, p.seq + 1}, 0, p.vocab, DType::i64, &gen);
  const Tensor ids = data.narrow(1, 0, p.seq).contiguous(), targets = data.narrow(1, 1, p.seq).contiguous();
  auto step = [&] {
    opt.zero_grad();
    model.loss(ids, targets).backward();
    opt.step();
  };
  step();  // first step allocates AdamW states
  double secs = 0;
  int64_t steps = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++steps;
  }
  const double step_s = secs / static_cast<double>(steps);
  const double tokens = static_cast<double>(p.batch * p.seq);
  const double flops = model.train_flops(p.batch * p.seq, p.seq);
  const double n_all = static_cast<double>(model.num_parameters());
  const double min_mb =
      (16.0 * n_all + activation_bytes(p, static_cast<double>(dtype_nbytes(compute, 1)))) / (1024.0 * 1024.0);
  const double peak = status_mb("VmHWM:");
  state.counters["tok/s"] = tokens / step_s;
  state.counters["GFLOPS"] = flops / step_s / 1e9;
  state.counters["gemm_GFLOPS"] = gemm;
  state.counters["of_gemm"] = flops / step_s / 1e9 / gemm;
  state.counters["params_M"] = n_all / 1e6;
  state.counters["peak_MB"] = peak;
  state.counters["min_MB"] = min_mb;
  state.counters["base_MB"] = base;
  state.counters["of_min"] = (peak - base) / min_mb;
  state.counters["live_MB"] = static_cast<double>(cpu_memory_stats().peak_bytes) / (1024.0 * 1024.0);
  state.SetLabel(std::to_string(p.batch) + "x" + std::to_string(p.seq) + " threads=" +
                 std::to_string(omp_get_max_threads()));
}

const int registered = [] {
  for (const Preset& p : kPresets)
    for (DType d : {DType::f32, DType::bf16})
      benchmark::RegisterBenchmark((std::string("train_step/") + p.name + "/" + std::string(dtype_name(d))).c_str(),
                                   [p, d](benchmark::State& s) { BM_TrainStep(s, p, d); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
