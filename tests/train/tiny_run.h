// The tiny train_llama run the train/ tests start from: a 300-id tokenizer trained on the
// fortunes sample, a 2-layer 32-wide Llama, no validation or periodic checkpoints.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lowbit::test {

inline const std::string kTinyText = std::string(LOWBIT_TEST_DATA_DIR) + "/tokenizer/fortunes_sample.txt";

inline nlohmann::json tiny_run(const std::string& dir, int64_t steps) {
  using json = nlohmann::json;
  return json{{"data", {{"text", json::array({kTinyText})}, {"doc_separator", "\n%\n"}, {"vocab_size", 300},
                        {"seq_len", 32}, {"batch_size", 4}}},
              {"model", {{"hidden_size", 32}, {"intermediate_size", 64}, {"num_hidden_layers", 2},
                         {"num_attention_heads", 2}, {"num_key_value_heads", 2}}},
              {"train", {{"steps", steps}, {"eval_every", 0}, {"eval_batches", 2}}},
              {"schedule", {{"warmup_steps", 2}, {"decay", "constant"}}},
              {"checkpoint", {{"dir", dir}, {"every", 0}}},
              {"log", {{"every", 5}, {"progress", false}}}};
}

}  // namespace lowbit::test
