/* test_chat.c — chat templates: detection of real-world template texts, the exact text of every
 * family, the fallback format, errors, stop strings, and linear time on large input.
 *
 * Where the expected texts come from:
 *   [T] llama.cpp tests/test-chat-template.cpp: the expected output of the named test case for
 *       the conversation below (the same six messages that file uses).
 *   [F] llama.cpp src/llama-chat.cpp: the family's formatter in llm_chat_apply_template, which has
 *       no test case of its own there.
 * Every expected text, [T] and [F] alike, and the edge cases further down were also compared with
 * llama_chat_apply_template of a llama.cpp build; test_matches_libllama repeats that comparison
 * on random conversations when MODELHUB_LIBLLAMA names a libllama.so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat.h"
#include "test_util.h"
#include "util/common.h"

/* llama.cpp's test conversation: system, user, assistant, user, assistant (with spaces around, to
 * show which families trim), user. */
static const chat_message conversation[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_CONV MH_ARRAY_LEN(conversation)

/* Format or fail the test. Caller frees. */
static char *format_ok(chat_family f, const chat_message *m, size_t n, int gen) {
    char *out = (char *)1;
    size_t len = 0;
    char err[256] = "";
    int rc = chat_format(f, m, n, gen, &out, &len, err, sizeof err);
    if (rc != 0) fail_msg("chat_format(%s): %s", chat_family_name(f), err);
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    return out;
}

static void assert_formats_to(chat_family f, const chat_message *m, size_t n, int gen,
                              const char *expected) {
    char *out = format_ok(f, m, n, gen);
    if (strcmp(out, expected) != 0)
        fail_msg("%s (gen %d):\n  expected [%s]\n  got      [%s]", chat_family_name(f), gen,
                 expected, out);
    free(out);
}

/* ==== The conversation in every family ==== */

static const struct {
    const char *family;   /* chat_family_name */
    const char *expected; /* with add_generation_prompt */
} expected_texts[] = {
    /* [T] teknium/OpenHermes-2.5-Mistral-7B */
    {"chatml",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
     "<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
     "question<|im_end|>\n<|im_start|>assistant\n"},
    /* [T] phi-4 */
    {"phi4", "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|><|im_start|>user"
             "<|im_sep|>Hello<|im_end|><|im_start|>assistant<|im_sep|>Hi there<|im_end|>"
             "<|im_start|>user<|im_sep|>Who are you<|im_end|><|im_start|>assistant<|im_sep|>   I "
             "am an assistant   <|im_end|><|im_start|>user<|im_sep|>Another question<|im_end|>"
             "<|im_start|>assistant<|im_sep|>"},
    /* [T] mistralai/Mistral-7B-Instruct-v0.2, "old pre-v1 without a system prompt" */
    {"llama2", "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you "
               "[/INST]   I am an assistant   </s>[INST] Another question [/INST]"},
    /* [F] Llama 2 with <<SYS>>, no BOS inside the history, no strip */
    {"llama2-sys", "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi "
                   "there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another "
                   "question [/INST]"},
    /* [T] TheBloke/FusionNet_34Bx2_MoE-AWQ */
    {"llama2-sys-bos", "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi "
                       "there</s><s>[INST] Who are you [/INST]   I am an assistant   </s><s>[INST] "
                       "Another question [/INST]"},
    /* [T] bofenghuang/vigogne-2-70b-chat */
    {"llama2-sys-strip", "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi "
                         "there</s>[INST] Who are you [/INST]I am an assistant</s>[INST] Another "
                         "question [/INST]"},
    /* [T] mistralai 'v1' template with a system prompt */
    {"mistral-v1", " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who "
                   "are you [/INST]    I am an assistant   </s> [INST] Another question [/INST]"},
    /* [T] Mistral-Large-Instruct-2407 ('v3', system prompt moved to the start) */
    {"mistral-v3", "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are "
                   "you[/INST] I am an assistant</s>[INST] Another question[/INST]"},
    /* [T] Mistral-Nemo-Instruct-2407 ('v3-tekken', system prompt moved to the start) */
    {"mistral-v3-tekken", "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who "
                          "are you[/INST]   I am an assistant   </s>[INST]Another question[/INST]"},
    /* [T] mistralai/Mistral-Large-Instruct-2411 ('v7') */
    {"mistral-v7", "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] "
                   "Hello[/INST] Hi there</s>[INST] Who are you[/INST]    I am an assistant   "
                   "</s>[INST] Another question[/INST]"},
    /* [F] 'v7-tekken': v7 without the spaces */
    {"mistral-v7-tekken", "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello"
                          "[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   "
                          "</s>[INST]Another question[/INST]"},
    /* [T] Phi-3-mini / Phi-3-small / Phi-3-medium / Phi-3-vision (all the same text) */
    {"phi3", "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n"
             "<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I "
             "am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"},
    /* [F] Falcon 3 */
    {"falcon3", "<|system|>\nYou are a helpful assistant\n<|user|>\nHello\n<|assistant|>\nHi "
                "there\n<|user|>\nWho are you\n<|assistant|>\n   I am an assistant   \n<|user|>\n"
                "Another question\n<|assistant|>\n"},
    /* [T] GLMEdge */
    {"glmedge", "<|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi "
                "there<|user|>\nWho are you<|assistant|>\n   I am an assistant   <|user|>\nAnother "
                "question<|assistant|>"},
    /* [F] Zephyr */
    {"zephyr", "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>"
               "\n<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n"
               "<|assistant|>\n   I am an assistant   <|endoftext|>\n<|user|>\nAnother "
               "question<|endoftext|>\n<|assistant|>\n"},
    /* [T] google/gemma-7b-it: the system text goes into the first user turn */
    {"gemma", "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
              "<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are "
              "you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
              "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"},
    /* [T] openchat/openchat-3.5-0106 */
    {"openchat", "You are a helpful assistant<|end_of_turn|>GPT4 Correct User: "
                 "Hello<|end_of_turn|>GPT4 Correct Assistant: Hi there<|end_of_turn|>GPT4 Correct "
                 "User: Who are you<|end_of_turn|>GPT4 Correct Assistant:    I am an assistant   "
                 "<|end_of_turn|>GPT4 Correct User: Another question<|end_of_turn|>GPT4 Correct "
                 "Assistant:"},
    /* [T] eachadea/vicuna-13b-1.1 */
    {"vicuna", "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who "
               "are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\n"
               "ASSISTANT:"},
    /* [T] Orca-Vicuna */
    {"vicuna-orca", "SYSTEM: You are a helpful assistant\nUSER: Hello\nASSISTANT: Hi there</s>\n"
                    "USER: Who are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another "
                    "question\nASSISTANT:"},
    /* [T] deepseek-ai/deepseek-coder-33b-instruct */
    {"deepseek", "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there\n"
                 "<|EOT|>\n### Instruction:\nWho are you\n### Response:\n   I am an assistant   \n"
                 "<|EOT|>\n### Instruction:\nAnother question\n### Response:\n"},
    /* [T] Llama-3 */
    {"llama3", "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
               "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    /* [F] DeepSeek V3 (fullwidth bars U+FF5C, U+2581 between the words of end-of-sentence) */
    {"deepseek3", u8"You are a helpful assistant\n\n<\uFF5CUser\uFF5C>Hello<\uFF5CAssistant\uFF5C>"
                  u8"Hi there<\uFF5Cend\u2581of\u2581sentence\uFF5C><\uFF5CUser\uFF5C>Who are "
                  u8"you<\uFF5CAssistant\uFF5C>   I am an assistant   "
                  u8"<\uFF5Cend\u2581of\u2581sentence\uFF5C><\uFF5CUser\uFF5C>Another "
                  u8"question<\uFF5CAssistant\uFF5C>"},
};

static chat_family family_named(const char *name) {
    int f = chat_family_from_name(name);
    if (f < 0) fail_msg("no family named %s", name);
    return (chat_family)f;
}

static void test_every_family_formats_the_conversation(void **state) {
    (void)state;
    /* every family we format has an expected text */
    assert_int_equal(MH_ARRAY_LEN(expected_texts), CHAT_FAMILY_COUNT - 2);
    for (size_t i = 0; i < MH_ARRAY_LEN(expected_texts); i++) {
        chat_family f = family_named(expected_texts[i].family);
        assert_string_equal(chat_family_name(f), expected_texts[i].family);
        assert_formats_to(f, conversation, N_CONV, 1, expected_texts[i].expected);
    }
}

/* ==== Detection of template texts ==== */

/* tests/data/chat_templates/<name>.jinja, written for these tests with the markers the real
 * templates of each family carry (and reused by the end-to-end tests through
 * `modelhub synth --chat-template FILE`). */
static char *read_template(const char *name) {
    char path[4096];
    const char *src = getenv("MODELHUB_SRC");
    if (src && *src) {
        snprintf(path, sizeof path, "%s/tests/data/chat_templates/%s.jinja", src, name);
    } else { /* compiled by hand: find the data next to this file */
        snprintf(path, sizeof path, "%s", __FILE__);
        char *unit = strstr(path, "tests/unit/test_chat.c");
        if (!unit) fail_msg("set MODELHUB_SRC to the source tree");
        snprintf(unit, sizeof path - (size_t)(unit - path), "tests/data/chat_templates/%s.jinja",
                 name);
    }
    char *text = test_read_file(path, NULL);
    if (!text) fail_msg("cannot read %s", path);
    return text;
}

/* tests/data/chat_templates/<file>.jinja -> the family llama.cpp detects; what each imitates */
static const struct {
    const char *file, *family;
} template_files[] = {
    {"chatml", "chatml"},                       /* Qwen 2.5 style, default system prompt */
    {"llama2", "llama2"},                       /* Mistral 7B Instruct v0.1/v0.2 */
    {"llama2-sys", "llama2-sys"},               /* <<SYS>> without strip or BOS in history */
    {"llama2-sys-bos", "llama2-sys-bos"},       /* FusionNet style */
    {"llama2-sys-strip", "llama2-sys-strip"},   /* the official Llama 2 chat template */
    {"mistral-v1", "mistral-v1"},               /* "' [INST] ' + system_message" */
    {"mistral-v3", "mistral-v3"},               /* [AVAILABLE_TOOLS], "[INST] " */
    {"mistral-v3-tekken", "mistral-v3-tekken"}, /* [AVAILABLE_TOOLS], "[INST]" */
    {"mistral-v7", "mistral-v7"},               /* [SYSTEM_PROMPT] */
    {"llama3", "llama3"},                       /* Llama 3 Instruct */
    {"zephyr", "zephyr"},                       /* literal <|endoftext|>, no <|assistant|> */
    {"gemma", "gemma"},                         /* Gemma it */
    {"phi3", "phi3"},                           /* Phi-3 mini */
    {"phi4", "phi4"},
    {"falcon3", "falcon3"},
    /* TinyLlama chat / Zephyr 7B beta: turns end with eos_token; llama.cpp says GLM-Edge */
    {"glmedge", "glmedge"},
    {"openchat", "openchat"},
    {"vicuna", "vicuna"},
    {"vicuna-orca", "vicuna-orca"},
    {"deepseek", "deepseek"},
    {"deepseek3", "deepseek3"},
};

static void test_detect_template_files(void **state) {
    (void)state;
    /* a file for every family detection can give (mistral-v7-tekken is by name only) */
    assert_int_equal(MH_ARRAY_LEN(template_files), CHAT_FAMILY_COUNT - 3);
    for (size_t i = 0; i < MH_ARRAY_LEN(template_files); i++) {
        char *text = read_template(template_files[i].file);
        chat_family got = chat_detect(text);
        if (got != family_named(template_files[i].family))
            fail_msg("%s.jinja: detected %s, expected %s", template_files[i].file,
                     chat_family_name(got), template_files[i].family);
        free(text);
    }
}

static void test_detect_names_and_empty(void **state) {
    (void)state;
    assert_int_equal(chat_detect(NULL), CHAT_FALLBACK);
    assert_int_equal(chat_detect(""), CHAT_FALLBACK);
    /* an exact family name selects that family, as llama.cpp accepts its built-in names */
    for (int f = CHAT_UNKNOWN + 1; f < CHAT_FAMILY_COUNT; f++) {
        assert_int_equal(chat_detect(chat_family_name(f)), f);
        assert_int_equal(chat_family_from_name(chat_family_name(f)), f);
    }
    assert_int_equal(chat_family_from_name("fallback"), CHAT_FALLBACK);
    assert_int_equal(chat_family_from_name("unknown"), CHAT_UNKNOWN);
    assert_int_equal(chat_family_from_name("ChatML"), -1);
    assert_int_equal(chat_family_from_name(NULL), -1);
    assert_string_equal(chat_family_name((chat_family)-1), "unknown");
    assert_string_equal(chat_family_name(CHAT_FAMILY_COUNT), "unknown");
    /* "fallback" is not a template: it goes through the substring tests like any text */
    assert_int_equal(chat_detect("fallback"), CHAT_UNKNOWN);
}

static void test_detect_unknown(void **state) {
    (void)state;
    static const char *const unknown[] = {
        /* llama.cpp's own "invalid template" test */
        "INVALID TEMPLATE",
        /* Alpaca: no family has these markers alone */
        "{% for message in messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + "
        "message['content'] + '\\n\\n' }}{% else %}{{ '### Response:\\n' + message['content'] }}"
        "{% endif %}{% endfor %}",
        /* families llama.cpp formats and we do not: Command-R, Orion, Monarch, ChatGLM 4, SmolVLM,
         * Llama 4, Granite */
        "{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() + '<|END_OF_TURN_TOKEN|>' }}",
        "{{ 'Human: ' + message['content'] + '\\n\\nAssistant: ' + eos_token }}",
        "{{bos_token + message['role'] + '\\n' + message['content'] + eos_token + '\\n'}}",
        "[gMASK]<sop>{% for item in messages %}<|{{ item['role'] }}|>\\n{{ item['content'] }}"
        "{% endfor %}<|assistant|>\\n<|user|>",
        "<|im_start|>{{ 'User:' + message['content'] + '<end_of_utterance>\\n' }}",
        "{{ '<|header_start|>' + message['role'] + '<|header_end|>\\n\\n' }}",
        "{{ '<|start_of_role|>' + message['role'] + '<|end_of_role|>' }}",
    };
    for (size_t i = 0; i < MH_ARRAY_LEN(unknown); i++) {
        chat_family got = chat_detect(unknown[i]);
        if (got != CHAT_UNKNOWN)
            fail_msg("template %zu detected as %s, expected unknown", i, chat_family_name(got));
    }
}

/* llama.cpp tests in a fixed order; the first match wins. */
static void test_detect_order(void **state) {
    (void)state;
    assert_int_equal(chat_detect("<|im_start|> [INST] <start_of_turn>"), CHAT_CHATML);
    assert_int_equal(chat_detect("[INST] <|start_header_id|><|end_header_id|>"), CHAT_LLAMA2);
    assert_int_equal(chat_detect("mistral is a name"), CHAT_LLAMA2); /* starts with "mistral" */
    assert_int_equal(chat_detect("[INST] [SYSTEM_PROMPT] [AVAILABLE_TOOLS]"), CHAT_MISTRAL_V7);
    assert_int_equal(chat_detect("[INST] <<SYS>> content.strip() bos_token + '[INST]"),
                     CHAT_LLAMA2_SYS_STRIP);
    assert_int_equal(chat_detect("<<SYS>> bos_token + '[INST] "), CHAT_LLAMA2_SYS_BOS);
    assert_int_equal(chat_detect("<|user|><|assistant|><|end|></s>"), CHAT_PHI3);
    assert_int_equal(chat_detect("<|user|><|assistant|></s><|endoftext|>"), CHAT_FALCON3);
    assert_int_equal(chat_detect("<|user|><|assistant|><|endoftext|>"), CHAT_GLMEDGE);
    assert_int_equal(chat_detect("<|user|><|endoftext|><start_of_turn>"), CHAT_ZEPHYR);
    assert_int_equal(chat_detect("<|user|> alone"), CHAT_UNKNOWN);
    assert_int_equal(chat_detect("<start_of_turn> USER: ASSISTANT: "), CHAT_GEMMA);
    assert_int_equal(chat_detect("GPT4 Correct USER: ASSISTANT: "), CHAT_OPENCHAT);
    /* Command-R comes before Llama 3 in llama.cpp, so this is not Llama 3 */
    assert_int_equal(chat_detect("<|START_OF_TURN_TOKEN|><|USER_TOKEN|><|start_header_id|>"
                                 "<|end_header_id|>"),
                     CHAT_UNKNOWN);
    assert_int_equal(chat_detect("<|start_header_id|><|end_header_id|>"), CHAT_LLAMA3);
}

/* ==== The fallback format ==== */

static void test_fallback_format(void **state) {
    (void)state;
    /* exactly as documented in chat.h */
    static const chat_message two[] = {{"system", "Be brief."}, {"user", "Hello"}};
    assert_formats_to(CHAT_FALLBACK, two, 2, 1, "System: Be brief.\nUser: Hello\nAssistant:");
    assert_formats_to(CHAT_FALLBACK, two, 2, 0, "System: Be brief.\nUser: Hello\n");
    const char *all = "System: You are a helpful assistant\nUser: Hello\nAssistant: Hi there\n"
                      "User: Who are you\nAssistant:   I am an assistant   \n"
                      "User: Another question\nAssistant:";
    assert_formats_to(CHAT_FALLBACK, conversation, N_CONV, 1, all);
    /* an unrecognised template formats the same way */
    assert_formats_to(CHAT_UNKNOWN, conversation, N_CONV, 1, all);
    /* content is not trimmed and keeps its newlines; NULL content is "" */
    static const chat_message odd[] = {{"user", " two\nlines "}, {"assistant", NULL}};
    assert_formats_to(CHAT_FALLBACK, odd, 2, 1, "User:  two\nlines \nAssistant: \nAssistant:");
    assert_formats_to(CHAT_FALLBACK, NULL, 0, 1, "Assistant:");
    assert_formats_to(CHAT_FALLBACK, NULL, 0, 0, "");
    /* a past answer that starts with the space the model generated after "Assistant:" comes back
     * exactly as generated (no second space), one without a space gets one */
    static const chat_message turns[] = {
        {"user", "Hi"}, {"assistant", " Hello there."}, {"user", "Again"}, {"assistant", "Sure."}};
    assert_formats_to(CHAT_FALLBACK, turns, 4, 0,
                      "User: Hi\nAssistant: Hello there.\nUser: Again\nAssistant: Sure.\n");
}

/* ==== Generation prompt and edge cases (each checked against llama.cpp) ==== */

static void test_generation_prompt_and_edges(void **state) {
    (void)state;
    static const chat_message user_hi[] = {{"user", " hi "}};
    assert_formats_to(CHAT_CHATML, user_hi, 1, 0, "<|im_start|>user\n hi <|im_end|>\n");
    assert_formats_to(CHAT_LLAMA3, user_hi, 1, 0,
                      "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
    assert_formats_to(CHAT_PHI3, user_hi, 1, 0, "<|user|>\n hi <|end|>\n");
    /* Llama 2 and Mistral write no generation prompt: the same text either way */
    assert_formats_to(CHAT_LLAMA2, user_hi, 1, 0, "[INST]  hi  [/INST]");
    assert_formats_to(CHAT_LLAMA2, user_hi, 1, 1, "[INST]  hi  [/INST]");
    assert_formats_to(CHAT_MISTRAL_V7, user_hi, 1, 1, "[INST]  hi [/INST]");
    /* no messages */
    assert_formats_to(CHAT_CHATML, NULL, 0, 1, "<|im_start|>assistant\n");
    assert_formats_to(CHAT_CHATML, NULL, 0, 0, "");
    assert_formats_to(CHAT_LLAMA2, NULL, 0, 1, "[INST] ");
    /* Gemma: a lone system message is dropped; several are joined; one before a model turn
     * waits for the next user turn */
    static const chat_message sys_only[] = {{"system", "  sys  "}};
    assert_formats_to(CHAT_GEMMA, sys_only, 1, 1, "<start_of_turn>model\n");
    static const chat_message two_sys[] = {{"system", "A"}, {"system", " B "}, {"user", "x"}};
    assert_formats_to(CHAT_GEMMA, two_sys, 3, 1,
                      "<start_of_turn>user\nAB\n\nx<end_of_turn>\n<start_of_turn>model\n");
    static const chat_message sys_model[] = {{"system", "S"}, {"assistant", "a"}, {"user", "u"}};
    assert_formats_to(CHAT_GEMMA, sys_model, 3, 1,
                      "<start_of_turn>model\na<end_of_turn>\n<start_of_turn>user\nS\n\nu"
                      "<end_of_turn>\n<start_of_turn>model\n");
    /* Mistral v3 trims replies even when the conversation starts with one */
    static const chat_message reply_first[] = {{"assistant", "  r  "}};
    assert_formats_to(CHAT_MISTRAL_V3, reply_first, 1, 1, "[INST]  r</s>");
    /* two user turns in a row are not merged or rejected */
    static const chat_message users[] = {{"user", "a"}, {"user", "b"}};
    assert_formats_to(CHAT_LLAMA2, users, 2, 1, "[INST] a [/INST]b [/INST]");
}

/* ==== Errors ==== */

static void test_bad_roles(void **state) {
    (void)state;
    static const chat_message tool[] = {{"user", "hi"}, {"tool", "{}"}};
    static const chat_message upper[] = {{"System", "hi"}};
    static const chat_message none[] = {{NULL, "hi"}};
    for (int f = 0; f < CHAT_FAMILY_COUNT; f++) {
        char *out = (char *)1;
        size_t len = 7;
        char err[256] = "";
        assert_int_equal(chat_format(f, tool, 2, 1, &out, &len, err, sizeof err), -1);
        assert_null(out);
        assert_int_equal(len, 0);
        assert_non_null(strstr(err, "'tool'"));
        assert_non_null(strstr(err, "message 1"));
        assert_int_equal(chat_format(f, upper, 1, 1, &out, NULL, err, sizeof err), -1);
        assert_non_null(strstr(err, "'System'"));
        assert_int_equal(chat_format(f, none, 1, 1, &out, NULL, err, sizeof err), -1);
        assert_non_null(strstr(err, "no role"));
        /* no error buffer is fine */
        assert_int_equal(chat_format(f, tool, 2, 1, &out, NULL, NULL, 0), -1);
    }
    char *out = NULL;
    char err[128];
    assert_int_equal(
        chat_format(CHAT_FAMILY_COUNT, conversation, 1, 1, &out, NULL, err, sizeof err), -1);
    assert_int_equal(chat_format((chat_family)-3, conversation, 1, 1, &out, NULL, err, sizeof err),
                     -1);
    assert_null(out);
}

/* ==== Stop strings ==== */

/* For every family, the text between an assistant reply and the next user message contains one
 * of the family's stop strings, so generation that imitates the template ends at the turn. */
static void test_stop_strings(void **state) {
    (void)state;
    static const chat_message turn[] = {
        {"user", "question"}, {"assistant", "REPLY"}, {"user", "NEXT"}};
    for (int f = 0; f < CHAT_FAMILY_COUNT; f++) {
        const char *const *stops = chat_stop_strings(f);
        assert_non_null(stops);
        assert_non_null(stops[0]);
        for (const char *const *s = stops; *s; s++) assert_true(strlen(*s) > 0);
        char *out = format_ok(f, turn, 3, 1);
        char *reply = strstr(out, "REPLY");
        char *next = strstr(out, "NEXT");
        assert_non_null(reply);
        assert_non_null(next);
        int found = 0;
        for (const char *const *s = stops; *s && !found; s++) {
            char *at = strstr(reply, *s);
            found = at && at < next;
        }
        if (!found)
            fail_msg("%s: no stop string after the reply in [%s]", chat_family_name(f), out);
        free(out);
    }
    assert_string_equal(chat_stop_strings(CHAT_CHATML)[0], "<|im_end|>");
    assert_string_equal(chat_stop_strings(CHAT_LLAMA3)[0], "<|eot_id|>");
    assert_string_equal(chat_stop_strings(CHAT_GEMMA)[0], "<end_of_turn>");
    assert_string_equal(chat_stop_strings(CHAT_PHI3)[0], "<|end|>");
    assert_string_equal(chat_stop_strings(CHAT_LLAMA2)[0], "</s>");
    assert_string_equal(chat_stop_strings(CHAT_MISTRAL_V7)[0], "</s>");
    assert_string_equal(chat_stop_strings(CHAT_ZEPHYR)[0], "<|endoftext|>");
    assert_string_equal(chat_stop_strings(CHAT_FALLBACK)[0], "\nUser:");
    assert_ptr_equal(chat_stop_strings(CHAT_UNKNOWN), chat_stop_strings(CHAT_FALLBACK));
    assert_null(chat_stop_strings(CHAT_FAMILY_COUNT)[0]);
}

/* ==== Scale ==== */

/* Four 1 MB messages in every family, and 200k short ones: linear time, content intact. */
static void test_large_input_is_linear(void **state) {
    (void)state;
    const size_t big = (size_t)1 << 20;
    char *text = malloc(big + 1);
    assert_non_null(text);
    for (size_t i = 0; i < big; i++) text[i] = (char)('a' + i % 26);
    text[0] = ' '; /* the trimming families cut this space */
    text[big] = 0;
    chat_message msgs[4] = {{"system", text}, {"user", text}, {"assistant", text}, {"user", text}};

    double t0 = mh_now_mono();
    for (int f = 0; f < CHAT_FAMILY_COUNT; f++) {
        char *out = format_ok(f, msgs, 4, 1);
        size_t len = strlen(out);
        assert_true(len >= 3 * (big - 1) && len < 4 * big + 4096); /* Gemma drops nothing here */
        assert_non_null(strstr(out, text + 1));
        free(out);
    }
    double per_family = (mh_now_mono() - t0) / CHAT_FAMILY_COUNT;

    const size_t n = 200000;
    chat_message *many = malloc(n * sizeof *many);
    assert_non_null(many);
    for (size_t i = 0; i < n; i++) many[i] = (chat_message){i % 2 ? "assistant" : "user", "hi"};
    t0 = mh_now_mono();
    char *out = format_ok(CHAT_GEMMA, many, n, 1);
    double many_s = mh_now_mono() - t0;
    assert_true(strlen(out) > n * 20);
    free(out);
    free(many);
    free(text);
    /* a few ms each on this machine; quadratic copying of 4 MB would take far longer */
    if (per_family > 0.5 || many_s > 1.0)
        fail_msg("too slow: %.3f s per family for 4 MB, %.3f s for %zu messages", per_family,
                 many_s, n);
}

/* ==== Optional: compare with llama.cpp itself ==== */

/* llama.cpp's C API, for the comparison below. */
struct llama_chat_message_abi {
    const char *role;
    const char *content;
};
typedef int32_t (*llama_apply_fn)(const char *tmpl, const struct llama_chat_message_abi *chat,
                                  size_t n_msg, bool add_ass, char *buf, int32_t length);

/* With MODELHUB_LIBLLAMA set to a libllama.so, every family we format is compared with
 * llama_chat_apply_template on random conversations (skipped otherwise). */
static void test_matches_libllama(void **state) {
    (void)state;
    const char *lib = getenv("MODELHUB_LIBLLAMA");
    if (!lib || !*lib) {
        skip();
        return;
    }
    void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!handle) fail_msg("dlopen %s: %s", lib, dlerror());
    llama_apply_fn apply;
    apply = (llama_apply_fn)dlsym(handle, "llama_chat_apply_template");
    assert_non_null(apply);

    static const char *const roles[] = {"system", "user", "assistant"};
    static const char *const texts[] = {
        "Hello", "   I am an assistant   ", "", " \t\n", "two\nlines", "\nlead", "trail \n",
        "a  b"};
    const int32_t cap = 1 << 16;
    char *buf = malloc((size_t)cap);
    assert_non_null(buf);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int f = CHAT_UNKNOWN + 1; f < CHAT_FAMILY_COUNT; f++) {
        for (int trial = 0; trial < 500; trial++) {
            chat_message m[6];
            size_t n = (size_t)(trial % 7);
            for (size_t i = 0; i < n; i++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                m[i].role = roles[(rng >> 33) % 3];
                m[i].content = texts[(rng >> 40) % MH_ARRAY_LEN(texts)];
            }
            int gen = trial & 1;
            struct llama_chat_message_abi lm[6];
            for (size_t i = 0; i < n; i++)
                lm[i] = (struct llama_chat_message_abi){m[i].role, m[i].content};
            int32_t got = apply(chat_family_name(f), lm, n, gen, buf, cap);
            char *ours = format_ok(f, m, n, gen);
            if (got < 0 || (size_t)got != strlen(ours) || memcmp(buf, ours, (size_t)got) != 0)
                fail_msg("%s differs from llama.cpp:\n  llama.cpp [%.*s]\n  ours      [%s]",
                         chat_family_name(f), got < 0 ? 0 : got, buf, ours);
            free(ours);
        }
    }
    /* and the template files are detected as llama.cpp detects them */
    struct llama_chat_message_abi lm[N_CONV];
    for (size_t i = 0; i < N_CONV; i++)
        lm[i] = (struct llama_chat_message_abi){conversation[i].role, conversation[i].content};
    for (size_t i = 0; i < MH_ARRAY_LEN(template_files); i++) {
        char *text = read_template(template_files[i].file);
        int32_t got = apply(text, lm, N_CONV, true, buf, cap);
        char *ours = format_ok(chat_detect(text), conversation, N_CONV, 1);
        if (got < 0 || (size_t)got != strlen(ours) || memcmp(buf, ours, (size_t)got) != 0)
            fail_msg("%s.jinja: llama.cpp formats it differently", template_files[i].file);
        free(ours);
        free(text);
    }
    free(buf);
    dlclose(handle);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_family_formats_the_conversation),
        cmocka_unit_test(test_detect_template_files),
        cmocka_unit_test(test_detect_names_and_empty),
        cmocka_unit_test(test_detect_unknown),
        cmocka_unit_test(test_detect_order),
        cmocka_unit_test(test_fallback_format),
        cmocka_unit_test(test_generation_prompt_and_edges),
        cmocka_unit_test(test_bad_roles),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_large_input_is_linear),
        cmocka_unit_test(test_matches_libllama),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
