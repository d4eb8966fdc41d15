// oneDNN GEMM backend (compiled only when oneDNN is found; LOWBIT_HAVE_DNNL=1).
//
// One matmul primitive per problem geometry, created once and cached (mutex-protected map keyed
// by dtype, batch/broadcast, M, N, K, strides, transposes, alpha, beta and the thread count,
// which oneDNN's blocking depends on). Transposes and
// leading dimensions are expressed as memory-descriptor strides, so nothing is copied.
// alpha: output scale (attr.set_output_scales, oneDNN 2.x); beta: a sum post-op
// (dst = alpha * A@B + beta * dst). beta == 0 gets no sum post-op, so C is write-only.
// Batches: 3-D descriptors; a broadcast operand (batch stride 0) gets batch dim 1, which
// matmul broadcasts.
//
// Thread safety: primitives use a user-provided scratchpad (per-thread buffer) and a per-thread
// stream, so one cached primitive can run from any thread, also concurrently. (With oneDNN's
// default library-managed scratchpad, a primitive must run on the thread that created it.)
//
// If oneDNN offers only its reference implementation for a geometry (or none), the call goes to
// the Eigen backend instead: the reference kernel is orders of magnitude slower.
#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/cpu/isa.h"
#include "lowbit/engine/error.h"

namespace lowbit::cpu::detail {

namespace {

using dnnl::memory;

enum class Kind : uint8_t { f32, bf16 };

struct Key {
  Kind kind;
  bool ta, tb;
  int64_t batch, M, N, K, lda, ldb, ldc, sa, sb, sc;
  uint32_t alpha_bits, beta_bits;
  int threads;  // oneDNN plans a primitive's parallel split for the thread count at creation
  bool operator==(const Key& o) const {
    return threads == o.threads && kind == o.kind && ta == o.ta && tb == o.tb && batch == o.batch && M == o.M &&
           N == o.N && K == o.K && lda == o.lda && ldb == o.ldb && ldc == o.ldc && sa == o.sa &&
           sb == o.sb && sc == o.sc && alpha_bits == o.alpha_bits && beta_bits == o.beta_bits;
  }
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; h ^= h >> 29; };
    mix(static_cast<uint64_t>(k.kind) | (uint64_t(k.ta) << 8) | (uint64_t(k.tb) << 9));
    for (int64_t v : {k.batch, k.M, k.N, k.K, k.lda, k.ldb, k.ldc, k.sa, k.sb, k.sc})
      mix(static_cast<uint64_t>(v));
    mix((uint64_t(k.alpha_bits) << 32) | k.beta_bits);
    mix(static_cast<uint64_t>(k.threads));
    return static_cast<size_t>(h);
  }
};

struct Entry {
  bool fallback = false;  // no optimized oneDNN kernel: use Eigen
  dnnl::matmul prim;
  memory::desc src, wei, dst;
  size_t scratch_bytes = 0;
};

constexpr size_t kMaxCacheEntries = 4096;

struct Cache {
  std::mutex mu;
  std::unordered_map<Key, std::shared_ptr<const Entry>, KeyHash> map;
};
Cache& cache() {
  static Cache* c = new Cache;  // leaked: usable during static destruction
  return *c;
}

dnnl::engine& cpu_engine() {
  static dnnl::engine* e = [] {
    apply_isa_cap_to_onednn();  // before oneDNN reads ONEDNN_MAX_CPU_ISA
    return new dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return *e;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Descriptor of op(X) with logical dims (rows, cols) where the stored matrix has row stride ld;
// trans: op(X) is the transpose of the stored matrix. batch_stride 0 -> broadcast batch dim 1.
memory::desc make_desc(memory::data_type dt, int64_t batch, int64_t rows, int64_t cols, int64_t ld,
                       bool trans, int64_t batch_stride) {
  const int64_t rs = trans ? 1 : ld, cs = trans ? ld : 1;
  if (batch == 1) return memory::desc({rows, cols}, dt, {rs, cs});
  if (batch_stride == 0) {
    // Broadcast: batch dim 1; its stride is irrelevant but must look like a dense outer dim.
    const int64_t span = trans ? ld * cols : ld * rows;
    return memory::desc({1, rows, cols}, dt, {span, rs, cs});
  }
  return memory::desc({batch, rows, cols}, dt, {batch_stride, rs, cs});
}

std::shared_ptr<const Entry> create(const Key& k) {
  auto e = std::make_shared<Entry>();
  const auto in_dt = k.kind == Kind::f32 ? memory::data_type::f32 : memory::data_type::bf16;
  float alpha, beta;
  std::memcpy(&alpha, &k.alpha_bits, 4);
  std::memcpy(&beta, &k.beta_bits, 4);
  try {
    // Throws for layouts oneDNN cannot describe, e.g. input batches that overlap (a batch
    // stride smaller than one matrix: legal for read-only operands, handled by Eigen).
    e->src = make_desc(in_dt, k.batch, k.M, k.K, k.lda, k.ta, k.sa);
    e->wei = make_desc(in_dt, k.batch, k.K, k.N, k.ldb, k.tb, k.sb);
    e->dst = make_desc(memory::data_type::f32, k.batch, k.M, k.N, k.ldc, false, k.sc);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(e->src, e->wei, e->dst), attr, cpu_engine());
    const std::string impl = pd.impl_info_str();
    if (impl.rfind("ref", 0) == 0) {
      e->fallback = true;
    } else {
      e->scratch_bytes = pd.scratchpad_desc().get_size();
      e->prim = dnnl::matmul(pd);
    }
  } catch (const dnnl::error&) {
    e->fallback = true;  // undescribable layout, or unimplemented geometry/attributes
  }
  return e;
}

std::shared_ptr<const Entry> lookup(const Key& k) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.map.find(k);
    if (it != c.map.end()) return it->second;
  }
  auto e = create(k);  // outside the lock: creation JIT-compiles and can take milliseconds
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.map.size() >= kMaxCacheEntries) c.map.clear();
  return c.map.emplace(k, std::move(e)).first->second;
}

struct ThreadState {
  dnnl::stream stream{cpu_engine()};
  void* scratch = nullptr;
  size_t scratch_size = 0;
  ~ThreadState() { std::free(scratch); }
  void* scratchpad(size_t n) {
    if (n > scratch_size) {
      std::free(scratch);
      scratch_size = (n + 4095) & ~size_t{4095};
      scratch = std::aligned_alloc(64, scratch_size);
      LOWBIT_CHECK(scratch != nullptr, "gemm(onednn): cannot allocate ", n, " bytes of scratchpad");
    }
    return scratch;
  }
};
ThreadState& thread_state() {
  thread_local ThreadState t;
  return t;
}

template <class TA>
void run(Kind kind, const GemmShape& s, float alpha, const TA* A, const TA* B, float beta,
         float* C) {
  const Key key{kind,       s.trans_a,  s.trans_b,  s.batch,        s.M,
                s.N,        s.K,        s.lda,      s.ldb,          s.ldc,
                s.stride_a, s.stride_b, s.stride_c, bits_of(alpha), bits_of(beta == 0.0f ? 0.0f : beta),
                omp_in_parallel() ? 1 : omp_get_max_threads()};
  const std::shared_ptr<const Entry> e = lookup(key);
  if (e->fallback) {
    gemm_eigen(s, alpha, A, B, beta, C);
    return;
  }
  ThreadState& ts = thread_state();
  dnnl::engine& eng = cpu_engine();
  memory src(e->src, eng, const_cast<TA*>(A));
  memory wei(e->wei, eng, const_cast<TA*>(B));
  memory dst(e->dst, eng, C);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (e->scratch_bytes > 0) {
    memory::desc sd({static_cast<int64_t>(e->scratch_bytes)}, memory::data_type::u8, {1});
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(sd, eng, ts.scratchpad(e->scratch_bytes)));
  }
  try {
    e->prim.execute(ts.stream, args);
    ts.stream.wait();
  } catch (const dnnl::error& err) {
    LOWBIT_FAIL("gemm(onednn): matmul ", s.M, "x", s.N, "x", s.K, " (batch ", s.batch,
                ") failed: ", err.what());
  }
}

}  // namespace

void gemm_onednn(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
                 float* C) {
  run(Kind::f32, s, alpha, A, B, beta, C);
}

void gemm_onednn(const GemmShape& s, float alpha, const BFloat16* A, const BFloat16* B, float beta,
                 float* C) {
  run(Kind::bf16, s, alpha, A, B, beta, C);
}

std::string onednn_description(bool bf16) {
  const dnnl_version_t* v = dnnl_version();
  std::string out = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  const auto dt = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const int64_t n = 512;
  try {
    const memory::desc a({n, n}, dt, {n, 1}), b({n, n}, dt, {n, 1}), c({n, n}, memory::data_type::f32, {n, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), cpu_engine());
    const std::string impl = pd.impl_info_str();
    if (impl.rfind("ref", 0) == 0) return out + " has only its reference kernel (" + impl + "): Eigen runs it";
    return out + " " + impl;
  } catch (const dnnl::error&) {
    return out + " has no kernel: Eigen runs it";
  }
}

void onednn_clear_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.map.clear();
}

int64_t onednn_cache_size() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return static_cast<int64_t>(c.map.size());
}

}  // namespace lowbit::cpu::detail
