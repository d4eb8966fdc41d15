// fake_quant/<format>/<granularity>/<dtype>: the autograd op fake_quant(x, spec) on a 4096 x 4096
// tensor (64 MiB of f32, beyond the caches), f32 or bf16 in -> same dtype out, with its 1-byte
// clipped_rounded mask (the default gradient rule; x does not require grad, so nothing else is
// saved). Bytes counted: x read once, out and mask written once; passes that re-read x (a
// dynamic per_tensor scale's amax pass, nvfp4's per-tensor amax) are charged to the format's
// rate. Counters: GB/s; memcpy_GB/s = the same process's parallel memcpy (2 x 64 MiB, 1 MiB
// chunks over the OpenMP threads), measured right before; of_memcpy = GB/s / memcpy_GB/s.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "lowbit/engine/lowbit.h"
#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/models/llama.h"
#include "lowbit/optim/adamw.h"
#include "lowbit/quant/fake_quant.h"
#include "lowbit/quant/int_gemm.h"
#include "lowbit/quant/linear_quant.h"
#include "lowbit/quant/quantizer.h"
#include "lowbit/quant/scaled_matmul.h"

namespace lowbit::quant {
namespace {

constexpr int64_t kRows = 4096, kCols = 4096;

// Mean seconds of run() after one warm-up call, over at least 3 calls and 0.3 s.
template <class F>
double seconds_per_run(F run) {
  run();
  int reps = 0;
  double secs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (secs < 0.3 || reps < 3) {
    run();
    ++reps;
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return secs / reps;
}

// Parallel memcpy of 64 MiB, GB/s counting the read and the write.
double memcpy_gbps() {
  const int64_t n = kRows * kCols * 4;
  const Tensor a = rand({n / 4}), b = empty({n / 4});
  auto run = [&] {
    const char* src = static_cast<const char*>(a.raw_data());
    char* dst = static_cast<char*>(b.raw_data());
    constexpr int64_t kChunk = 1 << 20;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n / kChunk; ++c) std::memcpy(dst + c * kChunk, src + c * kChunk, kChunk);
  };
  return 2.0 * static_cast<double>(n) / seconds_per_run(run) / 1e9;
}

struct FakeQuantCase {
  std::string name;
  QuantSpec spec;
  bool calibrated = false;  // scale from a calibration pass over x (one pass at run time)
};

QuantSpec make_spec(Format f, Granularity g, int64_t group = 0) {
  QuantSpec s;
  s.format = f;
  s.granularity = g;
  s.group_size = group;
  if (f == Format::uint4) s.symmetric = false;
  return s;
}

std::vector<FakeQuantCase> fake_quant_cases() {
  using G = Granularity;
  std::vector<FakeQuantCase> c = {
      {"int8/per_tensor", make_spec(Format::int8, G::per_tensor)},
      {"int8/per_channel", make_spec(Format::int8, G::per_channel)},
      {"int8/per_token", make_spec(Format::int8, G::per_token)},
      {"int8/per_group128", make_spec(Format::int8, G::per_group, 128)},
      {"int8/block2d", make_spec(Format::int8, G::block2d)},
      {"int4/per_group32", make_spec(Format::int4, G::per_group, 32)},
      {"int4/per_channel", make_spec(Format::int4, G::per_channel)},
      {"uint4/per_group128", make_spec(Format::uint4, G::per_group, 128)},
      {"fp8_e4m3/per_tensor", make_spec(Format::fp8_e4m3, G::per_tensor)},
      {"fp8_e4m3/per_channel", make_spec(Format::fp8_e4m3, G::per_channel)},
      {"fp8_e4m3/per_token", make_spec(Format::fp8_e4m3, G::per_token)},
      {"fp8_e4m3/per_group128", make_spec(Format::fp8_e4m3, G::per_group, 128)},
      {"fp8_e4m3/block2d", make_spec(Format::fp8_e4m3, G::block2d)},
      {"fp8_e5m2/per_tensor", make_spec(Format::fp8_e5m2, G::per_tensor)},
      {"nvfp4", make_spec(Format::nvfp4, G::per_group, 16)},
      {"mxfp4", make_spec(Format::mxfp4, G::per_group, 32)},
      {"mxfp8", make_spec(Format::mxfp8, G::per_group, 32)},
      {"gguf_q4_0", make_spec(Format::gguf_q4_0, G::per_group, 32)},
      {"gguf_q8_0", make_spec(Format::gguf_q8_0, G::per_group, 32)},
  };
  FakeQuantCase asym{"int8_asym/per_token", make_spec(Format::int8, G::per_token)};
  asym.spec.symmetric = false;
  c.insert(c.begin() + 5, asym);
  for (auto [name, f] : {std::pair{"int8_modelopt/per_channel", Format::int8},
                         std::pair{"fp8_e4m3_modelopt/per_tensor", Format::fp8_e4m3}}) {
    FakeQuantCase m{std::string(name) + "/calibrated",
                    make_spec(f, f == Format::int8 ? G::per_channel : G::per_tensor)};
    m.spec.convention = Convention::modelopt;
    m.spec.scale_policy = ScalePolicy::calibrated;
    m.calibrated = true;
    c.push_back(m);
  }
  return c;
}

void BM_FakeQuant(benchmark::State& state, const FakeQuantCase& c, DType dt) {
  const double memcpy_rate = memcpy_gbps();
  const Tensor x = randn({kRows, kCols}).to(dt);
  std::optional<Quantizer> q;
  if (c.calibrated) {
    q.emplace(c.spec);
    q->begin_calibration();
    q->observe(x);
    q->finish_calibration();
  }
  const QParams* p = q ? &q->params() : nullptr;
  (void)fake_quant(x, c.spec, p);  // warm: the output and mask blocks come from the allocator's cache
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    Tensor y = fake_quant(x, c.spec, p);
    benchmark::DoNotOptimize(y.raw_data());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double bytes = static_cast<double>(x.numel()) * (2.0 * static_cast<double>(dtype_nbytes(dt, 1)) + 1.0);
  const double rate = bytes * static_cast<double>(state.iterations()) / secs / 1e9;
  state.counters["GB/s"] = rate;
  state.counters["memcpy_GB/s"] = memcpy_rate;
  state.counters["of_memcpy"] = rate / memcpy_rate;
}

const int registered_fake_quant = [] {
  for (const FakeQuantCase& c : fake_quant_cases())
    for (DType dt : {DType::f32, DType::bf16})
      benchmark::RegisterBenchmark(("fake_quant/" + c.name + "/" + std::string(dtype_name(dt))).c_str(),
                                   [c, dt](benchmark::State& s) { BM_FakeQuant(s, c, dt); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  return 0;
}();

}  // namespace
}  // namespace lowbit::quant

// ---- scaled_matmul and QAT training steps (quant/scaled_matmul.h, quant/linear_quant.h) ----
// scaled_matmul/<preset>/M: y (M, N) = a_dq · w_dqᵀ from packed operands, N = K = 2048, against
// the same process's f32 GEMM at the same shape (gemm_GFLOPS, measured right before). Counters:
// GFLOPS = 2 M N K / time, of_gemm = GFLOPS / gemm_GFLOPS. Presets with an integer path also
// run with path=f32_tiles and on the portable integer kernel (<preset>_int_portable; automatic
// uses the AVX-512 VNNI one where the CPU has it). qat_step/<plain|W4A8|NVFP4_DEFAULT>: one training step (forward,
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
  return 2.0 * static_cast<double>(M * N * K) / seconds_per_run(run) / 1e9;
}

QTensor quantize_calibrated(const Tensor& x, const QuantSpec& spec) {
  if (spec.scale_policy == ScalePolicy::dynamic && spec.format != Format::nvfp4) return quantize(x, spec);
  Quantizer q(spec);
  q.begin_calibration();
  q.observe(x);
  q.finish_calibration();
  return quantize(x, spec, &q.params());
}

// kernel: an integer kernel to force instead of scaled_matmul(path).
void BM_ScaledMatmul(benchmark::State& state, const std::string& preset, int64_t M, MatmulPath path,
                     std::optional<detail::IntKernel> kernel = std::nullopt) {
  const double gemm = f32_gemm_gflops(M, kSmN, kSmK);
  const QuantPreset p = resolve_preset(preset);
  const Tensor x = randn({M, kSmK});
  const QTensor qw = quantize_calibrated(randn({kSmN, kSmK}, 0.0, 0.02), p.weight);
  std::optional<QTensor> qa;
  if (p.input) qa = quantize_calibrated(x, *p.input);
  for (auto _ : state) {
    Tensor y;
    if (kernel) {
      y = empty({M, kSmN});
      detail::int_matmul(*qa, qw, *kernel, y.data<float>());
    } else {
      y = qa ? scaled_matmul(*qa, qw, {path}) : scaled_matmul(x, qw);
    }
    benchmark::DoNotOptimize(y.raw_data());
  }
  const double flops = 2.0 * static_cast<double>(M * kSmN * kSmK);
  state.counters["GFLOPS"] = benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
  state.counters["gemm_GFLOPS"] = gemm;
  const std::optional<detail::IntKernel> simd =
      qa && integer_path_supported(*qa, qw) ? detail::best_int_kernel(*qa, qw) : std::nullopt;
  std::string label = path == MatmulPath::automatic && simd ? std::string("int32 ") + detail::int_kernel_name(*simd) : "f32 tiles";
  if (kernel) label = std::string("int32 ") + detail::int_kernel_name(*kernel);
  state.SetLabel(label + (p.input ? "" : ", f32 activations"));
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
      if (name != "INT8_DEFAULT" && name != "INT8_PER_CHANNEL_PER_TOKEN" && name != "W4A8") continue;
      benchmark::RegisterBenchmark(("scaled_matmul/" + name + "_f32_tiles/" + std::to_string(M)).c_str(),
                                   [name, M](benchmark::State& s) { BM_ScaledMatmul(s, name, M, MatmulPath::f32_tiles); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      for (detail::IntKernel k : {detail::IntKernel::portable, detail::IntKernel::avx2})
        benchmark::RegisterBenchmark(
            ("scaled_matmul/" + name + "_int_" + detail::int_kernel_name(k) + "/" + std::to_string(M)).c_str(),
            [name, M, k](benchmark::State& s) {
              if (!detail::int_kernel_allowed(k)) return s.SkipWithError("this CPU cannot run the kernel");
              BM_ScaledMatmul(s, name, M, MatmulPath::integer, k);
            })
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
