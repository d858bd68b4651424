// Internal to the CUDA backend: the stream and handles, and the check macros with file:line.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/check.h"

namespace olmo::cuda {

cudaStream_t current_stream();
cublasLtHandle_t lt_handle();
cublasHandle_t blas_handle();
// Workspace for cuBLASLt (allocated once).
void* lt_workspace();
size_t lt_workspace_bytes();
int multiprocessor_count();
// Compute capability 9.0 or later (thread-block clusters, bulk copies). Whether a kernel was built
// with sm_90 code is checked apart (gdn_decode.cu, before it takes its cluster kernel).
bool device_has_sm90_features();
// A device scratch buffer of at least `bytes`, one per slot, kept between calls and grown when
// needed (growing synchronises; never call with a larger size during graph capture).
void* scratch(int slot, size_t bytes);

[[noreturn]] void cuda_failed(const char* file, int line, const char* expr, const char* what);

}  // namespace olmo::cuda

#define CUDA_CHECK(expr)                                                                    \
    do {                                                                                    \
        const cudaError_t err_ = (expr);                                                    \
        if (err_ != cudaSuccess)                                                            \
            ::olmo::cuda::cuda_failed(__FILE__, __LINE__, #expr, cudaGetErrorString(err_)); \
    } while (0)

#define CUBLAS_CHECK(expr)                                                                    \
    do {                                                                                      \
        const cublasStatus_t st_ = (expr);                                                    \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                     \
            ::olmo::cuda::cuda_failed(__FILE__, __LINE__, #expr, cublasGetStatusString(st_)); \
    } while (0)

// After every kernel launch: a launch configuration error surfaces here, at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
