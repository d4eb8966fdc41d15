// train_llama's job end to end on a tiny model: the loss falls, metrics are written, a QAT run
// works, and a run stopped at step N and resumed equals an uninterrupted one bit for bit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tiny_run.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/train/trainer.h"

namespace lowbit::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json tiny(const std::string& dir, int64_t steps) { return test::tiny_run(dir, steps); }

std::vector<std::vector<uint8_t>> checkpoint_bytes(const std::string& dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "/checkpoints/step_%08lld", static_cast<long long>(step));
  std::vector<std::vector<uint8_t>> out;
  for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
    std::ifstream in(dir + name + "/" + f, std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    EXPECT_FALSE(out.back().empty()) << dir << name << "/" << f;
  }
  return out;
}

TEST(Trainer, LossFallsAndMetricsAreWritten) {
  const std::string dir = ::testing::TempDir() + "lowbit_trainer_basic";
  fs::remove_all(dir);
  json j = tiny(dir, 40);
  j["optim"] = {{"lr", 1e-2}};
  const RunResult r = run_training(Config{resolve_config(j, {})});
  EXPECT_EQ(r.steps_done, 40);
  EXPECT_GT(r.val_loss, 0);
  std::ifstream m(dir + "/metrics.jsonl");
  std::string line;
  std::vector<double> losses;
  while (std::getline(m, line)) {
    const json e = json::parse(line);
    if (e.contains("loss")) losses.push_back(e["loss"].get<double>());
  }
  ASSERT_EQ(losses.size(), 40u);
  EXPECT_LT(losses.back(), losses.front() - 1.0);  // from ~ln(300) = 5.7 to below the unigram entropy region
  EXPECT_TRUE(fs::exists(dir + "/tokenizer.json"));
  EXPECT_TRUE(fs::exists(dir + "/config.resolved.json"));
}

TEST(Trainer, StoppedAndResumedEqualsUninterrupted) {
  const std::string a = ::testing::TempDir() + "lowbit_trainer_a", b = ::testing::TempDir() + "lowbit_trainer_b";
  fs::remove_all(a);
  fs::remove_all(b);
  run_training(Config{resolve_config(tiny(a, 12), {})});
  run_training(Config{resolve_config(tiny(b, 6), {})});  // stops after 6 steps, saving a checkpoint
  const RunResult r = run_training(Config{resolve_config(tiny(b, 12), {})});  // resumes at 6
  EXPECT_EQ(r.steps_done, 12);
  EXPECT_EQ(checkpoint_bytes(a, 12), checkpoint_bytes(b, 12));
}

TEST(Trainer, QatRunWithCalibrationAndDryRun) {
  const std::string dir = ::testing::TempDir() + "lowbit_trainer_qat";
  fs::remove_all(dir);
  json j = tiny(dir, 10);
  j["quant"] = {{"preset", "INT8_DEFAULT"}, {"calibration_batches", 2}, {"start_step", 3}};
  const RunResult dry = run_training(Config{resolve_config(j, {})}, {.dry_run = true});
  EXPECT_EQ(dry.steps_done, 0);
  const RunResult r = run_training(Config{resolve_config(j, {})});
  EXPECT_EQ(r.steps_done, 10);
  EXPECT_TRUE(std::isfinite(r.last_loss));
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step_00000010/quant.json"));
  // Resuming under another preset is refused.
  j["quant"]["preset"] = "W4A8";
  j["train"]["steps"] = 12;
  EXPECT_THROW(run_training(Config{resolve_config(j, {})}), Error);
}

}  // namespace
}  // namespace lowbit::train
