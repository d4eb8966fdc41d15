// MFU: the model's training FLOP/s over a GEMM rate measured on the same machine, in the
// compute dtype the model trains in (a bf16 run is measured against the bf16 GEMM).
//
// The reference is the best of several short probes (a 512^3 GEMM repeated for ~40 ms each),
// measured again while the best two disagree by more than 5%: a probe slowed by another process
// can only lower a probe, so the best is the idle machine's rate. If a step still comes out above
// 100% (the machine was busy for all the probes), the reference is measured again, at most
// kMaxRemeasures times; after that MFU values above 100% are flagged, never shown as if true.
#pragma once
#include <string>

#include "lowbit/engine/dtype.h"

namespace lowbit::train {

struct GemmRate {
  double gflops = 0;   // best probe
  double spread = 0;   // (best - second best) / best of the last round
  int probes = 0;      // probes run in all
};

// dtype: f32 or bf16 (bf16 inputs, f32 accumulation, as the training step's GEMMs).
GemmRate measure_gemm_rate(DType dtype);

class MfuMeter {
 public:
  static constexpr int kMaxRemeasures = 3;
  explicit MfuMeter(DType dtype);
  // The fraction of the reference that `flops_per_s` is; re-measures the reference when above 1,
  // so a result above 1 means flagged().
  double mfu(double flops_per_s);
  // True once MFU stayed above 100% after kMaxRemeasures re-measures.
  bool flagged() const { return flagged_; }
  const GemmRate& rate() const { return rate_; }
  // "f32 GEMM 512^3 on 2 threads: 210.3 GFLOP/s (best of 5 probes, next within 1.2%)"
  std::string describe() const;

 private:
  DType dtype_;
  GemmRate rate_;
  int remeasures_ = 0;
  bool flagged_ = false;
};

}  // namespace lowbit::train
