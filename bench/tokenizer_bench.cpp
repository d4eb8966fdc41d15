// Tokenizer throughput on one thread, in input bytes per second (counter bytes_per_second), for
// every tokenizer style of tests/data/tokenizer (the argument: gpt2, llama3, qwen2 (NFC),
// llama2 (SentencePiece BPE in tokenizer.json), mistral (Metaspace "first"), metaspace (NFKC),
// normalizers (NFD + Lowercase + Strip + Replace), sentencepiece (a .model through
// libsentencepiece)): encoding the checked-in English sample (fortunes_sample.txt, 98 KB) with
// the word cache warm (the steady state of a data-preparation run) and cold (a fresh tokenizer
// per iteration); encoding the multilingual golden texts; encoding random bytes (mostly invalid
// UTF-8, the worst case for pre-tokenization); decoding; and training a 1000-token vocabulary.
#include <benchmark/benchmark.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "lowbit/io/tokenizer.h"

namespace {

using lowbit::tok::Tokenizer;

const std::string kDir = std::string(LOWBIT_TEST_DATA_DIR) + "/tokenizer/";

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

const std::string& sample() {
  static const std::string s = read_bytes(kDir + "fortunes_sample.txt");
  return s;
}

// The golden texts (accents, Greek, CJK, emoji, digits, whitespace runs) joined by newlines.
const std::string& multilingual() {
  static const std::string s = [] {
    std::string out;
    const auto j = nlohmann::json::parse(read_bytes(kDir + "golden_ids.json"));
    for (const auto& c : j["cases"]) out += c["text"].get<std::string>() + "\n";
    return out;
  }();
  return s;
}

const std::string& random_bytes() {
  static const std::string s = [] {
    std::mt19937 rng(1);
    std::string out(1 << 16, '\0');
    for (char& c : out) c = char(rng() & 0xFF);
    return out;
  }();
  return s;
}

struct Style {
  const char* name;
  const char* file;
};
constexpr Style kStyles[] = {{"gpt2", "gpt2_style.tokenizer.json"},
                             {"llama3", "llama3_style.tokenizer.json"},
                             {"qwen2", "qwen2_style.tokenizer.json"},
                             {"llama2", "llama2_style.tokenizer.json"},
                             {"mistral", "mistral_style.tokenizer.json"},
                             {"metaspace", "metaspace_style.tokenizer.json"},
                             {"normalizers", "normalizers_style.tokenizer.json"},
                             {"sentencepiece", "llama2_style.model"}};
constexpr int64_t kNumStyles = int64_t(sizeof kStyles / sizeof kStyles[0]);

std::string file_of(int64_t style) { return kDir + kStyles[style].file; }

void set_name(benchmark::State& state, int64_t style) { state.SetLabel(kStyles[style].name); }

void BM_EncodeWarm(benchmark::State& state, const std::string& (*text)()) {
  const Tokenizer t = Tokenizer::from_file(file_of(state.range(0)));
  const std::string& s = text();
  size_t tokens = t.encode(s).size();  // warms the word cache
  for (auto _ : state) {
    auto ids = t.encode(s);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(s.size()));
  state.counters["tokens"] = double(tokens);
  set_name(state, state.range(0));
}

void BM_EncodeCold(benchmark::State& state) {
  const Tokenizer proto = Tokenizer::from_file(file_of(state.range(0)));
  for (auto _ : state) {
    state.PauseTiming();
    const Tokenizer t(proto.data(), "bench");  // own, empty cache
    state.ResumeTiming();
    auto ids = t.encode(sample());
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(sample().size()));
  set_name(state, state.range(0));
}

void BM_Decode(benchmark::State& state) {
  const Tokenizer t = Tokenizer::from_file(file_of(state.range(0)));
  const auto ids = t.encode(sample());
  for (auto _ : state) {
    auto s = t.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(sample().size()));
  set_name(state, state.range(0));
}

void BM_Train(benchmark::State& state) {
  std::vector<std::string> docs;
  const std::string& s = sample();
  for (size_t b = 0; b < s.size();) {
    size_t e = s.find("\n%\n", b);
    if (e == std::string::npos) e = s.size();
    docs.push_back(s.substr(b, e - b));
    b = e + 3;
  }
  lowbit::tok::BpeTrainerOptions opt;
  opt.vocab_size = 1000;
  opt.pre_tokenizer = lowbit::tok::PreTokenizerConfig::llama3();
  for (auto _ : state) {
    auto t = lowbit::tok::train_bpe(docs, opt);
    benchmark::DoNotOptimize(t.vocab_size());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(s.size()));
}

BENCHMARK_CAPTURE(BM_EncodeWarm, sample, &sample)->DenseRange(0, kNumStyles - 1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeCold)->DenseRange(0, kNumStyles - 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EncodeWarm, multilingual, &multilingual)->DenseRange(0, kNumStyles - 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EncodeWarm, random_bytes, &random_bytes)->DenseRange(0, kNumStyles - 1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)->DenseRange(0, kNumStyles - 1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Train)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
