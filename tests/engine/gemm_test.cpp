// GEMM backends against a long-double reference and against each other.
//
// Tolerance. Every backend forms each C(i,j) as some ordering of K products summed in the
// accumulation type (blocked, split-K, FMA or not), then applies alpha and adds beta*C. The
// classic bound for any summation order is |fl - exact| <= gamma_K * sum_k |a_ik b_kj| with
// gamma_K = K u / (1 - K u); alpha, beta and the final add cost a few more roundings. We allow
//     tol(i,j) = (K_eff + 4) * u * (|alpha| * sum_k |a_ik||b_kj| + |beta| * |c_ij|)
// with u the unit roundoff of the accumulation type (2^-24 for f32 and for bf16 inputs, whose
// products are exact in f32; 2^-53 for f64) and K_eff the number of products summed into one
// output (K, or batch * K when the batch is reduced). The reference is computed in long double
// from the exact (for bf16: bf16-rounded) inputs, so its own error is negligible. Two backends
// may each be off by tol in opposite directions, so cross-backend checks allow 2 * tol. Index or
// layout bugs produce errors of order sum |a||b| itself, far above these bounds.
//
// Padding between rows/batches is filled with NaN: a kernel that reads padding produces NaN,
// and a kernel that writes padding of C is caught by comparing the padding bit-for-bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/error.h"

namespace lowbit::cpu {
namespace {

std::vector<GemmBackend> backends() {
  std::vector<GemmBackend> v{GemmBackend::Eigen};
  if (gemm_backend_available(GemmBackend::OneDNN)) v.push_back(GemmBackend::OneDNN);
  return v;
}

struct Case {
  int64_t batch = 1;
  bool ta = false, tb = false;
  int64_t M = 1, N = 1, K = 1;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra elements per stored row
  int64_t sa = -1, sb = -1, sc = -1;        // batch strides; -1 = dense (rows * ld)
  double alpha = 1.0, beta = 0.0;
  uint32_t seed = 1;

  int64_t a_rows() const { return ta ? K : M; }
  int64_t a_cols() const { return ta ? M : K; }
  int64_t b_rows() const { return tb ? N : K; }
  int64_t b_cols() const { return tb ? K : N; }
  int64_t lda() const { return a_cols() + pad_a; }
  int64_t ldb() const { return b_cols() + pad_b; }
  int64_t ldc() const { return N + pad_c; }
  int64_t stride_a() const { return sa >= 0 ? sa : a_rows() * lda(); }
  int64_t stride_b() const { return sb >= 0 ? sb : b_rows() * ldb(); }
  int64_t stride_c() const { return sc >= 0 ? sc : M * ldc(); }
  std::string str() const {
    return "batch=" + std::to_string(batch) + " ta=" + std::to_string(ta) + " tb=" +
           std::to_string(tb) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
           " K=" + std::to_string(K) + " strides=" + std::to_string(stride_a()) + "," +
           std::to_string(stride_b()) + "," + std::to_string(stride_c()) +
           " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta);
  }
};

// Routes every shape to oneDNN when it is selected (by default tiny ones run on Eigen).
struct MinWorkGuard {
  int64_t prev;
  explicit MinWorkGuard(int64_t w) : prev(detail::set_onednn_min_work(w)) {}
  ~MinWorkGuard() { detail::set_onednn_min_work(prev); }
};

// Buffer size for `batch` matrices of rows x ld at batch stride s.
int64_t extent(int64_t batch, int64_t rows, int64_t ld, int64_t s) {
  const int64_t nb = s == 0 ? 1 : batch;
  return (nb - 1) * s + rows * ld;
}

template <class T> struct Acc;
template <> struct Acc<float> { using type = float; static constexpr double u = 0x1p-24; };
template <> struct Acc<double> { using type = double; static constexpr double u = 0x1p-53; };
template <> struct Acc<BFloat16> { using type = float; static constexpr double u = 0x1p-24; };

template <class T> T from_double(double v) {
  if constexpr (std::is_same_v<T, BFloat16>) return BFloat16(static_cast<float>(v));
  else return static_cast<T>(v);
}
template <class T> double to_double(T v) {
  if constexpr (std::is_same_v<T, BFloat16>) return static_cast<double>(static_cast<float>(v));
  else return static_cast<double>(v);
}

template <class TC>
bool is_sentinel(TC v) {
  TC s = std::numeric_limits<TC>::quiet_NaN();
  return std::memcmp(&v, &s, sizeof(TC)) == 0;
}

// Inputs/outputs of one case; padding is NaN.
template <class TI>
struct Problem {
  using TC = typename Acc<TI>::type;
  Case c;
  std::vector<TI> A, B;
  std::vector<TC> C0;
  std::vector<char> c_valid;  // 1 where C is an output element

  explicit Problem(const Case& cs) : c(cs) {
    std::mt19937 rng(c.seed);
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    const TI nan_i = from_double<TI>(std::numeric_limits<double>::quiet_NaN());
    auto fill = [&](std::vector<TI>& v, int64_t rows, int64_t cols, int64_t ld, int64_t s) {
      v.assign(extent(c.batch, rows, ld, s), nan_i);
      const int64_t nb = s == 0 ? 1 : c.batch;
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) v[b * s + i * ld + j] = from_double<TI>(dist(rng));
    };
    fill(A, c.a_rows(), c.a_cols(), c.lda(), c.stride_a());
    fill(B, c.b_rows(), c.b_cols(), c.ldb(), c.stride_b());
    const TC nan_c = std::numeric_limits<TC>::quiet_NaN();
    const int64_t sc = c.stride_c(), nbc = sc == 0 ? 1 : c.batch;
    C0.assign(extent(c.batch, c.M, c.ldc(), sc), nan_c);
    c_valid.assign(C0.size(), 0);
    for (int64_t b = 0; b < nbc; ++b)
      for (int64_t i = 0; i < c.M; ++i)
        for (int64_t j = 0; j < c.N; ++j) {
          const int64_t o = b * sc + i * c.ldc() + j;
          c_valid[o] = 1;
          // beta == 0: C must not be read, so leave NaN there.
          if (c.beta != 0.0) C0[o] = static_cast<TC>(dist(rng));
        }
  }

  std::vector<TC> run(GemmBackend be) const {
    GemmBackendGuard guard(be);
    MinWorkGuard all_on_onednn(0);  // small shapes too
    std::vector<TC> C = C0;
    using S = TC;
    if (c.batch == 1 && c.sa < 0 && c.sb < 0 && c.sc < 0) {
      gemm(c.ta, c.tb, c.M, c.N, c.K, static_cast<S>(c.alpha), A.data(), c.lda(), B.data(),
           c.ldb(), static_cast<S>(c.beta), C.data(), c.ldc());
    } else {
      gemm_batched(c.batch, c.ta, c.tb, c.M, c.N, c.K, static_cast<S>(c.alpha), A.data(), c.lda(),
                   c.stride_a(), B.data(), c.ldb(), c.stride_b(), static_cast<S>(c.beta),
                   C.data(), c.ldc(), c.stride_c());
    }
    return C;
  }

  // Reference values and tolerances at every C element (invalid positions unused).
  void reference(std::vector<long double>& ref, std::vector<double>& tol) const {
    ref.assign(C0.size(), 0.0L);
    tol.assign(C0.size(), 0.0);
    std::vector<long double> bound(C0.size(), 0.0L);
    const int64_t sa = c.stride_a(), sb = c.stride_b(), sc = c.stride_c();
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t i = 0; i < c.M; ++i)
        for (int64_t j = 0; j < c.N; ++j) {
          long double s = 0, sabs = 0;
          for (int64_t k = 0; k < c.K; ++k) {
            const int64_t ia = b * sa + (c.ta ? k * c.lda() + i : i * c.lda() + k);
            const int64_t ib = b * sb + (c.tb ? j * c.ldb() + k : k * c.ldb() + j);
            const long double p = static_cast<long double>(to_double(A[ia])) * to_double(B[ib]);
            s += p;
            sabs += std::fabs(p);
          }
          const int64_t o = b * sc + i * c.ldc() + j;
          ref[o] += static_cast<long double>(c.alpha) * s;
          bound[o] += std::fabs(static_cast<long double>(c.alpha)) * sabs;
        }
    const int64_t keff = c.K * (sc == 0 ? c.batch : 1);
    for (size_t o = 0; o < C0.size(); ++o) {
      if (!c_valid[o]) continue;
      if (c.beta != 0.0) {
        ref[o] += static_cast<long double>(c.beta) * C0[o];
        bound[o] += std::fabs(static_cast<long double>(c.beta) * C0[o]);
      }
      tol[o] = static_cast<double>((keff + 4) * Acc<TI>::u * bound[o]) + 1e-300;
    }
  }
};

// Runs `cs` on every available backend (or only `only`), checks each against the reference,
// that C's padding is untouched, and that the backends agree with each other.
template <class TI>
void check_case(const Case& cs, const GemmBackend* only = nullptr) {
  Problem<TI> p(cs);
  std::vector<long double> ref;
  std::vector<double> tol;
  p.reference(ref, tol);
  std::vector<GemmBackend> bes = only ? std::vector<GemmBackend>{*only} : backends();
  std::vector<std::vector<typename Problem<TI>::TC>> outs;
  for (GemmBackend be : bes) {
    outs.push_back(p.run(be));
    const auto& C = outs.back();
    int bad = 0;
    for (size_t o = 0; o < C.size() && bad < 3; ++o) {
      if (!p.c_valid[o]) {
        if (!is_sentinel(C[o])) {
          ADD_FAILURE() << gemm_backend_name(be) << " wrote padding at " << o << ": " << cs.str();
          ++bad;
        }
        continue;
      }
      const double err = std::fabs(static_cast<double>(C[o] - ref[o]));
      if (!(err <= tol[o])) {
        ADD_FAILURE() << gemm_backend_name(be) << " C[" << o << "]=" << C[o] << " ref="
                      << static_cast<double>(ref[o]) << " err=" << err << " tol=" << tol[o]
                      << ": " << cs.str();
        ++bad;
      }
    }
  }
  for (size_t k = 1; k < outs.size(); ++k)
    for (size_t o = 0; o < outs[0].size(); ++o) {
      if (!p.c_valid[o]) continue;
      const double d = std::fabs(static_cast<double>(outs[0][o]) - static_cast<double>(outs[k][o]));
      ASSERT_LE(d, 2 * tol[o]) << gemm_backend_name(bes[0]) << " vs " << gemm_backend_name(bes[k])
                               << " at " << o << ": " << cs.str();
    }
}

// Odd sizes, all transpose combinations, padded leading dimensions, alpha/beta variants.
template <class TI>
void sweep(const std::vector<int64_t>& sizes) {
  uint32_t seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t M : sizes)
        for (int64_t N : sizes)
          for (int64_t K : sizes) {
            Case c;
            c.ta = ta, c.tb = tb, c.M = M, c.N = N, c.K = K;
            c.pad_a = (M + K) % 3, c.pad_b = 1 + (N % 2), c.pad_c = 2 * (K % 2);
            const int v = static_cast<int>(seed % 3);
            c.alpha = v == 0 ? 1.0 : v == 1 ? 0.75 : -1.5;
            c.beta = v == 0 ? 0.0 : v == 1 ? 1.0 : -0.5;
            c.seed = seed++;
            check_case<TI>(c);
            if (::testing::Test::HasFailure()) return;
          }
}

const std::vector<int64_t> kOddSizes{1, 7, 33, 65};

TEST(Gemm, F32SweepTransposesOddSizes) { sweep<float>(kOddSizes); }
TEST(Gemm, Bf16SweepTransposesOddSizes) { sweep<BFloat16>(kOddSizes); }
TEST(Gemm, F64SweepTransposesOddSizes) { sweep<double>({1, 7, 33}); }

TEST(Gemm, MediumShapesAllBackends) {
  // Big enough for the blocked/threaded kernels; the bf16 Eigen path tiles K and N at 1024.
  const Case shapes[] = {
      {1, false, false, 72, 130, 150, 1, 3, 2, -1, -1, -1, 1.0, 0.0, 11},
      {1, true, false, 64, 96, 257, 0, 0, 5, -1, -1, -1, 0.5, 1.0, 12},
      {1, false, true, 80, 48, 200, 4, 0, 0, -1, -1, -1, 1.0, -1.0, 13},
      {1, true, true, 77, 61, 129, 2, 2, 2, -1, -1, -1, 2.0, 0.25, 14},
      {1, false, false, 2, 1030, 1040, 0, 1, 0, -1, -1, -1, 1.0, 0.5, 15},
      {1, true, true, 1030, 2, 5, 0, 0, 0, -1, -1, -1, 1.0, 0.0, 16},
  };
  for (const Case& c : shapes) {
    check_case<float>(c);
    check_case<BFloat16>(c);
  }
}

TEST(Gemm, F64IgnoresOneDnnSelection) {
  Case c{1, true, false, 20, 30, 40, 1, 2, 3, -1, -1, -1, 1.5, 0.5, 21};
  check_case<double>(c);  // with OneDNN selected, f64 still runs (on Eigen)
}

TEST(Gemm, ZeroSizesAndAlphaZero) {
  const float* no = nullptr;
  for (GemmBackend be : backends()) {
    GemmBackendGuard g(be);
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 1, 1, 1};
    float c[4] = {1, 2, 3, 4};
    gemm(false, false, 0, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);  // M == 0: no-op
    EXPECT_EQ(c[0], 1.0f);
    gemm(false, false, 2, 2, 0, 1.0f, no, 1, no, 2, 2.0f, c, 2);  // K == 0: C *= beta
    EXPECT_EQ(c[3], 8.0f);
    gemm(false, false, 2, 2, 2, 0.0f, a, 2, b, 2, 0.5f, c, 2);  // alpha == 0: C *= beta
    EXPECT_EQ(c[3], 4.0f);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    float cn[4] = {nan, nan, nan, nan};
    gemm(false, false, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, cn, 2);  // beta == 0: C not read
    EXPECT_EQ(cn[0], 3.0f);
    EXPECT_EQ(cn[3], 7.0f);
    float cz[4] = {nan, nan, nan, nan};
    gemm(false, false, 2, 2, 0, 1.0f, no, 1, no, 2, 0.0f, cz, 2);  // K == 0, beta == 0: zeros
    EXPECT_EQ(cz[2], 0.0f);
    // Batched reduction with K == 0 scales C once.
    float cr[4] = {1, 2, 3, 4};
    gemm_batched(3, false, false, 2, 2, 0, 1.0f, no, 1, 0, no, 2, 0, 3.0f, cr, 2, 0);
    EXPECT_EQ(cr[1], 6.0f);
  }
}

// Batched: dense, padded strides, broadcast A or B (stride 0), reduction (stride_c 0), and the
// layouts the front end folds into one GEMM (M, N and K folds).
std::vector<Case> batched_cases() {
  std::vector<Case> v;
  uint32_t seed = 100;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t batch : {3, 4}) {
        auto add = [&](Case c) {
          c.batch = batch, c.ta = ta, c.tb = tb, c.seed = seed++;
          v.push_back(c);
        };
        Case c;
        c.ta = ta, c.tb = tb;  // before computing strides from the stored shapes
        c.M = 9, c.N = 17, c.K = 33, c.alpha = 1.0, c.beta = 0.0;
        add(c);                                   // dense
        c.pad_a = 1, c.pad_b = 2, c.pad_c = 3;    // padded rows
        c.sa = c.stride_a() + 5, c.sb = c.stride_b() + 7, c.sc = c.stride_c() + 11;
        c.beta = 0.5;
        add(c);                                   // padded batch strides
        c.sa = c.lda(), c.sb = 2 * c.ldb();       // overlapping (sliding-window) input batches
        add(c);
        Case bb;                                  // B broadcast, A/C stacked: M fold
        bb.ta = ta, bb.tb = tb;
        bb.M = 7, bb.N = 33, bb.K = 65, bb.sb = 0, bb.alpha = 0.5, bb.beta = 1.0;
        add(bb);
        Case bc = bb;                             // A stacked but C batches padded: no fold
        bc.sc = bc.stride_c() + 3;
        add(bc);
        bb.pad_a = 2, bb.sa = bb.stride_a() + 3;  // B broadcast, not foldable
        add(bb);
        Case ab;                                  // A broadcast
        ab.ta = ta, ab.tb = tb;
        ab.M = 5, ab.N = 9, ab.K = 17, ab.sa = 0, ab.beta = -1.0;
        add(ab);
        Case red;                                 // reduction over the batch (stride_c 0)
        red.ta = ta, red.tb = tb;
        red.M = 11, red.N = 6, red.K = 13, red.sc = 0, red.beta = 0.5;
        add(red);
        red.sb = 0;                               // reduction with B broadcast
        add(red);
      }
  // N fold: A broadcast, C_b side by side in one row block, B_b side by side (or stacked if tb).
  for (bool tb : {false, true}) {
    Case c;
    c.batch = 3, c.tb = tb, c.M = 6, c.N = 5, c.K = 7, c.sa = 0, c.alpha = 1.0, c.beta = 0.0;
    c.sc = c.N, c.pad_c = 2 * c.N + 1;  // ldc = 3N + 1
    if (tb) c.sb = c.N * c.K;           // B_b stored (N,K) stacked: rows of one (3N, K) matrix
    else c.sb = c.N, c.pad_b = 2 * c.N; // B_b stored (K,N) side by side in a (K, 3N) matrix
    c.seed = seed++;
    v.push_back(c);
    c.sc = -1;  // same B layout and ldc, but C batches stacked: no N fold
    c.seed = seed++;
    v.push_back(c);
  }
  // K fold: reduction with A_b, B_b consecutive along K (the weight-gradient layout).
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Case c;
      c.batch = 4, c.ta = ta, c.tb = tb, c.M = 10, c.N = 12, c.K = 9, c.sc = 0, c.beta = 0.0;
      if (ta) c.sa = c.K * c.M;               // A_b stored (K,M): stacked rows
      else c.sa = c.K, c.pad_a = 3 * c.K;     // A_b stored (M,K): side by side
      if (tb) c.sb = c.K, c.pad_b = 3 * c.K;  // B_b stored (N,K): side by side
      else c.sb = c.K * c.N;                  // B_b stored (K,N): stacked rows
      c.seed = seed++;
      v.push_back(c);
      c.sb += c.ldb();  // B batches one row further apart: no K fold
      c.seed = seed++;
      v.push_back(c);
    }
  return v;
}

TEST(Gemm, BatchedF32) {
  for (const Case& c : batched_cases()) check_case<float>(c);
}
TEST(Gemm, BatchedBf16) {
  for (const Case& c : batched_cases()) check_case<BFloat16>(c);
}
TEST(Gemm, BatchedF64) {
  const GemmBackend eigen = GemmBackend::Eigen;
  for (const Case& c : batched_cases()) check_case<double>(c, &eigen);
}
TEST(Gemm, BatchedManySmall) {
  // Attention-like: many small batches (Eigen runs them in parallel, one GEMM per thread).
  Case c{16, false, true, 24, 24, 16, 0, 0, 0, -1, -1, -1, 0.25, 0.0, 7};
  check_case<float>(c);
  check_case<BFloat16>(c);
}

TEST(Gemm, RejectsBadArguments) {
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 0.0f);
  EXPECT_THROW(gemm(false, false, -1, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2),
               Error);
  EXPECT_THROW(gemm(false, false, 2, 2, 3, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2),
               Error);  // lda < K
  EXPECT_THROW(gemm(true, false, 4, 2, 3, 1.0f, a.data(), 3, b.data(), 2, 0.0f, c.data(), 2),
               Error);  // trans_a: lda < M
  EXPECT_THROW(gemm(false, true, 2, 4, 3, 1.0f, a.data(), 3, b.data(), 2, 0.0f, c.data(), 4),
               Error);  // trans_b: ldb < K
  EXPECT_THROW(gemm(false, false, 2, 4, 3, 1.0f, a.data(), 3, b.data(), 4, 0.0f, c.data(), 3),
               Error);  // ldc < N
  EXPECT_THROW(gemm(false, false, 2, 2, 2, 1.0f, nullptr, 2, b.data(), 2, 0.0f, c.data(), 2),
               Error);
  EXPECT_THROW(gemm_batched(2, false, false, 2, 2, 2, 1.0f, a.data(), 2, 4, b.data(), 2, 4, 0.0f,
                            c.data(), 2, 3),
               Error);  // output batches overlap
  EXPECT_THROW(gemm_batched(2, false, false, 2, 2, 2, 1.0f, a.data(), 2, -4, b.data(), 2, 4, 0.0f,
                            c.data(), 2, 4),
               Error);  // negative stride
  EXPECT_THROW(gemm_batched(-1, false, false, 2, 2, 2, 1.0f, a.data(), 2, 4, b.data(), 2, 4, 0.0f,
                            c.data(), 2, 4),
               Error);
  try {
    gemm(false, false, 2, 2, 3, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lda=2"), std::string::npos) << e.what();
  }
}

TEST(Gemm, BackendSelection) {
  EXPECT_TRUE(gemm_backend_available(GemmBackend::Eigen));
  const GemmBackend before = gemm_backend();
  EXPECT_EQ(before, default_gemm_backend());
#if defined(LOWBIT_HAVE_DNNL)
  EXPECT_EQ(default_gemm_backend(), GemmBackend::OneDNN);
#else
  EXPECT_EQ(default_gemm_backend(), GemmBackend::Eigen);
  EXPECT_THROW(set_gemm_backend(GemmBackend::OneDNN), Error);
#endif
  {
    GemmBackendGuard g(GemmBackend::Eigen);
    EXPECT_EQ(gemm_backend(), GemmBackend::Eigen);
  }
  EXPECT_EQ(gemm_backend(), before);
}

TEST(Gemm, OneDnnCacheAndThreads) {
  if (!gemm_backend_available(GemmBackend::OneDNN)) GTEST_SKIP() << "oneDNN not built";
#if defined(LOWBIT_HAVE_DNNL)
  GemmBackendGuard g(GemmBackend::OneDNN);
  detail::onednn_clear_cache();
  {  // below the work threshold, the OneDNN selection runs on Eigen: no primitive is created
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 1, 1, 1}, c[4];
    gemm(false, false, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    EXPECT_EQ(c[1], 3.0f);
    EXPECT_EQ(detail::onednn_cache_size(), 0);
  }
  const int64_t M = 48, N = 40, K = 56;
  std::vector<float> a(M * K), b(K * N);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-1, 1);
  for (auto& x : a) x = d(rng);
  for (auto& x : b) x = d(rng);
  std::vector<float> c0(M * N);
  gemm(false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c0.data(), N);
  gemm(false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c0.data(), N);
  EXPECT_EQ(detail::onednn_cache_size(), 1);  // same geometry reuses the primitive
  // The primitive created on this thread runs from other threads, concurrently.
  std::vector<std::vector<float>> outs(2, std::vector<float>(M * N));
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)
    ts.emplace_back([&, t] {
      for (int r = 0; r < 20; ++r)
        gemm(false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, outs[t].data(), N);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(outs[0], c0);
  EXPECT_EQ(outs[1], c0);
  EXPECT_EQ(detail::onednn_cache_size(), 1);
#endif
}

}  // namespace
}  // namespace lowbit::cpu
