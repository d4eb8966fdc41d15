// The MFU reference (train/mfu.h): a measured GEMM rate per dtype; a value above 100% makes it
// measure again and is flagged when it stays above.
#include <gtest/gtest.h>

#include "lowbit/engine/error.h"
#include "lowbit/train/mfu.h"

namespace lowbit::train {
namespace {

TEST(Mfu, ReferenceIsMeasuredPerDtype) {
  for (DType d : {DType::f32, DType::bf16}) {
    const GemmRate r = measure_gemm_rate(d);
    EXPECT_GT(r.gflops, 0.1) << dtype_name(d);
    EXPECT_GE(r.probes, 5);
    EXPECT_GE(r.spread, 0.0);
  }
  EXPECT_THROW(measure_gemm_rate(DType::f64), Error);
}

TEST(Mfu, BelowTheReferenceIsReportedAsIs) {
  MfuMeter m(DType::f32);
  const double rate = m.rate().gflops;
  EXPECT_NEAR(m.mfu(0.5 * rate * 1e9), 0.5, 1e-12);
  EXPECT_FALSE(m.flagged());
  EXPECT_EQ(m.rate().gflops, rate);  // no re-measure below 100%
}

TEST(Mfu, AboveTheReferenceRemeasuresThenFlags) {
  MfuMeter m(DType::f32);
  const int probes = m.rate().probes;
  const double v = m.mfu(1e18);  // no CPU does an exaflop: stays above after every re-measure
  EXPECT_GT(v, 1.0);
  EXPECT_TRUE(m.flagged());
  EXPECT_GE(m.rate().probes, probes + MfuMeter::kMaxRemeasures * 5);
  const int after = m.rate().probes;
  m.mfu(1e18);  // flagged: no more re-measures
  EXPECT_EQ(m.rate().probes, after);
  EXPECT_NE(m.describe().find("f32 GEMM 512^3"), std::string::npos) << m.describe();
}

}  // namespace
}  // namespace lowbit::train
