// Errors and invariant checks.
//
// olmo::Error is the one exception type of the project. It is thrown at input boundaries (files,
// config, tokenizer data, command line, HTTP) with a message of the form "[component] what:
// expected X, got Y", and by OLMO_CHECK when an internal invariant fails (then the message carries
// file:line). Commands catch it at the top and print one line, so bad input never crashes the
// process.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace olmo {

class Error : public std::runtime_error {
  public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Concatenates any streamable values into one string: cat("got ", 3, " tensors").
template <class... Args>
std::string cat(Args&&... args) {
    std::ostringstream s;
    (s << ... << std::forward<Args>(args));
    return s.str();
}

// Throws olmo::Error with the concatenated message.
template <class... Args>
[[noreturn]] void fail(Args&&... args) {
    throw Error(cat(std::forward<Args>(args)...));
}

namespace detail {
[[noreturn]] void check_failed(const char* file, int line, const char* cond,
                               const std::string& msg);
}  // namespace detail

}  // namespace olmo

// Always-on invariant check. Extra arguments are concatenated into the message.
#define OLMO_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) [[unlikely]]                                                              \
            ::olmo::detail::check_failed(__FILE__, __LINE__, #cond, ::olmo::cat(__VA_ARGS__)); \
    } while (0)
