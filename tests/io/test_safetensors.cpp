// safetensors reader/writer: round trips, sharded folders, and one test per kind of malformed file.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "testing.h"

namespace olmo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

void write_raw(const std::string& path, const std::string& header, size_t data_bytes,
               int64_t header_len = -1) {
    std::ofstream f(path, std::ios::binary);
    const uint64_t n = header_len >= 0 ? uint64_t(header_len) : header.size();
    for (int i = 0; i < 8; ++i) f.put(char((n >> (8 * i)) & 0xff));
    f << header;
    for (size_t i = 0; i < data_bytes; ++i) f.put(char(i * 7));
}

std::string expect_error(const std::string& path) {
    try {
        SafetensorsReader::open(path);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error for " << path;
    return "";
}

TEST(Safetensors, RoundTripDtypes) {
    const std::string dir = testing::temp_dir();
    OwnedTensor a = testing::random_uniform({3, 5}, 1);
    OwnedTensor ids(DType::i64, {2, 4});
    for (int i = 0; i < 8; ++i) ids->as<int64_t>()[i] = 1000 + i;
    SafetensorsWriter w;
    w.add("a", a);
    w.add_as("a_bf16", a, DType::bf16);
    w.add_as("a_f16", a, DType::f16);
    w.add("ids", ids);
    w.set_metadata("format", "pt");
    const std::string path = dir + "/x.safetensors";
    w.write(path);
    SafetensorsReader r = SafetensorsReader::open(path);
    EXPECT_EQ(r.entries().size(), 4u);
    EXPECT_EQ(r.metadata().at("format"), "pt");
    EXPECT_TRUE(testing::close(r.get("a").view(), a, 0.0));
    EXPECT_TRUE(testing::close(r.get("a_bf16").view(), a, 1.0 / 128));
    EXPECT_TRUE(testing::close(r.get("a_f16").view(), a, 1.0 / 1024));
    EXPECT_EQ(r.get("ids").dtype, DType::i64);
    EXPECT_EQ(r.get("ids").view().as<int64_t>()[7], 1007);
    EXPECT_EQ(r.find("nope"), nullptr);
    EXPECT_THROW(r.get("nope"), Error);
}

TEST(Safetensors, ShardedIndexAndFolder) {
    const std::string dir = testing::temp_dir();
    OwnedTensor a = testing::random_uniform({4}, 2), b = testing::random_uniform({2, 2}, 3);
    SafetensorsWriter w1, w2;
    w1.add("a", a);
    w2.add("b", b);
    w1.write(dir + "/model-00001-of-00002.safetensors");
    w2.write(dir + "/model-00002-of-00002.safetensors");
    json idx = {
        {"metadata", {{"total_size", 32}}},
        {"weight_map",
         {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
    std::ofstream(dir + "/model.safetensors.index.json") << idx.dump();
    SafetensorsReader r = SafetensorsReader::open(dir);
    EXPECT_TRUE(testing::close(r.get("a").view(), a, 0));
    EXPECT_TRUE(testing::close(r.get("b").view(), b, 0));

    json bad = idx;
    bad["weight_map"]["c"] = "model-00001-of-00002.safetensors";
    std::ofstream(dir + "/model.safetensors.index.json") << bad.dump();
    EXPECT_NE(expect_error(dir).find("\"c\""), std::string::npos);
    bad = idx;
    bad["weight_map"]["a"] = "../escape.safetensors";
    std::ofstream(dir + "/model.safetensors.index.json") << bad.dump();
    EXPECT_NE(expect_error(dir).find("outside"), std::string::npos);
}

TEST(Safetensors, MissingAndEmpty) {
    const std::string dir = testing::temp_dir();
    EXPECT_NE(expect_error(dir + "/none.safetensors").find("no such file"), std::string::npos);
    EXPECT_NE(expect_error(dir).find("no model.safetensors"), std::string::npos);
    std::ofstream(dir + "/empty.safetensors").close();
    EXPECT_NE(expect_error(dir + "/empty.safetensors").find("empty"), std::string::npos);
    std::ofstream(dir + "/short.safetensors") << "abc";
    EXPECT_NE(expect_error(dir + "/short.safetensors").find("shorter than"), std::string::npos);
}

struct BadCase {
    const char* name;
    std::string header;
    size_t data;
    int64_t header_len;
    const char* expect;  // part of the error message
};

TEST(Safetensors, MalformedHeaders) {
    const std::string dir = testing::temp_dir();
    const std::vector<BadCase> cases = {
        {"length_past_eof", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4, 1 << 20,
         "past the end"},
        {"not_json", "{not json", 0, -1, "not valid JSON"},
        {"not_object", "[1,2]", 0, -1, "not a JSON object"},
        {"entry_not_object", R"({"a":3})", 0, -1, "not an object"},
        {"no_dtype", R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4, -1, "dtype"},
        {"bad_dtype", R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", 4, -1,
         "unsupported dtype"},
        {"negative_dim", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, -1,
         "non-negative"},
        {"offsets_out_of_range", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, -1,
         "past the end"},
        {"reversed_offsets", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", 4, -1,
         "reversed"},
        {"byte_count_mismatch", R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8, -1,
         "6 bytes"},
        {"overlap",
         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
         12, -1, "overlap"},
        {"overlap_nested",
         R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
         16, -1, "overlap"},
        {"duplicate",
         R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
         8, -1, "duplicate tensor name \"a\""},
        {"metadata_not_strings", R"({"__metadata__":{"x":1}})", 0, -1, "__metadata__"},
        {"offsets_not_pair", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4, -1,
         "two integers"},
    };
    for (const BadCase& c : cases) {
        const std::string path = dir + "/" + c.name + ".safetensors";
        write_raw(path, c.header, c.data, c.header_len);
        const std::string msg = expect_error(path);
        EXPECT_NE(msg.find(c.expect), std::string::npos) << c.name << ": " << msg;
        EXPECT_NE(msg.find(c.name), std::string::npos)
            << c.name << ": error must name the file: " << msg;
    }
}

TEST(Safetensors, WriterIsAtomic) {
    const std::string dir = testing::temp_dir();
    const std::string path = dir + "/out.safetensors";
    SafetensorsWriter w;
    w.add("a", testing::random_uniform({2}, 4));
    w.write(path);
    const auto before = fs::file_size(path);
    // A stream whose producer fails half way must leave the previous file untouched and no
    // temporary.
    std::vector<StreamedTensor> ts = {
        {"x", DType::f32, {1000}, [](void*) {}},
        {"y", DType::f32, {4}, [](void*) { fail("producer failed"); }}};
    EXPECT_THROW(write_safetensors_streamed(path, ts), Error);
    EXPECT_EQ(fs::file_size(path), before);
    int files = 0;
    for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
    EXPECT_EQ(files, 1);
    SafetensorsWriter dup;
    dup.add("a", testing::random_uniform({2}, 5));
    EXPECT_THROW(dup.add("a", testing::random_uniform({2}, 5)), Error);
    EXPECT_THROW(w.write(dir + "/no_such_folder/x.safetensors"), Error);
}

TEST(Safetensors, ReadsFixtureCheckpoint) {
    SafetensorsReader r =
        SafetensorsReader::open(testing::shared_dir() + "/fixtures/olmo-hybrid-tiny");
    EXPECT_EQ(r.get("model.layers.0.linear_attn.q_conv1d.weight").shape,
              (std::vector<int64_t>{86, 1, 4}));
    EXPECT_EQ(r.get("lm_head.weight").dtype, DType::f32);
}

}  // namespace
}  // namespace olmo
