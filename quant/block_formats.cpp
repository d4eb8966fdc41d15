// Block-format codecs and the fused fake-quant kernel (block_formats.h). Every path runs the
// same LOWBIT_HD block functions of block_codecs.h: quantize = block_scale + block_element +
// code_of_element + pack, dequantize = unpack + element_of_code + dequant_element, fake_quant =
// block_scale + block_element + dequant_element in registers, so fake_quant(x) ==
// dequantize(quantize(x)) bit for bit by construction (and by test).
// Blocks are independent, so the OpenMP loops over blocks are deterministic for any thread count.
#include "lowbit/quant/block_formats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "lowbit/quant/block_codecs.h"

namespace lowbit::quant {

namespace {

constexpr int64_t kParallelMin = 16384;  // elements below which the loops stay serial
constexpr int64_t kPiece = 16384;        // elements per task of a whole-tensor reduction

struct Geometry {
  int64_t K = 0;        // last dim
  int64_t nblocks = 0;  // over the whole tensor (blocks never straddle rows: K % bs == 0)
  int bs = 0;
};

Geometry geometry(const Shape& shape, Format f, const char* op) {
  LOWBIT_CHECK(is_block_format(f), op, ": ", format_name(f), " is not a block format");
  LOWBIT_CHECK(!shape.empty(), op, ": ", format_name(f), " needs at least one dim (blocks run along the last)");
  Geometry g;
  g.bs = block_size_of(f);
  g.K = shape.back();
  LOWBIT_CHECK(g.K % g.bs == 0, op, ": ", format_name(f), " needs the last dim to be a multiple of ", g.bs, ", got shape ",
               shape_str(shape));
  g.nblocks = shape_numel(shape) / g.bs;
  return g;
}

Shape scale_shape(const Shape& shape, int bs) {
  Shape s = shape;
  s.back() /= bs;
  return s;
}

// Storage of one format: codes dtype and bytes per block, scale dtype.
DType code_dtype(Format f) {
  switch (f) {
    case Format::mxfp8: return DType::fp8_e4m3;
    case Format::gguf_q8_0: return DType::i8;
    default: return DType::u8;  // packed nibbles
  }
}
bool packed_nibbles(Format f) { return f == Format::nvfp4 || f == Format::mxfp4 || f == Format::gguf_q4_0; }
DType scale_dtype(Format f) {
  switch (f) {
    case Format::nvfp4: return DType::fp8_e4m3;
    case Format::mxfp4:
    case Format::mxfp8: return DType::u8;
    default: return DType::f16;
  }
}
Shape code_shape(const Shape& shape, Format f) {
  Shape s = shape;
  if (packed_nibbles(f)) s.back() /= 2;
  return s;
}

// Unpacked block codes -> storage bytes, and back (one block).
void pack_block(Format f, const uint8_t* code, uint8_t* dst) {
  const int bs = block_size_of(f);
  if (f == Format::gguf_q4_0) {  // ggml: byte j = element j | element j + 16 << 4
    for (int j = 0; j < bs / 2; ++j) dst[j] = static_cast<uint8_t>(code[j] | (code[j + bs / 2] << 4));
  } else if (packed_nibbles(f)) {  // element 2i low nibble, 2i + 1 high
    for (int j = 0; j < bs / 2; ++j) dst[j] = static_cast<uint8_t>(code[2 * j] | (code[2 * j + 1] << 4));
  } else {
    std::memcpy(dst, code, static_cast<size_t>(bs));
  }
}
void unpack_block(Format f, const uint8_t* src, uint8_t* code) {
  const int bs = block_size_of(f);
  if (f == Format::gguf_q4_0) {
    for (int j = 0; j < bs / 2; ++j) {
      code[j] = src[j] & 0xF;
      code[j + bs / 2] = src[j] >> 4;
    }
  } else if (packed_nibbles(f)) {
    for (int j = 0; j < bs / 2; ++j) {
      code[2 * j] = src[j] & 0xF;
      code[2 * j + 1] = src[j] >> 4;
    }
  } else {
    std::memcpy(code, src, static_cast<size_t>(bs));
  }
}

void store_scale(Format f, void* scales, int64_t b, uint16_t s) {
  if (scale_dtype(f) == DType::f16) {
    static_cast<uint16_t*>(scales)[b] = s;
  } else {
    static_cast<uint8_t*>(scales)[b] = static_cast<uint8_t>(s);
  }
}
uint16_t load_scale(Format f, const void* scales, int64_t b) {
  if (scale_dtype(f) == DType::f16) return static_cast<const uint16_t*>(scales)[b];
  return static_cast<const uint8_t*>(scales)[b];
}

template <class T>
void load_block(const T* x, int bs, float* xb) {
  for (int i = 0; i < bs; ++i) xb[i] = convert<float>(x[i]);
}

// max |x| over the finite elements of x: (n) -> its bits. Finite magnitudes order as their bits.
template <class T>
uint32_t finite_amax_bits(const T* x, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t a = f32_bits(convert<float>(x[i])) & 0x7FFFFFFFu;
    const uint32_t f = a & (0u - static_cast<uint32_t>(a < 0x7F800000u));  // a select here would not vectorize
    m = f > m ? f : m;
  }
  return m;
}

// x: (n) -> max |x| over its finite elements, in kPiece-element pieces over the threads.
template <class T>
float finite_amax(const T* x, int64_t n) {
  const int64_t pieces = (n + kPiece - 1) / kPiece;
  uint32_t m = 0;
#pragma omp parallel for schedule(static) reduction(max : m) if (n > kParallelMin)
  for (int64_t c = 0; c < pieces; ++c) {
    const uint32_t pm = finite_amax_bits(x + c * kPiece, std::min(kPiece, n - c * kPiece));
    m = pm > m ? pm : m;
  }
  return f32_from_bits(m);
}

Tensor contiguous_input(const Tensor& x, const char* op) {
  LOWBIT_CHECK(x.defined(), op, ": x is undefined");
  LOWBIT_CHECK(x.device().is_cpu(), op, ": x must be a CPU tensor, got ", x.str());
  const DType d = x.dtype();
  LOWBIT_CHECK(d == DType::f32 || d == DType::bf16 || d == DType::f16 || d == DType::f64, op,
               ": x must be f32, bf16, f16 or f64, got ", d);
  return x.detach().contiguous();
}

// The NVFP4 per-tensor scale: global_amax > 0 is taken as given; <= 0 means max |x| over the
// finite elements of x. A zero amax gives pts = 0 (the tensor quantizes to zeros).
float nvfp4_pts(const Tensor& xc, float global_amax, const char* op) {
  LOWBIT_CHECK(std::isfinite(global_amax), op, ": nvfp4 global_amax must be finite, got ", global_amax);
  float amax = global_amax;
  if (amax <= 0.0f) {
    amax = dispatch_float(xc.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      return finite_amax(xc.data<T>(), xc.numel());
    });
  }
  return nvfp4_tensor_scale(amax);
}

void check_spec(const QuantSpec& spec, const char* op) {
  LOWBIT_CHECK(is_block_format(spec.format), op, ": ", format_name(spec.format), " is not a block format");
  validate(spec);
}

// x: (nblocks, bs) -> y (nblocks, bs), mask (nblocks, bs) or null. kChunk blocks at a time:
// their f32 values and statistics, their scales in one loop over the blocks (vectorized
// across blocks), then each element's value times its block's dequant multiplier.
template <Format F, class T>
void fake_quant_block_range(const T* __restrict x, T* __restrict y, uint8_t* __restrict mask, int64_t nblocks,
                            float pts, MxScaleRule rule) {
  constexpr int bs = block_size_of(F), kChunk = 16;
  const int64_t nchunks = (nblocks + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (nblocks * bs > kParallelMin)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t b0 = c * kChunk;
    const int nb = static_cast<int>(std::min<int64_t>(kChunk, nblocks - b0));
    float xb[kChunk * bs], stat[kChunk], mul[kChunk], ds[kChunk];
    bool finite[kChunk];
    const T* xs = x + b0 * bs;
    for (int b = 0; b < nb; ++b) {
      for (int i = 0; i < bs; ++i) xb[b * bs + i] = convert<float>(xs[b * bs + i]);
      stat[b] = block_stat(F, xb + b * bs, &finite[b]);
    }
    for (int b = 0; b < nb; ++b) {
      const BlockScale s = block_scale_of(F, stat[b], pts, rule);
      mul[b] = s.mul;
      ds[b] = s.ds;
    }
    for (int b = 0; b < nb; ++b) {
      const float* xv = xb + b * bs;
      T* ys = y + (b0 + b) * bs;
      uint8_t* ms = mask ? mask + (b0 + b) * bs : nullptr;
      if (!finite[b]) {
        const float nan_scale = block_dequant_scale(F, nan_scale_bits(F), pts);
        const T poisoned = convert<T>(dequant_element(F, element_of_code(F, zero_code(F)), nan_scale));
        for (int i = 0; i < bs; ++i) ys[i] = poisoned;
        if (ms) std::memset(ms, 0, bs);
        continue;
      }
      for (int i = 0; i < bs; ++i) ys[i] = convert<T>(dequant_element(F, block_element(F, xv[i], mul[b]), ds[b]));
      if (ms)
        for (int i = 0; i < bs; ++i) ms[i] = block_element_kept(F, xv[i], mul[b]);
    }
  }
}

}  // namespace

QTensor quantize_blocks(const Tensor& x, const QuantSpec& spec, float global_amax) {
  constexpr const char* op = "quantize_blocks";
  check_spec(spec, op);
  const Tensor xc = contiguous_input(x, op);
  const Format f = spec.format;
  const Geometry g = geometry(xc.shape(), f, op);
  QTensor q;
  q.spec = spec;
  q.shape = xc.shape();
  q.codes = empty(code_shape(xc.shape(), f), code_dtype(f));
  q.scales = empty(scale_shape(xc.shape(), g.bs), scale_dtype(f));
  const float pts = f == Format::nvfp4 ? nvfp4_pts(xc, global_amax, op) : 1.0f;
  if (f == Format::nvfp4) q.global_scale = pts;
  auto* codes = static_cast<uint8_t*>(q.codes.raw_data());
  void* scales = q.scales.raw_data();
  const int bs = g.bs;
  const int64_t block_bytes = packed_nibbles(f) ? bs / 2 : bs;  // 1-byte codes otherwise
  const MxScaleRule rule = spec.mx_scale;
  dispatch_float(xc.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xc.data<T>();
    // x: (nblocks, bs) -> codes (nblocks, block_bytes), scales (nblocks)
#pragma omp parallel for schedule(static) if (g.nblocks * bs > kParallelMin)
    for (int64_t b = 0; b < g.nblocks; ++b) {
      float xb[kMxBlock];
      uint8_t cb[kMxBlock];
      load_block(xp + b * bs, bs, xb);
      const uint16_t s = encode_block(f, xb, pts, rule, cb, nullptr);
      pack_block(f, cb, codes + b * block_bytes);
      store_scale(f, scales, b, s);
    }
  });
  return q;
}

Tensor dequantize_blocks(const QTensor& q, DType dtype) {
  constexpr const char* op = "dequantize_blocks";
  const Format f = q.spec.format;
  const Geometry g = geometry(q.shape, f, op);
  LOWBIT_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16 || dtype == DType::f64, op,
               ": output dtype must be f32, bf16, f16 or f64, got ", dtype);
  LOWBIT_CHECK(q.codes.defined() && q.codes.device().is_cpu() && q.codes.dtype() == code_dtype(f) &&
                   q.codes.shape() == code_shape(q.shape, f),
               op, ": ", format_name(f), " codes must be a CPU ", code_dtype(f), " tensor of shape ",
               shape_str(code_shape(q.shape, f)), ", got ", q.codes.defined() ? q.codes.str() : "undefined");
  LOWBIT_CHECK(q.scales.defined() && q.scales.device().is_cpu() && q.scales.dtype() == scale_dtype(f) &&
                   q.scales.shape() == scale_shape(q.shape, g.bs),
               op, ": ", format_name(f), " scales must be a CPU ", scale_dtype(f), " tensor of shape ",
               shape_str(scale_shape(q.shape, g.bs)), ", got ", q.scales.defined() ? q.scales.str() : "undefined");
  if (f == Format::nvfp4)
    LOWBIT_CHECK(std::isfinite(q.global_scale) && q.global_scale >= 0.0f, op,
                 ": nvfp4 global_scale must be finite and >= 0, got ", q.global_scale);
  const Tensor codes_c = q.codes.contiguous(), scales_c = q.scales.contiguous();
  const auto* codes = static_cast<const uint8_t*>(codes_c.raw_data());
  const void* scales = scales_c.raw_data();
  const float pts = q.global_scale;
  const int bs = g.bs;
  const int64_t block_bytes = packed_nibbles(f) ? bs / 2 : bs;
  Tensor out = empty(q.shape, DType::f32);
  float* op_ = out.data<float>();
  // codes (nblocks, block_bytes), scales (nblocks) -> out (nblocks, bs)
#pragma omp parallel for schedule(static) if (g.nblocks * bs > kParallelMin)
  for (int64_t b = 0; b < g.nblocks; ++b) {
    uint8_t cb[kMxBlock];
    unpack_block(f, codes + b * block_bytes, cb);
    decode_block(f, cb, load_scale(f, scales, b), pts, op_ + b * bs);
  }
  return dtype == DType::f32 ? out : out.to(dtype);
}

Tensor fake_quant_blocks(const Tensor& x, const QuantSpec& spec, float global_amax, uint8_t* mask) {
  constexpr const char* op = "fake_quant_blocks";
  check_spec(spec, op);
  const Tensor xc = contiguous_input(x, op);
  const Geometry g = geometry(xc.shape(), spec.format, op);
  const float pts = spec.format == Format::nvfp4 ? nvfp4_pts(xc, global_amax, op) : 1.0f;
  Tensor out = empty(xc.shape(), xc.dtype());
  dispatch_float(xc.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xc.data<T>();
    T* yp = out.data<T>();
    auto run = [&](auto format) {
      fake_quant_block_range<decltype(format)::value>(xp, yp, mask, g.nblocks, pts, spec.mx_scale);
    };
    switch (spec.format) {
      case Format::nvfp4: run(std::integral_constant<Format, Format::nvfp4>()); break;
      case Format::mxfp4: run(std::integral_constant<Format, Format::mxfp4>()); break;
      case Format::mxfp8: run(std::integral_constant<Format, Format::mxfp8>()); break;
      case Format::gguf_q4_0: run(std::integral_constant<Format, Format::gguf_q4_0>()); break;
      case Format::gguf_q8_0: run(std::integral_constant<Format, Format::gguf_q8_0>()); break;
      default: break;
    }
  });
  return out;
}

int64_t swizzled_scale_offset(int64_t row, int64_t block_col, int64_t block_cols) {
  LOWBIT_CHECK(block_cols > 0 && row >= 0 && block_col >= 0 && block_col < block_cols,
               "swizzled_scale_offset: (row ", row, ", block_col ", block_col, ") outside a scale matrix with ", block_cols,
               " block columns");
  const int64_t kt_count = (block_cols + 3) / 4;  // Kb' / 4 column tiles
  return 512 * ((row / 128) * kt_count + block_col / 4) + 16 * (row % 32) + 4 * ((row % 128) / 32) + block_col % 4;
}

Tensor swizzle_block_scales(const Tensor& scales) {
  LOWBIT_CHECK(scales.defined() && scales.device().is_cpu() && scales.dim() >= 1 &&
                   (scales.dtype() == DType::u8 || scales.dtype() == DType::fp8_e4m3),
               "swizzle_block_scales: expected a CPU u8 or fp8_e4m3 (..., block_cols) scale tensor, got ",
               scales.defined() ? scales.str() : "undefined");
  const int64_t C = scales.shape().back();
  const int64_t R = C > 0 ? scales.numel() / C : 0;
  const int64_t Rp = (R + 127) / 128 * 128, Cp = (C + 3) / 4 * 4;
  Tensor out = zeros({Rp * Cp}, scales.dtype());
  if (R == 0 || C == 0) return out;
  const Tensor sc = scales.contiguous();
  const auto* src = static_cast<const uint8_t*>(sc.raw_data());
  auto* dst = static_cast<uint8_t*>(out.raw_data());
  // scales (R, C) -> out (R' * C') in 128x4 tiles
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) dst[swizzled_scale_offset(r, c, C)] = src[r * C + c];
  return out;
}

}  // namespace lowbit::quant
