#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace olmo {

std::string format_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
    std::string out;
    for (size_t i = 0; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role.empty() || m.role.find('\n') != std::string::npos ||
            m.role.find("<|") != std::string::npos)
            fail("[tokenizer] format_chat: message ", i,
                 ": expected a role that is non-empty, without newlines and without \"<|\", got \"",
                 m.role, "\"");
        out += "<|im_start|>";
        out += m.role;
        out += '\n';
        out += m.content;
        out += "<|im_end|>\n";
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

}  // namespace olmo
