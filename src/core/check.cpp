#include "core/check.h"

#include <cstring>

namespace olmo::detail {

void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
    const char* base = std::strrchr(file, '/');
    throw Error(cat("[", base ? base + 1 : file, ":", line, "] check failed: ", cond,
                    msg.empty() ? "" : ": ", msg));
}

}  // namespace olmo::detail
