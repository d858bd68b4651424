// The CUDA backend: one function per op of src/ops/ops.h, with the same signature and contract (see
// the comments there). ops:: checks shapes, dtypes and devices before it calls these. Only built
// with OLMO_CUDA; the definitions live in src/cuda/*.cu.
#pragma once

#include <span>

#include "core/tensor.h"
#include "ops/sum_squares.h"

namespace olmo::cuda {

#include "ops/backend_ops.inc"

}  // namespace olmo::cuda
