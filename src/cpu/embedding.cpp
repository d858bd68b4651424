// Token embedding lookup and its backward (a scatter-add of gradient rows into the table).
// Ids are checked against the table size on the host before any memory is touched.
#include <cstring>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {
void check_ids(const char* op, const Tensor& ids, int64_t vocab) {
    const int64_t n = ids.numel();
    for (int64_t i = 0; i < n; ++i) {
        const int64_t id = index_at(ids, i);
        if (id < 0 || id >= vocab)
            fail("[", op, "] id ", id, " at position ", i, " is outside the table [0, ", vocab,
                 ")");
    }
}
}  // namespace

void embedding(const Tensor& out, const Tensor& ids, const Tensor& table) {
    const int64_t N = ids.numel(), V = table.shape[0], C = table.shape[1];
    check_ids("embedding", ids, V);
    dispatch_float("embedding", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* tab = table.as<T>();
        T* o = out.as<T>();
        parallel_for(N, C, [&](int64_t n) {
            std::memcpy(o + n * C, tab + index_at(ids, n) * C, size_t(C) * sizeof(T));
        });
    });
}

void embedding_backward(const Tensor& d_table, const Tensor& d_out, const Tensor& ids) {
    const int64_t N = ids.numel(), V = d_table.shape[0], C = d_table.shape[1];
    check_ids("embedding_backward", ids, V);
    dispatch_float("embedding_backward", d_table.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* g = d_out.as<T>();
        T* dt = d_table.as<T>();
        // Repeated ids add into the same row, so threads split the columns, not the tokens.
        parallel_columns(C, N, [&](int64_t c0, int64_t c1) {
            for (int64_t n = 0; n < N; ++n) {
                T* row = dt + index_at(ids, n) * C;
                const T* src = g + n * C;
                for (int64_t c = c0; c < c1; ++c) row[c] += src[c];
            }
        });
    });
}

}  // namespace olmo::cpu
