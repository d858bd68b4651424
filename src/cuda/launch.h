// Host helpers of the launchers of the memory-bound ops: grid sizes, the alignment tests that
// choose 16-byte packed accesses, the word type of raw row copies, and the scratch slot of their
// reductions.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "cuda/runtime_internal.h"

namespace olmo::cuda {

constexpr int kBlockThreads = 256;

// Scratch slot (runtime_internal.h) of the small ops: per-row statistics and the partial sums of
// the column reductions. Only used between the launches of one op call, so the ops can share it; a
// call with more rows than any before grows it (and synchronises), so backward ops, the loss and
// sum_squares are not for graph capture; every forward op of the decode path uses no scratch.
constexpr int kSmallOpsScratch = 8;
// Scratch slots of the split-key decode attention (attention.cu), used by no other op: the arrival
// counters of its output rows (zero between calls: its kernel sets them back) and the splits'
// partial results. Both of one size (set by the SM count), so they never grow after the first call
// and a captured decode graph keeps valid pointers.
constexpr int kAttentionCountersScratch = 9, kAttentionPartialsScratch = 10;

// Blocks of `threads` threads for `items` work items, capped at a few waves of the GPU (the kernels
// loop over the rest with a grid stride). Never 0.
inline unsigned grid_for(int64_t items, int threads = kBlockThreads) {
    const int64_t want = (items + threads - 1) / threads;
    const int64_t cap = std::max<int64_t>(int64_t(multiprocessor_count()) * 16, 1);
    return unsigned(std::clamp<int64_t>(want, 1, cap));
}

// True if every pointer is aligned to `bytes` (a power of two).
inline bool aligned_to(size_t bytes, std::initializer_list<const void*> ptrs) {
    for (const void* p : ptrs)
        if (reinterpret_cast<uintptr_t>(p) % bytes != 0) return false;
    return true;
}

// True if rows of `row` elements of T can be read in 16-byte packs: the row length is a multiple of
// 16 / sizeof(T) and every base pointer is 16-byte aligned (then every row start is too).
template <class T>
bool packable(int64_t row, std::initializer_list<const void*> ptrs) {
    return row % int64_t(16 / sizeof(T)) == 0 && aligned_to(16, ptrs);
}

// Calls fn(W{}) with the widest word of uint4, uint2, uint32_t and uint16_t that divides `bytes`
// and to which every pointer is aligned (raw copies of rows of 2- or 4-byte elements).
template <class Fn>
void dispatch_word(size_t bytes, std::initializer_list<const void*> ptrs, Fn&& fn) {
    auto fits = [&](size_t w) { return bytes % w == 0 && aligned_to(w, ptrs); };
    if (fits(16)) {
        fn(uint4{});
    } else if (fits(8)) {
        fn(uint2{});
    } else if (fits(4)) {
        fn(uint32_t{});
    } else {
        fn(uint16_t{});
    }
}

}  // namespace olmo::cuda
