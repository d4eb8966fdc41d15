// convert(): packed weights and the real low-bit forward. (a) one layer's fake and real modes
// agree within the accumulation-order bound, forward and input gradient; (b) for every preset a
// converted tiny llama reproduces the QAT model's logits bit for bit through the fake path's
// matmul (dequantized mode) and within the tolerance of docs/quantization.md ("Real low-bit
// matmul") through scaled_matmul; (c) no systematic difference between real and fake; (d)
// packed sizes are what each format promises.
#include <gtest/gtest.h>

#include <cmath>

#include "lowbit/engine/lowbit.h"
#include "lowbit/models/llama.h"
#include "lowbit/nn/linear.h"
#include "lowbit/quant/linear_quant.h"
#include "lowbit/quant/scaled_matmul.h"

namespace lowbit::quant {
namespace {

std::vector<float> vals(const Tensor& t) { return t.to(DType::f32).contiguous().to_vector<float>(); }

Tensor abs64(const Tensor& t) {
  std::vector<double> v = t.to(DType::f64).contiguous().to_vector<double>();
  for (double& e : v) e = std::fabs(e);
  return from_vector(v, t.shape(), DType::f64);
}

double gamma_of(int64_t n) {
  const double u = std::ldexp(1.0, -24);
  return static_cast<double>(n) * u / (1.0 - static_cast<double>(n) * u);
}

bool needs_calibration(const QuantPreset& p) {
  auto needs = [](const QuantSpec& s) { return s.scale_policy != ScalePolicy::dynamic || s.format == Format::nvfp4; };
  return needs(p.weight) || (p.input && needs(*p.input));
}

struct Tree : nn::Module {
  Tree(int64_t in, int64_t out) {
    l = &register_module("proj", std::make_unique<nn::Linear>(in, out, nn::LinearOptions{.bias = true}));
  }
  nn::Linear* l;
};

// Residual statistics of y against ref: max |y - ref| / max |ref|, mean and spread of the signed
// residual, and its correlation with ref (a scale or rounding difference correlates with ref).
struct Residual {
  double max_rel = 0, mean = 0, sd = 0, corr = 0;
};
Residual residual(const Tensor& y, const Tensor& ref) {
  const auto a = vals(y), b = vals(ref);
  const auto n = static_cast<double>(a.size());
  double s = 0, s2 = 0, sr = 0, sb = 0, sb2 = 0, mx = 0, mref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double r = static_cast<double>(a[i]) - b[i];
    s += r;
    s2 += r * r;
    sb += b[i];
    sb2 += static_cast<double>(b[i]) * b[i];
    sr += r * b[i];
    mx = std::max(mx, std::fabs(r));
    mref = std::max(mref, std::fabs(static_cast<double>(b[i])));
  }
  Residual out;
  out.max_rel = mref > 0 ? mx / mref : 0;
  out.mean = s / n;
  out.sd = std::sqrt(std::max(0.0, s2 / n - out.mean * out.mean));
  const double sdb = std::sqrt(std::max(0.0, sb2 / n - (sb / n) * (sb / n)));
  out.corr = out.sd > 0 && sdb > 0 ? (sr / n - out.mean * sb / n) / (out.sd * sdb) : 0;
  return out;
}

// (c): no systematic part: the mean is small against the spread and the residual does not
// follow the reference (|corr| small). Both fail for a 1e-6 relative scale error (tested below).
void expect_unsystematic(const Residual& r, const std::string& what) {
  if (r.sd == 0) return;  // bitwise equal
  EXPECT_LT(std::fabs(r.mean), 0.1 * r.sd) << what << ": mean " << r.mean << " sd " << r.sd;
  EXPECT_LT(std::fabs(r.corr), 0.2) << what << ": corr " << r.corr;
}

TEST(Convert, OneLayerFakeAndRealModesAgreeWithinTheAccumulationBound) {
  const int64_t M = 48, in = 512, out = 256;
  for (const std::string& name : preset_names()) {
    SCOPED_TRACE(name);
    auto ctx = std::make_shared<QuantContext>();
    Tree t(in, out);
    {
      NoGradGuard ng;
      fill_(t.l->bias, 0.125);
    }
    const QuantPreset p = resolve_preset(name);
    prepare(t, p, ctx, PrepareOptions{.exclude = {}});
    Generator g(5);
    const Tensor x = randn({M, in}, 0.0, 1.0, DType::f32, &g);
    if (needs_calibration(p)) {
      begin_calibration(t);
      t.l->forward(x);
      finish_calibration(t);
    }
    LinearQuant& lq = *t.l->quant;
    const Tensor xf = x.detach().set_requires_grad(true);
    const Tensor y_fake = t.l->forward(xf);
    sum(mul(y_fake, y_fake)).backward();
    const Tensor dx_fake = xf.grad();
    t.l->weight.set_grad(Tensor());
    convert(t);
    EXPECT_EQ(lq.mode(), LinearMode::real);
    const Tensor xr = x.detach().set_requires_grad(true);
    const Tensor y_real = t.l->forward(xr);
    // Same backward seed as fake mode (2 y_fake), so only the input-gradient GEMM differs.
    y_real.backward(mul(y_fake.detach(), 2.0));
    const Tensor dx_real = xr.grad();
    EXPECT_FALSE(t.l->weight.grad().defined()) << "frozen weights got a gradient";
    // Forward: y = a_dq · w_dqᵀ + 0.125 on both sides; the products' sums differ by at most
    // 2 γ_(K+4) Σ|a||w| (scaled_matmul_test.cpp), the bias add adds one rounding of |y| each.
    const Tensor a_dq = p.input ? fake_quant(x, *p.input, lq.input()->has_params() ? &lq.input()->params() : nullptr) : x;
    const Tensor w_dq = dequantize(lq.packed_weight());
    const auto bound = matmul(abs64(a_dq), abs64(w_dq).t()).contiguous().to_vector<double>();
    const auto yf = vals(y_fake), yr = vals(y_real);
    double worst = 0;
    const double u = std::ldexp(1.0, -24);
    for (size_t i = 0; i < yf.size(); ++i) {
      const double b = 2 * gamma_of(in + 4) * bound[i] + 2 * u * std::fabs(static_cast<double>(yf[i]));
      worst = std::max(worst, std::fabs(static_cast<double>(yr[i]) - yf[i]) / b);
    }
    EXPECT_LE(worst, 1.0);
    // Input gradient: both are mask ⊙ (dy · w_dq) with the same mask; dy · w_dq sums `out`
    // products: within 2 γ_out Σ|dy||w_dq|.
    const Tensor dy = mul(y_fake.detach(), 2.0);
    const auto gb = matmul(abs64(dy), abs64(w_dq)).contiguous().to_vector<double>();
    const auto gf = vals(dx_fake), gr = vals(dx_real);
    double gworst = 0;
    for (size_t i = 0; i < gf.size(); ++i)
      gworst = std::max(gworst, std::fabs(static_cast<double>(gr[i]) - gf[i]) / (2 * gamma_of(out) * gb[i] + 1e-30));
    EXPECT_LE(gworst, 1.0);
    // (c) on one layer: M x out = 12288 residuals.
    expect_unsystematic(residual(y_real, y_fake), name);
    // Back to fake: the QAT path is unchanged.
    lq.set_mode(LinearMode::fake);
    EXPECT_EQ(vals(t.l->forward(x)), yf);
  }
}

TEST(Convert, TheSystematicCheckCanFail) {
  Generator g(1);
  const Tensor ref = randn({64, 256}, 0.0, 1.0, DType::f32, &g);
  const Tensor noise = randn({64, 256}, 0.0, 1e-7, DType::f32, &g);
  const Residual ok = residual(add(ref, noise), ref);
  EXPECT_LT(std::fabs(ok.corr), 0.2);
  const Residual scaled = residual(mul(ref, 1.0 + 1e-6), ref);  // a different scale rounding
  EXPECT_GT(std::fabs(scaled.corr), 0.9);
  const Residual shifted = residual(add(add(ref, noise), 1e-6), ref);  // a different eps / zero point
  EXPECT_GT(std::fabs(shifted.mean), 0.5 * shifted.sd);
}

models::ModelConfig tiny128() {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 40;
  c.hidden_size = 128;
  c.intermediate_size = 640;  // down_proj's K spans 3 K tiles of scaled_matmul (256 + 256 + 128)
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  c.max_position_embeddings = 32;
  return c;
}

Tensor ids_of(uint64_t seed, int64_t B = 2, int64_t T = 12) {
  Generator g(seed);
  return randint({B, T}, 0, 40, DType::i64, &g);
}

// Real-path logits tolerance per preset, as max |real - fake| / max |fake| (docs/quantization.md,
// "Real low-bit matmul", has the measured values and where they come from).
double logits_tolerance(const QuantPreset& p) {
  if (!p.input) return 1e-5;  // accumulation order only (measured <= 5e-7)
  // Plus rounding flips: an activation that differs in the last bit between the two paths can
  // round to the neighbouring code; one int8/fp8 step is <= 1/127 of its group's range (W4A8
  // measured 4.7e-3), one e2m1 step up to 1/3 of its block's amax.
  const Format f = p.input->format;
  return f == Format::nvfp4 || f == Format::mxfp4 ? 0.05 : 0.02;
}

TEST(Convert, ConvertedModelReproducesTheQatLogits) {
  for (const std::string& name : preset_names()) {
    SCOPED_TRACE(name);
    const QuantPreset p = resolve_preset(name);
    auto ctx = std::make_shared<QuantContext>();
    models::CausalLM m(tiny128(), models::ModelOptions{.seed = 1});
    prepare(m, p, ctx);
    if (needs_calibration(p)) {
      begin_calibration(m);
      m.forward(ids_of(1));
      finish_calibration(m);
    }
    const Tensor ids = ids_of(7);
    Tensor fake;
    {
      NoGradGuard ng;
      fake = m.forward(ids);
    }
    convert(m);
    set_mode(m, LinearMode::dequantized);
    Tensor deq, real;
    {
      NoGradGuard ng;
      deq = m.forward(ids);
      set_mode(m, LinearMode::real);
      real = m.forward(ids);
    }
    EXPECT_EQ(vals(deq), vals(fake)) << "same matmul path: must be bitwise";
    const Residual r = residual(real, fake);
    std::printf("[ residual ] %-30s max|real-fake|/max|fake| = %.3g  mean = %.3g  sd = %.3g  corr = %.3g\n",
                name.c_str(), r.max_rel, r.mean, r.sd, r.corr);
    EXPECT_LE(r.max_rel, logits_tolerance(p));
    expect_unsystematic(r, name);  // (c)
    // The real model still trains its non-quantized parts: a backward reaches the embeddings.
    const Tensor loss = m.loss(ids_of(2), ids_of(3));
    loss.backward();
    EXPECT_TRUE(m.parameter("model.embed_tokens.weight").grad().defined());
    EXPECT_FALSE(m.parameter("model.layers.0.mlp.up_proj.weight").grad().defined());
  }
}

TEST(Convert, PackedSizesAreWhatEachFormatPromises) {
  const int64_t out = 256, in = 512;
  // Bits per weight from each format's storage: code bits + scale (and zero point) bits per group.
  const std::vector<std::pair<std::string, double>> expected = {
      {"INT8_DEFAULT", 8 + 32.0 / in},                   // i8 + f32 per output channel
      {"INT8_PER_CHANNEL_PER_TOKEN", 8 + 32.0 / in},
      {"W4A8", 4 + 32.0 / 32},                            // int4 + f32 per 32
      {"INT4_WEIGHT_ONLY", 4 + 64.0 / 128},               // uint4 + f32 scale + f32 zero per 128
      {"FP8_DEFAULT", 8 + 32.0 / (out * in)},             // e4m3 + one f32
      {"FP8_PER_CHANNEL_PER_TOKEN", 8 + 32.0 / in},
      {"FP8_2D_BLOCKWISE_WEIGHT_ONLY", 8 + 32.0 / (128 * 128)},
      {"NVFP4_DEFAULT", 4 + 8.0 / 16 + 32.0 / (out * in)},  // e2m1 + ue4m3 per 16 + f32 tensor scale
      {"NVFP4_WEIGHT_ONLY", 4 + 8.0 / 16 + 32.0 / (out * in)},
      {"MXFP4", 4 + 8.0 / 32},                            // e2m1 + e8m0 per 32
      {"MXFP8", 8 + 8.0 / 32},
      {"GGUF_Q4_0", 4.5},                                 // 18 bytes per 32 (ggml block_q4_0)
      {"GGUF_Q8_0", 8.5},                                 // 34 bytes per 32 (ggml block_q8_0)
  };
  ASSERT_EQ(expected.size(), preset_names().size());
  for (const auto& [name, bits] : expected) {
    SCOPED_TRACE(name);
    auto ctx = std::make_shared<QuantContext>();
    Tree t(in, out);
    const QuantPreset p = resolve_preset(name);
    prepare(t, p, ctx, PrepareOptions{.exclude = {}});
    if (needs_calibration(p)) {
      begin_calibration(t);
      t.l->forward(randn({4, in}));
      finish_calibration(t);
    }
    convert(t);
    const QTensor& q = t.l->quant->packed_weight();
    EXPECT_DOUBLE_EQ(q.bits_per_element(), bits);
    EXPECT_EQ(q.nbytes() * 8, static_cast<int64_t>(std::llround(bits * out * in)));
  }
}

TEST(Convert, BadUse) {
  auto ctx = std::make_shared<QuantContext>();
  Tree t(64, 32);
  prepare(t, resolve_preset("W4A8"), ctx, PrepareOptions{.exclude = {}});
  EXPECT_THROW(t.l->quant->set_mode(LinearMode::real), Error);  // not converted
  EXPECT_THROW(t.l->quant->packed_weight(), Error);
  Tree plain(64, 32);
  EXPECT_THROW(convert(plain), Error);  // nothing prepared
  Tree cal(64, 32);
  prepare(cal, resolve_preset("INT8_DEFAULT"), ctx, PrepareOptions{.exclude = {}});
  try {
    convert(cal);  // calibrated scales missing
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("convert: layer 'proj'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lowbit::quant
