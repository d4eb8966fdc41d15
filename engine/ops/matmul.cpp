#include "lowbit/engine/ops/matmul.h"

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/op_utils.h"
#include "lowbit/engine/ops/reduce.h"

namespace lowbit {

namespace {

// One operand as GEMM sees it: a batch of matrices with one batch stride (0 = broadcast).
struct GemmOperand {
  Tensor t;  // keeps the storage alive; may be a contiguous copy
  bool trans = false;
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

// t: (..., R, C) expanded to batch shape `batch` -> GEMM view, copying only when the strides
// cannot be expressed as (one batch stride, row- or column-major matrices).
GemmOperand gemm_operand(const Tensor& t, const Shape& batch) {
  Shape full = batch;
  full.push_back(t.size(-2));
  full.push_back(t.size(-1));
  Tensor e = t.detach().expand(full);
  auto describe = [&](const Tensor& x, GemmOperand& op) {
    const int64_t nd = x.dim();
    const int64_t R = x.shape()[static_cast<size_t>(nd - 2)], C = x.shape()[static_cast<size_t>(nd - 1)];
    const int64_t sr = x.strides()[static_cast<size_t>(nd - 2)], sc = x.strides()[static_cast<size_t>(nd - 1)];
    if ((sc == 1 || C == 1) && sr >= std::max<int64_t>(C, 1)) {
      op.trans = false;
      op.ld = std::max<int64_t>(sr, C);
    } else if ((sr == 1 || R == 1) && sc >= std::max<int64_t>(R, 1)) {
      op.trans = true;
      op.ld = std::max<int64_t>(sc, R);
    } else {
      return false;
    }
    // Batch dims must collapse to one stride.
    int64_t bs = -1;
    int64_t expected = -1;
    for (int64_t d = nd - 3; d >= 0; --d) {
      const int64_t size = x.shape()[static_cast<size_t>(d)], st = x.strides()[static_cast<size_t>(d)];
      if (size == 1) continue;
      if (bs < 0) {
        bs = st;
        expected = st * size;
      } else if (st == expected) {
        expected = st * size;
      } else if (!(bs == 0 && st == 0)) {
        return false;
      }
    }
    op.batch_stride = bs < 0 ? 0 : bs;
    return true;
  };
  GemmOperand op;
  op.t = e;
  if (describe(e, op)) return op;
  op.t = as_contiguous(e);
  const bool ok = describe(op.t, op);
  LOWBIT_CHECK(ok, "matmul: internal layout error for ", t.str());
  return op;
}

// a: (..., M, K), b: (..., K, N) -> (..., M, N), no autograd. The result has the promoted
// dtype, or out_dtype when given (bf16 inputs with out_dtype f32 return the GEMM's f32
// accumulator as is).
Tensor matmul_forward(const Tensor& a, const Tensor& b, DType out_dtype = DType::u8) {
  check_same_device("matmul", a, b);
  if (b.dim() == 2 && a.dim() > 2 && a.stride(-1) == 1) {
    // (..., M, K) @ (K, N): one tall GEMM instead of a batch of small ones.
    Shape out_shape = a.shape();
    out_shape.back() = b.size(-1);
    return matmul_forward(a.detach().reshape({-1, a.size(-1)}), b, out_dtype).view(out_shape);
  }
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  LOWBIT_CHECK(b.size(-2) == K, "matmul: inner dims differ: ", shape_str(a.shape()), " @ ", shape_str(b.shape()));
  const Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = cpu::broadcast_shapes(ab, bb);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  const DType dt = compute_dtype(promote_types(a.dtype(), b.dtype()), "matmul");
  const DType want = out_dtype == DType::u8 ? dt : out_dtype;
  Tensor out = empty(out_shape, want, a.device());
  if (out.device().is_meta() || out.numel() == 0) return out;
  LOWBIT_CHECK(out.device().is_cpu(), "matmul: no kernel for ", out.device());
  if (K == 0) {
    fill_(out, 0.0);
    return out;
  }
  const int64_t nbatch = shape_numel(batch);
  // bf16 runs the bf16 GEMM (f32 accumulate); f16 computes in f32.
  const DType gemm_dt = dt == DType::f16 ? DType::f32 : dt;
  const GemmOperand A = gemm_operand(as_dtype(a, gemm_dt), batch);
  const GemmOperand B = gemm_operand(as_dtype(b, gemm_dt), batch);
  const DType acc_dt = gemm_dt == DType::f64 ? DType::f64 : DType::f32;
  Tensor c = want == acc_dt ? out : empty(out_shape, acc_dt, out.device());
  const int64_t stride_c = nbatch > 1 ? M * N : 0;
  if (gemm_dt == DType::f64) {
    cpu::gemm_batched(nbatch, A.trans, B.trans, M, N, K, 1.0, static_cast<const double*>(A.t.raw_data()), A.ld,
                      A.batch_stride, static_cast<const double*>(B.t.raw_data()), B.ld, B.batch_stride, 0.0,
                      c.data<double>(), N, stride_c);
  } else if (gemm_dt == DType::f32) {
    cpu::gemm_batched(nbatch, A.trans, B.trans, M, N, K, 1.0f, static_cast<const float*>(A.t.raw_data()), A.ld,
                      A.batch_stride, static_cast<const float*>(B.t.raw_data()), B.ld, B.batch_stride, 0.0f,
                      c.data<float>(), N, stride_c);
  } else {
    cpu::gemm_batched(nbatch, A.trans, B.trans, M, N, K, 1.0f, static_cast<const BFloat16*>(A.t.raw_data()), A.ld,
                      A.batch_stride, static_cast<const BFloat16*>(B.t.raw_data()), B.ld, B.batch_stride, 0.0f,
                      c.data<float>(), N, stride_c);
  }
  if (!c.same(out)) copy_(out, c);
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  LOWBIT_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: 0-d operand ", a.str(), " @ ", b.str());
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  Tensor out = matmul_forward(a, b);
  return record("matmul", out, {a, b}, {a, b}, [](const BackwardArgs& g) {
    // dA = dC @ B^T, dB = A^T @ dC; the engine sums broadcast batch dims back down.
    const Tensor a = g.saved(0), b = g.saved(1);
    if (b.dim() == 2 && a.dim() > 2 && g.needs_grad(1)) {
      // Broadcast weight: dB = A_flat^T @ dC_flat, a single GEMM reducing over all rows.
      const Tensor db = matmul_forward(a.reshape({-1, a.size(-1)}).t(), g.grad.reshape({-1, g.grad.size(-1)}));
      return std::vector<Tensor>{g.needs_grad(0) ? matmul_forward(g.grad, b.t()) : Tensor(), db};
    }
    return std::vector<Tensor>{g.needs_grad(0) ? matmul_forward(g.grad, b.transpose(-2, -1)) : Tensor(),
                               g.needs_grad(1) ? matmul_forward(a.transpose(-2, -1), g.grad) : Tensor()};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  LOWBIT_CHECK(x.dim() >= 1 && weight.dim() == 2 && x.size(-1) == weight.size(1), "linear: input ",
               shape_str(x.shape()), " does not match weight ", shape_str(weight.shape()), " (out, in)");
  if (bias.defined())
    LOWBIT_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias ", shape_str(bias.shape()),
                 " does not match weight ", shape_str(weight.shape()));
  const DType dt = compute_dtype(x.dtype(), "linear");
  const Tensor w = as_dtype(weight, dt);  // the mixed-precision cast (saved for backward)
  // x: (..., in) @ w^T: (in, out) -> (..., out)
  Tensor y = x.dim() == 1 ? matmul_forward(x.detach().unsqueeze(0), w.t()).squeeze(0) : matmul_forward(x, w.t());
  if (bias.defined()) {
    NoGradGuard g;
    add_(y, as_dtype(bias, dt));
  }
  // The GEMM accumulates in f64 for f64, else f32; dweight and dbias come out in that dtype
  // (the engine casts them to the parameters' dtypes if those differ).
  const DType acc = dt == DType::f64 ? DType::f64 : DType::f32;
  return record("linear", y, {x, weight, bias}, {x, w}, [acc](const BackwardArgs& a) {
    // grad: (..., out) -> dx = grad @ w: (..., in), dweight = grad^T @ x: (out, in) in the
    // weight's dtype, dbias = grad summed over rows.
    const Tensor x = a.saved(0), w = a.saved(1);
    const Tensor g = a.grad.dim() == 1 ? a.grad.unsqueeze(0) : a.grad;
    Tensor dx, dw, db;
    if (a.needs_grad(0)) {
      dx = matmul_forward(g, w);
      if (x.dim() == 1) dx = dx.squeeze(0);
    }
    const Tensor g2 = g.reshape({-1, g.size(-1)});
    if (a.needs_grad(1)) {
      const Tensor x2 = (x.dim() == 1 ? x.unsqueeze(0) : x).reshape({-1, x.size(-1)});
      dw = matmul_forward(g2.t(), x2, acc);
    }
    if (a.needs_grad(2)) db = sum(as_dtype(g2, acc), {0});
    return std::vector<Tensor>{dx, dw, db};
  });
}

}  // namespace lowbit
