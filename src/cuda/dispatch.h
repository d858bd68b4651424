// Host-side helpers of the CUDA launchers: turn a Tensor's dtype into a kernel template argument.
#pragma once

#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "core/tensor.h"

namespace olmo::cuda {

// Calls fn(T{}) with T = float or __nv_bfloat16 for the tensor's dtype.
template <class Fn>
void dispatch_float(const Tensor& t, const char* op, Fn&& fn) {
    if (t.dtype == DType::f32) {
        fn(float{});
    } else if (t.dtype == DType::bf16) {
        fn(__nv_bfloat16{});
    } else {
        fail("[", op, "] CUDA supports f32 and bf16, got ", dtype_name(t.dtype));
    }
}

// Calls fn(std::integral_constant<int, K>{}) with the first of the ascending bounds Ks that is ≥ n
// (a kernel's compile-time size); fails naming `what` past the last one.
template <int... Ks, class Fn>
void dispatch_bound(int64_t n, const char* op, const char* what, Fn&& fn) {
    bool done = false;
    ((!done && n <= Ks ? (fn(std::integral_constant<int, Ks>{}), done = true) : false), ...);
    if (!done) {
        const int largest = std::max({Ks...});
        fail("[", op, "] CUDA supports ", what, " up to ", largest, ", got ", n);
    }
}

template <class T>
T* ptr(const Tensor& t) {
    return static_cast<T*>(t.data);
}

}  // namespace olmo::cuda
