// Elementwise ops: add, scale, fill and the SwiGLU activation with its backward. f32 arithmetic,
// outputs rounded once to the storage type; 16-byte packed accesses when every pointer is aligned.
// Outputs may alias inputs (each element is read before it is written, by the same thread).
#include <cstring>

#include "core/dtype.h"
#include "cuda/dispatch.h"
#include "cuda/kernels/elementwise.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

namespace {

template <class T, class F>
void map1(const Tensor& out, const Tensor& x, F f) {
    const int64_t n = out.numel();
    if (n == 0) return;
    constexpr int V = kernels::kVec16<T>;
    if (aligned_to(16, {out.data, x.data})) {
        kernels::map1_kernel<T, V><<<grid_for(n / V + 1), kBlockThreads, 0, current_stream()>>>(
            ptr<T>(out), ptr<T>(x), n, f);
    } else {
        kernels::map1_kernel<T, 1>
            <<<grid_for(n), kBlockThreads, 0, current_stream()>>>(ptr<T>(out), ptr<T>(x), n, f);
    }
    CUDA_CHECK_LAUNCH();
}

template <class T, class F>
void map2(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
    const int64_t n = out.numel();
    if (n == 0) return;
    constexpr int V = kernels::kVec16<T>;
    if (aligned_to(16, {out.data, a.data, b.data})) {
        kernels::map2_kernel<T, V><<<grid_for(n / V + 1), kBlockThreads, 0, current_stream()>>>(
            ptr<T>(out), ptr<T>(a), ptr<T>(b), n, f);
    } else {
        kernels::map2_kernel<T, 1><<<grid_for(n), kBlockThreads, 0, current_stream()>>>(
            ptr<T>(out), ptr<T>(a), ptr<T>(b), n, f);
    }
    CUDA_CHECK_LAUNCH();
}

// Fills n elements of E (the bit pattern of one element) with value.
template <class E>
void fill_bits(void* out, int64_t n, E value) {
    if (n == 0) return;
    E* p = static_cast<E*>(out);
    if (aligned_to(16, {out})) {
        kernels::fill_kernel<E, true>
            <<<grid_for(n * int64_t(sizeof(E)) / 16 + 1), kBlockThreads, 0, current_stream()>>>(
                p, n, value);
    } else {
        kernels::fill_kernel<E, false>
            <<<grid_for(n), kBlockThreads, 0, current_stream()>>>(p, n, value);
    }
    CUDA_CHECK_LAUNCH();
}

}  // namespace

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
    dispatch_float(out, "add", [&](auto tag) {
        using T = decltype(tag);
        map2<T>(out, a, b, kernels::AddOp{});
    });
}

void scale(const Tensor& out, const Tensor& x, float s) {
    dispatch_float(out, "scale", [&](auto tag) {
        using T = decltype(tag);
        map1<T>(out, x, kernels::ScaleOp{s});
    });
}

void fill_trunc_normal(const Tensor& out, uint64_t seed, uint64_t stream, double std) {
    const int64_t n = out.numel();
    if (n == 0) return;
    dispatch_float(out, "fill_trunc_normal", [&](auto tag) {
        using T = decltype(tag);
        kernels::trunc_normal_kernel<T><<<grid_for(n), kBlockThreads, 0, current_stream()>>>(
            ptr<T>(out), n, Rng(seed, stream), std);
    });
    CUDA_CHECK_LAUNCH();
}

void fill(const Tensor& out, float value) {
    const int64_t n = out.numel();
    switch (out.dtype) {
        case DType::f32: {
            uint32_t bits;
            std::memcpy(&bits, &value, 4);
            fill_bits<uint32_t>(out.data, n, bits);
            break;
        }
        case DType::f64: {
            const double d = value;
            unsigned long long bits;
            std::memcpy(&bits, &d, 8);
            fill_bits<unsigned long long>(out.data, n, bits);
            break;
        }
        case DType::bf16:
            fill_bits<uint16_t>(out.data, n, f32_to_bf16(value));
            break;
        case DType::f16:
            fill_bits<uint16_t>(out.data, n, f32_to_f16(value));
            break;
        default:
            fail("[fill] CUDA fill supports f32, f64, bf16 and f16, got ", dtype_name(out.dtype));
    }
}

void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up) {
    dispatch_float(out, "swiglu", [&](auto tag) {
        using T = decltype(tag);
        map2<T>(out, gate, up, kernels::SwigluOp{});
    });
}

void swiglu_backward(const Tensor& d_gate, const Tensor& d_up, const Tensor& d_out,
                     const Tensor& gate, const Tensor& up) {
    dispatch_float(d_gate, "swiglu_backward", [&](auto tag) {
        using T = decltype(tag);
        const int64_t n = d_gate.numel();
        if (n == 0) return;
        constexpr int V = kernels::kVec16<T>;
        if (aligned_to(16, {d_gate.data, d_up.data, d_out.data, gate.data, up.data})) {
            kernels::swiglu_backward_kernel<T, V>
                <<<grid_for(n / V + 1), kBlockThreads, 0, current_stream()>>>(
                    ptr<T>(d_gate), ptr<T>(d_up), ptr<T>(d_out), ptr<T>(gate), ptr<T>(up), n);
        } else {
            kernels::swiglu_backward_kernel<T, 1>
                <<<grid_for(n), kBlockThreads, 0, current_stream()>>>(
                    ptr<T>(d_gate), ptr<T>(d_up), ptr<T>(d_out), ptr<T>(gate), ptr<T>(up), n);
        }
        CUDA_CHECK_LAUNCH();
    });
}

}  // namespace olmo::cuda
