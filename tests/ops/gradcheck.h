// Helpers for the op tests: f64 host tensors, comparisons in double precision, and gradients by
// central finite differences.
//
// testing::rel_max_error goes through f32, which caps what it can resolve at ~1e-7; the checks here
// (backward vs finite differences, chunked vs recurrent GDN in f64) need tolerances far below that,
// so they compare in double.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>

#include "core/rng.h"
#include "core/tensor.h"
#include "testing.h"

namespace olmo::testing {

// Element i of a host f32 or f64 tensor, as a double.
inline double at(const Tensor& t, int64_t i) {
    return t.dtype == DType::f64 ? t.as<double>()[i] : double(t.as<float>()[i]);
}

// Host copy of a float tensor in dtype `to` (f32 or f64).
inline OwnedTensor convert(const Tensor& t, DType to) {
    OwnedTensor out(to, t.dims());
    for (int64_t i = 0; i < t.numel(); ++i) {
        if (to == DType::f64)
            out->as<double>()[i] = at(t, i);
        else
            out->as<float>()[i] = float(at(t, i));
    }
    return out;
}
inline OwnedTensor to_f64(const Tensor& t) {
    return convert(t, DType::f64);
}
inline OwnedTensor to_f32(const Tensor& t) {
    return convert(t, DType::f32);
}
inline OwnedTensor clone(const Tensor& t) {
    return convert(t, t.dtype);
}

inline OwnedTensor zeros(std::initializer_list<int64_t> shape, DType dt = DType::f64) {
    OwnedTensor t(dt, shape);
    t.fill(0.0f);
    return t;
}

// f64 tensor, uniform in [lo, hi) from (seed, stream), independent of testing::random_uniform.
inline OwnedTensor uniform64(std::initializer_list<int64_t> shape, uint64_t seed, double lo = -1.0,
                             double hi = 1.0) {
    OwnedTensor t(DType::f64, shape);
    Rng rng(seed, 0x9d64);
    for (int64_t i = 0; i < t->numel(); ++i) t->as<double>()[i] = lo + (hi - lo) * rng.uniform(i);
    return t;
}

inline OwnedTensor normal64(std::initializer_list<int64_t> shape, uint64_t seed, double std = 1.0) {
    OwnedTensor t(DType::f64, shape);
    Rng rng(seed, 0x9d65);
    for (int64_t i = 0; i < t->numel(); ++i) t->as<double>()[i] = std * rng.normal(i);
    return t;
}

inline OwnedTensor index_tensor(std::initializer_list<int64_t> shape,
                                std::initializer_list<int64_t> values, DType dt = DType::i32) {
    OwnedTensor t(dt, shape);
    int64_t i = 0;
    for (int64_t v : values) {
        if (dt == DType::i64)
            t->as<int64_t>()[i++] = v;
        else
            t->as<int32_t>()[i++] = int32_t(v);
    }
    return t;
}

// max |a − b| / max |b| in double (b is the reference); NaN anywhere gives +inf.
inline double rel_err(const Tensor& a, const Tensor& b) {
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < b.numel(); ++i) {
        const double x = at(a, i), y = at(b, i);
        if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<double>::infinity();
        diff = std::max(diff, std::fabs(x - y));
        ref = std::max(ref, std::fabs(y));
    }
    return ref > 0 ? diff / ref : diff;
}

inline ::testing::AssertionResult near(const Tensor& actual, const Tensor& expected, double tol) {
    if (!actual.same_shape(expected))
        return ::testing::AssertionFailure()
               << "shape " << actual.shape_str() << " != expected " << expected.shape_str();
    double ref = 0;
    for (int64_t i = 0; i < expected.numel(); ++i) ref = std::max(ref, std::fabs(at(expected, i)));
    const double e = rel_err(actual, expected);
    if (e <= tol) return ::testing::AssertionSuccess() << "rel error " << e;
    return ::testing::AssertionFailure()
           << "rel max error " << e << " > " << tol << " (max |ref| " << ref << ")";
}

// Σ a ⊙ b in double.
inline double dot(const Tensor& a, const Tensor& b) {
    double s = 0;
    for (int64_t i = 0; i < a.numel(); ++i) s += at(a, i) * at(b, i);
    return s;
}

// Gradient of the scalar fn() with respect to every element of the f64 host tensor x, by central
// differences (x is perturbed in place and restored).
inline OwnedTensor numeric_grad(const Tensor& x, const std::function<double()>& fn,
                                double step = 1e-6) {
    OwnedTensor grad(DType::f64, x.dims());
    double* p = x.as<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
        const double saved = p[i];
        p[i] = saved + step;
        const double up = fn();
        p[i] = saved - step;
        const double down = fn();
        p[i] = saved;
        grad->as<double>()[i] = (up - down) / (2 * step);
    }
    return grad;
}

// a − b, elementwise (used to read what an accumulating gradient added).
inline OwnedTensor minus(const Tensor& a, const Tensor& b) {
    OwnedTensor out(DType::f64, a.dims());
    for (int64_t i = 0; i < a.numel(); ++i) out->as<double>()[i] = at(a, i) - at(b, i);
    return out;
}

// Tolerance of the finite-difference checks in double precision.
constexpr double kGradTol = 1e-7;

}  // namespace olmo::testing
