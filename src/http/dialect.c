/* dialect.c — Ollama, Anthropic Messages and OpenAI Responses over OpenAI requests and answers.
 *
 * Requests: each dialect has a table of the fields it accepts; any other non-null field is a 400
 * naming it. Accepted fields either map onto an OpenAI field or are accepted only with the value
 * the server honours (e.g. Ollama's `format` only empty, Responses' `store` only false).
 *
 * Answers: a dialect_out follows one OpenAI answer. For a stream it emits the dialect's opening
 * events on the first chunk, one delta per content chunk, remembers the finish reason and the
 * usage chunk (the translated request always asks for stream_options.include_usage), and
 * emits the closing events at [DONE], when the totals are known.
 */
#include "http/dialect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ==== Helpers ==== */

static int unsupported(http_error *e, const char *field, const char *why) {
    return http_error_set(e, 400, NULL, field, NULL, "'%s' is not supported%s%s", field,
                          why ? ": " : "", why ? why : "");
}

/* Every non-null member of `in` must be in `allowed` (NULL-terminated). */
static int check_known(const json_t *in, const char *const *allowed, const char *prefix,
                       http_error *e) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)in, key, v) {
        if (json_is_null(v)) continue;
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, key) == 0;
        if (!ok) {
            char field[192];
            snprintf(field, sizeof field, "%s%s", prefix, key);
            return unsupported(e, field, "unknown or unsupported field");
        }
    }
    return 0;
}

/* A field accepted only when absent, null, false, "" or an empty array/object. */
static int only_empty(const json_t *in, const char *key, const char *why, http_error *e) {
    const json_t *v = json_object_get(in, key);
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_string(v) && json_string_length(v) == 0) return 0;
    if (json_is_array(v) && json_array_size(v) == 0) return 0;
    if (json_is_object(v) && json_object_size(v) == 0) return 0;
    return unsupported(e, key, why);
}

/* Rename the param of an error from a getter on a nested object ("top_k" -> "options.top_k"). */
static int nested(http_error *e, const char *prefix, const char *key) {
    char field[192];
    snprintf(field, sizeof field, "%s%s", prefix, key);
    snprintf(e->param, sizeof e->param, "%.63s", field);
    return -1;
}

/* Copy a number (or integer) member of `src` into `dst` under `to`, after a range check. */
static int copy_number(const json_t *src, const char *key, const char *prefix, double min,
                       double max, json_t *dst, const char *to, http_error *e) {
    double v;
    const json_t *j = json_object_get(src, key);
    if (!j || json_is_null(j)) return 0;
    if (http_json_get_number(src, key, 0, min, max, 0, &v, e) < 0) return nested(e, prefix, key);
    json_object_set_new(dst, to, json_real(v));
    return 0;
}

static int copy_int(const json_t *src, const char *key, const char *prefix, long long min,
                    long long max, json_t *dst, const char *to, http_error *e) {
    long long v;
    const json_t *j = json_object_get(src, key);
    if (!j || json_is_null(j)) return 0;
    if (http_json_get_int(src, key, 0, min, max, 0, &v, e) < 0) return nested(e, prefix, key);
    json_object_set_new(dst, to, json_integer((json_int_t)v));
    return 0;
}

/* A string or an array of strings -> an OpenAI "stop" array on dst. */
static int copy_stop(const json_t *src, const char *key, const char *prefix, json_t *dst,
                     http_error *e) {
    const json_t *v = json_object_get(src, key);
    char field[192];
    snprintf(field, sizeof field, "%s%s", prefix, key);
    if (!v || json_is_null(v)) return 0;
    json_t *stop = json_array();
    if (json_is_string(v)) {
        json_array_append(stop, (json_t *)v);
    } else if (json_is_array(v) && json_array_size(v) <= 16) {
        size_t i;
        const json_t *s;
        json_array_foreach(v, i, s) {
            if (!json_is_string(s)) break;
            json_array_append(stop, (json_t *)s);
        }
    }
    if (json_array_size(stop) == 0 && !(json_is_array(v) && json_array_size(v) == 0)) {
        json_decref(stop);
        return http_error_set(e, 400, NULL, field, NULL,
                              "'%s' must be a string or an array of at most 16 strings", field);
    }
    if (json_is_array(v) && json_array_size(stop) != json_array_size(v)) {
        json_decref(stop);
        return http_error_set(e, 400, NULL, field, NULL, "'%s' must hold only strings", field);
    }
    json_object_set_new(dst, "stop", stop);
    return 0;
}

static int copy_model(const json_t *in, json_t *out, http_error *e) {
    const char *model;
    if (http_json_get_string(in, "model", 1, 256, NULL, &model, e) < 0) return -1;
    json_object_set_new(out, "model", json_string(model));
    return 0;
}

static int get_stream(const json_t *in, int def, json_t *out, int *stream, http_error *e) {
    if (http_json_get_bool(in, "stream", 0, def, stream, e) < 0) return -1;
    json_object_set_new(out, "stream", json_boolean(*stream));
    if (*stream) json_object_set_new(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
    return 0;
}

static json_t *message(const char *role, const char *content) {
    return json_pack("{s:s, s:s}", "role", role, "content", content);
}

/* ==== Ollama requests ==== */

/* options -> OpenAI sampling fields. */
static int ollama_options(const json_t *in, json_t *out, http_error *e) {
    static const char *const allowed[] = {"temperature",
                                          "top_k",
                                          "top_p",
                                          "min_p",
                                          "seed",
                                          "num_predict",
                                          "stop",
                                          "repeat_penalty",
                                          "presence_penalty",
                                          "frequency_penalty",
                                          NULL};
    const json_t *o = json_object_get(in, "options");
    if (!o || json_is_null(o)) return 0;
    if (!json_is_object(o))
        return http_error_set(e, 400, NULL, "options", NULL, "'options' must be an object");
    const char *p = "options.";
    if (check_known(o, allowed, p, e) < 0 ||
        copy_number(o, "temperature", p, 0, 2, out, "temperature", e) < 0 ||
        copy_number(o, "top_p", p, 0, 1, out, "top_p", e) < 0 ||
        copy_number(o, "min_p", p, 0, 1, out, "min_p", e) < 0 ||
        copy_int(o, "top_k", p, 0, 1 << 24, out, "top_k", e) < 0 ||
        copy_int(o, "seed", p, INT64_MIN, INT64_MAX, out, "seed", e) < 0 ||
        copy_number(o, "repeat_penalty", p, 0.01, 100, out, "repeat_penalty", e) < 0 ||
        copy_number(o, "presence_penalty", p, -2, 2, out, "presence_penalty", e) < 0 ||
        copy_number(o, "frequency_penalty", p, -2, 2, out, "frequency_penalty", e) < 0 ||
        copy_stop(o, "stop", p, out, e) < 0)
        return -1;
    long long n;
    if (http_json_get_int(o, "num_predict", 0, -2, 1 << 24, -1, &n, e) < 0)
        return nested(e, p, "num_predict");
    if (n == 0)
        return http_error_set(e, 400, NULL, "options.num_predict", NULL,
                              "'options.num_predict' must be positive, or -1 for no limit");
    if (n > 0) json_object_set_new(out, "max_tokens", json_integer((json_int_t)n));
    return 0; /* -1 (no limit) and -2 (fill the context) both run to the context's end */
}

/* Ollama's "format": "json" or a JSON schema -> OpenAI's response_format (constrained output). */
static int ollama_format(const json_t *in, json_t *out, http_error *e) {
    const json_t *f = json_object_get(in, "format");
    if (!f || json_is_null(f) || (json_is_string(f) && json_string_length(f) == 0)) return 0;
    if (json_is_string(f) && strcmp(json_string_value(f), "json") == 0) {
        json_object_set_new(out, "response_format", json_pack("{s:s}", "type", "json_object"));
        return 0;
    }
    if (!json_is_object(f))
        return http_error_set(e, 400, NULL, "format", NULL,
                              "'format' must be \"json\" or a JSON schema object");
    json_object_set_new(out, "response_format",
                        json_pack("{s:s, s:{s:s, s:O}}", "type", "json_schema", "json_schema",
                                  "name", "format", "schema", f));
    return 0;
}

/* The fields every Ollama generation route shares. */
static int ollama_common(const json_t *in, json_t *out, int *stream, http_error *e) {
    if (copy_model(in, out, e) < 0 || get_stream(in, 1, out, stream, e) < 0 ||
        ollama_format(in, out, e) < 0 ||
        only_empty(in, "keep_alive", "the server's idle unload decides when a model unloads", e) <
            0 ||
        only_empty(in, "think", "thinking is not supported", e) < 0 ||
        only_empty(in, "images", "images are not supported", e) < 0)
        return -1;
    return ollama_options(in, out, e);
}

static int ollama_chat(const json_t *in, json_t *out, int *stream, http_error *e) {
    static const char *const allowed[] = {"model",      "messages", "stream", "options", "format",
                                          "keep_alive", "think",    "tools",  NULL};
    static const char *const msg_allowed[] = {"role",     "content",    "images",
                                              "thinking", "tool_calls", NULL};
    if (check_known(in, allowed, "", e) < 0 || ollama_common(in, out, stream, e) < 0 ||
        only_empty(in, "tools", "tools are not supported", e) < 0)
        return -1;
    const json_t *msgs;
    if (http_json_get_array(in, "messages", 1, &msgs, e) < 0) return -1;
    json_t *list = json_array();
    json_object_set_new(out, "messages", list);
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "messages[%zu].", i);
        if (!json_is_object(m))
            return http_error_set(e, 400, NULL, "messages", NULL, "messages[%zu] must be an object",
                                  i);
        const char *role, *content;
        if (check_known(m, msg_allowed, prefix, e) < 0) return -1;
        if (http_json_get_string(m, "role", 1, 32, NULL, &role, e) < 0 ||
            http_json_get_string(m, "content", 0, 0, "", &content, e) < 0)
            return nested(e, prefix, e->param);
        if (only_empty(m, "images", "images are not supported", e) < 0 ||
            only_empty(m, "tool_calls", "tools are not supported", e) < 0 ||
            only_empty(m, "thinking", "thinking is not supported", e) < 0)
            return nested(e, prefix, e->param);
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))
            return http_error_set(e, 400, NULL, "messages", NULL,
                                  "messages[%zu].role must be system, user or assistant", i);
        json_array_append_new(list, message(role, content));
    }
    return 0;
}

static int ollama_generate(const json_t *in, json_t *out, int *stream, const char **path,
                           http_error *e) {
    static const char *const allowed[] = {"model",      "prompt", "suffix", "system", "template",
                                          "context",    "stream", "raw",    "format", "options",
                                          "keep_alive", "images", "think",  NULL};
    if (check_known(in, allowed, "", e) < 0 || ollama_common(in, out, stream, e) < 0 ||
        only_empty(in, "suffix", "insertion is not supported", e) < 0 ||
        only_empty(in, "template", "the model's own chat template is used", e) < 0 ||
        only_empty(in, "context", "pass the conversation as text instead", e) < 0)
        return -1;
    const char *prompt, *system;
    int raw;
    if (http_json_get_string(in, "prompt", 1, 0, NULL, &prompt, e) < 0 ||
        http_json_get_string(in, "system", 0, 0, NULL, &system, e) < 0 ||
        http_json_get_bool(in, "raw", 0, 0, &raw, e) < 0)
        return -1;
    if (raw) {
        if (system)
            return http_error_set(e, 400, NULL, "system", NULL,
                                  "'system' cannot be combined with raw: true");
        json_object_set_new(out, "prompt", json_string(prompt));
        *path = "/v1/completions";
        return 0;
    }
    json_t *list = json_array();
    if (system) json_array_append_new(list, message("system", system));
    json_array_append_new(list, message("user", prompt));
    json_object_set_new(out, "messages", list);
    return 0;
}

static int ollama_embed(const json_t *in, json_t *out, int legacy, http_error *e) {
    static const char *const allowed[] = {"model",   "input",      "truncate", "dimensions",
                                          "options", "keep_alive", NULL};
    static const char *const legacy_allowed[] = {"model", "prompt", "options", "keep_alive", NULL};
    if (check_known(in, legacy ? legacy_allowed : allowed, "", e) < 0 ||
        copy_model(in, out, e) < 0 ||
        only_empty(in, "keep_alive", "the server's idle unload decides when a model unloads", e) <
            0 ||
        only_empty(in, "options", "embeddings take no options", e) < 0 ||
        only_empty(in, "dimensions", "the model's full dimension is returned", e) < 0)
        return -1;
    const json_t *truncate = json_object_get(in, "truncate");
    if (truncate && json_is_true(truncate))
        return unsupported(e, "truncate",
                           "inputs longer than the context are refused; send truncate: false");
    if (truncate && !json_is_null(truncate) && !json_is_boolean(truncate))
        return http_error_set(e, 400, NULL, "truncate", NULL, "'truncate' must be a boolean");
    const char *key = legacy ? "prompt" : "input";
    const json_t *input = json_object_get(in, key);
    if (!input || json_is_null(input))
        return http_error_set(e, 400, NULL, key, NULL, "missing required parameter '%s'", key);
    if (!json_is_string(input) && !(json_is_array(input) && !legacy))
        return http_error_set(e, 400, NULL, key, NULL, "'%s' must be a string%s", key,
                              legacy ? "" : " or an array of strings");
    json_object_set(out, "input", (json_t *)input);
    return 0;
}

/* ==== Anthropic and Responses requests ==== */

/* Anthropic content: a string or text blocks, joined. Returns a new string or NULL + e. */
static char *anthropic_text(const json_t *v, const char *field, http_error *e) {
    if (json_is_string(v)) return mh_xstrdup(json_string_value(v));
    if (!json_is_array(v)) {
        http_error_set(e, 400, NULL, field, NULL, "'%s' must be a string or text blocks", field);
        return NULL;
    }
    mh_buf b = {0};
    mh_buf_append(&b, "", 0);
    size_t i;
    const json_t *blk;
    json_array_foreach(v, i, blk) {
        static const char *const blk_allowed[] = {"type", "text", NULL};
        const char *type = json_string_value(json_object_get(blk, "type"));
        const json_t *text = json_object_get(blk, "text");
        char prefix[192];
        snprintf(prefix, sizeof prefix, "%s[%zu].", field, i);
        if (!json_is_object(blk) || !type || strcmp(type, "text") || !json_is_string(text)) {
            http_error_set(e, 400, NULL, field, NULL,
                           "%s[%zu]: only content blocks of type 'text' are supported", field, i);
            mh_buf_free(&b);
            return NULL;
        }
        if (check_known(blk, blk_allowed, prefix, e) < 0) {
            mh_buf_free(&b);
            return NULL;
        }
        mh_buf_append(&b, json_string_value(text), json_string_length(text));
    }
    return b.data;
}

static int anthropic_messages(const json_t *in, json_t *out, int *stream, http_error *e) {
    static const char *const allowed[] = {"model",          "max_tokens",  "messages", "system",
                                          "stop_sequences", "temperature", "top_p",    "top_k",
                                          "stream",         "metadata",    NULL};
    if (check_known(in, allowed, "", e) < 0 || copy_model(in, out, e) < 0) return -1;
    long long max_tokens;
    if (http_json_get_int(in, "max_tokens", 1, 1, 1 << 24, 0, &max_tokens, e) < 0) return -1;
    json_object_set_new(out, "max_tokens", json_integer((json_int_t)max_tokens));
    if (get_stream(in, 0, out, stream, e) < 0 ||
        copy_number(in, "temperature", "", 0, 1, out, "temperature", e) < 0 ||
        copy_number(in, "top_p", "", 0, 1, out, "top_p", e) < 0 ||
        copy_int(in, "top_k", "", 0, 1 << 24, out, "top_k", e) < 0 ||
        copy_stop(in, "stop_sequences", "", out, e) < 0)
        return -1;
    const json_t *meta = json_object_get(in, "metadata");
    if (meta && !json_is_null(meta)) {
        static const char *const meta_allowed[] = {"user_id", NULL};
        const char *user;
        if (!json_is_object(meta))
            return http_error_set(e, 400, NULL, "metadata", NULL, "'metadata' must be an object");
        if (check_known(meta, meta_allowed, "metadata.", e) < 0 ||
            http_json_get_string(meta, "user_id", 0, 256, NULL, &user, e) < 0)
            return nested(e, "metadata.", "user_id");
        if (user) json_object_set_new(out, "user", json_string(user));
    }
    json_t *list = json_array();
    json_object_set_new(out, "messages", list);
    const json_t *sys = json_object_get(in, "system");
    if (sys && !json_is_null(sys)) {
        char *text = anthropic_text(sys, "system", e);
        if (!text) return -1;
        json_array_append_new(list, message("system", text));
        free(text);
    }
    const json_t *msgs;
    if (http_json_get_array(in, "messages", 1, &msgs, e) < 0) return -1;
    if (json_array_size(msgs) == 0)
        return http_error_set(e, 400, NULL, "messages", NULL, "'messages' must not be empty");
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        static const char *const msg_allowed[] = {"role", "content", NULL};
        char prefix[48], field[192];
        snprintf(prefix, sizeof prefix, "messages[%zu].", i);
        snprintf(field, sizeof field, "messages[%zu].content", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role || (strcmp(role, "user") && strcmp(role, "assistant")))
            return http_error_set(e, 400, NULL, "messages", NULL,
                                  "messages[%zu].role must be 'user' or 'assistant'", i);
        if (check_known(m, msg_allowed, prefix, e) < 0) return -1;
        char *text = anthropic_text(json_object_get(m, "content"), field, e);
        if (!text) return -1;
        json_array_append_new(list, message(role, text));
        free(text);
        if (i + 1 == json_array_size(msgs) && strcmp(role, "assistant") == 0)
            return http_error_set(e, 400, NULL, "messages", NULL,
                                  "a final assistant message (prefill) is not supported");
    }
    return 0;
}

/* Responses input items: {role, content} messages (type "message" or none). */
static int responses_input(const json_t *input, json_t *list, http_error *e) {
    if (json_is_string(input)) {
        json_array_append_new(list, message("user", json_string_value(input)));
        return 0;
    }
    if (!json_is_array(input) || json_array_size(input) == 0)
        return http_error_set(e, 400, NULL, "input", NULL,
                              "'input' must be a string or a non-empty array of messages");
    size_t i;
    const json_t *it;
    json_array_foreach(input, i, it) {
        static const char *const item_allowed[] = {"type", "role", "content", "id", "status", NULL};
        char prefix[48];
        snprintf(prefix, sizeof prefix, "input[%zu].", i);
        const char *type = json_string_value(json_object_get(it, "type"));
        const char *role = json_string_value(json_object_get(it, "role"));
        if (!json_is_object(it) || (type && strcmp(type, "message")) || !role ||
            (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") &&
             strcmp(role, "developer")))
            return http_error_set(e, 400, NULL, "input", NULL,
                                  "input[%zu] must be a message with role user, assistant, "
                                  "system or developer",
                                  i);
        if (check_known(it, item_allowed, prefix, e) < 0) return -1;
        const json_t *content = json_object_get(it, "content");
        if (!strcmp(role, "developer")) role = "system";
        if (json_is_string(content)) {
            json_array_append_new(list, message(role, json_string_value(content)));
            continue;
        }
        if (!json_is_array(content))
            return http_error_set(e, 400, NULL, "input", NULL,
                                  "input[%zu].content must be a string or text parts", i);
        mh_buf b = {0};
        mh_buf_append(&b, "", 0);
        size_t k;
        const json_t *part;
        json_array_foreach(content, k, part) {
            const char *pt = json_string_value(json_object_get(part, "type"));
            const json_t *text = json_object_get(part, "text");
            if (!pt || (strcmp(pt, "input_text") && strcmp(pt, "output_text")) ||
                !json_is_string(text)) {
                mh_buf_free(&b);
                return http_error_set(e, 400, NULL, "input", NULL,
                                      "input[%zu].content[%zu]: only input_text and output_text "
                                      "parts are supported",
                                      i, k);
            }
            mh_buf_append(&b, json_string_value(text), json_string_length(text));
        }
        json_array_append_new(list, message(role, b.data));
        mh_buf_free(&b);
    }
    return 0;
}

static int responses(const json_t *in, json_t *out, int *stream, http_error *e) {
    static const char *const allowed[] = {
        "model",   "input",    "instructions", "max_output_tokens",   "temperature",
        "top_p",   "stream",   "user",         "safety_identifier",   "store",
        "text",    "tools",    "tool_choice",  "parallel_tool_calls", "truncation",
        "include", "metadata", "reasoning",    "background",          "service_tier",
        NULL};
    if (check_known(in, allowed, "", e) < 0 || copy_model(in, out, e) < 0 ||
        get_stream(in, 0, out, stream, e) < 0 ||
        copy_number(in, "temperature", "", 0, 2, out, "temperature", e) < 0 ||
        copy_number(in, "top_p", "", 0, 1, out, "top_p", e) < 0 ||
        copy_int(in, "max_output_tokens", "", 1, 1 << 24, out, "max_tokens", e) < 0 ||
        only_empty(in, "store", "stored responses are not supported; send store: false", e) < 0 ||
        only_empty(in, "tools", "tools are not supported", e) < 0 ||
        only_empty(in, "include", "no extra output can be included", e) < 0 ||
        only_empty(in, "metadata", "responses are not stored", e) < 0 ||
        only_empty(in, "reasoning", "reasoning is not supported", e) < 0 ||
        only_empty(in, "background", "background responses are not supported", e) < 0)
        return -1;
    const char *s;
    if (http_json_get_string(in, "tool_choice", 0, 16, "none", &s, e) < 0) return -1;
    if (strcmp(s, "none") && strcmp(s, "auto")) return unsupported(e, "tool_choice", "no tools");
    if (http_json_get_string(in, "truncation", 0, 16, "disabled", &s, e) < 0) return -1;
    if (strcmp(s, "disabled")) return unsupported(e, "truncation", "only 'disabled'");
    if (http_json_get_string(in, "service_tier", 0, 16, "auto", &s, e) < 0) return -1;
    if (strcmp(s, "auto") && strcmp(s, "default"))
        return unsupported(e, "service_tier", "only 'auto' and 'default'");
    int ptc;
    if (http_json_get_bool(in, "parallel_tool_calls", 0, 0, &ptc, e) < 0) return -1;
    const json_t *text = json_object_get(in, "text");
    if (text && !json_is_null(text)) {
        const json_t *fmt = json_object_get(text, "format");
        const char *ft = json_string_value(json_object_get(fmt, "type"));
        if (!json_is_object(text) || json_object_size(text) != (fmt ? 1u : 0u) ||
            (fmt && (!ft || (strcmp(ft, "text") && strcmp(ft, "json_object") &&
                             strcmp(ft, "json_schema")))))
            return unsupported(e, "text",
                               "text.format must be of type text, json_object or json_schema");
        if (fmt && strcmp(ft, "json_object") == 0)
            json_object_set_new(out, "response_format", json_pack("{s:s}", "type", ft));
        if (fmt && strcmp(ft, "json_schema") == 0) { /* flat here, nested in chat */
            json_t *js = json_deep_copy(fmt);
            json_object_del(js, "type");
            json_object_set_new(out, "response_format",
                                json_pack("{s:s, s:o}", "type", ft, "json_schema", js));
        }
    }
    const char *user;
    if (http_json_get_string(in, "user", 0, 256, NULL, &user, e) < 0 ||
        http_json_get_string(in, "safety_identifier", 0, 256, user, &user, e) < 0)
        return -1;
    if (user) json_object_set_new(out, "user", json_string(user));
    const char *instructions;
    if (http_json_get_string(in, "instructions", 0, 0, NULL, &instructions, e) < 0) return -1;
    json_t *list = json_array();
    json_object_set_new(out, "messages", list);
    if (instructions) json_array_append_new(list, message("system", instructions));
    const json_t *input = json_object_get(in, "input");
    if (!input || json_is_null(input))
        return http_error_set(e, 400, NULL, "input", NULL, "missing required parameter 'input'");
    return responses_input(input, list, e);
}

int dialect_translate(dialect_api api, const json_t *in, dialect_request *out, http_error *e) {
    *out = (dialect_request){.path = "/v1/chat/completions"};
    if (!json_is_object(in))
        return http_error_set(e, 400, NULL, NULL, NULL, "the request body must be a JSON object");
    json_t *body = json_object();
    int rc;
    switch (api) {
    case DIALECT_OLLAMA_CHAT: rc = ollama_chat(in, body, &out->stream, e); break;
    case DIALECT_OLLAMA_GENERATE:
        rc = ollama_generate(in, body, &out->stream, &out->path, e);
        break;
    case DIALECT_OLLAMA_EMBED:
    case DIALECT_OLLAMA_EMBEDDINGS:
        rc = ollama_embed(in, body, api == DIALECT_OLLAMA_EMBEDDINGS, e);
        out->path = "/v1/embeddings";
        break;
    case DIALECT_ANTHROPIC_MESSAGES: rc = anthropic_messages(in, body, &out->stream, e); break;
    case DIALECT_OPENAI_RESPONSES: rc = responses(in, body, &out->stream, e); break;
    default: rc = http_error_set(e, 500, NULL, NULL, NULL, "unknown dialect %d", (int)api);
    }
    if (rc < 0) {
        json_decref(body);
        return -1;
    }
    out->body = body;
    out->model = json_string_value(json_object_get(body, "model"));
    return 0;
}

/* ==== Errors ==== */

static int is_anthropic(dialect_api api) {
    return api == DIALECT_ANTHROPIC_MESSAGES;
}
static int is_ollama(dialect_api api) {
    return api <= DIALECT_OLLAMA_EMBEDDINGS;
}

static const char *anthropic_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

json_t *dialect_error_body(dialect_api api, const http_error *e) {
    if (is_ollama(api)) return json_pack("{s:s}", "error", e->message);
    if (is_anthropic(api))
        return json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                         anthropic_error_type(e->status), "message", e->message);
    return http_error_envelope(e);
}

int dialect_error_parse(const json_t *body, int status, http_error *e) {
    const json_t *err = json_object_get(body, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    if (!msg) {
        http_error_set(e, status >= 400 ? status : 500, NULL, NULL, NULL,
                       "the model's server answered with status %d", status);
        return -1;
    }
    http_error_set(e, status >= 400 ? status : 500, json_string_value(json_object_get(err, "type")),
                   json_string_value(json_object_get(err, "param")),
                   json_string_value(json_object_get(err, "code")), "%s", msg);
    return 0;
}

/* ==== Answers ==== */

struct dialect_out {
    dialect_api api;
    int stream, started, closed;
    double t_start, t_first; /* monotonic: the request, the first generated text */
    long created;
    char id[48], item_id[48];
    char *model;     /* never NULL: the request's, else the first chunk's, whole */
    char finish[16]; /* the OpenAI finish_reason, "" until seen */
    long long prompt_tokens, completion_tokens;
    int have_usage;
    long long n_deltas; /* content chunks seen (the eval count when no usage arrives) */
    long long seq;      /* Responses: sequence_number of the next event */
    mh_buf text;        /* Responses, and a gathered stream: the whole text */
    int failed;         /* a gathered stream carried an error: err */
    http_error err;
};

dialect_out *dialect_out_new(dialect_api api, int stream, const char *model) {
    static unsigned long counter;
    dialect_out *d = mh_xcalloc(1, sizeof *d);
    d->api = api;
    d->stream = stream;
    d->t_start = mh_now_mono();
    d->created = (long)mh_now_wall();
    unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(d->id, sizeof d->id, "%s_%lx%06lx", api == DIALECT_OPENAI_RESPONSES ? "resp" : "msg",
             (unsigned long)d->created, n & 0xffffff);
    snprintf(d->item_id, sizeof d->item_id, "msg_%lx%06lx", (unsigned long)d->created,
             n & 0xffffff);
    mh_buf_append(&d->text, "", 0);
    d->model = mh_xstrdup(model ? model : "");
    return d;
}

void dialect_out_free(dialect_out *d) {
    if (!d) return;
    mh_buf_free(&d->text);
    free(d->model);
    free(d);
}

const char *dialect_out_stream_type(const dialect_out *d) {
    return is_ollama(d->api) ? "application/x-ndjson" : "text/event-stream";
}

dialect_api dialect_out_api(const dialect_out *d) {
    return d->api;
}

int dialect_out_closed(const dialect_out *d) {
    return d->closed;
}

static void rfc3339(double wall, char *buf, size_t len) {
    time_t t = (time_t)wall;
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%06dZ", (int)((wall - (double)t) * 1e6));
}

static json_int_t ns(double s) {
    return (json_int_t)(s * 1e9);
}

static const char *anthropic_stop(const char *finish) {
    return strcmp(finish, "length") == 0 ? "max_tokens" : "end_turn";
}

static void take_usage(dialect_out *d, const json_t *usage) {
    const json_t *p = json_object_get(usage, "prompt_tokens");
    const json_t *c = json_object_get(usage, "completion_tokens");
    if (json_is_integer(p)) d->prompt_tokens = json_integer_value(p), d->have_usage = 1;
    if (json_is_integer(c)) d->completion_tokens = json_integer_value(c);
}

/* The upstream's finish_reason: one of OpenAI's, anything else (an odd upstream) reads "stop". */
static void take_finish(dialect_out *d, const char *finish) {
    static const char *const known[] = {"stop", "length", "tool_calls", "content_filter"};
    const char *f = "stop";
    for (size_t i = 0; i < MH_ARRAY_LEN(known); i++)
        if (strcmp(finish, known[i]) == 0) f = known[i];
    snprintf(d->finish, sizeof d->finish, "%s", f);
}

static void take_model(dialect_out *d, const json_t *openai) {
    const char *m = json_string_value(json_object_get(openai, "model"));
    if (m && !d->model[0]) {
        free(d->model);
        d->model = mh_xstrdup(m);
    }
}

/* The Ollama timing and count fields, onto `o`. */
static void ollama_stats(const dialect_out *d, json_t *o) {
    double now = mh_now_mono();
    double first = d->t_first > 0 ? d->t_first : now;
    long long evals = d->have_usage ? d->completion_tokens : d->n_deltas;
    json_object_set_new(o, "done_reason", json_string(d->finish[0] ? d->finish : "stop"));
    json_object_set_new(o, "total_duration", json_integer(ns(now - d->t_start)));
    json_object_set_new(o, "load_duration", json_integer(0));
    json_object_set_new(o, "prompt_eval_count", json_integer(d->prompt_tokens));
    json_object_set_new(o, "prompt_eval_duration", json_integer(ns(first - d->t_start)));
    json_object_set_new(o, "eval_count", json_integer(evals));
    json_object_set_new(o, "eval_duration", json_integer(ns(now - first)));
}

/* An Ollama chat/generate object with `text` (done: false unless final). */
static json_t *ollama_object(const dialect_out *d, const char *text, size_t len, int done) {
    char at[48];
    rfc3339(mh_now_wall(), at, sizeof at);
    json_t *o = json_pack("{s:s, s:s}", "model", d->model, "created_at", at);
    if (d->api == DIALECT_OLLAMA_CHAT)
        json_object_set_new(o, "message",
                            json_pack("{s:s, s:s%}", "role", "assistant", "content", text, len));
    else
        json_object_set_new(o, "response", json_stringn(text, len));
    json_object_set_new(o, "done", json_boolean(done));
    if (done) ollama_stats(d, o);
    return o;
}

static json_t *anthropic_usage(const dialect_out *d) {
    return json_pack("{s:I, s:I}", "input_tokens", (json_int_t)d->prompt_tokens, "output_tokens",
                     (json_int_t)d->completion_tokens);
}

static json_t *anthropic_message(const dialect_out *d, const char *text, size_t len) {
    json_t *content =
        text ? json_pack("[{s:s, s:s%}]", "type", "text", "text", text, len) : json_array();
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:n, s:o}", "id", d->id, "type", "message",
                     "role", "assistant", "model", d->model, "content", content, "stop_reason",
                     text ? json_string(anthropic_stop(d->finish)) : json_null(), "stop_sequence",
                     "usage", anthropic_usage(d));
}

static json_t *responses_part(const char *text, size_t len) {
    return json_pack("{s:s, s:s%, s:[]}", "type", "output_text", "text", text, len, "annotations");
}

static json_t *responses_item(const dialect_out *d, const char *text, size_t len, int done) {
    return json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "message", "id", d->item_id, "status",
                     !done                              ? "in_progress"
                     : strcmp(d->finish, "length") == 0 ? "incomplete"
                                                        : "completed",
                     "role", "assistant", "content",
                     text ? json_pack("[o]", responses_part(text, len)) : json_array());
}

/* The response object; `text` NULL while in progress. */
static json_t *responses_object(const dialect_out *d, const char *text, size_t len) {
    int incomplete = text && strcmp(d->finish, "length") == 0;
    const char *status = !text ? "in_progress" : incomplete ? "incomplete" : "completed";
    json_t *r = json_pack(
        "{s:s, s:s, s:I, s:s, s:n, s:o, s:s, s:o, s:b, s:n, s:s, s:[], "
        "s:{s:{s:s}}, s:s, s:b}",
        "id", d->id, "object", "response", "created_at", (json_int_t)d->created, "status", status,
        "error", "incomplete_details",
        incomplete ? json_pack("{s:s}", "reason", "max_output_tokens") : json_null(), "model",
        d->model, "output", text ? json_pack("[o]", responses_item(d, text, len, 1)) : json_array(),
        "parallel_tool_calls", 0, "previous_response_id", "tool_choice", "none", "tools", "text",
        "format", "type", "text", "truncation", "disabled", "store", 0);
    if (text)
        json_object_set_new(r, "usage",
                            json_pack("{s:I, s:{s:i}, s:I, s:{s:i}, s:I}", "input_tokens",
                                      (json_int_t)d->prompt_tokens, "input_tokens_details",
                                      "cached_tokens", 0, "output_tokens",
                                      (json_int_t)d->completion_tokens, "output_tokens_details",
                                      "reasoning_tokens", 0, "total_tokens",
                                      (json_int_t)(d->prompt_tokens + d->completion_tokens)));
    else
        json_object_set_new(r, "usage", json_null());
    return r;
}

/* Append `v` (stolen) as an SSE event named `name`, or as an NDJSON line when name is NULL. */
static void emit(dialect_out *d, mh_buf *out, const char *name, json_t *v) {
    if (d->api == DIALECT_OPENAI_RESPONSES && name) {
        json_object_set_new(v, "type", json_string(name));
        json_object_set_new(v, "sequence_number", json_integer(d->seq++));
    }
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!s) return;
    if (name)
        mh_buf_printf(out, "event: %s\ndata: %s\n\n", name, s);
    else
        mh_buf_printf(out, "%s\n", s);
    free(s);
}

static json_t *translate_response(dialect_out *d, const json_t *openai);

json_t *dialect_out_response(dialect_out *d, const json_t *openai) {
    json_t *body = translate_response(d, openai);
    if (body) return body;
    http_error e; /* an answer without the members we read (a foreign worker's odd reply) */
    http_error_set(&e, 502, NULL, NULL, NULL, "the model's answer could not be translated");
    return dialect_error_body(d->api, &e);
}

static json_t *translate_response(dialect_out *d, const json_t *openai) {
    if (json_object_get(openai, "error")) {
        http_error e;
        dialect_error_parse(openai, 500, &e);
        return dialect_error_body(d->api, &e);
    }
    take_model(d, openai);
    take_usage(d, json_object_get(openai, "usage"));
    const json_t *data = json_object_get(openai, "data");
    if (d->api == DIALECT_OLLAMA_EMBED || d->api == DIALECT_OLLAMA_EMBEDDINGS) {
        json_t *embs = json_array();
        size_t i;
        const json_t *item;
        json_array_foreach(data, i, item)
            json_array_append(embs, json_object_get(item, "embedding"));
        if (d->api == DIALECT_OLLAMA_EMBEDDINGS) {
            json_t *one = json_pack("{s:O}", "embedding", json_array_get(embs, 0));
            json_decref(embs);
            return one;
        }
        return json_pack("{s:s, s:o, s:I, s:i, s:I}", "model", d->model, "embeddings", embs,
                         "total_duration", ns(mh_now_mono() - d->t_start), "load_duration", 0,
                         "prompt_eval_count", (json_int_t)d->prompt_tokens);
    }
    const json_t *choice = json_array_get(json_object_get(openai, "choices"), 0);
    const json_t *text = json_object_get(json_object_get(choice, "message"), "content");
    if (!json_is_string(text)) text = json_object_get(choice, "text");
    const char *t = json_is_string(text) ? json_string_value(text) : "";
    size_t len = json_is_string(text) ? json_string_length(text) : 0;
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    take_finish(d, finish ? finish : "stop");
    d->n_deltas = d->completion_tokens;
    d->closed = 1;
    switch (d->api) {
    case DIALECT_ANTHROPIC_MESSAGES: return anthropic_message(d, t, len);
    case DIALECT_OPENAI_RESPONSES: return responses_object(d, t, len);
    default: return ollama_object(d, t, len, 1);
    }
}

/* The dialect's opening events, once. */
static void start_stream(dialect_out *d, mh_buf *out) {
    if (d->started) return;
    d->started = 1;
    if (d->api == DIALECT_ANTHROPIC_MESSAGES) {
        emit(d, out, "message_start",
             json_pack("{s:s, s:o}", "type", "message_start", "message",
                       anthropic_message(d, NULL, 0)));
        emit(d, out, "content_block_start",
             json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index", 0,
                       "content_block", "type", "text", "text", ""));
    } else if (d->api == DIALECT_OPENAI_RESPONSES) {
        emit(d, out, "response.created", json_pack("{s:o}", "response", responses_object(d, 0, 0)));
        emit(d, out, "response.in_progress",
             json_pack("{s:o}", "response", responses_object(d, 0, 0)));
        emit(d, out, "response.output_item.added",
             json_pack("{s:i, s:o}", "output_index", 0, "item", responses_item(d, NULL, 0, 0)));
        emit(d, out, "response.content_part.added",
             json_pack("{s:s, s:i, s:i, s:o}", "item_id", d->item_id, "output_index", 0,
                       "content_index", 0, "part", responses_part("", 0)));
    }
}

void dialect_out_first_text(dialect_out *d) {
    if (d->t_first == 0) d->t_first = mh_now_mono();
}

void dialect_out_chunk(dialect_out *d, const json_t *chunk, mh_buf *out) {
    if (d->closed) return;
    if (json_object_get(chunk, "error")) {
        http_error e;
        dialect_error_parse(chunk, 500, &e);
        dialect_out_error(d, &e, out);
        return;
    }
    take_model(d, chunk);
    take_usage(d, json_object_get(chunk, "usage"));
    if (d->stream) start_stream(d, out);
    const json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    if (finish) take_finish(d, finish);
    const json_t *text = json_object_get(json_object_get(choice, "delta"), "content");
    if (!json_is_string(text)) text = json_object_get(choice, "text");
    if (!json_is_string(text) || json_string_length(text) == 0) return;
    const char *t = json_string_value(text);
    size_t len = json_string_length(text);
    if (d->t_first == 0) d->t_first = mh_now_mono();
    d->n_deltas++;
    if (!d->stream) { /* gathered for dialect_out_whole */
        mh_buf_append(&d->text, t, len);
        return;
    }
    switch (d->api) {
    case DIALECT_ANTHROPIC_MESSAGES:
        emit(d, out, "content_block_delta",
             json_pack("{s:s, s:i, s:{s:s, s:s%}}", "type", "content_block_delta", "index", 0,
                       "delta", "type", "text_delta", "text", t, len));
        break;
    case DIALECT_OPENAI_RESPONSES:
        mh_buf_append(&d->text, t, len);
        emit(d, out, "response.output_text.delta",
             json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", d->item_id, "output_index", 0,
                       "content_index", 0, "delta", t, len, "logprobs"));
        break;
    default: emit(d, out, NULL, ollama_object(d, t, len, 0));
    }
}

void dialect_out_done(dialect_out *d, mh_buf *out) {
    if (d->closed) return;
    if (d->stream) start_stream(d, out);
    d->closed = 1;
    if (!d->have_usage) d->completion_tokens = d->n_deltas;
    if (!d->finish[0]) snprintf(d->finish, sizeof d->finish, "stop");
    if (!d->stream) return;
    if (d->api == DIALECT_ANTHROPIC_MESSAGES) {
        emit(d, out, "content_block_stop",
             json_pack("{s:s, s:i}", "type", "content_block_stop", "index", 0));
        emit(d, out, "message_delta",
             json_pack("{s:s, s:{s:s, s:n}, s:o}", "type", "message_delta", "delta", "stop_reason",
                       anthropic_stop(d->finish), "stop_sequence", "usage", anthropic_usage(d)));
        emit(d, out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
    } else if (d->api == DIALECT_OPENAI_RESPONSES) {
        const char *t = d->text.data;
        size_t len = d->text.len;
        emit(d, out, "response.output_text.done",
             json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", d->item_id, "output_index", 0,
                       "content_index", 0, "text", t, len, "logprobs"));
        emit(d, out, "response.content_part.done",
             json_pack("{s:s, s:i, s:i, s:o}", "item_id", d->item_id, "output_index", 0,
                       "content_index", 0, "part", responses_part(t, len)));
        emit(d, out, "response.output_item.done",
             json_pack("{s:i, s:o}", "output_index", 0, "item", responses_item(d, t, len, 1)));
        emit(d, out,
             strcmp(d->finish, "length") == 0 ? "response.incomplete" : "response.completed",
             json_pack("{s:o}", "response", responses_object(d, t, len)));
    } else {
        emit(d, out, NULL, ollama_object(d, "", 0, 1));
    }
}

void dialect_out_error(dialect_out *d, const http_error *e, mh_buf *out) {
    if (d->closed) return;
    d->closed = 1;
    if (!d->stream) {
        d->failed = 1;
        d->err = *e;
        return;
    }
    if (is_ollama(d->api)) {
        emit(d, out, NULL, json_pack("{s:s}", "error", e->message));
    } else if (is_anthropic(d->api)) {
        emit(d, out, "error", dialect_error_body(d->api, e));
    } else {
        emit(d, out, "error",
             json_pack("{s:s, s:s, s:o}", "code", e->code[0] ? e->code : e->type, "message",
                       e->message, "param", e->param[0] ? json_string(e->param) : json_null()));
    }
}

json_t *dialect_out_whole(dialect_out *d, int *status) {
    *status = 200;
    if (!d->closed || d->failed) {
        http_error e;
        if (!d->closed) http_error_set(&e, 502, NULL, NULL, NULL, "the model's stream ended early");
        *status = d->failed ? d->err.status : 502;
        return dialect_error_body(d->api, d->failed ? &d->err : &e);
    }
    const char *t = d->text.data;
    size_t len = d->text.len;
    switch (d->api) {
    case DIALECT_ANTHROPIC_MESSAGES: return anthropic_message(d, t, len);
    case DIALECT_OPENAI_RESPONSES: return responses_object(d, t, len);
    default: return ollama_object(d, t, len, 1);
    }
}

/* ==== Model lists ==== */

static json_t *ollama_details(void) {
    return json_pack("{s:s, s:s, s:s, s:[], s:s, s:s}", "parent_model", "", "format", "gguf",
                     "family", "", "families", "parameter_size", "", "quantization_level", "");
}

static json_t *ollama_model(const json_t *entry, int running) {
    const char *name = json_string_value(json_object_get(entry, "name"));
    const char *path = json_string_value(json_object_get(entry, "model_path"));
    struct stat st;
    int have_file = path && stat(path, &st) == 0;
    char at[48];
    json_t *o = json_pack("{s:s, s:s}", "name", name ? name : "", "model", name ? name : "");
    if (running) {
        const json_t *unload = json_object_get(entry, "unload_at");
        /* no idle unload: "never", as Ollama's keep_alive -1 shows it (far future) */
        rfc3339(json_is_number(unload) ? json_number_value(unload) : 253402300799.0, at, sizeof at);
        json_object_set_new(
            o, "size", json_integer(json_integer_value(json_object_get(entry, "memory_bytes"))));
        json_object_set_new(o, "digest", json_string(""));
        json_object_set_new(o, "details", ollama_details());
        json_object_set_new(o, "expires_at", json_string(at));
        json_object_set_new(o, "size_vram", json_integer(0));
    } else {
        rfc3339(have_file ? (double)st.st_mtime : mh_now_wall(), at, sizeof at);
        json_object_set_new(o, "modified_at", json_string(at));
        json_object_set_new(o, "size", json_integer(have_file ? (json_int_t)st.st_size : 0));
        json_object_set_new(o, "digest", json_string(""));
        json_object_set_new(o, "details", ollama_details());
    }
    return o;
}

json_t *dialect_ollama_models(const json_t *entries, int loaded_only) {
    json_t *list = json_array();
    size_t i;
    const json_t *entry;
    json_array_foreach(entries, i, entry) {
        const char *mem = json_string_value(json_object_get(entry, "memory_state"));
        if (loaded_only && !(mem && strcmp(mem, "loaded") == 0)) continue;
        json_array_append_new(list, ollama_model(entry, loaded_only));
    }
    return json_pack("{s:o}", "models", list);
}

json_t *dialect_ollama_show(const json_t *entry) {
    const char *path = json_string_value(json_object_get(entry, "model_path"));
    return json_pack("{s:s, s:s, s:s, s:o, s:{s:s}, s:[s]}", "modelfile", "", "parameters", "",
                     "template", "", "details", ollama_details(), "model_info", "general.path",
                     path ? path : "", "capabilities", "completion");
}

json_t *dialect_ollama_version(const char *version) {
    return json_pack("{s:s}", "version", version);
}

int dialect_ollama_show_name(const json_t *in, const char **name, http_error *e) {
    static const char *const allowed[] = {"model", "name", "verbose", NULL};
    *name = NULL;
    if (check_known(in, allowed, "", e) < 0 ||
        http_json_get_string(in, "name", 0, 256, NULL, name, e) < 0 ||
        http_json_get_string(in, "model", !*name, 256, *name, name, e) < 0)
        return -1;
    return 0;
}
