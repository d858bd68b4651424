// Helpers for the CUDA op tests: device copies of host inputs, outputs with guard zones, and the
// one table of tolerances (justified in docs/NUMERICS.md).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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

// ---- inputs and outputs of the op tests ----

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& s);
// Host f32 tensors of any shape (empty ones included) with normal / uniform entries.
OwnedTensor randn(const Shape& shape, uint64_t seed, float std = 1.0f);
OwnedTensor randu(const Shape& shape, uint64_t seed, float lo, float hi);

// One input operand: the values both backends see (host f32, rounded through the storage dtype) and
// the device copy in the storage dtype.
struct In {
    OwnedTensor host, dev;
};
In make_in(const OwnedTensor& values, DType dt);

// A host f32 tensor shaped like t (zeros), for CPU outputs.
OwnedTensor host_like(const Tensor& t);
// A poisoned guarded device output shaped like t.
Guarded out_like(DType dt, const Tensor& t);
// A guarded device tensor holding `values` converted to dt (outputs that accumulate, in-place
// operands).
Guarded preset(DType dt, const Tensor& values);

// Relative max error bound of an op's output for a storage dtype (docs/NUMERICS.md).
double tolerance(const std::string& op, DType dtype);

// Captures what fn() enqueues on the op stream into a CUDA graph, replays it `replays` times and
// waits; a failure names the CUDA call that failed.
::testing::AssertionResult capture_and_replay(const std::function<void()>& fn, int replays);

}  // namespace olmo::testing
