// Element types, devices and host-side bf16/f16 conversion.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace olmo {

enum class DType : uint8_t { f32, f16, bf16, f64, i64, i32, u8 };
enum class Device : uint8_t { cpu, cuda };

constexpr size_t dtype_size(DType t) {
    switch (t) {
        case DType::f32:
            return 4;
        case DType::f16:
            return 2;
        case DType::bf16:
            return 2;
        case DType::f64:
            return 8;
        case DType::i64:
            return 8;
        case DType::i32:
            return 4;
        case DType::u8:
            return 1;
    }
    return 0;
}

constexpr std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::f32:
            return "f32";
        case DType::f16:
            return "f16";
        case DType::bf16:
            return "bf16";
        case DType::f64:
            return "f64";
        case DType::i64:
            return "i64";
        case DType::i32:
            return "i32";
        case DType::u8:
            return "u8";
    }
    return "?";
}

constexpr std::string_view device_name(Device d) {
    return d == Device::cpu ? "cpu" : "cuda";
}

// bf16 is the upper half of an IEEE f32; conversion rounds to nearest even, NaN stays NaN.
inline float bf16_to_f32(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

// IEEE half precision, used only when reading or writing f16 checkpoints.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace olmo
