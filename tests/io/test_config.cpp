// HF config parsing: the released 7B configs, the fixtures, RoPE variants, and errors naming the
// key.
#include <cmath>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "testing.h"

namespace olmo {
namespace {

using json = nlohmann::json;

json tiny_hybrid() {
    return json::parse(R"({
      "model_type": "olmo_hybrid", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
      "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
      "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 8,
      "linear_value_head_dim": 16, "rope_parameters": null})");
}

std::string error_of(const json& j) {
    try {
        ModelConfig::from_json(j, "cfg");
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error for " << j.dump();
    return "";
}

TEST(Config, Released7BHybrid) {
    ModelConfig c = ModelConfig::from_file(testing::shared_dir() + "/configs/olmo-hybrid-7b.json");
    EXPECT_EQ(c.model_type, ModelType::olmo_hybrid);
    EXPECT_EQ(c.hidden_size, 3840);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.num_gdn_layers(), 24);
    EXPECT_EQ(c.num_attention_layers(), 8);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(c.is_attention(i), i % 4 == 3);
    EXPECT_FALSE(c.rope_full.enabled);
    EXPECT_EQ(c.key_dim(), 2880);
    EXPECT_EQ(c.value_dim(), 5760);
    EXPECT_TRUE(c.linear_allow_neg_eigval);
    EXPECT_TRUE(c.is_eos(100257));
}

TEST(Config, Olmo3YarnAndSliding) {
    ModelConfig c = ModelConfig::from_file(testing::shared_dir() + "/configs/olmo3-7b.json");
    EXPECT_EQ(c.model_type, ModelType::olmo3);
    EXPECT_EQ(c.sliding_window, 4096);
    EXPECT_EQ(c.window_for(0), 4096);
    EXPECT_EQ(c.window_for(3), 0);
    EXPECT_EQ(c.rope_full.rope_type, "yarn");
    EXPECT_EQ(c.rope_sliding.rope_type, "default");
    EXPECT_NEAR(c.rope_full.attention_scaling(), 1.2079441541679836, 1e-7);
    EXPECT_EQ(c.rope_sliding.attention_scaling(), 1.0f);
    // Spec §10.6, computed here in double: frequencies below the correction range are divided by
    // the factor, those above keep their value, the ramp blends in between.
    const std::vector<float> inv = c.rope_full.inv_freq(128);
    const double theta = 500000, d = 128, L0 = 8192, f = 8;
    auto corr = [&](double n) { return d * std::log(L0 / (2 * M_PI * n)) / (2 * std::log(theta)); };
    const double lo = std::max(std::floor(corr(32)), 0.0), hi = std::min(std::ceil(corr(1)), d - 1);
    for (int i = 0; i < 64; ++i) {
        const double base = std::pow(theta, -2.0 * i / d);
        const double r = std::clamp((i - lo) / (hi - lo), 0.0, 1.0);
        const double expect = (base / f) * r + base * (1 - r);
        EXPECT_NEAR(inv[i] / expect, 1.0, 1e-6) << i;
    }
}

TEST(Config, Fixtures) {
    ModelConfig h = ModelConfig::from_file(testing::shared_dir() + "/fixtures/olmo-hybrid-tiny");
    EXPECT_FALSE(h.rope_full.enabled);
    EXPECT_EQ(h.conv_dim(), 256);
    ModelConfig o =
        ModelConfig::from_file(testing::shared_dir() + "/fixtures/olmo3-tiny/config.json");
    EXPECT_TRUE(o.rope_full.enabled && o.rope_sliding.enabled);
    EXPECT_EQ(o.rope_full.rope_theta, 500000.0);
    EXPECT_EQ(o.sliding_window, 16);
}

TEST(Config, RopeSpellingsAndDefaults) {
    json j = tiny_hybrid();
    EXPECT_FALSE(ModelConfig::from_json(j).rope_full.enabled);
    j["rope_parameters"] = {{"rope_theta", nullptr}};
    EXPECT_FALSE(ModelConfig::from_json(j).rope_full.enabled);
    j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
    ModelConfig c = ModelConfig::from_json(j);
    EXPECT_TRUE(c.rope_full.enabled);
    EXPECT_EQ(c.rope_full.rope_theta, 10000.0);
    // Legacy keys: rope_theta + rope_scaling (applies to full-attention layers only).
    json legacy = tiny_hybrid();
    legacy.erase("rope_parameters");
    legacy["model_type"] = "olmo3";
    legacy.erase("linear_num_key_heads");
    legacy["rope_theta"] = 500000.0;
    legacy["rope_scaling"] = {
        {"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 1024}};
    legacy["sliding_window"] = 8;
    c = ModelConfig::from_json(legacy);
    EXPECT_EQ(c.rope_full.rope_type, "yarn");
    EXPECT_NEAR(c.rope_full.attention_factor, 0.1 * std::log(4.0) + 1, 1e-12);
    EXPECT_EQ(c.rope_sliding.rope_type, "default");
    EXPECT_EQ(c.layer_types[0], LayerType::sliding_attention);  // HF default pattern
    EXPECT_EQ(c.layer_types[3], LayerType::full_attention);
    // Hybrid default pattern and GVA.
    c = ModelConfig::from_json(tiny_hybrid());
    EXPECT_EQ(c.layer_types[2], LayerType::linear_attention);
    EXPECT_EQ(c.layer_types[3], LayerType::full_attention);
    EXPECT_EQ(c.key_dim(), 16);
    EXPECT_EQ(c.value_dim(), 64);
}

TEST(Config, UnsupportedValuesNameTheKey) {
    json j = tiny_hybrid();
    j["model_type"] = "llama";
    EXPECT_NE(error_of(j).find("unsupported model_type \"llama\""), std::string::npos);
    j = tiny_hybrid();
    j["layer_types"] = {"full_attention"};
    EXPECT_NE(error_of(j).find("layer_types"), std::string::npos);
    j = tiny_hybrid();
    j["layer_types"] = {"linear_attention", "mamba", "linear_attention", "full_attention"};
    EXPECT_NE(error_of(j).find("\"mamba\""), std::string::npos);
    j = tiny_hybrid();
    j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 10000}};
    EXPECT_NE(error_of(j).find("rope_type \"llama3\""), std::string::npos);
    j = tiny_hybrid();
    j["attention_bias"] = true;
    EXPECT_NE(error_of(j).find("attention_bias"), std::string::npos);
    j = tiny_hybrid();
    j["hidden_act"] = "gelu";
    EXPECT_NE(error_of(j).find("hidden_act"), std::string::npos);
    j = tiny_hybrid();
    j["linear_num_value_heads"] = 3;
    EXPECT_NE(error_of(j).find("linear_num_value_heads"), std::string::npos);
    j = tiny_hybrid();
    j["num_key_value_heads"] = 3;
    EXPECT_NE(error_of(j).find("num_key_value_heads"), std::string::npos);
    j = tiny_hybrid();
    j.erase("vocab_size");
    EXPECT_NE(error_of(j).find("\"vocab_size\" is missing"), std::string::npos);
    j = tiny_hybrid();
    j["hidden_size"] = "32";
    EXPECT_NE(error_of(j).find("hidden_size"), std::string::npos);
    j = tiny_hybrid();
    j["layer_types"] = {"linear_attention", "sliding_attention", "linear_attention",
                        "full_attention"};
    EXPECT_NE(error_of(j).find("\"sliding_attention\" for model_type olmo_hybrid"),
              std::string::npos);
    j = tiny_hybrid();
    j["rope_parameters"] = {{"full_attention", {{"rope_theta", 10000}}}};
    EXPECT_NE(error_of(j).find("rope_parameters"), std::string::npos);
    json o3 = tiny_hybrid();
    o3["model_type"] = "olmo3";
    o3["rope_parameters"] = {{"rope_theta", 10000.0}};
    o3["layer_types"] = {"sliding_attention", "sliding_attention", "sliding_attention",
                         "full_attention"};
    EXPECT_NE(error_of(o3).find("sliding_window"), std::string::npos);
    EXPECT_NE(error_of(json::array()).find("JSON object"), std::string::npos);
}

}  // namespace
}  // namespace olmo
