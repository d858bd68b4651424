// Device-side greedy decoding: the argmax of each row of the logits, so that a decode loop copies
// one id per sequence back to the host instead of the logits.
#include <cfloat>

#include "cuda/dispatch.h"
#include "cuda/kernels/common.cuh"
#include "cuda/ops_cuda.h"
#include "cuda/runtime_internal.h"

namespace olmo::cuda {

namespace {

// One block per row; ties go to the smallest index (torch.argmax).
template <class T>
__global__ void argmax_kernel(int32_t* __restrict__ out, const T* __restrict__ x, int64_t V) {
    const T* row = x + size_t(blockIdx.x) * V;
    float best = -FLT_MAX;
    int64_t best_i = V;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        const float v = kernels::to_f32(row[i]);
        if (v > best || (v == best && i < best_i)) {
            best = v;
            best_i = i;
        }
    }
    __shared__ float s_v[32];
    __shared__ int64_t s_i[32];
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
        if (ov > best || (ov == best && oi < best_i)) {
            best = ov;
            best_i = oi;
        }
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        s_v[warp] = best;
        s_i[warp] = best_i;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < int(blockDim.x / 32); ++w)
            if (s_v[w] > best || (s_v[w] == best && s_i[w] < best_i)) {
                best = s_v[w];
                best_i = s_i[w];
            }
        out[blockIdx.x] = int32_t(best_i < V ? best_i : 0);
    }
}

}  // namespace

void argmax(const Tensor& out, const Tensor& x) {
    const int64_t V = x.size(-1), N = x.numel() / V;
    if (N == 0) return;
    dispatch_float(x, "argmax", [&](auto t) {
        using T = decltype(t);
        argmax_kernel<T>
            <<<unsigned(N), 256, 0, current_stream()>>>(ptr<int32_t>(out), ptr<T>(x), V);
        CUDA_CHECK_LAUNCH();
    });
}

}  // namespace olmo::cuda
