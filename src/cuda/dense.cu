// Matrix products on cuBLASLt: out[N, O] = x[N, I] · w[O, I]ᵀ and its two backward products, for
// f32 and bf16 storage with f32 accumulation (and f32 weight gradients from bf16 activations).
// Row-major tensors are handed to cuBLAS (column-major) as their transposes. Algorithms are chosen
// once per shape by the cuBLASLt heuristic and cached.
#include <map>
#include <mutex>
#include <tuple>

#include "cuda/dispatch.h"
#include "cuda/kernels/gemv.cuh"
#include "cuda/ops_cuda.h"
#include "cuda/runtime_internal.h"

namespace olmo::cuda {

namespace {

cudaDataType_t cuda_type(DType t) {
    switch (t) {
        case DType::f32:
            return CUDA_R_32F;
        case DType::bf16:
            return CUDA_R_16BF;
        default:
            fail("[matmul] CUDA matmul supports f32 and bf16, got ", dtype_name(t));
    }
}

// D[m, n] (column-major, ld m) = alpha · op(A) · op(B) + beta · D, with op(A) [m, k], op(B) [k, n].
struct GemmKey {
    bool ta, tb;
    int64_t m, n, k, lda, ldb;
    cudaDataType_t a, b, d;
    bool accumulate;
    uint32_t align_a = 256, align_b = 256, align_d = 256;  // pointer alignments, bytes (≤ 256)
    auto tie() const {
        return std::tie(ta, tb, m, n, k, lda, ldb, a, b, d, accumulate, align_a, align_b, align_d);
    }
    bool operator<(const GemmKey& o) const { return tie() < o.tie(); }
};

struct GemmPlan {
    bool use_lt = true;  // false: no cuBLASLt algorithm for this case, cublasGemmEx instead
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
    cublasLtMatmulAlgo_t algo{};
};

GemmPlan& plan_for(const GemmKey& key) {
    static std::mutex mu;
    static std::map<GemmKey, GemmPlan> cache;
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    GemmPlan p;
    const bool all_f32 = key.a == CUDA_R_32F && key.b == CUDA_R_32F;
    // Plain f32 (no TF32) when the operands are f32, so that f32 results match the CPU reference.
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    (void)all_f32;
    const cublasOperation_t ta = key.ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                            tb = key.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    // Stored shapes: A is [m, k] or (transposed) [k, m]; B is [k, n] or [n, k]; all column-major.
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.la, key.a, key.ta ? key.k : key.m,
                                            key.ta ? key.m : key.k, key.lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lb, key.b, key.tb ? key.n : key.k,
                                            key.tb ? key.k : key.n, key.ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.ld, key.d, key.m, key.n, key.m));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = lt_workspace_bytes();
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    // The heuristic assumes 256-byte aligned operands unless told otherwise.
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.align_a, sizeof key.align_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.align_b, sizeof key.align_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_d, sizeof key.align_d));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_d, sizeof key.align_d));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_handle(), p.desc, p.la, p.lb, p.ld,
                                                             p.ld, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
        p.use_lt = false;  // odd shapes or alignments: the classic API handles every case
    else
        p.algo = result.algo;
    return cache.emplace(key, p).first->second;
}

void gemm(const GemmKey& key, const void* A, const void* B, void* D) {
    if (key.m == 0 || key.n == 0) return;
    if (key.k == 0) {
        if (!key.accumulate)
            CUDA_CHECK(cudaMemsetAsync(D, 0, size_t(key.m * key.n) * (key.d == CUDA_R_32F ? 4 : 2),
                                       current_stream()));
        return;
    }
    GemmPlan& p = plan_for(key);
    const float alpha = 1.0f, beta = key.accumulate ? 1.0f : 0.0f;
    if (!p.use_lt) {
        CUBLAS_CHECK(cublasGemmEx(
            blas_handle(), key.ta ? CUBLAS_OP_T : CUBLAS_OP_N, key.tb ? CUBLAS_OP_T : CUBLAS_OP_N,
            int(key.m), int(key.n), int(key.k), &alpha, A, key.a, int(key.lda), B, key.b,
            int(key.ldb), &beta, D, key.d, int(key.m), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return;
    }
    const cublasStatus_t st =
        cublasLtMatmul(lt_handle(), p.desc, &alpha, A, p.la, B, p.lb, &beta, D, p.ld, D, p.ld,
                       &p.algo, lt_workspace(), lt_workspace_bytes(), current_stream());
    if (st ==
        CUBLAS_STATUS_NOT_SUPPORTED) {  // the heuristic's choice refused at run time: classic API
        p.use_lt = false;
        gemm(key, A, B, D);
        return;
    }
    CUBLAS_CHECK(st);
}

uint32_t alignment(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uint32_t al = 256;
    while (al > 1 && (a % al) != 0) al /= 2;
    return al;
}

GemmKey with_alignment(GemmKey key, const void* A, const void* B, const void* D) {
    key.align_a = alignment(A);
    key.align_b = alignment(B);
    key.align_d = alignment(D);
    return key;
}

}  // namespace

namespace {

// Decode-sized products (N ≤ 8 rows of bf16 activations against bf16 weights) take the streaming
// kernel when the layout allows 16-byte loads; everything else goes to cuBLAS.
constexpr int64_t kGemvMaxTokens = 8;  // measured: at 16 tokens cuBLAS is faster

bool aligned16(const void* p) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

bool gemv_fits(const Tensor& x, const Tensor& w, DType out_dtype) {
    const int64_t I = x.size(-1), N = x.numel() / I;
    return x.dtype == DType::bf16 && w.dtype == DType::bf16 &&
           (out_dtype == DType::bf16 || out_dtype == DType::f32) && N >= 1 && N <= kGemvMaxTokens &&
           I % 8 == 0 && aligned16(x.data) && aligned16(w.data);
}

kernels::GemvSegments segments_of(std::span<const Tensor> outs) {
    kernels::GemvSegments seg;
    seg.count = int(outs.size());
    for (size_t s = 0; s < outs.size(); ++s) {
        seg.out[s] = outs[s].data;
        seg.start[s + 1] = seg.start[s] + outs[s].size(-1);
    }
    return seg;
}

using kernels::GemvFuse;

// Returns the number of blocks launched.
template <int NT, int ROWS, class TO, bool SWIGLU, int MIN_BLOCKS = 0,
          GemvFuse FUSE = GemvFuse::none>
int64_t launch_gemv(const kernels::GemvArgs& args) {
    const int64_t rows_per_block = int64_t(kernels::kGemvWarps) * (SWIGLU ? ROWS / 2 : ROWS);
    const int64_t blocks = (args.O + rows_per_block - 1) / rows_per_block;
    kernels::gemv_kernel<NT, ROWS, TO, SWIGLU, MIN_BLOCKS, FUSE>
        <<<unsigned(blocks), 32 * kernels::kGemvWarps, 0, current_stream()>>>(args);
    CUDA_CHECK_LAUNCH();
    return blocks;
}

// Rows per warp: about 64 warps' worth per SM (more rows per warp only for products larger than
// that), in blocks of kGemvWarps. Measured on the H200 (decode step, B = 1): this beat 32 warps
// per SM and 8-warp blocks by 3-4%. SWIGLU streams two weights of O rows, at least one row of each
// per warp. One token, no SwiGLU, fewer than 4 rows per warp: the kernel is capped at 56 registers
// (9 resident blocks per SM instead of 8, so the GDN q|k|v|a|b|z product runs in 1.8 waves instead
// of 2.05: 37.2 -> 34.5 us), and between one and two rows per warp (attention q|k|v) takes 4 rows
// per warp in one wave (25.6 -> 24.1 us; 2 rows, 1.2 waves, was slower than either). The step:
// 4.40 -> 4.33 ms (H200, same process). The head (11 rows per warp, several waves) is faster
// without the cap (181 vs 186 us).
// Returns the number of blocks launched. The fused norm (FUSE) is for one token.
template <class TO, bool SWIGLU = false, GemvFuse FUSE = GemvFuse::none>
int64_t gemv(const kernels::GemvArgs& args) {
    constexpr int kCapped = 9;  // blocks per SM under the register cap
    const int64_t warps_wanted = 64 * int64_t(multiprocessor_count());
    const int64_t rows_per_warp = (SWIGLU ? 2 : 1) * args.O / warps_wanted;
    if (FUSE != GemvFuse::none || args.N <= 1) {
        OLMO_CHECK(args.N == 1 || FUSE == GemvFuse::none, "[matmul] the fused norm is for one row");
        if constexpr (FUSE == GemvFuse::sumsq_out)  // a warp takes its one row's norm weight early
            return launch_gemv<1, 1, TO, false, kCapped, FUSE>(args);
        else if (rows_per_warp >= 4)
            return launch_gemv<1, 4, TO, SWIGLU, 0, FUSE>(args);
        else if constexpr (SWIGLU)
            return launch_gemv<1, 2, TO, true, 0, FUSE>(args);
        else if (rows_per_warp >= 2)
            return launch_gemv<1, 2, TO, false, kCapped, FUSE>(args);
        else if (rows_per_warp >= 1)
            return launch_gemv<1, 4, TO, false, kCapped, FUSE>(args);
        else
            return launch_gemv<1, 1, TO, false, kCapped, FUSE>(args);
    }
    if constexpr (FUSE != GemvFuse::none)
        return 0;  // not reached
    else if (args.N <= 2) {
        if (rows_per_warp >= 2 || SWIGLU)
            launch_gemv<2, 2, TO, SWIGLU>(args);
        else
            launch_gemv<2, 1, TO, false>(args);
    } else if (args.N <= 4) {
        if (rows_per_warp >= 2 || SWIGLU)
            launch_gemv<4, 2, TO, SWIGLU>(args);
        else
            launch_gemv<4, 1, TO, false>(args);
    } else if (SWIGLU) {
        launch_gemv<8, 2, TO, true>(args);
    } else {
        launch_gemv<8, 1, TO, false>(args);
    }
    return 0;
}

template <bool SWIGLU = false>
void gemv_any(DType out_dtype, const kernels::GemvArgs& args) {
    if (out_dtype == DType::f32)
        gemv<float, SWIGLU>(args);
    else
        gemv<__nv_bfloat16, SWIGLU>(args);
}

kernels::GemvArgs gemv_args(const kernels::GemvSegments& seg, const Tensor& x, const Tensor& w,
                            bool accumulate) {
    kernels::GemvArgs a{};
    a.seg = seg;
    a.x = ptr<__nv_bfloat16>(x);
    a.w = ptr<__nv_bfloat16>(w);
    a.I = x.size(-1);
    a.N = int(x.numel() / a.I);
    a.O = w.size(0);
    a.accumulate = accumulate;
    return a;
}

}  // namespace

void matmul_segments(std::span<const Tensor> outs, const Tensor& x, const Tensor& w) {
    if (gemv_fits(x, w, outs[0].dtype)) {
        gemv_any(outs[0].dtype, gemv_args(segments_of(outs), x, w, false));
        return;
    }
    int64_t row = 0;
    for (const Tensor& o : outs) {
        const int64_t n = o.size(-1);
        matmul(o, x, w.narrow0(row, n), false);
        row += n;
    }
}

namespace {

bool swiglu_gemv_fits(const Tensor& gate, const Tensor& x, const Tensor& w_gate,
                      const Tensor& w_up) {
    return gemv_fits(x, w_gate, gate.dtype) && aligned16(w_up.data);
}

kernels::GemvArgs swiglu_args(const Tensor& act, const Tensor& gate, const Tensor& up,
                              const Tensor& x, const Tensor& w_gate, const Tensor& w_up) {
    kernels::GemvArgs a = gemv_args(kernels::GemvSegments{}, x, w_gate, false);
    a.w_up = ptr<__nv_bfloat16>(w_up);
    a.gate = gate.data;
    a.up = up.data;
    a.act = act.data;
    return a;
}

// The carried norm: a bf16 row h whose producer left its sums of squares and h ⊙ norm_w for this
// norm's weight (ops:: checked that sums describe one row and that scaled is h's size and dtype).
bool norm_fits(const Tensor& h, const Tensor& norm_w, const SumSquares& sumsq) {
    return sumsq.count > 0 && sumsq.count <= kernels::kGemvMaxSumsq &&
           sumsq.norm_w.data == norm_w.data && h.dtype == DType::bf16;
}

void set_input_norm(kernels::GemvArgs& a, float eps, const SumSquares& sumsq) {
    a.sumsq_in = ptr<float>(sumsq.partials);
    a.sumsq_count = int(sumsq.count);
    a.norm_eps = eps;
}

}  // namespace

void matmul_swiglu(const Tensor& act, const Tensor& gate, const Tensor& up, const Tensor& x,
                   const Tensor& w_gate, const Tensor& w_up) {
    if (!swiglu_gemv_fits(gate, x, w_gate, w_up)) {
        matmul(gate, x, w_gate, false);
        matmul(up, x, w_up, false);
        swiglu(act, gate, up);
        return;
    }
    gemv_any<true>(gate.dtype, swiglu_args(act, gate, up, x, w_gate, w_up));
}

// Decoding, the RMSNorm between two products carried by them (kernels/gemv.cuh, GemvFuse). Measured
// on the H200 (decode step B = 1): see docs/PERF.md.
void matmul_sumsq(const Tensor& out, SumSquares& sumsq, const Tensor& x, const Tensor& w,
                  bool accumulate, const Tensor& norm_w) {
    sumsq.count = 0;
    const int64_t O = w.size(0), most_blocks = (O + kernels::kGemvWarps - 1) / kernels::kGemvWarps;
    if (out.dtype != DType::bf16 || x.numel() != x.size(-1) || !gemv_fits(x, w, out.dtype) ||
        norm_w.empty() || sumsq.scaled.empty() || sumsq.partials.numel() < most_blocks) {
        matmul(out, x, w, accumulate);
        return;
    }
    kernels::GemvArgs a = gemv_args(segments_of(std::span(&out, 1)), x, w, accumulate);
    a.sumsq_out = ptr<float>(sumsq.partials);
    a.norm_w = norm_w.data;
    a.scaled = sumsq.scaled.data;
    sumsq.count = gemv<__nv_bfloat16, false, GemvFuse::sumsq_out>(a);
    sumsq.norm_w = norm_w;
}

void rmsnorm_matmul_segments(std::span<const Tensor> outs, const Tensor& normed, const Tensor& h,
                             const Tensor& norm_w, float eps, const SumSquares& sumsq,
                             const Tensor& w) {
    if (!norm_fits(h, norm_w, sumsq) || !gemv_fits(sumsq.scaled, w, outs[0].dtype)) {
        rmsnorm(normed, h, norm_w, eps);
        matmul_segments(outs, normed, w);
        return;
    }
    kernels::GemvArgs a = gemv_args(segments_of(outs), sumsq.scaled, w, false);
    set_input_norm(a, eps, sumsq);
    gemv<__nv_bfloat16, false, GemvFuse::norm_in>(a);
}

void rmsnorm_matmul_swiglu(const Tensor& act, const Tensor& gate, const Tensor& up,
                           const Tensor& normed, const Tensor& h, const Tensor& norm_w, float eps,
                           const SumSquares& sumsq, const Tensor& w_gate, const Tensor& w_up) {
    if (!norm_fits(h, norm_w, sumsq) || !swiglu_gemv_fits(gate, sumsq.scaled, w_gate, w_up)) {
        rmsnorm(normed, h, norm_w, eps);
        matmul_swiglu(act, gate, up, normed, w_gate, w_up);
        return;
    }
    kernels::GemvArgs a = swiglu_args(act, gate, up, sumsq.scaled, w_gate, w_up);
    set_input_norm(a, eps, sumsq);
    gemv<__nv_bfloat16, true, GemvFuse::norm_in>(a);
}

// out[N, O] = x[N, I] · wᵀ: column-major outᵀ[O, N] = w[O, I]·xᵀ = op_T(w as col-major [I, O]) · (x
// as [I, N]).
void matmul(const Tensor& out, const Tensor& x, const Tensor& w, bool accumulate) {
    if (gemv_fits(x, w, out.dtype)) {
        gemv_any(out.dtype, gemv_args(segments_of(std::span(&out, 1)), x, w, accumulate));
        return;
    }
    const int64_t N = x.numel() / x.size(-1), I = x.size(-1), O = w.size(0);
    gemm(with_alignment({true, false, O, N, I, I, I, cuda_type(w.dtype), cuda_type(x.dtype),
                         cuda_type(out.dtype), accumulate},
                        w.data, x.data, out.data),
         w.data, x.data, out.data);
}

// d_x[N, I] = d_out[N, O] · w[O, I]: column-major d_xᵀ[I, N] = (w as col-major [I, O]) · (d_out as
// [O, N]).
void matmul_backward_input(const Tensor& d_x, const Tensor& d_out, const Tensor& w,
                           bool accumulate) {
    const int64_t N = d_out.numel() / d_out.size(-1), O = d_out.size(-1), I = w.size(1);
    gemm(with_alignment({false, false, I, N, O, I, O, cuda_type(w.dtype), cuda_type(d_out.dtype),
                         cuda_type(d_x.dtype), accumulate},
                        w.data, d_out.data, d_x.data),
         w.data, d_out.data, d_x.data);
}

// d_w[O, I] += d_out[N, O]ᵀ · x[N, I]: column-major d_wᵀ[I, O] = (x as [I, N]) · op_T(d_out as [O,
// N]).
void matmul_backward_weight(const Tensor& d_w, const Tensor& d_out, const Tensor& x) {
    const int64_t N = x.numel() / x.size(-1), I = x.size(-1), O = d_out.size(-1);
    gemm(with_alignment({false, true, I, O, N, I, O, cuda_type(x.dtype), cuda_type(d_out.dtype),
                         cuda_type(d_w.dtype), true},
                        x.data, d_out.data, d_w.data),
         x.data, d_out.data, d_w.data);
}

}  // namespace olmo::cuda
