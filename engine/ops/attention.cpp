// Flash-attention style CPU kernels for scaled_dot_product_attention.
//
// Forward: one task per (batch, query head, query block of kBlockQ rows). The task walks the
// key blocks (kBlockK rows) it can see with an online softmax: a running row max m and row sum
// l, rescaling the (kBlockQ, D) output accumulator whenever m grows. It writes the output and
// the row logsumexp lse = m + log(l); nothing else is saved for backward.
// Causal: key blocks that no row of a query block sees are skipped, the last visible one is cut
// at the block's last visible key, and only tiles crossing the diagonal are masked (-inf).
//
// Backward (dS = P * (dP - D_i), D_i = rowsum(dO * O), P = exp(scale * q k^T - lse)):
//   KV pass: one task per (batch, kv head, key block). It recomputes P and dS for every query
//            block (of every query head of its group) that sees the key block and accumulates
//            dV += P^T dO and dK += scale * dS^T Q in per-task scratch, so the grouped heads'
//            contributions are summed into the shared kv head without any race.
//   Q pass:  one task per (batch, query head, query block): recomputes P and dS over its key
//            blocks and accumulates dQ += scale * dS K in scratch.
//   When the B * Hkv (batch, kv head) pairs spread over the threads with >= 3/4 of them busy
//   (or the call runs on one thread), a single fused pass runs instead: one task per (batch, kv head) runs the KV pass
//   over all its key blocks and also accumulates dQ += scale * dS K into a dQ buffer that only
//   this task touches (all query heads of a group belong to the same task). That saves the Q
//   pass's recomputation (5 block GEMMs per tile instead of 7) but only has B * Hkv tasks.
//
// Determinism: every output element (out, lse, dQ, dK, dV) is produced by exactly one task,
// which accumulates its contributions in a fixed order, so a task's result does not depend on
// which thread runs it or on the schedule. The forward is bitwise identical for any thread
// count; the backward is bitwise identical for a given thread count (the thread count and the
// shapes select the fused or the two-pass backward, whose dQ summation orders differ by
// rounding). Calls below kMinParallelWork, or made inside a parallel region, run serially.
//
// Memory: besides the outputs, lse (B, Hq, T), D_i (B, Hq, T) and, for bf16/f16 with the fused
// backward, an f32 dQ accumulator (B, Hq, T, D), the only scratch is a per-thread slab of
// O(kBlockQ * kBlockK + (kBlockQ + kBlockK) * D) elements, allocated through lowbit tensors
// (empty()), so the CPU allocator's peak accounts for all of it. No (T, S) or (kBlockQ, S)
// buffer exists. The GEMM backends keep small bounded scratch of their own (oneDNN: a
// per-thread scratchpad for one primitive; Eigen: packing panels of a block product).
//
// Blocks: q/k/v/dO blocks are used in place when their dtype is the compute type and their
// rows have unit inner stride; otherwise (bf16/f16, or other strides) they are converted into
// the per-thread scratch. Block products go through cpu::gemm (single-threaded inside the
// parallel region).
#include "lowbit/engine/ops/attention.h"

#include "lowbit/engine/fast_math.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <type_traits>

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";
// Query and key block rows. 128 x 128 tiles keep a task's working set (Q, K, V, dO blocks, two
// score tiles, accumulators: ~360 KB at D = 64 in f32) inside a core's L2 while each block
// GEMM (128 x 128 x D) is large enough to amortize the per-call GEMM overhead. Measured on one
// core (AVX-512, oneDNN, T = S = 2048, f32), 128 x 128 beat 64 x 64, 128 x 64 and 256 x 64 for
// D = 16, 64 and 128 (e.g. D = 64: forward 15 ms vs 18 ms at 64 x 64, backward 29 vs 37 ms).
constexpr int64_t kBlockQ = 128;
constexpr int64_t kBlockK = 128;
// Below this many multiply-adds (B * Hq * T * S * D, halved when causal) a call runs on the
// calling thread: a parallel region's start-up and barrier would cost more than they save.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;

std::atomic<int> g_backward_schedule{0};  // detail::AttentionBackward, for tests

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t m) { return ceil_div(a, m) * m; }

struct Geom {
  int64_t B, Hq, Hkv, G, T, S, D;  // G = Hq / Hkv query heads per kv head
  bool causal;
  int64_t off;  // S - T: with causal, query i sees keys j <= i + off
  const int64_t* seg = nullptr;  // (B, T) segment ids: query i sees key j only when they match
  double scale;
  int64_t nqb, nkb;  // query / key blocks
  int64_t bq, bk;    // rows of the largest query / key block: min(kBlockQ, T), min(kBlockK, S)

  // Keys [0, key_end) hold every key that some row of the query block [q0, q0 + nq) sees.
  int64_t key_end(int64_t q0, int64_t nq) const { return causal ? std::min(S, q0 + nq + off) : S; }
  // The first query block with a row that sees key k0.
  int64_t first_qblock(int64_t k0) const { return causal ? std::max<int64_t>(0, k0 - off) / kBlockQ : 0; }
  // OpenMP threads for the kernels (1: run serially).
  int threads() const {
    const int64_t work = B * Hq * T * S * D / (causal ? 2 : 1);
    return work >= kMinParallelWork && !omp_in_parallel() ? omp_get_max_threads() : 1;
  }
};

// Element (b, h, t, d) of a 4-D CPU tensor, any strides.
template <class T>
struct Operand {
  const T* base;
  int64_t sb, sh, st, sd;
  explicit Operand(const Tensor& x)
      : base(x.data<T>()), sb(x.stride(0)), sh(x.stride(1)), st(x.stride(2)), sd(x.stride(3)) {}
  const T* row(int64_t b, int64_t h, int64_t t) const { return base + b * sb + h * sh + t * st; }
};

// Rows [t0, t0 + n) of head (b, h) as a row-major (n, D) matrix of the compute type C with row
// stride ld: in place when the layout allows, else converted into buf (ld = D).
template <class T, class C>
const C* load_rows(const Operand<T>& x, int64_t b, int64_t h, int64_t t0, int64_t n, int64_t D, C* buf,
                   int64_t& ld) {
  const T* p = x.row(b, h, t0);
  if constexpr (std::is_same_v<T, C>) {
    if ((x.sd == 1 || D == 1) && (n == 1 || x.st >= D)) {
      ld = n == 1 ? D : x.st;
      return p;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* src = p + i * x.st;
    C* dst = buf + i * D;
    if (x.sd == 1) {
      for (int64_t d = 0; d < D; ++d) dst[d] = convert<C>(src[d]);
    } else {
      for (int64_t d = 0; d < D; ++d) dst[d] = convert<C>(src[d * x.sd]);
    }
  }
  ld = D;
  return buf;
}

// Runs fn(task, thread) for task in [0, n) on up to nt OpenMP threads (dynamic schedule: tasks
// have unequal costs under the causal mask). The first exception is rethrown after the loop.
template <class F>
void parallel_tasks(int64_t n, int nt, F&& fn) {
  std::exception_ptr err;
  std::mutex mu;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (n > 1 && nt > 1)
  for (int64_t task = 0; task < n; ++task) {
    try {
      fn(task, omp_get_thread_num());
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!err) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
}

// Per-thread scratch slabs carved into 64-byte aligned sub-buffers.
template <class C>
class Workspace {
 public:
  Workspace(int nt, int64_t per_thread_elems)
      : per_(round_up(per_thread_elems, 16)), slab_(empty({nt, per_}, dtype_of<C>)) {}
  C* thread_base(int tid) const { return slab_.data<C>() + tid * per_; }

 private:
  int64_t per_;
  Tensor slab_;
};

template <class C>
C* take(C*& cursor, int64_t n) {
  C* p = cursor;
  cursor += round_up(n, 16);
  return p;
}
constexpr int64_t slot(int64_t n) { return (n + 15) / 16 * 16; }


// s (nq, nk; row stride g.bk) = scale * q k^T of batch b, with masked entries (causal, other
// segment) set to -inf. q: (nq, D) rows q0.., k: (nk, D) rows k0...
template <class C>
void block_scores(const Geom& g, int64_t b, const C* qp, int64_t ldq, int64_t q0, int64_t nq, const C* kp,
                  int64_t ldk, int64_t k0, int64_t nk, C* s) {
  cpu::gemm(false, true, nq, nk, g.D, static_cast<C>(g.scale), qp, ldq, kp, ldk, C(0), s, g.bk);
  const C ninf = -std::numeric_limits<C>::infinity();
  if (g.seg) {
    const int64_t* sq = g.seg + b * g.T + q0;
    const int64_t* sk = g.seg + b * g.T + k0;
    for (int64_t i = 0; i < nq; ++i) {
      C* row = s + i * g.bk;
      for (int64_t j = 0; j < nk; ++j)
        if (sk[j] != sq[i]) row[j] = ninf;
    }
  }
  if (!g.causal || k0 + nk - 1 <= q0 + g.off) return;  // the whole tile is causally visible
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t first_masked = std::max<int64_t>(0, q0 + i + g.off - k0 + 1);
    C* row = s + i * g.bk;
    for (int64_t j = first_masked; j < nk; ++j) row[j] = ninf;
  }
}

// ---------------------------------------------------------------------------------------------
// Forward.
// q: (B, Hq, T, D), k, v: (B, Hkv, S, D) -> out (B, Hq, T, D) contiguous, lse (B, Hq, T) in the
// compute type (rows that see no key, only when S == 0: out 0, lse -inf).
template <class T>
void attention_forward_cpu(const Geom& g, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                           const Tensor& lse) {
  using C = opmath_t<T>;
  const Operand<T> Q(q), K(k), V(v);
  T* O = out.data<T>();
  C* L = lse.data<C>();
  const int64_t D = g.D;
  const int nt = g.threads();
  const int64_t per = 3 * slot(g.bq * D) + 2 * slot(g.bk * D) + slot(g.bq * g.bk) + 2 * slot(g.bq);
  const Workspace<C> ws(nt, per);
  const C ninf = -std::numeric_limits<C>::infinity();

  parallel_tasks(g.B * g.Hq * g.nqb, nt, [&](int64_t task, int tid) {
    // Most expensive (last, under the causal mask) query blocks first.
    const int64_t qb = g.nqb - 1 - task % g.nqb, h = task / g.nqb % g.Hq, b = task / (g.nqb * g.Hq);
    const int64_t hk = h / g.G;
    const int64_t q0 = qb * kBlockQ, nq = std::min(kBlockQ, g.T - q0);
    C* cur = ws.thread_base(tid);
    C* qbuf = take(cur, g.bq * D);
    C* acc = take(cur, g.bq * D);
    C* kbuf = take(cur, g.bk * D);
    C* vbuf = take(cur, g.bk * D);
    C* s = take(cur, g.bq * g.bk);
    C* m = take(cur, g.bq);
    C* l = take(cur, g.bq);

    int64_t ldq, ldk, ldv;
    const C* qp = load_rows(Q, b, h, q0, nq, D, qbuf, ldq);
    std::fill(acc, acc + nq * D, C(0));
    std::fill(m, m + nq, ninf);
    std::fill(l, l + nq, C(0));
    const int64_t kend = g.key_end(q0, nq);
    for (int64_t k0 = 0; k0 < kend; k0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, kend - k0);
      const C* kp = load_rows(K, b, hk, k0, nk, D, kbuf, ldk);
      const C* vp = load_rows(V, b, hk, k0, nk, D, vbuf, ldv);
      block_scores(g, b, qp, ldq, q0, nq, kp, ldk, k0, nk, s);
      for (int64_t i = 0; i < nq; ++i) {
        C* row = s + i * g.bk;
        C mx = ninf;
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < nk; ++j) mx = std::max(mx, row[j]);
        const C mnew = std::max(m[i], mx);
        if (mnew == ninf) {  // no visible key yet (with segments: this tile holds only other segments' keys)
          std::fill(row, row + nk, C(0));
          continue;
        }
        const C alpha = std::exp(m[i] - mnew);  // m[i] == -inf: 0 (nothing accumulated yet)
        C sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < nk; ++j) {
          const C p = exp_c(row[j] - mnew);
          row[j] = p;
          sum += p;
        }
        l[i] = l[i] * alpha + sum;
        m[i] = mnew;
        if (alpha != C(1)) {
          C* a = acc + i * D;
          for (int64_t d = 0; d < D; ++d) a[d] *= alpha;
        }
      }
      // acc += P V
      cpu::gemm(false, false, nq, D, nk, C(1), s, g.bk, vp, ldv, C(1), acc, D);
    }
    const int64_t row0 = (b * g.Hq + h) * g.T + q0;
    for (int64_t i = 0; i < nq; ++i) {
      const C inv = l[i] > C(0) ? C(1) / l[i] : C(0);
      const C* a = acc + i * D;
      T* o = O + (row0 + i) * D;
      for (int64_t d = 0; d < D; ++d) o[d] = convert<T>(a[d] * inv);
      L[row0 + i] = l[i] > C(0) ? m[i] + std::log(l[i]) : ninf;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Backward.
template <class T>
struct BackwardCtx {
  using C = opmath_t<T>;
  const Geom& g;
  Operand<T> Q, K, V, dO;
  const C* L;   // lse (B, Hq, T)
  const C* Di;  // rowsum(dO * O) (B, Hq, T)

  // Per-thread scratch of every backward task.
  static int64_t scratch_elems(const Geom& g) {
    return 3 * slot(g.bq * g.D) + 4 * slot(g.bk * g.D) + 2 * slot(g.bq * g.bk);
  }
  struct Bufs {
    C *qbuf, *dobuf, *kbuf, *vbuf, *s, *dp, *acc_a, *acc_b, *acc_q;
  };
  Bufs carve(C* cur) const {
    const int64_t D = g.D;
    Bufs r;
    r.qbuf = take(cur, g.bq * D);
    r.dobuf = take(cur, g.bq * D);
    r.acc_q = take(cur, g.bq * D);
    r.kbuf = take(cur, g.bk * D);
    r.vbuf = take(cur, g.bk * D);
    r.acc_a = take(cur, g.bk * D);
    r.acc_b = take(cur, g.bk * D);
    r.s = take(cur, g.bq * g.bk);
    r.dp = take(cur, g.bq * g.bk);
    return r;
  }

  // One (query block, key block) tile of head (b, h): s <- P, dp <- dS (row stride g.bk).
  void tile(int64_t b, int64_t h, int64_t q0, int64_t nq, const C* qp, int64_t ldq, const C* dop, int64_t lddo,
            int64_t k0, int64_t nk, const C* kp, int64_t ldk, const C* vp, int64_t ldv, C* s, C* dp) const {
    block_scores(g, b, qp, ldq, q0, nq, kp, ldk, k0, nk, s);
    // dP = dO V^T
    cpu::gemm(false, true, nq, nk, g.D, C(1), dop, lddo, vp, ldv, C(0), dp, g.bk);
    const int64_t row0 = (b * g.Hq + h) * g.T + q0;
    for (int64_t i = 0; i < nq; ++i) {
      const C lse = L[row0 + i], di = Di[row0 + i];
      C* srow = s + i * g.bk;
      C* drow = dp + i * g.bk;
#pragma omp simd
      for (int64_t j = 0; j < nk; ++j) {
        const C p = exp_c(srow[j] - lse);  // masked: exp(-inf) = 0
        srow[j] = p;
        drow[j] = p * (drow[j] - di);
      }
    }
  }

  // KV task: key block kb of kv head (b, hk). dK, dV rows [k0, k0 + nk) are written to dk, dv
  // (contiguous (B, Hkv, S, D)). With dq_acc (contiguous (B, Hq, T, D), compute type, owned by
  // the caller's task) also accumulates dQ += scale * dS K.
  void kv_block(int64_t b, int64_t hk, int64_t kb, const Bufs& w, T* dk, T* dv, C* dq_acc) const {
    const int64_t D = g.D;
    const int64_t k0 = kb * kBlockK, nk = std::min(kBlockK, g.S - k0);
    int64_t ldk, ldv, ldq, lddo;
    const C* kp = load_rows(K, b, hk, k0, nk, D, w.kbuf, ldk);
    const C* vp = load_rows(V, b, hk, k0, nk, D, w.vbuf, ldv);
    C* dka = w.acc_a;
    C* dva = w.acc_b;
    std::fill(dka, dka + nk * D, C(0));
    std::fill(dva, dva + nk * D, C(0));
    const C scale = static_cast<C>(g.scale);
    for (int64_t h = hk * g.G; h < (hk + 1) * g.G; ++h) {
      for (int64_t qb = g.first_qblock(k0); qb < g.nqb; ++qb) {
        const int64_t q0 = qb * kBlockQ, nq = std::min(kBlockQ, g.T - q0);
        // Keys of this block that some row of the query block sees (>= 1 by first_qblock).
        const int64_t nke = std::min(nk, g.key_end(q0, nq) - k0);
        const C* qp = load_rows(Q, b, h, q0, nq, D, w.qbuf, ldq);
        const C* dop = load_rows(dO, b, h, q0, nq, D, w.dobuf, lddo);
        tile(b, h, q0, nq, qp, ldq, dop, lddo, k0, nke, kp, ldk, vp, ldv, w.s, w.dp);
        // dV += P^T dO, dK += scale * dS^T Q
        cpu::gemm(true, false, nke, D, nq, C(1), w.s, g.bk, dop, lddo, C(1), dva, D);
        cpu::gemm(true, false, nke, D, nq, scale, w.dp, g.bk, qp, ldq, C(1), dka, D);
        if (dq_acc) {
          C* dqr = dq_acc + ((b * g.Hq + h) * g.T + q0) * D;
          cpu::gemm(false, false, nq, D, nke, scale, w.dp, g.bk, kp, ldk, C(1), dqr, D);
        }
      }
    }
    const int64_t off = ((b * g.Hkv + hk) * g.S + k0) * D;
    for (int64_t e = 0; e < nk * D; ++e) {
      dk[off + e] = convert<T>(dka[e]);
      dv[off + e] = convert<T>(dva[e]);
    }
  }

  // Q task: query block qb of head (b, h); writes dQ rows [q0, q0 + nq) of dq (contiguous).
  void q_block(int64_t b, int64_t h, int64_t qb, const Bufs& w, T* dq) const {
    const int64_t D = g.D, hk = h / g.G;
    const int64_t q0 = qb * kBlockQ, nq = std::min(kBlockQ, g.T - q0);
    int64_t ldq, lddo, ldk, ldv;
    const C* qp = load_rows(Q, b, h, q0, nq, D, w.qbuf, ldq);
    const C* dop = load_rows(dO, b, h, q0, nq, D, w.dobuf, lddo);
    C* dqa = w.acc_q;
    std::fill(dqa, dqa + nq * D, C(0));
    const C scale = static_cast<C>(g.scale);
    const int64_t kend = g.key_end(q0, nq);
    for (int64_t k0 = 0; k0 < kend; k0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, kend - k0);
      const C* kp = load_rows(K, b, hk, k0, nk, D, w.kbuf, ldk);
      const C* vp = load_rows(V, b, hk, k0, nk, D, w.vbuf, ldv);
      tile(b, h, q0, nq, qp, ldq, dop, lddo, k0, nk, kp, ldk, vp, ldv, w.s, w.dp);
      cpu::gemm(false, false, nq, D, nk, scale, w.dp, g.bk, kp, ldk, C(1), dqa, D);  // dQ += scale dS K
    }
    T* o = dq + ((b * g.Hq + h) * g.T + q0) * D;
    for (int64_t e = 0; e < nq * D; ++e) o[e] = convert<T>(dqa[e]);
  }
};

struct Grads {
  Tensor dq, dk, dv;
};

// q: (B, Hq, T, D), k, v: (B, Hkv, S, D), out, dout: (B, Hq, T, D), lse: (B, Hq, T)
//   -> dq (B, Hq, T, D), dk, dv (B, Hkv, S, D), contiguous, in q's dtype (undefined if not wanted).
template <class T>
Grads attention_backward_cpu(const Geom& g, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const Tensor& lse, const Tensor& dout, bool want_q, bool want_kv) {
  using C = opmath_t<T>;
  const DType dt = q.dtype();
  Grads r;
  if (want_q) r.dq = g.S == 0 ? zeros(q.shape(), dt) : empty(q.shape(), dt);
  if (want_kv) {
    r.dk = empty(k.shape(), dt);
    r.dv = empty(v.shape(), dt);
  }
  const int64_t rows = g.B * g.Hq * g.T;
  if (g.S == 0 || (!want_kv && rows == 0)) return r;

  const int nt = g.threads();
  // D_i = rowsum(dO * O), in the compute type.
  const Tensor di = empty({g.B, g.Hq, g.T}, dtype_of<C>);
  {
    const Operand<T> dO(dout);
    const T* O = out.data<T>();
    C* Dp = di.data<C>();
    const int64_t D = g.D;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && rows * D > 32768)
    for (int64_t r2 = 0; r2 < rows; ++r2) {
      const int64_t t = r2 % g.T, h = r2 / g.T % g.Hq, b = r2 / (g.T * g.Hq);
      const T* go = dO.row(b, h, t);
      const T* o = O + r2 * D;
      C acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += convert<C>(go[d * dO.sd]) * convert<C>(o[d]);
      Dp[r2] = acc;
    }
  }

  const BackwardCtx<T> ctx{g, Operand<T>(q), Operand<T>(k), Operand<T>(v), Operand<T>(dout), lse.data<C>(),
                           di.data<C>()};
  const Workspace<C> ws(nt, BackwardCtx<T>::scratch_elems(g));
  T* dk = want_kv ? r.dk.data<T>() : nullptr;
  T* dv = want_kv ? r.dv.data<T>() : nullptr;

  // Fused single pass when the (batch, kv head) tasks balance over the threads (>= 3/4 busy).
  const int64_t n_pairs = g.B * g.Hkv;
  const auto sched = static_cast<detail::AttentionBackward>(g_backward_schedule.load());
  const bool balanced = nt == 1 || 4 * n_pairs >= 3 * nt * ceil_div(n_pairs, nt);
  const bool fused = want_q && want_kv &&
                     (sched == detail::AttentionBackward::Auto ? balanced : sched == detail::AttentionBackward::Fused);
  if (fused) {
    Tensor dq_acc = std::is_same_v<T, C> ? r.dq : empty(q.shape(), dtype_of<C>);
    fill_(dq_acc, 0.0);
    C* dqa = dq_acc.data<C>();
    parallel_tasks(n_pairs, nt, [&](int64_t task, int tid) {
      const auto w = ctx.carve(ws.thread_base(tid));
      for (int64_t kb = 0; kb < g.nkb; ++kb) ctx.kv_block(task / g.Hkv, task % g.Hkv, kb, w, dk, dv, dqa);
    });
    if (!std::is_same_v<T, C>) copy_(r.dq, dq_acc);
    return r;
  }
  if (want_kv) {
    parallel_tasks(n_pairs * g.nkb, nt, [&](int64_t task, int tid) {
      const int64_t kb = task % g.nkb, hk = task / g.nkb % g.Hkv, b = task / (g.nkb * g.Hkv);
      ctx.kv_block(b, hk, kb, ctx.carve(ws.thread_base(tid)), dk, dv, nullptr);
    });
  }
  if (want_q) {
    T* dq = r.dq.data<T>();
    parallel_tasks(g.B * g.Hq * g.nqb, nt, [&](int64_t task, int tid) {
      const int64_t qb = g.nqb - 1 - task % g.nqb, h = task / g.nqb % g.Hq, b = task / (g.nqb * g.Hq);
      ctx.q_block(b, h, qb, ctx.carve(ws.thread_base(tid)), dq);
    });
  }
  return r;
}

Geom check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale, const Tensor& segments) {
  LOWBIT_CHECK(q.defined() && k.defined() && v.defined(), kOp, ": undefined input");
  const auto shapes = [&] {
    return std::string("q ") + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + ", v " + shape_str(v.shape());
  };
  LOWBIT_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, kOp,
               ": expected q (B, Hq, T, D), k and v (B, Hkv, S, D), got ", shapes());
  LOWBIT_CHECK(k.shape() == v.shape(), kOp, ": k and v shapes differ: ", shapes());
  LOWBIT_CHECK(q.size(0) == k.size(0), kOp, ": batch sizes differ: ", shapes());
  LOWBIT_CHECK(q.size(3) == k.size(3), kOp, ": head dims D differ: ", shapes());
  LOWBIT_CHECK(q.size(3) >= 1, kOp, ": head dim D must be >= 1: ", shapes());
  LOWBIT_CHECK(k.size(1) >= 1 && q.size(1) % k.size(1) == 0, kOp,
               ": query heads Hq must be a multiple of kv heads Hkv (grouped-query attention): ", shapes());
  LOWBIT_CHECK(!causal || q.size(2) <= k.size(2), kOp,
               ": causal attention needs T <= S (queries align with the last T keys): ", shapes());
  LOWBIT_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), kOp, ": q, k, v dtypes differ: ", q.dtype(), ", ",
               k.dtype(), ", ", v.dtype());
  compute_dtype(q.dtype(), kOp);
  check_same_device(kOp, q, k);
  check_same_device(kOp, q, v);
  LOWBIT_CHECK(q.device().is_cpu() || q.device().is_meta(), kOp, ": no kernel for device ", q.device(),
               " (CPU and meta only)");
  LOWBIT_CHECK(std::isfinite(scale), kOp, ": scale must be finite, got ", scale);
  Geom g;
  g.B = q.size(0);
  g.Hq = q.size(1);
  g.Hkv = k.size(1);
  g.G = g.Hq / g.Hkv;
  g.T = q.size(2);
  g.S = k.size(2);
  g.D = q.size(3);
  g.causal = causal;
  g.off = g.S - g.T;
  g.scale = scale == 0 ? 1.0 / std::sqrt(static_cast<double>(g.D)) : scale;
  g.nqb = ceil_div(g.T, kBlockQ);
  g.nkb = ceil_div(g.S, kBlockK);
  g.bq = std::max<int64_t>(1, std::min(kBlockQ, g.T));
  g.bk = std::max<int64_t>(1, std::min(kBlockK, g.S));
  if (segments.defined()) {
    LOWBIT_CHECK(causal && g.T == g.S, kOp, ": segments need causal self-attention (T == S): ", shapes());
    LOWBIT_CHECK(segments.shape() == (Shape{g.B, g.T}) && segments.dtype() == DType::i64 && segments.is_contiguous() &&
                     segments.device() == q.device(),
                 kOp, ": segments must be a contiguous i64 (B, T) = (", g.B, ", ", g.T, ") tensor on ", q.device(),
                 ", got ", shape_str(segments.shape()), " ", segments.dtype());
    if (q.device().is_cpu()) g.seg = segments.data<int64_t>();
  }
  return g;
}

}  // namespace

namespace detail {
void set_attention_backward_for_testing(AttentionBackward schedule) {
  g_backward_schedule.store(static_cast<int>(schedule));
}
}  // namespace detail

// q: (B, Hq, T, D), k, v: (B, Hkv, S, D) -> (B, Hq, T, D)
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                    const Tensor& segments) {
  const Geom g = check_inputs(q, k, v, causal, scale, segments);
  const DType dt = q.dtype();
  const Device dev = q.device();
  Tensor out = empty(q.shape(), dt, dev);
  Tensor lse;
  if (dev.is_cpu()) {
    dispatch_float(dt, kOp, [&](auto tag) {
      using T = typename decltype(tag)::type;
      lse = empty({g.B, g.Hq, g.T}, dtype_of<opmath_t<T>>);
      if (g.S == 0) {
        fill_(out, 0.0);
        fill_(lse, -std::numeric_limits<double>::infinity());
      } else if (out.numel() > 0) {
        attention_forward_cpu<T>(g, q, k, v, out, lse);
      }
    });
  }
  // Saved: the inputs (handles, no copies), the output and the row logsumexp.
  // The backward's Geom points into `segments`: the lambda keeps it alive.
  return record(kOp, out, {q, k, v}, {q, k, v, out, lse}, [g, segments](const BackwardArgs& a) {
    const Tensor q = a.saved(0), k = a.saved(1), v = a.saved(2);
    const bool want_q = a.needs_grad(0), want_kv = a.needs_grad(1) || a.needs_grad(2);
    Grads r;
    if (q.device().is_meta()) {
      if (want_q) r.dq = empty(q.shape(), q.dtype(), q.device());
      if (want_kv) {
        r.dk = empty(k.shape(), k.dtype(), k.device());
        r.dv = empty(v.shape(), v.dtype(), v.device());
      }
    } else {
      LOWBIT_CHECK(a.grad.shape() == q.shape(), kOp, ": backward: grad shape ", shape_str(a.grad.shape()),
                   " != output shape ", shape_str(q.shape()));
      check_same_device(kOp, a.grad, q);
      const Tensor dout = as_dtype(a.grad, q.dtype());
      const Tensor out = a.saved(3), lse = a.saved(4);
      dispatch_float(q.dtype(), kOp, [&](auto tag) {
        using T = typename decltype(tag)::type;
        r = attention_backward_cpu<T>(g, q, k, v, out, lse, dout, want_q, want_kv);
      });
    }
    return std::vector<Tensor>{want_q ? r.dq : Tensor(), a.needs_grad(1) ? r.dk : Tensor(),
                               a.needs_grad(2) ? r.dv : Tensor()};
  });
}

}  // namespace lowbit
