#include "cuda_testing.h"

#include <cuda_runtime.h>

#include <cstring>
#include <map>
#include <span>
#include <vector>

#include "cuda/runtime_internal.h"

namespace olmo::testing {

namespace {
constexpr unsigned char kSentinel = 0xA5;
}

int64_t numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
}

OwnedTensor randn(const Shape& shape, uint64_t seed, float std) {
    OwnedTensor t(DType::f32, std::span<const int64_t>(shape));
    if (numel(shape) == 0) return t;
    OwnedTensor flat = random_normal({numel(shape)}, seed, std);
    std::memcpy(t->data, flat->data, flat->nbytes());
    return t;
}

OwnedTensor randu(const Shape& shape, uint64_t seed, float lo, float hi) {
    OwnedTensor t(DType::f32, std::span<const int64_t>(shape));
    if (numel(shape) == 0) return t;
    OwnedTensor flat = random_uniform({numel(shape)}, seed, lo, hi);
    std::memcpy(t->data, flat->data, flat->nbytes());
    return t;
}

In make_in(const OwnedTensor& values, DType dt) {
    return In{rounded(values, dt), to_device(values, dt)};
}

OwnedTensor host_like(const Tensor& t) {
    OwnedTensor h(DType::f32, t.dims());
    h.fill(0.0f);
    return h;
}

Guarded out_like(DType dt, const Tensor& t) {
    const std::vector<int64_t> d = t.dims();
    Guarded g(dt, std::span<const int64_t>(d));
    g.poison();
    return g;
}

Guarded preset(DType dt, const Tensor& values) {
    Guarded g = out_like(dt, values);
    copy_convert(g.view(), values);
    return g;
}

OwnedTensor to_device(const Tensor& host, DType dtype) {
    OwnedTensor d(dtype, host.dims(), Device::cuda);
    copy_convert(d, host);
    return d;
}

OwnedTensor rounded(const Tensor& host, DType dtype) {
    OwnedTensor tmp(dtype, host.dims());
    copy_convert(tmp, host);
    return to_host_f32(tmp);
}

Guarded::Guarded(DType dtype, std::initializer_list<int64_t> shape)
    : Guarded(dtype, std::span<const int64_t>(shape.begin(), shape.size())) {}

Guarded::Guarded(DType dtype, std::span<const int64_t> shape) {
    view_ = Tensor(nullptr, dtype, Device::cuda, shape);
    const size_t total = view_.nbytes() + 2 * kGuardBytes;
    storage_ = allocate_bytes(Device::cuda, total);
    std::vector<unsigned char> fill(total, kSentinel);
    cuda::copy_bytes(storage_.get(), true, fill.data(), false, total);
    view_.data = static_cast<char*>(storage_.get()) + kGuardBytes;
}

void Guarded::poison() {
    std::vector<unsigned char> nan(view_.nbytes(), 0xFF);  // all-ones: NaN in f32 and bf16
    cuda::copy_bytes(view_.data, true, nan.data(), false, nan.size());
}

::testing::AssertionResult Guarded::guards_intact() const {
    std::vector<unsigned char> before(kGuardBytes), after(kGuardBytes);
    cuda::copy_bytes(before.data(), false, static_cast<const char*>(view_.data) - kGuardBytes, true,
                     kGuardBytes);
    cuda::copy_bytes(after.data(), false, static_cast<const char*>(view_.data) + view_.nbytes(),
                     true, kGuardBytes);
    for (size_t i = 0; i < kGuardBytes; ++i) {
        if (before[i] != kSentinel)
            return ::testing::AssertionFailure()
                   << "write " << (kGuardBytes - i) << " bytes before the output";
        if (after[i] != kSentinel)
            return ::testing::AssertionFailure()
                   << "write " << i << " bytes past the end of the output";
    }
    return ::testing::AssertionSuccess();
}

double tolerance(const std::string& op, DType dtype) {
    // f32: the same arithmetic in another order (and fast-math intrinsics for exp/rsqrt): ~1e-6 per
    // op, up to ~1e-5 after long reductions. bf16 storage: one rounding of the output (2^-8
    // = 3.9e-3 relative) plus rounded inputs; ops that chain several roundings (attention, GDN) get
    // a wider bound.
    static const std::map<std::string, std::pair<double, double>> table = {
        {"elementwise", {1e-6, 8e-3}}, {"norm", {1e-5, 1e-2}},
        {"rope", {1e-5, 1e-2}},        {"matmul", {1e-5, 1e-2}},
        {"conv", {1e-5, 1e-2}},        {"gates", {1e-5, 1e-2}},
        {"attention", {2e-5, 2e-2}},   {"gdn", {5e-5, 3e-2}},
        {"loss", {1e-5, 1e-3}},        {"loss_grad", {1e-5, 8e-3}},
        {"model", {1e-4, 5e-2}},       {"gdn_ill_conditioned", {5e-5, 6e-2}},
        {"gdn_decode", {5e-5, 1e-2}},
    };
    auto it = table.find(op);
    OLMO_CHECK(it != table.end(), "no tolerance for op family ", op);
    return dtype == DType::f32 ? it->second.first : it->second.second;
}

::testing::AssertionResult capture_and_replay(const std::function<void()>& fn, int replays) {
    cudaStream_t stream = cuda::current_stream();
    auto failed = [](const char* what, cudaError_t err) {
        return ::testing::AssertionFailure() << what << ": " << cudaGetErrorString(err);
    };
    cudaError_t err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
    if (err != cudaSuccess) return failed("cudaStreamBeginCapture", err);
    fn();
    cudaGraph_t graph = nullptr;
    err = cudaStreamEndCapture(stream, &graph);
    if (err != cudaSuccess) return failed("cudaStreamEndCapture", err);
    cudaGraphExec_t exec = nullptr;
    err = cudaGraphInstantiate(&exec, graph, 0);
    for (int i = 0; err == cudaSuccess && i < replays; ++i) err = cudaGraphLaunch(exec, stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
    if (exec) cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    if (err != cudaSuccess) return failed("graph instantiate / launch / synchronize", err);
    return ::testing::AssertionSuccess();
}

}  // namespace olmo::testing
