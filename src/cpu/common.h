// Helpers shared by the CPU reference ops: dtype dispatch, index reads, OpenMP loops and per-thread
// scratch memory.
//
// Every CPU op is a template over the element type (float or double) so that gradient checks can
// run the same code in double precision; `Acc<T>` is the accumulator used for the long reductions
// (norm statistics, softmax sums, the loss), which is double for both.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/check.h"
#include "core/tensor.h"

namespace olmo::cpu {

using Acc = double;

// Calls fn(T{}) with T = float or double according to dt.
template <class F>
void dispatch_float(const char* op, DType dt, F&& fn) {
    if (dt == DType::f32) {
        fn(float{});
    } else if (dt == DType::f64) {
        fn(double{});
    } else {
        fail("[", op, "] the CPU backend supports f32 and f64, got ", dtype_name(dt));
    }
}

// Element i of an integer tensor (i32 or i64).
inline int64_t index_at(const Tensor& t, int64_t i) {
    return t.dtype == DType::i64 ? t.as<const int64_t>()[i] : int64_t(t.as<const int32_t>()[i]);
}

// Rows of a tensor seen as [rows, last dim]: the product of the leading dimensions.
inline int64_t rows_of(const Tensor& t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t.ndim; ++i) n *= t.shape[i];
    return n;
}

// Below this many scalar operations a loop runs on the calling thread: waking the OpenMP team costs
// more than it saves for decode-sized (T = 1) calls.
constexpr int64_t kParallelWork = 1 << 15;

inline bool worth_parallel(int64_t items, int64_t work_per_item) {
    return items > 1 && items * work_per_item >= kParallelWork && omp_get_max_threads() > 1;
}

// body(i) for i in [0, n), statically split over the OpenMP threads when the work is worth it.
// Bodies must not throw: all checks happen before.
template <class F>
void parallel_for(int64_t n, int64_t work_per_item, F&& body) {
#pragma omp parallel for schedule(static) if (worth_parallel(n, work_per_item))
    for (int64_t i = 0; i < n; ++i) body(i);
}

// body(begin, end) over contiguous column blocks [begin, end) of [0, n), one per thread. Used for
// reductions over rows into a per-column result (weight gradients): each thread owns its columns,
// so the sums need no locks and do not depend on the thread count.
template <class F>
void parallel_columns(int64_t n, int64_t work_per_column, F&& body) {
    const int threads = worth_parallel(n, work_per_column) ? omp_get_max_threads() : 1;
    if (threads == 1) {
        body(int64_t(0), n);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t parts = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t begin = n * me / parts, end = n * (me + 1) / parts;
        if (begin < end) body(begin, end);
    }
}

// Per-thread scratch memory that persists across calls, so that steady-state calls (decode steps,
// training steps of one shape) allocate nothing. Distinct slots give independent buffers; a buffer
// stays valid until the same thread asks for the same slot again.
constexpr int kScratchSlots = 16;

template <class T>
T* scratch(int slot, size_t n) {
    thread_local std::vector<T> buffers[kScratchSlots];
    std::vector<T>& b = buffers[slot];
    if (b.size() < n) b.resize(n);
    return b.data();
}

// Σ a_i b_i in T. The simd reduction lets the compiler vectorise the sum (it may reorder it), which
// plain -O3 may not do for floating point.
template <class T>
inline T dot(const T* a, const T* b, int64_t n) {
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

template <class T>
inline T sigmoid(T x) {
    return T(1) / (T(1) + std::exp(-x));
}

template <class T>
inline T silu(T x) {
    return x * sigmoid(x);
}

// d silu(x) / dx = σ(x) (1 + x (1 − σ(x)))
template <class T>
inline T silu_grad(T x) {
    const T s = sigmoid(x);
    return s * (T(1) + x * (T(1) - s));
}

}  // namespace olmo::cpu
