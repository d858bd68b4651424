// The BPE core of the tokenizer: the merge table, the merge loop (same order as HF tokenizers: the
// pair of lowest rank first, the leftmost one among equal ranks) and the per-thread cache of
// pre-tokens.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace olmo::bpe {

constexpr uint32_t kNoRank = UINT32_MAX;

struct MergeRule {
    uint32_t rank = kNoRank;  // index in the merges list; lower merges first
    int32_t id = -1;          // the merged token
};

// (left id, right id) -> rule, open addressing.
class MergeTable {
  public:
    void reserve(size_t rules);
    // Adds a rule; a later rule for the same pair replaces the earlier one (as HF's hash map does).
    void insert(int32_t left, int32_t right, MergeRule rule);
    MergeRule find(int32_t left, int32_t right) const {
        if (slots_.empty()) return {};
        const uint64_t key = pack(left, right);
        for (uint64_t i = slot_of(key);; i = (i + 1) & mask_) {
            const Slot& s = slots_[i];
            if (s.key == key) return s.rule;
            if (s.key == kEmpty) return {};
        }
    }
    size_t size() const { return size_; }

  private:
    struct Slot {
        uint64_t key;
        MergeRule rule;
    };
    static constexpr uint64_t kEmpty = ~uint64_t(0);
    static uint64_t pack(int32_t a, int32_t b) {
        return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
    }
    uint64_t slot_of(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
    void grow();
    std::vector<Slot> slots_;
    uint64_t mask_ = 0;
    int shift_ = 64;
    size_t size_ = 0;
};

// Reusable buffers of the merge loops.
struct Scratch {
    std::vector<uint32_t> ranks;
    std::vector<int32_t> merged;
    struct Node {
        int32_t id, prev, next;
    };
    std::vector<Node> nodes;
    struct Candidate {
        uint32_t rank;
        int32_t pos;
        int32_t id;
    };
    std::vector<Candidate> heap;
};

// Merges `symbols` in place (on return they are the tokens). Picks the loop by length.
void merge(const MergeTable& table, std::vector<int32_t>& symbols, Scratch& scratch);
// The two loops, exposed so that tests can check that they agree: a scan of all pairs per merge
// (fast for short words) and a priority queue over a linked list (for long ones).
void merge_scan(const MergeTable& table, std::vector<int32_t>& symbols, Scratch& scratch);
void merge_heap(const MergeTable& table, std::vector<int32_t>& symbols, Scratch& scratch);

// 64-bit hash of a short byte string.
inline uint64_t hash_bytes(std::string_view s) {
    constexpr uint64_t k = 0x9E3779B97F4A7C15ull;
    const char* p = s.data();
    size_t n = s.size();
    uint64_t h = k ^ (uint64_t(n) * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        h = (h ^ v) * k;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t v = 0;
        std::memcpy(&v, p, n);
        h = (h ^ v) * k;
        h ^= h >> 29;
    }
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 32);
}

// Pre-token bytes -> token ids, for one thread. Holds at most max_entries words of at most kMaxKey
// bytes; the table starts small and doubles; when full it starts again empty.
class WordCache {
  public:
    static constexpr size_t kMaxKey = 128;
    explicit WordCache(size_t max_entries = size_t(1) << 17) : max_entries_(max_entries) {}

    // The cached ids of `key` (hash = hash_bytes(key)), or nullptr; n receives their count.
    const int32_t* find(std::string_view key, uint64_t hash, uint32_t& n) const {
        if (slots_.empty()) return nullptr;
        const uint32_t tag = tag_of(hash);
        for (uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
            const Slot& s = slots_[i];
            if (s.key_len == 0) return nullptr;
            if (s.tag == tag && s.key_len == key.size() &&
                std::memcmp(keys_.data() + s.key_off, key.data(), key.size()) == 0) {
                n = s.n_ids;
                return ids_.data() + s.ids_off;
            }
        }
    }
    // Caches ids for a key of 1..kMaxKey bytes that is not cached yet.
    void insert(std::string_view key, uint64_t hash, const int32_t* ids, uint32_t n);
    size_t size() const { return size_; }
    void clear();

  private:
    struct Slot {
        uint32_t tag;  // high bits of the hash
        uint32_t key_off;
        uint32_t ids_off;
        uint16_t key_len;  // 0 = empty slot
        uint16_t n_ids;
    };
    static uint32_t tag_of(uint64_t hash) { return uint32_t(hash >> 32); }
    void place(const Slot& s, uint64_t hash);
    void rehash(size_t capacity);
    size_t max_entries_;
    size_t size_ = 0;
    uint64_t mask_ = 0;
    std::vector<Slot> slots_;
    std::string keys_;
    std::vector<int32_t> ids_;
};

}  // namespace olmo::bpe
