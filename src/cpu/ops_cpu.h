// The CPU reference backend: one function per op of src/ops/ops.h, with the same signature and
// contract (see the comments there). ops:: checks shapes, dtypes and devices before it calls these,
// so they assume valid arguments. Float tensors are f32 or f64 (double precision is there for the
// gradient checks); integer index tensors are i32 (ids and targets also i64).
#pragma once

#include <span>

#include "core/tensor.h"
#include "ops/sum_squares.h"

namespace olmo::cpu {

#include "ops/backend_ops.inc"

}  // namespace olmo::cpu
