// A file written under a temporary name in the destination folder and renamed into place by
// commit(). If commit() is never reached (error, exception, kill), the temporary is removed (or
// left as an obviously temporary name after a hard kill) and any previous file at the destination
// is untouched.
#pragma once

#include <cstddef>
#include <string>

namespace olmo {

class AtomicFile {
  public:
    explicit AtomicFile(const std::string& path);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* data, size_t n);
    // Overwrites bytes already written (e.g. a header completed at the end).
    void write_at(size_t offset, const void* data, size_t n);
    size_t size() const { return written_; }
    // Flushes, fsyncs and renames the temporary onto the destination.
    void commit();
    const std::string& temp_path() const { return temp_; }

  private:
    std::string path_, temp_;
    int fd_ = -1;
    size_t written_ = 0;
    bool committed_ = false;
};

// fsyncs a folder so that a rename inside it is durable.
void sync_directory(const std::string& dir);

}  // namespace olmo
