// A conversation kept in the model's state: each user turn is formatted as ChatML
// (<|im_start|>role\n…<|im_end|>\n), fed on top of everything said before (no re-encoding of the
// history), and the assistant's reply is generated until <|im_end|>, EOS or a token budget; the
// turn is then closed in the state so the next one continues from it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "infer/generate.h"

namespace olmo {

struct ChatOptions {
    int64_t max_context = 4096;    // tokens the conversation may hold
    int64_t max_new_tokens = 512;  // per reply
    SamplingParams sampling;
    std::string system;  // optional system message, sent before the first user turn
};

class ChatSession {
  public:
    using Encode = std::function<std::vector<int32_t>(const std::string&)>;
    // stop_ids: tokens that end a reply (the id of <|im_end|> and EOS), none of which is printed.
    ChatSession(const Model& model, Encode encode, std::vector<int32_t> stop_ids,
                ChatOptions options);

    // Sends a user message and generates the reply; on_token sees every reply token (stop tokens
    // excluded). Returns the reply's tokens.
    std::vector<int32_t> turn(const std::string& user,
                              const std::function<void(int32_t)>& on_token);
    // Forgets the conversation.
    void reset();
    int64_t tokens() const { return session_.length(0); }

  private:
    void feed(const std::vector<int32_t>& ids);
    Encode encode_;
    std::vector<int32_t> stop_;
    ChatOptions opt_;
    Session session_;
    std::vector<float> last_logits_;
    bool started_ = false;
};

}  // namespace olmo
