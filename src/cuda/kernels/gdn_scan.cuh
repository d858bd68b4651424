// Chunked gated delta rule, kernel 2 of 2 (gdn_chunked.cuh): the scan over chunks. One block per
// (b, h, tile of VT = 16·NW value columns), two kinds of warps (warp specialisation), NW of each:
//   state warp w:  keeps rows j0 .. j0 + 15 (j0 = 16w) of Hᵀ in f32 mma accumulators for the whole
//                  sequence (the transposed form lets every product feed the next one without
//                  leaving registers). For chunk n:
//                    Pᵀ = Hᵀ Wᵀ,  V'ᵀ = Uᵀ − Pᵀ,  Hᵀ ← e^{γ_C} Hᵀ + (V' ⊙ e^{γ_C − γ})ᵀ K,
//                  and hands the chunk-start Hᵀ and V'ᵀ (bf16 A fragments) to its output warp.
//   output warp w: one chunk behind, Oᵀ = (Hᵀ Qᵀ) ⊙ e^γ + V'ᵀ Sᵀ for the same 16 columns, stored
//                  through shared memory; the output warps also issue every copy of the block.
// The state warps' chain (two products and an update per chunk) is the sequential part; the output
// products and all copies run beside it. Per iteration n (one block barrier each):
//   output warps: O of chunk n − 1; then copies for chunk n + 2's state stage (ring of 3: W, K, U
//                 tile, decays) and chunk n + 1's output stage (ring of 2: Q, S, decays);
//   state warps:  chunk n, writing the exchange buffer n % 2.
// Every operand is one contiguous range (the WY kernel wrote them in this kernel's layouts). On
// sm_90 one thread moves each range with a bulk copy that completes the stage's transaction
// barrier, which its consumers wait on; before sm_90 the output warps stream it with 16-byte
// cp.async copies and, at the end of iteration n, wait for chunk n + 1's state stage and chunk n's
// output stage (issued one iteration earlier), which the block barrier then publishes.
#pragma once

#include "bulk_copy.cuh"
#include "gdn_chunked.cuh"

namespace olmo::kernels {

template <int DKP, int NW>
struct ScanLayout {
    static constexpr int VT = 16 * NW;   // value columns per block
    static constexpr int KS = DKP / 16;  // k steps over the key dim
    // Exchanged words per lane: Hᵀ (4·KS), V'ᵀ (16), padded so that 16-byte accesses by 8 lanes
    // hit distinct banks.
    static constexpr int XW = 4 * KS + 16 + 4;
    static constexpr int LDK = key_pitch<DKP>(), LDS = kSPitch, LDU = value_pitch(VT), LDO = 16 + 8;
    // state stage: W, K, U tile, decays (kStateDecays)
    static constexpr size_t kW = 0, kK = kW + carve_bytes(kChunk * LDK * 2),
                            kU = kK + carve_bytes(kChunk * LDK * 2),
                            kSD = kU + carve_bytes(kChunk * LDU * 2),
                            kStateStage = kSD + carve_bytes(kStateDecays * 4);
    // output stage: Q, S, e^γ (Q and S are the output warps' staging once their products are done)
    static constexpr size_t kQ = 0, kS = kQ + carve_bytes(kChunk * LDK * 2),
                            kOD = kS + carve_bytes(kChunk * LDS * 2),
                            kOutStage = kOD + carve_bytes(kChunk * 4);
    static constexpr size_t kXchg = carve_bytes(size_t(NW) * 32 * XW * 4);
    static constexpr size_t kStates = 0, kOuts = 3 * kStateStage, kX = kOuts + 2 * kOutStage;
    // Transaction barriers of the bulk copies: the 3 state stages, then the 2 output stages.
    static constexpr size_t kBars = kX + 2 * kXchg;
    static constexpr size_t bytes = kBars + carve_bytes(5 * sizeof(uint64_t));
    // Bytes delivered into a state stage (W and K, the U tile, decays) and an output stage (Q and
    // S, decays).
    static constexpr uint32_t kWKBytes = 2 * kChunk * LDK * 2, kUBytes = kChunk * LDU * 2,
                              kStateDecayBytes = kStateDecays * 4,
                              kQSBytes = kChunk * (LDK + LDS) * 2, kOutDecayBytes = kChunk * 4;
    static_assert(size_t(NW) * kChunk * LDO * 2 <= kOutStage, "output staging fits a stage");
};

// acc (16 rows × 64 tokens) = a (16 × 16·KS) · Bᵀ, B stored token-major in shared memory (64 rows
// of pitch ld): Hᵀ Wᵀ and Hᵀ Qᵀ.
template <int KS>
__device__ __forceinline__ void rows_times_tokens(float (&acc)[8][4], const uint32_t (&a)[KS][4],
                                                  const __nv_bfloat16* b, int ld, int lane) {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks)
#pragma unroll
        for (int np = 0; np < 4; ++np) {
            uint32_t bb[4];
            ldsm_x4(bb, b_tile_addr(b, ld, 16 * np, 16 * ks, lane));
            mma_bf16(acc[2 * np], a[ks], bb[0], bb[1]);
            mma_bf16(acc[2 * np + 1], a[ks], bb[2], bb[3]);
        }
}

// The four words of a bf16 A tile from shared memory (16-byte aligned).
__device__ __forceinline__ void load_a_tile(uint32_t (&a)[4], const uint32_t* p) {
    const uint4 x = *reinterpret_cast<const uint4*>(p);
    a[0] = x.x;
    a[1] = x.y;
    a[2] = x.z;
    a[3] = x.w;
}

template <int DKP, int NW>
__global__ void __launch_bounds__(NW * 64, 1) gdn_scan_kernel(GdnChunkArgs a) {
    using L = ScanLayout<DKP, NW>;
    constexpr int VT = L::VT, KS = L::KS, XW = L::XW, LDK = L::LDK, LDS = L::LDS, LDU = L::LDU,
                  LDO = L::LDO;
    extern __shared__ __align__(128) char smem_raw[];

    const int tiles_v = a.DVP / VT;
    const int vt = blockIdx.x % tiles_v, bh = blockIdx.x / tiles_v, b = bh / a.H, h = bh % a.H;
    const int v0 = vt * VT;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
    const bool is_state = warp < NW;
    const int slice = is_state ? warp : warp - NW;
    const int j0 = slice * 16;  // this warp's value columns within the tile
    const size_t Tp = size_t(a.NC) * kChunk;

    auto state_stage = [&](int n) { return smem_raw + L::kStates + (n % 3) * L::kStateStage; };
    auto out_stage = [&](int n) { return smem_raw + L::kOuts + (n % 2) * L::kOutStage; };
    auto xchg = [&](int n) {  // this lane's XW words
        return reinterpret_cast<uint32_t*>(smem_raw + L::kX + (n % 2) * L::kXchg) +
               (slice * 32 + lane) * XW;
    };

    // Copies, issued by the output warps (ptid = 0 .. 32·NW − 1); the sources of chunk n's
    // stages.
    const int ptid = threadIdx.x - 32 * NW;
    auto src_wk = [&](int n) { return a.wk + (size_t(bh) * a.NC + n) * 2 * kChunk * LDK; };
    auto src_u = [&](int n) {
        return a.u + ((size_t(bh) * tiles_v + vt) * Tp + size_t(n) * kChunk) * LDU;
    };
    auto src_qs = [&](int n) { return a.qs + (size_t(bh) * a.NC + n) * kChunk * (LDK + LDS); };
    auto src_state_decay = [&](int n) {
        return a.state_decay + (size_t(bh) * a.NC + n) * kStateDecays;
    };
    auto src_out_decay = [&](int n) { return a.out_decay + size_t(bh) * Tp + size_t(n) * kChunk; };
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint64_t* bars = reinterpret_cast<uint64_t*>(smem_raw + L::kBars);
    auto copy_state_stage = [&](int n) {
        if (ptid != 0) return;
        char* st = state_stage(n);
        uint64_t* bar = bars + n % 3;
        fence_async_smem();  // after the state warps' reads of the stage's previous chunk
        mbar_arrive_expect_tx(bar, L::kWKBytes + L::kUBytes + L::kStateDecayBytes);
        bulk_copy_to_smem(st + L::kW, src_wk(n), L::kWKBytes, bar);
        bulk_copy_to_smem(st + L::kU, src_u(n), L::kUBytes, bar);
        bulk_copy_to_smem(st + L::kSD, src_state_decay(n), L::kStateDecayBytes, bar);
    };
    auto copy_out_stage = [&](int n) {
        if (ptid != 0) return;
        char* st = out_stage(n);
        uint64_t* bar = bars + 3 + n % 2;
        mbar_arrive_expect_tx(bar, L::kQSBytes + L::kOutDecayBytes);
        bulk_copy_to_smem(st + L::kQ, src_qs(n), L::kQSBytes, bar);
        bulk_copy_to_smem(st + L::kOD, src_out_decay(n), L::kOutDecayBytes, bar);
    };
    // Chunk n's stages have landed (each barrier's k-th phase has parity k % 2).
    auto wait_state_stage = [&](int n) { mbar_wait(bars + n % 3, (n / 3) & 1); };
    auto wait_out_stage = [&](int n) { mbar_wait(bars + 3 + n % 2, (n / 2) & 1); };
    // Only the barriers' phases order the copies.
    auto close_group = [] {};
    auto close_group_and_wait_previous = [] {};
    if (ptid == 0) {
        for (int i = 0; i < 5; ++i) mbar_init(bars + i, 1);
        mbar_init_fence();
    }
#else
    auto copy_state_stage = [&](int n) {
        char* st = state_stage(n);
        copy_linear<L::kWKBytes, 32 * NW>(st + L::kW, src_wk(n), ptid);
        copy_linear<L::kUBytes, 32 * NW>(st + L::kU, src_u(n), ptid);
        copy_linear<L::kStateDecayBytes, 32 * NW>(st + L::kSD, src_state_decay(n), ptid);
    };
    auto copy_out_stage = [&](int n) {
        char* st = out_stage(n);
        copy_linear<L::kQSBytes, 32 * NW>(st + L::kQ, src_qs(n), ptid);
        copy_linear<L::kOutDecayBytes, 32 * NW>(st + L::kOD, src_out_decay(n), ptid);
    };
    // The block barrier after close_group_and_wait_previous publishes the stages.
    auto wait_state_stage = [](int) {};
    auto wait_out_stage = [](int) {};
    // Commits the copies issued since the last commit as one group; then waits for every group
    // but this one.
    auto close_group = [] { __pipeline_commit(); };
    auto close_group_and_wait_previous = [] {
        __pipeline_commit();
        __pipeline_wait_prior(1);
    };
#endif

    // State warps: this warp's slice of Hᵀ (rows j0 + g, j0 + g + 8; key n-tiles of 8).
    float hs[2 * KS][4];
    float* st = a.state + size_t(bh) * a.Dk * a.Dv;
    // fn(accumulator element, its state element) for each element of the slice inside the state:
    // key row i = nt·8 + 2·c4 + (e & 1), value column j = v0 + j0 + g + (e >> 1)·8.
    auto for_state_slice = [&](auto&& fn) {
#pragma unroll
        for (int nt = 0; nt < 2 * KS; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int i = nt * 8 + 2 * c4 + (e & 1), j = v0 + j0 + g + (e >> 1) * 8;
                if (i < a.Dk && j < a.Dv) fn(hs[nt][e], st[size_t(i) * a.Dv + j]);
            }
    };
    if (is_state) {
#pragma unroll
        for (int nt = 0; nt < 2 * KS; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) hs[nt][e] = 0.0f;
        for_state_slice([](float& h, float& s) { h = s; });
    } else {
        copy_state_stage(0);
        close_group();
        if (a.NC > 1) copy_state_stage(1);
        copy_out_stage(0);
        close_group_and_wait_previous();  // chunk 0's state stage
    }
    __syncthreads();

    for (int n = 0; n <= a.NC; ++n) {
        if (is_state && n < a.NC) {
            const char* stg = state_stage(n);
            const auto* sW = reinterpret_cast<const __nv_bfloat16*>(stg + L::kW);
            const auto* sK = reinterpret_cast<const __nv_bfloat16*>(stg + L::kK);
            const auto* sU = reinterpret_cast<const __nv_bfloat16*>(stg + L::kU);
            const auto* sD = reinterpret_cast<const float*>(stg + L::kSD);
            uint32_t* xb = xchg(n);
            wait_state_stage(n);

            // Hᵀ as bf16 A tiles (the chunk-start state), also handed to the output warp.
            uint32_t ha[KS][4];
#pragma unroll
            for (int ks = 0; ks < KS; ++ks) {
                accumulators_to_a(ha[ks], hs[2 * ks], hs[2 * ks + 1]);
                *reinterpret_cast<uint4*>(xb + 4 * ks) =
                    make_uint4(ha[ks][0], ha[ks][1], ha[ks][2], ha[ks][3]);
            }
            // Pᵀ = Hᵀ Wᵀ (16 value rows × 64 tokens), then V'ᵀ = Uᵀ − Pᵀ in place.
            float p[8][4];
            rows_times_tokens<KS>(p, ha, sW, LDK, lane);
#pragma unroll
            for (int np = 0; np < 4; ++np) {
                uint32_t ut[4];  // Uᵀ, accumulator-shaped
                ldsm_x4_trans(ut, b_tile_addr(sU, LDU, 16 * np, j0, lane));
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const float2 lo = unpack_bf16(ut[2 * half]), hi = unpack_bf16(ut[2 * half + 1]);
                    float(&d)[4] = p[2 * np + half];
                    d[0] = lo.x - d[0];
                    d[1] = lo.y - d[1];
                    d[2] = hi.x - d[2];
                    d[3] = hi.y - d[3];
                }
            }
            // V'ᵀ (to the output warp) and (V' ⊙ e^{γ_C − γ})ᵀ (the update's left operand) as bf16
            // A tiles over tokens; this lane's tokens are 8·nt + 2·c4 + {0, 1}.

            uint32_t vn[4][4], vd[4][4];
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                const int t = nt * 8 + 2 * c4;
                const float d0 = sD[t], d1 = sD[t + 1];  // e^{γ_C − γ}
                const float(&x)[4] = p[nt];
                const int ks = nt / 2, part = (nt % 2) * 2;
                vn[ks][part] = pack_bf16(x[0], x[1]);
                vn[ks][part + 1] = pack_bf16(x[2], x[3]);
                vd[ks][part] = pack_bf16(x[0] * d0, x[1] * d1);
                vd[ks][part + 1] = pack_bf16(x[2] * d0, x[3] * d1);
            }
#pragma unroll
            for (int ks = 0; ks < 4; ++ks)
                *reinterpret_cast<uint4*>(xb + 4 * KS + 4 * ks) =
                    make_uint4(vn[ks][0], vn[ks][1], vn[ks][2], vn[ks][3]);
            // Hᵀ ← e^{γ_C} Hᵀ + (V' ⊙ e^{γ_C − γ})ᵀ K.
            const float decay = sD[kChunk];  // e^{γ_C}
#pragma unroll
            for (int nt = 0; nt < 2 * KS; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) hs[nt][e] *= decay;
            mma_tiles_times_kmajor<KS>(hs, vd, sK, LDK, lane);
        } else if (!is_state) {
            if (n >= 1) {  // outputs of chunk n − 1
                const int m = n - 1;
                char* stg = out_stage(m);
                const auto* sQ = reinterpret_cast<const __nv_bfloat16*>(stg + L::kQ);
                const auto* sS = reinterpret_cast<const __nv_bfloat16*>(stg + L::kS);
                const auto* sE = reinterpret_cast<const float*>(stg + L::kOD);  // e^γ
                const uint32_t* xb = xchg(m);
                wait_out_stage(m);
                uint32_t ha[KS][4], vn[4][4];
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) load_a_tile(ha[ks], xb + 4 * ks);
#pragma unroll
                for (int ks = 0; ks < 4; ++ks) load_a_tile(vn[ks], xb + 4 * KS + 4 * ks);
                float o[8][4];
                rows_times_tokens<KS>(o, ha, sQ, LDK, lane);
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    const int t = nt * 8 + 2 * c4;
                    const float e0 = sE[t], e1 = sE[t + 1];
                    o[nt][0] *= e0;
                    o[nt][1] *= e1;
                    o[nt][2] *= e0;
                    o[nt][3] *= e1;
                }
                // + V'ᵀ Sᵀ: S is lower triangular, so k tiles ≤ the n-tile pair only.
#pragma unroll
                for (int np = 0; np < 4; ++np)
#pragma unroll
                    for (int ks = 0; ks <= np; ++ks) {
                        uint32_t bs[4];
                        ldsm_x4(bs, b_tile_addr(sS, LDS, 16 * np, 16 * ks, lane));
                        mma_bf16(o[2 * np], vn[ks], bs[0], bs[1]);
                        mma_bf16(o[2 * np + 1], vn[ks], bs[2], bs[3]);
                    }
                // Stage through this output stage (every output warp is done reading it), then
                // 16-byte rows to global memory.
                named_barrier(1, 32 * NW);
                __nv_bfloat16* so = reinterpret_cast<__nv_bfloat16*>(stg) + slice * kChunk * LDO;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#pragma unroll
                for (int np = 0; np < 4; ++np)  // Oᵀ tiles stored transposed: rows t, cols j
                    stsm_x4_trans(
                        const_cast<__nv_bfloat16*>(b_tile_addr(so, LDO, 16 * np, 0, lane)),
                        pack_bf16(o[2 * np][0], o[2 * np][1]),
                        pack_bf16(o[2 * np][2], o[2 * np][3]),
                        pack_bf16(o[2 * np + 1][0], o[2 * np + 1][1]),
                        pack_bf16(o[2 * np + 1][2], o[2 * np + 1][3]));
#else
#pragma unroll
                for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        so[(nt * 8 + 2 * c4 + (e & 1)) * LDO + g + (e >> 1) * 8] =
                            __float2bfloat16(o[nt][e]);
#endif
                __syncwarp();
                // Lane l copies half (l % 2) of rows l / 2 + 16·i.
                const int t0 = m * kChunk, rows = min(kChunk, a.T - t0);
                const int r0 = lane / 2, half = lane % 2, c = v0 + j0 + half * 8;
                const size_t row_stride = size_t(a.H) * a.Dv;
                __nv_bfloat16* dst = a.o + ((size_t(b) * a.T + t0 + r0) * a.H + h) * a.Dv + c;
                const __nv_bfloat16* src = so + r0 * LDO + half * 8;
                const bool vec = a.o_vec && c + 8 <= a.Dv;
#pragma unroll
                for (int i = 0; i < kChunk / 16; ++i) {
                    if (r0 + 16 * i >= rows) break;
                    __nv_bfloat16* d = dst + 16 * i * row_stride;
                    const __nv_bfloat16* s_ = src + 16 * i * LDO;
                    if (vec) {
                        *reinterpret_cast<uint4*>(d) = *reinterpret_cast<const uint4*>(s_);
                    } else {
                        for (int e = 0; e < 8 && c + e < a.Dv; ++e) d[e] = s_[e];
                    }
                }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
                fence_async_smem();  // the staging's accesses before the bulk copy's refill
#endif
                named_barrier(1, 32 * NW);  // the staging is read before the stage is refilled
            }
            if (n + 2 < a.NC) copy_state_stage(n + 2);
            if (n + 1 < a.NC) copy_out_stage(n + 1);
            // chunk n + 1's state stage and chunk n's output stage
            close_group_and_wait_previous();
        }
        __syncthreads();
    }

    if (is_state) for_state_slice([](float& h, float& s) { s = h; });
}

}  // namespace olmo::kernels
