// Host side of programmatic dependent launch (kernels/pdl.cuh): launch_pdl() launches a kernel that
// calls pdl_wait() with the attribute that lets it overlap the previous kernel's tail, also inside
// a captured CUDA graph (the decode step). Off unless OLMO_PDL=1 is in the environment: only the
// decode GEMV uses it so far, and alone it measured no gain (docs/PERF.md); without the attribute
// the same kernels run strictly one after the other.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "cuda/runtime_internal.h"

namespace olmo::cuda {

bool pdl_enabled();

template <class... KernelArgs, class... Args>
void launch_pdl(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, Args&&... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = current_stream();
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_enabled() ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace olmo::cuda
