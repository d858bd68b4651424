// Hopper bulk copies (the TMA engine without a tensor map): one thread moves a contiguous global
// range into shared memory, and the bytes, as they land, complete a transaction barrier (mbarrier)
// that the consumers wait on. One instruction per range instead of one cp.async per 16 bytes and
// thread. sm_90 and newer only: callers keep a cp.async path for older cards.
#pragma once

#include <cstdint>

namespace olmo::kernels {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return uint32_t(__cvta_generic_to_shared(p));
}

// A barrier whose phase completes after `arrivals` arrivals and all the bytes they announced.
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(arrivals)
                 : "memory");
}

// Makes barriers initialised by this thread visible to the copy engine; the other threads see
// them after the block's next barrier.
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// Orders this thread's earlier shared-memory accesses (and those a block barrier made visible to
// it) before bulk copies it issues next into the same memory.
__device__ __forceinline__ void fence_async_smem() {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

// Arrives on the barrier, announcing `bytes` that bulk copies will deliver in this phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
}

// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global to shared memory,
// counted on `bar`.
__device__ __forceinline__ void bulk_copy_to_smem(void* dst, const void* src, uint32_t bytes,
                                                  uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
            "r"(smem_addr(dst)),
        "l"(src), "r"(bytes), "r"(smem_addr(bar))
        : "memory");
}

// Waits until the barrier's phase of the given parity (0 for its 1st, 3rd, ... use) completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            " selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smem_addr(bar)), "r"(parity)
            : "memory");
    } while (!done);
}

#endif

}  // namespace olmo::kernels
