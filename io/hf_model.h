// Hugging Face model directories: config.json with model.safetensors, or with
// model.safetensors.index.json and its shards (model-00001-of-0000N.safetensors), as
// transformers writes them. Loading converts the file dtype to the model's parameter dtype and
// requires every parameter, rejecting unknown tensors; saving writes the same layout (sharded
// above a size threshold), generation_config.json and, when given, the tokenizer files.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "lowbit/models/llama.h"

namespace lowbit::io {

// config.json + weights -> a model with opts' dtypes (the seed is irrelevant: weights are loaded).
std::unique_ptr<models::CausalLM> load_hf_model(const std::string& dir, const models::ModelOptions& opts = {});
// Loads the directory's weights into an existing model of the same configuration.
void load_hf_weights(const models::CausalLM& model, const std::string& dir);

struct HfSaveOptions {
  DType dtype = DType::bf16;                // bf16, f16 or f32 (f64 for tests)
  int64_t max_shard_bytes = 5'000'000'000;  // transformers' default "5GB"
  std::string tokenizer_dir;                // the tokenizer (its directory or file) to write beside, when set
};

// Writes dir (created if needed); model files of an earlier save there that the new one does
// not use are removed, so a stale index can never point at old shards.
void save_hf_model(const models::CausalLM& model, const std::string& dir, const HfSaveOptions& opts = {});

// The tokenizer files copied by save_hf_model when present.
const std::vector<std::string>& hf_tokenizer_files();

// The tokenizer `from` (a directory with tokenizer.json or tokenizer.model, or such a file; none
// is an error naming it) into to_dir, completed so that AutoTokenizer loads it with its special tokens:
// tokenizer_config.json and special_tokens_map.json are written from the tokenizer when
// the source lacks them, else copied (what: the caller, for the message).
void copy_hf_tokenizer_files(const std::string& from, const std::string& to_dir, const std::string& what);

}  // namespace lowbit::io
