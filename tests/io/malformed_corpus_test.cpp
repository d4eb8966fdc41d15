// Replays the committed corpus of malformed (and a few valid) files through every untrusted-
// file parser (safetensors, config.json, token shards, tokenizer.json), exactly as the fuzz targets drive them (fuzz/). bad_* must be rejected with a
// one-line lowbit::Error naming the file, ok_* accepted, fuzz_* (fuzzer finds) either, never
// a crash or a foreign exception (the ASan/UBSan build runs this too).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "lowbit/engine/error.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/io/token_data.h"
#include "lowbit/io/tokenizer.h"
#include "lowbit/models/model_config.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

void replay(const std::string& folder, const std::function<void(const std::string&)>& parse) {
  const std::string dir = std::string(LOWBIT_TEST_DATA_DIR) + "/malformed/" + folder;
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string path = e.path().string(), name = e.path().filename().string();
    SCOPED_TRACE(path);
    const bool bad = name.rfind("bad_", 0) == 0, ok = name.rfind("ok_", 0) == 0;
    ASSERT_TRUE(bad || ok || name.rfind("fuzz_", 0) == 0) << "corpus files are named bad_*, ok_* or fuzz_*";
    std::string error;
    try {
      parse(path);
    } catch (const Error& err) {
      error = err.what();
    }
    if (bad) EXPECT_FALSE(error.empty()) << "accepted";
    if (ok) EXPECT_TRUE(error.empty()) << error;
    if (!error.empty()) {
      EXPECT_NE(error.find(path), std::string::npos) << error;
      EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    }
    ++n;
  }
  EXPECT_GE(n, 10) << dir;
}

TEST(MalformedCorpus, Safetensors) {
  replay("safetensors", [](const std::string& p) {
    const io::SafetensorsReader r(p);
    for (const std::string& n : r.names()) (void)r.get(n);
  });
}

TEST(MalformedCorpus, ModelConfig) {
  replay("model_config", [](const std::string& p) {
    const models::ModelConfig c = models::parse_model_config(io::read_file(p, "config"), p);
    EXPECT_EQ(models::parse_model_config(models::model_config_to_json(c, c.torch_dtype)), c);
  });
}

TEST(MalformedCorpus, TokenShard) {
  replay("token_shard", [](const std::string& p) {
    const io::TokenShard s(p);
    (void)s.tokens(0, s.size());
  });
}

TEST(MalformedCorpus, TokenizerJson) {
  replay("tokenizer_json", [](const std::string& p) {
    const tok::Tokenizer t = tok::Tokenizer::from_file(p);
    const std::string text = "the theme, \xff\xfe bytes <|endoftext|> and the end";
    const std::vector<int32_t> ids = t.encode(text);
    EXPECT_EQ(t.decode(ids), text);
  });
}

}  // namespace
}  // namespace lowbit
