// Token shards (format, checksums, validation), the shuffled resumable loader, and
// prepare_data's document split. Also CRC-32C against the published check value.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "../test_util.h"
#include "lowbit/engine/error.h"
#include "lowbit/io/crc32c.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/prepare_data.h"
#include "lowbit/io/token_data.h"

namespace lowbit::io {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) { return test::temp_dir("token_data_" + name); }

using test::error_of;

TEST(Crc32c, CheckValueAndIncrementalAndPortablePathAgree) {
  // The CRC-32C check value of "123456789" (RFC 3720 / the Castagnoli catalogue): 0xE3069283.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(detail::crc32c_portable("123456789", 9), 0xE3069283u);
  std::string s(1000, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 37 + 11);
  for (size_t cut : {0, 1, 7, 8, 9, 500, 999}) {
    EXPECT_EQ(crc32c(s.data() + cut, s.size() - cut, crc32c(s.data(), cut)), crc32c(s.data(), s.size())) << cut;
    EXPECT_EQ(detail::crc32c_portable(s.data() + cut, s.size() - cut), crc32c(s.data() + cut, s.size() - cut));
  }
  EXPECT_EQ(crc_hex(0xE3069283u), "e3069283");
}

TEST(TokenShard, RoundTripsDocumentsWithEosIn2And4ByteTokens) {
  const std::string d = temp_dir("roundtrip");
  for (uint32_t vocab : {1000u, 70000u}) {
    const std::string path = d + "/s" + std::to_string(vocab) + ".bin";
    TokenShardWriter w(path, vocab, 0);
    w.add_document({5, 6, 7});
    w.add_document({});
    w.add_document({vocab - 1, 1});
    w.close();
    const TokenShard s(path);
    EXPECT_EQ(s.header().token_bytes, vocab <= 65536 ? 2u : 4u);
    EXPECT_EQ(s.header().num_documents, 3u);
    EXPECT_EQ(s.header().vocab_size, vocab);
    EXPECT_EQ(s.tokens(0, s.size()), (std::vector<uint32_t>{5, 6, 7, 0, 0, vocab - 1, 1, 0}));
    EXPECT_EQ(fs::file_size(path), kTokenShardHeaderBytes + 8 * s.header().token_bytes);
  }
  TokenShardWriter w(d + "/bad.bin", 10, 0);
  EXPECT_NE(error_of([&] { w.add_document({3, 10}); }).find("token id 10 >= vocab_size 10"), std::string::npos);
  EXPECT_THROW(TokenShardWriter(d + "/x.bin", 10, 10), Error);
}

// Chat shards: examples without separators, their offsets and the loss mask round trip; a
// text shard (version 1, what every earlier build wrote) still reads.
TEST(TokenShard, ChatShardsRoundTripExamplesAndMasks) {
  const std::string d = temp_dir("chat");
  for (uint32_t vocab : {100u, 70000u}) {
    const std::string path = d + "/c" + std::to_string(vocab) + ".bin";
    TokenShardWriter w(path, vocab, 2, /*chat=*/true);
    w.add_example({1, 5, 6, 7}, {0, 0, 1, 1});
    w.add_example({9}, {0});
    w.add_example({1, 3, vocab - 1}, {0, 1, 1});
    EXPECT_NE(error_of([&] { w.add_document({1}); }).find("chat shard"), std::string::npos);
    EXPECT_NE(error_of([&] { w.add_example({1, 2}, {1}); }).find("mask of 1 entries for 2 tokens"), std::string::npos);
    EXPECT_NE(error_of([&] { w.add_example({1}, {2}); }).find("0 or 1"), std::string::npos);
    w.close();
    const TokenShard s(path);
    EXPECT_TRUE(s.header().chat);
    EXPECT_EQ(s.header().num_documents, 3u);
    EXPECT_EQ(s.tokens(0, s.size()), (std::vector<uint32_t>{1, 5, 6, 7, 9, 1, 3, vocab - 1}));
    EXPECT_EQ(s.example_begin(0), 0u);
    EXPECT_EQ(s.example_begin(1), 4u);
    EXPECT_EQ(s.example_begin(2), 5u);
    EXPECT_EQ(s.example_begin(3), 8u);
    std::vector<int> mask;
    for (uint64_t i = 0; i < s.size(); ++i) mask.push_back(s.trained(i));
    EXPECT_EQ(mask, (std::vector<int>{0, 0, 1, 1, 0, 0, 1, 1}));
    const uint64_t tb = s.header().token_bytes;
    EXPECT_EQ(fs::file_size(path), kTokenShardHeaderBytes + (8 * tb + 7) / 8 * 8 + 8 * 4 + 8);
  }
  const TokenShard text(std::string(LOWBIT_TEST_DATA_DIR) + "/malformed/token_shard/ok_small.bin");
  EXPECT_FALSE(text.header().chat);
  EXPECT_THROW(text.example_begin(0), Error);
  TokenShardWriter t(d + "/t.bin", 10, 0);
  EXPECT_NE(error_of([&] { t.add_example({1}, {1}); }).find("text shard"), std::string::npos);
}

TEST(TokenShard, RejectsCorruptChatShards) {
  const std::string d = temp_dir("chat_corrupt");
  const std::string path = d + "/c.bin";
  TokenShardWriter w(path, 50, 2, true);
  w.add_example({1, 5, 6}, {0, 1, 1});
  w.add_example({1, 7}, {0, 1});
  w.close();
  const std::string good = read_file(path, "test");
  const size_t body = kTokenShardHeaderBytes, offsets = body + 16, mask = offsets + 3 * 8;
  auto corrupt = [&](size_t at, char value, const std::string& needle) {
    std::string bad = good;
    bad[at] = value;
    // Keep both checksums right so the structural check is what fires.
    const uint32_t crc = crc32c(bad.data() + body, bad.size() - body);
    std::memcpy(bad.data() + 40, &crc, 4);
    const uint32_t hcrc = crc32c(bad.data() + 48, 16, crc32c(bad.data(), 44));
    std::memcpy(bad.data() + 44, &hcrc, 4);
    write_file_atomic(path, bad, "test");
    const std::string msg = error_of([&] { TokenShard s(path); });
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  };
  corrupt(mask + 1, 2, "loss-mask byte 1 is 2");
  corrupt(offsets + 8, 9, "example offset 1 is 9");
  corrupt(offsets, 1, "example offset 0 is 1");
  std::string bad = good;
  bad[48] = 3;  // unknown flag (the header checksum then fails first)
  write_file_atomic(path, bad, "test");
  EXPECT_NE(error_of([&] { TokenShard s(path); }).find("header checksum"), std::string::npos);
  write_file_atomic(path, good.substr(0, good.size() - 1), "test");
  EXPECT_NE(error_of([&] { TokenShard s(path); }).find("data bytes"), std::string::npos);
}

// Unpacked chat rows: one example each, targets masked to the trained tokens, eos padding;
// packed rows: examples back to back while they fit, positions restarting, segment ids.
TEST(TokenLoader, ChatRowsMaskAndPack) {
  const std::string d = temp_dir("chat_loader");
  const std::string path = d + "/c.bin";
  TokenShardWriter w(path, 50, 2, true);
  w.add_example({1, 10, 11, 12}, {0, 0, 1, 1});      // 3 pairs
  w.add_example({1, 20, 21}, {0, 1, 1});             // 2 pairs
  w.add_example({7}, {1});                           // 0 pairs: skipped
  w.add_example({1, 30, 31, 32, 33, 34, 35}, {0, 0, 0, 1, 1, 1, 1});  // 6 pairs: truncated to 5 at T = 5
  w.close();
  LoaderOptions o{.seq_len = 5, .batch_size = 3, .seed = 0, .shuffle = false};
  TokenLoader plain({path}, o);
  EXPECT_TRUE(plain.chat());
  EXPECT_EQ(plain.num_examples(), 3u);
  EXPECT_EQ(plain.truncated_examples(), 1u);
  EXPECT_EQ(plain.windows_per_epoch(), 3);
  const Batch a = plain.next_batch();
  EXPECT_FALSE(a.positions.defined());
  EXPECT_EQ(a.inputs.to_vector<int64_t>(), (std::vector<int64_t>{1, 10, 11, 2, 2, 1, 20, 2, 2, 2, 1, 30, 31, 32, 33}));
  EXPECT_EQ(a.targets.to_vector<int64_t>(),
            (std::vector<int64_t>{-100, 11, 12, -100, -100, 20, 21, -100, -100, -100, -100, -100, 32, 33, 34}));

  o.pack = true;
  o.batch_size = 2;
  TokenLoader packed({path}, o);
  EXPECT_TRUE(packed.packed());
  EXPECT_EQ(packed.windows_per_epoch(), 2);  // [3 + 2 pairs], [5 pairs]
  const Batch b = packed.next_batch();
  EXPECT_EQ(b.inputs.to_vector<int64_t>(), (std::vector<int64_t>{1, 10, 11, 1, 20, 1, 30, 31, 32, 33}));
  EXPECT_EQ(b.targets.to_vector<int64_t>(), (std::vector<int64_t>{-100, 11, 12, 20, 21, -100, -100, 32, 33, 34}));
  EXPECT_EQ(b.positions.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 0, 1, 0, 1, 2, 3, 4}));
  EXPECT_EQ(b.segments.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 1, 1, 0, 0, 0, 0, 0}));
  EXPECT_NE(error_of([&] { packed.next(); }).find("next_batch"), std::string::npos);

  // A text shard and a chat shard do not mix.
  TokenShardWriter t(d + "/t.bin", 50, 2);
  t.add_document({3, 4, 5, 6, 7, 8, 9});
  t.close();
  EXPECT_NE(error_of([&] { TokenLoader({path, d + "/t.bin"}, o); }).find("is a text shard but"), std::string::npos);
}

TEST(TokenShard, RejectsCorruptionWithOneLineErrors) {
  const std::string d = temp_dir("corrupt");
  const std::string good = d + "/good.bin";
  TokenShardWriter w(good, 500, 1);
  for (uint32_t i = 0; i < 50; ++i) w.add_document({i, i + 2, i + 3});
  w.close();
  const std::string bytes = read_file(good, "test");
  auto variant = [&](const std::string& name, const std::string& content) {
    const std::string p = d + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    const std::string e = error_of([&] { TokenShard s(p); });
    EXPECT_NE(e.find(p), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    return e;
  };
  // Every single header byte changed, and data bytes at several places.
  for (size_t i = 0; i < kTokenShardHeaderBytes; ++i) {
    std::string b = bytes;
    b[i] = static_cast<char>(b[i] ^ 0x20);
    if (i >= 48) continue;  // padding is not covered (it carries nothing)
    EXPECT_FALSE(variant("h.bin", b).empty()) << "header byte " << i;
  }
  for (size_t i : {size_t{64}, size_t{65}, bytes.size() / 2, bytes.size() - 1}) {
    std::string b = bytes;
    b[i] = static_cast<char>(b[i] ^ 1);
    EXPECT_NE(variant("d.bin", b).find("data checksum mismatch"), std::string::npos) << i;
  }
  EXPECT_NE(variant("t.bin", bytes.substr(0, bytes.size() - 2)).find("data bytes"), std::string::npos);
  EXPECT_NE(variant("short.bin", bytes.substr(0, 10)).find("shorter than the 64-byte header"), std::string::npos);
  EXPECT_NE(variant("magic.bin", "NOTATOKENSHARD" + bytes.substr(14)).find("bad magic"), std::string::npos);
  EXPECT_NE(error_of([&] { TokenShard s(d + "/missing.bin"); }).find("cannot open"), std::string::npos);
}

std::string write_shard(const std::string& path, uint32_t n_tokens, uint32_t vocab) {
  TokenShardWriter w(path, vocab, 0);
  std::vector<uint32_t> doc;
  for (uint32_t i = 0; i + 1 < n_tokens; ++i) doc.push_back(1 + i % (vocab - 1));
  w.add_document(doc);
  w.close();
  return path;
}

TEST(TokenLoader, EveryWindowOncePerEpochShuffledBySeed) {
  const std::string d = temp_dir("loader");
  // 2 shards: 41 and 25 tokens, windows of 5 tokens: 8 + 5 = 13 windows.
  const std::vector<std::string> paths = {write_shard(d + "/a.bin", 41, 97), write_shard(d + "/b.bin", 25, 97)};
  LoaderOptions o{.seq_len = 4, .batch_size = 1, .seed = 3};
  TokenLoader L(paths, o);
  EXPECT_EQ(L.num_windows(), 13);
  const TokenShard a(paths[0]), b(paths[1]);
  std::multiset<std::vector<int64_t>> want, got;
  for (uint64_t s = 0; s + 5 <= 41; s += 5) {
    auto t = a.tokens(s, 5);
    want.insert(std::vector<int64_t>(t.begin(), t.end()));
  }
  for (uint64_t s = 0; s + 5 <= 25; s += 5) {
    auto t = b.tokens(s, 5);
    want.insert(std::vector<int64_t>(t.begin(), t.end()));
  }
  std::vector<std::vector<int64_t>> epoch0;
  for (int i = 0; i < 13; ++i) {
    const auto [x, y] = L.next();
    auto xv = x.to_vector<int64_t>();
    const auto yv = y.to_vector<int64_t>();
    for (size_t k = 0; k + 1 < xv.size(); ++k) EXPECT_EQ(xv[k + 1], yv[k]);  // targets are inputs shifted
    xv.push_back(yv.back());
    got.insert(xv);
    epoch0.push_back(xv);
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(L.position().epoch, 0u);
  L.next();
  EXPECT_EQ(L.position().epoch, 1u);

  // Same seed, same order; another seed, another order; shuffle off is file order.
  TokenLoader L2(paths, o);
  for (const auto& w : epoch0) {
    auto [x, y] = L2.next();
    auto xv = x.to_vector<int64_t>();
    xv.push_back(y.to_vector<int64_t>().back());
    EXPECT_EQ(xv, w);
  }
  o.seed = 4;
  TokenLoader L3(paths, o);
  std::vector<std::vector<int64_t>> other;
  for (int i = 0; i < 13; ++i) {
    auto [x, y] = L3.next();
    other.push_back(x.to_vector<int64_t>());
  }
  std::vector<std::vector<int64_t>> first_inputs;
  for (auto w : epoch0) first_inputs.emplace_back(w.begin(), w.end() - 1);
  EXPECT_NE(other, first_inputs);
}

TEST(TokenLoader, ResumesExactlyAndRanksPartitionTheWindows) {
  const std::string d = temp_dir("resume");
  const std::vector<std::string> paths = {write_shard(d + "/a.bin", 400, 50)};
  LoaderOptions o{.seq_len = 7, .batch_size = 3, .seed = 9};
  TokenLoader full(paths, o);
  std::vector<std::vector<int64_t>> seq;
  for (int i = 0; i < 40; ++i) seq.push_back(full.next().first.to_vector<int64_t>());  // crosses epochs
  TokenLoader first(paths, o);
  for (int i = 0; i < 17; ++i) first.next();
  TokenLoader resumed(paths, o);
  resumed.set_position(first.position());
  for (int i = 17; i < 40; ++i) EXPECT_EQ(resumed.next().first.to_vector<int64_t>(), seq[static_cast<size_t>(i)]) << i;
  EXPECT_THROW(resumed.set_position({0, 1000}), Error);

  // Three ranks take disjoint windows whose union is every window.
  o.batch_size = 1;
  std::multiset<std::vector<int64_t>> all, union_of_ranks;
  TokenLoader one(paths, o);
  for (int64_t i = 0; i < one.windows_per_epoch(); ++i) all.insert(one.next().first.to_vector<int64_t>());
  for (int64_t r = 0; r < 3; ++r) {
    LoaderOptions ro = o;
    ro.rank = r;
    ro.world = 3;
    TokenLoader lr(paths, ro);
    for (int64_t i = 0; i < lr.windows_per_epoch(); ++i) union_of_ranks.insert(lr.next().first.to_vector<int64_t>());
  }
  EXPECT_EQ(union_of_ranks, all);
  EXPECT_NE(error_of([&] { TokenLoader(paths, LoaderOptions{.seq_len = 1000}); }).find("gets none"),
            std::string::npos);
  EXPECT_THROW(TokenLoader({}, o), Error);
}

TEST(PrepareData, SplitsWholeDocumentsDeterministically) {
  const std::string d = temp_dir("prepare");
  fs::create_directories(d + "/in/sub");
  std::map<std::string, int> docs_in;
  {
    std::ofstream a(d + "/in/a.txt");
    std::ofstream b(d + "/in/sub/b.txt");
    for (int i = 0; i < 300; ++i) {
      const std::string doc = "document number " + std::to_string(i) + (i % 7 ? " with words" : "");
      (i % 2 ? a : b) << doc << "\n%\n";
      docs_in[doc]++;
    }
  }
  // Bytes as tokens (+1 so 0 can be EOS).
  const EncodeFn enc = [](std::string_view s) {
    std::vector<uint32_t> ids;
    for (unsigned char c : s) ids.push_back(c + 1u);
    return ids;
  };
  PrepareOptions o{.doc_separator = "\n%\n", .val_fraction = 0.2, .seed = 1, .max_shard_tokens = 2000};
  const PrepareResult r = prepare_data({d + "/in"}, d + "/out", enc, 257, 0, o);
  EXPECT_EQ(r.train_documents + r.val_documents, 300u);
  EXPECT_GT(r.val_documents, 30u);
  EXPECT_LT(r.val_documents, 90u);
  EXPECT_GT(r.train_shards.size(), 1u);  // rolled over at 2000 tokens
  std::map<std::string, int> docs_out;
  std::set<std::string> val_docs;
  for (const auto* list : {&r.train_shards, &r.val_shards})
    for (const std::string& p : *list) {
      const TokenShard s(p);
      std::string cur;
      for (uint32_t t : s.tokens(0, s.size())) {
        if (t == 0) {
          docs_out[cur]++;
          if (list == &r.val_shards) val_docs.insert(cur);
          cur.clear();
        } else {
          cur.push_back(static_cast<char>(t - 1));
        }
      }
    }
  EXPECT_EQ(docs_out, docs_in);  // every document exactly once, whole
  const PrepareResult again = prepare_data({d + "/in"}, d + "/out2", enc, 257, 0, o);
  EXPECT_EQ(again.val_documents, r.val_documents);
  EXPECT_EQ(read_file(again.val_shards[0], "t"), read_file(r.val_shards[0], "t"));
  EXPECT_NE(error_of([&] { prepare_data({d + "/nope"}, d + "/o3", enc, 257, 0, o); }).find("/nope does not exist"),
            std::string::npos);
}

}  // namespace
}  // namespace lowbit::io
