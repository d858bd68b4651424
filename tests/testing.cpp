#include "testing.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

namespace olmo::testing {

namespace fs = std::filesystem;

std::string shared_dir() {
    if (const char* env = std::getenv("OLMO_SHARED_DIR")) return env;
    return (fs::path(OLMO_SOURCE_DIR) / ".." / "shared").lexically_normal().string();
}

std::string test_data_dir() {
    return (fs::path(OLMO_SOURCE_DIR) / "tests" / "data").string();
}

namespace {
struct TempRoot {
    fs::path path;
    TempRoot() {
        path = fs::temp_directory_path() / ("olmo-test-" + std::to_string(::getpid()));
        fs::create_directories(path);
    }
    ~TempRoot() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};
}  // namespace

std::string temp_dir() {
    static TempRoot root;
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "global";
    for (char& c : name)
        if (c == '/') c = '_';
    fs::path p = root.path / (name + "-" + std::to_string(counter++));
    fs::create_directories(p);
    return p.string();
}

OwnedTensor random_uniform(std::initializer_list<int64_t> shape, uint64_t seed, float lo,
                           float hi) {
    OwnedTensor t(DType::f32, shape);
    Rng rng(seed, 0x7e57);
    float* p = t.f32();
    for (int64_t i = 0; i < t->numel(); ++i)
        p[i] = lo + (hi - lo) * float(rng.uniform(uint64_t(i)));
    return t;
}

OwnedTensor random_normal(std::initializer_list<int64_t> shape, uint64_t seed, float std) {
    OwnedTensor t(DType::f32, shape);
    Rng rng(seed, 0x7e58);
    float* p = t.f32();
    for (int64_t i = 0; i < t->numel(); ++i) p[i] = std * float(rng.normal(uint64_t(i)));
    return t;
}

double max_abs(const Tensor& t) {
    OwnedTensor h = to_host_f32(t);
    double m = 0;
    for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, double(std::fabs(h.f32()[i])));
    return m;
}

double rel_max_error(const Tensor& a, const Tensor& b) {
    OwnedTensor ha = to_host_f32(a), hb = to_host_f32(b);
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < b.numel(); ++i) {
        const double x = ha.f32()[i], y = hb.f32()[i];
        if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<double>::infinity();
        diff = std::max(diff, std::fabs(x - y));
        ref = std::max(ref, std::fabs(y));
    }
    return ref > 0 ? diff / ref : diff;
}

::testing::AssertionResult close(const Tensor& actual, const Tensor& expected, double tol) {
    if (!actual.same_shape(expected))
        return ::testing::AssertionFailure()
               << "shape " << actual.shape_str() << " != expected " << expected.shape_str();
    const double e = rel_max_error(actual, expected);
    if (e <= tol) return ::testing::AssertionSuccess() << "rel error " << e;
    return ::testing::AssertionFailure()
           << "rel max error " << e << " > " << tol << " (max |ref| " << max_abs(expected) << ")";
}

}  // namespace olmo::testing
