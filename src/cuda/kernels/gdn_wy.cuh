// Chunked gated delta rule, kernel 1 of 2 (gdn_chunked.cuh): the WY representation and the
// intra-chunk attention of every chunk, in parallel. One block of four warps per (b, h, chunk);
// warp r owns the 16-row tile r of every 64 × 64 matrix, on tensor cores (mma.sync m16n8k16, bf16
// operands, f32 accumulators):
//   kkᵀ, qkᵀ → A = strict_lower(β_i (k_i·k_j) e^{γ_i − γ_j}) (f32, shared memory),
//              S = ((q_i·k_j) e^{γ_i − γ_j} for j ≤ i) (bf16, global memory);
//   T = (I + A)⁻¹ in f32: the four 16 × 16 diagonal blocks by forward substitution (one column per
//       lane), then the off-diagonal blocks by distance from the diagonal,
//       T_ij = −T_ii Σ_{j ≤ m < i} A_im T_mj;
//   W = (T·diag(β e^γ))·K and U = (T·diag(β))·V (the scales folded into T's columns).
#pragma once

#include "gdn_chunked.cuh"

namespace olmo::kernels {

constexpr int kWyThreads = 128;  // 4 warps, one per 16-row tile

template <int DKP>
struct WyLayout {
    static constexpr int LDK = key_pitch<DKP>(), LDT = kChunk + 8;
    static __host__ __device__ constexpr size_t bytes(int DVP) {
        return 2 * carve_bytes(kChunk * LDK * 2) + carve_bytes(size_t(kChunk) * (DVP + 8) * 2) +
               2 * carve_bytes(kChunk * kChunk * 4) + 2 * carve_bytes(kChunk * LDT * 2) +
               carve_bytes(3 * 256 * 4) + 4 * carve_bytes(kChunk * 4);
    }
};

template <int DKP>
__global__ void __launch_bounds__(kWyThreads) gdn_wy_kernel(GdnChunkArgs a) {
    using L = WyLayout<DKP>;
    constexpr int LDK = L::LDK, LDT = L::LDT, KS = DKP / 16;
    const int LDV = a.DVP + 8;
    extern __shared__ __align__(128) char smem_raw[];
    Carve cv{smem_raw};
    __nv_bfloat16* s_q = cv.take<__nv_bfloat16>(kChunk * LDK);
    __nv_bfloat16* s_k = cv.take<__nv_bfloat16>(kChunk * LDK);
    __nv_bfloat16* s_v = cv.take<__nv_bfloat16>(size_t(kChunk) * LDV);
    float* s_a = cv.take<float>(kChunk * kChunk);                // A
    float* s_t = cv.take<float>(kChunk * kChunk);                // T = (I + A)⁻¹
    __nv_bfloat16* s_tw = cv.take<__nv_bfloat16>(kChunk * LDT);  // T·diag(β e^γ)
    __nv_bfloat16* s_tu = cv.take<__nv_bfloat16>(kChunk * LDT);  // T·diag(β)
    float* s_m = cv.take<float>(3 * 256);                        // the solve's partial sums
    float* s_gamma = cv.take<float>(kChunk);
    float* s_beta = cv.take<float>(kChunk);
    float* s_kscale = cv.take<float>(kChunk);  // β e^γ
    float* s_part = cv.take<float>(kChunk);

    const int n = blockIdx.x % a.NC, bh = blockIdx.x / a.NC, b = bh / a.H, h = bh % a.H;
    const int t0 = n * kChunk, rows = min(kChunk, a.T - t0);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c4 = lane % 4;
    const size_t Tp = size_t(a.NC) * kChunk, row0 = size_t(bh) * Tp + t0;

    const size_t tok = (size_t(b) * a.T + t0) * a.H + h;
    copy_rows<4>(s_q, LDK, DKP, a.q + tok * a.Dk, size_t(a.H) * a.Dk, rows, a.Dk, a.qk_vec, warp,
                 lane);
    copy_rows<4>(s_k, LDK, DKP, a.k + tok * a.Dk, size_t(a.H) * a.Dk, rows, a.Dk, a.qk_vec, warp,
                 lane);
    copy_rows<4>(s_v, LDV, a.DVP, a.v + tok * a.Dv, size_t(a.H) * a.Dv, rows, a.Dv, a.v_vec, warp,
                 lane);
    __pipeline_commit();
    // γ = inclusive cumulative sum of g over the chunk (warps 0 and 1 hold rows 0-31 and 32-63).
    if (tid < kChunk) {
        const bool ok = tid < rows;
        const size_t head = tok + size_t(tid) * a.H;
        float x = ok ? a.g[head] : 0.0f;
        s_beta[tid] = ok ? a.beta[head] : 0.0f;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const float y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        s_gamma[tid] = x;
        if (lane == 31) s_part[warp] = x;
    }
    __pipeline_wait_prior(0);
    __syncthreads();
    if (tid >= 32 && tid < kChunk) s_gamma[tid] += s_part[0];
    __syncthreads();
    if (tid < kChunk) s_kscale[tid] = s_beta[tid] * __expf(s_gamma[tid]);
    // The scan's copies of K and Q (zero-padded rows and columns, its pitch).
    __nv_bfloat16* wk_blk = a.wk + (size_t(bh) * a.NC + n) * 2 * kChunk * LDK;          // W, then K
    __nv_bfloat16* qs_blk = a.qs + (size_t(bh) * a.NC + n) * kChunk * (LDK + kSPitch);  // Q, S
    for (int i = tid; i < kChunk * LDK / 8; i += kWyThreads) {
        reinterpret_cast<uint4*>(wk_blk + kChunk * LDK)[i] = reinterpret_cast<const uint4*>(s_k)[i];
        reinterpret_cast<uint4*>(qs_blk)[i] = reinterpret_cast<const uint4*>(s_q)[i];
    }

    // kkᵀ and qkᵀ, row tile r = warp, column tiles ≤ r (the rest is masked to zero).
    const int r = warp;
    float kk[8][4], qk[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) kk[nt][e] = qk[nt][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        uint32_t ak[4], aq[4];
        ldsm_x4(ak, a_tile_addr(s_k, LDK, 16 * r, 16 * ks, lane));
        ldsm_x4(aq, a_tile_addr(s_q, LDK, 16 * r, 16 * ks, lane));
#pragma unroll
        for (int np = 0; np < 4; ++np) {
            if (np > r) continue;
            uint32_t bk[4];
            ldsm_x4(bk, b_tile_addr(s_k, LDK, 16 * np, 16 * ks, lane));
            mma_bf16(kk[2 * np], ak, bk[0], bk[1]);
            mma_bf16(kk[2 * np + 1], ak, bk[2], bk[3]);
            mma_bf16(qk[2 * np], aq, bk[0], bk[1]);
            mma_bf16(qk[2 * np + 1], aq, bk[2], bk[3]);
        }
    }
    // Decays and masks in registers; A to shared memory (f32), S to global memory (bf16).
    {
        __nv_bfloat16* s_out = qs_blk + kChunk * LDK;
        const int i0 = 16 * r + g, i1 = i0 + 8;
        const float gi[2] = {s_gamma[i0], s_gamma[i1]}, bi[2] = {s_beta[i0], s_beta[i1]};
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            const int j = 8 * nt + 2 * c4;
            const float gj[2] = {s_gamma[j], s_gamma[j + 1]};
            float av[4], sv[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int i = e < 2 ? i0 : i1, jj = j + (e & 1);
                const float dec = jj <= i ? __expf(gi[e >> 1] - gj[e & 1]) : 0.0f;
                av[e] = jj < i ? bi[e >> 1] * kk[nt][e] * dec : 0.0f;
                sv[e] = qk[nt][e] * dec;
            }
            *reinterpret_cast<float2*>(s_a + i0 * kChunk + j) = make_float2(av[0], av[1]);
            *reinterpret_cast<float2*>(s_a + i1 * kChunk + j) = make_float2(av[2], av[3]);
            *reinterpret_cast<uint32_t*>(s_out + i0 * kSPitch + j) = pack_bf16(sv[0], sv[1]);
            *reinterpret_cast<uint32_t*>(s_out + i1 * kSPitch + j) = pack_bf16(sv[2], sv[3]);
        }
    }
    __syncthreads();

    // T: diagonal blocks. Warp d, lane c < 16 solves column c of (I + A_dd) x = e_c.
    if (lane < 16) {
        const int d0 = warp * 16, c = lane;
        float x[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < i; ++j) acc += s_a[(d0 + i) * kChunk + d0 + j] * x[j];
            x[i] = i < c ? 0.0f : (i == c ? 1.0f : -acc);
        }
#pragma unroll
        for (int i = 0; i < 16; ++i) s_t[(d0 + i) * kChunk + d0 + c] = x[i];
    }
    __syncthreads();
    // Off-diagonal blocks by distance from the diagonal: M = Σ_{j ≤ m < i} A_im T_mj, then
    // T_ij = −T_ii M; each thread 4 adjacent columns of one row.
    for (int dist = 1; dist < 4; ++dist) {
        const int tasks = (4 - dist) * 64;
        for (int e = tid; e < tasks; e += kWyThreads) {
            const int j = e / 64, i = j + dist, rr = (e % 64) / 4, cg = (e % 4) * 4;
            const float* arow = s_a + (16 * i + rr) * kChunk;
            float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            for (int kb = j; kb < i; ++kb)
#pragma unroll
                for (int m = 0; m < 16; ++m) {
                    const float x = arow[16 * kb + m];
                    const float4 t = *reinterpret_cast<const float4*>(s_t + (16 * kb + m) * kChunk +
                                                                      16 * j + cg);
                    acc.x += x * t.x;
                    acc.y += x * t.y;
                    acc.z += x * t.z;
                    acc.w += x * t.w;
                }
            *reinterpret_cast<float4*>(s_m + j * 256 + rr * 16 + cg) = acc;
        }
        __syncthreads();
        for (int e = tid; e < tasks; e += kWyThreads) {
            const int j = e / 64, i = j + dist, rr = (e % 64) / 4, cg = (e % 4) * 4;
            const float* trow = s_t + (16 * i + rr) * kChunk + 16 * i;
            float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int m = 0; m < 16; ++m) {
                const float x = trow[m];
                const float4 t = *reinterpret_cast<const float4*>(s_m + j * 256 + m * 16 + cg);
                acc.x += x * t.x;
                acc.y += x * t.y;
                acc.z += x * t.z;
                acc.w += x * t.w;
            }
            *reinterpret_cast<float4*>(s_t + (16 * i + rr) * kChunk + 16 * j + cg) =
                make_float4(-acc.x, -acc.y, -acc.z, -acc.w);
        }
        __syncthreads();
    }
    // The bf16 left operands of W and U, zero above the diagonal; 4 columns per thread.
    for (int idx = tid; idx < kChunk * kChunk / 4; idx += kWyThreads) {
        const int i = idx / (kChunk / 4), j = (idx % (kChunk / 4)) * 4;
        const float4 t = *reinterpret_cast<const float4*>(s_t + i * kChunk + j);
        const float tv[4] = {j <= i ? t.x : 0.0f, j + 1 <= i ? t.y : 0.0f, j + 2 <= i ? t.z : 0.0f,
                             j + 3 <= i ? t.w : 0.0f};
        const float4 ks = *reinterpret_cast<const float4*>(s_kscale + j);
        const float4 bs = *reinterpret_cast<const float4*>(s_beta + j);
        *reinterpret_cast<uint2*>(s_tw + i * LDT + j) = make_uint2(
            pack_bf16(tv[0] * ks.x, tv[1] * ks.y), pack_bf16(tv[2] * ks.z, tv[3] * ks.w));
        *reinterpret_cast<uint2*>(s_tu + i * LDT + j) = make_uint2(
            pack_bf16(tv[0] * bs.x, tv[1] * bs.y), pack_bf16(tv[2] * bs.z, tv[3] * bs.w));
    }
    __syncthreads();

    // W and U, row tile r: T is lower triangular, so k tiles 0..r only.
    uint32_t aw[4][4], au[4][4];
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
        if (ks > r) continue;
        ldsm_x4(aw[ks], a_tile_addr(s_tw, LDT, 16 * r, 16 * ks, lane));
        ldsm_x4(au[ks], a_tile_addr(s_tu, LDT, 16 * r, 16 * ks, lane));
    }
    const int i0 = 16 * r + g;
    {
        float w[2 * KS][4];
#pragma unroll
        for (int nt = 0; nt < 2 * KS; ++nt) w[nt][0] = w[nt][1] = w[nt][2] = w[nt][3] = 0.0f;
        mma_tiles_times_kmajor<KS>(w, aw, s_k, LDK, lane, r);
        __nv_bfloat16* wr = wk_blk + i0 * LDK + 2 * c4;
#pragma unroll
        for (int nt = 0; nt < 2 * KS; ++nt) {
            *reinterpret_cast<uint32_t*>(wr + 8 * nt) = pack_bf16(w[nt][0], w[nt][1]);
            *reinterpret_cast<uint32_t*>(wr + 8 * LDK + 8 * nt) = pack_bf16(w[nt][2], w[nt][3]);
        }
    }
    const int LDU = value_pitch(a.VT), tiles = a.DVP / a.VT;
    __nv_bfloat16* ut = a.u + (size_t(bh) * tiles * Tp + t0 + i0) * LDU + 2 * c4;
    for (int vt = 0; vt < tiles; ++vt, ut += Tp * LDU) {
        for (int col = 0; col < a.VT; col += 16) {
            float u0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, u1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int ks = 0; ks < 4; ++ks) {
                if (ks > r) continue;
                uint32_t bv[4];
                ldsm_x4_trans(bv, a_tile_addr(s_v, LDV, 16 * ks, vt * a.VT + col, lane));
                mma_bf16(u0, au[ks], bv[0], bv[1]);
                mma_bf16(u1, au[ks], bv[2], bv[3]);
            }
            __nv_bfloat16* p = ut + col;
            *reinterpret_cast<uint32_t*>(p) = pack_bf16(u0[0], u0[1]);
            *reinterpret_cast<uint32_t*>(p + 8 * LDU) = pack_bf16(u0[2], u0[3]);
            *reinterpret_cast<uint32_t*>(p + 8) = pack_bf16(u1[0], u1[1]);
            *reinterpret_cast<uint32_t*>(p + 8 * LDU + 8) = pack_bf16(u1[2], u1[3]);
        }
    }
    // The scan's decays, computed once here rather than in its sequential loop.
    if (tid < kChunk) {
        const float last = s_gamma[kChunk - 1], gt = s_gamma[tid];
        float* sd = a.state_decay + (size_t(bh) * a.NC + n) * kStateDecays;
        a.out_decay[row0 + tid] = __expf(gt);
        sd[tid] = __expf(last - gt);
        if (tid < kStateDecays - kChunk) sd[kChunk + tid] = tid == 0 ? __expf(last) : 0.0f;
    }
}

}  // namespace olmo::kernels
