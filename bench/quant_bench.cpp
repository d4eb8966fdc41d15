// Fused block fake-quant throughput (fake_quant_blocks, f32 and bf16 in -> same dtype out, no
// mask) per block format, beside the same run's parallel memcpy (the ceiling). Bytes counted:
// the input read once plus the output written once (nvfp4's per-tensor amax pass re-reads the
// input and is not counted, so it is charged to nvfp4's rate).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>

#include "lowbit/engine/lowbit.h"
#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/models/llama.h"
#include "lowbit/optim/adamw.h"
#include "lowbit/quant/block_formats.h"
#include "lowbit/quant/linear_quant.h"
#include "lowbit/quant/quantizer.h"
#include "lowbit/quant/scaled_matmul.h"

namespace lowbit::quant {
namespace {

constexpr int64_t kRows = 4096, kCols = 4096;  // 16M elements: 64 MiB of f32, beyond the caches

void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] = benchmark::Counter(bytes_per_iter * static_cast<double>(state.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

void BM_MemcpyParallel(benchmark::State& state) {
  const int64_t n = kRows * kCols;
  Tensor a = rand({n}), b = empty({n});
  for (auto _ : state) {
    const char* src = static_cast<const char*>(a.raw_data());
    char* dst = static_cast<char*>(b.raw_data());
    constexpr int64_t kChunk = 1 << 20;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n * 4 / kChunk; ++c) std::memcpy(dst + c * kChunk, src + c * kChunk, kChunk);
    benchmark::DoNotOptimize(b.raw_data());
  }
  set_bytes(state, 2.0 * static_cast<double>(n) * 4);
}
BENCHMARK(BM_MemcpyParallel)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_FakeQuantBlocks(benchmark::State& state) {
  const auto f = static_cast<Format>(state.range(0));
  const auto dt = static_cast<DType>(state.range(1));
  QuantSpec spec;
  spec.format = f;
  spec.granularity = Granularity::per_group;
  spec.group_size = format_block_size(f);
  const Tensor x = randn({kRows, kCols}).to(dt);
  for (auto _ : state) {
    Tensor y = fake_quant_blocks(x, spec, 0.0f, nullptr);
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.SetLabel(format_name(f) + " " + std::string(dtype_name(dt)));
  set_bytes(state, 2.0 * static_cast<double>(x.numel()) * static_cast<double>(dtype_nbytes(dt, 1)));
}
BENCHMARK(BM_FakeQuantBlocks)
    ->ArgsProduct({{static_cast<int64_t>(Format::nvfp4), static_cast<int64_t>(Format::mxfp4),
                    static_cast<int64_t>(Format::mxfp8), static_cast<int64_t>(Format::gguf_q4_0),
                    static_cast<int64_t>(Format::gguf_q8_0)},
                   {static_cast<int64_t>(DType::f32), static_cast<int64_t>(DType::bf16)}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace lowbit::quant

// ---- scaled_matmul and QAT training steps (quant/scaled_matmul.h, quant/linear_quant.h) ----
// scaled_matmul/<preset>/M: y (M, N) = a_dq · w_dqᵀ from packed operands, N = K = 2048, against
// the same process's f32 GEMM at the same shape (gemm_GFLOPS, measured right before). Counters:
// GFLOPS = 2 M N K / time, of_gemm = GFLOPS / gemm_GFLOPS. Presets with an integer path also
// run with path=f32_tiles. qat_step/<plain|W4A8|NVFP4_DEFAULT>: one training step (forward,
// backward, AdamW) of the ~10M model of train_step_bench (8 x 288, SwiGLU 768, vocab 8192,
// batch 8 x 256), prepared with the preset (fake quant), f32.

namespace lowbit::quant {
namespace {

constexpr int64_t kSmN = 2048, kSmK = 2048;

double f32_gemm_gflops(int64_t M, int64_t N, int64_t K) {
  const Tensor a = randn({M, K}), b = randn({N, K});
  Tensor c = empty({M, N});
  auto run = [&] {
    cpu::gemm(false, true, M, N, K, 1.0f, a.data<float>(), K, b.data<float>(), K, 0.0f, c.data<float>(), N);
  };
  run();
  int reps = 0;
  double secs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (secs < 0.3 || reps < 3) {
    run();
    ++reps;
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return 2.0 * static_cast<double>(M * N * K) * reps / secs / 1e9;
}

QTensor quantize_calibrated(const Tensor& x, const QuantSpec& spec) {
  if (spec.scale_policy == ScalePolicy::dynamic && spec.format != Format::nvfp4) return quantize(x, spec);
  Quantizer q(spec);
  q.begin_calibration();
  q.observe(x);
  q.finish_calibration();
  return quantize(x, spec, &q.params());
}

void BM_ScaledMatmul(benchmark::State& state, const std::string& preset, int64_t M, MatmulPath path) {
  const double gemm = f32_gemm_gflops(M, kSmN, kSmK);
  const QuantPreset p = resolve_preset(preset);
  const Tensor x = randn({M, kSmK});
  const QTensor qw = quantize_calibrated(randn({kSmN, kSmK}, 0.0, 0.02), p.weight);
  std::optional<QTensor> qa;
  if (p.input) qa = quantize_calibrated(x, *p.input);
  for (auto _ : state) {
    Tensor y = qa ? scaled_matmul(*qa, qw, {path}) : scaled_matmul(x, qw);
    benchmark::DoNotOptimize(y.raw_data());
  }
  const double flops = 2.0 * static_cast<double>(M * kSmN * kSmK);
  state.counters["GFLOPS"] = benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
  state.counters["gemm_GFLOPS"] = gemm;
  const bool integer = qa && path != MatmulPath::f32_tiles && integer_path_supported(*qa, qw);
  state.SetLabel(std::string(integer ? "int32" : "f32 tiles") + (p.input ? "" : ", f32 activations"));
}

void BM_F32Gemm(benchmark::State& state, int64_t M) {
  const Tensor a = randn({M, kSmK}), b = randn({kSmN, kSmK});
  Tensor c = empty({M, kSmN});
  for (auto _ : state) {
    cpu::gemm(false, true, M, kSmN, kSmK, 1.0f, a.data<float>(), kSmK, b.data<float>(), kSmK, 0.0f, c.data<float>(),
              kSmN);
    benchmark::DoNotOptimize(c.raw_data());
  }
  state.counters["GFLOPS"] = benchmark::Counter(
      2.0 * static_cast<double>(M * kSmN * kSmK) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

void BM_QatStep(benchmark::State& state, const std::string& preset) {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 8192;
  c.hidden_size = 288;
  c.intermediate_size = 768;
  c.num_hidden_layers = 8;
  c.num_attention_heads = c.num_key_value_heads = 6;
  c.head_dim = 48;
  c.max_position_embeddings = 256;
  c.tie_word_embeddings = true;
  const int64_t B = 8, T = 256;
  models::CausalLM model(c, models::ModelOptions{.seed = 1});
  auto ctx = std::make_shared<QuantContext>();
  Generator gen(2);
  const Tensor data = randint({B, T + 1}, 0, c.vocab_size, DType::i64, &gen);
  const Tensor ids = data.narrow(1, 0, T).contiguous(), targets = data.narrow(1, 1, T).contiguous();
  if (preset != "plain") {
    const QuantPreset p = resolve_preset(preset);
    prepare(model, p, ctx);
    if (p.weight.format == Format::nvfp4) {  // nvfp4's per-tensor amax is calibrated
      begin_calibration(model);
      NoGradGuard ng;
      model.forward(ids);
      finish_calibration(model);
    }
  }
  optim::AdamW opt({optim::ParamGroup{model.parameters(), 0.1}}, optim::AdamWOptions{1e-4});
  auto step = [&] {
    opt.zero_grad();
    model.loss(ids, targets).backward();
    opt.step();
  };
  step();
  for (auto _ : state) step();
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(B * T) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

const int registered_scaled_matmul = [] {
  for (int64_t M : {int64_t{1}, int64_t{256}}) {
    benchmark::RegisterBenchmark(("f32_gemm/" + std::to_string(M)).c_str(), [M](benchmark::State& s) { BM_F32Gemm(s, M); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    for (const std::string& name : preset_names()) {
      benchmark::RegisterBenchmark(("scaled_matmul/" + name + "/" + std::to_string(M)).c_str(),
                                   [name, M](benchmark::State& s) { BM_ScaledMatmul(s, name, M, MatmulPath::automatic); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      if (name == "INT8_DEFAULT" || name == "INT8_PER_CHANNEL_PER_TOKEN" || name == "W4A8")
        benchmark::RegisterBenchmark(("scaled_matmul/" + name + "_f32_tiles/" + std::to_string(M)).c_str(),
                                     [name, M](benchmark::State& s) { BM_ScaledMatmul(s, name, M, MatmulPath::f32_tiles); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    }
  }
  for (const char* name : {"plain", "W4A8", "NVFP4_DEFAULT"})
    benchmark::RegisterBenchmark((std::string("qat_step/10M/") + name).c_str(),
                                 [n = std::string(name)](benchmark::State& s) { BM_QatStep(s, n); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  return 0;
}();

}  // namespace
}  // namespace lowbit::quant

BENCHMARK_MAIN();
