// Helpers for the CUDA op tests: device copies of host inputs, outputs with guard zones, and the
// one table of tolerances (justified in docs/NUMERICS.md).
#pragma once

#include <string>

#include "cuda/runtime.h"
#include "testing.h"

namespace olmo::testing {

// Skips the test (visibly) when no GPU is present.
#define OLMO_REQUIRE_CUDA()                                               \
    do {                                                                  \
        if (!::olmo::cuda::available()) GTEST_SKIP() << "no CUDA device"; \
    } while (0)

// A device copy of a host float tensor, converted to dtype (f32 or bf16).
OwnedTensor to_device(const Tensor& host, DType dtype);
// The same values rounded through dtype and back to host f32 (what the device actually sees).
OwnedTensor rounded(const Tensor& host, DType dtype);

// A device tensor with kGuardBytes of sentinel bytes before and after it. check() fails the test if
// an op wrote outside its output.
class Guarded {
  public:
    static constexpr size_t kGuardBytes = 4096;
    Guarded(DType dtype, std::initializer_list<int64_t> shape);
    Guarded(DType dtype, std::span<const int64_t> shape);
    const Tensor& view() const { return view_; }
    operator const Tensor&() const { return view_; }
    // Fills the tensor itself with a NaN pattern, so that unwritten elements are caught by
    // comparisons.
    void poison();
    ::testing::AssertionResult guards_intact() const;

  private:
    std::shared_ptr<void> storage_;
    Tensor view_;
};

// Relative max error bound of an op's output for a storage dtype (docs/NUMERICS.md).
double tolerance(const std::string& op, DType dtype);

}  // namespace olmo::testing
