#include "tokenizer/bpe.h"

#include <algorithm>
#include <bit>

#include "core/check.h"

namespace olmo::bpe {

void MergeTable::reserve(size_t rules) {
    size_t cap = 16;
    while (cap < rules * 2) cap *= 2;
    if (cap <= slots_.size()) return;
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{kEmpty, {}});
    mask_ = cap - 1;
    shift_ = 64 - std::countr_zero(cap);
    size_ = 0;
    for (const Slot& s : old)
        if (s.key != kEmpty) insert(int32_t(s.key >> 32), int32_t(uint32_t(s.key)), s.rule);
}

void MergeTable::grow() {
    reserve(std::max<size_t>(size_ + 1, slots_.size()));
}

void MergeTable::insert(int32_t left, int32_t right, MergeRule rule) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    const uint64_t key = pack(left, right);
    for (uint64_t i = slot_of(key);; i = (i + 1) & mask_) {
        Slot& s = slots_[i];
        if (s.key == key) {
            s.rule = rule;
            return;
        }
        if (s.key == kEmpty) {
            s = Slot{key, rule};
            ++size_;
            return;
        }
    }
}

void merge(const MergeTable& table, std::vector<int32_t>& symbols, Scratch& scratch) {
    if (symbols.size() < 2) return;
    if (symbols.size() <= 48)
        merge_scan(table, symbols, scratch);
    else
        merge_heap(table, symbols, scratch);
}

void merge_scan(const MergeTable& table, std::vector<int32_t>& symbols, Scratch& scratch) {
    size_t n = symbols.size();
    if (n < 2) return;
    // Pair j is (sym[j], sym[j + 1]); ranks[j] its rank (kNoRank if it does not merge).
    int32_t* sym = symbols.data();
    scratch.ranks.resize(n - 1);
    scratch.merged.resize(n - 1);
    uint32_t* ranks = scratch.ranks.data();
    int32_t* merged = scratch.merged.data();
    for (size_t j = 0; j + 1 < n; ++j) {
        const MergeRule r = table.find(sym[j], sym[j + 1]);
        ranks[j] = r.rank;
        merged[j] = r.id;
    }
    while (n > 1) {
        uint32_t best = kNoRank;
        size_t at = 0;
        for (size_t j = 0; j + 1 < n; ++j) {
            if (ranks[j] < best) {
                best = ranks[j];
                at = j;
            }
        }
        if (best == kNoRank) break;
        sym[at] = merged[at];
        // Drop symbol at + 1 and pair at; the pairs after it move down by one.
        std::memmove(sym + at + 1, sym + at + 2, (n - at - 2) * sizeof(int32_t));
        std::memmove(ranks + at, ranks + at + 1, (n - at - 2) * sizeof(uint32_t));
        std::memmove(merged + at, merged + at + 1, (n - at - 2) * sizeof(int32_t));
        --n;
        if (at > 0) {
            const MergeRule r = table.find(sym[at - 1], sym[at]);
            ranks[at - 1] = r.rank;
            merged[at - 1] = r.id;
        }
        if (at + 1 < n) {
            const MergeRule r = table.find(sym[at], sym[at + 1]);
            ranks[at] = r.rank;
            merged[at] = r.id;
        }
    }
    symbols.resize(n);
}

namespace {
// Min-heap order on (rank, position).
struct Later {
    bool operator()(const Scratch::Candidate& a, const Scratch::Candidate& b) const {
        return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    }
};
}  // namespace

void merge_heap(const MergeTable& table, std::vector<int32_t>& symbols, Scratch& scratch) {
    const size_t n = symbols.size();
    if (n < 2) return;
    OLMO_CHECK(n < size_t(INT32_MAX), "word too long: ", n);
    auto& nodes = scratch.nodes;
    auto& heap = scratch.heap;
    nodes.resize(n);
    heap.clear();
    for (size_t i = 0; i < n; ++i)
        nodes[i] = {symbols[i], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1};
    for (size_t i = 0; i + 1 < n; ++i) {
        const MergeRule r = table.find(symbols[i], symbols[i + 1]);
        if (r.rank != kNoRank) heap.push_back({r.rank, int32_t(i), r.id});
    }
    std::make_heap(heap.begin(), heap.end(), Later{});
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), Later{});
        const Scratch::Candidate top = heap.back();
        heap.pop_back();
        Scratch::Node& left = nodes[size_t(top.pos)];
        if (left.id < 0 || left.next < 0) continue;  // merged away, or now the last symbol
        const Scratch::Node right = nodes[size_t(left.next)];
        // A stale entry: the pair at this position has changed since it was queued.
        if (table.find(left.id, right.id).id != top.id) continue;
        nodes[size_t(left.next)].id = -1;
        left.id = top.id;
        left.next = right.next;
        if (right.next >= 0) nodes[size_t(right.next)].prev = top.pos;
        if (left.prev >= 0) {
            const MergeRule r = table.find(nodes[size_t(left.prev)].id, left.id);
            if (r.rank != kNoRank) {
                heap.push_back({r.rank, left.prev, r.id});
                std::push_heap(heap.begin(), heap.end(), Later{});
            }
        }
        if (left.next >= 0) {
            const MergeRule r = table.find(left.id, nodes[size_t(left.next)].id);
            if (r.rank != kNoRank) {
                heap.push_back({r.rank, top.pos, r.id});
                std::push_heap(heap.begin(), heap.end(), Later{});
            }
        }
    }
    size_t out = 0;
    for (int32_t i = 0; i >= 0; i = nodes[size_t(i)].next) symbols[out++] = nodes[size_t(i)].id;
    symbols.resize(out);
}

void WordCache::place(const Slot& s, uint64_t hash) {
    uint64_t i = hash & mask_;
    while (slots_[i].key_len != 0) i = (i + 1) & mask_;
    slots_[i] = s;
}

void WordCache::rehash(size_t capacity) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    for (const Slot& s : old)
        if (s.key_len != 0)
            place(s, hash_bytes(std::string_view(keys_.data() + s.key_off, s.key_len)));
}

void WordCache::insert(std::string_view key, uint64_t hash, const int32_t* ids, uint32_t n) {
    OLMO_CHECK(!key.empty() && key.size() <= kMaxKey && n <= key.size(), "bad cache entry");
    if (size_ >= max_entries_) clear();
    if ((size_ + 1) * 2 > slots_.size()) rehash(std::max<size_t>(1024, slots_.size() * 2));
    place(Slot{tag_of(hash), uint32_t(keys_.size()), uint32_t(ids_.size()), uint16_t(key.size()),
               uint16_t(n)},
          hash);
    keys_.append(key);
    ids_.insert(ids_.end(), ids, ids + n);
    ++size_;
}

void WordCache::clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    ids_.clear();
    size_ = 0;
}

}  // namespace olmo::bpe
