// The CUDA runtime layer: error checks, the one stream every op runs on, device memory, copies, and
// the cuBLASLt handle. Host code only; kernels live in kernels/ and know no project type.
//
// All ops enqueue on current_stream() and never synchronise, so a sequence of ops (e.g. a decode
// step) can be captured into a CUDA graph. Copies to or from the host synchronise the stream.
#pragma once

#include <cstddef>
#include <memory>

namespace olmo::cuda {

// Memory on the current device, freed when the last reference goes.
std::shared_ptr<void> device_alloc(size_t bytes);
// Copies bytes between host and device memory in any direction (on the stream; synchronous when the
// host is involved).
void copy_bytes(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);
// Waits for all work on the stream; raises the first asynchronous error.
void synchronize();
// True if a CUDA device can be used.
bool available();
// Name, memory and multiprocessor count of the current device, for logs.
struct DeviceInfo {
    char name[256];
    size_t total_memory;
    int multiprocessors;
    int major, minor;
    size_t l2_bytes;
};
DeviceInfo device_info();
// Bytes currently allocated through device_alloc, and the peak since start (or the last reset).
size_t allocated_bytes();
size_t peak_allocated_bytes();
void reset_peak_allocated();

}  // namespace olmo::cuda
