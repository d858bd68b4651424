// Tensor: a non-owning, contiguous, row-major view {data, dtype, device, shape}.
// OwnedTensor: owns the memory of one tensor (host: 64-byte aligned; cuda: device memory).
//
// Shapes are written in PyTorch order, last dimension contiguous (docs/NOTATION.md). Views never
// carry strides: an op that needs a strided operand takes the extra stride as an explicit argument.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"

namespace olmo {

constexpr int kMaxDims = 6;

struct Tensor {
    void* data = nullptr;
    DType dtype = DType::f32;
    Device device = Device::cpu;
    int ndim = 0;
    std::array<int64_t, kMaxDims> shape{};

    Tensor() = default;
    Tensor(void* data, DType dtype, Device device, std::span<const int64_t> dims);
    Tensor(void* data, DType dtype, Device device, std::initializer_list<int64_t> dims)
        : Tensor(data, dtype, device, std::span<const int64_t>(dims.begin(), dims.size())) {}

    // A default-constructed Tensor stands for an absent optional operand.
    bool empty() const { return ndim == 0 && data == nullptr; }
    int64_t numel() const;
    size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
    // Size of dimension d; negative d counts from the end.
    int64_t size(int d) const;
    bool same_shape(const Tensor& o) const;
    std::string shape_str() const;  // "[2, 80, 64]"
    std::vector<int64_t> dims() const { return {shape.begin(), shape.begin() + ndim}; }

    template <class T>
    T* as() const {
        return static_cast<T*>(data);
    }
    float* f32() const;
    double* f64() const;

    // Same memory, new shape (one entry may be -1).
    Tensor reshape(std::initializer_list<int64_t> dims) const;
    Tensor reshape(std::span<const int64_t> dims) const;
    // Rows [start, start + len) of dimension 0.
    Tensor narrow0(int64_t start, int64_t len) const;
    // Row i of dimension 0, with that dimension dropped.
    Tensor select0(int64_t i) const;
};

// Owns the storage of one tensor. Move-only; converts to its view.
class OwnedTensor {
  public:
    OwnedTensor() = default;
    OwnedTensor(DType dtype, std::initializer_list<int64_t> dims, Device device = Device::cpu);
    OwnedTensor(DType dtype, std::span<const int64_t> dims, Device device = Device::cpu);

    const Tensor& view() const { return view_; }
    operator const Tensor&() const { return view_; }
    const Tensor* operator->() const { return &view_; }
    bool allocated() const { return storage_ != nullptr; }

    // Element access for host tensors (tests and tools).
    float* f32() const { return view_.f32(); }

    // Fills a host tensor with a constant (any float dtype).
    void fill(float value);

  private:
    std::shared_ptr<void> storage_;
    Tensor view_;
};

// Raw allocation on a device; the deleter matches the device.
std::shared_ptr<void> allocate_bytes(Device device, size_t bytes);

// Copies between tensors of the same shape and dtype, on any pair of devices.
void copy_tensor(const Tensor& dst, const Tensor& src);

// Copies src into dst converting between float dtypes (f32, f64, bf16, f16) through the host when
// the dtypes differ. Shapes must have the same number of elements.
void copy_convert(const Tensor& dst, const Tensor& src);

// Host f32 copy of any float tensor (converting bf16/f16/f64), on the CPU.
OwnedTensor to_host_f32(const Tensor& src);

}  // namespace olmo
