// Programmatic dependent launch (Hopper): a kernel launched with the attribute (cuda/pdl.h) may
// start while its predecessor on the stream is still finishing, and must call pdl_wait() before it
// reads anything the predecessor writes (and before it writes anything the predecessor reads).
// Every block calls pdl_wait() before it exits, so that a kernel's completion still implies its
// predecessor's. pdl_launch_dependents() lets the next kernel's blocks be scheduled as this one's
// retire. Both are no-ops for kernels launched without the attribute and on architectures before
// sm_90.
#pragma once

namespace olmo::kernels {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Asks the memory system to bring the 16 bytes at p into L2 (no register, no wait): used before
// pdl_wait() for data that does not depend on the predecessor (weights).
__device__ __forceinline__ void prefetch_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
}

}  // namespace olmo::kernels
