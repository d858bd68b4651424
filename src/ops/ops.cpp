// The op API front: checks every call's shapes, dtypes and devices once, then hands it to the
// backend that owns the first output's device (cpu:: or cuda::). The backends assume valid
// arguments, so all argument errors surface here with a message that names the op and the offending
// operands.
#include "ops/ops.h"

#include <array>
#include <initializer_list>
#include <string>
#include <tuple>
#include <utility>

#include "core/check.h"
#include "cpu/ops_cpu.h"
#ifdef OLMO_HAVE_CUDA
#include "cuda/ops_cuda.h"
#endif

namespace olmo::ops {

namespace {

std::string dims_str(std::initializer_list<int64_t> dims) {
    std::string s = "[";
    bool first = true;
    for (int64_t d : dims) {
        s += (first ? "" : ", ") + std::to_string(d);
        first = false;
    }
    return s + "]";
}

bool has_dims(const Tensor& t, std::initializer_list<int64_t> dims) {
    if (t.ndim != int(dims.size())) return false;
    int i = 0;
    for (int64_t d : dims)
        if (t.shape[i++] != d) return false;
    return true;
}

// All non-empty tensors of a call live on the device of `first` (the first output); returns it.
Device one_device(const char* op, const Tensor& first, std::initializer_list<const Tensor*> all) {
    OLMO_CHECK(!first.empty(), "[", op, "] the first output is empty");
    for (const Tensor* t : all) {
        if (t->empty()) continue;
        OLMO_CHECK(t->device == first.device, "[", op, "] tensors on ", device_name(first.device),
                   " and ", device_name(t->device), ": all operands must be on one device");
    }
    return first.device;
}

bool is_float(DType d) {
    return d == DType::f32 || d == DType::f64 || d == DType::bf16 || d == DType::f16;
}

// A float tensor the backend of `dev` can compute with: f32/f64 on the CPU, f32/bf16 on CUDA.
void check_float(const char* op, const char* name, const Tensor& t) {
    const bool ok = t.device == Device::cpu ? (t.dtype == DType::f32 || t.dtype == DType::f64)
                                            : (t.dtype == DType::f32 || t.dtype == DType::bf16);
    OLMO_CHECK(ok, "[", op, "] ", name, " has dtype ", dtype_name(t.dtype), ", not supported on ",
               device_name(t.device));
}

void check_dtype(const char* op, const char* name, const Tensor& t, DType want) {
    OLMO_CHECK(t.dtype == want, "[", op, "] ", name, " has dtype ", dtype_name(t.dtype),
               ", expected ", dtype_name(want));
}

// Index tensors: i32, or also i64 where the op allows it.
void check_index(const char* op, const char* name, const Tensor& t, bool allow_i64) {
    OLMO_CHECK(t.dtype == DType::i32 || (allow_i64 && t.dtype == DType::i64), "[", op, "] ", name,
               " has dtype ", dtype_name(t.dtype), ", expected i32", allow_i64 ? " or i64" : "");
}

// The dtype of the f32 side inputs and outputs of an op (GDN gates, decay, state, ...): f32, or f64
// when the call runs in double precision.
DType compute_dtype(DType act) {
    return act == DType::f64 ? DType::f64 : DType::f32;
}

void check_shape(const char* op, const char* name, const Tensor& t,
                 std::initializer_list<int64_t> dims) {
    OLMO_CHECK(has_dims(t, dims), "[", op, "] ", name, " ", t.shape_str(), ", expected ",
               dims_str(dims));
}

// Same number of elements and same dtype as a reference operand. Only the size is compared: callers
// hand over reshaped views freely ([N, H·D] for [B, T, H, D]), and the layout is the reference's.
void check_like(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b) {
    OLMO_CHECK(a.numel() == b.numel(), "[", op, "] ", na, " ", a.shape_str(), " vs ", nb, " ",
               b.shape_str(), ": sizes differ");
    check_dtype(op, na, a, b.dtype);
}

// Exactly `count` elements.
void check_numel(const char* op, const char* name, const Tensor& t, int64_t count,
                 const char* expected) {
    OLMO_CHECK(t.numel() == count, "[", op, "] ", name, " ", t.shape_str(), ", expected ", expected,
               " (", count, " elements)");
}

int64_t last_dim(const Tensor& t) {
    return t.ndim ? t.shape[t.ndim - 1] : 1;
}
int64_t rows(const Tensor& t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t.ndim; ++i) n *= t.shape[i];
    return n;
}

// x[..., C] with a per-channel weight w[C].
void check_row_weight(const char* op, const char* nx, const Tensor& x, const char* nw,
                      const Tensor& w) {
    OLMO_CHECK(x.ndim >= 1 && w.ndim == 1 && w.shape[0] == last_dim(x), "[", op, "] ", nx, " ",
               x.shape_str(), " vs ", nw, " ", w.shape_str());
}

// a[..., x] and b[..., y] have the same number of rows (the leading dimensions may differ).
bool same_rows(const Tensor& a, const Tensor& b) {
    return a.ndim >= 1 && b.ndim >= 1 && rows(a) == rows(b);
}

}  // namespace

namespace {
OpObserver* g_observer = nullptr;
}

void set_observer(OpObserver* observer) {
    g_observer = observer;
}

// Runs backend::fn(args...) on the device `dev`, between the observer's begin/end when one is set.
#ifdef OLMO_HAVE_CUDA
#define OLMO_BACKEND_CALL(dev, fn, ...)    \
    do {                                   \
        if ((dev) == Device::cuda) {       \
            ::olmo::cuda::fn(__VA_ARGS__); \
        } else {                           \
            ::olmo::cpu::fn(__VA_ARGS__);  \
        }                                  \
    } while (0)
#else
#define OLMO_BACKEND_CALL(dev, fn, ...)                               \
    do {                                                              \
        if ((dev) == Device::cuda) {                                  \
            ::olmo::fail("[" #fn "] this build has no CUDA backend"); \
        } else {                                                      \
            ::olmo::cpu::fn(__VA_ARGS__);                             \
        }                                                             \
    } while (0)
#endif
#define OLMO_DISPATCH(dev, fn, ...)                  \
    do {                                             \
        if (g_observer) g_observer->begin(#fn, dev); \
        OLMO_BACKEND_CALL(dev, fn, __VA_ARGS__);     \
        if (g_observer) g_observer->end(#fn, dev);   \
    } while (0)

// ---- dense -------------------------------------------------------------------------------------

namespace {
// out [..., O] = x [..., I] · w [O, I]ᵀ, one dtype, one device (also checked: `extra`).
Device check_matmul(const char* op, const Tensor& out, const Tensor& x, const Tensor& w,
                    const Tensor& extra = Tensor()) {
    const Device dev = one_device(op, out, {&out, &x, &w, &extra});
    check_float(op, "out", out);
    check_dtype(op, "x", x, out.dtype);
    check_dtype(op, "w", w, out.dtype);
    OLMO_CHECK(w.ndim == 2 && same_rows(out, x) && last_dim(x) == w.shape[1] &&
                   last_dim(out) == w.shape[0],
               "[", op, "] out ", out.shape_str(), " = x ", x.shape_str(), " · w ", w.shape_str(),
               "ᵀ: expected out [..., O], x [..., I], w [O, I]");
    return dev;
}
}  // namespace

void matmul(const Tensor& out, const Tensor& x, const Tensor& w, bool accumulate) {
    const Device dev = check_matmul("matmul", out, x, w);
    OLMO_DISPATCH(dev, matmul, out, x, w, accumulate);
}

void matmul_backward_input(const Tensor& d_x, const Tensor& d_out, const Tensor& w,
                           bool accumulate) {
    const char* op = "matmul_backward_input";
    const Device dev = one_device(op, d_x, {&d_x, &d_out, &w});
    check_float(op, "d_x", d_x);
    check_dtype(op, "d_out", d_out, d_x.dtype);
    check_dtype(op, "w", w, d_x.dtype);
    OLMO_CHECK(w.ndim == 2 && same_rows(d_x, d_out) && last_dim(d_x) == w.shape[1] &&
                   last_dim(d_out) == w.shape[0],
               "[matmul_backward_input] d_x ", d_x.shape_str(), " = d_out ", d_out.shape_str(),
               " · w ", w.shape_str(), ": expected d_x [..., I], d_out [..., O], w [O, I]");
    OLMO_DISPATCH(dev, matmul_backward_input, d_x, d_out, w, accumulate);
}

namespace {
Device check_matmul_segments(const char* op, std::span<const Tensor> outs, const Tensor& x,
                             const Tensor& w) {
    OLMO_CHECK(!outs.empty() && outs.size() <= 8, "[", op, "] 1 to 8 outputs, got ", outs.size());
    const Device dev = one_device(op, outs[0], {&x, &w});
    check_float(op, "x", x);
    check_dtype(op, "w", w, x.dtype);
    OLMO_CHECK(w.ndim == 2 && last_dim(x) == w.shape[1], "[", op, "] x ", x.shape_str(), " vs w ",
               w.shape_str());
    int64_t rows = 0;
    for (const Tensor& o : outs) {
        one_device(op, o, {&o, &x});
        check_dtype(op, "out", o, x.dtype);
        OLMO_CHECK(same_rows(o, x), "[", op, "] out ", o.shape_str(), " and x ", x.shape_str(),
                   " differ in rows");
        rows += last_dim(o);
    }
    OLMO_CHECK(rows == w.shape[0], "[", op, "] the outputs have ", rows, " columns in all, w has ",
               w.shape[0], " rows");
    return dev;
}

Device check_matmul_swiglu(const char* op, const Tensor& act, const Tensor& gate, const Tensor& up,
                           const Tensor& x, const Tensor& w_gate, const Tensor& w_up) {
    const Device dev = one_device(op, act, {&act, &gate, &up, &x, &w_gate, &w_up});
    check_float(op, "x", x);
    check_dtype(op, "w_gate", w_gate, x.dtype);
    check_like(op, "w_up", w_up, "w_gate", w_gate);
    OLMO_CHECK(w_gate.ndim == 2 && last_dim(x) == w_gate.shape[1], "[", op, "] x ", x.shape_str(),
               " vs w_gate ", w_gate.shape_str());
    check_dtype(op, "gate", gate, x.dtype);
    check_like(op, "up", up, "gate", gate);
    check_like(op, "act", act, "gate", gate);
    OLMO_CHECK(same_rows(gate, x) && last_dim(gate) == w_gate.shape[0], "[", op, "] gate ",
               gate.shape_str(), " vs x ", x.shape_str(), " and w_gate ", w_gate.shape_str());
    return dev;
}

// Sums of squares of a one-row tensor x (src/ops/sum_squares.h), as an input or an output.
void check_sumsq(const char* op, const SumSquares& sumsq, const Tensor& x) {
    OLMO_CHECK(sumsq.partials.empty() ||
                   (sumsq.partials.dtype == DType::f32 && sumsq.partials.device == x.device),
               "[", op, "] sumsq.partials must be f32 on ", device_name(x.device));
    OLMO_CHECK(sumsq.count >= 0 && sumsq.count <= sumsq.partials.numel(), "[", op, "] sumsq.count ",
               sumsq.count, " outside [0, ", sumsq.partials.numel(), "]");
    OLMO_CHECK(sumsq.count == 0 || rows(x) == 1, "[", op,
               "] sums of squares describe one row; got ", x.shape_str());
    OLMO_CHECK(
        sumsq.norm_w.empty() || (sumsq.norm_w.numel() == last_dim(x) &&
                                 sumsq.norm_w.dtype == x.dtype && sumsq.norm_w.device == x.device),
        "[", op, "] sumsq.norm_w ", sumsq.norm_w.shape_str(), " vs the row ", x.shape_str());
    OLMO_CHECK(
        sumsq.scaled.empty() || (sumsq.scaled.numel() == last_dim(x) &&
                                 sumsq.scaled.dtype == x.dtype && sumsq.scaled.device == x.device),
        "[", op, "] sumsq.scaled ", sumsq.scaled.shape_str(), " vs the row ", x.shape_str());
    OLMO_CHECK(sumsq.count == 0 || !sumsq.scaled.empty(), "[", op,
               "] sumsq.count > 0 without sumsq.scaled");
}

// The RMSNorm in front of a product: normed like h, norm_w [I].
void check_input_norm(const char* op, const Tensor& normed, const Tensor& h, const Tensor& norm_w) {
    one_device(op, normed, {&normed, &h, &norm_w});
    check_like(op, "normed", normed, "h", h);
    check_dtype(op, "norm_w", norm_w, h.dtype);
    check_row_weight(op, "h", h, "norm_w", norm_w);
}
}  // namespace

void matmul_segments(std::span<const Tensor> outs, const Tensor& x, const Tensor& w) {
    const Device dev = check_matmul_segments("matmul_segments", outs, x, w);
    OLMO_DISPATCH(dev, matmul_segments, outs, x, w);
}

void matmul_swiglu(const Tensor& act, const Tensor& gate, const Tensor& up, const Tensor& x,
                   const Tensor& w_gate, const Tensor& w_up) {
    const Device dev = check_matmul_swiglu("matmul_swiglu", act, gate, up, x, w_gate, w_up);
    OLMO_DISPATCH(dev, matmul_swiglu, act, gate, up, x, w_gate, w_up);
}

void matmul_sumsq(const Tensor& out, SumSquares& sumsq, const Tensor& x, const Tensor& w,
                  bool accumulate, const Tensor& norm_w) {
    const char* op = "matmul_sumsq";
    const Device dev = check_matmul(op, out, x, w, norm_w);
    sumsq.count = 0;
    sumsq.norm_w = Tensor();
    check_sumsq(op, sumsq, out);
    if (!norm_w.empty()) {
        check_row_weight(op, "out", out, "norm_w", norm_w);
        check_dtype(op, "norm_w", norm_w, out.dtype);
    }
    OLMO_DISPATCH(dev, matmul_sumsq, out, sumsq, x, w, accumulate, norm_w);
}

void rmsnorm_matmul_segments(std::span<const Tensor> outs, const Tensor& normed, const Tensor& h,
                             const Tensor& norm_w, float eps, const SumSquares& sumsq,
                             const Tensor& w) {
    const char* op = "rmsnorm_matmul_segments";
    const Device dev = check_matmul_segments(op, outs, normed, w);
    check_input_norm(op, normed, h, norm_w);
    check_sumsq(op, sumsq, h);
    OLMO_DISPATCH(dev, rmsnorm_matmul_segments, outs, normed, h, norm_w, eps, sumsq, w);
}

void rmsnorm_matmul_swiglu(const Tensor& act, const Tensor& gate, const Tensor& up,
                           const Tensor& normed, const Tensor& h, const Tensor& norm_w, float eps,
                           const SumSquares& sumsq, const Tensor& w_gate, const Tensor& w_up) {
    const char* op = "rmsnorm_matmul_swiglu";
    const Device dev = check_matmul_swiglu(op, act, gate, up, normed, w_gate, w_up);
    check_input_norm(op, normed, h, norm_w);
    check_sumsq(op, sumsq, h);
    OLMO_DISPATCH(dev, rmsnorm_matmul_swiglu, act, gate, up, normed, h, norm_w, eps, sumsq, w_gate,
                  w_up);
}

void matmul_backward_weight(const Tensor& d_w, const Tensor& d_out, const Tensor& x) {
    const char* op = "matmul_backward_weight";
    const Device dev = one_device(op, d_w, {&d_w, &d_out, &x});
    check_float(op, "d_w", d_w);
    check_float(op, "x", x);
    check_dtype(op, "d_out", d_out, x.dtype);
    // Mixed precision: bf16 activations may accumulate into f32 weight gradients (CUDA).
    OLMO_CHECK(d_w.dtype == x.dtype || (d_w.dtype == DType::f32 && dev == Device::cuda), "[", op,
               "] d_w has dtype ", dtype_name(d_w.dtype), ", expected ", dtype_name(x.dtype),
               " or f32 (CUDA)");
    OLMO_CHECK(d_w.ndim == 2 && same_rows(d_out, x) && last_dim(d_out) == d_w.shape[0] &&
                   last_dim(x) == d_w.shape[1],
               "[matmul_backward_weight] d_w ", d_w.shape_str(), " += d_out ", d_out.shape_str(),
               "ᵀ · x ", x.shape_str(), ": expected d_w [O, I], d_out [..., O], x [..., I]");
    OLMO_DISPATCH(dev, matmul_backward_weight, d_w, d_out, x);
}

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
    const char* op = "add";
    const Device dev = one_device(op, out, {&out, &a, &b});
    check_float(op, "out", out);
    check_like(op, "a", a, "out", out);
    check_like(op, "b", b, "out", out);
    OLMO_DISPATCH(dev, add, out, a, b);
}

void fill(const Tensor& out, float value) {
    const Device dev = one_device("fill", out, {&out});
    OLMO_CHECK(is_float(out.dtype), "[fill] out has dtype ", dtype_name(out.dtype),
               ", expected a float dtype");
    OLMO_DISPATCH(dev, fill, out, value);
}

void fill_trunc_normal(const Tensor& out, uint64_t seed, uint64_t stream, double std) {
    const Device dev = one_device("fill_trunc_normal", out, {&out});
    OLMO_CHECK(is_float(out.dtype), "[fill_trunc_normal] out has dtype ", dtype_name(out.dtype),
               ", expected a float dtype");
    OLMO_DISPATCH(dev, fill_trunc_normal, out, seed, stream, std);
}

void scale(const Tensor& out, const Tensor& x, float s) {
    const char* op = "scale";
    const Device dev = one_device(op, out, {&out, &x});
    check_float(op, "out", out);
    check_like(op, "x", x, "out", out);
    OLMO_DISPATCH(dev, scale, out, x, s);
}

void argmax(const Tensor& out, const Tensor& x) {
    const char* op = "argmax";
    const Device dev = one_device(op, out, {&out, &x});
    check_float(op, "x", x);
    OLMO_CHECK(out.dtype == DType::i32 && x.ndim >= 1 && out.numel() == rows(x) && last_dim(x) > 0,
               "[", op, "] out must be i32 with one entry per row of x ", x.shape_str(), ", got ",
               out.shape_str());
    OLMO_DISPATCH(dev, argmax, out, x);
}

// ---- embedding ---------------------------------------------------------------------------------

namespace {
void check_embedding(const char* op, const Tensor& out, const Tensor& ids, const Tensor& table,
                     const char* out_name, const char* table_name) {
    check_float(op, out_name, out);
    check_dtype(op, table_name, table, out.dtype);
    check_index(op, "ids", ids, true);
    const bool ok = table.ndim == 2 && out.ndim >= 1 && last_dim(out) == table.shape[1] &&
                    rows(out) == ids.numel();
    OLMO_CHECK(ok, "[", op, "] ", out_name, " ", out.shape_str(), ", ids ", ids.shape_str(), ", ",
               table_name, " ", table.shape_str(), ": expected [N, C], [N], [V, C]");
}
}  // namespace

void embedding(const Tensor& out, const Tensor& ids, const Tensor& table) {
    const Device dev = one_device("embedding", out, {&out, &ids, &table});
    check_embedding("embedding", out, ids, table, "out", "table");
    OLMO_DISPATCH(dev, embedding, out, ids, table);
}

void embedding_backward(const Tensor& d_table, const Tensor& d_out, const Tensor& ids) {
    const Device dev = one_device("embedding_backward", d_table, {&d_table, &d_out, &ids});
    check_embedding("embedding_backward", d_out, ids, d_table, "d_out", "d_table");
    OLMO_DISPATCH(dev, embedding_backward, d_table, d_out, ids);
}

// ---- norms -------------------------------------------------------------------------------------

void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, float eps) {
    const char* op = "rmsnorm";
    const Device dev = one_device(op, out, {&out, &x, &w});
    check_float(op, "out", out);
    check_like(op, "x", x, "out", out);
    check_dtype(op, "w", w, out.dtype);
    check_row_weight(op, "x", x, "w", w);
    OLMO_DISPATCH(dev, rmsnorm, out, x, w, eps);
}

void rmsnorm_add(const Tensor& out, const Tensor& residual, const Tensor& x, const Tensor& w,
                 float eps) {
    const char* op = "rmsnorm_add";
    const Device dev = one_device(op, out, {&out, &residual, &x, &w});
    check_float(op, "out", out);
    check_like(op, "residual", residual, "out", out);
    check_like(op, "x", x, "out", out);
    check_dtype(op, "w", w, out.dtype);
    check_row_weight(op, "x", x, "w", w);
    OLMO_DISPATCH(dev, rmsnorm_add, out, residual, x, w, eps);
}

void rmsnorm_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out, const Tensor& x,
                      const Tensor& w, float eps) {
    const char* op = "rmsnorm_backward";
    const Device dev = one_device(op, d_x, {&d_x, &d_w, &d_out, &x, &w});
    check_float(op, "d_x", d_x);
    check_like(op, "d_out", d_out, "d_x", d_x);
    check_like(op, "x", x, "d_x", d_x);
    check_dtype(op, "w", w, d_x.dtype);
    check_like(op, "d_w", d_w, "w", w);
    check_row_weight(op, "x", x, "w", w);
    OLMO_DISPATCH(dev, rmsnorm_backward, d_x, d_w, d_out, x, w, eps);
}

void rmsnorm_gated(const Tensor& out, const Tensor& x, const Tensor& z, const Tensor& w,
                   float eps) {
    const char* op = "rmsnorm_gated";
    const Device dev = one_device(op, out, {&out, &x, &z, &w});
    check_float(op, "out", out);
    check_like(op, "x", x, "out", out);
    check_like(op, "z", z, "out", out);
    check_dtype(op, "w", w, out.dtype);
    check_row_weight(op, "x", x, "w", w);
    OLMO_DISPATCH(dev, rmsnorm_gated, out, x, z, w, eps);
}

void rmsnorm_gated_backward(const Tensor& d_x, const Tensor& d_z, const Tensor& d_w,
                            const Tensor& d_out, const Tensor& x, const Tensor& z, const Tensor& w,
                            float eps) {
    const char* op = "rmsnorm_gated_backward";
    const Device dev = one_device(op, d_x, {&d_x, &d_z, &d_w, &d_out, &x, &z, &w});
    check_float(op, "d_x", d_x);
    check_like(op, "d_z", d_z, "d_x", d_x);
    check_like(op, "d_out", d_out, "d_x", d_x);
    check_like(op, "x", x, "d_x", d_x);
    check_like(op, "z", z, "d_x", d_x);
    check_dtype(op, "w", w, d_x.dtype);
    check_like(op, "d_w", d_w, "w", w);
    check_row_weight(op, "x", x, "w", w);
    OLMO_DISPATCH(dev, rmsnorm_gated_backward, d_x, d_z, d_w, d_out, x, z, w, eps);
}

void l2norm(const Tensor& out, const Tensor& x, float eps, float scale) {
    const char* op = "l2norm";
    const Device dev = one_device(op, out, {&out, &x});
    check_float(op, "out", out);
    check_like(op, "x", x, "out", out);
    OLMO_CHECK(x.ndim >= 1, "[l2norm] x must have a row dimension, got ", x.shape_str());
    OLMO_DISPATCH(dev, l2norm, out, x, eps, scale);
}

void l2norm_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& x, float eps,
                     float scale) {
    const char* op = "l2norm_backward";
    const Device dev = one_device(op, d_x, {&d_x, &d_out, &x});
    check_float(op, "d_x", d_x);
    check_like(op, "d_out", d_out, "d_x", d_x);
    check_like(op, "x", x, "d_x", d_x);
    OLMO_CHECK(x.ndim >= 1, "[l2norm_backward] x must have a row dimension, got ", x.shape_str());
    OLMO_DISPATCH(dev, l2norm_backward, d_x, d_out, x, eps, scale);
}

// ---- rotary position embedding
// -------------------------------------------------------------------

namespace {
void check_rope(const char* op, const Tensor& x, const Tensor& positions, const Tensor& inv_freq) {
    OLMO_CHECK(x.ndim >= 2 && last_dim(x) % 2 == 0, "[", op, "] x ", x.shape_str(),
               ": expected [N, H, D] with D even");
    const int64_t d = last_dim(x);
    int64_t n = 1;  // rows of [N..., H, D]
    for (int i = 0; i + 2 < x.ndim; ++i) n *= x.shape[i];
    check_index(op, "positions", positions, false);
    OLMO_CHECK(positions.numel() == n, "[", op, "] positions ", positions.shape_str(), " vs x ",
               x.shape_str(), ": expected one position per row");
    check_dtype(op, "inv_freq", inv_freq, DType::f32);
    check_shape(op, "inv_freq", inv_freq, {d / 2});
}
}  // namespace

void rope(const Tensor& out, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
          float attention_scaling) {
    const char* op = "rope";
    const Device dev = one_device(op, out, {&out, &x, &positions, &inv_freq});
    check_float(op, "out", out);
    check_like(op, "x", x, "out", out);
    check_rope(op, x, positions, inv_freq);
    OLMO_DISPATCH(dev, rope, out, x, positions, inv_freq, attention_scaling);
}

void rope_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& positions,
                   const Tensor& inv_freq, float attention_scaling) {
    const char* op = "rope_backward";
    const Device dev = one_device(op, d_x, {&d_x, &d_out, &positions, &inv_freq});
    check_float(op, "d_x", d_x);
    check_like(op, "d_out", d_out, "d_x", d_x);
    check_rope(op, d_x, positions, inv_freq);
    OLMO_DISPATCH(dev, rope_backward, d_x, d_out, positions, inv_freq, attention_scaling);
}

// ---- softmax attention
// ---------------------------------------------------------------------------

namespace {
// q[B, Tq, Hq, D], k[B, L, Hkv, D], v[B, L, Hkv, Dv], out[B, Tq, Hq, Dv].
void check_attention(const char* op, const Tensor& out, const Tensor& q, const Tensor& k,
                     const Tensor& v, const char* out_name) {
    OLMO_CHECK(q.ndim == 4 && k.ndim == 4 && v.ndim == 4, "[", op, "] expected 4-d q, k, v; got q ",
               q.shape_str(), ", k ", k.shape_str(), ", v ", v.shape_str());
    const int64_t B = q.shape[0], Tq = q.shape[1], Hq = q.shape[2], D = q.shape[3];
    const int64_t L = k.shape[1], Hkv = k.shape[2], Dv = v.shape[3];
    OLMO_CHECK(has_dims(k, {B, L, Hkv, D}) && has_dims(v, {B, L, Hkv, Dv}), "[", op, "] q ",
               q.shape_str(), ", k ", k.shape_str(), ", v ", v.shape_str(),
               ": expected k [B, L, Hkv, D] and v [B, L, Hkv, Dv]");
    OLMO_CHECK(Hkv > 0 && Hq % Hkv == 0, "[", op, "] ", Hq, " query heads are not a multiple of ",
               Hkv, " kv heads");
    OLMO_CHECK(Tq <= L, "[", op, "] ", Tq, " queries but room for only ", L, " keys");
    check_numel(op, out_name, out, B * Tq * Hq * Dv, "[B, Tq, Hq, Dv]");
}
}  // namespace

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& kv_lens, int64_t window, float scale) {
    const char* op = "attention";
    const Device dev = one_device(op, out, {&out, &q, &k, &v, &kv_lens});
    check_float(op, "out", out);
    check_dtype(op, "q", q, out.dtype);
    check_dtype(op, "k", k, out.dtype);
    check_dtype(op, "v", v, out.dtype);
    check_attention(op, out, q, k, v, "out");
    check_index(op, "kv_lens", kv_lens, false);
    check_shape(op, "kv_lens", kv_lens, {q.shape[0]});
    OLMO_CHECK(window >= 0, "[attention] window ", window, " < 0");
    OLMO_DISPATCH(dev, attention, out, q, k, v, kv_lens, window, scale);
}

void attention_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                        const Tensor& d_out, const Tensor& q, const Tensor& k, const Tensor& v,
                        int64_t window, float scale) {
    const char* op = "attention_backward";
    const Device dev = one_device(op, d_q, {&d_q, &d_k, &d_v, &d_out, &q, &k, &v});
    check_float(op, "d_q", d_q);
    check_like(op, "q", q, "d_q", d_q);
    check_dtype(op, "k", k, d_q.dtype);
    check_dtype(op, "v", v, d_q.dtype);
    check_attention(op, d_out, q, k, v, "d_out");
    check_dtype(op, "d_out", d_out, d_q.dtype);
    check_like(op, "d_k", d_k, "k", k);
    check_like(op, "d_v", d_v, "v", v);
    OLMO_CHECK(q.shape[1] == k.shape[1], "[attention_backward] training form needs Tq == L, got q ",
               q.shape_str(), " and k ", k.shape_str());
    OLMO_CHECK(window >= 0, "[attention_backward] window ", window, " < 0");
    OLMO_DISPATCH(dev, attention_backward, d_q, d_k, d_v, d_out, q, k, v, window, scale);
}

void kv_append(const Tensor& cache, const Tensor& x, const Tensor& start) {
    const char* op = "kv_append";
    const Device dev = one_device(op, cache, {&cache, &x, &start});
    OLMO_CHECK(is_float(cache.dtype), "[kv_append] cache has dtype ", dtype_name(cache.dtype));
    check_dtype(op, "x", x, cache.dtype);
    OLMO_CHECK(cache.ndim == 4 && x.ndim == 4 && x.shape[0] == cache.shape[0] &&
                   x.shape[1] <= cache.shape[1] && x.shape[2] == cache.shape[2] &&
                   x.shape[3] == cache.shape[3],
               "[kv_append] cache ", cache.shape_str(), " vs x ", x.shape_str(),
               ": expected cache [B, L, H, D] and x [B, T, H, D] with T <= L");
    check_index(op, "start", start, false);
    check_shape(op, "start", start, {x.shape[0]});
    OLMO_DISPATCH(dev, kv_append, cache, x, start);
}

void attention_prologue(const Tensor& q, const Tensor& k, const Tensor& k_cache,
                        const Tensor& v_cache, const Tensor& q_raw, const Tensor& k_raw,
                        const Tensor& v, const Tensor& q_norm, const Tensor& k_norm,
                        const Tensor& positions, const Tensor& inv_freq, const Tensor& start,
                        float eps, float attention_scaling) {
    const char* op = "attention_prologue";
    const Device dev = one_device(op, q,
                                  {&q, &k, &k_cache, &v_cache, &q_raw, &k_raw, &v, &q_norm, &k_norm,
                                   &positions, &inv_freq, &start});
    check_float(op, "q", q);
    OLMO_CHECK(q.ndim == 4 && k.ndim == 4 && v.ndim == 4, "[", op, "] q ", q.shape_str(), ", k ",
               k.shape_str(), ", v ", v.shape_str(),
               ": expected q [B, T, Hq, D], k [B, T, Hkv, D] and v [B, T, Hkv, Dv]");
    const int64_t B = q.shape[0], T = q.shape[1], Hq = q.shape[2], D = q.shape[3];
    const int64_t Hkv = k.shape[2], Dv = v.shape[3];
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"k", &k},
                                  {"k_cache", &k_cache},
                                  {"v_cache", &v_cache},
                                  {"q_raw", &q_raw},
                                  {"k_raw", &k_raw},
                                  {"v", &v},
                                  {"q_norm", &q_norm},
                                  {"k_norm", &k_norm}})
        check_dtype(op, name, *t, q.dtype);
    check_shape(op, "k", k, {B, T, Hkv, D});
    check_shape(op, "v", v, {B, T, Hkv, Dv});
    check_numel(op, "q_raw", q_raw, B * T * Hq * D, "[B·T, Hq·D]");
    check_numel(op, "k_raw", k_raw, B * T * Hkv * D, "[B·T, Hkv·D]");
    check_shape(op, "q_norm", q_norm, {Hq * D});
    check_shape(op, "k_norm", k_norm, {Hkv * D});
    OLMO_CHECK(k_cache.ndim == 4 && k_cache.shape[0] == B && k_cache.shape[1] >= T &&
                   has_dims(k_cache, {B, k_cache.shape[1], Hkv, D}) &&
                   has_dims(v_cache, {B, k_cache.shape[1], Hkv, Dv}),
               "[", op, "] k_cache ", k_cache.shape_str(), ", v_cache ", v_cache.shape_str(),
               ": expected [B, L, Hkv, D] and [B, L, Hkv, Dv] with T = ", T, " <= L");
    check_index(op, "positions", positions, false);
    check_numel(op, "positions", positions, B * T, "[B·T]");
    if (!inv_freq.empty()) {
        OLMO_CHECK(D % 2 == 0, "[", op, "] RoPE needs an even head dim, got ", D);
        check_dtype(op, "inv_freq", inv_freq, DType::f32);
        check_shape(op, "inv_freq", inv_freq, {D / 2});
    }
    check_index(op, "start", start, false);
    check_shape(op, "start", start, {B});
    OLMO_DISPATCH(dev, attention_prologue, q, k, k_cache, v_cache, q_raw, k_raw, v, q_norm, k_norm,
                  positions, inv_freq, start, eps, attention_scaling);
}

// ---- MLP
// -----------------------------------------------------------------------------------------

void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up) {
    const char* op = "swiglu";
    const Device dev = one_device(op, out, {&out, &gate, &up});
    check_float(op, "out", out);
    check_like(op, "gate", gate, "out", out);
    check_like(op, "up", up, "out", out);
    OLMO_DISPATCH(dev, swiglu, out, gate, up);
}

void swiglu_backward(const Tensor& d_gate, const Tensor& d_up, const Tensor& d_out,
                     const Tensor& gate, const Tensor& up) {
    const char* op = "swiglu_backward";
    const Device dev = one_device(op, d_gate, {&d_gate, &d_up, &d_out, &gate, &up});
    check_float(op, "d_gate", d_gate);
    check_like(op, "d_up", d_up, "d_gate", d_gate);
    check_like(op, "d_out", d_out, "d_gate", d_gate);
    check_like(op, "gate", gate, "d_gate", d_gate);
    check_like(op, "up", up, "d_gate", d_gate);
    OLMO_DISPATCH(dev, swiglu_backward, d_gate, d_up, d_out, gate, up);
}

// ---- Gated DeltaNet ----------------------------------------------------------------------------

namespace {
// x[B, T, Ch], w[Ch, W]
void check_conv(const char* op, const Tensor& x, const Tensor& w) {
    OLMO_CHECK(x.ndim == 3 && w.ndim == 2 && w.shape[0] == x.shape[2] && w.shape[1] >= 1, "[", op,
               "] x ", x.shape_str(), " vs w ", w.shape_str(),
               ": expected x [B, T, Ch] and w [Ch, W]");
}
}  // namespace

void conv1d_silu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& state) {
    const char* op = "conv1d_silu";
    const Device dev = one_device(op, out, {&out, &x, &w, &state});
    check_float(op, "out", out);
    check_like(op, "x", x, "out", out);
    check_dtype(op, "w", w, out.dtype);
    check_conv(op, x, w);
    if (!state.empty()) {
        check_dtype(op, "state", state, out.dtype);
        check_shape(op, "state", state, {x.shape[0], w.shape[1] - 1, x.shape[2]});
    }
    OLMO_DISPATCH(dev, conv1d_silu, out, x, w, state);
}

void conv1d_silu_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out,
                          const Tensor& x, const Tensor& w) {
    const char* op = "conv1d_silu_backward";
    const Device dev = one_device(op, d_x, {&d_x, &d_w, &d_out, &x, &w});
    check_float(op, "d_x", d_x);
    check_like(op, "d_out", d_out, "d_x", d_x);
    check_like(op, "x", x, "d_x", d_x);
    check_dtype(op, "w", w, d_x.dtype);
    check_like(op, "d_w", d_w, "w", w);
    check_conv(op, x, w);
    OLMO_DISPATCH(dev, conv1d_silu_backward, d_x, d_w, d_out, x, w);
}

namespace {
// a, b [..., H] in the activation dtype; A_log, dt_bias [H] likewise; g, beta like a in the compute
// dtype.
void check_gates(const char* op, const Tensor& g, const Tensor& beta, const Tensor& a,
                 const Tensor& b, const Tensor& A_log, const Tensor& dt_bias, const char* ng,
                 const char* nbeta) {
    check_float(op, "a", a);
    check_like(op, "b", b, "a", a);
    check_dtype(op, "A_log", A_log, a.dtype);
    check_like(op, "dt_bias", dt_bias, "A_log", A_log);
    check_row_weight(op, "a", a, "A_log", A_log);
    check_numel(op, ng, g, a.numel(), "as many as a");
    check_numel(op, nbeta, beta, a.numel(), "as many as a");
    check_dtype(op, ng, g, compute_dtype(a.dtype));
    check_dtype(op, nbeta, beta, compute_dtype(a.dtype));
}
}  // namespace

void gdn_gates(const Tensor& g, const Tensor& beta, const Tensor& a, const Tensor& b,
               const Tensor& A_log, const Tensor& dt_bias, bool allow_neg_eigval) {
    const char* op = "gdn_gates";
    const Device dev = one_device(op, g, {&g, &beta, &a, &b, &A_log, &dt_bias});
    check_gates(op, g, beta, a, b, A_log, dt_bias, "g", "beta");
    OLMO_DISPATCH(dev, gdn_gates, g, beta, a, b, A_log, dt_bias, allow_neg_eigval);
}

void gdn_gates_backward(const Tensor& d_a, const Tensor& d_b, const Tensor& d_A_log,
                        const Tensor& d_dt_bias, const Tensor& d_g, const Tensor& d_beta,
                        const Tensor& a, const Tensor& b, const Tensor& A_log,
                        const Tensor& dt_bias, bool allow_neg_eigval) {
    const char* op = "gdn_gates_backward";
    const Device dev = one_device(
        op, d_a, {&d_a, &d_b, &d_A_log, &d_dt_bias, &d_g, &d_beta, &a, &b, &A_log, &dt_bias});
    check_gates(op, d_g, d_beta, a, b, A_log, dt_bias, "d_g", "d_beta");
    check_like(op, "d_a", d_a, "a", a);
    check_like(op, "d_b", d_b, "a", a);
    check_like(op, "d_A_log", d_A_log, "A_log", A_log);
    check_like(op, "d_dt_bias", d_dt_bias, "A_log", A_log);
    OLMO_DISPATCH(dev, gdn_gates_backward, d_a, d_b, d_A_log, d_dt_bias, d_g, d_beta, a, b, A_log,
                  dt_bias, allow_neg_eigval);
}

namespace {
// The operands of the gated delta rule: q, k [B, T, H, Dk], v [B, T, H, Dv] in the activation
// dtype; g, beta [B, T, H] in the compute dtype. Returns {B, H, Dk, Dv}, the state shape.
std::array<int64_t, 4> check_gdn(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& g, const Tensor& beta) {
    check_float(op, "q", q);
    OLMO_CHECK(q.ndim == 4 && v.ndim == 4, "[", op, "] q ", q.shape_str(), ", v ", v.shape_str(),
               ": expected q, k [B, T, H, Dk] and v [B, T, H, Dv]");
    const int64_t B = q.shape[0], T = q.shape[1], H = q.shape[2], Dk = q.shape[3];
    const int64_t Dv = v.shape[3];
    check_like(op, "k", k, "q", q);
    check_dtype(op, "v", v, q.dtype);
    check_shape(op, "v", v, {B, T, H, Dv});
    const DType cd = compute_dtype(q.dtype);
    check_dtype(op, "g", g, cd);
    check_numel(op, "g", g, B * T * H, "[B, T, H]");
    check_dtype(op, "beta", beta, cd);
    check_numel(op, "beta", beta, B * T * H, "[B, T, H]");
    return {B, H, Dk, Dv};
}

void check_state(const char* op, const char* name, const Tensor& s, const Tensor& q,
                 const std::array<int64_t, 4>& sd, bool optional) {
    if (optional && s.empty()) return;
    check_dtype(op, name, s, compute_dtype(q.dtype));
    check_shape(op, name, s, {sd[0], sd[1], sd[2], sd[3]});
}
}  // namespace

void gdn_recurrent(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                   const Tensor& v, const Tensor& g, const Tensor& beta) {
    const char* op = "gdn_recurrent";
    const Device dev = one_device(op, o, {&o, &state, &q, &k, &v, &g, &beta});
    const auto sd = check_gdn(op, q, k, v, g, beta);
    check_like(op, "o", o, "v", v);
    check_state(op, "state", state, q, sd, false);
    OLMO_DISPATCH(dev, gdn_recurrent, o, state, q, k, v, g, beta);
}

void gdn_chunked(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                 const Tensor& v, const Tensor& g, const Tensor& beta, int64_t chunk) {
    const char* op = "gdn_chunked";
    const Device dev = one_device(op, o, {&o, &state, &q, &k, &v, &g, &beta});
    const auto sd = check_gdn(op, q, k, v, g, beta);
    check_like(op, "o", o, "v", v);
    check_state(op, "state", state, q, sd, false);
    OLMO_CHECK(chunk >= 1, "[gdn_chunked] chunk ", chunk, " < 1");
    OLMO_DISPATCH(dev, gdn_chunked, o, state, q, k, v, g, beta, chunk);
}

namespace {
void check_gdn_backward(const char* op, const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                        const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                        const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                        const Tensor& state0) {
    const auto sd = check_gdn(op, q, k, v, g, beta);
    check_like(op, "d_q", d_q, "q", q);
    check_like(op, "d_k", d_k, "k", k);
    check_like(op, "d_v", d_v, "v", v);
    check_like(op, "d_o", d_o, "v", v);
    check_like(op, "d_g", d_g, "g", g);
    check_like(op, "d_beta", d_beta, "beta", beta);
    check_state(op, "d_state0", d_state0, q, sd, true);
    check_state(op, "d_state_final", d_state_final, q, sd, true);
    check_state(op, "state0", state0, q, sd, true);
}
}  // namespace

void gdn_recurrent_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                            const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                            const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                            const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                            const Tensor& state0) {
    const char* op = "gdn_recurrent_backward";
    const Device dev = one_device(op, d_q,
                                  {&d_q, &d_k, &d_v, &d_g, &d_beta, &d_state0, &d_o, &d_state_final,
                                   &q, &k, &v, &g, &beta, &state0});
    check_gdn_backward(op, d_q, d_k, d_v, d_g, d_beta, d_state0, d_o, d_state_final, q, k, v, g,
                       beta, state0);
    OLMO_DISPATCH(dev, gdn_recurrent_backward, d_q, d_k, d_v, d_g, d_beta, d_state0, d_o,
                  d_state_final, q, k, v, g, beta, state0);
}

void gdn_chunked_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                          const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                          const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                          const Tensor& state0, int64_t chunk) {
    const char* op = "gdn_chunked_backward";
    const Device dev = one_device(op, d_q,
                                  {&d_q, &d_k, &d_v, &d_g, &d_beta, &d_state0, &d_o, &d_state_final,
                                   &q, &k, &v, &g, &beta, &state0});
    check_gdn_backward(op, d_q, d_k, d_v, d_g, d_beta, d_state0, d_o, d_state_final, q, k, v, g,
                       beta, state0);
    OLMO_CHECK(chunk >= 1, "[gdn_chunked_backward] chunk ", chunk, " < 1");
    OLMO_DISPATCH(dev, gdn_chunked_backward, d_q, d_k, d_v, d_g, d_beta, d_state0, d_o,
                  d_state_final, q, k, v, g, beta, state0, chunk);
}

namespace {
// out[..., Hv, D] from x[..., Hk, D], Hv a multiple of Hk.
void check_repeat(const char* op, const Tensor& out, const Tensor& x, const char* no,
                  const char* nx) {
    bool ok = out.ndim >= 2 && out.ndim == x.ndim && last_dim(out) == last_dim(x);
    for (int i = 0; ok && i + 2 < x.ndim; ++i) ok = out.shape[i] == x.shape[i];
    ok = ok && x.shape[x.ndim - 2] > 0 && out.shape[out.ndim - 2] % x.shape[x.ndim - 2] == 0;
    OLMO_CHECK(ok, "[", op, "] ", no, " ", out.shape_str(), " vs ", nx, " ", x.shape_str(),
               ": expected [N, Hv, D] and [N, Hk, D] with Hv a multiple of Hk");
}
}  // namespace

void repeat_heads(const Tensor& out, const Tensor& x) {
    const char* op = "repeat_heads";
    const Device dev = one_device(op, out, {&out, &x});
    check_float(op, "out", out);
    check_dtype(op, "x", x, out.dtype);
    check_repeat(op, out, x, "out", "x");
    OLMO_DISPATCH(dev, repeat_heads, out, x);
}

void repeat_heads_backward(const Tensor& d_x, const Tensor& d_out) {
    const char* op = "repeat_heads_backward";
    const Device dev = one_device(op, d_x, {&d_x, &d_out});
    check_float(op, "d_x", d_x);
    check_dtype(op, "d_out", d_out, d_x.dtype);
    check_repeat(op, d_out, d_x, "d_out", "d_x");
    OLMO_DISPATCH(dev, repeat_heads_backward, d_x, d_out);
}

void gdn_decode_step(const Tensor& y, const Tensor& state, const Tensor& conv_q_state,
                     const Tensor& conv_k_state, const Tensor& conv_v_state, const Tensor& q,
                     const Tensor& k, const Tensor& v, const Tensor& a, const Tensor& b,
                     const Tensor& z, const Tensor& conv_q, const Tensor& conv_k,
                     const Tensor& conv_v, const Tensor& A_log, const Tensor& dt_bias,
                     const Tensor& o_norm, bool allow_neg_eigval, float l2_eps, float norm_eps) {
    const char* op = "gdn_decode_step";
    const Device dev =
        one_device(op, y,
                   {&y, &state, &conv_q_state, &conv_k_state, &conv_v_state, &q, &k, &v, &a, &b, &z,
                    &conv_q, &conv_k, &conv_v, &A_log, &dt_bias, &o_norm});
    check_float(op, "q", q);
    const DType dt = q.dtype;
    OLMO_CHECK(state.ndim == 4 && state.shape[1] > 0 && state.shape[2] > 0 && state.shape[3] > 0,
               "[", op, "] state ", state.shape_str(), ": expected [B, H, Dk, Dv]");
    check_dtype(op, "state", state, compute_dtype(dt));
    const int64_t B = state.shape[0], H = state.shape[1], Dk = state.shape[2], Dv = state.shape[3];
    OLMO_CHECK(conv_q.ndim == 2 && conv_q.shape[1] >= 1 && conv_q.shape[0] > 0 &&
                   conv_q.shape[0] % Dk == 0 && H % (conv_q.shape[0] / Dk) == 0,
               "[", op, "] conv_q ", conv_q.shape_str(), " and state ", state.shape_str(),
               ": expected conv_q [Hk·Dk, W] with H a multiple of Hk");
    const int64_t Kd = conv_q.shape[0], W = conv_q.shape[1], Vd = H * Dv;
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"y", &y},
                                  {"conv_q_state", &conv_q_state},
                                  {"conv_k_state", &conv_k_state},
                                  {"conv_v_state", &conv_v_state},
                                  {"k", &k},
                                  {"v", &v},
                                  {"a", &a},
                                  {"b", &b},
                                  {"z", &z},
                                  {"conv_q", &conv_q},
                                  {"conv_k", &conv_k},
                                  {"conv_v", &conv_v},
                                  {"A_log", &A_log},
                                  {"dt_bias", &dt_bias},
                                  {"o_norm", &o_norm}})
        check_dtype(op, name, *t, dt);
    check_shape(op, "conv_k", conv_k, {Kd, W});
    check_shape(op, "conv_v", conv_v, {Vd, W});
    check_shape(op, "conv_q_state", conv_q_state, {B, W - 1, Kd});
    check_shape(op, "conv_k_state", conv_k_state, {B, W - 1, Kd});
    check_shape(op, "conv_v_state", conv_v_state, {B, W - 1, Vd});
    // One token per sequence: the projections have B rows.
    for (const auto& [name, t, width] :
         {std::tuple<const char*, const Tensor*, int64_t>{"q", &q, Kd},
          {"k", &k, Kd},
          {"v", &v, Vd}})
        OLMO_CHECK(t->ndim >= 1 && last_dim(*t) == width && rows(*t) == B, "[", op, "] ", name, " ",
                   t->shape_str(), ": expected one row of ", width, " per sequence (B = ", B,
                   ", T = 1)");
    check_numel(op, "a", a, B * H, "[B, H]");
    check_numel(op, "b", b, B * H, "[B, H]");
    check_numel(op, "z", z, B * Vd, "[B, H·Dv]");
    check_numel(op, "y", y, B * Vd, "[B·H, Dv]");
    check_shape(op, "A_log", A_log, {H});
    check_shape(op, "dt_bias", dt_bias, {H});
    check_shape(op, "o_norm", o_norm, {Dv});
    OLMO_DISPATCH(dev, gdn_decode_step, y, state, conv_q_state, conv_k_state, conv_v_state, q, k, v,
                  a, b, z, conv_q, conv_k, conv_v, A_log, dt_bias, o_norm, allow_neg_eigval, l2_eps,
                  norm_eps);
}

// ---- loss --------------------------------------------------------------------------------------

double cross_entropy(const Tensor& d_logits, const Tensor& logits, const Tensor& targets,
                     float z_loss, int64_t ignore_index, int64_t* count) {
    const char* op = "cross_entropy";
    const Tensor& first = d_logits.empty() ? logits : d_logits;
    const Device dev = one_device(op, first, {&d_logits, &logits, &targets});
    check_float(op, "logits", logits);
    if (!d_logits.empty()) check_like(op, "d_logits", d_logits, "logits", logits);
    check_index(op, "targets", targets, true);
    OLMO_CHECK(logits.ndim >= 1 && targets.numel() == rows(logits), "[cross_entropy] logits ",
               logits.shape_str(), " vs targets ", targets.shape_str(),
               ": expected logits [N, V] and targets [N]");
    OLMO_CHECK(z_loss >= 0, "[cross_entropy] z_loss ", z_loss, " < 0");
    if (dev == Device::cuda) {
#ifdef OLMO_HAVE_CUDA
        return cuda::cross_entropy(d_logits, logits, targets, z_loss, ignore_index, count);
#else
        fail("[cross_entropy] this build has no CUDA backend");
#endif
    }
    return cpu::cross_entropy(d_logits, logits, targets, z_loss, ignore_index, count);
}

// ---- optimiser ---------------------------------------------------------------------------------

double sum_squares(const Tensor& x) {
    const char* op = "sum_squares";
    const Device dev = one_device(op, x, {&x});
    check_float(op, "x", x);
    if (dev == Device::cuda) {
#ifdef OLMO_HAVE_CUDA
        return cuda::sum_squares(x);
#else
        fail("[sum_squares] this build has no CUDA backend");
#endif
    }
    return cpu::sum_squares(x);
}

void adamw(const Tensor& param, const Tensor& m, const Tensor& v, const Tensor& grad, float lr,
           float beta1, float beta2, float eps, float weight_decay, int64_t step,
           float grad_scale) {
    const char* op = "adamw";
    const Device dev = one_device(op, param, {&param, &m, &v, &grad});
    check_float(op, "param", param);
    check_like(op, "m", m, "param", param);
    check_like(op, "v", v, "param", param);
    check_like(op, "grad", grad, "param", param);
    OLMO_CHECK(step >= 1, "[adamw] step ", step, " < 1 (steps count from 1)");
    OLMO_DISPATCH(dev, adamw, param, m, v, grad, lr, beta1, beta2, eps, weight_decay, step,
                  grad_scale);
}

}  // namespace olmo::ops
