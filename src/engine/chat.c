/* chat.c — chat template families: detection by substrings, built-in formatters, stop strings.
 *
 * Where the facts come from: llama.cpp's src/llama-chat.cpp (llm_chat_detect_template for the
 * substring tests and their order, llm_chat_apply_template for the text of each family) and its
 * tests/test-chat-template.cpp (expected outputs). The results were checked against the
 * llama_chat_apply_template of a llama.cpp build on a set of conversations; see test_chat.c.
 */
#include "engine/chat.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== Names ==== */

static const char *const family_names[CHAT_FAMILY_COUNT] = {
    [CHAT_FALLBACK] = "fallback",
    [CHAT_UNKNOWN] = "unknown",
    [CHAT_CHATML] = "chatml",
    [CHAT_PHI4] = "phi4",
    [CHAT_MISTRAL_V7] = "mistral-v7",
    [CHAT_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
    [CHAT_MISTRAL_V1] = "mistral-v1",
    [CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [CHAT_MISTRAL_V3] = "mistral-v3",
    [CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [CHAT_LLAMA2_SYS] = "llama2-sys",
    [CHAT_LLAMA2] = "llama2",
    [CHAT_PHI3] = "phi3",
    [CHAT_FALCON3] = "falcon3",
    [CHAT_GLMEDGE] = "glmedge",
    [CHAT_ZEPHYR] = "zephyr",
    [CHAT_GEMMA] = "gemma",
    [CHAT_OPENCHAT] = "openchat",
    [CHAT_VICUNA_ORCA] = "vicuna-orca",
    [CHAT_VICUNA] = "vicuna",
    [CHAT_DEEPSEEK] = "deepseek",
    [CHAT_LLAMA3] = "llama3",
    [CHAT_DEEPSEEK3] = "deepseek3",
};

const char *chat_family_name(chat_family family) {
    if ((int)family < 0 || family >= CHAT_FAMILY_COUNT) return "unknown";
    return family_names[family];
}

int chat_family_from_name(const char *name) {
    if (!name) return -1;
    for (int f = 0; f < CHAT_FAMILY_COUNT; f++)
        if (strcmp(name, family_names[f]) == 0) return f;
    return -1;
}

/* ==== Detection ==== */

/* DeepSeek V3 markers: fullwidth vertical bars (U+FF5C) and U+2581 (lower one eighth block). */
#define DS3_USER      u8"<\uFF5CUser\uFF5C>"
#define DS3_ASSISTANT u8"<\uFF5CAssistant\uFF5C>"
#define DS3_EOS       u8"<\uFF5Cend\u2581of\u2581sentence\uFF5C>"

static int has(const char *text, const char *needle) {
    return strstr(text, needle) != NULL;
}

/* The tests of llama.cpp's llm_chat_detect_template, in its order. Branches for families we do
 * not format stay in place and answer CHAT_UNKNOWN, so that a template is never taken for one of
 * ours when llama.cpp would have stopped at an earlier test. Every test after DeepSeek 3 in
 * llama.cpp's chain is for a family we do not format, so the chain ends there. */
chat_family chat_detect(const char *t) {
    if (!t || !*t) return CHAT_FALLBACK;
    int named = chat_family_from_name(t);
    if (named > CHAT_UNKNOWN) return (chat_family)named;

    if (has(t, "<|im_start|>")) {
        if (has(t, "<|im_sep|>")) return CHAT_PHI4;
        if (has(t, "<end_of_utterance>")) return CHAT_UNKNOWN; /* SmolVLM */
        return CHAT_CHATML;
    }
    if (strncmp(t, "mistral", 7) == 0 || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]")) return CHAT_MISTRAL_V7;
        /* Mistral's official v1 / v3 / v3-tekken templates */
        if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            if (has(t, " [INST]")) return CHAT_MISTRAL_V1;
            if (has(t, "\"[INST]\"")) return CHAT_MISTRAL_V3_TEKKEN;
            return CHAT_MISTRAL_V3;
        }
        /* Llama 2 and its variants */
        if (has(t, "content.strip()")) return CHAT_LLAMA2_SYS_STRIP;
        if (has(t, "bos_token + '[INST]")) return CHAT_LLAMA2_SYS_BOS;
        if (has(t, "<<SYS>>")) return CHAT_LLAMA2_SYS;
        return CHAT_LLAMA2;
    }
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return CHAT_PHI3;
    if (has(t, "[gMASK]<sop>")) return CHAT_UNKNOWN; /* ChatGLM 4 */
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) {
        if (has(t, "<|tool_declare|>")) return CHAT_UNKNOWN; /* EXAONE MoE */
        return has(t, "</s>") ? CHAT_FALCON3 : CHAT_GLMEDGE;
    }
    if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>")) return CHAT_GLMEDGE;
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return CHAT_ZEPHYR;
    if (has(t, "bos_token + message['role']")) return CHAT_UNKNOWN; /* Monarch */
    if (has(t, "<start_of_turn>")) return CHAT_GEMMA;
    if (has(t, "'\\n\\nAssistant: ' + eos_token")) return CHAT_UNKNOWN; /* Orion */
    if (has(t, "GPT4 Correct ")) return CHAT_OPENCHAT;
    if (has(t, "USER: ") && has(t, "ASSISTANT: "))
        return has(t, "SYSTEM: ") ? CHAT_VICUNA_ORCA : CHAT_VICUNA;
    if (has(t, "### Instruction:") && has(t, "<|EOT|>")) return CHAT_DEEPSEEK;
    if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>")) return CHAT_UNKNOWN;
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return CHAT_LLAMA3;
    if (has(t, "[gMASK]sop")) return CHAT_UNKNOWN;       /* ChatGLM 3 */
    if (has(t, u8"<\u7528\u6237>")) return CHAT_UNKNOWN; /* MiniCPM */
    if (has(t, "'Assistant: ' + message['content'] + eos_token")) return CHAT_UNKNOWN; /* DS 2 */
    if (has(t, DS3_ASSISTANT) && has(t, DS3_USER) && has(t, DS3_EOS)) return CHAT_DEEPSEEK3;
    return CHAT_UNKNOWN;
}

/* ==== Output buffer ==== */

/* A growing string. After an allocation failure it ignores further writes and keeps oom set. */
typedef struct strbuf {
    char *data;
    size_t len, cap;
    int oom;
} strbuf;

static int sb_reserve(strbuf *b, size_t extra) {
    if (b->oom) return -1;
    if (extra >= SIZE_MAX / 2 - b->len) return b->oom = 1, -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return b->oom = 1, -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (sb_reserve(b, n) < 0) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void sb_puts(strbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

/* ==== Messages ==== */

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

/* A message as the formatters see it: role checked, content measured once. */
typedef struct msg {
    enum role role;
    const char *role_name; /* "system" | "user" | "assistant" */
    const char *text;
    size_t len;
} msg;

/* The " \t\n\v\f\r" isspace() of the C locale, which is what llama.cpp's trim() tests. */
static int is_space(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* The content without leading and trailing whitespace (a view, nothing copied). */
static msg trimmed(msg m) {
    while (m.len > 0 && is_space(m.text[0])) m.text++, m.len--;
    while (m.len > 0 && is_space(m.text[m.len - 1])) m.len--;
    return m;
}

static void put_text(strbuf *b, msg m) {
    sb_put(b, m.text, m.len);
}

/* ==== Formatters ==== */

/* "<|im_start|>role\ncontent<|im_end|>\n" per message; prompt "<|im_start|>assistant\n". */
static void format_chatml(strbuf *b, const msg *m, size_t n, int add_gen) {
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|im_start|>");
        sb_puts(b, m[i].role_name);
        sb_puts(b, "\n");
        put_text(b, m[i]);
        sb_puts(b, "<|im_end|>\n");
    }
    if (add_gen) sb_puts(b, "<|im_start|>assistant\n");
}

/* ChatML with "<|im_sep|>" after the role and no newlines. */
static void format_phi4(strbuf *b, const msg *m, size_t n, int add_gen) {
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|im_start|>");
        sb_puts(b, m[i].role_name);
        sb_puts(b, "<|im_sep|>");
        put_text(b, m[i]);
        sb_puts(b, "<|im_end|>");
    }
    if (add_gen) sb_puts(b, "<|im_start|>assistant<|im_sep|>");
}

/* Mistral v7: each message wrapped on its own; v7 puts a space after the opening tag and before
 * an assistant reply, v7-tekken does not. No generation prompt. */
static void format_mistral_v7(strbuf *b, const msg *m, size_t n, int tekken) {
    const char *space = tekken ? "" : " ";
    for (size_t i = 0; i < n; i++) {
        switch (m[i].role) {
        case ROLE_SYSTEM:
            sb_puts(b, "[SYSTEM_PROMPT]");
            sb_puts(b, space);
            put_text(b, m[i]);
            sb_puts(b, "[/SYSTEM_PROMPT]");
            break;
        case ROLE_USER:
            sb_puts(b, "[INST]");
            sb_puts(b, space);
            put_text(b, m[i]);
            sb_puts(b, "[/INST]");
            break;
        case ROLE_ASSISTANT:
            sb_puts(b, space);
            put_text(b, m[i]);
            sb_puts(b, "</s>");
            break;
        }
    }
}

/* Mistral v1 / v3 / v3-tekken: an [INST] block opens before the first message and after each
 * assistant reply; system text goes inside it followed by a blank line. v1 puts a space before
 * "[INST]" and "[/INST]"; v1 and v3 put one after "[INST]" and before a reply; v3 trims replies.
 * No generation prompt. */
static void format_mistral_v1_v3(strbuf *b, const msg *m, size_t n, chat_family f) {
    const char *lead = f == CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = f == CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    int inside = 0;
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            sb_puts(b, lead);
            sb_puts(b, "[INST]");
            sb_puts(b, trail);
            inside = 1;
        }
        switch (m[i].role) {
        case ROLE_SYSTEM:
            put_text(b, m[i]);
            sb_puts(b, "\n\n");
            break;
        case ROLE_USER:
            put_text(b, m[i]);
            sb_puts(b, lead);
            sb_puts(b, "[/INST]");
            break;
        case ROLE_ASSISTANT:
            sb_puts(b, trail);
            put_text(b, f == CHAT_MISTRAL_V3 ? trimmed(m[i]) : m[i]);
            sb_puts(b, "</s>");
            inside = 0;
            break;
        }
    }
}

/* Llama 2: "[INST] " opens the first turn (the BOS before it is the tokenizer's); a system
 * message becomes "<<SYS>>\n...\n<</SYS>>\n\n" (plain "llama2": the text and "\n"); a user message
 * ends with " [/INST]"; a reply ends with "</s>" and the next message reopens with "[INST] "
 * ("<s>[INST] " for sys-bos). sys-strip trims every message. No generation prompt. */
static void format_llama2(strbuf *b, const msg *m, size_t n, chat_family f) {
    int system_tags = f != CHAT_LLAMA2;
    int bos_inside = f == CHAT_LLAMA2_SYS_BOS;
    int strip = f == CHAT_LLAMA2_SYS_STRIP;
    int inside = 1;
    sb_puts(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        msg c = strip ? trimmed(m[i]) : m[i];
        if (!inside) {
            sb_puts(b, bos_inside ? "<s>[INST] " : "[INST] ");
            inside = 1;
        }
        switch (c.role) {
        case ROLE_SYSTEM:
            if (system_tags) {
                sb_puts(b, "<<SYS>>\n");
                put_text(b, c);
                sb_puts(b, "\n<</SYS>>\n\n");
            } else {
                put_text(b, c);
                sb_puts(b, "\n");
            }
            break;
        case ROLE_USER:
            put_text(b, c);
            sb_puts(b, " [/INST]");
            break;
        case ROLE_ASSISTANT:
            put_text(b, c);
            sb_puts(b, "</s>");
            inside = 0;
            break;
        }
    }
}

/* "<|role|>\n" content end, per message; then `prompt` when asked. Phi-3, Falcon 3, GLM-Edge and
 * Zephyr differ only in `end` and `prompt`. */
static void format_role_tags(strbuf *b, const msg *m, size_t n, int add_gen, const char *end,
                             const char *prompt) {
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|");
        sb_puts(b, m[i].role_name);
        sb_puts(b, "|>\n");
        put_text(b, m[i]);
        sb_puts(b, end);
    }
    if (add_gen) sb_puts(b, prompt);
}

/* Gemma: no system turn. System messages are trimmed and collected, and go at the top of the
 * next user turn followed by a blank line. The assistant is "model"; content is trimmed. */
static void format_gemma(strbuf *b, const msg *m, size_t n, int add_gen) {
    strbuf pending = {0};
    for (size_t i = 0; i < n; i++) {
        msg c = trimmed(m[i]);
        if (c.role == ROLE_SYSTEM) {
            put_text(&pending, c);
            continue;
        }
        int model = c.role == ROLE_ASSISTANT;
        sb_puts(b, model ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (pending.len > 0 && !model) {
            sb_put(b, pending.data, pending.len);
            sb_puts(b, "\n\n");
            pending.len = 0;
        }
        put_text(b, c);
        sb_puts(b, "<end_of_turn>\n");
    }
    if (pending.oom) b->oom = 1;
    free(pending.data);
    if (add_gen) sb_puts(b, "<start_of_turn>model\n");
}

/* OpenChat 3.5: "GPT4 Correct User: " / "GPT4 Correct Assistant: " turns ending in
 * "<|end_of_turn|>"; a system message is its text and the marker alone. */
static void format_openchat(strbuf *b, const msg *m, size_t n, int add_gen) {
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_USER) sb_puts(b, "GPT4 Correct User: ");
        if (m[i].role == ROLE_ASSISTANT) sb_puts(b, "GPT4 Correct Assistant: ");
        put_text(b, m[i]);
        sb_puts(b, "<|end_of_turn|>");
    }
    if (add_gen) sb_puts(b, "GPT4 Correct Assistant:");
}

/* Vicuna 1.1: "USER: ...\n", "ASSISTANT: ...</s>\n"; the system text and a blank line first
 * ("SYSTEM: ...\n" for the Orca variant). */
static void format_vicuna(strbuf *b, const msg *m, size_t n, int add_gen, int orca) {
    for (size_t i = 0; i < n; i++) {
        switch (m[i].role) {
        case ROLE_SYSTEM:
            if (orca) sb_puts(b, "SYSTEM: ");
            put_text(b, m[i]);
            sb_puts(b, orca ? "\n" : "\n\n");
            break;
        case ROLE_USER:
            sb_puts(b, "USER: ");
            put_text(b, m[i]);
            sb_puts(b, "\n");
            break;
        case ROLE_ASSISTANT:
            sb_puts(b, "ASSISTANT: ");
            put_text(b, m[i]);
            sb_puts(b, "</s>\n");
            break;
        }
    }
    if (add_gen) sb_puts(b, "ASSISTANT:");
}

/* DeepSeek Coder: system text as is, "### Instruction:\n...\n", "### Response:\n...\n<|EOT|>\n". */
static void format_deepseek(strbuf *b, const msg *m, size_t n, int add_gen) {
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_USER) sb_puts(b, "### Instruction:\n");
        if (m[i].role == ROLE_ASSISTANT) sb_puts(b, "### Response:\n");
        put_text(b, m[i]);
        if (m[i].role == ROLE_USER) sb_puts(b, "\n");
        if (m[i].role == ROLE_ASSISTANT) sb_puts(b, "\n<|EOT|>\n");
    }
    if (add_gen) sb_puts(b, "### Response:\n");
}

/* Llama 3: a header per message, trimmed content, "<|eot_id|>". */
static void format_llama3(strbuf *b, const msg *m, size_t n, int add_gen) {
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|start_header_id|>");
        sb_puts(b, m[i].role_name);
        sb_puts(b, "<|end_header_id|>\n\n");
        put_text(b, trimmed(m[i]));
        sb_puts(b, "<|eot_id|>");
    }
    if (add_gen) sb_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* DeepSeek V3: system text and a blank line, "<｜User｜>..." and
 * "<｜Assistant｜>...<｜end▁of▁sentence｜>". */
static void format_deepseek3(strbuf *b, const msg *m, size_t n, int add_gen) {
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_USER) sb_puts(b, DS3_USER);
        if (m[i].role == ROLE_ASSISTANT) sb_puts(b, DS3_ASSISTANT);
        put_text(b, m[i]);
        if (m[i].role == ROLE_SYSTEM) sb_puts(b, "\n\n");
        if (m[i].role == ROLE_ASSISTANT) sb_puts(b, DS3_EOS);
    }
    if (add_gen) sb_puts(b, DS3_ASSISTANT);
}

/* Ours, documented in chat.h: "System: ", "User: ", "Assistant: " lines; prompt "Assistant:".
 * An assistant message that starts with a space (what the model answered after "Assistant:")
 * gets no second one, so a past answer is formatted exactly as it was generated. */
static void format_fallback(strbuf *b, const msg *m, size_t n, int add_gen) {
    static const char *const prefix[] = {
        [ROLE_SYSTEM] = "System: ", [ROLE_USER] = "User: ", [ROLE_ASSISTANT] = "Assistant: "};
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_ASSISTANT && m[i].len > 0 && m[i].text[0] == ' ')
            sb_puts(b, "Assistant:");
        else
            sb_puts(b, prefix[m[i].role]);
        put_text(b, m[i]);
        sb_puts(b, "\n");
    }
    if (add_gen) sb_puts(b, "Assistant:");
}

/* ==== chat_format ==== */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int chat_format(chat_family family, const chat_message *messages, size_t n_messages,
                int add_generation_prompt, char **out, size_t *out_len, char *err, size_t errlen) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if ((int)family < 0 || family >= CHAT_FAMILY_COUNT)
        return fail(err, errlen, "unknown chat template family %d", (int)family);
    if (n_messages > SIZE_MAX / sizeof(msg)) return fail(err, errlen, "too many messages");

    msg *m = malloc(n_messages ? n_messages * sizeof *m : 1);
    if (!m) return fail(err, errlen, "out of memory for %zu messages", n_messages);
    size_t total = 0;
    for (size_t i = 0; i < n_messages; i++) {
        const char *role = messages[i].role;
        if (!role) {
            free(m);
            return fail(err, errlen, "message %zu has no role", i);
        }
        if (strcmp(role, "system") == 0) {
            m[i].role = ROLE_SYSTEM;
        } else if (strcmp(role, "user") == 0) {
            m[i].role = ROLE_USER;
        } else if (strcmp(role, "assistant") == 0) {
            m[i].role = ROLE_ASSISTANT;
        } else if (strcmp(role, "ipython") == 0 && family == CHAT_LLAMA3) {
            m[i].role = ROLE_USER; /* tool results; the header names the role */
        } else {
            free(m);
            return fail(err, errlen,
                        "message %zu has unsupported role '%.64s' (expected system, user or "
                        "assistant)",
                        i, role);
        }
        m[i].role_name = role;
        m[i].text = messages[i].content ? messages[i].content : "";
        m[i].len = strlen(m[i].text);
        total += m[i].len;
    }

    /* One allocation in the common case: the text plus room for the longest per-message markup
     * (a hint only: the buffer grows when a family needs more). */
    strbuf b = {0};
    size_t markup = n_messages < SIZE_MAX / 256 ? 96 * n_messages + 96 : 0;
    if (sb_reserve(&b, total + markup) == 0) b.data[0] = 0;
    const int gen = add_generation_prompt != 0;
    switch (family) {
    case CHAT_FALLBACK:
    case CHAT_UNKNOWN: format_fallback(&b, m, n_messages, gen); break;
    case CHAT_CHATML: format_chatml(&b, m, n_messages, gen); break;
    case CHAT_PHI4: format_phi4(&b, m, n_messages, gen); break;
    case CHAT_MISTRAL_V7: format_mistral_v7(&b, m, n_messages, 0); break;
    case CHAT_MISTRAL_V7_TEKKEN: format_mistral_v7(&b, m, n_messages, 1); break;
    case CHAT_MISTRAL_V1:
    case CHAT_MISTRAL_V3:
    case CHAT_MISTRAL_V3_TEKKEN: format_mistral_v1_v3(&b, m, n_messages, family); break;
    case CHAT_LLAMA2:
    case CHAT_LLAMA2_SYS:
    case CHAT_LLAMA2_SYS_BOS:
    case CHAT_LLAMA2_SYS_STRIP: format_llama2(&b, m, n_messages, family); break;
    case CHAT_PHI3: format_role_tags(&b, m, n_messages, gen, "<|end|>\n", "<|assistant|>\n"); break;
    case CHAT_FALCON3: format_role_tags(&b, m, n_messages, gen, "\n", "<|assistant|>\n"); break;
    case CHAT_GLMEDGE: format_role_tags(&b, m, n_messages, gen, "", "<|assistant|>"); break;
    case CHAT_ZEPHYR:
        format_role_tags(&b, m, n_messages, gen, "<|endoftext|>\n", "<|assistant|>\n");
        break;
    case CHAT_GEMMA: format_gemma(&b, m, n_messages, gen); break;
    case CHAT_OPENCHAT: format_openchat(&b, m, n_messages, gen); break;
    case CHAT_VICUNA_ORCA: format_vicuna(&b, m, n_messages, gen, 1); break;
    case CHAT_VICUNA: format_vicuna(&b, m, n_messages, gen, 0); break;
    case CHAT_DEEPSEEK: format_deepseek(&b, m, n_messages, gen); break;
    case CHAT_LLAMA3: format_llama3(&b, m, n_messages, gen); break;
    case CHAT_DEEPSEEK3: format_deepseek3(&b, m, n_messages, gen); break;
    case CHAT_FAMILY_COUNT: break;
    }
    free(m);
    if (b.oom) {
        free(b.data);
        return fail(err, errlen, "out of memory formatting %zu bytes of messages", total);
    }
    *out = b.data;
    if (out_len) *out_len = b.len;
    return 0;
}

/* ==== Stop strings ==== */

const char *const *chat_stop_strings(chat_family family) {
    static const char *const none[] = {NULL};
    static const char *const fallback[] = {"\nUser:", "\nAssistant:", "\nSystem:", NULL};
    static const char *const chatml[] = {"<|im_end|>", "<|im_start|>", NULL};
    static const char *const inst[] = {"</s>", "[INST]", NULL};
    static const char *const phi3[] = {"<|end|>", "<|user|>", "<|endoftext|>", NULL};
    static const char *const falcon3[] = {"<|user|>", "<|endoftext|>", NULL};
    static const char *const glmedge[] = {"<|user|>", "</s>", NULL};
    static const char *const zephyr[] = {"<|endoftext|>", "<|user|>", NULL};
    static const char *const gemma[] = {"<end_of_turn>", "<start_of_turn>", NULL};
    static const char *const openchat[] = {"<|end_of_turn|>", NULL};
    static const char *const vicuna[] = {"</s>", "\nUSER:", NULL};
    static const char *const deepseek[] = {"<|EOT|>", "\n### Instruction:", NULL};
    static const char *const llama3[] = {"<|eot_id|>", "<|start_header_id|>", NULL};
    static const char *const deepseek3[] = {DS3_EOS, DS3_USER, NULL};

    switch (family) {
    case CHAT_FALLBACK:
    case CHAT_UNKNOWN: return fallback;
    case CHAT_CHATML:
    case CHAT_PHI4: return chatml;
    case CHAT_MISTRAL_V7:
    case CHAT_MISTRAL_V7_TEKKEN:
    case CHAT_MISTRAL_V1:
    case CHAT_MISTRAL_V3:
    case CHAT_MISTRAL_V3_TEKKEN:
    case CHAT_LLAMA2:
    case CHAT_LLAMA2_SYS:
    case CHAT_LLAMA2_SYS_BOS:
    case CHAT_LLAMA2_SYS_STRIP: return inst;
    case CHAT_PHI3: return phi3;
    case CHAT_FALCON3: return falcon3;
    case CHAT_GLMEDGE: return glmedge;
    case CHAT_ZEPHYR: return zephyr;
    case CHAT_GEMMA: return gemma;
    case CHAT_OPENCHAT: return openchat;
    case CHAT_VICUNA_ORCA:
    case CHAT_VICUNA: return vicuna;
    case CHAT_DEEPSEEK: return deepseek;
    case CHAT_LLAMA3: return llama3;
    case CHAT_DEEPSEEK3: return deepseek3;
    case CHAT_FAMILY_COUNT: break;
    }
    return none;
}
