// Tile decoding (tile_decode.h): the per-element arithmetic is dequant_code (scaled formats)
// and decode_block (block formats), the functions dequantize() runs, so a decoded tile is
// dequantize()'s values bit for bit (tests/quant/scaled_matmul_test.cpp checks every preset).
#include "lowbit/quant/tile_decode.h"

#include <array>
#include <cmath>
#include <cstring>

#include "lowbit/quant/block_codecs.h"
#include "lowbit/quant/scale_groups.h"

namespace lowbit::quant::detail {

namespace {

bool nibble_format(Format f) {
  return f == Format::int4 || f == Format::uint4 || f == Format::nvfp4 || f == Format::mxfp4 ||
         f == Format::gguf_q4_0;
}

DType expected_code_dtype(Format f) {
  switch (f) {
    case Format::int8:
    case Format::gguf_q8_0: return DType::i8;
    case Format::fp8_e4m3:
    case Format::mxfp8: return DType::fp8_e4m3;
    case Format::fp8_e5m2: return DType::fp8_e5m2;
    default: return DType::u8;
  }
}

DType expected_scale_dtype(Format f) {
  switch (f) {
    case Format::nvfp4: return DType::fp8_e4m3;
    case Format::mxfp4:
    case Format::mxfp8: return DType::u8;
    case Format::gguf_q4_0:
    case Format::gguf_q8_0: return DType::f16;
    default: return DType::f32;
  }
}

// 256-entry tables of the fp8 decoders (built from the same scalar codecs).
struct Fp8Tables {
  std::array<float, 256> e4m3{}, e5m2{};
  Fp8Tables() {
    for (int b = 0; b < 256; ++b) {
      e4m3[static_cast<size_t>(b)] = fp8_e4m3_bits_to_f32(static_cast<uint8_t>(b));
      e5m2[static_cast<size_t>(b)] = fp8_e5m2_bits_to_f32(static_cast<uint8_t>(b));
    }
  }
};
const Fp8Tables& fp8_tables() {
  static const Fp8Tables t;
  return t;
}

// One run of `len` elements starting at flat index i, all in one scale group -> out (len).
template <Kind K>
void decode_run(Format f, const uint8_t* cp, int64_t i, int64_t len, ScaledParams p, float* out) {
  switch (f) {
    case Format::int8: {
      const auto* c = reinterpret_cast<const int8_t*>(cp) + i;
      for (int64_t t = 0; t < len; ++t) out[t] = dequant_code(K, p, static_cast<float>(c[t]));
      return;
    }
    case Format::int4:
    case Format::uint4: {
      const bool sgn = f == Format::int4;
      for (int64_t t = 0; t < len; ++t) {
        const int64_t e = i + t;
        const int nib = (cp[e >> 1] >> (4 * (e & 1))) & 0xF;
        const int v = sgn && nib >= 8 ? nib - 16 : nib;
        out[t] = dequant_code(K, p, static_cast<float>(v));
      }
      return;
    }
    default: {  // fp8
      const float* lut = f == Format::fp8_e5m2 ? fp8_tables().e5m2.data() : fp8_tables().e4m3.data();
      for (int64_t t = 0; t < len; ++t) out[t] = dequant_code(K, p, lut[cp[i + t]]);
      return;
    }
  }
}

using RunFn = void (*)(Format, const uint8_t*, int64_t, int64_t, ScaledParams, float*);

RunFn run_fn(Kind k) {
  switch (k) {
    case Kind::int_torchao_sym: return decode_run<Kind::int_torchao_sym>;
    case Kind::int_torchao_asym: return decode_run<Kind::int_torchao_asym>;
    case Kind::int_modelopt: return decode_run<Kind::int_modelopt>;
    case Kind::uint4_float_zero: return decode_run<Kind::uint4_float_zero>;
    case Kind::fp8_torchao: return decode_run<Kind::fp8_torchao>;
    case Kind::fp8_modelopt: return decode_run<Kind::fp8_modelopt>;
  }
  return nullptr;
}

// Unpacks one block's storage bytes into one code per element (layouts of qtensor.h).
void unpack_codes(Format f, const uint8_t* src, int bs, uint8_t* code) {
  if (f == Format::gguf_q4_0) {  // byte j = element j (low) | element j + 16 (high)
    for (int j = 0; j < bs / 2; ++j) {
      code[j] = src[j] & 0xF;
      code[j + bs / 2] = static_cast<uint8_t>(src[j] >> 4);
    }
  } else if (nibble_format(f)) {  // element 2j low nibble, 2j + 1 high
    for (int j = 0; j < bs / 2; ++j) {
      code[2 * j] = src[j] & 0xF;
      code[2 * j + 1] = static_cast<uint8_t>(src[j] >> 4);
    }
  } else {
    std::memcpy(code, src, static_cast<size_t>(bs));
  }
}

}  // namespace

int64_t check_qtensor(const QTensor& q, const char* op) {
  const Format f = q.spec.format;
  LOWBIT_CHECK(!q.shape.empty() && shape_numel(q.shape) > 0, op, ": empty quantized tensor of shape ",
               shape_str(q.shape));
  const int64_t K = q.shape.back();
  Shape cs = q.shape;
  if (nibble_format(f)) {
    LOWBIT_CHECK(K % 2 == 0, op, ": ", format_name(f), " needs an even last dim, got ", shape_str(q.shape));
    cs.back() /= 2;
  }
  LOWBIT_CHECK(q.codes.defined() && q.codes.device().is_cpu() && q.codes.dtype() == expected_code_dtype(f) &&
                   q.codes.shape() == cs && q.codes.is_contiguous(),
               op, ": ", format_name(f), " codes must be a contiguous CPU ", expected_code_dtype(f), " tensor of shape ",
               shape_str(cs), ", got ", q.codes.defined() ? q.codes.str() : "undefined");
  Shape ss;
  if (is_block_format(f)) {
    const int64_t bs = format_block_size(f);
    LOWBIT_CHECK(K % bs == 0, op, ": ", format_name(f), " needs the last dim to be a multiple of ", bs, ", got ",
                 shape_str(q.shape));
    ss = q.shape;
    ss.back() /= bs;
  } else {
    ss = scale_grid_shape(q.shape, q.spec);
  }
  LOWBIT_CHECK(q.scales.defined() && q.scales.device().is_cpu() && q.scales.dtype() == expected_scale_dtype(f) &&
                   q.scales.shape() == ss && q.scales.is_contiguous(),
               op, ": ", format_name(f), " scales must be a contiguous CPU ", expected_scale_dtype(f),
               " tensor of shape ", shape_str(ss), ", got ", q.scales.defined() ? q.scales.str() : "undefined");
  const bool zp = !is_block_format(f) && (kind_of(q.spec) == Kind::int_torchao_asym || f == Format::uint4);
  if (zp)
    LOWBIT_CHECK(q.zero_points.defined() && q.zero_points.device().is_cpu() && q.zero_points.dtype() == DType::f32 &&
                     q.zero_points.shape() == ss && q.zero_points.is_contiguous(),
                 op, ": ", format_name(f), " zero points must be a contiguous CPU f32 tensor of shape ", shape_str(ss),
                 ", got ", q.zero_points.defined() ? q.zero_points.str() : "undefined");
  if (f == Format::nvfp4)
    LOWBIT_CHECK(std::isfinite(q.global_scale) && q.global_scale >= 0.0f, op,
                 ": nvfp4 global_scale must be finite and >= 0, got ", q.global_scale);
  return K;
}

int64_t tile_k_align(const QTensor& q) {
  if (is_block_format(q.spec.format)) return format_block_size(q.spec.format);
  return nibble_format(q.spec.format) ? 2 : 1;
}

void decode_tile(const QTensor& q, int64_t r0, int64_t r1, int64_t k0, int64_t k1, float* out, int64_t ld) {
  const Format f = q.spec.format;
  const int64_t K = q.shape.back();
  const auto* cp = static_cast<const uint8_t*>(q.codes.raw_data());
  if (is_block_format(f)) {
    const int bs = block_size_of(f);
    const int64_t block_bytes = nibble_format(f) ? bs / 2 : bs;
    const int64_t kb = K / bs;
    const bool f16_scale = f == Format::gguf_q4_0 || f == Format::gguf_q8_0;
    const auto* s8 = static_cast<const uint8_t*>(q.scales.raw_data());
    const auto* s16 = static_cast<const uint16_t*>(q.scales.raw_data());
    // codes (rows, kb, block_bytes), scales (rows, kb) -> out (r1 - r0, k1 - k0)
    for (int64_t r = r0; r < r1; ++r) {
      float* o = out + (r - r0) * ld;
      for (int64_t b = k0 / bs; b < k1 / bs; ++b) {
        const int64_t blk = r * kb + b;
        uint8_t code[kMxBlock];
        unpack_codes(f, cp + blk * block_bytes, bs, code);
        const uint16_t s = f16_scale ? s16[blk] : s8[blk];
        decode_block(f, code, s, q.global_scale, o + (b * bs - k0));
      }
    }
    return;
  }
  const GroupLayout L = group_layout(q.shape, q.spec);
  const float* sp = q.scales.data<float>();
  const float* zp = q.zero_points.defined() ? q.zero_points.data<float>() : nullptr;
  const RunFn run = run_fn(kind_of(q.spec));
  for (int64_t r = r0; r < r1; ++r) {
    float* o = out + (r - r0) * ld - k0;
    int64_t i = r * K + k0;
    const int64_t end = r * K + k1;
    while (i < end) {
      int64_t g, len;
      if (L.block) {  // (lead, R, C) tiles of br x bc; a run ends at the tile's column edge
        const int64_t row = i / L.C, col = i % L.C;
        const int64_t l = row / L.R, rl = row % L.R;
        g = (l * L.nrb + rl / L.br) * L.ncb + col / L.bc;
        len = std::min(L.bc - col % L.bc, end - i);
      } else {  // (A, G, B): a run ends where b wraps to the next group
        const int64_t b = i % L.B;
        g = (i / L.B) % L.G;
        len = std::min(L.B - b, end - i);
      }
      ScaledParams p;  // exactly what dequantize() builds: scale and zero point, nothing else
      p.scale = sp[g];
      p.zp = zp ? zp[g] : 0.0f;
      run(f, cp, i, len, p, o + (i - r * K));
      i += len;
    }
  }
}

void decode_codes_transposed(const QTensor& q, int64_t r0, int64_t r1, int64_t k0, int64_t k1, int16_t* out,
                             int64_t ld) {
  const Format f = q.spec.format;
  const int64_t K = q.shape.back();
  const auto* cp = static_cast<const uint8_t*>(q.codes.raw_data());
  LOWBIT_CHECK(f == Format::int8 || f == Format::int4, "decode_codes_transposed: ", format_name(f),
               " has no integer codes");
  // codes (rows, K) -> out (k1 - k0, ld), column r - r0
  for (int64_t r = r0; r < r1; ++r) {
    int16_t* o = out + (r - r0);
    if (f == Format::int8) {
      const auto* c = reinterpret_cast<const int8_t*>(cp) + r * K;
      for (int64_t k = k0; k < k1; ++k) o[(k - k0) * ld] = c[k];
    } else {
      const uint8_t* c = cp + r * (K / 2);
      for (int64_t k = k0; k < k1; k += 2) {
        const int lo = c[k / 2] & 0xF, hi = c[k / 2] >> 4;
        o[(k - k0) * ld] = static_cast<int16_t>(lo >= 8 ? lo - 16 : lo);
        o[(k + 1 - k0) * ld] = static_cast<int16_t>(hi >= 8 ? hi - 16 : hi);
      }
    }
  }
}

KGroups k_groups(const QTensor& q) {
  KGroups g;
  const int64_t K = q.shape.back();
  const int64_t rows = shape_numel(q.shape) / K;
  const QuantSpec& s = q.spec;
  if (is_block_format(s.format)) {
    g = {true, format_block_size(s.format), 1, K / format_block_size(s.format)};
    return g;
  }
  switch (s.granularity) {
    case Granularity::per_tensor: return {true, K, 1, 0};
    case Granularity::per_token: return {true, K, 1, 1};
    case Granularity::per_group: return {true, s.group_size, 1, K / s.group_size};
    case Granularity::per_channel: {
      // One scale per row: the channel axis is the one just before K and every dim before it is 1.
      const auto nd = static_cast<int64_t>(q.shape.size());
      if (nd >= 2 && s.axis == nd - 2 && q.shape[static_cast<size_t>(s.axis)] == rows) return {true, K, 1, 1};
      return g;
    }
    case Granularity::block2d: return {true, s.block_cols, s.block_rows, K / s.block_cols};
  }
  return g;
}

}  // namespace lowbit::quant::detail
