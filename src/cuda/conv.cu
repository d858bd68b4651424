// Launchers of the causal depthwise conv + SiLU and its backward (kernels/conv.cuh). Kernel widths
// up to 8 (register windows of 4 or 8 taps); packs of up to 8 channels forward, 4 backward (which
// keeps two windows and two tap sets in registers). Each thread handles kSegment time steps of one
// channel pack: decoding (T = 1) and short prefills are one segment, so one kernel computes the
// outputs and rolls the state; longer inputs take a second small kernel for the state.
//
// conv1d_silu_backward: d_x must not alias d_out or x (the input gradient of a step reads d_out
// W−1 steps ahead).
#include <algorithm>

#include "cuda/dispatch.h"
#include "cuda/kernels/conv.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

namespace {

constexpr int64_t kSegment = 16;  // time steps per thread; at least the widest window (8)
constexpr int kMaxWidth = 8;

int check_width(const Tensor& w, const char* op) {
    const int64_t W = w.shape[1];
    if (W > kMaxWidth)
        fail("[", op, "] CUDA supports kernel widths up to ", kMaxWidth, ", got ", W);
    return int(W);
}

// Calls fn(std::integral_constant<int, N>, std::integral_constant<int, K>) with the window K ≥ W
// and the widest pack of N ≤ kMaxPack channels (N·sizeof(T) ≤ 16 bytes) that Ch and every pointer
// allow.
template <class T, int kMaxPack, class Fn>
void dispatch_conv(int64_t Ch, int W, std::initializer_list<const void*> ptrs, Fn&& fn) {
    constexpr int V = std::min(kernels::kVec16<T>, kMaxPack);
    auto with_k = [&](auto n_tag) {
        if (W <= 4) {
            fn(n_tag, std::integral_constant<int, 4>{});
        } else {
            fn(n_tag, std::integral_constant<int, 8>{});
        }
    };
    if (Ch % V == 0 && aligned_to(V * sizeof(T), ptrs)) {
        with_k(std::integral_constant<int, V>{});
    } else {
        with_k(std::integral_constant<int, 1>{});
    }
}

}  // namespace

void conv1d_silu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& state) {
    const int64_t B = x.shape[0], Tn = x.shape[1], Ch = x.shape[2];
    const int W = check_width(w, "conv1d_silu");
    if (B == 0 || Tn == 0 || Ch == 0) return;
    dispatch_float(out, "conv1d_silu", [&](auto tag) {
        using T = decltype(tag);
        T* st = state.empty() || W == 1 ? nullptr : ptr<T>(state);
        const int64_t segs = (Tn + kSegment - 1) / kSegment;
        const bool fused = segs == 1;
        dispatch_conv<T, 8>(Ch, W, {out.data, x.data, st}, [&](auto n_tag, auto k_tag) {
            constexpr int N = decltype(n_tag)::value, K = decltype(k_tag)::value;
            const int64_t packs = Ch / N;
            kernels::conv1d_silu_kernel<T, N, K>
                <<<grid_for(B * segs * packs), kBlockThreads, 0, current_stream()>>>(
                    ptr<T>(out), ptr<T>(x), ptr<T>(w), st, B, Tn, Ch, W, kSegment, fused);
            CUDA_CHECK_LAUNCH();
            if (st != nullptr && !fused) {
                kernels::conv_state_from_x_kernel<T, N>
                    <<<grid_for(B * (W - 1) * packs), kBlockThreads, 0, current_stream()>>>(
                        st, ptr<T>(x), B, Tn, Ch, W);
                CUDA_CHECK_LAUNCH();
            }
        });
    });
}

void conv1d_silu_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out,
                          const Tensor& x, const Tensor& w) {
    const int64_t B = x.shape[0], Tn = x.shape[1], Ch = x.shape[2];
    const int W = check_width(w, "conv1d_silu_backward");
    if (B == 0 || Tn == 0 || Ch == 0) return;
    OLMO_CHECK(B <= 65535, "[conv1d_silu_backward] batch ", B, " too large for the CUDA grid");
    dispatch_float(d_x, "conv1d_silu_backward", [&](auto tag) {
        using T = decltype(tag);
        // Weight gradient: groups of kConvRowLanes·sub_len steps of one sequence, about 256 groups.
        const int64_t lanes = kernels::kConvRowLanes;
        const int64_t per_seq = std::clamp<int64_t>(
            (Tn + lanes * kSegment - 1) / (lanes * kSegment), 1, std::max<int64_t>(1, 256 / B));
        const int64_t sub_len = (Tn + lanes * per_seq - 1) / (lanes * per_seq);
        const int64_t groups = B * per_seq;
        float* partial =
            static_cast<float*>(scratch(kSmallOpsScratch, size_t(groups * Ch * W) * sizeof(float)));
        const dim3 grid{unsigned((Ch + 31) / 32), unsigned(groups)}, block{32, unsigned(lanes)};
        auto dw = [&](auto k_tag) {
            constexpr int K = decltype(k_tag)::value;
            kernels::conv1d_silu_backward_dw_kernel<T, K><<<grid, block, 0, current_stream()>>>(
                partial, ptr<T>(d_out), ptr<T>(x), ptr<T>(w), Tn, Ch, W, sub_len, per_seq);
            CUDA_CHECK_LAUNCH();
        };
        if (W <= 4) {
            dw(std::integral_constant<int, 4>{});
        } else {
            dw(std::integral_constant<int, 8>{});
        }
        kernels::add_partials_kernel<T><<<grid_for(Ch * W), kBlockThreads, 0, current_stream()>>>(
            ptr<T>(d_w), partial, groups, Ch * W, Ch * W);
        CUDA_CHECK_LAUNCH();
        // Input gradient.
        const int64_t segs = (Tn + kSegment - 1) / kSegment;
        dispatch_conv<T, 4>(Ch, W, {d_x.data, d_out.data, x.data}, [&](auto n_tag, auto k_tag) {
            constexpr int N = decltype(n_tag)::value, K = decltype(k_tag)::value;
            kernels::conv1d_silu_backward_dx_kernel<T, N, K>
                <<<grid_for(B * segs * (Ch / N)), kBlockThreads, 0, current_stream()>>>(
                    ptr<T>(d_x), ptr<T>(d_out), ptr<T>(x), ptr<T>(w), B, Tn, Ch, W, kSegment);
            CUDA_CHECK_LAUNCH();
        });
    });
}

}  // namespace olmo::cuda
