// SentencePiece tokenizer.model files for io/tokenizer.h: loaded, encoded and decoded by
// libsentencepiece itself (its encoding is the reference for such checkpoints). The pieces,
// scores and types are copied into TokenizerData for GGUF and tokenizer_config.json export.
#include <sentencepiece_processor.h>

#include "lowbit/engine/error.h"
#include "lowbit/io/tokenizer_impl.h"

namespace lowbit::tok {
namespace detail {

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
}

void Impl::sp_encode(std::string_view text, std::vector<int32_t>& out) const {
  // Invalid UTF-8 as for every non-byte-level tokenizer (libsentencepiece's own replacement
  // differs between its versions).
  std::string clean;
  if (!is_valid_utf8(text)) {
    clean = replace_invalid_utf8(text);
    text = clean;
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

Tokenizer Tokenizer::from_sentencepiece(std::string model_bytes, const std::string& source, TokenizerConfig config) {
  LOWBIT_CHECK(!model_bytes.empty(), detail::where(source), "the SentencePiece model file is empty");
  TokenizerData d;
  d.sentencepiece_model = std::move(model_bytes);
  d.config = std::move(config);
  return Tokenizer(std::move(d), source);
}

}  // namespace lowbit::tok
