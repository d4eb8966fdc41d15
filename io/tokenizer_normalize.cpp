// Normalizers and decoders of io/tokenizer.h: Unicode normalization forms through utf8proc,
// Lowercase / Strip / Prepend / Replace, the U+FFFD replacement of invalid UTF-8, and the
// decoder chain (Metaspace, ByteFallback, Fuse, Strip, Replace) on token strings.
#include <utf8proc.h>

#include <cctype>
#include <cstdlib>

#include "lowbit/engine/error.h"
#include "lowbit/io/tokenizer_impl.h"

namespace lowbit::tok {

namespace {

// Length of the longest prefix of s[i..] that can start a valid sequence (Unicode's "maximal
// subpart"), at least 1; `valid` says whether it is a whole code point.
size_t maximal_subpart(std::string_view s, size_t i, bool& valid) {
  const auto c = uint8_t(s[i]);
  valid = false;
  if (c < 0x80) {
    valid = true;
    return 1;
  }
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  size_t k = 1;
  for (; k <= need; ++k) {
    if (i + k >= s.size()) return k;
    const auto d = uint8_t(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (d < l || d > h) return k;
  }
  valid = true;
  return k;
}

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";  // U+FFFD

bool is_white_space(uint32_t cp) {
  // Unicode's White_Space property (PropList.txt), which Rust's char::is_whitespace follows.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

std::vector<uint32_t> code_points(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t len;
    detail::next_cp(s, i, cp, len);
    out.push_back(cp);
    i += len;
  }
  return out;
}

void replace_all(std::string& s, const std::string& pattern, const detail::Regex* re, const std::string& content) {
  std::string out;
  size_t prev = 0;
  if (re) {
    size_t from = 0, mb, me;
    while (from <= s.size() && re->find(s.data(), s.size(), from, mb, me)) {
      if (me == mb) {  // empty matches replace nothing
        if (mb >= s.size()) break;
        uint32_t cp;
        size_t len;
        detail::next_cp(s, mb, cp, len);
        from = mb + len;
        continue;
      }
      out.append(s, prev, mb - prev);
      out += content;
      prev = from = me;
    }
  } else {
    if (pattern.empty()) return;
    for (size_t at = s.find(pattern); at != std::string::npos; at = s.find(pattern, prev)) {
      out.append(s, prev, at - prev);
      out += content;
      prev = at + pattern.size();
    }
  }
  if (prev == 0 && out.empty()) return;
  out.append(s, prev, std::string::npos);
  s.swap(out);
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    bool valid;
    const size_t n = maximal_subpart(s, i, valid);
    if (!valid) return false;
    i += n;
  }
  return true;
}

std::string replace_invalid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    bool valid;
    const size_t n = maximal_subpart(s, i, valid);
    if (valid) out.append(s.substr(i, n));
    else out += kReplacementChar;
    i += n;
  }
  return out;
}

namespace detail {

void Impl::build_normalizers_and_decoders() {
  for (size_t i = 0; i < data.normalizers.size(); ++i) {
    const NormalizerStep& n = data.normalizers[i];
    normalizer_regex.push_back(n.kind == NormalizerStep::Kind::Replace && n.is_regex
                                   ? std::make_unique<Regex>(n.pattern, false,
                                                             where(source) + "normalizer[" + std::to_string(i) + "].pattern")
                                   : nullptr);
  }
  for (size_t i = 0; i < data.decoders.size(); ++i) {
    const DecoderStep& d = data.decoders[i];
    if (d.kind == DecoderStep::Kind::Strip || d.kind == DecoderStep::Kind::Metaspace) {
      uint32_t cp;
      size_t len;
      LOWBIT_CHECK(!d.content.empty() && next_cp(d.content, 0, cp, len) && len == d.content.size(), where(source),
                   "decoder[", i, "]: expected one character, got '", d.content, "'");
    }
  }
  const bool decoder_byte_level = data.decoders.size() == 1 && data.decoders[0].kind == DecoderStep::Kind::ByteLevel;
  bool any_byte_level = false;
  for (const DecoderStep& d : data.decoders) any_byte_level |= d.kind == DecoderStep::Kind::ByteLevel;
  LOWBIT_CHECK(byte_level == decoder_byte_level && (decoder_byte_level || !any_byte_level), where(source),
               "decoder: ", byte_level ? "a ByteLevel pre-tokenizer needs the ByteLevel decoder alone"
                                       : "the ByteLevel decoder needs the ByteLevel pre-tokenizer");
}

void Impl::normalize(std::string& s) const {
  using K = NormalizerStep::Kind;
  for (size_t i = 0; i < data.normalizers.size(); ++i) {
    const NormalizerStep& n = data.normalizers[i];
    switch (n.kind) {
      case K::NFC:
      case K::NFD:
      case K::NFKC:
      case K::NFKD: {
        if (s.empty()) break;
        int opts = UTF8PROC_STABLE;
        opts |= (n.kind == K::NFC || n.kind == K::NFKC) ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
        if (n.kind == K::NFKC || n.kind == K::NFKD) opts |= UTF8PROC_COMPAT;
        utf8proc_uint8_t* out = nullptr;
        const utf8proc_ssize_t len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                                  utf8proc_ssize_t(s.size()), &out, utf8proc_option_t(opts));
        LOWBIT_CHECK(len >= 0, where(source), "normalizer[", i, "]: ", utf8proc_errmsg(len));
        s.assign(reinterpret_cast<const char*>(out), size_t(len));
        std::free(out);
        break;
      }
      case K::Lowercase: {
        std::string out;
        out.reserve(s.size());
        for (uint32_t cp : code_points(s)) {
          if (cp == 0x130) {  // the one unconditional multi-character lowercase mapping
            out += "i\xCC\x87";
            continue;
          }
          out += utf8_encode(uint32_t(utf8proc_tolower(utf8proc_int32_t(cp))));
        }
        s.swap(out);
        break;
      }
      case K::Strip: {
        size_t b = 0, e = s.size();
        while (n.strip_left && b < e) {
          uint32_t cp;
          size_t len;
          next_cp(s, b, cp, len);
          if (!is_white_space(cp)) break;
          b += len;
        }
        while (n.strip_right && e > b) {
          size_t k = e - 1;
          while (k > b && (uint8_t(s[k]) & 0xC0) == 0x80) --k;
          uint32_t cp;
          size_t len;
          next_cp(s, k, cp, len);
          if (!is_white_space(cp)) break;
          e = k;
        }
        s = s.substr(b, e - b);
        break;
      }
      case K::Prepend:
        if (!s.empty()) s.insert(0, n.content);
        break;
      case K::Replace:
        replace_all(s, n.pattern, normalizer_regex[i].get(), n.content);
        break;
    }
  }
}

std::string Impl::decode_tokens(std::vector<std::string> tokens) const {
  using K = DecoderStep::Kind;
  for (size_t di = 0; di < data.decoders.size(); ++di) {
    const DecoderStep& d = data.decoders[di];
    switch (d.kind) {
      case K::ByteLevel:
        break;  // rejected at load time without the ByteLevel pre-tokenizer
      case K::Replace:
        for (std::string& t : tokens) replace_all(t, d.pattern, nullptr, d.content);
        break;
      case K::Fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case K::ByteFallback: {
        // Runs of <0xXX> tokens become their bytes when those are valid UTF-8, else one U+FFFD each.
        std::vector<std::string> out;
        std::string bytes;
        size_t run = 0;
        auto flush = [&] {
          if (run == 0) return;
          if (is_valid_utf8(bytes)) {
            out.push_back(bytes);
          } else {
            for (size_t k = 0; k < run; ++k) out.emplace_back(kReplacementChar);
          }
          bytes.clear();
          run = 0;
        };
        for (std::string& t : tokens) {
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(uint8_t(t[3])) &&
              std::isxdigit(uint8_t(t[4]))) {
            const long v = std::strtol(t.substr(3, 2).c_str(), nullptr, 16);
            bytes += char(v);
            ++run;
            continue;
          }
          flush();
          out.push_back(std::move(t));
        }
        flush();
        tokens.swap(out);
        break;
      }
      case K::Strip: {
        const std::vector<uint32_t> c = code_points(d.content);
        for (std::string& t : tokens) {
          std::vector<uint32_t> cps = code_points(t);
          size_t b = 0, e = cps.size();
          for (int k = 0; k < d.start && b < e && cps[b] == c[0]; ++k) ++b;
          for (int k = 0; k < d.stop && e > b && cps[e - 1] == c[0]; ++k) --e;
          std::string out;
          for (size_t k = b; k < e; ++k) out += utf8_encode(cps[k]);
          t.swap(out);
        }
        break;
      }
      case K::Metaspace:
        // The reference drops every replacement character of the first token unless the
        // scheme is "never", and turns the others into spaces.
        for (size_t i = 0; i < tokens.size(); ++i) {
          const bool drop = i == 0 && d.prepend_scheme != PrependScheme::Never;
          std::string out;
          const std::string& t = tokens[i];
          for (size_t at = 0; at < t.size();) {
            if (t.compare(at, d.content.size(), d.content) == 0) {
              if (!drop) out += ' ';
              at += d.content.size();
            } else {
              out += t[at++];
            }
          }
          tokens[i].swap(out);
        }
        break;
    }
  }
  std::string all;
  for (const std::string& t : tokens) all += t;
  return all;
}

}  // namespace detail
}  // namespace lowbit::tok
