// Launchers of the gated delta rule: the recurrent kernel (decode, short prefills, and every f32
// call) and the chunked tensor-core kernels (bf16 prefill). Backward passes run on the CPU backend
// only for now.
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "cuda/dispatch.h"
#include "cuda/kernels/gdn_recurrent.cuh"
#include "cuda/kernels/gdn_scan.cuh"
#include "cuda/kernels/gdn_wy.cuh"
#include "cuda/launch.h"
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
    dispatch_bound<32, 64, 96, 128, 256>(q.size(3), "gdn", "key head dims", [&](auto kmax) {
        launch_recurrent<T, decltype(kmax)::value>(o, state, q, k, v, g, beta);
    });
}

int max_dynamic_smem() {
    static const int limit = [] {
        int device = 0, bytes = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
        return bytes;
    }();
    return limit;
}

// Raises a kernel's dynamic shared-memory limit to `bytes` the first time a call needs it.
template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes, int& allowed) {
    if (int(bytes) <= allowed) return;
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    allowed = int(bytes);
}

template <int DKP, int NW>
void launch_chunked(const kernels::GdnChunkArgs& args) {
    static int wy_allowed = 0, scan_allowed = 0;
    const size_t wy = kernels::WyLayout<DKP>::bytes(args.DVP),
                 scan = kernels::ScanLayout<DKP, NW>::bytes;
    allow_smem(kernels::gdn_wy_kernel<DKP>, wy, wy_allowed);
    allow_smem(kernels::gdn_scan_kernel<DKP, NW>, scan, scan_allowed);
    const int BH = args.B * args.H, tiles_v = args.DVP / (16 * NW);
    kernels::gdn_wy_kernel<DKP><<<BH * args.NC, kernels::kWyThreads, wy, current_stream()>>>(args);
    CUDA_CHECK_LAUNCH();
    kernels::gdn_scan_kernel<DKP, NW><<<BH * tiles_v, NW * 64, scan, current_stream()>>>(args);
    CUDA_CHECK_LAUNCH();
}

template <int DKP>
void launch_chunked(const kernels::GdnChunkArgs& args, int nw) {
    switch (nw) {
        case 4:
            launch_chunked<DKP, 4>(args);
            break;
        case 3:
            launch_chunked<DKP, 3>(args);
            break;
        default:
            launch_chunked<DKP, 2>(args);
            break;
    }
}

size_t chunked_smem(int dkp, int dvp, int nw) {
    auto scan = [&](auto dk) {
        constexpr int D = decltype(dk)::value;
        return nw == 4   ? kernels::ScanLayout<D, 4>::bytes
               : nw == 3 ? kernels::ScanLayout<D, 3>::bytes
                         : kernels::ScanLayout<D, 2>::bytes;
    };
    auto wy = [&](auto dk) {
        constexpr int D = decltype(dk)::value;
        return kernels::WyLayout<D>::bytes(dvp);
    };
    auto both = [&](auto dk) { return std::max(scan(dk), wy(dk)); };
    switch (dkp) {
        case 16:
            return both(std::integral_constant<int, 16>{});
        case 32:
            return both(std::integral_constant<int, 32>{});
        case 64:
            return both(std::integral_constant<int, 64>{});
        case 96:
            return both(std::integral_constant<int, 96>{});
        default:
            return both(std::integral_constant<int, 128>{});
    }
}

int64_t padded_dv(int64_t Dv, int nw) {
    return (Dv + 16 * nw - 1) / (16 * nw) * (16 * nw);
}

// Value slices (16 columns, one state and one output warp each) per scan block, 0 when no tiling
// fits in shared memory. The scan is sequential over chunks, so its speed is the per-chunk time of
// one block: wide blocks when there are blocks enough to fill the GPU anyway, else the widest
// tiling of Dv that does. OLMO_GDN_SCAN_WARPS=2|3|4 forces a width (for measurements) where it
// fits.
int scan_slices(int64_t BH, int64_t Dv, int dkp) {
    const auto fits = [&](int nw) {
        return chunked_smem(dkp, int(padded_dv(Dv, nw)), nw) <= size_t(max_dynamic_smem());
    };
    static const int forced = [] {
        const char* v = std::getenv("OLMO_GDN_SCAN_WARPS");
        const int n = v ? std::atoi(v) : 0;
        return n >= 2 && n <= 4 ? n : 0;
    }();
    if (forced && fits(forced)) return forced;
    const int64_t sms = multiprocessor_count();
    for (int nw : {4, 3}) {
        const int64_t blocks = BH * (padded_dv(Dv, nw) / (16 * nw));
        if (Dv % (16 * nw) == 0 && 5 * blocks >= 4 * sms && fits(nw)) return nw;
    }
    return fits(2) ? 2 : 0;
}

}  // namespace

void gdn_recurrent(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                   const Tensor& v, const Tensor& g, const Tensor& beta) {
    dispatch_float(q, "gdn_recurrent",
                   [&](auto t) { recurrent<decltype(t)>(o, state, q, k, v, g, beta); });
}

void gdn_chunked(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                 const Tensor& v, const Tensor& g, const Tensor& beta, int64_t chunk) {
    const int64_t Dk = q.size(3), Dv = v.size(3);
    if (q.size(0) == 0 || q.size(1) == 0) return;
    const int dkp = Dk <= 16 ? 16 : Dk <= 32 ? 32 : Dk <= 64 ? 64 : Dk <= 96 ? 96 : 128;
    // The tensor-core path is bf16 with chunks of 64, Dk ≤ 128 and tiles that fit in shared
    // memory; everything else (f32 storage for exact tests, other chunk sizes, wider heads) takes
    // the recurrent kernel, which computes the same function.
    const int nw = Dk <= 128 ? scan_slices(q.size(0) * q.size(2), Dv, dkp) : 0;
    const int64_t dvp = padded_dv(Dv, nw > 0 ? nw : 1);
    if (q.dtype != DType::bf16 || chunk != kernels::kChunk || nw == 0) {
        gdn_recurrent(o, state, q, k, v, g, beta);
        return;
    }
    kernels::GdnChunkArgs a{};
    a.B = int(q.size(0));
    a.T = int(q.size(1));
    a.H = int(q.size(2));
    a.Dk = int(Dk);
    a.Dv = int(Dv);
    a.NC = int((a.T + kernels::kChunk - 1) / kernels::kChunk);
    a.DVP = int(dvp);
    const size_t rows = size_t(a.B) * a.H * a.NC * kernels::kChunk;
    a.q = ptr<__nv_bfloat16>(q);
    a.k = ptr<__nv_bfloat16>(k);
    a.v = ptr<__nv_bfloat16>(v);
    a.g = ptr<float>(g);
    a.beta = ptr<float>(beta);
    a.o = ptr<__nv_bfloat16>(o);
    a.state = ptr<float>(state);
    a.qk_vec = packable<__nv_bfloat16>(Dk, {q.data, k.data});
    a.v_vec = packable<__nv_bfloat16>(Dv, {v.data});
    a.o_vec = packable<__nv_bfloat16>(Dv, {o.data});
    a.VT = 16 * nw;
    const size_t ldk = size_t(dkp) + 8, tiles = size_t(a.DVP / a.VT);
    a.wk = static_cast<__nv_bfloat16*>(scratch(0, rows * 2 * ldk * 2));
    a.qs = static_cast<__nv_bfloat16*>(scratch(1, rows * (ldk + kernels::kSPitch) * 2));
    a.u = static_cast<__nv_bfloat16*>(
        scratch(2, rows * tiles * size_t(kernels::value_pitch(a.VT)) * 2));
    a.out_decay = static_cast<float*>(scratch(3, rows * 4));
    a.state_decay = static_cast<float*>(
        scratch(4, size_t(a.B) * a.H * a.NC * kernels::kStateDecays * sizeof(float)));
    switch (dkp) {
        case 16:
            launch_chunked<16>(a, nw);
            break;
        case 32:
            launch_chunked<32>(a, nw);
            break;
        case 64:
            launch_chunked<64>(a, nw);
            break;
        case 96:
            launch_chunked<96>(a, nw);
            break;
        default:
            launch_chunked<128>(a, nw);
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
