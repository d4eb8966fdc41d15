// Training checkpoints: resume is bit-exact (2N steps == N, resume, N at 2 threads), and any
// corrupted, truncated or half-written checkpoint is rejected with a clear error while resume
// falls back to the previous complete one. Also retention and optimizer state round trips.
#include <gtest/gtest.h>
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "../test_util.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/io/checkpoint.h"
#include "lowbit/io/checkpoint_components.h"
#include "lowbit/io/file_io.h"
#include "lowbit/models/llama.h"
#include "lowbit/optim/adamw.h"
#include "lowbit/optim/lr_schedule.h"
#include "lowbit/optim/sgd.h"

namespace lowbit::io {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) { return test::temp_dir("ckpt_" + name); }

struct ThreadsGuard {
  explicit ThreadsGuard(int n) : prev(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadsGuard() { omp_set_num_threads(prev); }
  int prev;
};

models::ModelConfig tiny_config() {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.max_position_embeddings = 32;
  return c;
}

std::vector<std::string> make_data(const std::string& dir) {
  TokenShardWriter w(dir + "/train_00000.bin", 50, 0);
  std::mt19937 rng(5);
  for (int d = 0; d < 40; ++d) {
    std::vector<uint32_t> doc(20 + rng() % 30);
    for (auto& t : doc) t = 1 + rng() % 49;
    w.add_document(doc);
  }
  w.close();
  return {dir + "/train_00000.bin"};
}

// Everything a training run owns, wired to a checkpoint manager.
struct Trainer {
  Trainer(const std::vector<std::string>& data, const std::string& ckpt_root, uint64_t init_seed)
      : model(tiny_config(), models::ModelOptions{.seed = init_seed}),
        opt({{model.parameters(), 0.1}}, optim::AdamWOptions{1e-2}),
        loader(data, LoaderOptions{.seq_len = 16, .batch_size = 2, .seed = 11}),
        gen(77),
        ckpt(ckpt_root, CheckpointOptions{.keep_last = 2}) {
    register_module(ckpt, "model", model);
    register_optimizer(ckpt, "optimizer", opt);
    register_generator(ckpt, "rng", gen);
    register_loader(ckpt, "data", loader);
    ckpt.register_component(
        "progress", [this] { return ComponentState{{}, "{\"step\": " + std::to_string(step) + "}"}; },
        [this](const ComponentState& s) { step = std::stoll(s.json.substr(s.json.find(':') + 1)); });
  }
  void train(int64_t until) {
    const optim::LrSchedule sched{1e-2, 1e-3, 3, 20, optim::LrDecay::Cosine};
    for (; step < until; ++step) {
      auto [ids, tgt] = loader.next();
      // Token dropout drawn from the run's generator: the RNG state matters for resume.
      const auto noise = randint(ids.shape(), 0, 50, DType::i64, &gen).to_vector<int64_t>();
      const auto keep = rand(ids.shape(), 0.0, 1.0, DType::f32, &gen).to_vector<float>();
      auto v = ids.to_vector<int64_t>();
      for (size_t i = 0; i < v.size(); ++i)
        if (keep[i] >= 0.9f) v[i] = noise[i];
      ids = from_vector(v, ids.shape());
      opt.set_lr(sched.at(step));
      opt.zero_grad();
      model.loss(ids, tgt).backward();
      opt.step();
    }
  }
  std::vector<std::vector<float>> snapshot() const {
    std::vector<std::vector<float>> out;
    for (const Tensor& p : model.parameters()) out.push_back(p.to_vector<float>());
    for (const auto& [n, t] : opt.state_dict()) out.push_back(t.to(DType::f32).to_vector<float>());
    return out;
  }
  models::CausalLM model;
  optim::AdamW opt;
  TokenLoader loader;
  Generator gen;
  CheckpointManager ckpt;
  int64_t step = 0;
};

TEST(Checkpoint, ResumeIsBitExactAtTwoThreads) {
  ThreadsGuard threads(2);
  const std::string d = temp_dir("resume");
  const auto data = make_data(d);
  const int64_t N = 6;
  Trainer straight(data, d + "/a", 1);
  straight.train(2 * N);

  {
    Trainer first(data, d + "/b", 1);
    first.train(N - 2);
    first.ckpt.save(first.step);
    first.train(N);
    first.ckpt.save(first.step);
  }  // the process "dies"
  Trainer resumed(data, d + "/b", 999);  // different init: everything must come from the checkpoint
  ASSERT_EQ(resumed.ckpt.resume(), std::optional<int64_t>(N));
  EXPECT_EQ(resumed.step, N);
  resumed.train(2 * N);
  EXPECT_EQ(resumed.snapshot(), straight.snapshot());
  EXPECT_EQ(resumed.loader.position().cursor, straight.loader.position().cursor);
  EXPECT_EQ(resumed.gen.offset(), straight.gen.offset());
}

class CorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One directory per test: ctest runs the fixture's tests in parallel processes.
    dir_ = temp_dir(std::string("corrupt_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    data_ = make_data(dir_);
    t_ = std::make_unique<Trainer>(data_, dir_ + "/ck", 1);
    t_->train(1);
    t_->ckpt.save(1);
    t_->train(2);
    latest_ = t_->ckpt.save(2);
    for (const auto& e : fs::directory_iterator(latest_)) originals_[e.path().string()] = read_file(e.path(), "t");
  }
  void restore() {
    for (const auto& [p, bytes] : originals_) std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  }
  void write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  }
  // The latest checkpoint must fail verification with a one-line CorruptCheckpoint naming it.
  void expect_rejected(const std::string& what) {
    try {
      t_->ckpt.verify(latest_);
      ADD_FAILURE() << "accepted after " << what;
    } catch (const CorruptCheckpoint& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(latest_), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
  std::string dir_, latest_;
  std::vector<std::string> data_;
  std::unique_ptr<Trainer> t_;
  std::map<std::string, std::string> originals_;
};

TEST_F(CorruptionTest, AnyMetadataByteChangedIsRejected) {
  EXPECT_EQ(t_->ckpt.verify(latest_), 2);
  int checked = 0;
  for (const auto& [path, bytes] : originals_) {
    // Metadata: whole JSON files and markers, and each safetensors file's length + header.
    size_t n = bytes.size();
    if (path.ends_with(".safetensors")) {
      uint64_t header_len = 0;
      std::memcpy(&header_len, bytes.data(), 8);
      n = 8 + header_len;
    }
    for (size_t i = 0; i < n; ++i) {
      std::string b = bytes;
      b[i] = static_cast<char>(b[i] ^ 0x04);
      write(path, b);
      expect_rejected(path + " byte " + std::to_string(i));
      ++checked;
    }
    write(path, bytes);
  }
  EXPECT_GT(checked, 1000);
  EXPECT_EQ(t_->ckpt.verify(latest_), 2);
}

TEST_F(CorruptionTest, ThousandRandomDataByteFlipsAreRejected) {
  std::vector<std::pair<std::string, size_t>> data_bytes;  // (file, offset) in tensor data sections
  for (const auto& [path, bytes] : originals_) {
    if (!path.ends_with(".safetensors")) continue;
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);
    for (size_t i = 8 + header_len; i < bytes.size(); ++i) data_bytes.emplace_back(path, i);
  }
  ASSERT_GT(data_bytes.size(), 5000u);
  std::mt19937_64 rng(42);
  for (int k = 0; k < 1000; ++k) {
    const auto& [path, off] = data_bytes[rng() % data_bytes.size()];
    std::string b = originals_.at(path);
    b[off] = static_cast<char>(b[off] ^ static_cast<char>(1 + rng() % 255));
    write(path, b);
    expect_rejected(path + " data byte " + std::to_string(off));
    write(path, originals_.at(path));
  }
}

TEST_F(CorruptionTest, TruncationAtEveryFileBoundaryAndResumeFallsBack) {
  // Files in write order; a crash after any prefix leaves an incomplete checkpoint.
  std::vector<std::string> order;
  for (const char* c : {"model", "optimizer", "rng", "data", "progress"})
    for (const char* ext : {".json", ".safetensors"})
      if (originals_.count(latest_ + "/" + c + ext)) order.push_back(latest_ + "/" + c + ext);
  order.push_back(latest_ + "/manifest.json");
  order.push_back(latest_ + "/COMPLETE");
  ASSERT_EQ(order.size(), originals_.size());
  for (size_t keep = 0; keep < order.size(); ++keep) {
    for (size_t i = keep; i < order.size(); ++i) fs::remove(order[i]);
    expect_rejected("crash after " + std::to_string(keep) + " files");
    restore();
  }
  for (const auto& [path, bytes] : originals_) {
    for (size_t len : {size_t{0}, bytes.size() / 2, bytes.size() - 1}) {
      write(path, bytes.substr(0, len));
      expect_rejected(path + " truncated to " + std::to_string(len));
    }
    write(path, bytes);
  }

  // resume() skips the damaged newest checkpoint, says so, and loads the previous one.
  std::string b = originals_.at(latest_ + "/model.safetensors");
  b[b.size() - 3] ^= 0x10;
  write(latest_ + "/model.safetensors", b);
  std::vector<std::string> warnings;
  Trainer fresh(data_, dir_ + "/ck", 5);
  fresh.ckpt.set_warning_handler([&](const std::string& w) { warnings.push_back(w); });
  EXPECT_EQ(fresh.ckpt.resume(), std::optional<int64_t>(1));
  EXPECT_EQ(fresh.step, 1);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("model.safetensors: checksum mismatch"), std::string::npos) << warnings[0];
}

TEST_F(CorruptionTest, SetupMismatchIsAnErrorNotAFallback) {
  CheckpointManager other(dir_ + "/ck");
  other.register_component("model", [] { return ComponentState{}; }, [](const ComponentState&) {});
  EXPECT_THROW(other.resume(), Error);
  // A component rejecting valid state (wrong shapes) propagates too.
  models::ModelConfig c = tiny_config();
  c.hidden_size = 32;
  models::CausalLM bigger(c);
  CheckpointManager m(dir_ + "/ck");
  register_module(m, "model", bigger);
  for (const char* n : {"optimizer", "rng", "data", "progress"})
    m.register_component(n, [] { return ComponentState{}; }, [](const ComponentState&) {});
  try {
    m.resume();
    ADD_FAILURE() << "loaded a mis-shaped model";
  } catch (const CorruptCheckpoint&) {
    ADD_FAILURE() << "a shape mismatch is not corruption";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter 'model.embed_tokens.weight'"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, KeepsTheNewestNAndCleansInterruptedSaves) {
  const std::string d = temp_dir("retention");
  Tensor w = from_vector(std::vector<float>{1, 2, 3}, {3});
  CheckpointManager m(d, CheckpointOptions{.keep_last = 2});
  m.register_component("w", [&] { return ComponentState{{{"w", w}}, "{}"}; }, [&](const ComponentState& s) {
    copy_(w, s.tensors.at(0).second);
  });
  fs::create_directories(d + "/step_00000001.tmp");  // an interrupted save
  for (int s = 1; s <= 4; ++s) {
    fill_(w, s);
    m.save(s * 10);
  }
  EXPECT_EQ(m.complete_steps(), (std::vector<int64_t>{30, 40}));
  EXPECT_FALSE(fs::exists(d + "/step_00000001.tmp"));
  fill_(w, 0);
  EXPECT_EQ(m.resume(), std::optional<int64_t>(40));
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{4, 4, 4}));
  m.save(40);  // re-saving a step replaces it
  EXPECT_EQ(m.complete_steps(), (std::vector<int64_t>{30, 40}));
  CheckpointManager empty(d + "/none");
  empty.register_component("w", [&] { return ComponentState{}; }, [](const ComponentState&) {});
  EXPECT_EQ(empty.resume(), std::nullopt);
  EXPECT_THROW(m.register_component("w", {}, {}), Error);
  EXPECT_THROW(m.register_component("bad/name", {}, {}), Error);
  EXPECT_THROW(m.register_component("", {}, {}), Error);
  EXPECT_THROW(m.register_component("a b", {}, {}), Error);
  EXPECT_NO_THROW(m.register_component("Lora_A-0", {}, {}));
  // Only step_ + 8 to 18 digits names a checkpoint; anything else in the root is not one.
  for (const char* n : {"step_1234567", "step_0000005a", "xstep_00000050", "step_1234567890123456789", "step_"})
    fs::create_directories(d + "/" + n);
  EXPECT_EQ(m.complete_steps(), (std::vector<int64_t>{30, 40}));
}

TEST(OptimizerState, RoundTripsAndRejectsMismatches) {
  Tensor a = from_vector(std::vector<float>{1, -2, 3}, {3}).set_requires_grad(true);
  Tensor b = from_vector(std::vector<float>{0.5f, 4}, {2}).set_requires_grad(true);
  optim::AdamW o1({{{a}, 0.1}, {{b}, 0.0}}, optim::AdamWOptions{0.1});
  sum(mul(a, a)).backward();  // b gets no grad: its moments stay undefined
  o1.step();
  const auto sd = o1.state_dict();
  Tensor a2 = from_vector(std::vector<float>{1, -2, 3}, {3}).set_requires_grad(true);
  Tensor b2 = from_vector(std::vector<float>{0.5f, 4}, {2}).set_requires_grad(true);
  optim::AdamW o2({{{a2}, 0.1}, {{b2}, 0.0}}, optim::AdamWOptions{0.5});
  o2.load_state_dict(sd);
  EXPECT_EQ(o2.steps(), 1);
  EXPECT_EQ(o2.lr(), 0.1);
  EXPECT_EQ(o2.exp_avg(0, 0).to_vector<float>(), o1.exp_avg(0, 0).to_vector<float>());
  EXPECT_FALSE(o2.exp_avg(1, 0).defined());
  Tensor c = from_vector(std::vector<float>{1, 2}, {2}).set_requires_grad(true);
  optim::AdamW wrong({{{c}, 0.1}, {{b2}, 0.0}});
  EXPECT_THROW(wrong.load_state_dict(sd), Error);
  optim::SGD sgd({{{a2}, 0.0}}, optim::SGDOptions{0.1, 0.9});
  EXPECT_THROW(sgd.load_state_dict(sd), Error);  // AdamW state in an SGD
  EXPECT_EQ(wrong.steps(), 0);                   // untouched after the failure
}

}  // namespace
}  // namespace lowbit::io
