#include "lowbit/train/trainer.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/cpu/isa.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/io/checkpoint_components.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/hf_model.h"
#include "lowbit/io/prepare_data.h"
#include "lowbit/io/tokenizer.h"
#include "lowbit/optim/adamw.h"
#include "lowbit/optim/grad_clip.h"
#include "lowbit/optim/lr_schedule.h"
#include "lowbit/optim/sgd.h"
#include "lowbit/quant/linear_quant.h"
#include "lowbit/train/distill.h"
#include "lowbit/train/loss_plot.h"
#include "lowbit/train/mfu.h"
#include "lowbit/train/model_setup.h"

namespace lowbit::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

// Files as given; a directory contributes its <prefix>*.bin shards (prepare_data's train_ /
// val_ naming), or all its *.bin files when none has the prefix.
std::vector<std::string> expand_shards(const std::vector<std::string>& inputs, const char* key, const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& in : inputs) {
    if (fs::is_directory(in)) {
      std::vector<std::string> found, prefixed;
      for (const auto& e : fs::directory_iterator(in))
        if (e.is_regular_file() && e.path().extension() == ".bin") {
          found.push_back(e.path().string());
          if (e.path().filename().string().rfind(prefix, 0) == 0) prefixed.push_back(e.path().string());
        }
      if (!prefixed.empty()) found = prefixed;
      std::sort(found.begin(), found.end());
      LOWBIT_CHECK(!found.empty(), "key '", key, "': directory ", in, " holds no *.bin token shards");
      out.insert(out.end(), found.begin(), found.end());
    } else {
      LOWBIT_CHECK(fs::exists(in), "key '", key, "': ", in, " does not exist");
      out.push_back(in);
    }
  }
  return out;
}

// data.text: tokenizer (given or trained) and shards in <run>/data.
void prepare_text(const Config& c, const std::string& run, std::vector<std::string>* train,
                  std::vector<std::string>* val) {
  const std::vector<std::string> texts_in = c.list("data.text");
  std::optional<tok::Tokenizer> t;
  if (!c.s("data.tokenizer").empty()) {
    t = tok::Tokenizer::from_file(c.s("data.tokenizer"));
  } else {
    std::vector<std::string> texts;
    for (const auto& f : texts_in) texts.push_back(io::read_text_input(f));
    tok::BpeTrainerOptions o;
    o.vocab_size = static_cast<size_t>(c.i("data.vocab_size"));
    o.special_tokens = {"<|endoftext|>"};
    t = tok::train_bpe(texts, o);
  }
  t->save_files(run);
  const std::optional<std::string> eos_token = t->effective_config().eos_token;
  const std::optional<int32_t> eos = eos_token ? t->token_to_id(*eos_token) : std::nullopt;
  LOWBIT_CHECK(eos.has_value(), "key 'data.tokenizer': the tokenizer has no end-of-text token");
  io::PrepareOptions po;
  po.doc_separator = c.s("data.doc_separator");
  po.val_fraction = c.f("data.val_fraction");
  po.seed = static_cast<uint64_t>(c.i("data.seed"));
  const io::PrepareResult r = io::prepare_data(
      texts_in, run + "/data",
      [&](std::string_view s) {
        const auto ids = t->encode(s);
        return std::vector<uint32_t>(ids.begin(), ids.end());
      },
      static_cast<uint32_t>(t->vocab_size()), static_cast<uint32_t>(*eos), po);
  *train = r.train_shards;
  *val = r.val_shards;
  std::printf("data: tokenized %llu bytes -> %llu train / %llu val tokens (%zu-token vocabulary)\n",
              static_cast<unsigned long long>(r.input_bytes), static_cast<unsigned long long>(r.train_tokens),
              static_cast<unsigned long long>(r.val_tokens), t->vocab_size());
}

double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

models::Packing packing_of(const io::Batch& b) { return {b.positions, b.segments}; }

// Validation loss in eval mode (no LoRA dropout, no generator draws), then back to training.
double evaluate(models::CausalLM& model, io::TokenLoader& val, int64_t batches) {
  NoGradGuard no_grad;
  model.eval();
  val.set_position({});
  double sum = 0;
  for (int64_t b = 0; b < batches; ++b) {
    const io::Batch batch = val.next_batch();
    const models::Packing packing = packing_of(batch);
    sum += model.loss(batch.inputs, batch.targets, val.packed() ? &packing : nullptr).item();
  }
  model.train();
  return sum / static_cast<double>(batches);
}

}  // namespace

RunResult run_training(const Config& c, const RunOptions& opts) {
  const std::string run = c.s("checkpoint.dir");
  fs::create_directories(run);
  io::write_file_atomic(run + "/config.resolved.json", c.j.dump(2) + "\n", "train_llama");

  // ---- data
  std::vector<std::string> train_files, val_files;
  if (!c.list("data.text").empty()) {
    prepare_text(c, run, &train_files, &val_files);
  } else {
    train_files = expand_shards(c.list("data.train"), "data.train", "train_");
    val_files = expand_shards(c.list("data.val"), "data.val", "val_");
  }
  const io::LoaderOptions lo{.seq_len = c.i("data.seq_len"), .batch_size = c.i("data.batch_size"),
                             .seed = static_cast<uint64_t>(c.i("data.seed")), .pack = c.b("data.pack")};
  io::TokenLoader loader(train_files, lo);
  LOWBIT_CHECK(!c.b("data.pack") || loader.chat(), "key 'data.pack': packing is for chat shards (prepare_data --chat); ",
               "text shards are already cut into full windows");
  std::optional<io::TokenLoader> val;
  if (!val_files.empty())
    val.emplace(val_files, io::LoaderOptions{lo.seq_len, lo.batch_size, 0, false, lo.pack});
  const int64_t vocab = loader.vocab_size();

  // ---- model (quantization before LoRA: the adapters themselves stay unquantized)
  const models::ModelOptions mo = model_options(c);
  std::unique_ptr<models::CausalLM> model = build_model(c, vocab, mo);
  model->train();
  const QuantSetup qs = setup_quant(*model, c);
  const auto& qctx = qs.ctx;
  const std::string quant_desc = qs.description;
  Generator lora_gen(static_cast<uint64_t>(c.i("train.seed")) + 7);
  setup_lora(*model, c, &lora_gen);

  // ---- QAD teacher: frozen, no gradients
  std::optional<LoadedModel> teacher;
  if (!c.s("distill.teacher").empty()) {
    teacher = load_model(c.s("distill.teacher"), {.compute_dtype = mo.compute_dtype});
    teacher->model->eval();
    for (Tensor p : teacher->model->parameters()) p.set_requires_grad(false);
    LOWBIT_CHECK(teacher->model->config().vocab_size == model->config().vocab_size, "key 'distill.teacher': the ",
                 "teacher's vocabulary (", teacher->model->config().vocab_size, ") differs from the student's (",
                 model->config().vocab_size, ")");
  }

  // ---- optimizer and schedule
  // Trainable: every parameter, or only the adapters under LoRA (the base is frozen).
  std::vector<Tensor> decay, no_decay, trainable;
  for (const auto& [n, p] : model->named_parameters()) {
    if (!p.requires_grad()) continue;
    trainable.push_back(p);
    (p.dim() >= 2 && n.find("embed_tokens") == std::string::npos ? decay : no_decay).push_back(p);
  }
  const std::vector<optim::ParamGroup> groups = {{decay, c.f("optim.weight_decay")}, {no_decay, 0.0}};
  std::unique_ptr<optim::Optimizer> opt;
  if (c.s("optim.name") == "adamw")
    opt = std::make_unique<optim::AdamW>(groups, optim::AdamWOptions{c.f("optim.lr"), c.f("optim.beta1"),
                                                                     c.f("optim.beta2"), c.f("optim.eps")});
  else
    opt = std::make_unique<optim::SGD>(groups, optim::SGDOptions{c.f("optim.lr"), c.f("optim.momentum")});
  const int64_t total = c.i("train.steps");
  const optim::LrSchedule sched{c.f("optim.lr"), c.f("schedule.min_lr"), c.i("schedule.warmup_steps"), total,
                                c.s("schedule.decay") == "cosine"   ? optim::LrDecay::Cosine
                                : c.s("schedule.decay") == "linear" ? optim::LrDecay::Linear
                                                                    : optim::LrDecay::Constant};

  // ---- checkpoints (the resolved config is stored with each one)
  io::CheckpointManager ckpt(run + "/checkpoints", {.keep_last = c.i("checkpoint.keep_last")});
  int64_t done = 0, nan_skips = 0;  // steps completed (the global step), persisted
  register_model_components(ckpt, *model, c, qs);
  io::register_optimizer(ckpt, "optimizer", *opt);
  io::register_loader(ckpt, "data", loader);
  if (uses_lora(c)) io::register_generator(ckpt, "lora_rng", lora_gen);
  ckpt.register_component(
      "progress", [&] { return io::ComponentState{{}, json{{"step", done}, {"nan_skips", nan_skips}}.dump()}; },
      [&](const io::ComponentState& s) {
        const json j = json::parse(s.json);
        done = j.at("step").get<int64_t>();
        nan_skips = j.at("nan_skips").get<int64_t>();
      });
  ckpt.register_component(
      "config", [&] { return io::ComponentState{{}, c.j.dump()}; },
      [&](const io::ComponentState& s) {
        const json saved = json::parse(s.json);
        for (const char* section : {"model", "quant", "lora", "distill"})
          LOWBIT_CHECK(saved.at(section) == c.j.at(section), "resume: the '", section,
                       "' section differs from the checkpoint's; start a new checkpoint.dir or restore it");
      });

  bool resumed = false;
  if (c.b("checkpoint.resume")) {
    if (const auto s = ckpt.resume()) {
      resumed = true;
      std::printf("resumed from %s (step %lld)\n", ckpt.dir_for(*s).c_str(), static_cast<long long>(*s));
    }
  }
  // Calibration happens once, before the first step; a resumed run restores its result.
  if (quant_desc != "none" && !resumed && !c.b("lora.qlora") && c.i("quant.calibration_batches") > 0) {
    quant::CalibOptions co;
    co.method = c.s("quant.calibration_method") == "mse"          ? quant::CalibMethod::mse
                : c.s("quant.calibration_method") == "percentile" ? quant::CalibMethod::percentile
                                                                  : quant::CalibMethod::max;
    co.percentile = c.f("quant.percentile");
    quant::begin_calibration(*model, co);
    io::TokenLoader calib(train_files, io::LoaderOptions{lo.seq_len, lo.batch_size, lo.seed + 1, true, lo.pack});
    NoGradGuard no_grad;
    for (int64_t b = 0; b < c.i("quant.calibration_batches"); ++b) {
      const io::Batch batch = calib.next_batch();
      const models::Packing packing = packing_of(batch);
      model->forward(batch.inputs, nullptr, loader.packed() ? &packing : nullptr);
    }
    quant::finish_calibration(*model);
  }
  std::vector<Tensor> quant_params;
  for (auto& [n, l] : quant::prepared_layers(*model))
    for (auto& [role, q] : l->quantizers())
      for (const Tensor& t : q->learnable_parameters()) quant_params.push_back(t);
  std::unique_ptr<optim::AdamW> quant_opt;
  if (!quant_params.empty())
    quant_opt = std::make_unique<optim::AdamW>(std::vector<optim::ParamGroup>{{quant_params, 0.0}},
                                               optim::AdamWOptions{c.f("optim.quant_lr")});

  const int64_t tokens_per_step = c.i("data.batch_size") * c.i("data.seq_len") * c.i("train.grad_accum");
  const double flops_per_step = model->train_flops(tokens_per_step, c.i("data.seq_len"));
  std::printf("model: %s, %lld parameters (%.2fM), %s activations\n", model->config().model_type.c_str(),
              static_cast<long long>(model->num_parameters()), model->num_parameters() / 1e6,
              c.s("model.compute_dtype").c_str());
  std::printf("quant: %s\n", quant_desc.c_str());
  if (uses_lora(c)) {
    int64_t n = 0;
    for (const Tensor& p : trainable) n += p.numel();
    std::printf("lora: rank %lld, alpha %g on %s: %lld trainable parameters (%.2f%%)\n",
                static_cast<long long>(c.i("lora.rank")), c.f("lora.alpha"), c.j["lora"]["targets"].dump().c_str(),
                static_cast<long long>(n), 100.0 * static_cast<double>(n) / static_cast<double>(model->num_parameters()));
  }
  if (teacher)
    std::printf("distill: teacher %s, T %g, alpha %g\n", teacher->description.c_str(), c.f("distill.temperature"),
                c.f("distill.alpha"));
  if (loader.chat())
    std::printf("data: chat shards, %llu examples, %s, %llu cut to seq_len + 1 = %lld tokens\n",
                static_cast<unsigned long long>(loader.num_examples()),
                loader.packed() ? "packed (block-diagonal attention)" : "one per sequence",
                static_cast<unsigned long long>(loader.truncated_examples()),
                static_cast<long long>(c.i("data.seq_len") + 1));
  std::printf("train: %lld steps of %lld tokens, %lld windows per epoch, run directory %s\n",
              static_cast<long long>(total), static_cast<long long>(tokens_per_step),
              static_cast<long long>(loader.windows_per_epoch()), run.c_str());
  RunResult result;
  result.steps_done = done;
  if (opts.dry_run) {
    std::printf("dry run: everything is built; stopping before step %lld\n", static_cast<long long>(done));
    return result;
  }
  const DType gemm_dtype = mo.compute_dtype == DType::bf16 ? DType::bf16 : DType::f32;
  MfuMeter mfu_meter(gemm_dtype);
  std::printf("MFU is model FLOPs/s over this machine's %s\n", mfu_meter.describe().c_str());
  if (gemm_dtype == DType::bf16) {
    const GemmRate f32 = measure_gemm_rate(DType::f32);
    if (f32.gflops > mfu_meter.rate().gflops)
      std::printf("note: the bf16 GEMM is slower than f32 on this CPU (%.1f vs %.1f GFLOP/s%s): "
                  "model.compute_dtype=f32 trains faster here (docs/config.md)\n",
                  mfu_meter.rate().gflops, f32.gflops,
                  cpu::isa_allows(cpu::Isa::avx512_bf16) ? "" : "; no native bf16 (avx512_bf16)");
  }

  g_stop_signal.store(0);
  auto prev_int = std::signal(SIGINT, on_stop_signal);
  auto prev_term = std::signal(SIGTERM, on_stop_signal);
  std::ofstream metrics(run + "/metrics.jsonl", std::ios::app);
  const bool tty = c.b("log.progress") && ::isatty(STDOUT_FILENO);
  const auto run_start = std::chrono::steady_clock::now();
  const int64_t first_step = done;
  const std::string plot_title = "train_llama " + run + " (" + quant_desc + ")";
  auto save = [&] {
    const std::string d = ckpt.save(done);
    metrics.flush();
    write_loss_plot(run, plot_title);
    std::printf("checkpoint: %s (plot: %s/loss.svg)\n", d.c_str(), run.c_str());
  };

  for (int64_t step = done; step < total; ++step) {
    if (g_stop_signal.load()) {
      std::printf("\nstopping on signal %d at step %lld\n", g_stop_signal.load(), static_cast<long long>(step));
      result.interrupted = true;
      break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    qctx->step = step;
    const double lr = sched.at(step);
    opt->set_lr(lr);
    opt->zero_grad();
    if (quant_opt) quant_opt->zero_grad();
    double loss_sum = 0;
    for (int64_t a = 0; a < c.i("train.grad_accum"); ++a) {
      const io::Batch batch = loader.next_batch();
      const Tensor &x = batch.inputs, &y = batch.targets;
      const models::Packing packing = packing_of(batch);
      const models::Packing* pk = loader.packed() ? &packing : nullptr;
      Tensor loss;
      if (teacher) {
        Tensor t;
        {
          NoGradGuard ng;
          t = teacher->model->forward(x, nullptr, pk);
        }
        loss = distillation_loss(model->forward(x, nullptr, pk), t, y, c.f("distill.temperature"), c.f("distill.alpha"));
      } else {
        loss = model->loss(x, y, pk);
      }
      loss_sum += loss.item();
      if (c.i("train.grad_accum") > 1) loss = mul(loss, 1.0 / static_cast<double>(c.i("train.grad_accum")));
      loss.backward();
    }
    const double loss = loss_sum / static_cast<double>(c.i("train.grad_accum"));
    const double max_norm = c.f("train.max_grad_norm");
    const double gnorm = optim::clip_grad_norm(trainable, max_norm > 0 ? max_norm : 1e300);
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      LOWBIT_CHECK(c.s("train.nan_policy") == "skip", "step ", step, ": non-finite ",
                   std::isfinite(loss) ? "gradient norm" : "loss", " (loss ", loss, ", grad norm ", gnorm,
                   "); set train.nan_policy=skip to skip such steps");
      ++nan_skips;
      LOWBIT_CHECK(nan_skips <= c.i("train.max_nan_skips"), "step ", step, ": ", nan_skips,
                   " non-finite steps skipped, more than train.max_nan_skips");
      std::printf("step %lld: non-finite loss or gradient, step skipped (%lld so far)\n", static_cast<long long>(step),
                  static_cast<long long>(nan_skips));
      done = step + 1;
      continue;
    }
    opt->step();
    if (quant_opt) quant_opt->step();
    done = step + 1;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tok_s = static_cast<double>(tokens_per_step) / secs;
    const double mfu = mfu_meter.mfu(flops_per_step / secs);
    const double rss = peak_rss_mb();
    result.last_loss = loss;
    metrics << json{{"step", step + 1}, {"loss", loss}, {"lr", lr}, {"grad_norm", gnorm}, {"ms", secs * 1e3},
                    {"tokens_per_s", tok_s}, {"mfu", mfu}, {"mfu_above_reference", mfu > 1.0},
                    {"peak_rss_mb", rss}}.dump()
            << "\n";
    const bool last = step + 1 == total;
    if ((step + 1) % c.i("log.every") == 0 || last || step == first_step) {
      if (tty) std::printf("\r\033[K");
      std::printf("step %6lld/%lld | loss %.4f | lr %.3e | grad norm %.3f | %.0f ms | %.0f tok/s | MFU %.1f%%%s | peak %.0f MB\n",
                  static_cast<long long>(step + 1), static_cast<long long>(total), loss, lr, gnorm, secs * 1e3, tok_s,
                  100 * mfu, mfu > 1.0 ? " (above its reference: the probe ran on a busy machine)" : "", rss);
    } else if (tty) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      const double eta = elapsed / static_cast<double>(step + 1 - first_step) * static_cast<double>(total - step - 1);
      const int width = 30, done = static_cast<int>(width * (step + 1) / total);
      std::printf("\r[%.*s%*s] %lld/%lld loss %.4f ETA %.0fs", done, "==============================", width - done,
                  "", static_cast<long long>(step + 1), static_cast<long long>(total), loss, eta);
      std::fflush(stdout);
    }
    if (val && ((c.i("train.eval_every") > 0 && (step + 1) % c.i("train.eval_every") == 0) || last)) {
      const double vl = evaluate(*model, *val, c.i("train.eval_batches"));
      result.val_loss = vl;
      std::printf("eval  %6lld | val loss %.4f | val ppl %.2f\n", static_cast<long long>(step + 1), vl, std::exp(vl));
      metrics << json{{"step", step + 1}, {"val_loss", vl}, {"val_ppl", std::exp(vl)}}.dump() << "\n";
    }
    if (c.i("checkpoint.every") > 0 && done % c.i("checkpoint.every") == 0 && !last) save();
  }
  result.steps_done = done;
  metrics.flush();
  save();
  std::signal(SIGINT, prev_int);
  std::signal(SIGTERM, prev_term);
  return result;
}

}  // namespace lowbit::train
