#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#ifdef OLMO_HAVE_CUDA
#include "cuda/runtime.h"
#endif

namespace olmo {

Tensor::Tensor(void* data_, DType dtype_, Device device_, std::span<const int64_t> dims)
    : data(data_), dtype(dtype_), device(device_) {
    OLMO_CHECK(dims.size() <= size_t(kMaxDims), "too many dimensions: ", dims.size());
    ndim = int(dims.size());
    for (int i = 0; i < ndim; ++i) {
        OLMO_CHECK(dims[i] >= 0, "negative dimension ", dims[i]);
        shape[i] = dims[i];
    }
}

int64_t Tensor::numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
}

int64_t Tensor::size(int d) const {
    if (d < 0) d += ndim;
    OLMO_CHECK(d >= 0 && d < ndim, "dimension ", d, " out of range for ", shape_str());
    return shape[d];
}

bool Tensor::same_shape(const Tensor& o) const {
    if (ndim != o.ndim) return false;
    for (int i = 0; i < ndim; ++i)
        if (shape[i] != o.shape[i]) return false;
    return true;
}

std::string Tensor::shape_str() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

float* Tensor::f32() const {
    OLMO_CHECK(dtype == DType::f32, "expected f32, got ", dtype_name(dtype));
    return static_cast<float*>(data);
}

double* Tensor::f64() const {
    OLMO_CHECK(dtype == DType::f64, "expected f64, got ", dtype_name(dtype));
    return static_cast<double*>(data);
}

Tensor Tensor::reshape(std::initializer_list<int64_t> dims) const {
    return reshape(std::span<const int64_t>(dims.begin(), dims.size()));
}

Tensor Tensor::reshape(std::span<const int64_t> dims) const {
    std::vector<int64_t> d(dims.begin(), dims.end());
    int64_t known = 1;
    int infer = -1;
    for (size_t i = 0; i < d.size(); ++i) {
        if (d[i] == -1) {
            OLMO_CHECK(infer < 0, "reshape: more than one -1");
            infer = int(i);
        } else {
            known *= d[i];
        }
    }
    if (infer >= 0) {
        OLMO_CHECK(known > 0 && numel() % known == 0, "reshape ", shape_str(), ": cannot infer");
        d[infer] = numel() / known;
        known *= d[infer];
    }
    OLMO_CHECK(known == numel(), "reshape ", shape_str(), " to ", d.size(), " dims: size mismatch");
    return Tensor(data, dtype, device, d);
}

Tensor Tensor::narrow0(int64_t start, int64_t len) const {
    OLMO_CHECK(ndim >= 1 && start >= 0 && len >= 0 && start + len <= shape[0], "narrow0(", start,
               ", ", len, ") of ", shape_str());
    Tensor t = *this;
    const int64_t row = shape[0] ? numel() / shape[0] : 0;
    t.data = static_cast<char*>(data) + size_t(start * row) * dtype_size(dtype);
    t.shape[0] = len;
    return t;
}

Tensor Tensor::select0(int64_t i) const {
    Tensor t = narrow0(i, 1);
    for (int d = 1; d < ndim; ++d) t.shape[d - 1] = shape[d];
    t.ndim = ndim - 1;
    return t;
}

std::shared_ptr<void> allocate_bytes(Device device, size_t bytes) {
    if (device == Device::cuda) {
#ifdef OLMO_HAVE_CUDA
        return cuda::device_alloc(bytes);
#else
        fail("[tensor] this build has no CUDA backend: rebuild with -DOLMO_CUDA=ON");
#endif
    }
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded ? rounded : 64);
    if (!p) fail("[tensor] out of host memory allocating ", bytes, " bytes");
    return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

OwnedTensor::OwnedTensor(DType dtype, std::initializer_list<int64_t> dims, Device device)
    : OwnedTensor(dtype, std::span<const int64_t>(dims.begin(), dims.size()), device) {}

OwnedTensor::OwnedTensor(DType dtype, std::span<const int64_t> dims, Device device) {
    view_ = Tensor(nullptr, dtype, device, dims);
    storage_ = allocate_bytes(device, view_.nbytes());
    view_.data = storage_.get();
}

void OwnedTensor::fill(float value) {
    OLMO_CHECK(view_.device == Device::cpu, "fill needs a host tensor");
    const int64_t n = view_.numel();
    switch (view_.dtype) {
        case DType::f32:
            for (int64_t i = 0; i < n; ++i) view_.as<float>()[i] = value;
            break;
        case DType::f64:
            for (int64_t i = 0; i < n; ++i) view_.as<double>()[i] = value;
            break;
        case DType::bf16:
            for (int64_t i = 0; i < n; ++i) view_.as<uint16_t>()[i] = f32_to_bf16(value);
            break;
        case DType::f16:
            for (int64_t i = 0; i < n; ++i) view_.as<uint16_t>()[i] = f32_to_f16(value);
            break;
        default:
            fail("[tensor] fill: unsupported dtype ", dtype_name(view_.dtype));
    }
}

void copy_tensor(const Tensor& dst, const Tensor& src) {
    OLMO_CHECK(dst.numel() == src.numel() && dst.dtype == src.dtype, "copy ", src.shape_str(), " ",
               dtype_name(src.dtype), " -> ", dst.shape_str(), " ", dtype_name(dst.dtype));
    if (dst.device == Device::cpu && src.device == Device::cpu) {
        if (src.nbytes()) std::memmove(dst.data, src.data, src.nbytes());
        return;
    }
#ifdef OLMO_HAVE_CUDA
    cuda::copy_bytes(dst.data, dst.device == Device::cuda, src.data, src.device == Device::cuda,
                     src.nbytes());
#else
    fail("[tensor] this build has no CUDA backend");
#endif
}

void copy_convert(const Tensor& dst, const Tensor& src) {
    OLMO_CHECK(dst.numel() == src.numel(), "copy_convert ", src.shape_str(), " -> ",
               dst.shape_str());
    if (dst.dtype == src.dtype) {
        copy_tensor(dst, src.reshape(std::span<const int64_t>(dst.shape.data(), dst.ndim)));
        return;
    }
    OwnedTensor f = to_host_f32(src);
    const int64_t n = src.numel();
    OwnedTensor staged(dst.dtype, dst.dims());
    const float* in = f.f32();
    switch (dst.dtype) {
        case DType::f32:
            std::memcpy(staged->data, in, n * 4);
            break;
        case DType::f64:
            for (int64_t i = 0; i < n; ++i) staged->as<double>()[i] = in[i];
            break;
        case DType::bf16:
            for (int64_t i = 0; i < n; ++i) staged->as<uint16_t>()[i] = f32_to_bf16(in[i]);
            break;
        case DType::f16:
            for (int64_t i = 0; i < n; ++i) staged->as<uint16_t>()[i] = f32_to_f16(in[i]);
            break;
        default:
            fail("[tensor] copy_convert: not a float dtype: ", dtype_name(dst.dtype));
    }
    copy_tensor(dst, staged);
}

OwnedTensor to_host_f32(const Tensor& src) {
    const Tensor* s = &src;
    OwnedTensor staged;
    if (src.device != Device::cpu) {
        staged = OwnedTensor(src.dtype, src.dims());
        copy_tensor(staged, src);
        s = &staged.view();
    }
    OwnedTensor out(DType::f32, src.dims());
    float* o = out.f32();
    const int64_t n = src.numel();
    switch (s->dtype) {
        case DType::f32:
            std::memcpy(o, s->data, n * 4);
            break;
        case DType::f64:
            for (int64_t i = 0; i < n; ++i) o[i] = float(s->as<double>()[i]);
            break;
        case DType::bf16:
            for (int64_t i = 0; i < n; ++i) o[i] = bf16_to_f32(s->as<uint16_t>()[i]);
            break;
        case DType::f16:
            for (int64_t i = 0; i < n; ++i) o[i] = f16_to_f32(s->as<uint16_t>()[i]);
            break;
        default:
            fail("[tensor] to_host_f32: not a float tensor (", dtype_name(s->dtype), ")");
    }
    return out;
}

}  // namespace olmo
