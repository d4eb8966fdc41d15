// Integer GEMM (int_gemm.h): an AVX-512 VNNI kernel, an AVX2 kernel and a portable one, all forming the exact
// int32 sum of every (row, column, K segment) and applying the scales in the same f32 operations.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports -W(maybe-)uninitialized inside its own AVX-512 intrinsics (_mm512_undefined_*);
// the values are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "lowbit/quant/int_gemm.h"

#include "lowbit/engine/cpu/isa.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "lowbit/quant/scaled_codecs.h"
#include "lowbit/quant/tile_decode.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LOWBIT_INT_GEMM_X86 1
#endif

namespace lowbit::quant::detail {

namespace {

constexpr int64_t kMC = 256;  // output rows per task
constexpr int64_t kNC = 256;  // output columns per task
constexpr int64_t kKC = 256;  // K per tile of the portable kernel

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int threads_for(int64_t tasks) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), tasks)));
}

// Per-thread byte scratch, allocated as tensors so the allocator's peak counter sees it.
struct Scratch {
  std::vector<Tensor> bufs;
  Scratch(int threads, int64_t bytes) {
    for (int t = 0; t < threads; ++t) bufs.push_back(empty({bytes}, DType::u8));
  }
  uint8_t* get(int t) { return bufs[static_cast<size_t>(t)].data<uint8_t>(); }
};

// Runs f(m0, m1, n0, n1, scratch) for every block of kMC rows x nc columns of y (M, N): each
// block on one thread, in a dynamic schedule, with `bytes` of that thread's scratch.
template <class F>
void for_each_block(int64_t M, int64_t N, int64_t nc, int64_t bytes, F f) {
  const int64_t nb = ceil_div(N, nc), tasks = ceil_div(M, kMC) * nb;
  const int threads = threads_for(tasks);
  Scratch scratch(threads, bytes);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t m0 = (t / nb) * kMC, n0 = (t % nb) * nc;
    f(m0, std::min(M, m0 + kMC), n0, std::min(N, n0 + nc), scratch.get(omp_get_thread_num()));
  }
}

// One operand's scale groups along K: dequant multiplier (torchao: scale; modelopt: 1 / s') and
// integer zero point of group h.
struct IntOperand {
  KGroups groups;
  const float* scale;
  const float* zero_point;  // null when symmetric
  bool reciprocal;
  float mult(int64_t h) const { return reciprocal ? 1.0f / scale[h] : scale[h]; }
  int32_t zp(int64_t h) const { return zero_point ? static_cast<int32_t>(zero_point[h]) : 0; }
  // f(g, h) for the nseg segments of length seg (a divisor of groups.seg) of row r: h = group.
  template <class F>
  void for_segments(int64_t r, int64_t seg, int64_t nseg, F f) const {
    const int64_t base = groups.group(r, 0), per_group = groups.seg / seg;
    for (int64_t h = base, g = 0; g < nseg; ++h)
      for (int64_t t = 0; t < per_group; ++t, ++g) f(g, h);
  }
};

IntOperand int_operand(const QTensor& q) {
  const Kind k = kind_of(q.spec);
  return {k_groups(q), q.scales.data<float>(),
          k == Kind::int_torchao_asym ? q.zero_points.data<float>() : nullptr, k == Kind::int_modelopt};
}

struct Problem {
  int64_t M, N, K, seg;
  const int8_t* a;  // (M, K) codes
  IntOperand pa, pb;
};

// y (M, N): b's codes decoded transposed to int16 per (kKC, kNC) tile, int32 sums per segment
// in a (kMC, kNC) accumulator tile.
void portable_matmul(const Problem& P, const QTensor& b, float* y) {
  const int64_t M = P.M, N = P.N, K = P.K, seg = P.seg;
  // Per thread: int16 codes of b transposed (kKC, kNC), int32 accumulators (kMC, kNC), column
  // sums and multipliers (kNC).
  const int64_t bytes = 2 * kKC * kNC + 4 * kMC * kNC + 8 * kNC;
  for_each_block(M, N, kNC, bytes, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1, uint8_t* base) {
    const int64_t mc = m1 - m0, nc = n1 - n0;
    auto* bt = reinterpret_cast<int16_t*>(base);                 // (kc, nc)
    auto* acc = reinterpret_cast<int32_t*>(bt + kKC * kNC);      // (mc, nc)
    auto* csum = acc + kMC * kNC;                                // (nc)
    auto* fb = reinterpret_cast<float*>(csum + kNC);             // (nc)
    std::fill(acc, acc + mc * nc, 0);
    std::fill(csum, csum + nc, 0);
    for (int64_t m = m0; m < m1; ++m) std::fill(y + m * N + n0, y + m * N + n1, 0.0f);
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int64_t kc = std::min(kKC, K - k0);
      decode_codes_transposed(b, n0, n1, k0, k0 + kc, bt, nc);
      // Runs [ks, ke) that end at a tile edge or a segment edge.
      for (int64_t ks = k0; ks < k0 + kc;) {
        const int64_t ke = std::min(k0 + kc, (ks / seg + 1) * seg);
        for (int64_t k = ks; k < ke; ++k) {
          const int16_t* bk = bt + (k - k0) * nc;
          for (int64_t n = 0; n < nc; ++n) csum[n] += bk[n];
        }
        for (int64_t m = 0; m < mc; ++m) {
          const int8_t* ar = P.a + (m0 + m) * K;
          int32_t* am = acc + m * nc;
          int64_t k = ks;
          // acc[m, :] += Σ_k qa[m, k] · qb[:, k], four k per pass over the accumulator row
          for (; k + 4 <= ke; k += 4) {
            const int32_t a0 = ar[k], a1 = ar[k + 1], a2 = ar[k + 2], a3 = ar[k + 3];
            const int16_t* b0 = bt + (k - k0) * nc;
            const int16_t *b1 = b0 + nc, *b2 = b1 + nc, *b3 = b2 + nc;
            for (int64_t n = 0; n < nc; ++n) am[n] += a0 * b0[n] + a1 * b1[n] + a2 * b2[n] + a3 * b3[n];
          }
          for (; k < ke; ++k) {
            const int32_t av = ar[k];
            const int16_t* bk = bt + (k - k0) * nc;
            for (int64_t n = 0; n < nc; ++n) am[n] += av * bk[n];
          }
        }
        if (ke % seg == 0) {  // a segment is complete: apply its scales once
          for (int64_t n = 0; n < nc; ++n) fb[n] = P.pb.mult(P.pb.groups.group(n0 + n, ke - 1));
          for (int64_t m = 0; m < mc; ++m) {
            const int64_t ha = P.pa.groups.group(m0 + m, ke - 1);
            const float fa = P.pa.mult(ha);
            const int64_t za = P.pa.zp(ha);
            int32_t* am = acc + m * nc;
            float* yr = y + (m0 + m) * N + n0;
            for (int64_t n = 0; n < nc; ++n) {
              yr[n] = std::fma(fa * fb[n], static_cast<float>(am[n] - za * csum[n]), yr[n]);
              am[n] = 0;
            }
          }
          std::fill(csum, csum + nc, 0);
        }
        ks = ke;
      }
    }
  });
}

#ifdef LOWBIT_INT_GEMM_X86

#define LOWBIT_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#define LOWBIT_AVX2 __attribute__((target("avx2,fma")))

constexpr int kNV = 2;             // 16-column vectors per panel
constexpr int64_t kNR = 16 * kNV;  // panel width: columns of y (rows of b) per kernel call
constexpr int kMR = 6;             // rows of a per kernel call

// b's rows [n0, n0 + nr) (nr <= kNR) packed for the kernel, with cb = 128 (int8) or 8 (int4):
//   codes (K / 4, kNR, 4) u8: codes[q][j][t] = qb[n0 + j, 4q + t] + cb (j >= nr: cb, code 0)
//   fb    (nseg, kNR) f32: b's multiplier of (n0 + j, segment g) (0 for j >= nr)
//   csum  (nseg, kNR) s32: Σ_(k in g) qb[n0 + j, k] (filled only when a is asymmetric)
struct Panel {
  uint8_t* codes;
  float* fb;
  int32_t* csum;
  int64_t nr;
};

// a's rows [m, m + mr) (mr <= kMR), each (kMR, nseg): multiplier, zero point, and the shift's
// correction sub = cb Σ_(k in g) qa[m + i, k].
struct Rows {
  float* fa;
  int32_t* za;
  int32_t* sub;
};

int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// r[i] dword j -> r[j] dword i (16 x 16 dwords).
LOWBIT_VNNI inline __attribute__((always_inline)) void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // r[4b + c], 128-bit lane l: dword 4l + c of rows 4b .. 4b + 3
  for (int b = 0; b < 16; b += 4) {
    r[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
    r[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
    r[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
    r[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i x0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x44), x1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xEE);
    const __m512i y0 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x44);
    const __m512i y1 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xEE);
    t[c] = _mm512_shuffle_i32x4(x0, y0, 0x88);
    t[4 + c] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
    t[8 + c] = _mm512_shuffle_i32x4(x1, y1, 0x88);
    t[12 + c] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Fills panel p for b's rows [n0, n0 + p.nr): codes (per 16 rows x 16 quads: 16 row loads, int4
// nibbles spread to bytes in k order, + cb, one 16 x 16 dword transpose), csum when `sums` (from
// the packed bytes: Σ (qb + cb) − cb · seg), fb (16 x 16 transposes of b's multipliers where
// segments are b's groups, else element by element).
LOWBIT_VNNI void pack_panel(const QTensor& b, const IntOperand& pb, int64_t n0, int64_t seg, bool sums, const Panel& p) {
  const int64_t K = b.shape.back(), quads = K / 4, nseg = K / seg;
  const bool int4 = b.spec.format == Format::int4;
  const int32_t cb = int4 ? 8 : 128;
  const int64_t row_bytes = int4 ? K / 2 : K;
  const auto* codes = static_cast<const uint8_t*>(b.codes.raw_data()) + n0 * row_bytes;
  const __m512i shift = _mm512_set1_epi8(static_cast<char>(cb)), low = _mm512_set1_epi16(0x0F0F);
  const __m512i ones = _mm512_set1_epi8(1), seg_shift = _mm512_set1_epi32(cb * static_cast<int32_t>(seg));
  for (int v = 0; v < kNV; ++v) {
    __m512i sum = _mm512_setzero_si512();
    int64_t seg_left = seg / 4, g = 0;  // quads still to sum in segment g
    for (int64_t q0 = 0; q0 < quads; q0 += 16) {
      const int64_t nq = std::min<int64_t>(16, quads - q0);
      __m512i r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t row = 16 * v + i;
        const uint8_t* src = codes + std::min(row, p.nr - 1) * row_bytes + (int4 ? 2 : 4) * q0;
        if (row >= p.nr) {
          r[i] = shift;
        } else if (int4) {  // byte j = k 2j (low nibble) | k 2j + 1 (high): word j -> bytes (low, high)
          const __m256i x = nq == 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))
                                     : _mm256_maskz_loadu_epi8(static_cast<__mmask32>((uint64_t{1} << (2 * nq)) - 1), src);
          const __m512i w = _mm512_cvtepu8_epi16(x);
          r[i] = _mm512_xor_si512(_mm512_and_si512(_mm512_or_si512(w, _mm512_slli_epi16(w, 4)), low), shift);
        } else {
          const __m512i x = nq == 16 ? _mm512_loadu_si512(src) : _mm512_maskz_loadu_epi8((uint64_t{1} << (4 * nq)) - 1, src);
          r[i] = _mm512_xor_si512(x, shift);
        }
      }
      transpose16(r);
      for (int64_t j = 0; j < nq; ++j) {
        _mm512_storeu_si512(p.codes + ((q0 + j) * kNR + 16 * v) * 4, r[j]);
        if (!sums) continue;
        sum = _mm512_dpbusd_epi32(sum, r[j], ones);
        if (--seg_left == 0) {
          _mm512_storeu_si512(p.csum + g++ * kNR + 16 * v, _mm512_sub_epi32(sum, seg_shift));
          sum = _mm512_setzero_si512();
          seg_left = seg / 4;
        }
      }
    }
  }
  if (pb.groups.seg != seg) {
    for (int64_t j = 0; j < kNR; ++j) {
      if (j < p.nr) pb.for_segments(n0 + j, seg, nseg, [&](int64_t g, int64_t h) { p.fb[g * kNR + j] = pb.mult(h); });
      else for (int64_t g = 0; g < nseg; ++g) p.fb[g * kNR + j] = 0.0f;
    }
    return;
  }
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int v = 0; v < kNV; ++v)
    for (int64_t g0 = 0; g0 < nseg; g0 += 16) {
      const int64_t ng = std::min<int64_t>(16, nseg - g0);
      const auto live = static_cast<__mmask16>((1u << ng) - 1);
      __m512i r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t row = 16 * v + i;
        if (row >= p.nr) {
          r[i] = _mm512_setzero_si512();
          continue;
        }
        const __m512 s = _mm512_maskz_loadu_ps(live, pb.scale + pb.groups.group(n0 + row, 0) + g0);
        r[i] = _mm512_castps_si512(pb.reciprocal ? _mm512_maskz_div_ps(live, one, s) : s);
      }
      transpose16(r);
      for (int64_t t = 0; t < ng; ++t) _mm512_storeu_si512(p.fb + (g0 + t) * kNR + 16 * v, r[t]);
    }
}

// y[0:MR, 0:p.nr] (row stride ldy) = Σ_g fma(fa[i, g] · fb[g, j], float(S_g[i, j]), ·) for MR rows
// of a's codes (a[i * lda + k]) against one panel, where
//   S_g[i, j] = Σ_(k in g) (qb[j, k] + cb) qa[i, k] − sub[i, g] (− za[i, g] csum[g, j])
// (vpdpbusd: u8 (b + cb) x s8 (a) summed four k at a time into int32; wrap-around is harmless
// because the final S_g fits in int32).
template <int MR, bool kAsym>
LOWBIT_VNNI void vnni_kernel(const int8_t* a, int64_t lda, const Panel& p, const Rows& r, int64_t nseg,
                             int64_t seg, float* y, int64_t ldy) {
  __m512 yacc[MR][kNV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < kNV; ++v) yacc[i][v] = _mm512_setzero_ps();
  const uint8_t* bp = p.codes;
  const int8_t* ak = a;
  for (int64_t g = 0; g < nseg; ++g) {
    __m512i acc[MR][kNV];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_setzero_si512();
    for (int64_t q = 0; q < seg / 4; ++q, bp += 4 * kNR, ak += 4) {
      __m512i bv[kNV];
      for (int v = 0; v < kNV; ++v) bv[v] = _mm512_loadu_si512(bp + 64 * v);
      for (int i = 0; i < MR; ++i) {
        const __m512i av = _mm512_set1_epi32(load_i32(ak + i * lda));
        for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], bv[v], av);
      }
    }
    for (int i = 0; i < MR; ++i) {
      const int64_t e = i * nseg + g;
      const __m512 fa = _mm512_set1_ps(r.fa[e]);
      const __m512i sub = _mm512_set1_epi32(r.sub[e]);
      for (int v = 0; v < kNV; ++v) {
        __m512i s = _mm512_sub_epi32(acc[i][v], sub);
        if constexpr (kAsym)
          s = _mm512_sub_epi32(s, _mm512_mullo_epi32(_mm512_set1_epi32(r.za[e]),
                                                     _mm512_loadu_si512(p.csum + g * kNR + 16 * v)));
        const __m512 mult = _mm512_mul_ps(fa, _mm512_loadu_ps(p.fb + g * kNR + 16 * v));
        yacc[i][v] = _mm512_fmadd_ps(mult, _mm512_cvtepi32_ps(s), yacc[i][v]);
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < kNV; ++v) {
      const int64_t cols = std::min<int64_t>(p.nr - 16 * v, 16);
      if (cols == 16) _mm512_storeu_ps(y + i * ldy + 16 * v, yacc[i][v]);
      else if (cols > 0) _mm512_mask_storeu_ps(y + i * ldy + 16 * v, static_cast<__mmask16>((1u << cols) - 1), yacc[i][v]);
    }
}

using KernelFn = void (*)(const int8_t*, int64_t, const Panel&, const Rows&, int64_t, int64_t, float*, int64_t);

template <bool kAsym>
KernelFn kernel_for(int64_t mr) {
  switch (mr) {
    case 1: return vnni_kernel<1, kAsym>;
    case 2: return vnni_kernel<2, kAsym>;
    case 3: return vnni_kernel<3, kAsym>;
    case 4: return vnni_kernel<4, kAsym>;
    case 5: return vnni_kernel<5, kAsym>;
    default: return vnni_kernel<kMR, kAsym>;
  }
}

// y (M, N): a task owns rows [m0, m1) x whole panels [n0, n1) (packed codes of ~256 KiB, L2
// resident); for each kMR-row strip of a it runs the kernel over every panel.
void vnni_matmul(const Problem& P, const QTensor& a, const QTensor& b, float* y) {
  const int64_t M = P.M, N = P.N, K = P.K, seg = P.seg, nseg = K / seg;
  const bool asym = kind_of(a.spec) == Kind::int_torchao_asym;
  const int32_t cb = b.spec.format == Format::int8 ? 128 : 8;
  const int64_t nc = std::clamp<int64_t>((int64_t{1} << 18) / K / kNR * kNR, kNR, kNC);
  const int64_t panels = nc / kNR;
  const int64_t panel_bytes = kNR * K + 8 * nseg * kNR;  // codes, fb, csum
  const int64_t bytes = panels * panel_bytes + 12 * kMR * nseg;
  for_each_block(M, N, nc, bytes, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1, uint8_t* base) {
    Panel pan[kNC / kNR];
    const int64_t np = ceil_div(n1 - n0, kNR);
    for (int64_t p = 0; p < np; ++p) {
      uint8_t* codes = base + p * panel_bytes;
      auto* fb = reinterpret_cast<float*>(codes + kNR * K);
      pan[p] = {codes, fb, reinterpret_cast<int32_t*>(fb + nseg * kNR), std::min(kNR, n1 - n0 - p * kNR)};
      pack_panel(b, P.pb, n0 + p * kNR, seg, asym, pan[p]);
    }
    auto* fa = reinterpret_cast<float*>(base + panels * panel_bytes);
    Rows rows{fa, reinterpret_cast<int32_t*>(fa + kMR * nseg), reinterpret_cast<int32_t*>(fa + 2 * kMR * nseg)};
    for (int64_t m = m0; m < m1; m += kMR) {
      const int64_t mr = std::min<int64_t>(kMR, m1 - m);
      for (int64_t i = 0; i < mr; ++i) {
        const int8_t* ar = P.a + (m + i) * K;
        P.pa.for_segments(m + i, seg, nseg, [&](int64_t g, int64_t h) {
          int32_t sum = 0;
          for (int64_t k = g * seg; k < (g + 1) * seg; ++k) sum += ar[k];
          rows.fa[i * nseg + g] = P.pa.mult(h);
          rows.za[i * nseg + g] = P.pa.zp(h);
          rows.sub[i * nseg + g] = cb * sum;
        });
      }
      const KernelFn kernel = asym ? kernel_for<true>(mr) : kernel_for<false>(mr);
      for (int64_t p = 0; p < np; ++p)
        kernel(P.a + m * K, K, pan[p], rows, nseg, seg, y + m * N + n0 + p * kNR, N);
    }
  });
}

// ---- AVX2 kernel (no VNNI): codes widened to int16, vpmaddwd (s16 x s16, adjacent pairs summed
// into s32: exact, unlike vpmaddubsw's saturating s16 sums). ----

constexpr int64_t kNR2 = 16;  // panel width: two 8-lane vectors
constexpr int kMR2 = 4;       // rows of a per kernel call

// b's rows [n0, n0 + nr) (nr <= kNR2):
//   codes (K / 2, kNR2, 2) s16: codes[q][j][t] = qb[n0 + j, 2q + t] (0 for j >= nr)
//   fb    (nseg, kNR2) f32: b's multiplier of (n0 + j, segment g) (0 for j >= nr)
//   csum  (nseg, kNR2) s32: Σ_(k in g) qb[n0 + j, k] (only when a is asymmetric)
struct Panel2 {
  int16_t* codes;
  float* fb;
  int32_t* csum;
  int64_t nr;
};

// tmp: (K, kNR2) s16 scratch for the transposed decode.
void pack_panel2(const QTensor& b, const IntOperand& pb, int64_t n0, int64_t seg, bool sums, int16_t* tmp,
                 const Panel2& p) {
  const int64_t K = b.shape.back(), nseg = K / seg;
  std::fill(tmp, tmp + K * kNR2, int16_t{0});
  decode_codes_transposed(b, n0, n0 + p.nr, 0, K, tmp, kNR2);
  for (int64_t q = 0; q < K / 2; ++q)
    for (int64_t j = 0; j < kNR2; ++j) {
      p.codes[(q * kNR2 + j) * 2] = tmp[(2 * q) * kNR2 + j];
      p.codes[(q * kNR2 + j) * 2 + 1] = tmp[(2 * q + 1) * kNR2 + j];
    }
  if (sums)
    for (int64_t g = 0; g < nseg; ++g)
      for (int64_t j = 0; j < kNR2; ++j) {
        int32_t sum = 0;
        for (int64_t k = g * seg; k < (g + 1) * seg; ++k) sum += tmp[k * kNR2 + j];
        p.csum[g * kNR2 + j] = sum;
      }
  for (int64_t j = 0; j < kNR2; ++j) {
    if (j < p.nr) pb.for_segments(n0 + j, seg, nseg, [&](int64_t g, int64_t h) { p.fb[g * kNR2 + j] = pb.mult(h); });
    else for (int64_t g = 0; g < nseg; ++g) p.fb[g * kNR2 + j] = 0.0f;
  }
}

// y[0:MR, 0:p.nr] (row stride ldy) = Σ_g fma(fa[i, g] · fb[g, j], float(S_g[i, j]), ·), where
// S_g[i, j] = Σ_(k in g) qa[i, k] qb[j, k] (− za[i, g] csum[g, j]); a: MR rows of s16 codes.
template <int MR, bool kAsym>
LOWBIT_AVX2 void avx2_kernel(const int16_t* a, int64_t lda, const Panel2& p, const Rows& r, int64_t nseg,
                             int64_t seg, float* y, int64_t ldy) {
  __m256 yacc[MR][2];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 2; ++v) yacc[i][v] = _mm256_setzero_ps();
  const int16_t* bp = p.codes;
  const int16_t* ak = a;
  for (int64_t g = 0; g < nseg; ++g) {
    __m256i acc[MR][2];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < 2; ++v) acc[i][v] = _mm256_setzero_si256();
    for (int64_t q = 0; q < seg / 2; ++q, bp += 2 * kNR2, ak += 2) {
      const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp));
      const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + 16));
      for (int i = 0; i < MR; ++i) {
        const __m256i av = _mm256_set1_epi32(load_i32(ak + i * lda));
        acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(b0, av));
        acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(b1, av));
      }
    }
    for (int i = 0; i < MR; ++i) {
      const int64_t e = i * nseg + g;
      const __m256 fa = _mm256_set1_ps(r.fa[e]);
      for (int v = 0; v < 2; ++v) {
        __m256i s = acc[i][v];
        if constexpr (kAsym)
          s = _mm256_sub_epi32(s, _mm256_mullo_epi32(_mm256_set1_epi32(r.za[e]),
                                                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.csum + g * kNR2 + 8 * v))));
        const __m256 mult = _mm256_mul_ps(fa, _mm256_loadu_ps(p.fb + g * kNR2 + 8 * v));
        yacc[i][v] = _mm256_fmadd_ps(mult, _mm256_cvtepi32_ps(s), yacc[i][v]);
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 2; ++v) {
      const int64_t cols = std::min<int64_t>(p.nr - 8 * v, 8);
      if (cols == 8) {
        _mm256_storeu_ps(y + i * ldy + 8 * v, yacc[i][v]);
      } else if (cols > 0) {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, yacc[i][v]);
        std::memcpy(y + i * ldy + 8 * v, tmp, sizeof(float) * static_cast<size_t>(cols));
      }
    }
}

using Kernel2Fn = void (*)(const int16_t*, int64_t, const Panel2&, const Rows&, int64_t, int64_t, float*, int64_t);

template <bool kAsym>
Kernel2Fn kernel2_for(int64_t mr) {
  switch (mr) {
    case 1: return avx2_kernel<1, kAsym>;
    case 2: return avx2_kernel<2, kAsym>;
    case 3: return avx2_kernel<3, kAsym>;
    default: return avx2_kernel<kMR2, kAsym>;
  }
}

// y (M, N): tasks as in vnni_matmul; a's kMR2-row strips are widened to s16 once per task strip.
void avx2_matmul(const Problem& P, const QTensor& a, const QTensor& b, float* y) {
  const int64_t M = P.M, N = P.N, K = P.K, seg = P.seg, nseg = K / seg;
  const bool asym = kind_of(a.spec) == Kind::int_torchao_asym;
  const int64_t nc = std::clamp<int64_t>((int64_t{1} << 18) / (2 * K) / kNR2 * kNR2, kNR2, kNC);
  const int64_t panels = nc / kNR2;
  const int64_t panel_bytes = 2 * kNR2 * K + 8 * nseg * kNR2;  // codes, fb, csum
  const int64_t bytes = panels * panel_bytes + 2 * kNR2 * K + 2 * kMR2 * K + 8 * kMR2 * nseg;
  for_each_block(M, N, nc, bytes, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1, uint8_t* base) {
    auto* tmp = reinterpret_cast<int16_t*>(base + panels * panel_bytes);
    int16_t* astrip = tmp + kNR2 * K;
    auto* fa = reinterpret_cast<float*>(astrip + kMR2 * K);
    Rows rows{fa, reinterpret_cast<int32_t*>(fa + kMR2 * nseg), nullptr};
    Panel2 pan[kNC / kNR2];
    const int64_t np = ceil_div(n1 - n0, kNR2);
    for (int64_t p = 0; p < np; ++p) {
      auto* codes = reinterpret_cast<int16_t*>(base + p * panel_bytes);
      auto* fb = reinterpret_cast<float*>(codes + kNR2 * K);
      pan[p] = {codes, fb, reinterpret_cast<int32_t*>(fb + nseg * kNR2), std::min(kNR2, n1 - n0 - p * kNR2)};
      pack_panel2(b, P.pb, n0 + p * kNR2, seg, asym, tmp, pan[p]);
    }
    for (int64_t m = m0; m < m1; m += kMR2) {
      const int64_t mr = std::min<int64_t>(kMR2, m1 - m);
      for (int64_t i = 0; i < mr; ++i) {
        const int8_t* ar = P.a + (m + i) * K;
        std::copy(ar, ar + K, astrip + i * K);
        P.pa.for_segments(m + i, seg, nseg, [&](int64_t g, int64_t h) {
          rows.fa[i * nseg + g] = P.pa.mult(h);
          rows.za[i * nseg + g] = P.pa.zp(h);
        });
      }
      const Kernel2Fn kernel = asym ? kernel2_for<true>(mr) : kernel2_for<false>(mr);
      for (int64_t p = 0; p < np; ++p) kernel(astrip, K, pan[p], rows, nseg, seg, y + m * N + n0 + p * kNR2, N);
    }
  });
}

#endif  // LOWBIT_INT_GEMM_X86

Problem problem(const QTensor& a, const QTensor& b) {
  Problem P;
  P.K = a.shape.back();
  P.M = shape_numel(a.shape) / P.K;
  P.N = b.shape[0];
  P.a = static_cast<const int8_t*>(a.codes.raw_data());
  P.pa = int_operand(a);
  P.pb = int_operand(b);
  P.seg = std::gcd(P.pa.groups.seg, P.pb.groups.seg);
  return P;
}

}  // namespace

const char* int_kernel_name(IntKernel k) {
  switch (k) {
    case IntKernel::vnni: return "avx512_vnni";
    case IntKernel::avx2: return "avx2";
    case IntKernel::portable: return "portable";
  }
  return "?";
}

bool int_kernel_allowed(IntKernel k) {
  if (k == IntKernel::portable) return true;
#ifdef LOWBIT_INT_GEMM_X86
  return cpu::isa_allows(k == IntKernel::vnni ? cpu::Isa::avx512_vnni : cpu::Isa::avx2);
#else
  return false;
#endif
}

bool int_kernel_runs(IntKernel k, const QTensor& a, const QTensor& b) {
  const int64_t seg = std::gcd(k_groups(a).seg, k_groups(b).seg);
  const int64_t granule = k == IntKernel::vnni ? 4 : k == IntKernel::avx2 ? 2 : 1;  // codes per vector lane
  return int_kernel_allowed(k) && seg % granule == 0;
}

std::optional<IntKernel> best_int_kernel(const QTensor& a, const QTensor& b) {
  for (IntKernel k : {IntKernel::vnni, IntKernel::avx2})
    if (int_kernel_runs(k, a, b)) return k;
  return std::nullopt;
}

void int_matmul(const QTensor& a, const QTensor& b, IntKernel k, float* y) {
  LOWBIT_CHECK(int_kernel_runs(k, a, b), "scaled_matmul: the ", int_kernel_name(k),
               " integer kernel cannot run this problem on this CPU (or under LOWBIT_MAX_CPU_ISA)");
  const Problem P = problem(a, b);
#ifdef LOWBIT_INT_GEMM_X86
  if (k == IntKernel::vnni) return vnni_matmul(P, a, b, y);
  if (k == IntKernel::avx2) return avx2_matmul(P, a, b, y);
#endif
  portable_matmul(P, b, y);
}

}  // namespace lowbit::quant::detail
