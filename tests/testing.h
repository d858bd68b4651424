// Shared helpers for the test suites: where the reference data lives, random inputs, comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/rng.h"
#include "core/tensor.h"

namespace olmo::testing {

// The project's reference folder (../shared from the project root), overridable with
// OLMO_SHARED_DIR.
std::string shared_dir();
// Test data committed with the project (tests/data).
std::string test_data_dir();
// A fresh temporary folder for this test, removed at process exit.
std::string temp_dir();

// Host f32 tensor with entries uniform in [lo, hi) from (seed, stream).
OwnedTensor random_uniform(std::initializer_list<int64_t> shape, uint64_t seed, float lo = -1.0f,
                           float hi = 1.0f);
OwnedTensor random_normal(std::initializer_list<int64_t> shape, uint64_t seed, float std = 1.0f);

// max |a - b| / max |b| over all elements (b is the reference); NaN anywhere gives +inf.
double rel_max_error(const Tensor& a, const Tensor& b);
double max_abs(const Tensor& t);

// Expect rel_max_error(actual, expected) <= tol, with a readable message.
::testing::AssertionResult close(const Tensor& actual, const Tensor& expected, double tol);

}  // namespace olmo::testing
