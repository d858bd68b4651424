#include "core/arena.h"

namespace olmo {

namespace {
constexpr size_t kAlign = 256;  // keeps every tensor aligned for vector and tensor-core loads
size_t align_up(size_t n) {
    return (n + kAlign - 1) / kAlign * kAlign;
}
}  // namespace

Tensor Arena::alloc(DType dtype, std::initializer_list<int64_t> shape) {
    return alloc(dtype, std::span<const int64_t>(shape.begin(), shape.size()));
}

Tensor Arena::alloc(DType dtype, std::span<const int64_t> shape) {
    Tensor t(nullptr, dtype, device_, shape);
    const size_t bytes = align_up(std::max<size_t>(t.nbytes(), 1));
    // Find the block holding logical offset used_; a request that does not fit there starts at the
    // next block, or a new block sized for it (so logical offsets grow monotonically).
    for (;;) {
        Block* b = nullptr;
        for (Block& blk : blocks_)
            if (used_ >= blk.start && used_ < blk.start + blk.size) b = &blk;
        if (b && used_ + bytes <= b->start + b->size) {
            t.data = static_cast<char*>(b->data.get()) + (used_ - b->start);
            used_ += bytes;
            high_water_ = std::max(high_water_, used_);
            return t;
        }
        const size_t end = blocks_.empty() ? 0 : blocks_.back().start + blocks_.back().size;
        if (b && b != &blocks_.back()) {
            used_ = b->start + b->size;  // skip the tail of this block, try the next one
            continue;
        }
        if (used_ < end) used_ = end;
        Block nb;
        nb.size = std::max(bytes, size_t(64) << 20);
        nb.start = end;
        nb.data = allocate_bytes(device_, nb.size);
        blocks_.push_back(std::move(nb));
    }
}

Tensor Arena::upload_i32(std::span<const int32_t> values) {
    Tensor t = alloc(DType::i32, {int64_t(values.size())});
    copy_tensor(t, Tensor(const_cast<int32_t*>(values.data()), DType::i32, Device::cpu,
                          {int64_t(values.size())}));
    return t;
}

void Arena::rewind(size_t mark) {
    OLMO_CHECK(mark <= used_, "arena rewind past the current offset");
    used_ = mark;
}

void Arena::reset() {
    used_ = 0;
    if (blocks_.size() > 1) {
        const size_t total = align_up(high_water_);
        blocks_.clear();
        Block nb;
        nb.size = total;
        nb.start = 0;
        nb.data = allocate_bytes(device_, total);
        blocks_.push_back(std::move(nb));
    }
}

size_t Arena::capacity() const {
    size_t n = 0;
    for (const Block& b : blocks_) n += b.size;
    return n;
}

}  // namespace olmo
