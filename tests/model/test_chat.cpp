// A conversation kept in the state equals the same conversation fed from scratch.
#include "infer/chat.h"
#include "model_fixtures.h"

namespace olmo {
namespace {

std::vector<int32_t> bytes(const std::string& s) {
    return std::vector<int32_t>(reinterpret_cast<const unsigned char*>(s.data()),
                                reinterpret_cast<const unsigned char*>(s.data()) + s.size());
}

TEST(Chat, TurnsContinueTheStateExactly) {
    Model model = Model::load(testing::shared_dir() +
                              "/fixtures/olmo-hybrid-tiny");  // vocab 1024 ≥ 256 bytes
    ChatOptions opt;
    opt.max_new_tokens = 7;
    opt.system = "be brief";
    const std::vector<int32_t> stop = {300};
    ChatSession chat(model, bytes, stop, opt);
    const std::vector<int32_t> r1 = chat.turn("hello", nullptr);
    const std::vector<int32_t> r2 = chat.turn("tell me more", nullptr);
    ASSERT_FALSE(r2.empty());
    // The history as one sequence: system + turn 1 + reply 1 closed, then turn 2, fed at once.
    std::vector<int32_t> history = bytes(
        "<|im_start|>system\nbe "
        "brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n");
    history.insert(history.end(), r1.begin(), r1.end());
    const std::vector<int32_t> close =
        bytes("<|im_end|>\n<|im_start|>user\ntell me more<|im_end|>\n<|im_start|>assistant\n");
    history.insert(history.end(), close.begin(), close.end());
    Session fresh(model, 1, 4096);
    GenerateOptions g;
    g.max_new_tokens = opt.max_new_tokens;
    g.ignore_eos = true;
    const auto again = fresh.generate({fresh.feed(0, history)}, g);
    EXPECT_EQ(again[0], r2);
    chat.reset();
    EXPECT_EQ(chat.tokens(), 0);
    EXPECT_EQ(chat.turn("hello", nullptr),
              ChatSession(model, bytes, stop, opt).turn("hello", nullptr));
}

TEST(Chat, FullContextIsAClearError) {
    Model model = Model::load(testing::shared_dir() + "/fixtures/olmo-hybrid-tiny");
    ChatOptions opt;
    opt.max_context = 40;
    ChatSession chat(model, bytes, {300}, opt);
    EXPECT_THROW(chat.turn(std::string(60, 'x'), nullptr), Error);
}

}  // namespace
}  // namespace olmo
