// safetensors reader/writer: round trips of every dtype (scalars and empty tensors included),
// metadata, zero-copy mapping, a byte-exact file against the format, atomic writes, and one
// test per header validation rule checking the one-line error names the file and the rule.
#include "lowbit/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "lowbit/engine/error.h"

namespace lowbit::io {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test under the GoogleTest temp dir.
std::string test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(::testing::TempDir()) / (std::string("lowbit_st_") + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file as the format describes it: length, header (padded to 8 bytes), data.
std::string make_file(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size()) + header + data;
}

std::string bytes_of(const Tensor& t) {
  if (t.numel() == 0) return {};
  const Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), static_cast<size_t>(dtype_nbytes(c.dtype(), c.numel())));
}

// Runs fn, expecting a one-line lowbit::Error that names `path` and contains every fragment.
void expect_error(const std::function<void()>& fn, const std::string& path, const std::vector<std::string>& fragments) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << "error does not name the file: " << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "missing '" << f << "' in: " << msg;
    return;
  }
  ADD_FAILURE() << "expected a lowbit::Error mentioning " << (fragments.empty() ? "" : fragments[0]);
}

// Writes a hand-built file and expects opening it to fail with the given fragments.
void expect_bad_file(const std::string& name, const std::string& bytes, const std::vector<std::string>& fragments) {
  const std::string path = test_dir() + "/" + name + ".safetensors";
  write_bytes(path, bytes);
  expect_error([&] { SafetensorsReader r(path); }, path, fragments);
}

const std::string kEntryA = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

constexpr DType kAllDTypes[] = {DType::f64, DType::f32,      DType::bf16,     DType::f16, DType::fp8_e4m3,
                                DType::fp8_e5m2, DType::i8, DType::u8, DType::i32, DType::i64};

TEST(Safetensors, DTypeNamesMapBothWays) {
  const std::pair<const char*, DType> expected[] = {
      {"F64", DType::f64}, {"F32", DType::f32}, {"BF16", DType::bf16}, {"F16", DType::f16},
      {"F8_E4M3", DType::fp8_e4m3}, {"F8_E5M2", DType::fp8_e5m2}, {"I8", DType::i8}, {"U8", DType::u8},
      {"I32", DType::i32}, {"I64", DType::i64}};
  for (const auto& [name, d] : expected) {
    EXPECT_EQ(dtype_from_safetensors_name(name), d) << name;
    EXPECT_EQ(safetensors_name(d), std::string_view(name)) << name;
  }
  EXPECT_FALSE(dtype_from_safetensors_name("BOOL").has_value());
  EXPECT_FALSE(dtype_from_safetensors_name("f32").has_value());
  EXPECT_FALSE(safetensors_name(DType::fp4_e2m1).has_value());
}

TEST(Safetensors, RoundTripsEveryDTypeWithScalarsAndEmptyTensors) {
  const std::string path = test_dir() + "/all.safetensors";
  std::vector<std::pair<std::string, Tensor>> in;
  for (DType d : kAllDTypes) {
    const std::string n(dtype_name(d));
    const std::vector<double> vals = d == DType::u8 ? std::vector<double>{0, 1, 2, 5, 3, 255}
                                     : is_float(d)  ? std::vector<double>{0, 1, -2, 0.5, 3, -1.5}
                                                    : std::vector<double>{0, 1, -2, 5, 3, -1};
    in.emplace_back(n + ".matrix", from_vector(vals, {2, 3}, d));
    in.emplace_back(n + ".scalar", from_vector(std::vector<double>{-1}, {}, d));
    in.emplace_back(n + ".empty", empty({0, 3}, d));
    in.emplace_back(n + ".empty_inner", empty({2, 0}, d));
  }
  save_safetensors(path, in);

  const auto out = load_safetensors(path);
  ASSERT_EQ(out.size(), in.size());
  std::map<std::string, Tensor> by_name(out.begin(), out.end());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(by_name.count(name)) << name;
    const Tensor& r = by_name.at(name);
    EXPECT_EQ(r.dtype(), t.dtype()) << name;
    EXPECT_EQ(r.shape(), t.shape()) << name;
    EXPECT_TRUE(r.device().is_cpu()) << name;
    EXPECT_EQ(bytes_of(r), bytes_of(t)) << name;
  }
  // load_safetensors returns file order, i.e. increasing data offsets.
  const SafetensorsReader reader(path);
  int64_t last = -1;
  for (const std::string& n : reader.names()) {
    EXPECT_GE(reader.info(n).begin, last) << n;
    last = reader.info(n).begin;
  }
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].first, reader.names()[i]);
}

TEST(Safetensors, SavesNonContiguousInputsAsTheirValues) {
  const std::string path = test_dir() + "/views.safetensors";
  const Tensor base = from_vector(std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4}, DType::f32);
  const Tensor tr = base.t();                     // (4, 3), strides (1, 4)
  const Tensor stepped = base.slice(1, 1, 4, 2);  // (3, 2) every other column from 1
  const Tensor narrowed = base.narrow(0, 1, 2);   // contiguous view at an offset
  ASSERT_FALSE(tr.is_contiguous());
  ASSERT_FALSE(stepped.is_contiguous());
  save_safetensors(path, {{"tr", tr}, {"stepped", stepped}, {"narrowed", narrowed}});
  const SafetensorsReader r(path);
  EXPECT_EQ(r.get("tr").shape(), (Shape{4, 3}));
  EXPECT_EQ(r.get("tr").to_vector<float>(), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(r.get("stepped").to_vector<float>(), (std::vector<float>{1, 3, 5, 7, 9, 11}));
  EXPECT_EQ(r.get("narrowed").to_vector<float>(), (std::vector<float>{4, 5, 6, 7, 8, 9, 10, 11}));
}

TEST(Safetensors, MetadataRoundTrips) {
  const std::string dir = test_dir();
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"note", "quotes \" and \\ and newline\n"}, {"unicode", "\xc3\xa9t\xc3\xa9"}, {"empty", ""}};
  save_safetensors(dir + "/m.safetensors", {{"x", ones({2}, DType::f32)}}, meta);
  EXPECT_EQ(SafetensorsReader(dir + "/m.safetensors").metadata(), meta);
  // No metadata: none is written and none is read back; a file of metadata only is valid.
  save_safetensors(dir + "/none.safetensors", {{"x", ones({2}, DType::f32)}});
  EXPECT_TRUE(SafetensorsReader(dir + "/none.safetensors").metadata().empty());
  EXPECT_EQ(read_bytes(dir + "/none.safetensors").find("__metadata__"), std::string::npos);
  save_safetensors(dir + "/only.safetensors", {}, {{"k", "v"}});
  const SafetensorsReader only(dir + "/only.safetensors");
  EXPECT_TRUE(only.names().empty());
  EXPECT_EQ(only.metadata().at("k"), "v");
}

TEST(Safetensors, AlignedTensorsAreZeroCopyViewsOfThePrivateMapping) {
  const std::string path = test_dir() + "/zc.safetensors";
  const Tensor w = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, DType::f32);
  save_safetensors(path, {{"ids", from_vector(std::vector<int64_t>{7, 8, 9}, {3})}, {"b", ones({3}, DType::u8)}, {"w", w}});
  Tensor got;
  {
    const SafetensorsReader r(path);
    for (const std::string& n : r.names()) {
      const Tensor t = r.get(n);
      const auto* p = static_cast<const uint8_t*>(t.raw_data());
      EXPECT_TRUE(p >= r.mapped_data() && p + dtype_nbytes(t.dtype(), t.numel()) <= r.mapped_data() + r.mapped_size())
          << n << " was copied";
    }
    got = r.get("w");
  }
  // The tensor keeps the mapping alive after the reader is gone, and writing into it stays private.
  EXPECT_EQ(got.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  fill_(got, 0.0);
  EXPECT_EQ(got.to_vector<float>(), std::vector<float>(6, 0.0f));
  EXPECT_EQ(SafetensorsReader(path).get("w").to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(Safetensors, MisalignedTensorsAreCopied) {
  const std::string path = test_dir() + "/odd.safetensors";
  const float vals[2] = {1.5f, -3.0f};
  std::string data = "\x2a";
  data.append(reinterpret_cast<const char*>(vals), 8);
  write_bytes(path, make_file(R"({"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                              R"("f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})",
                              data));
  const SafetensorsReader r(path);
  const Tensor f = r.get("f");
  const auto* p = static_cast<const uint8_t*>(f.raw_data());
  EXPECT_FALSE(p >= r.mapped_data() && p < r.mapped_data() + r.mapped_size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4, 0u);
  EXPECT_EQ(f.to_vector<float>(), (std::vector<float>{1.5f, -3.0f}));
  EXPECT_EQ(r.get("pad").to_vector<int64_t>(), (std::vector<int64_t>{42}));
}

TEST(Safetensors, WritesTheFormatByteForByte) {
  const std::string path = test_dir() + "/exact.safetensors";
  save_safetensors(path,
                   {{"ids", from_vector(std::vector<int64_t>{1, -1, 7}, {3}, DType::i8)},
                    {"w", from_vector(std::vector<double>{1.0, -2.0}, {2}, DType::f32)},
                    {"h", from_vector(std::vector<double>{1.0, 0.5}, {1, 2}, DType::f16)}},
                   {{"format", "pt"}});
  // Larger elements first: w (4-byte), h (2-byte), ids (1-byte); 197 header bytes + 3 spaces.
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("h":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]},"ids":{"dtype":"I8","shape":[3],"data_offsets":[12,15]}})";
  ASSERT_EQ(json.size(), 197u);
  std::string expected = std::string("\xc8\0\0\0\0\0\0\0", 8) + json + "   ";
  expected += std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);  // f32 1.0, -2.0
  expected += std::string("\x00\x3c\x00\x38", 4);                  // f16 1.0, 0.5
  expected += std::string("\x01\xff\x07", 3);                      // i8 1, -1, 7
  EXPECT_EQ(read_bytes(path), expected);
}

TEST(Safetensors, ReadsAHandBuiltFileInOffsetOrder) {
  const std::string path = test_dir() + "/hand.safetensors";
  const int32_t a[3] = {5, -6, 7};
  const double b = 2.25;
  std::string data(reinterpret_cast<const char*>(&b), 8);
  data.append(reinterpret_cast<const char*>(a), 12);
  // Entry keys in an unusual order, whitespace, and the later tensor listed first.
  write_bytes(path, make_file("{\n  \"second\": {\"data_offsets\": [8, 20], \"shape\": [3, 1], \"dtype\": \"I32\"},\n"
                              "  \"__metadata__\": {\"a\": \"b\"},\n"
                              "  \"first\": {\"shape\": [], \"dtype\": \"F64\", \"data_offsets\": [0, 8]}\n}",
                              data));
  const SafetensorsReader r(path);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"first", "second"}));
  EXPECT_TRUE(r.has("second"));
  EXPECT_FALSE(r.has("third"));
  EXPECT_EQ(r.info("second").dtype, DType::i32);
  EXPECT_EQ(r.info("second").shape, (Shape{3, 1}));
  EXPECT_EQ(r.info("second").begin, 8);
  EXPECT_EQ(r.info("second").end, 20);
  EXPECT_EQ(r.get("first").dim(), 0);
  EXPECT_EQ(r.get("first").item(), 2.25);
  EXPECT_EQ(r.get("second").to_vector<int32_t>(), (std::vector<int32_t>{5, -6, 7}));
  EXPECT_EQ(r.metadata().at("a"), "b");
  expect_error([&] { r.get("third"); }, path, {"no tensor 'third'"});
  expect_error([&] { r.info("third"); }, path, {"no tensor 'third'"});
}

TEST(Safetensors, SaveIsAtomicAndLeavesNoTemporaryFiles) {
  const std::string dir = test_dir();
  const std::string path = dir + "/ckpt.safetensors";
  save_safetensors(path, {{"x", ones({4}, DType::f32)}});
  const SafetensorsReader old_reader(path);
  const Tensor old_x = old_reader.get("x");
  save_safetensors(path, {{"x", full({4}, 2.0, DType::f32)}});  // replaces the old file
  EXPECT_EQ(SafetensorsReader(path).get("x").to_vector<float>(), std::vector<float>(4, 2.0f));
  // The old file was replaced, not rewritten in place: tensors mapped from it are intact.
  EXPECT_EQ(old_x.to_vector<float>(), std::vector<float>(4, 1.0f));
  const std::string before = read_bytes(path);
  // A failed save (a name that is not UTF-8) leaves the old file untouched.
  expect_error([&] { save_safetensors(path, {{"bad\xff", ones({1})}}); }, path, {"UTF-8"});
  EXPECT_EQ(read_bytes(path), before);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename().string());
  EXPECT_EQ(files, std::vector<std::string>{"ckpt.safetensors"});
  const std::string missing = dir + "/no/such/dir/x.safetensors";
  expect_error([&] { save_safetensors(missing, {{"x", ones({1})}}); }, missing, {"cannot create a temporary file"});
}

TEST(Safetensors, SaveRejectsBadInputsNamingTheTensor) {
  const std::string path = test_dir() + "/bad.safetensors";
  expect_error([&] { save_safetensors(path, {{"a", ones({1})}, {"a", ones({1})}}); }, path, {"'a'", "duplicate name"});
  expect_error([&] { save_safetensors(path, {{"__metadata__", ones({1})}}); }, path, {"reserved"});
  expect_error([&] { save_safetensors(path, {{"u", Tensor()}}); }, path, {"'u'", "undefined tensor"});
  expect_error([&] { save_safetensors(path, {{"m", empty({2}, DType::f32, kMeta)}}); }, path, {"'m'", "meta tensor"});
  expect_error([&] { save_safetensors(path, {{"q", zeros({2}, DType::fp4_e2m1)}}); }, path,
               {"'q'", "fp4_e2m1 has no safetensors name"});
  EXPECT_FALSE(fs::exists(path));
}

// ---- one test per validation rule ----

TEST(Safetensors, RejectsMissingFile) {
  const std::string path = test_dir() + "/absent.safetensors";
  expect_error([&] { SafetensorsReader r(path); }, path, {"cannot open"});
}

TEST(Safetensors, RejectsFileShorterThanTheLengthField) {
  expect_bad_file("short", std::string("\x08\0\0\0\0", 5), {"file is 5 bytes", "shorter than the 8-byte header length"});
  expect_bad_file("empty", "", {"file is 0 bytes"});
}

TEST(Safetensors, RejectsHeaderLengthPastTheEndOfFile) {
  expect_bad_file("past_end", le64(100) + std::string(20, ' '), {"header length 100", "exceeds the 20 bytes"});
}

TEST(Safetensors, RejectsAbsurdHeaderLength) {
  expect_bad_file("absurd", le64(200'000'000) + "{}      ", {"header length 200000000", "100000000-byte limit"});
  expect_bad_file("huge", le64(~uint64_t{0}) + "{}      ", {"100000000-byte limit"});
}

TEST(Safetensors, RejectsMalformedJson) {
  expect_bad_file("malformed", make_file(R"({"a": {"dtype": "F32",)", ""), {"malformed JSON header"});
  expect_bad_file("nul_padding", le64(8) + std::string("{}\0\0\0\0\0\0", 8), {"malformed JSON header", "NUL byte"});
  expect_bad_file("trailing_text", make_file(R"({} {})", ""), {"malformed JSON header"});
}

TEST(Safetensors, RejectsHeaderThatIsNotAnObject) {
  expect_bad_file("array", make_file("[1, 2]", ""), {"header must be a JSON object", "array"});
}

TEST(Safetensors, RejectsEntryThatIsNotAnObject) {
  expect_bad_file("entry", make_file(R"({"a": 5})", ""), {"tensor 'a'", "entry must be a JSON object"});
}

TEST(Safetensors, RejectsEntryMissingAField) {
  expect_bad_file("no_dtype", make_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                  {"tensor 'a'", "missing 'dtype'"});
  expect_bad_file("no_shape", make_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", std::string(8, '\0')),
                  {"tensor 'a'", "missing 'shape'"});
  expect_bad_file("no_offsets", make_file(R"({"a":{"dtype":"F32","shape":[2]}})", std::string(8, '\0')),
                  {"tensor 'a'", "missing 'data_offsets'"});
}

TEST(Safetensors, RejectsEntryFieldsOfTheWrongJsonType) {
  const std::string d8(8, '\0');
  expect_bad_file("dtype_num", make_file(R"({"a":{"dtype":5,"shape":[2],"data_offsets":[0,8]}})", d8),
                  {"tensor 'a'", "'dtype' must be a string"});
  expect_bad_file("shape_str", make_file(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", d8),
                  {"tensor 'a'", "'shape' must be an array of integers"});
  expect_bad_file("shape_float", make_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8),
                  {"tensor 'a'", "dimension must be an integer"});
  expect_bad_file("offsets_one", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", d8),
                  {"tensor 'a'", "'data_offsets' must be an array [begin, end]"});
  expect_bad_file("offsets_obj", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":{"b":0}}})", d8),
                  {"tensor 'a'", "'data_offsets' must be an array [begin, end]"});
  expect_bad_file("offsets_str", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}})", d8),
                  {"tensor 'a'", "data offset must be an integer"});
}

TEST(Safetensors, RejectsUnknownDTypeNames) {
  expect_bad_file("bool", make_file(R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\1\0", 2)),
                  {"tensor 'a'", "unknown or unsupported dtype 'BOOL'", "F8_E4M3"});
  expect_bad_file("lower", make_file(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                  {"tensor 'a'", "unknown or unsupported dtype 'f32'"});
}

TEST(Safetensors, RejectsNegativeDimensions) {
  expect_bad_file("negdim", make_file(R"({"a":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,0]}})", ""),
                  {"tensor 'a'", "negative dimension -1"});
}

TEST(Safetensors, RejectsDataOffsetsOutOfRangeOrReversed) {
  const std::string d8(8, '\0');
  expect_bad_file("reversed", make_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", d8),
                  {"tensor 'a'", "begin 4 > end 0"});
  expect_bad_file("past_data", make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8),
                  {"tensor 'a'", "out of range of the 8-byte data section"});
  expect_bad_file("negative", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", d8),
                  {"tensor 'a'", "negative data offset -8"});
  expect_bad_file("too_big", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", d8),
                  {"tensor 'a'", "too large"});
}

TEST(Safetensors, RejectsTensorsThatDoNotTileTheDataSection) {
  const std::string two = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)";
  expect_bad_file("gap", make_file(two + R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", std::string(12, '\0')),
                  {"tensor 'b'", "starts at 8", "gap after byte 4"});
  expect_bad_file("overlap",
                  make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            std::string(12, '\0')),
                  {"tensor 'b'", "overlap tensor 'a'"});
  expect_bad_file("not_at_zero", make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')),
                  {"tensor 'a'", "starts at 4", "gap after byte 0"});
  expect_bad_file("trailing", make_file(two.substr(0, two.size() - 1) + "}", std::string(8, '\0')),
                  {"tensors cover 4 of the 8 bytes"});
  expect_bad_file("no_tensors", make_file("{}", "xx"), {"tensors cover 0 of the 2 bytes"});
}

TEST(Safetensors, RejectsByteSizeThatDoesNotMatchTheShape) {
  expect_bad_file("size", make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
                  {"tensor 'a'", "span 8 bytes but shape [3] of F32 needs 12"});
  // numel fits int64 but times the element size does not, and numel itself overflows.
  expect_bad_file("bytes_overflow",
                  make_file(R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", ""),
                  {"tensor 'a'", "byte size of shape", "overflows"});
  expect_bad_file("numel_overflow",
                  make_file(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}})", ""),
                  {"tensor 'a'", "element count of shape", "overflows"});
}

TEST(Safetensors, RejectsMetadataThatIsNotStrings) {
  expect_bad_file("meta_int", make_file(R"({"__metadata__":{"k":1},)" + kEntryA + "}", std::string(8, '\0')),
                  {"__metadata__ value of 'k' must be a string"});
  expect_bad_file("meta_array", make_file(R"({"__metadata__":["k"],)" + kEntryA + "}", std::string(8, '\0')),
                  {"__metadata__ must be an object of strings"});
}

TEST(Safetensors, RejectsDuplicateNames) {
  expect_bad_file("dup", make_file("{" + kEntryA + "," + kEntryA + "}", std::string(8, '\0')),
                  {"duplicate tensor name 'a'"});
  expect_bad_file("dup_key", make_file(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                       std::string(8, '\0')),
                  {"duplicate JSON key 'dtype'"});
}

}  // namespace
}  // namespace lowbit::io
