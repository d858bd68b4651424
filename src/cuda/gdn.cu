// Launchers of the gated delta rule: the recurrent kernel (decode, short prefills, and every f32
// call) and the chunked tensor-core kernels (bf16 prefill). Backward passes run on the CPU backend
// only for now.
#include "cuda/dispatch.h"
#include "cuda/kernels/gdn_chunked.cuh"
#include "cuda/kernels/gdn_recurrent.cuh"
#include "cuda/ops_cuda.h"
#include "cuda/runtime_internal.h"

namespace olmo::cuda {

namespace {

template <class T, int KMAX>
void launch_recurrent(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Tensor& g, const Tensor& beta) {
    const int B = int(q.size(0)), T_len = int(q.size(1)), H = int(q.size(2)), Dk = int(q.size(3)),
              Dv = int(v.size(3));
    const int threads = Dv >= 64 ? 64 : 32;
    const dim3 grid(unsigned(B * H), unsigned((Dv + threads - 1) / threads));
    kernels::gdn_recurrent_kernel<T, KMAX>
        <<<grid, threads, 2 * Dk * sizeof(float), current_stream()>>>(
            ptr<T>(o), ptr<float>(state), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<float>(g),
            ptr<float>(beta), T_len, H, Dk, Dv);
    CUDA_CHECK_LAUNCH();
}

template <class T>
void recurrent(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
               const Tensor& v, const Tensor& g, const Tensor& beta) {
    const int64_t Dk = q.size(3);
    if (Dk <= 32)
        launch_recurrent<T, 32>(o, state, q, k, v, g, beta);
    else if (Dk <= 64)
        launch_recurrent<T, 64>(o, state, q, k, v, g, beta);
    else if (Dk <= 96)
        launch_recurrent<T, 96>(o, state, q, k, v, g, beta);
    else if (Dk <= 128)
        launch_recurrent<T, 128>(o, state, q, k, v, g, beta);
    else if (Dk <= 256)
        launch_recurrent<T, 256>(o, state, q, k, v, g, beta);
    else
        fail("[gdn] CUDA supports key head dims up to 256, got ", Dk);
}

template <int DKP, int TV>
void launch_chunked(kernels::GdnChunkArgs args) {
    static bool configured = false;
    constexpr size_t wy = kernels::gdn_wy_smem<DKP>(), st = kernels::gdn_state_smem<DKP, TV>(),
                     out = kernels::gdn_output_smem<DKP>();
    if (!configured) {
        CUDA_CHECK(cudaFuncSetAttribute(kernels::gdn_wy_kernel<DKP>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, int(wy)));
        CUDA_CHECK(cudaFuncSetAttribute(kernels::gdn_state_kernel<DKP, TV>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, int(st)));
        CUDA_CHECK(cudaFuncSetAttribute(kernels::gdn_output_kernel<DKP>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, int(out)));
        configured = true;
    }
    const int BH = args.B * args.H, tiles_v = args.DVP / kernels::kTileV;
    kernels::gdn_wy_kernel<DKP>
        <<<BH * args.NC, kernels::kChunkThreads, wy, current_stream()>>>(args);
    CUDA_CHECK_LAUNCH();
    kernels::gdn_state_kernel<DKP, TV>
        <<<BH*(args.DVP / TV), kernels::kChunkThreads, st, current_stream()>>>(args);
    CUDA_CHECK_LAUNCH();
    kernels::gdn_output_kernel<DKP>
        <<<BH * args.NC * tiles_v, kernels::kChunkThreads, out, current_stream()>>>(args);
    CUDA_CHECK_LAUNCH();
}

// The sequential state pass has one block per (sequence, head, value tile): narrow tiles when that
// would not fill the GPU.
template <int DKP>
void launch_chunked(kernels::GdnChunkArgs args) {
    if (int64_t(args.B) * args.H * (args.DVP / 64) < 2 * multiprocessor_count())
        launch_chunked<DKP, 32>(args);
    else
        launch_chunked<DKP, 64>(args);
}

}  // namespace

void gdn_recurrent(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                   const Tensor& v, const Tensor& g, const Tensor& beta) {
    dispatch_float(q, "gdn_recurrent",
                   [&](auto t) { recurrent<decltype(t)>(o, state, q, k, v, g, beta); });
}

void gdn_chunked(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                 const Tensor& v, const Tensor& g, const Tensor& beta, int64_t chunk) {
    const int64_t Dk = q.size(3);
    // The tensor-core path is bf16 with chunks of 64 and Dk ≤ 128; everything else (f32 storage for
    // exact tests, other chunk sizes, wider keys) takes the recurrent kernel, which computes the
    // same function.
    if (q.dtype != DType::bf16 || chunk != kernels::kChunk || Dk > 128) {
        gdn_recurrent(o, state, q, k, v, g, beta);
        return;
    }
    kernels::GdnChunkArgs a{};
    a.B = int(q.size(0));
    a.T = int(q.size(1));
    a.H = int(q.size(2));
    a.Dk = int(Dk);
    a.Dv = int(v.size(3));
    if (a.B == 0 || a.T == 0) return;
    a.NC = int((a.T + kernels::kChunk - 1) / kernels::kChunk);
    a.DVP = int((a.Dv + kernels::kTileV - 1) / kernels::kTileV * kernels::kTileV);
    const int dkp = Dk <= 16 ? 16 : Dk <= 32 ? 32 : Dk <= 64 ? 64 : Dk <= 96 ? 96 : 128;
    const size_t rows = size_t(a.B) * a.H * a.NC * kernels::kChunk;
    a.q = ptr<__nv_bfloat16>(q);
    a.k = ptr<__nv_bfloat16>(k);
    a.v = ptr<__nv_bfloat16>(v);
    a.g = ptr<float>(g);
    a.beta = ptr<float>(beta);
    a.o = ptr<__nv_bfloat16>(o);
    a.state = ptr<float>(state);
    a.w = static_cast<__nv_bfloat16*>(scratch(0, rows * dkp * 2));
    a.u = static_cast<__nv_bfloat16*>(scratch(1, rows * a.DVP * 2));
    a.vn = static_cast<__nv_bfloat16*>(scratch(2, rows * a.DVP * 2));
    a.gamma = static_cast<float*>(scratch(3, rows * 4));
    a.hs = static_cast<__nv_bfloat16*>(scratch(4, size_t(a.B) * a.H * a.NC * dkp * a.DVP * 2));
    a.kd = static_cast<__nv_bfloat16*>(scratch(5, rows * dkp * 2));
    switch (dkp) {
        case 16:
            launch_chunked<16>(a);
            break;
        case 32:
            launch_chunked<32>(a);
            break;
        case 64:
            launch_chunked<64>(a);
            break;
        case 96:
            launch_chunked<96>(a);
            break;
        default:
            launch_chunked<128>(a);
            break;
    }
}

void gdn_recurrent_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&) {
    fail("[gdn_recurrent_backward] not available on CUDA yet: train on the CPU backend");
}

void gdn_chunked_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t) {
    fail("[gdn_chunked_backward] not available on CUDA yet: train on the CPU backend");
}

}  // namespace olmo::cuda
