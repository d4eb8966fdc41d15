// Float64 finite-difference gradient check. Tolerances and eps live here, in one place.
// The check projects the output on a fixed random vector v: the analytic gradient of
// <v, f(x)> (one backward) must match central differences for every input element.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit {

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double atol = 1e-5;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-4;
  uint64_t seed = 1234;  // for the projection vector
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string message;  // the first mismatch, with input index and element
};

// inputs: f64 tensors (any layout, may be non-contiguous views); those with requires_grad set
// are checked. f must be deterministic.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& opts = {});

}  // namespace lowbit
