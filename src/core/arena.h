// Arena: bump allocation of activation and workspace tensors on one device.
//
// A forward pass allocates everything it needs from an arena, and rewinds it when done (or per
// layer, when intermediates need not be kept). The first passes discover how much memory a (batch,
// length) needs; blocks that overflowed are merged into one block at the next full reset, so that
// steady-state steps and decode loops allocate nothing.
#pragma once

#include <memory>
#include <vector>

#include "core/tensor.h"

namespace olmo {

class Arena {
  public:
    explicit Arena(Device device = Device::cpu) : device_(device) {}

    Tensor alloc(DType dtype, std::initializer_list<int64_t> shape);
    Tensor alloc(DType dtype, std::span<const int64_t> shape);
    // Allocation and a host->device upload of small index arrays.
    Tensor upload_i32(std::span<const int32_t> values);

    size_t mark() const { return used_; }
    // Frees everything allocated after `mark` (which must come from this arena's mark()).
    void rewind(size_t mark);
    // Frees everything; merges overflow blocks into one so the next pass allocates nothing.
    void reset();

    Device device() const { return device_; }
    size_t capacity() const;
    size_t high_water() const { return high_water_; }

  private:
    struct Block {
        std::shared_ptr<void> data;
        size_t size = 0;
        size_t start = 0;  // logical offset of the block's first byte
    };
    Device device_;
    std::vector<Block> blocks_;
    size_t used_ = 0;  // logical bytes in use (offset of the next allocation)
    size_t high_water_ = 0;
};

}  // namespace olmo
