// Embedding lookup (a row copy per token) and its backward (a scatter-add of gradient rows into the
// table). The backward is deterministic and adds each table row once: the block of the first token
// with a given id sums, in token order and in f32, the gradient rows of every token with that id,
// and adds the sum to the table row (one rounding for bf16 tables); blocks of later tokens with the
// same id exit at once. Ids outside [0, V) are not checked on the device (the CPU backend checks
// them): the lookup writes an all-ones (NaN) row for them and the backward skips them, so no memory
// outside the tensors is touched.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

// out[n, :] = table[ids[n], :], rows of `words` words W (a raw copy).
template <class W, class Id>
__global__ void embedding_kernel(W* out, const Id* ids, const W* table, int64_t N, int64_t V,
                                 int64_t words) {
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const int64_t id = int64_t(ids[n]);
        W* dst = out + n * words;
        if (id < 0 || id >= V) {
            for (int64_t i = threadIdx.x; i < words; i += blockDim.x) dst[i] = all_ones<W>();
            continue;
        }
        const W* src = table + id * words;
        for (int64_t i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
    }
}

// One block per token n (blockDim.x a multiple of 32, at most 1024); dynamic shared memory holds C
// floats (the row sum).
template <class T, class Id>
__global__ void embedding_backward_kernel(T* d_table, const T* d_out, const Id* ids, int64_t N,
                                          int64_t V, int64_t C) {
    extern __shared__ float row_sum[];  // [C]
    __shared__ unsigned match_mask[32];
    const int64_t n = blockIdx.x;
    const int64_t id = int64_t(ids[n]);
    if (id < 0 || id >= V) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = int(blockDim.x) >> 5;
    // An earlier token with the same id owns the row.
    for (int64_t base = 0; base < n; base += blockDim.x) {
        const int64_t m = base + threadIdx.x;
        const bool earlier = m < n && int64_t(ids[m]) == id;
        if (__syncthreads_or(earlier)) return;
    }
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) row_sum[c] = 0.0f;
    // Tokens n..N-1 with this id, in order: each thread adds its own columns.
    for (int64_t base = n; base < N; base += blockDim.x) {
        const int64_t m = base + threadIdx.x;
        const unsigned mask = __ballot_sync(0xffffffffu, m < N && int64_t(ids[m]) == id);
        if (lane == 0) match_mask[warp] = mask;
        __syncthreads();
        for (int w = 0; w < warps; ++w) {
            unsigned bits = match_mask[w];
            while (bits) {
                const int b = __ffs(int(bits)) - 1;
                bits &= bits - 1;
                const T* src = d_out + (base + w * 32 + b) * C;
                for (int64_t c = threadIdx.x; c < C; c += blockDim.x) row_sum[c] += to_f32(src[c]);
            }
        }
        __syncthreads();  // match_mask is rewritten next round
    }
    T* dst = d_table + id * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        dst[c] = from_f32<T>(to_f32(dst[c]) + row_sum[c]);
}

}  // namespace olmo::kernels
