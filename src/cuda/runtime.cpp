#include "cuda/runtime.h"

#include <atomic>
#include <cstring>
#include <mutex>

#include "cuda/runtime_internal.h"

namespace olmo::cuda {

namespace {

struct Runtime {
    cudaStream_t stream = nullptr;
    cublasLtHandle_t lt = nullptr;
    cublasHandle_t blas = nullptr;
    void* workspace = nullptr;
    size_t workspace_bytes = size_t(64) << 20;
    int sms = 0;
    int major = 0;  // compute capability
    Runtime() {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
            fail("[cuda] no CUDA device is available");
        CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        CUBLAS_CHECK(cublasLtCreate(&lt));
        CUBLAS_CHECK(cublasCreate(&blas));
        CUBLAS_CHECK(cublasSetStream(blas, stream));
        // Tests compare f32 CUDA results with the CPU: no TF32 unless a kernel asks for it
        // explicitly.
        CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
        CUDA_CHECK(cudaMalloc(&workspace, workspace_bytes));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    }
};

Runtime& rt() {
    static Runtime r;
    return r;
}

std::atomic<size_t> g_allocated{0}, g_peak{0};

}  // namespace

void cuda_failed(const char* file, int line, const char* expr, const char* what) {
    const char* base = std::strrchr(file, '/');
    fail("[cuda] ", base ? base + 1 : file, ":", line, ": ", expr, ": ", what);
}

cudaStream_t current_stream() {
    return rt().stream;
}
cublasLtHandle_t lt_handle() {
    return rt().lt;
}
cublasHandle_t blas_handle() {
    return rt().blas;
}
void* lt_workspace() {
    return rt().workspace;
}
size_t lt_workspace_bytes() {
    return rt().workspace_bytes;
}
int multiprocessor_count() {
    return rt().sms;
}

bool device_has_sm90_features() {
    return rt().major >= 9;
}

void* scratch(int slot, size_t bytes) {
    static std::mutex mu;
    static std::shared_ptr<void> buffers[16];
    static size_t sizes[16] = {};
    OLMO_CHECK(slot >= 0 && slot < 16, "scratch slot ", slot);
    std::lock_guard<std::mutex> lock(mu);
    if (sizes[slot] < bytes) {
        CUDA_CHECK(cudaStreamSynchronize(current_stream()));
        buffers[slot].reset();
        buffers[slot] = device_alloc(bytes + bytes / 4);
        sizes[slot] = bytes + bytes / 4;
    }
    return buffers[slot].get();
}

std::shared_ptr<void> device_alloc(size_t bytes) {
    rt();
    void* p = nullptr;
    const size_t n = bytes ? bytes : 256;
    const cudaError_t err = cudaMalloc(&p, n);
    if (err != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        fail("[cuda] out of device memory allocating ", n, " bytes (", free_b >> 20,
             " MiB free of ", total_b >> 20, " MiB)");
    }
    const size_t now = g_allocated += n;
    size_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return std::shared_ptr<void>(p, [n](void* q) {
        cudaFree(q);
        g_allocated -= n;
    });
}

void copy_bytes(void* dst, bool dst_dev, const void* src, bool src_dev, size_t bytes) {
    if (bytes == 0) return;
    const cudaMemcpyKind kind = dst_dev
                                    ? (src_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                    : (src_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, current_stream()));
    if (!dst_dev || !src_dev) CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

void synchronize() {
    CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

bool available() {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

DeviceInfo device_info() {
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    DeviceInfo d{};
    std::memcpy(d.name, p.name, sizeof d.name - 1);  // both are char[256]
    d.total_memory = p.totalGlobalMem;
    d.multiprocessors = p.multiProcessorCount;
    d.major = p.major;
    d.minor = p.minor;
    d.l2_bytes = size_t(p.l2CacheSize);
    return d;
}

size_t allocated_bytes() {
    return g_allocated.load();
}
size_t peak_allocated_bytes() {
    return g_peak.load();
}
void reset_peak_allocated() {
    g_peak = g_allocated.load();
}

}  // namespace olmo::cuda
