// QuantSpec: everything that determines a quantized value, in one struct that is printed,
// stored with checkpoints and compared strictly on load, so settings can never change silently
// between training and conversion. Read from / written to JSON; invalid combinations are a
// one-line error naming the key. docs/quantization.md explains each field and its anchor.
#pragma once
#include <cstdint>
#include <string>

namespace lowbit::quant {

enum class Format {
  int8,       // [-128, 127]
  int4,       // [-8, 7]
  uint4,      // [0, 15], asymmetric with a float zero point (torchao Int4WeightFakeQuantizer, fp32 qparams)
  fp8_e4m3,   // scaled, max 448
  fp8_e5m2,   // scaled, max 57344
  nvfp4,      // E2M1 blocks of 16, UE4M3 block scale, f32 per-tensor scale
  mxfp4,      // E2M1 blocks of 32, E8M0 scale
  mxfp8,      // E4M3 blocks of 32, E8M0 scale
  gguf_q4_0,  // ggml Q4_0: blocks of 32, fp16 d, 4-bit codes (ggml reference rounding)
  gguf_q8_0,  // ggml Q8_0: blocks of 32, fp16 d, int8 codes (ggml reference rounding)
};

enum class Granularity {
  per_tensor,
  per_channel,  // one scale per index of `axis` (weights: axis 0 = output channel)
  per_group,    // groups of `group_size` consecutive elements of the last dim
  per_token,    // one scale per row of the last dim (activations)
  block2d,      // block_rows x block_cols tiles of the last two dims
};

enum class ScalePolicy {
  dynamic,     // recomputed from the current tensor every call
  calibrated,  // taken from calibration, then frozen
  learned,     // a trainable parameter (LSQ); initialised like calibrated
};

enum class GradRule {
  ste,              // pass-through: dx = dy
  clipped_rounded,  // dx = dy where qmin <= round(x / s) + zp <= qmax (inclusive) - default
  clipped_amax,     // dx = dy where |x| <= amax (inclusive) (ModelOpt pass_through_bwd=False)
  lsq,              // clipped_rounded for x, plus LSQ gradients for scale (and zero point)
};

// Which anchor's arithmetic a format follows where anchors differ (docs/quantization.md).
enum class Convention {
  torchao,   // default: scale = amax / divisor, quantize by reciprocal multiply (int) or division (fp8)
  modelopt,  // s' = maxbound / amax, quantize x * s', dequantize q / s' (int) or q * (1 / s') (fp8)
};

// MX shared-exponent rule.
enum class MxScaleRule {
  rceil,  // default (torchao QAT, cuBLAS): 2^ceil(log2(amax * (1 / max_elem)))
  floor,  // OCP MX v1.0: 2^(floor(log2 amax) - emax_elem)
};

struct QuantSpec {
  Format format = Format::int8;
  Granularity granularity = Granularity::per_tensor;
  int64_t axis = 0;          // per_channel
  int64_t group_size = 0;    // per_group
  int64_t block_rows = 128;  // block2d
  int64_t block_cols = 128;
  bool symmetric = true;  // int8/int4: symmetric (zp = 0) or asymmetric (integer zero point)
  ScalePolicy scale_policy = ScalePolicy::dynamic;
  GradRule grad = GradRule::clipped_rounded;
  bool lsq_grad_scaling = false;  // LSQ: multiply scale gradients by 1 / sqrt(numel * qmax)
  Convention convention = Convention::torchao;
  MxScaleRule mx_scale = MxScaleRule::rceil;
  bool narrow_range = false;  // modelopt int: [-maxbound, maxbound] instead of [-maxbound - 1, maxbound]
  double eps = 0;             // lower bound on int scales; 0 = the format's default (see docs)

  bool operator==(const QuantSpec&) const = default;
};

// Throws a one-line Error naming the offending key when the combination is invalid, e.g. a
// block format with a granularity other than its own, per_group without group_size, nvfp4 with
// an asymmetric zero point, gguf with a convention, LSQ on a non-integer format.
void validate(const QuantSpec& spec);

// JSON object with the keys of QuantSpec (format, granularity, axis, group_size, block_rows,
// block_cols, symmetric, scale_policy, grad, lsq_grad_scaling, convention, mx_scale,
// narrow_range, eps); omitted keys take the defaults above, except that block formats default
// to their own granularity (nvfp4/mx/gguf: per_group of 16/32/32). Unknown keys and wrong types
// are errors naming `source` and the key path.
QuantSpec parse_quant_spec(const std::string& json_text, const std::string& source = "quant spec");
std::string to_json(const QuantSpec& spec);  // every key, stable order; parse_quant_spec inverts it

std::string format_name(Format f);
// Storage facts of a format.
int64_t format_block_size(Format f);  // 16 (nvfp4), 32 (mx, gguf), 0 for scaled formats
bool is_block_format(Format f);
bool is_integer_format(Format f);     // int8, int4, uint4
double format_max(Format f);          // largest representable element magnitude (codes, before scaling)

}  // namespace lowbit::quant
