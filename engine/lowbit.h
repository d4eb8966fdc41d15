// Umbrella header: the whole engine API.
#pragma once
#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/autograd/gradcheck.h"
#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/dtype.h"
#include "lowbit/engine/ops/activation.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/reduce.h"
#include "lowbit/engine/tensor.h"
