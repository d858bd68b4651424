// Counter-based random numbers (Philox-4x32-10): the value at (seed, stream, index) is a pure
// function, so initialisation and sampling give the same numbers on any device and any thread
// count.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define OLMO_HD __host__ __device__
#else
#define OLMO_HD
#endif

namespace olmo {

struct Philox4 {
    uint32_t v[4];
};

OLMO_HD inline Philox4 philox4x32(uint64_t counter_lo, uint64_t counter_hi, uint64_t key) {
    uint32_t c0 = uint32_t(counter_lo), c1 = uint32_t(counter_lo >> 32);
    uint32_t c2 = uint32_t(counter_hi), c3 = uint32_t(counter_hi >> 32);
    uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = uint64_t(0xD2511F53u) * c0;
        const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
        const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
        const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
        c1 = uint32_t(p1);
        c3 = uint32_t(p0);
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return {{c0, c1, c2, c3}};
}

// Uniform in (0, 1), never exactly 0 or 1 (24 random bits, offset by half a step).
OLMO_HD inline float uint_to_unit(uint32_t x) {
    return (float(x >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

// Uniform double in (0, 1) from two words (53 bits).
OLMO_HD inline double uints_to_unit_double(uint32_t a, uint32_t b) {
    const uint64_t bits = (uint64_t(a) << 21) ^ uint64_t(b >> 11);
    return (double(bits & ((uint64_t(1) << 53) - 1)) + 0.5) * (1.0 / 9007199254740992.0);
}

// A stream of numbers for one purpose: (seed, stream) select it, index walks through it.
class Rng {
  public:
    OLMO_HD Rng(uint64_t seed, uint64_t stream = 0) : seed_(seed), stream_(stream) {}

    OLMO_HD double uniform(uint64_t index) const {
        const Philox4 r = philox4x32(index, stream_, seed_);
        return uints_to_unit_double(r.v[0], r.v[1]);
    }
    // Standard normal by Box-Muller on the four words of one counter.
    OLMO_HD double normal(uint64_t index) const {
        const Philox4 r = philox4x32(index, stream_, seed_);
        const double u1 = uints_to_unit_double(r.v[0], r.v[1]);
        const double u2 = uints_to_unit_double(r.v[2], r.v[3]);
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
    // Normal(0, std) truncated to [-3 std, 3 std] by resampling (index selects an independent
    // draw).
    OLMO_HD double trunc_normal(uint64_t index, double std) const {
        for (uint64_t attempt = 0;; ++attempt) {
            const Philox4 r = philox4x32(index, stream_ ^ (attempt << 40), seed_);
            const double u1 = uints_to_unit_double(r.v[0], r.v[1]);
            const double u2 = uints_to_unit_double(r.v[2], r.v[3]);
            const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
            if (z >= -3.0 && z <= 3.0) return z * std;
        }
    }

  private:
    uint64_t seed_, stream_;
};

}  // namespace olmo
