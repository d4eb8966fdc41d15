// train_llama's fine-tuning modes end to end on a tiny model: LoRA (only adapters change, merged
// logits equal unmerged ones, resume is bit-exact with dropout), QLoRA (a packed low-bit base),
// QAD (the loss is the stated KL, zero for a student equal to its teacher, falling under
// fake quant), the loss plot, and load_model reading a run back as it was trained.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "../test_util.h"
#include "tiny_run.h"
#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/io/gguf.h"
#include "lowbit/io/hf_model.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/io/token_data.h"
#include "lowbit/nn/lora.h"
#include "lowbit/quant/fake_quant.h"
#include "lowbit/train/export.h"
#include "lowbit/train/model_setup.h"
#include "lowbit/train/trainer.h"

namespace lowbit::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::temp_dir;

// The shared tiny run, at a fine-tuning learning rate and with few log lines.
json tiny(const std::string& dir, int64_t steps) {
  json j = test::tiny_run(dir, steps);
  j["optim"] = {{"lr", 1e-2}};
  j["log"]["every"] = 100;
  return j;
}

// A pretrained tiny base as an HF directory (with its tokenizer), made once per test.
std::string pretrained_base(const std::string& name) {
  const std::string run = temp_dir(name + "_pretrain"), hf = temp_dir(name + "_hf");
  run_training(Config{resolve_config(tiny(run, 30), {})});
  const LoadedModel m = load_model(run);
  io::save_hf_model(*m.model, hf, {.dtype = DType::f32, .tokenizer_dir = run});
  return hf;
}

const json kAllProjections = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

// A fine-tuning task the base has never seen: one sentence per line, over and over.
std::string task_text(const std::string& dir) {
  const std::string path = dir + "/task.txt";
  std::ofstream f(path);
  for (int i = 0; i < 300; ++i) f << "the lazy dog sleeps while " << (i % 2 ? "the cat" : "a fox") << " jumps over it.\n";
  return path;
}

json finetune(const std::string& base, const std::string& dir, int64_t steps) {
  json j = tiny(dir, steps);
  j["data"]["text"] = json::array({task_text(dir)});
  j["data"]["doc_separator"] = "\n";
  j["data"]["tokenizer"] = base + "/tokenizer.json";
  j["model"] = {{"hf_dir", base}};
  return j;
}

std::vector<double> losses(const std::string& run) {
  std::ifstream m(run + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(m, line);)
    if (const json e = json::parse(line); e.contains("loss")) out.push_back(e["loss"].get<double>());
  return out;
}

// Mean loss of model over the first n training batches of run (the order training saw them).
double train_loss(const models::CausalLM& model, const std::string& run, int64_t n = 8) {
  io::TokenLoader loader({run + "/data/train_00000.bin"}, {.seq_len = 32, .batch_size = 4, .seed = 0});
  NoGradGuard ng;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto [x, y] = loader.next();
    s += model.loss(x, y).item();
  }
  return s / static_cast<double>(n);
}

double mean_of(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v.at(i);
  return s / static_cast<double>(to - from);
}

Tensor ids_for_test(int64_t vocab) {
  Tensor ids = empty({2, 12}, DType::i64);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = (i * 37 + 11) % vocab;
  return ids;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(DType::f64).contiguous(), y = b.to(DType::f64).contiguous();
  double m = 0;
  for (int64_t i = 0; i < x.numel(); ++i) m = std::max(m, std::abs(x.data<double>()[i] - y.data<double>()[i]));
  return m;
}

bool equal_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), static_cast<size_t>(dtype_nbytes(x.dtype(), x.numel()))) == 0;
}

TEST(Modes, LoraTrainsOnlyAdaptersAndMergesExactly) {
  const std::string base = pretrained_base("lora"), run = temp_dir("lora_run");
  json j = finetune(base, run, 30);
  j["lora"] = {{"rank", 4}, {"alpha", 8.0}, {"targets", kAllProjections}};
  run_training(Config{resolve_config(j, {})});
  ASSERT_EQ(losses(run).size(), 30u);
  // The optimizer holds state for the adapters only: one "<group>.<index>.step" per tensor.
  const io::SafetensorsReader opt(run + "/checkpoints/step_00000030/optimizer.safetensors");
  size_t optimized = 0;
  for (const std::string& n : opt.names()) optimized += n.ends_with(".step");

  LoadedModel m = load_model(run);
  const auto ref = io::load_hf_model(base);
  const auto adapters = nn::lora_parameters(*m.model);
  EXPECT_EQ(adapters.size(), 2u * 7u * 2u);  // (A, B) x 7 targets x 2 layers
  EXPECT_EQ(optimized, adapters.size());
  for (const auto& [n, p] : ref->named_parameters())  // the base is untouched, bit for bit
    EXPECT_TRUE(equal_bits(m.model->parameter(n), p)) << n;
  m.model->eval();
  const double lora_loss = train_loss(*m.model, run), base_loss = train_loss(*ref, run);
  std::printf("LoRA fine-tuning: training loss %.4f, base %.4f\n", lora_loss, base_loss);
  EXPECT_LT(lora_loss, base_loss - 0.1);  // the task is being learned
  double b_norm = 0;
  for (const auto& [n, p] : adapters)
    if (n.find("lora_B") != std::string::npos) b_norm += max_abs_diff(p, zeros_like(p));
  EXPECT_GT(b_norm, 0);  // lora_B starts at zero: it was trained

  NoGradGuard ng;
  m.model->eval();
  const Tensor ids = ids_for_test(m.model->config().vocab_size);
  const Tensor unmerged = m.model->forward(ids);
  EXPECT_GT(max_abs_diff(unmerged, ref->forward(ids)), 1e-4);  // the adapters matter
  EXPECT_EQ(nn::merge_lora(*m.model), 14);
  EXPECT_TRUE(nn::lora_parameters(*m.model).empty());
  const Tensor merged = m.model->forward(ids);
  EXPECT_LE(max_abs_diff(merged, unmerged), 1e-4 * std::max(1.0, max_abs_diff(unmerged, zeros_like(unmerged))));
}

// export_model --format hf of a LoRA run: the adapters are merged and the directory reloads
// (as an HF directory, without the run) with the merged model's logits, bit for bit.
TEST(Modes, ExportedHfDirectoryReloadsWithIdenticalLogits) {
  const std::string base = pretrained_base("export"), run = temp_dir("export_run"), out = temp_dir("export_out");
  json j = finetune(base, run, 5);
  j["lora"] = {{"rank", 4}, {"alpha", 8.0}, {"targets", kAllProjections}};
  run_training(Config{resolve_config(j, {})});

  LoadedModel exported = load_model(run);
  const std::string summary = export_model(exported, {.format = ExportFormat::hf, .out = out, .dtype = DType::f32});
  EXPECT_NE(summary.find("f32"), std::string::npos) << summary;
  EXPECT_TRUE(fs::exists(out + "/tokenizer.json"));

  LoadedModel merged = load_model(run), reloaded = load_model(out);
  EXPECT_EQ(reloaded.step, -1);  // read as an HF directory
  ASSERT_EQ(nn::merge_lora(*merged.model), 14);
  EXPECT_TRUE(nn::lora_parameters(*reloaded.model).empty());
  NoGradGuard ng;
  merged.model->eval();
  reloaded.model->eval();
  const Tensor ids = ids_for_test(merged.model->config().vocab_size);
  EXPECT_TRUE(equal_bits(reloaded.model->forward(ids), merged.model->forward(ids)));
}

// A QAT model exported to GGUF carries its spec (lowbit.quant.*). In its own format the file's
// weights are the trained fake-quantized weights, bit for bit; in another GGUF type the export
// says so instead of silently changing the numerics.
TEST(Modes, QatGgufExportKeepsTheTrainedNumericsOrSaysItDoesNot) {
  const std::string run = temp_dir("qat_gguf_run"), out = temp_dir("qat_gguf_out");
  json j = tiny(run, 5);
  j["quant"] = {{"preset", "GGUF_Q4_0"}};
  run_training(Config{resolve_config(j, {})});

  LoadedModel m = load_model(run);
  const Tensor w = m.model->parameter("model.layers.0.mlp.down_proj.weight");
  const Tensor fake = quant::fake_quant(w, m.quant.preset->weight);
  const std::string same = export_model(m, {.format = ExportFormat::gguf, .out = out + "/q4_0.gguf", .gguf_type = "q4_0"});
  EXPECT_NE(same.find("the QAT format, GGUF_Q4_0"), std::string::npos) << same;
  EXPECT_EQ(same.find("WARNING"), std::string::npos) << same;
  const io::GgufFile f = io::read_gguf(out + "/q4_0.gguf");
  EXPECT_EQ(f.get("lowbit.quant.preset").as_string(), "GGUF_Q4_0");
  EXPECT_EQ(json::parse(f.get("lowbit.quant.weight").as_string())["format"], "gguf_q4_0");
  EXPECT_TRUE(equal_bits(io::gguf_tensor_to_f32(f, "blk.0.ffn_down.weight"), fake));

  LoadedModel m2 = load_model(run);
  const std::string other = export_model(m2, {.format = ExportFormat::gguf, .out = out + "/q8_0.gguf", .gguf_type = "q8_0"});
  EXPECT_NE(other.find("WARNING: trained for GGUF_Q4_0"), std::string::npos) << other;
  EXPECT_EQ(io::read_gguf(out + "/q8_0.gguf").get("lowbit.quant.preset").as_string(), "GGUF_Q4_0");
}

TEST(Modes, LoraWithDropoutResumesBitExactly) {
  const std::string base = pretrained_base("lora_resume");
  const std::string a = temp_dir("lora_resume_a"), b = temp_dir("lora_resume_b");
  auto cfg = [&](const std::string& dir, int64_t steps) {
    json j = finetune(base, dir, steps);
    j["lora"] = {{"rank", 2}, {"dropout", 0.1}};
    j["quant"] = {{"preset", "INT8_DEFAULT"}, {"calibration_batches", 1}};  // QAT + LoRA
    return Config{resolve_config(j, {})};
  };
  run_training(cfg(a, 8));
  run_training(cfg(b, 4));
  run_training(cfg(b, 8));
  const LoadedModel ma = load_model(a), mb = load_model(b);
  const auto pa = nn::lora_parameters(*ma.model), pb = nn::lora_parameters(*mb.model);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(equal_bits(pa[i].second, pb[i].second)) << pa[i].first;
  EXPECT_FALSE(quant::prepared_layers(*ma.model).empty());
  EXPECT_EQ(ma.quant.ctx->step, 8);
}

TEST(Modes, QloraHoldsThePackedBase) {
  const std::string base = pretrained_base("qlora"), run = temp_dir("qlora_run");
  json j = finetune(base, run, 30);
  j["lora"] = {{"rank", 4}, {"qlora", true}, {"targets", kAllProjections}};
  j["quant"] = {{"preset", "INT4_WEIGHT_ONLY"}, {"group_size", 32}};
  run_training(Config{resolve_config(j, {})});
  LoadedModel m = load_model(run);
  m.model->eval();
  // Against the quantized base before fine-tuning (adapters at B = 0): the adapters recover loss.
  LoadedModel start = load_model(run);
  for (const auto& [n, p] : nn::lora_parameters(*start.model))
    if (n.find("lora_B") != std::string::npos) copy_(p, zeros_like(p));
  start.model->eval();
  const double lora_loss = train_loss(*m.model, run), base_loss = train_loss(*start.model, run);
  std::printf("QLoRA fine-tuning: training loss %.4f, quantized base %.4f\n", lora_loss, base_loss);
  EXPECT_LT(lora_loss, base_loss - 0.1);
  int64_t packed = 0;
  for (auto& [name, layer] : quant::prepared_layers(*m.model)) {
    EXPECT_TRUE(layer->converted()) << name;
    EXPECT_EQ(layer->mode(), quant::LinearMode::real) << name;
    ++packed;
  }
  EXPECT_GT(packed, 0);
  EXPECT_TRUE(m.model->parameter("model.layers.0.self_attn.q_proj.weight").device().is_meta());
  NoGradGuard ng;
  m.model->eval();
  const Tensor ids = ids_for_test(m.model->config().vocab_size);
  const Tensor before = m.model->forward(ids);
  nn::merge_lora(*m.model);  // dequantized base + B A: a plain f32 model
  EXPECT_TRUE(quant::prepared_layers(*m.model).size() < static_cast<size_t>(packed));
  EXPECT_LE(max_abs_diff(m.model->forward(ids), before), 1e-3);
}

TEST(Modes, QadLossIsZeroForItsOwnTeacherAndFallsUnderFakeQuant) {
  const std::string base = pretrained_base("qad");
  {
    const std::string run = temp_dir("qad_self");
    json j = finetune(base, run, 1);
    j["distill"] = {{"teacher", base}, {"temperature", 2.0}};
    j["optim"] = {{"lr", 0.0}, {"weight_decay", 0.0}};
    j["schedule"]["min_lr"] = 0.0;
    run_training(Config{resolve_config(j, {})});
    EXPECT_LT(std::abs(losses(run).at(0)), 1e-6);  // KL(p || p) = 0
  }
  const std::string run = temp_dir("qad_run");
  json j = finetune(base, run, 25);
  j["distill"] = {{"teacher", base}, {"temperature", 2.0}, {"alpha", 0.9}};
  j["quant"] = {{"preset", "W4A8"}, {"group_size", 32}};
  run_training(Config{resolve_config(j, {})});
  const auto l = losses(run);
  EXPECT_GT(l.front(), 1e-4);
  EXPECT_LT(mean_of(l, 20, 25), mean_of(l, 0, 5));
}

TEST(Modes, LossPlotIsWrittenAndDrawsEachSeries) {
  const std::string run = temp_dir("plot_run");
  json j = tiny(run, 6);
  j["train"]["eval_every"] = 3;
  run_training(Config{resolve_config(j, {})});
  std::ifstream f(run + "/loss.svg");
  const std::string svg((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("train loss"), std::string::npos);
  EXPECT_NE(svg.find("learning rate"), std::string::npos);
  size_t polylines = 0, circles = 0;
  for (size_t p = 0; (p = svg.find("<polyline", p)) != std::string::npos; ++p) ++polylines;
  for (size_t p = 0; (p = svg.find("<circle", p)) != std::string::npos; ++p) ++circles;
  EXPECT_EQ(polylines, 3u);  // train loss, val loss, learning rate
  EXPECT_EQ(circles, 2u);    // validation at steps 3 and 6
}

TEST(Modes, ConfigErrorsForLoraQloraAndDistill) {
  json j = tiny("unused", 1);
  j["lora"] = {{"rank", 4}};
  EXPECT_NE(test::error_of([&] { resolve_config(j, {}); }).find("key 'lora.rank': LoRA adapts a pretrained model"),
            std::string::npos);
  j = tiny("unused", 1);
  j["lora"] = {{"qlora", true}};
  EXPECT_NE(test::error_of([&] { resolve_config(j, {}); }).find("key 'lora.qlora'"), std::string::npos);
  j = tiny("unused", 1);
  j["distill"] = {{"teacher", "/nonexistent/teacher"}};
  j["checkpoint"]["dir"] = temp_dir("qad_missing_teacher");
  EXPECT_NE(test::error_of([&] { run_training(Config{resolve_config(j, {})}); }).find("/nonexistent/teacher"),
            std::string::npos);
}

}  // namespace
}  // namespace lowbit::train
