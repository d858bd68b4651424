#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/check.h"

namespace olmo {

namespace fs = std::filesystem;

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
    const fs::path p(path);
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        fail("[io] cannot write ", path, ": folder ", dir.string(), " does not exist");
    temp_ = (dir / ("." + p.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("[io] cannot create ", temp_, ": ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd_, p, n > (size_t(1) << 30) ? (size_t(1) << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            fail("[io] writing ", path_, ": ", std::strerror(errno));
        }
        p += w;
        n -= size_t(w);
        written_ += size_t(w);
    }
}

void AtomicFile::write_at(size_t offset, const void* data, size_t n) {
    OLMO_CHECK(offset + n <= written_, "write_at past the end of what was written");
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::pwrite(fd_, p, n, off_t(offset));
        if (w < 0) {
            if (errno == EINTR) continue;
            fail("[io] writing ", path_, ": ", std::strerror(errno));
        }
        p += w;
        n -= size_t(w);
        offset += size_t(w);
    }
}

void AtomicFile::commit() {
    if (::fsync(fd_) != 0) fail("[io] fsync ", temp_, ": ", std::strerror(errno));
    if (::close(fd_) != 0) {
        fd_ = -1;
        fail("[io] close ", temp_, ": ", std::strerror(errno));
    }
    fd_ = -1;
    if (std::rename(temp_.c_str(), path_.c_str()) != 0)
        fail("[io] rename ", temp_, " -> ", path_, ": ", std::strerror(errno));
    committed_ = true;
    const fs::path p(path_);
    sync_directory(p.has_parent_path() ? p.parent_path().string() : ".");
}

void sync_directory(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;  // best effort: some filesystems do not allow opening folders
    ::fsync(fd);
    ::close(fd);
}

}  // namespace olmo
