// SentencePiece tokenizer.model files for io/tokenizer.h: loaded and decoded by libsentencepiece
// itself, whose encoding is the reference for such checkpoints. The pieces, scores and types are
// copied into TokenizerData for GGUF and tokenizer_config.json export.
//
// Encoding: libsentencepiece's BPE runs at ~3 MB/s on one core. A BPE model with the identity
// normalizer (Llama-2's) is therefore also encoded by the char-level BPE of tokenizer_bpe.cpp,
// set up to run SentencePiece's algorithm: ' ' -> '▁' and the dummy-prefix '▁', then merge the
// adjacent pair whose concatenation is a normal piece of the highest score, leftmost on ties
// (every pair spelling one piece shares its score's rank), unknown characters as <0xXX> bytes.
// That path is used only when a few ModelProto fields say the model is of this kind and it
// encodes a set of probe texts exactly as libsentencepiece does; otherwise libsentencepiece
// encodes.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <map>

#include "lowbit/engine/error.h"
#include "lowbit/io/tokenizer_impl.h"

namespace lowbit::tok {
namespace detail {

namespace {

// The ModelProto fields the fast path depends on (sentencepiece_model.proto), read from the
// protobuf wire format. `ok` is false when the bytes do not parse as expected.
struct SpModelInfo {
  bool ok = true;
  int64_t model_type = 1;  // TrainerSpec.model_type: 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
  bool byte_fallback = false, treat_whitespace_as_suffix = false;
  std::string normalizer_name;
  bool precompiled_charsmap = false, add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
  bool special_piece_types = false;  // USER_DEFINED (4) or UNUSED (5) pieces
};

bool varint(std::string_view s, size_t& i, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && i < s.size(); shift += 7) {
    const auto b = uint8_t(s[i++]);
    v |= uint64_t(b & 0x7F) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// Calls f(field, wire_type, value, bytes) for each field of a message; false on malformed input.
template <class F>
bool for_each_field(std::string_view msg, F&& f) {
  for (size_t i = 0; i < msg.size();) {
    uint64_t key, v = 0;
    if (!varint(msg, i, key)) return false;
    const int wire = int(key & 7);
    std::string_view bytes;
    if (wire == 0) {
      if (!varint(msg, i, v)) return false;
    } else if (wire == 1 || wire == 5) {
      const size_t n = wire == 1 ? 8 : 4;
      if (i + n > msg.size()) return false;
      i += n;
    } else if (wire == 2) {
      if (!varint(msg, i, v) || v > msg.size() - i) return false;
      bytes = msg.substr(i, size_t(v));
      i += size_t(v);
    } else {
      return false;
    }
    f(key >> 3, wire, v, bytes);
  }
  return true;
}

SpModelInfo read_model_info(std::string_view model) {
  SpModelInfo m;
  m.ok = for_each_field(model, [&](uint64_t field, int wire, uint64_t, std::string_view bytes) {
    if (wire != 2) return;
    if (field == 1) {  // SentencePiece { piece = 1; score = 2; type = 3 }
      m.ok &= for_each_field(bytes, [&](uint64_t f, int w, uint64_t v, std::string_view) {
        if (f == 3 && w == 0 && (v == 4 || v == 5)) m.special_piece_types = true;
      });
    } else if (field == 2) {  // TrainerSpec
      m.ok &= for_each_field(bytes, [&](uint64_t f, int w, uint64_t v, std::string_view) {
        if (w != 0) return;
        if (f == 3) m.model_type = int64_t(v);
        if (f == 24) m.treat_whitespace_as_suffix = v != 0;
        if (f == 35) m.byte_fallback = v != 0;
      });
    } else if (field == 3) {  // NormalizerSpec
      m.ok &= for_each_field(bytes, [&](uint64_t f, int w, uint64_t v, std::string_view b) {
        if (f == 1 && w == 2) m.normalizer_name = std::string(b);
        if (f == 2 && w == 2) m.precompiled_charsmap = !b.empty();
        if (f == 3 && w == 0) m.add_dummy_prefix = v != 0;
        if (f == 4 && w == 0) m.remove_extra_whitespaces = v != 0;
        if (f == 5 && w == 0) m.escape_whitespaces = v != 0;
      });
    }
  });
  return m;
}

// Texts the fast path must encode exactly as libsentencepiece before it is used.
const std::vector<std::string>& probe_texts() {
  static const std::vector<std::string> p = {
      "Hello world, this is a test.", "  two leading spaces", "trailing spaces   ", "tabs\tand\nnewlines\r\n",
      "multiple    inner     spaces", "digits 1234567890 and 3.14159", "Caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m",
      "\xE6\x88\x91\xE8\x83\xBD\xE5\x90\x9E\xE4\xB8\x8B\xE7\x8E\xBB\xE7\x92\x83",  // CJK
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 emoji",
      std::string("nul\0byte", 8), "\xEF\xAC\x81 \xEF\xBC\xA1\xEF\xBC\xA2", "<s>literal</s> <unk>", "\xE2\x96\x81" "already",
      " ", "", "a", "\xE2\x80\xA8line\xC2\xA0sep", "I'm you're DON'T", "=====-----+++++", "x\xCC\x81y\xCC\x88"};
  return p;
}

}  // namespace

// Here, where SentencePieceProcessor is a complete type (the constructor may destroy `sp`).
Impl::Impl(TokenizerData d, std::string src) : source(std::move(src)), data(std::move(d)) {
  if (data.is_sentencepiece()) {
    build_sentencepiece();
    apply_config();
    return;
  }
  byte_level = data.is_byte_level();
  sanitize = !byte_level || !data.normalizers.empty();
  added = data.added_tokens;
  build_model();
  build_pre_tokenizer();
  build_normalizers_and_decoders();
  build_post_processor();
  apply_config();
}

Impl::~Impl() = default;

void Impl::build_sentencepiece() {
  const std::string w = where(source);
  auto proc = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = proc->LoadFromSerializedProto(data.sentencepiece_model);
  LOWBIT_CHECK(status.ok(), w, "not a SentencePiece model: ", status.ToString());
  const int n = proc->GetPieceSize();
  LOWBIT_CHECK(n > 0, w, "the SentencePiece model has no pieces");
  data.vocab.clear();
  data.scores.assign(size_t(n), 0.0f);
  data.piece_types.assign(size_t(n), TokenizerData::PieceType::Normal);
  id_text.assign(size_t(n), {});
  id_raw.assign(size_t(n), {});
  id_kind.assign(size_t(n), 1);
  using P = TokenizerData::PieceType;
  for (int id = 0; id < n; ++id) {
    const std::string& piece = proc->IdToPiece(id);
    data.vocab.emplace_back(piece, id);
    data.scores[id] = proc->GetScore(id);
    P type = P::Normal;
    if (proc->IsUnknown(id)) type = P::Unknown;
    else if (proc->IsControl(id)) type = P::Control;
    else if (proc->IsUnused(id)) type = P::Unused;
    else if (proc->IsByte(id)) type = P::Byte;
    data.piece_types[id] = type;
    id_text[id] = piece;
    id_raw[id] = piece;
    if (type == P::Unknown || type == P::Control) id_kind[id] = 3;  // as transformers' LlamaTokenizer
    file_vocab.emplace(piece, id);
  }
  if (proc->unk_id() >= 0) data.unk_token = proc->IdToPiece(proc->unk_id());
  // transformers' LlamaTokenizer default: add_bos_token true, add_eos_token false.
  if (proc->bos_id() >= 0) template_prefix = {proc->bos_id()};
  sp = std::move(proc);
  build_sentencepiece_bpe();
}

void Impl::build_sentencepiece_bpe() {
  const SpModelInfo info = read_model_info(data.sentencepiece_model);
  if (data.sentencepiece_library_encoder || !info.ok || info.model_type != 2 || info.normalizer_name != "identity" || info.precompiled_charsmap ||
      info.remove_extra_whitespaces || !info.escape_whitespaces || info.treat_whitespace_as_suffix ||
      info.special_piece_types)
    return;
  using P = TokenizerData::PieceType;
  constexpr std::string_view kSpace = "\xE2\x96\x81";
  TokenizerData t;
  t.vocab = data.vocab;
  t.unk_token = data.unk_token;
  t.byte_fallback = info.byte_fallback;
  t.pre_tokenizer.final_step = PreTokenizerConfig::Final::None;
  if (info.add_dummy_prefix) {
    NormalizerStep prepend;
    prepend.kind = NormalizerStep::Kind::Prepend;
    prepend.content = kSpace;
    t.normalizers.push_back(prepend);
  }
  NormalizerStep replace;
  replace.kind = NormalizerStep::Kind::Replace;
  replace.pattern = " ";
  replace.content = kSpace;
  t.normalizers.push_back(replace);
  t.decoders.clear();
  // Pairs of normal pieces whose concatenation is a normal piece, by that piece's score.
  std::map<std::string_view, int32_t> normal;
  for (const auto& [piece, id] : data.vocab)
    if (data.piece_types[size_t(id)] == P::Normal) normal.emplace(piece, id);
  struct Merge {
    float score;
    int32_t id;
    std::string left, right;
  };
  std::vector<Merge> merges;
  for (const auto& [piece, id] : normal) {
    for (size_t cut = 1; cut < piece.size(); ++cut) {
      if ((uint8_t(piece[cut]) & 0xC0) == 0x80) continue;  // inside a UTF-8 sequence
      if (normal.count(piece.substr(0, cut)) && normal.count(piece.substr(cut)))
        merges.push_back({data.scores[size_t(id)], id, std::string(piece.substr(0, cut)), std::string(piece.substr(cut))});
    }
  }
  std::stable_sort(merges.begin(), merges.end(),
                   [](const Merge& a, const Merge& b) { return a.score != b.score ? a.score > b.score : a.id < b.id; });
  for (const Merge& m : merges) t.merges.emplace_back(m.left, m.right);
  auto fast = std::make_unique<Impl>(std::move(t), source);
  // Equal scores are equal ranks: SentencePiece then takes the leftmost pair.
  std::vector<MergeTable::Entry> entries;
  int32_t rank = -1;
  for (size_t i = 0; i < merges.size(); ++i) {
    if (i == 0 || merges[i].score != merges[i - 1].score) ++rank;
    MergeTable::Entry e;
    e.key = (uint64_t(uint32_t(fast->lookup(merges[i].left))) << 32) | uint32_t(fast->lookup(merges[i].right));
    e.rank = rank;
    e.id = merges[i].id;
    entries.push_back(e);
  }
  fast->merges.build(entries);
  for (const std::string& text : probe_texts()) {
    std::vector<int> want;
    if (!sp->Encode(text, &want).ok()) return;
    std::vector<int32_t> got;
    fast->encode_text(text, got);
    if (!std::equal(want.begin(), want.end(), got.begin(), got.end())) return;
  }
  sp_bpe = std::move(fast);
}

void Impl::sp_encode(std::string_view text, std::vector<int32_t>& out) const {
  // Invalid UTF-8 as for every non-byte-level tokenizer (libsentencepiece's own replacement
  // differs between its versions).
  std::string clean;
  if (!is_valid_utf8(text)) {
    clean = replace_invalid_utf8(text);
    text = clean;
  }
  if (sp_bpe) {
    sp_bpe->encode_text(text, out);
    return;
  }
  std::vector<int> ids;
  const auto status = sp->Encode(text, &ids);
  LOWBIT_CHECK(status.ok(), where(source), "encode: ", status.ToString());
  out.insert(out.end(), ids.begin(), ids.end());
}

std::string Impl::sp_decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<int> keep;
  keep.reserve(ids.size());
  for (int32_t id : ids)
    if (!(skip_special_tokens && id_kind[id] == 3)) keep.push_back(id);
  std::string out;
  const auto status = sp->Decode(keep, &out);
  LOWBIT_CHECK(status.ok(), where(source), "decode: ", status.ToString());
  return out;
}

}  // namespace detail

std::string Tokenizer::encoder_name() const {
  if (impl_->sp) return impl_->sp_bpe ? "BPE (SentencePiece model)" : "libsentencepiece";
  return impl_->byte_level ? "byte-level BPE" : "BPE";
}

Tokenizer Tokenizer::from_sentencepiece(std::string model_bytes, const std::string& source, TokenizerConfig config) {
  LOWBIT_CHECK(!model_bytes.empty(), detail::where(source), "the SentencePiece model file is empty");
  TokenizerData d;
  d.sentencepiece_model = std::move(model_bytes);
  d.config = std::move(config);
  return Tokenizer(std::move(d), source);
}

}  // namespace lowbit::tok
