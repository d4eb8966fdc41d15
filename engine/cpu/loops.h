// CPU loop drivers. An elementwise op is a functor `C f(C...)` on its compute type C
// (opmath: bf16/f16 compute in f32); the driver broadcasts, coalesces dimensions, splits
// rows over OpenMP threads and runs a unit-stride inner loop the compiler vectorizes.
// The same functors are LOWBIT_HD so a CUDA launcher can run them unchanged.
#pragma once
#include <array>
#include <algorithm>
#include <cstdint>
#include <utility>

#include "lowbit/engine/tensor.h"

namespace lowbit::cpu {

inline constexpr int kMaxLoopDims = 12;

// Geometry of N operands (operand 0 is the output) over a common iteration shape, with
// broadcast dims at stride 0 and adjacent dims merged where all operands allow it.
template <int N>
struct LoopPlan {
  int ndim = 0;
  std::array<int64_t, kMaxLoopDims> shape{};
  std::array<std::array<int64_t, kMaxLoopDims>, N> strides{};
  std::array<char*, N> base{};
  std::array<int64_t, N> itemsize{};
  int64_t numel = 1;
};

// Strides of t broadcast to `shape` (right-aligned), in elements.
Strides broadcast_strides(const Tensor& t, const Shape& shape);
Shape broadcast_shapes(const Shape& a, const Shape& b);

template <int N>
LoopPlan<N> make_plan(const Shape& shape, const std::array<const Tensor*, N>& ops) {
  LoopPlan<N> p;
  const int nd = static_cast<int>(shape.size());
  LOWBIT_CHECK(nd <= kMaxLoopDims, "too many dims (", nd, ") for a CPU loop");
  std::array<Strides, N> st;
  for (int k = 0; k < N; ++k) {
    st[k] = broadcast_strides(*ops[k], shape);
    p.base[k] = static_cast<char*>(ops[k]->raw_data());
    p.itemsize[k] = traits(ops[k]->dtype()).bits / 8;
  }
  // Drop size-1 dims, then merge dim i into i+1 when every operand is contiguous across them.
  int out = 0;
  for (int d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;
    if (out > 0) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k)
        if (p.strides[k][out - 1] != st[k][d] * shape[d]) mergeable = false;
      if (mergeable) {
        p.shape[out - 1] *= shape[d];
        for (int k = 0; k < N; ++k) p.strides[k][out - 1] = st[k][d];
        continue;
      }
    }
    p.shape[out] = shape[d];
    for (int k = 0; k < N; ++k) p.strides[k][out] = st[k][d];
    ++out;
  }
  if (out == 0) {
    p.shape[0] = 1;
    for (int k = 0; k < N; ++k) p.strides[k][0] = 0;
    out = 1;
  }
  p.ndim = out;
  p.numel = 1;
  for (int d = 0; d < out; ++d) p.numel *= p.shape[d];
  return p;
}

// Calls row(ptrs, n, inner_strides) for every innermost row, rows split across threads.
// ptrs[k] points at the row's first element of operand k.
template <int N, class RowFn>
void for_each_row(const LoopPlan<N>& p, RowFn&& row) {
  const int inner = p.ndim - 1;
  const int64_t n = p.shape[inner];
  const int64_t rows = p.numel / (n == 0 ? 1 : n);
  if (p.numel == 0) return;
  std::array<int64_t, N> istride;
  for (int k = 0; k < N; ++k) istride[k] = p.strides[k][inner];
  const bool parallel = p.numel >= 32768 && rows > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    std::array<char*, N> ptrs = p.base;
    int64_t rem = r;
    for (int d = inner - 1; d >= 0; --d) {
      const int64_t i = rem % p.shape[d];
      rem /= p.shape[d];
      for (int k = 0; k < N; ++k) ptrs[k] += i * p.strides[k][d] * p.itemsize[k];
    }
    row(ptrs, n, istride);
  }
}

// Splits a long single row into chunks so one-dimensional loops also use all threads.
template <int N, class RowFn>
void for_each_chunk(const LoopPlan<N>& p, RowFn&& row) {
  if (p.ndim == 1 && p.numel >= 65536) {
    constexpr int64_t kChunk = 16384;
    const int64_t chunks = (p.numel + kChunk - 1) / kChunk;
    std::array<int64_t, N> istride;
    for (int k = 0; k < N; ++k) istride[k] = p.strides[k][0];
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      std::array<char*, N> ptrs = p.base;
      const int64_t start = c * kChunk;
      for (int k = 0; k < N; ++k) ptrs[k] += start * istride[k] * p.itemsize[k];
      row(ptrs, std::min(kChunk, p.numel - start), istride);
    }
    return;
  }
  for_each_row<N>(p, row);
}

// out[i] = f(in0[i], in1[i], ...): all operands share storage type T, f works on opmath_t<T>.
template <class T, class F, class... In>
void cpu_map(const Tensor& out, F f, const In&... in) {
  constexpr int N = 1 + sizeof...(In);
  using C = opmath_t<T>;
  if (out.device().is_meta() || out.numel() == 0) return;
  LOWBIT_CHECK(out.device().is_cpu(), "CPU kernel called with a ", out.device(), " tensor");
  auto plan = make_plan<N>(out.shape(), {&out, &in...});
  for_each_chunk<N>(plan, [&](const std::array<char*, N>& ptrs, int64_t n, const std::array<int64_t, N>& s) {
    T* o = reinterpret_cast<T*>(ptrs[0]);
    bool unit = s[0] == 1;
    for (int k = 1; k < N; ++k) unit = unit && s[k] == 1;
    if (unit) {
      [&]<size_t... I>(std::index_sequence<I...>) {
        for (int64_t i = 0; i < n; ++i)
          o[i] = convert<T>(f(convert<C>(reinterpret_cast<const T*>(ptrs[I + 1])[i])...));
      }(std::make_index_sequence<N - 1>{});
    } else {
      [&]<size_t... I>(std::index_sequence<I...>) {
        for (int64_t i = 0; i < n; ++i)
          o[i * s[0]] = convert<T>(f(convert<C>(reinterpret_cast<const T*>(ptrs[I + 1])[i * s[I + 1]])...));
      }(std::make_index_sequence<N - 1>{});
    }
  });
}

}  // namespace lowbit::cpu
