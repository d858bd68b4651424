// Host-side helpers of the CUDA launchers: turn a Tensor's dtype into a kernel template argument.
#pragma once

#include <cuda_bf16.h>

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

template <class T>
T* ptr(const Tensor& t) {
    return static_cast<T*>(t.data);
}

}  // namespace olmo::cuda
