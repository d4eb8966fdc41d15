// Chat fine-tuning end to end on a tiny model: chat JSONL (both record forms) -> prepare_chat
// with the Qwen2-style tokenizer and ChatML -> chat shards -> run_training with packed rows.
// Then, on the packed batches themselves: masked (prompt, padding) positions carry no gradient,
// and the examples packed into one row do not see each other (their logits and parameter
// gradients equal those of each example run alone).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "../test_util.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/prepare_data.h"
#include "lowbit/io/token_data.h"
#include "lowbit/models/llama.h"
#include "lowbit/train/trainer.h"

namespace lowbit::train {
namespace {

using json = nlohmann::json;

const std::string kData = std::string(LOWBIT_TEST_DATA_DIR);

// Fortunes as chat records: the first line is the user's, the rest the assistant's.
std::string write_chat_jsonl(const std::string& dir, size_t limit) {
  const std::string sample = io::read_file(kData + "/tokenizer/fortunes_sample.txt", "test");
  std::string out;
  size_t pos = 0, n = 0;
  while (pos < sample.size() && n < limit) {
    size_t end = sample.find("\n%\n", pos);
    if (end == std::string::npos) end = sample.size();
    const std::string f = sample.substr(pos, end - pos);
    pos = end + 3;
    const size_t nl = f.find('\n');
    if (nl == std::string::npos || nl + 1 >= f.size()) continue;
    json rec;
    if (n % 2 == 0) {
      rec = {{"prompt", f.substr(0, nl)}, {"response", f.substr(nl + 1)}};
    } else {
      rec["messages"] = json::array({{{"role", "system"}, {"content", "Answer with a fortune."}},
                                     {{"role", "user"}, {"content", f.substr(0, nl)}},
                                     {{"role", "assistant"}, {"content", f.substr(nl + 1)}}});
    }
    out += rec.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    ++n;
  }
  const std::string path = dir + "/chat.jsonl";
  io::write_file_atomic(path, out, "test");
  return path;
}

// Sum of the per-token cross-entropies (the mean times the number of trained targets).
Tensor summed_loss(const Tensor& logits, const Tensor& targets) {
  int64_t n = 0;
  for (int64_t t : targets.to_vector<int64_t>()) n += t != -100;
  return mul(cross_entropy(logits, targets), static_cast<double>(n));
}

TEST(ChatFinetune, PreparesTrainsAndKeepsPackedExamplesApart) {
  const std::string dir = test::temp_dir("chat_finetune");
  const std::string jsonl = write_chat_jsonl(dir, 160);
  const tok::Tokenizer tk = tok::Tokenizer::from_file(kData + "/tokenizer/qwen2_style.tokenizer.json");
  io::ChatPrepareOptions po;
  po.chat_template = io::ChatTemplate::ChatMLQwen2;
  po.val_fraction = 0.1;
  po.max_tokens = 96;
  po.overlong = io::ChatPrepareOptions::Overlong::Skip;
  const io::ChatPrepareResult pr = io::prepare_chat({jsonl}, dir + "/data", tk, *tk.token_to_id("<|endoftext|>"), po);
  ASSERT_GT(pr.train_documents, 60u);
  EXPECT_GT(pr.trained_tokens, 0u);
  EXPECT_LT(pr.trained_tokens, pr.train_tokens);  // the prompts are not trained

  // Fine-tune with packed rows.
  json j = {{"data", {{"train", json::array({dir + "/data"})}, {"val", json::array({dir + "/data"})}, {"seq_len", 96},
                      {"batch_size", 4}, {"pack", true}}},
            {"model", {{"hidden_size", 32}, {"intermediate_size", 64}, {"num_hidden_layers", 2},
                       {"num_attention_heads", 2}, {"num_key_value_heads", 2}}},
            {"optim", {{"lr", 1e-2}}},
            {"train", {{"steps", 12}, {"eval_every", 0}, {"eval_batches", 2}}},
            {"schedule", {{"warmup_steps", 2}, {"decay", "constant"}}},
            {"checkpoint", {{"dir", dir + "/run"}, {"every", 0}}},
            {"log", {{"every", 100}, {"progress", false}}}};
  const RunResult r = run_training(Config{resolve_config(j, {})});
  EXPECT_EQ(r.steps_done, 12);
  EXPECT_TRUE(std::isfinite(r.last_loss));
  EXPECT_LT(r.last_loss, std::log(static_cast<double>(tk.vocab_size())));  // below a uniform guess
  EXPECT_GT(r.val_loss, 0);

  // The packed batches: an f64 model so the comparisons can be tight.
  io::TokenLoader loader({pr.train_shards[0]}, {.seq_len = 96, .batch_size = 4, .seed = 1, .pack = true});
  ASSERT_TRUE(loader.packed());
  models::ModelConfig mc;
  mc.vocab_size = static_cast<int64_t>(loader.vocab_size());
  mc.hidden_size = 16;
  mc.intermediate_size = 24;
  mc.num_hidden_layers = 2;
  mc.num_attention_heads = 2;
  mc.num_key_value_heads = 1;
  mc.head_dim = 8;
  mc.max_position_embeddings = 128;
  models::ModelOptions mo;
  mo.param_dtype = mo.compute_dtype = DType::f64;
  mo.seed = 5;
  const models::CausalLM model(mc, mo);

  bool found_row = false;
  for (int b = 0; b < 8 && !found_row; ++b) {
    const io::Batch batch = loader.next_batch();
    const models::Packing packing{batch.positions, batch.segments};
    const auto tgt = batch.targets.to_vector<int64_t>();
    const auto seg = batch.segments.to_vector<int64_t>();
    const int64_t T = 96;

    // Masked positions carry no gradient into the logits; trained ones do.
    Tensor logits = model.forward(batch.inputs, nullptr, &packing).detach();
    logits.set_requires_grad(true);
    cross_entropy(logits, batch.targets).backward();
    const auto g = logits.grad().to_vector<double>();
    const size_t V = static_cast<size_t>(mc.vocab_size);
    int64_t masked_in_examples = 0;
    for (size_t i = 0; i < tgt.size(); ++i) {
      double norm = 0;
      for (size_t v = 0; v < V; ++v) norm += std::abs(g[i * V + v]);
      if (tgt[i] == -100) {
        EXPECT_EQ(norm, 0.0) << "position " << i;
        masked_in_examples += seg[i] >= 0;
      } else {
        EXPECT_GT(norm, 0.0) << "position " << i;
      }
    }
    EXPECT_GT(masked_in_examples, 0);  // prompt tokens, not only padding

    // A row holding at least two examples: each one's logits and gradients as if alone.
    for (int64_t row = 0; row < 4 && !found_row; ++row) {
      std::vector<std::pair<int64_t, int64_t>> spans;  // [begin, end) of each example in the row
      for (int64_t t = 0; t < T; ++t) {
        const int64_t s = seg[static_cast<size_t>(row * T + t)];
        if (s < 0) break;
        if (spans.empty() || s != seg[static_cast<size_t>(row * T + t - 1)]) spans.push_back({t, t});
        spans.back().second = t + 1;
      }
      if (spans.size() < 2) continue;
      found_row = true;
      const Tensor ids = batch.inputs.narrow(0, row, 1).contiguous(), targets = batch.targets.narrow(0, row, 1).contiguous();
      const models::Packing one{batch.positions.narrow(0, row, 1).contiguous(), batch.segments.narrow(0, row, 1).contiguous()};
      const auto packed_logits = model.forward(ids, nullptr, &one).to_vector<double>();
      for (const Tensor& p : model.parameters()) p.zero_grad();
      summed_loss(model.forward(ids, nullptr, &one), targets).backward();
      std::vector<std::vector<double>> packed_grads;
      for (const Tensor& p : model.parameters()) packed_grads.push_back(p.grad().to_vector<double>());
      for (const Tensor& p : model.parameters()) p.zero_grad();
      for (const auto& [b0, e0] : spans) {
        const Tensor x = ids.narrow(1, b0, e0 - b0).contiguous(), y = targets.narrow(1, b0, e0 - b0).contiguous();
        const auto alone = model.forward(x).to_vector<double>();
        for (size_t i = 0; i < alone.size(); ++i)
          ASSERT_NEAR(packed_logits[static_cast<size_t>(b0) * V + i], alone[i], 1e-10) << "example at " << b0;
        summed_loss(model.forward(x), y).backward();  // accumulates over the examples
      }
      const auto params = model.parameters();
      for (size_t k = 0; k < params.size(); ++k) {
        const auto sep = params[k].grad().to_vector<double>();
        for (size_t i = 0; i < sep.size(); ++i) ASSERT_NEAR(packed_grads[k][i], sep[i], 1e-9) << "parameter " << k;
      }
    }
  }
  EXPECT_TRUE(found_row) << "no packed row held two examples";
}

TEST(ChatFinetune, BadRecordsNameFileAndLineOrAreCounted) {
  const std::string dir = test::temp_dir("chat_bad");
  const std::string path = dir + "/bad.jsonl";
  io::write_file_atomic(path,
                        "{\"prompt\": \"hi\", \"response\": \"hello\"}\n"
                        "\n"
                        "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n"
                        "{\"prompt\": \"a long one\", \"response\": \"" + std::string(400, 'z') + "\"}\n",
                        "test");
  const tok::Tokenizer tk = tok::Tokenizer::from_file(kData + "/tokenizer/qwen2_style.tokenizer.json");
  io::ChatPrepareOptions po;
  po.chat_template = io::ChatTemplate::ChatMLQwen2_5;
  po.val_fraction = 0;
  const uint32_t eos = *tk.token_to_id("<|endoftext|>");
  const std::string msg = test::error_of([&] { io::prepare_chat({path}, dir + "/out", tk, eos, po); });
  EXPECT_NE(msg.find(path + ":3: message 0: unknown role 'robot'"), std::string::npos) << msg;
  po.skip_bad_records = true;
  po.max_tokens = 60;
  const std::string over = test::error_of([&] { io::prepare_chat({path}, dir + "/out", tk, eos, po); });
  EXPECT_NE(over.find(path + ":4: the example has"), std::string::npos) << over;
  po.overlong = io::ChatPrepareOptions::Overlong::Skip;
  const io::ChatPrepareResult r = io::prepare_chat({path}, dir + "/out", tk, eos, po);
  EXPECT_EQ(r.train_documents, 1u);
  EXPECT_EQ(r.bad_records, 1u);
  EXPECT_EQ(r.overlong_skipped, 1u);
  po.overlong = io::ChatPrepareOptions::Overlong::Truncate;
  const io::ChatPrepareResult t = io::prepare_chat({path}, dir + "/out2", tk, eos, po);
  EXPECT_EQ(t.train_documents, 2u);
  EXPECT_EQ(t.truncated, 1u);
  const io::TokenShard s(t.train_shards[0]);
  EXPECT_EQ(s.example_begin(2) - s.example_begin(1), 60u);
}

}  // namespace
}  // namespace lowbit::train
