// Token shards and the data loader: round trip, errors, deterministic shuffling, held-out split,
// resume.
#include <filesystem>
#include <fstream>

#include "testing.h"
#include "train/data.h"

namespace olmo {
namespace {

namespace fs = std::filesystem;

std::string write_shard(const std::string& dir, const std::string& name, int64_t docs,
                        int64_t doc_len, int32_t base) {
    const std::string path = dir + "/" + name;
    TokenShardWriter w(path, 999, 1000);
    for (int64_t d = 0; d < docs; ++d) {
        std::vector<int32_t> t(doc_len);
        for (int64_t i = 0; i < doc_len; ++i) t[i] = int32_t((base + d * doc_len + i) % 900);
        w.add_document(t);
    }
    w.finish();
    return path;
}

TEST(TokenShards, RoundTripAcrossShards) {
    const std::string dir = testing::temp_dir();
    write_shard(dir, "a.tok", 3, 10, 0);
    write_shard(dir, "b.tok", 2, 7, 500);
    const ShardInfo info = read_shard_info(dir + "/a.tok");
    EXPECT_EQ(info.num_tokens, 33u);  // 3 documents of 10 tokens + EOS each
    EXPECT_EQ(info.num_documents, 3u);
    EXPECT_EQ(info.eos_id, 999u);
    TokenStream s = TokenStream::open({dir});
    EXPECT_EQ(s.size(), 33u + 16u);
    std::vector<int32_t> all(s.size());
    s.read(0, s.size(), all.data());
    EXPECT_EQ(all[0], 0);
    EXPECT_EQ(all[10], 999);
    EXPECT_EQ(all[33], 500);
    std::vector<int32_t> mid(5);
    s.read(30, 5, mid.data());  // crosses the shard boundary
    EXPECT_EQ(mid[2], 999);
    EXPECT_EQ(mid[3], 500);
}

TEST(TokenShards, BadFilesAreErrors) {
    const std::string dir = testing::temp_dir();
    std::ofstream(dir + "/junk.tok")
        << "not a shard at all, but long enough to hold a header.............";
    EXPECT_THROW(TokenStream::open({dir + "/junk.tok"}), Error);
    const std::string good = write_shard(dir, "g.tok", 1, 20, 0);
    fs::resize_file(good, fs::file_size(good) - 4);  // truncated
    EXPECT_THROW(TokenStream::open({good}), Error);
    EXPECT_THROW(TokenStream::open({dir + "/missing.tok"}), Error);
    const std::string empty_dir = testing::temp_dir();
    EXPECT_THROW(TokenStream::open({empty_dir}), Error);
    TokenShardWriter w(dir + "/v.tok", 5, 10);
    EXPECT_THROW(w.add_document({3, 12}), Error);  // outside the vocabulary
}

TEST(TokenShards, WriterLeavesNothingWhenAbandoned) {
    const std::string dir = testing::temp_dir();
    {
        TokenShardWriter w(dir + "/x.tok", 1, 10);
        w.add_document({1, 2, 3});
    }  // never finished
    EXPECT_FALSE(fs::exists(dir + "/x.tok"));
    EXPECT_TRUE(fs::is_empty(dir));
}

TEST(DataLoader, RowsShuffleHeldOutAndResume) {
    const std::string dir = testing::temp_dir();
    write_shard(dir, "a.tok", 20, 50, 0);  // 1020 tokens
    TokenStream s = TokenStream::open({dir});
    const int64_t T = 16, B = 4;
    DataLoader a(s, T, B, 7, 0.1);
    EXPECT_EQ(a.heldout_rows(), (102 - 1) / T);
    EXPECT_EQ(a.train_rows(), (918 - 1) / T);
    std::vector<int32_t> ids(B * T), tg(B * T);
    // Targets are the inputs shifted by one, from the stream itself.
    a.next(ids.data(), tg.data());
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t + 1 < T; ++t) EXPECT_EQ(tg[b * T + t], ids[b * T + t + 1]);
    // Every training row appears exactly once per epoch; the held-out region is never served.
    DataLoader c(s, T, 1, 7, 0.1);
    std::vector<int> seen(a.train_rows(), 0);
    std::vector<int32_t> one(T), one_t(T);
    for (int64_t i = 0; i < c.train_rows(); ++i) {
        const LoaderPosition p = c.position();
        c.next(one.data(), one_t.data());
        std::vector<int32_t> row(T + 1);
        bool found = false;
        for (int64_t r = 0; r < c.train_rows() && !found; ++r) {
            s.read(uint64_t(r * T), T + 1, row.data());
            if (std::equal(one.begin(), one.end(), row.begin())) {
                ++seen[r];
                found = true;
            }
        }
        EXPECT_TRUE(found) << "row " << i << " at epoch " << p.epoch;
    }
    for (int v : seen) EXPECT_EQ(v, 1);
    // Resume: a loader set to a saved position continues identically, across an epoch boundary.
    DataLoader x(s, T, B, 7, 0.1), y(s, T, B, 7, 0.1);
    for (int i = 0; i < 17; ++i) x.next(ids.data(), tg.data());
    y.set_position(x.position());
    for (int i = 0; i < 30; ++i) {
        std::vector<int32_t> i1(B * T), t1(B * T), i2(B * T), t2(B * T);
        x.next(i1.data(), t1.data());
        y.next(i2.data(), t2.data());
        ASSERT_EQ(i1, i2) << i;
        ASSERT_EQ(t1, t2);
    }
    EXPECT_GE(x.position().epoch, 1);
    // Another seed gives another order.
    DataLoader z(s, T, B, 8, 0.1);
    std::vector<int32_t> z1(B * T), zt(B * T), a1(B * T);
    DataLoader a2(s, T, B, 7, 0.1);
    z.next(z1.data(), zt.data());
    a2.next(a1.data(), zt.data());
    EXPECT_NE(z1, a1);
    EXPECT_THROW(DataLoader(s, 2000, 1, 0, 0.1), Error);
}

}  // namespace
}  // namespace olmo
