#include "infer/chat.h"

#include <algorithm>

namespace olmo {

ChatSession::ChatSession(const Model& model, Encode encode, std::vector<int32_t> stop_ids,
                         ChatOptions options)
    : encode_(std::move(encode)),
      stop_(std::move(stop_ids)),
      opt_(std::move(options)),
      session_(model, 1, opt_.max_context) {
    if (opt_.max_context < 8) fail("[chat] --max-context must be at least 8 tokens");
    validate(opt_.sampling);
}

void ChatSession::reset() {
    session_.state().reset();
    last_logits_.clear();
    started_ = false;
}

void ChatSession::feed(const std::vector<int32_t>& ids) {
    if (ids.empty()) return;
    if (session_.length(0) + int64_t(ids.size()) > opt_.max_context)
        fail("[chat] the conversation would exceed --max-context (", opt_.max_context,
             " tokens): /reset to start over");
    last_logits_ = session_.feed(0, ids);
}

std::vector<int32_t> ChatSession::turn(const std::string& user,
                                       const std::function<void(int32_t)>& on_token) {
    std::string text;
    if (!started_ && !opt_.system.empty())
        text += "<|im_start|>system\n" + opt_.system + "<|im_end|>\n";
    text += "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n";
    feed(encode_(text));
    started_ = true;
    const int64_t room = opt_.max_context - session_.length(0) - 2;  // keep room to close the turn
    if (room < 1)
        fail("[chat] the conversation is full (", opt_.max_context,
             " tokens): /reset to start over");
    GenerateOptions g;
    g.max_new_tokens = std::min(opt_.max_new_tokens, room);
    g.sampling = opt_.sampling;
    g.ignore_eos = true;  // stopping is decided here, on the stop ids
    std::vector<int32_t> reply;
    int32_t last = -1;
    g.on_token = [&](int64_t, int32_t tok) {
        last = tok;
        if (std::find(stop_.begin(), stop_.end(), tok) != stop_.end()) return false;
        reply.push_back(tok);
        if (on_token) on_token(tok);
        return true;
    };
    session_.generate({last_logits_}, g);
    // The last sampled token was not fed yet; close the assistant turn in the state.
    std::vector<int32_t> tail;
    if (last >= 0) tail.push_back(last);
    if (last < 0 || std::find(stop_.begin(), stop_.end(), last) == stop_.end()) {
        const std::vector<int32_t> end = encode_("<|im_end|>");
        tail.insert(tail.end(), end.begin(), end.end());
    }
    const std::vector<int32_t> nl = encode_("\n");
    tail.insert(tail.end(), nl.begin(), nl.end());
    feed(tail);
    return reply;
}

}  // namespace olmo
