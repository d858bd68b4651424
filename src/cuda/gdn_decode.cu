// Launcher of the fused GDN decode step (kernels/gdn_decode.cuh): one kernel per call, one block
// per (sequence, key head). The state column of each thread lives in registers, KMAX ≥ Dk of them.
#include <cmath>

#include "cuda/dispatch.h"
#include "cuda/kernels/gdn_decode.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

namespace {

constexpr size_t kMaxSharedBytes = 48 * 1024;  // without opting in to more

template <class T, int KMAX>
void launch(const kernels::GdnDecodeArgs<T>& args, int64_t B) {
    // Up to one thread per state column of the block's value heads; fewer threads for long columns
    // (the register budget), which then loop over the columns.
    constexpr int kMaxThreads = KMAX <= 64 ? 512 : 256;
    const int64_t columns = int64_t(args.H / args.Hk) * args.Dv;
    const int threads = int(std::min<int64_t>((columns + 31) / 32 * 32, kMaxThreads));
    const size_t smem = size_t(2 * args.Dk + columns) * sizeof(float);
    if (smem > kMaxSharedBytes)
        fail("[gdn_decode_step] ", args.H / args.Hk, " value heads of ", args.Dv,
             " per key head need ", smem, " bytes of shared memory, more than ", kMaxSharedBytes);
    kernels::gdn_decode_step_kernel<T, KMAX, kMaxThreads>
        <<<unsigned(B * args.Hk), threads, smem, current_stream()>>>(args);
    CUDA_CHECK_LAUNCH();
}

// The cluster kernel (kernels/gdn_decode.cuh) when there is no GVA and a head's columns fit one
// cluster; KP ≥ ⌈Dk/4⌉ rows per thread; DK, DV, WC: the shape fixed at compile time (0: generic).
template <class T, int KP, int DK = 0, int DV = 0, int WC = 0>
void launch_cluster(const kernels::GdnDecodeArgs<T>& args, int64_t B) {
    const int S = int((args.Dv + kernels::kGdnClusterColumns - 1) / kernels::kGdnClusterColumns);
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(unsigned(B * args.H * S));
    cfg.blockDim = dim3(32 * kernels::kGdnClusterWarps);
    cfg.stream = current_stream();
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = unsigned(S);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    CUDA_CHECK(
        cudaLaunchKernelEx(&cfg, kernels::gdn_decode_cluster_kernel<T, KP, DK, DV, WC>, args));
}

// The most key rows per warp the cluster kernel is built for.
constexpr int kMaxKeyRowsPerWarp = 64;

// The cluster kernel's body exists only in code built for sm_90 or newer: a build for an older
// architecture that runs on a Hopper GPU (the driver compiling its PTX) must not take it.
bool cluster_kernel_built() {
    static const bool built = [] {
        if (!device_has_sm90_features()) return false;
        cudaFuncAttributes attr{};
        CUDA_CHECK(cudaFuncGetAttributes(&attr, kernels::gdn_decode_cluster_kernel<float, 8>));
        return attr.ptxVersion >= 90;
    }();
    return built;
}

// The cluster kernel pays off while its blocks fit the GPU about once (small batches): each block
// is a short latency chain, and more waves of them cost more than the per-key-head kernel's
// longer columns.
template <class T>
bool cluster_fits(const kernels::GdnDecodeArgs<T>& args, int64_t B) {
    const int64_t S = (args.Dv + kernels::kGdnClusterColumns - 1) / kernels::kGdnClusterColumns;
    return args.H == args.Hk && S <= kernels::kGdnClusterMaxBlocks &&
           args.Dk <= kernels::kGdnClusterWarps * kMaxKeyRowsPerWarp && args.W >= 1 &&
           args.W <= kernels::kGdnClusterMaxW &&
           B * args.H * S <= 4 * int64_t(multiprocessor_count()) && cluster_kernel_built();
}

// The released shapes (D_k/D_v 96/192 and 128/128, 4 conv taps) have their own builds.
template <class T>
void launch_cluster_any(const kernels::GdnDecodeArgs<T>& args, int64_t B) {
    constexpr int kWarps = kernels::kGdnClusterWarps;
    if (args.W == 4 && args.Dk == 96 && args.Dv == 192)
        return launch_cluster<T, 96 / kWarps, 96, 192, 4>(args, B);
    if (args.W == 4 && args.Dk == 128 && args.Dv == 128)
        return launch_cluster<T, 128 / kWarps, 128, 128, 4>(args, B);
    const int rows = (args.Dk + kWarps - 1) / kWarps;
    dispatch_bound<8, 16, 24, 32, kMaxKeyRowsPerWarp>(
        rows, "gdn_decode_step", "key rows per warp",
        [&](auto kp) { launch_cluster<T, decltype(kp)::value>(args, B); });
}

}  // namespace

void gdn_decode_step(const Tensor& y, const Tensor& state, const Tensor& conv_q_state,
                     const Tensor& conv_k_state, const Tensor& conv_v_state, const Tensor& q,
                     const Tensor& k, const Tensor& v, const Tensor& a, const Tensor& b,
                     const Tensor& z, const Tensor& conv_q, const Tensor& conv_k,
                     const Tensor& conv_v, const Tensor& A_log, const Tensor& dt_bias,
                     const Tensor& o_norm, bool allow_neg_eigval, float l2_eps, float norm_eps) {
    const int64_t B = state.shape[0], H = state.shape[1], Dk = state.shape[2], Dv = state.shape[3];
    if (B == 0) return;
    dispatch_float(q, "gdn_decode_step", [&](auto tag) {
        using T = decltype(tag);
        kernels::GdnDecodeArgs<T> p{};
        p.y = ptr<T>(y);
        p.state = ptr<float>(state);
        p.conv_q_state = ptr<T>(conv_q_state);
        p.conv_k_state = ptr<T>(conv_k_state);
        p.conv_v_state = ptr<T>(conv_v_state);
        p.q = ptr<T>(q);
        p.k = ptr<T>(k);
        p.v = ptr<T>(v);
        p.a = ptr<T>(a);
        p.b = ptr<T>(b);
        p.z = ptr<T>(z);
        p.conv_q = ptr<T>(conv_q);
        p.conv_k = ptr<T>(conv_k);
        p.conv_v = ptr<T>(conv_v);
        p.A_log = ptr<T>(A_log);
        p.dt_bias = ptr<T>(dt_bias);
        p.o_norm = ptr<T>(o_norm);
        p.H = int(H);
        p.Hk = int(conv_q.shape[0] / Dk);
        p.Dk = int(Dk);
        p.Dv = int(Dv);
        p.W = int(conv_q.shape[1]);
        p.beta_scale = allow_neg_eigval ? 2.0f : 1.0f;
        p.q_scale = 1.0f / std::sqrt(float(Dk));
        p.l2_eps = l2_eps;
        p.norm_eps = norm_eps;
        if (cluster_fits(p, B))
            launch_cluster_any<T>(p, B);
        else
            dispatch_bound<32, 64, 96, 128, 256>(
                Dk, "gdn_decode_step", "key head dims",
                [&](auto kmax) { launch<T, decltype(kmax)::value>(p, B); });
    });
}

}  // namespace olmo::cuda
