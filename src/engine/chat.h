/* chat.h — turn a list of chat messages into the prompt text a model was trained on.
 *
 * GGUF files carry their chat template as Jinja source in `tokenizer.chat_template`. We do not run
 * Jinja. Like llama.cpp's built-in chat templates (llm_chat_detect_template and
 * llm_chat_apply_template in its src/llama-chat.cpp), we recognise the family of a template by
 * distinctive substrings and format with a built-in formatter that writes the text llama.cpp
 * writes for that family, byte for byte.
 *
 * Conventions shared by every family:
 *   - BOS is never written (llama.cpp does not either): the tokenizer adds it. Encode the result
 *     with parse_special on, so that "<|im_start|>", "[INST]", "</s>" and the like become their
 *     control tokens.
 *   - Roles are "system", "user" and "assistant" (and "ipython", tool results, for Llama 3); any
 *     other role is an error naming it. Content is
 *     plain text (the caller flattens OpenAI's array-of-parts form first); NULL content is "".
 *   - Families whose llama.cpp formatter trims message content (Llama 3, Gemma, Mistral v3
 *     assistant turns, Llama 2 "strip") trim the ASCII whitespace " \t\n\v\f\r" from both ends.
 *   - Some llama.cpp formatters ignore add_generation_prompt (Llama 2, every Mistral): their text
 *     after a user turn already ends where the assistant's reply starts.
 *
 * The fallback format (CHAT_FALLBACK; also used for CHAT_UNKNOWN) is for models without a chat
 * template, such as base models like stories260K. Each message becomes one line,
 *
 *     "System: " content "\n"        for role system
 *     "User: " content "\n"          for role user
 *     "Assistant: " content "\n"     for role assistant
 *
 * in order, content unchanged (not trimmed; newlines inside it are kept), except that an assistant
 * content that already starts with a space follows "Assistant:" directly: a past answer, which the
 * model generated after "Assistant:" with its own leading space, is then formatted exactly as it
 * was generated (and a slot's prompt cache can reuse it). With
 * add_generation_prompt, "Assistant:" follows (no space, no newline), so the model's first
 * token usually brings its own leading space. Example, system + user with the prompt added:
 *
 *     "System: Be brief.\nUser: Hello\nAssistant:"
 *
 * Its stop strings are "\nUser:", "\nAssistant:" and "\nSystem:": a base model that starts a new
 * turn of its own is cut there.
 *
 * Everything here is pure and reentrant: any thread may call any function at any time.
 */
#ifndef MH_CHAT_H
#define MH_CHAT_H

#include <stddef.h>

/* One message. Both strings are borrowed for the duration of the call. */
typedef struct chat_message {
    const char *role;    /* "system" | "user" | "assistant" */
    const char *content; /* NUL-terminated text; NULL counts as "" */
} chat_message;

/* Template families. The comment above each gives its name (chat_family_name, and what
 * chat_family_from_name and chat_detect accept as an exact name, as llama.cpp does) and what
 * chat_detect looks for. The tests run in llama.cpp's order, which is the order below, with the
 * tests for llama.cpp families we do not format in between (see chat.c); "... else" means that
 * the tests above it failed. */
typedef enum chat_family {
    /* "fallback": no template (NULL or ""): the format documented above */
    CHAT_FALLBACK = 0,
    /* "unknown": a template we do not recognise, or one llama.cpp recognises as a family we do
     * not format (Command-R, Llama 4, ...). The caller logs that once and formats with
     * CHAT_UNKNOWN, which gives the fallback format. */
    CHAT_UNKNOWN,
    /* "chatml": has "<|im_start|>" (Qwen, OpenHermes, SmolLM, ...) */
    CHAT_CHATML,
    /* "phi4": has "<|im_start|>" and "<|im_sep|>" */
    CHAT_PHI4,
    /* The Mistral and Llama 2 families: the template starts with "mistral" or has "[INST]". */
    /* "mistral-v7": ... and has "[SYSTEM_PROMPT]" */
    CHAT_MISTRAL_V7,
    /* "mistral-v7-tekken": by name only (detection gives mistral-v7, as in llama.cpp) */
    CHAT_MISTRAL_V7_TEKKEN,
    /* Mistral's official v1/v3 templates: ... has "' [INST] ' + system_message" or
     * "[AVAILABLE_TOOLS]". "mistral-v1": and " [INST]" (a space before it) */
    CHAT_MISTRAL_V1,
    /* "mistral-v3-tekken": ... no " [INST]", has "\"[INST]\"" (in double quotes) */
    CHAT_MISTRAL_V3_TEKKEN,
    /* "mistral-v3": ... neither */
    CHAT_MISTRAL_V3,
    /* Other "[INST]" templates. "llama2-sys-strip": has "content.strip()" (the official Llama 2
     * chat template) */
    CHAT_LLAMA2_SYS_STRIP,
    /* "llama2-sys-bos": ... else has "bos_token + '[INST]" */
    CHAT_LLAMA2_SYS_BOS,
    /* "llama2-sys": ... else has "<<SYS>>" */
    CHAT_LLAMA2_SYS,
    /* "llama2": ... else (Mistral 7B Instruct v0.1/v0.2); a system message is written at the start
     * of the first [INST] without <<SYS>> */
    CHAT_LLAMA2,
    /* "phi3": has "<|assistant|>" and "<|end|>" */
    CHAT_PHI3,
    /* "falcon3": has "<|assistant|>", "<|user|>" and "</s>" */
    CHAT_FALCON3,
    /* "glmedge": has "<|assistant|>" and "<|user|>", no "</s>". This also catches the templates of
     * TinyLlama chat and Zephyr 7B beta, which end turns with eos_token rather than a literal
     * marker: llama.cpp formats those as GLM-Edge too. */
    CHAT_GLMEDGE,
    /* "zephyr": has "<|user|>" and "<|endoftext|>" (so, given the tests above, no
     * "<|assistant|>") */
    CHAT_ZEPHYR,
    /* "gemma": has "<start_of_turn>" */
    CHAT_GEMMA,
    /* "openchat": has "GPT4 Correct " */
    CHAT_OPENCHAT,
    /* "vicuna-orca": has "USER: ", "ASSISTANT: " and "SYSTEM: " */
    CHAT_VICUNA_ORCA,
    /* "vicuna": has "USER: " and "ASSISTANT: " */
    CHAT_VICUNA,
    /* "deepseek": has "### Instruction:" and "<|EOT|>" (DeepSeek Coder) */
    CHAT_DEEPSEEK,
    /* "llama3": has "<|start_header_id|>" and "<|end_header_id|>" */
    CHAT_LLAMA3,
    /* "deepseek3": has DeepSeek V3's user, assistant and end-of-sentence markers, spelled with
     * fullwidth bars U+FF5C and U+2581 between words (DeepSeek V3, R1 and the R1 distills) */
    CHAT_DEEPSEEK3,
    CHAT_FAMILY_COUNT
} chat_family;

/* Family of a template: NULL or "" -> CHAT_FALLBACK; an exact family name from the list above
 * (other than "fallback"/"unknown") -> that family; else the substring tests, in llama.cpp's
 * order; nothing matched, or a llama.cpp family we do not format -> CHAT_UNKNOWN. */
chat_family chat_detect(const char *template_or_null);

/* Family by exact name ("chatml", "llama3", ..., "fallback"); -1 when the name is not ours. */
int chat_family_from_name(const char *name);

/* Name of a family, e.g. "chatml"; "unknown" for a value out of range. Static storage. */
const char *chat_family_name(chat_family family);

/* Format `n_messages` messages for `family`. add_generation_prompt: end with the text that opens
 * the assistant's turn (for the families that have one). On success returns 0 and sets *out to a
 * malloc'd NUL-terminated string the caller frees, and *out_len (when not NULL) to its length.
 * On error (a bad role, a NULL role, out of memory, family out of range) returns -1, writes the
 * reason into err (when errlen > 0) and leaves *out NULL. Time and memory are linear in the
 * input. */
int chat_format(chat_family family, const chat_message *messages, size_t n_messages,
                int add_generation_prompt, char **out, size_t *out_len, char *err, size_t errlen);

/* Stop strings for a family: the end-of-turn markers its formatter writes after a message (and,
 * for plain-text formats, the start of the next user turn). The server stops generation at the
 * first of them, in addition to the model's own end-of-generation tokens, and does not emit it.
 * NULL-terminated array in static storage; never NULL itself (an empty list is {NULL}). */
const char *const *chat_stop_strings(chat_family family);

#endif
