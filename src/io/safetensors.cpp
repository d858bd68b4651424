#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "io/atomic_file.h"

namespace olmo {

namespace fs = std::filesystem;
using json = nlohmann::json;

DType dtype_from_safetensors(const std::string& s, const std::string& context) {
    if (s == "F32") return DType::f32;
    if (s == "BF16") return DType::bf16;
    if (s == "F16") return DType::f16;
    if (s == "F64") return DType::f64;
    if (s == "I64") return DType::i64;
    if (s == "I32") return DType::i32;
    if (s == "U8") return DType::u8;
    fail("[safetensors] ", context, ": unsupported dtype \"", s,
         "\" (supported: F32, BF16, F16, F64, I64, I32, U8)");
}

const char* dtype_to_safetensors(DType t) {
    switch (t) {
        case DType::f32:
            return "F32";
        case DType::bf16:
            return "BF16";
        case DType::f16:
            return "F16";
        case DType::f64:
            return "F64";
        case DType::i64:
            return "I64";
        case DType::i32:
            return "I32";
        case DType::u8:
            return "U8";
    }
    return "?";
}

int64_t SafetensorsEntry::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

namespace {

std::shared_ptr<void> map_file(const std::string& path, size_t& size) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("[safetensors] cannot open ", path, ": ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        fail("[safetensors] cannot stat ", path, ": ", std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("[safetensors] ", path, ": not a regular file");
    }
    size = size_t(st.st_size);
    if (size == 0) {
        ::close(fd);
        fail("[safetensors] ", path, ": empty file (expected an 8-byte header length)");
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) fail("[safetensors] cannot map ", path, ": ", std::strerror(errno));
    const size_t len = size;
    return std::shared_ptr<void>(p, [len](void* q) { ::munmap(q, len); });
}

}  // namespace

SafetensorsReader SafetensorsReader::open(const std::string& path_in) {
    SafetensorsReader r;
    fs::path path(path_in);
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        if (fs::exists(path / "model.safetensors.index.json")) {
            path = path / "model.safetensors.index.json";
        } else if (fs::exists(path / "model.safetensors")) {
            path = path / "model.safetensors";
        } else {
            fail("[safetensors] ", path_in,
                 ": no model.safetensors or model.safetensors.index.json in this folder");
        }
    } else if (!fs::exists(path, ec)) {
        fail("[safetensors] ", path_in, ": no such file");
    }
    r.source_ = path.string();
    const std::string fname = path.filename().string();
    if (fname.size() >= 5 && fname.substr(fname.size() - 5) == ".json") {
        std::ifstream in(path);
        if (!in) fail("[safetensors] cannot read ", path.string());
        json idx;
        try {
            idx = json::parse(in);
        } catch (const json::exception& e) {
            fail("[safetensors] ", path.string(), ": invalid JSON: ", e.what());
        }
        if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
            fail("[safetensors] ", path.string(),
                 ": expected an object with a \"weight_map\" object");
        std::map<std::string, std::vector<std::string>> by_file;
        for (auto& [name, file] : idx["weight_map"].items()) {
            if (!file.is_string())
                fail("[safetensors] ", path.string(), ": weight_map[\"", name,
                     "\"] is not a string");
            const std::string f = file.get<std::string>();
            if (f.find('/') != std::string::npos || f == ".." || f.empty())
                fail("[safetensors] ", path.string(), ": weight_map[\"", name,
                     "\"] names a file outside the folder: \"", f, "\"");
            by_file[f].push_back(name);
        }
        if (by_file.empty()) fail("[safetensors] ", path.string(), ": weight_map is empty");
        for (auto& [file, names] : by_file) {
            const std::string shard = (path.parent_path() / file).string();
            const size_t before = r.entries_.size();
            r.add_file(shard);
            std::set<std::string> in_shard;
            for (size_t i = before; i < r.entries_.size(); ++i) in_shard.insert(r.entries_[i].name);
            for (auto& n : names)
                if (!in_shard.count(n))
                    fail("[safetensors] ", path.string(), ": tensor \"", n, "\" is mapped to ",
                         file, " but that file does not hold it");
        }
    } else {
        r.add_file(path.string());
    }
    return r;
}

SafetensorsReader SafetensorsReader::from_memory(const void* data, size_t size,
                                                 const std::string& label) {
    SafetensorsReader r;
    r.source_ = label;
    r.parse(static_cast<const unsigned char*>(data), size, label);
    return r;
}

void SafetensorsReader::add_file(const std::string& path) {
    size_t size = 0;
    auto mapping = map_file(path, size);
    mappings_.push_back(mapping);
    parse(static_cast<const unsigned char*>(mapping.get()), size, path);
}

void SafetensorsReader::parse(const unsigned char* base, size_t size, const std::string& label) {
    if (size < 8)
        fail("[safetensors] ", label, ": file is ", size,
             " bytes, shorter than the 8-byte header length");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
    if (header_len > size - 8)
        fail("[safetensors] ", label, ": header length ", header_len,
             " runs past the end of the file (", size, " bytes)");
    if (header_len > (uint64_t(100) << 20))
        fail("[safetensors] ", label, ": header length ", header_len, " exceeds the 100 MB limit");
    const char* hdr = reinterpret_cast<const char*>(base + 8);
    const unsigned char* data = base + 8 + header_len;
    const size_t data_len = size - 8 - header_len;

    // Reject duplicate top-level names, which a plain parse would silently collapse.
    std::set<std::string> seen;
    std::string duplicate;
    json h;
    try {
        h = json::parse(hdr, hdr + header_len,
                        [&](int depth, json::parse_event_t ev, json& parsed) {
                            if (depth == 1 && ev == json::parse_event_t::key) {
                                const std::string k = parsed.get<std::string>();
                                if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
                            }
                            return true;
                        });
    } catch (const json::exception& e) {
        fail("[safetensors] ", label, ": header is not valid JSON: ", e.what());
    }
    if (!duplicate.empty())
        fail("[safetensors] ", label, ": duplicate tensor name \"", duplicate, "\"");
    if (!h.is_object()) fail("[safetensors] ", label, ": header is not a JSON object");

    struct Range {
        size_t begin, end;
        std::string name;
    };
    std::vector<Range> ranges;
    for (auto& [name, v] : h.items()) {
        if (name == "__metadata__") {
            if (!v.is_object()) fail("[safetensors] ", label, ": __metadata__ is not an object");
            for (auto& [k, val] : v.items()) {
                if (!val.is_string())
                    fail("[safetensors] ", label, ": __metadata__[\"", k, "\"] is not a string");
                metadata_[k] = val.get<std::string>();
            }
            continue;
        }
        const std::string ctx = label + ": tensor \"" + name + "\"";
        if (!v.is_object()) fail("[safetensors] ", ctx, ": entry is not an object");
        if (!v.contains("dtype") || !v["dtype"].is_string())
            fail("[safetensors] ", ctx, ": missing or non-string \"dtype\"");
        if (!v.contains("shape") || !v["shape"].is_array())
            fail("[safetensors] ", ctx, ": missing or non-array \"shape\"");
        if (!v.contains("data_offsets") || !v["data_offsets"].is_array() ||
            v["data_offsets"].size() != 2)
            fail("[safetensors] ", ctx, ": \"data_offsets\" must be an array of two integers");
        SafetensorsEntry e;
        e.name = name;
        e.file = label;
        e.dtype = dtype_from_safetensors(v["dtype"].get<std::string>(), ctx);
        if (v["shape"].size() > size_t(kMaxDims))
            fail("[safetensors] ", ctx, ": ", v["shape"].size(), " dimensions (at most ", kMaxDims,
                 ")");
        unsigned __int128 count = 1;
        for (auto& d : v["shape"]) {
            if (!d.is_number_unsigned())
                fail("[safetensors] ", ctx, ": shape entries must be non-negative integers");
            const uint64_t dim = d.get<uint64_t>();
            if (dim > (uint64_t(1) << 40))
                fail("[safetensors] ", ctx, ": dimension ", dim, " is too large");
            e.shape.push_back(int64_t(dim));
            count *= dim;
            if (count > (unsigned __int128)(uint64_t(1) << 50))
                fail("[safetensors] ", ctx, ": too many elements");
        }
        auto& off = v["data_offsets"];
        if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            fail("[safetensors] ", ctx, ": data_offsets must be non-negative integers");
        const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
        if (b > en) fail("[safetensors] ", ctx, ": data_offsets [", b, ", ", en, "] are reversed");
        if (en > data_len)
            fail("[safetensors] ", ctx, ": data_offsets [", b, ", ", en,
                 "] run past the end of the data (", data_len, " bytes)");
        const uint64_t expect = uint64_t(count) * dtype_size(e.dtype);
        if (en - b != expect)
            fail("[safetensors] ", ctx, ": shape and dtype give ", expect,
                 " bytes but data_offsets span ", en - b);
        e.nbytes = size_t(expect);
        e.data = data + b;
        if (index_.count(name)) fail("[safetensors] ", ctx, ": defined in more than one file");
        ranges.push_back({size_t(b), size_t(en), name});
        index_[name] = entries_.size();
        entries_.push_back(std::move(e));
    }
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
        return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
    });
    // Sorted by start: a non-empty range overlaps an earlier one iff it starts before the furthest
    // end.
    size_t furthest = 0;
    const Range* owner = nullptr;
    for (const Range& r : ranges) {
        if (r.begin == r.end) continue;
        if (owner && r.begin < furthest)
            fail("[safetensors] ", label, ": tensors \"", owner->name, "\" and \"", r.name,
                 "\" overlap in the data buffer");
        if (r.end > furthest) {
            furthest = r.end;
            owner = &r;
        }
    }
}

const SafetensorsEntry* SafetensorsReader::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
}

const SafetensorsEntry& SafetensorsReader::get(const std::string& name) const {
    const SafetensorsEntry* e = find(name);
    if (!e) fail("[safetensors] ", source_, ": missing tensor \"", name, "\"");
    return *e;
}

void SafetensorsWriter::add(const std::string& name, const Tensor& t) {
    add_as(name, t, t.dtype);
}

void SafetensorsWriter::add_as(const std::string& name, const Tensor& t, DType dtype) {
    if (contains(name)) fail("[safetensors] writer: duplicate tensor name \"", name, "\"");
    Item it;
    it.name = name;
    it.dtype = dtype;
    it.shape = t.dims();
    it.nbytes = size_t(t.numel()) * dtype_size(dtype);
    it.bytes = allocate_bytes(Device::cpu, it.nbytes);
    if (dtype == t.dtype) {
        copy_tensor(Tensor(it.bytes.get(), dtype, Device::cpu, it.shape), t);
    } else {
        OwnedTensor f = to_host_f32(t);
        const float* src = f.f32();
        const int64_t n = t.numel();
        auto* dst16 = static_cast<uint16_t*>(it.bytes.get());
        switch (dtype) {
            case DType::f32:
                std::memcpy(it.bytes.get(), src, it.nbytes);
                break;
            case DType::bf16:
                for (int64_t i = 0; i < n; ++i) dst16[i] = f32_to_bf16(src[i]);
                break;
            case DType::f16:
                for (int64_t i = 0; i < n; ++i) dst16[i] = f32_to_f16(src[i]);
                break;
            default:
                fail("[safetensors] writer: cannot convert \"", name, "\" to ", dtype_name(dtype));
        }
    }
    items_.push_back(std::move(it));
}

bool SafetensorsWriter::contains(const std::string& name) const {
    return std::any_of(items_.begin(), items_.end(), [&](const Item& i) { return i.name == name; });
}

namespace {

size_t byte_count(DType dtype, const std::vector<int64_t>& shape) {
    size_t n = dtype_size(dtype);
    for (int64_t d : shape) n *= size_t(d);
    return n;
}

// Header JSON (padded to 8 bytes) for tensors laid out back to back in the given order.
std::string make_header(
    const std::vector<std::tuple<std::string, DType, std::vector<int64_t>>>& tensors,
    const std::map<std::string, std::string>& metadata) {
    json h = json::object();
    size_t offset = 0;
    std::set<std::string> names;
    for (const auto& [name, dtype, shape] : tensors) {
        if (!names.insert(name).second)
            fail("[safetensors] writer: duplicate tensor name \"", name, "\"");
        const size_t nbytes = byte_count(dtype, shape);
        h[name] = {{"dtype", dtype_to_safetensors(dtype)},
                   {"shape", shape},
                   {"data_offsets", {offset, offset + nbytes}}};
        offset += nbytes;
    }
    if (!metadata.empty()) h["__metadata__"] = metadata;
    std::string header = h.dump();
    while ((8 + header.size()) % 8) header.push_back(' ');
    return header;
}

void write_header(AtomicFile& out, const std::string& header) {
    const uint64_t n = header.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(n >> (8 * i));
    out.write(len, 8);
    out.write(header.data(), header.size());
}

}  // namespace

void SafetensorsWriter::write(const std::string& path) const {
    std::vector<std::tuple<std::string, DType, std::vector<int64_t>>> decl;
    for (const Item& it : items_) decl.emplace_back(it.name, it.dtype, it.shape);
    AtomicFile out(path);
    write_header(out, make_header(decl, metadata_));
    for (const Item& it : items_) out.write(it.bytes.get(), it.nbytes);
    out.commit();
}

void write_safetensors_streamed(const std::string& path, const std::vector<StreamedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata) {
    std::vector<std::tuple<std::string, DType, std::vector<int64_t>>> decl;
    size_t largest = 0;
    for (const StreamedTensor& t : tensors) {
        decl.emplace_back(t.name, t.dtype, t.shape);
        largest = std::max(largest, byte_count(t.dtype, t.shape));
    }
    AtomicFile out(path);
    write_header(out, make_header(decl, metadata));
    std::shared_ptr<void> buffer = allocate_bytes(Device::cpu, largest);
    for (const StreamedTensor& t : tensors) {
        t.fill(buffer.get());
        out.write(buffer.get(), byte_count(t.dtype, t.shape));
    }
    out.commit();
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
    AtomicFile out(path);
    out.write(bytes.data(), bytes.size());
    out.commit();
}

}  // namespace olmo
