// safetensors files: a memory-mapped reader (single file, or sharded through
// model.safetensors.index.json) and a writer that never leaves a half-written file behind.
//
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets}, ...,
// "__metadata__": {str: str}}, then the data buffer. The reader validates the whole header before
// any tensor is used: lengths past the end of the file, offsets out of range or overlapping, dtype
// / shape / byte-count mismatches and duplicate names are errors naming the file and the tensor.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace olmo {

struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::f32;
    std::vector<int64_t> shape;
    const void* data = nullptr;  // inside the mapping
    size_t nbytes = 0;
    std::string file;  // the file it lives in (for error messages)

    // A read-only host view (the mapping must outlive it).
    Tensor view() const { return Tensor(const_cast<void*>(data), dtype, Device::cpu, shape); }
    int64_t numel() const;
};

// Reads one file or a sharded set. Tensors point into read-only memory maps held by this object.
class SafetensorsReader {
  public:
    // `path` is a .safetensors file, a model.safetensors.index.json, or a folder holding either.
    static SafetensorsReader open(const std::string& path);
    // Parses an in-memory buffer (used by the fuzz target); the buffer must outlive the reader.
    static SafetensorsReader from_memory(const void* data, size_t size, const std::string& label);

    const SafetensorsEntry* find(const std::string& name) const;
    const SafetensorsEntry& get(
        const std::string& name) const;  // error naming the tensor if absent
    const std::vector<SafetensorsEntry>& entries() const { return entries_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::string& source() const { return source_; }

  private:
    void add_file(const std::string& path);
    void parse(const unsigned char* base, size_t size, const std::string& label);

    std::vector<std::shared_ptr<void>> mappings_;
    std::vector<SafetensorsEntry> entries_;
    std::map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
    std::string source_;
};

// Accumulates tensors (copied, or referenced when the caller guarantees their lifetime) and writes
// them to `path` through a temporary file that is renamed into place only once complete.
class SafetensorsWriter {
  public:
    // Copies the tensor's bytes (any device) at the time of the call.
    void add(const std::string& name, const Tensor& t);
    // Stores the tensor converted to `dtype` (f32 <-> bf16/f16 conversion on the host).
    void add_as(const std::string& name, const Tensor& t, DType dtype);
    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
    bool contains(const std::string& name) const;
    void write(const std::string& path) const;

  private:
    struct Item {
        std::string name;
        DType dtype;
        std::vector<int64_t> shape;
        std::shared_ptr<void> bytes;
        size_t nbytes;
    };
    std::vector<Item> items_;
    std::map<std::string, std::string> metadata_;
};

// Writes a file whose tensors are produced one at a time (for checkpoints larger than memory): the
// header is computed from the declared names, dtypes and shapes, then each `fill` writes its
// tensor's bytes into a buffer of exactly that size. Atomic like SafetensorsWriter::write.
struct StreamedTensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::function<void(void* dst)> fill;
};
void write_safetensors_streamed(const std::string& path, const std::vector<StreamedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata = {});

// safetensors dtype strings ("F32", "BF16", ...) <-> DType.
DType dtype_from_safetensors(const std::string& s, const std::string& context);
const char* dtype_to_safetensors(DType t);

// Writes `bytes` to `path` atomically: temporary file in the same folder, fsync, rename.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace olmo
