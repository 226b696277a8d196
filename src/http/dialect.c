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

/* ==== Tools ==== */

/* An OpenAI tool call; `args` is a JSON value (an object, as the dialects send it) written out
 * compactly, or a string taken as the arguments' text. */
static json_t *openai_call(const char *id, const char *name, const json_t *args) {
    char *text = json_is_string(args) ? mh_xstrdup(json_string_value(args))
                                      : json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *c = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function",
                          "name", name, "arguments", text ? text : "{}");
    free(text);
    return c;
}

/* The call `arguments` text as a JSON value (new reference): the object it spells, or the text
 * itself when it is not JSON. */
static json_t *call_args(const char *text) {
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
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

/* Ollama's tool messages name no call: each answers the oldest open call of its tool_name (or
 * the oldest open call when it names none). `open` holds [id, name] pairs of unanswered calls. */
static const char *ollama_answered_call(json_t *open, const char *tool_name, char *id,
                                        size_t idlen) {
    size_t k;
    const json_t *pair;
    json_array_foreach(open, k, pair) {
        const char *name = json_string_value(json_array_get(pair, 1));
        if (tool_name && strcmp(name, tool_name)) continue;
        snprintf(id, idlen, "%s", json_string_value(json_array_get(pair, 0)));
        json_array_remove(open, k);
        return id;
    }
    return NULL;
}

/* An assistant's tool_calls [{function: {name, arguments: {...}}}] -> OpenAI calls with ids
 * made up from the message and call index; each is recorded as open. */
static json_t *ollama_calls(const json_t *tc, size_t i, json_t *open, http_error *e) {
    if (!json_is_array(tc)) {
        http_error_set(e, 400, NULL, "messages", NULL, "messages[%zu].tool_calls must be an array",
                       i);
        snprintf(e->param, sizeof e->param, "messages[%zu].tool_calls", i);
        return NULL;
    }
    json_t *calls = json_array();
    size_t k;
    const json_t *c;
    json_array_foreach(tc, k, c) {
        const json_t *fn = json_object_get(c, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        const json_t *args = json_object_get(fn, "arguments");
        if (!json_is_object(c) || !json_is_object(fn) || !name || !name[0] ||
            (args && !json_is_object(args) && !json_is_string(args))) {
            json_decref(calls);
            http_error_set(e, 400, NULL, "messages", NULL,
                           "messages[%zu].tool_calls[%zu] must be {\"function\": {\"name\": "
                           "string, \"arguments\": object}}",
                           i, k);
            snprintf(e->param, sizeof e->param, "messages[%zu].tool_calls[%zu]", i, k);
            return NULL;
        }
        char id[48];
        snprintf(id, sizeof id, "call_%zu_%zu", i, k);
        json_t *empty = json_object();
        json_array_append_new(calls, openai_call(id, name, args ? args : empty));
        json_decref(empty);
        json_array_append_new(open, json_pack("[s, s]", id, name));
    }
    return calls;
}

static int ollama_chat(const json_t *in, json_t *out, int *stream, http_error *e) {
    static const char *const allowed[] = {"model",      "messages", "stream", "options", "format",
                                          "keep_alive", "think",    "tools",  NULL};
    static const char *const msg_allowed[] = {"role",       "content",   "images", "thinking",
                                              "tool_calls", "tool_name", NULL};
    if (check_known(in, allowed, "", e) < 0 || ollama_common(in, out, stream, e) < 0) return -1;
    const json_t *tools = json_object_get(in, "tools");
    if (tools && !json_is_null(tools)) { /* OpenAI's shape: the core checks each one */
        if (!json_is_array(tools))
            return http_error_set(e, 400, NULL, "tools", NULL, "'tools' must be an array");
        if (json_array_size(tools)) json_object_set(out, "tools", (json_t *)tools);
    }
    const json_t *msgs;
    if (http_json_get_array(in, "messages", 1, &msgs, e) < 0) return -1;
    json_t *list = json_array();
    json_object_set_new(out, "messages", list);
    json_t *open = json_array();
    size_t i;
    const json_t *m;
    int rc = 0;
    json_array_foreach(msgs, i, m) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "messages[%zu].", i);
        if (!json_is_object(m)) {
            rc = http_error_set(e, 400, NULL, "messages", NULL, "messages[%zu] must be an object",
                                i);
            break;
        }
        const char *role, *content, *tool_name;
        if (check_known(m, msg_allowed, prefix, e) < 0) {
            rc = -1;
            break;
        }
        if (http_json_get_string(m, "role", 1, 32, NULL, &role, e) < 0 ||
            http_json_get_string(m, "content", 0, 0, "", &content, e) < 0 ||
            http_json_get_string(m, "tool_name", 0, 256, NULL, &tool_name, e) < 0) {
            rc = nested(e, prefix, e->param);
            break;
        }
        if (only_empty(m, "images", "images are not supported", e) < 0 ||
            only_empty(m, "thinking", "thinking is not supported", e) < 0) {
            rc = nested(e, prefix, e->param);
            break;
        }
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
            strcmp(role, "tool")) {
            rc = http_error_set(e, 400, NULL, "messages", NULL,
                                "messages[%zu].role must be system, user, assistant or tool", i);
            break;
        }
        json_t *msg = message(role, content);
        const json_t *tc = json_object_get(m, "tool_calls");
        if (tc && !json_is_null(tc) && !(json_is_array(tc) && json_array_size(tc) == 0)) {
            json_t *calls = strcmp(role, "assistant") == 0 ? ollama_calls(tc, i, open, e) : NULL;
            if (!calls) {
                if (strcmp(role, "assistant")) {
                    http_error_set(e, 400, NULL, "messages", NULL,
                                   "messages[%zu].tool_calls: only assistant messages make calls",
                                   i);
                    snprintf(e->param, sizeof e->param, "messages[%zu].tool_calls", i);
                }
                json_decref(msg);
                rc = -1;
                break;
            }
            json_object_set_new(msg, "tool_calls", calls);
        }
        if (strcmp(role, "tool") == 0) {
            char id[48];
            if (!ollama_answered_call(open, tool_name, id, sizeof id)) {
                json_decref(msg);
                rc = http_error_set(e, 400, NULL, "messages", NULL,
                                    "messages[%zu]: a tool message must answer an open call of "
                                    "an earlier assistant message%s%s",
                                    i, tool_name ? " to " : "", tool_name ? tool_name : "");
                break;
            }
            json_object_set_new(msg, "tool_call_id", json_string(id));
        } else if (tool_name) {
            json_decref(msg);
            rc = http_error_set(e, 400, NULL, "messages", NULL,
                                "messages[%zu].tool_name belongs on tool messages", i);
            break;
        }
        json_array_append_new(list, msg);
    }
    json_decref(open);
    return rc;
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

/* `tools`: an array whose entries `one` turns into OpenAI function objects (NULL + e to refuse
 * one); set on `out` as OpenAI tools when there are any. */
typedef json_t *(*tool_fn)(const json_t *tool, const char *prefix, http_error *e);
static int translate_tools(const json_t *in, json_t *out, tool_fn one, http_error *e) {
    const json_t *tools = json_object_get(in, "tools");
    if (!tools || json_is_null(tools)) return 0;
    if (!json_is_array(tools))
        return http_error_set(e, 400, NULL, "tools", NULL, "'tools' must be an array");
    json_t *list = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "tools[%zu].", i);
        json_t *fn = json_is_object(t) ? one(t, prefix, e) : NULL;
        if (!fn) {
            json_decref(list);
            if (!json_is_object(t))
                http_error_set(e, 400, NULL, "tools", NULL, "tools[%zu] must be an object", i);
            return -1;
        }
        json_array_append_new(list, json_pack("{s:s, s:o}", "type", "function", "function", fn));
    }
    if (json_array_size(list))
        json_object_set_new(out, "tools", list);
    else
        json_decref(list);
    return 0;
}

/* An Anthropic tool {name, description, input_schema} as an OpenAI function. */
static json_t *anthropic_tool(const json_t *t, const char *prefix, http_error *e) {
    static const char *const allowed[] = {"name", "description", "input_schema", "type", NULL};
    const char *name, *desc, *type;
    if (check_known(t, allowed, prefix, e) < 0) return NULL;
    if (http_json_get_string(t, "type", 0, 32, "custom", &type, e) < 0 ||
        http_json_get_string(t, "name", 1, 64, NULL, &name, e) < 0 ||
        http_json_get_string(t, "description", 0, 0, NULL, &desc, e) < 0) {
        nested(e, prefix, e->param);
        return NULL;
    }
    char field[64];
    if (strcmp(type, "custom")) {
        snprintf(field, sizeof field, "%stype", prefix);
        unsupported(e, field, "only custom tools (name + input_schema)");
        return NULL;
    }
    const json_t *schema = json_object_get(t, "input_schema");
    if (!json_is_object(schema)) {
        http_error_set(e, 400, NULL, "tools", NULL, "%sinput_schema must be a JSON schema object",
                       prefix);
        nested(e, prefix, "input_schema");
        return NULL;
    }
    json_t *fn = json_pack("{s:s, s:O}", "name", name, "parameters", schema);
    if (desc) json_object_set_new(fn, "description", json_string(desc));
    return fn;
}

/* Anthropic tools and tool_choice -> OpenAI's. */
static int anthropic_tools(const json_t *in, json_t *out, http_error *e) {
    if (translate_tools(in, out, anthropic_tool, e) < 0) return -1;
    const json_t *tc = json_object_get(in, "tool_choice");
    if (!tc || json_is_null(tc)) return 0;
    static const char *const tc_allowed[] = {"type", "name", "disable_parallel_tool_use", NULL};
    const char *type, *name;
    int no_parallel;
    if (!json_is_object(tc))
        return http_error_set(e, 400, NULL, "tool_choice", NULL, "'tool_choice' must be an object");
    if (check_known(tc, tc_allowed, "tool_choice.", e) < 0) return -1;
    if (http_json_get_string(tc, "type", 1, 16, NULL, &type, e) < 0 ||
        http_json_get_string(tc, "name", 0, 64, NULL, &name, e) < 0 ||
        http_json_get_bool(tc, "disable_parallel_tool_use", 0, 0, &no_parallel, e) < 0)
        return nested(e, "tool_choice.", e->param);
    if (!strcmp(type, "auto") || !strcmp(type, "none")) { /* without tools: nothing to say */
        if (json_object_get(out, "tools"))
            json_object_set_new(out, "tool_choice", json_string(type));
    } else if (!strcmp(type, "any")) {
        json_object_set_new(out, "tool_choice", json_string("required"));
    } else if (!strcmp(type, "tool") && name) {
        json_object_set_new(
            out, "tool_choice",
            json_pack("{s:s, s:{s:s}}", "type", "function", "function", "name", name));
    } else {
        return http_error_set(e, 400, NULL, "tool_choice.type", NULL,
                              "'tool_choice.type' must be auto, any, none, or tool with a name");
    }
    if (no_parallel) json_object_set_new(out, "parallel_tool_calls", json_false());
    return 0;
}

/* One Anthropic message onto `list`: text blocks joined; an assistant's tool_use blocks become
 * its tool_calls; a user's tool_result blocks become tool messages (before the user's text). */
static int anthropic_message_in(const json_t *m, size_t i, const char *role, json_t *list,
                                http_error *e) {
    const json_t *content = json_object_get(m, "content");
    char field[64];
    snprintf(field, sizeof field, "messages[%zu].content", i);
    if (json_is_string(content)) {
        json_array_append_new(list, message(role, json_string_value(content)));
        return 0;
    }
    if (!json_is_array(content))
        return http_error_set(e, 400, NULL, "messages", NULL, "'%s' must be a string or blocks",
                              field);
    int assistant = strcmp(role, "assistant") == 0;
    mh_buf text = {0};
    mh_buf_append(&text, "", 0);
    json_t *calls = json_array();
    int n_results = 0, rc = 0;
    size_t k;
    const json_t *blk;
    json_array_foreach(content, k, blk) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "%s[%zu].", field, k);
        const char *type = json_string_value(json_object_get(blk, "type"));
        if (!json_is_object(blk) || !type) {
            rc = http_error_set(e, 400, NULL, field, NULL, "%s[%zu] must be a typed block", field,
                                k);
            break;
        }
        if (!strcmp(type, "text")) {
            static const char *const allowed[] = {"type", "text", NULL};
            const char *t;
            if (check_known(blk, allowed, prefix, e) < 0 ||
                http_json_get_string(blk, "text", 1, 0, NULL, &t, e) < 0) {
                rc = nested(e, prefix, e->param[0] ? e->param : "text");
                break;
            }
            mh_buf_append(&text, t, strlen(t));
        } else if (!strcmp(type, "tool_use") && assistant) {
            static const char *const allowed[] = {"type", "id", "name", "input", NULL};
            const char *id, *name;
            const json_t *input = json_object_get(blk, "input");
            if (check_known(blk, allowed, prefix, e) < 0 ||
                http_json_get_string(blk, "id", 1, 128, NULL, &id, e) < 0 ||
                http_json_get_string(blk, "name", 1, 64, NULL, &name, e) < 0) {
                rc = nested(e, prefix, e->param);
                break;
            }
            if (!json_is_object(input)) {
                http_error_set(e, 400, NULL, "messages", NULL, "%sinput must be an object", prefix);
                rc = nested(e, prefix, "input");
                break;
            }
            json_array_append_new(calls, openai_call(id, name, input));
        } else if (!strcmp(type, "tool_result") && !assistant) {
            static const char *const allowed[] = {"type", "tool_use_id", "content", "is_error",
                                                  NULL};
            const char *id;
            int is_error;
            if (check_known(blk, allowed, prefix, e) < 0 ||
                http_json_get_string(blk, "tool_use_id", 1, 128, NULL, &id, e) < 0 ||
                http_json_get_bool(blk, "is_error", 0, 0, &is_error, e) < 0) {
                rc = nested(e, prefix, e->param);
                break;
            }
            const json_t *rv = json_object_get(blk, "content");
            char rfield[128];
            snprintf(rfield, sizeof rfield, "%scontent", prefix);
            char *result = rv && !json_is_null(rv) ? anthropic_text(rv, rfield, e) : mh_xstrdup("");
            if (!result) {
                rc = -1;
                break;
            }
            mh_buf r = {0};
            mh_buf_printf(&r, "%s%s", is_error ? "Error: " : "", result);
            free(result);
            json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
                                                  id, "content", r.data));
            mh_buf_free(&r);
            n_results++;
        } else {
            rc = http_error_set(e, 400, NULL, field, NULL,
                                "%s[%zu]: blocks of type '%.32s' are not supported here (text; "
                                "tool_use from the assistant; tool_result from the user)",
                                field, k, type);
            break;
        }
    }
    if (rc == 0 && (assistant || text.len > 0 || n_results == 0)) {
        json_t *msg = message(role, text.data);
        if (json_array_size(calls)) json_object_set(msg, "tool_calls", calls);
        json_array_append_new(list, msg);
    }
    json_decref(calls);
    mh_buf_free(&text);
    return rc;
}

static int anthropic_messages(const json_t *in, json_t *out, int *stream, http_error *e) {
    static const char *const allowed[] = {
        "model", "max_tokens", "messages", "system", "stop_sequences", "temperature", "top_p",
        "top_k", "stream",     "metadata", "tools",  "tool_choice",    NULL};
    if (check_known(in, allowed, "", e) < 0 || copy_model(in, out, e) < 0) return -1;
    long long max_tokens;
    if (http_json_get_int(in, "max_tokens", 1, 1, 1 << 24, 0, &max_tokens, e) < 0) return -1;
    json_object_set_new(out, "max_tokens", json_integer((json_int_t)max_tokens));
    if (get_stream(in, 0, out, stream, e) < 0 ||
        copy_number(in, "temperature", "", 0, 1, out, "temperature", e) < 0 ||
        copy_number(in, "top_p", "", 0, 1, out, "top_p", e) < 0 ||
        copy_int(in, "top_k", "", 0, 1 << 24, out, "top_k", e) < 0 ||
        copy_stop(in, "stop_sequences", "", out, e) < 0 || anthropic_tools(in, out, e) < 0)
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
        char prefix[48];
        snprintf(prefix, sizeof prefix, "messages[%zu].", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role || (strcmp(role, "user") && strcmp(role, "assistant")))
            return http_error_set(e, 400, NULL, "messages", NULL,
                                  "messages[%zu].role must be 'user' or 'assistant'", i);
        if (check_known(m, msg_allowed, prefix, e) < 0 ||
            anthropic_message_in(m, i, role, list, e) < 0)
            return -1;
        if (i + 1 == json_array_size(msgs) && strcmp(role, "assistant") == 0)
            return http_error_set(e, 400, NULL, "messages", NULL,
                                  "a final assistant message (prefill) is not supported");
    }
    return 0;
}

/* A function_call input item joins the assistant message right before it (or starts one); a
 * function_call_output is a tool message. */
static int responses_call_item(const json_t *it, size_t i, const char *type, json_t *list,
                               http_error *e) {
    static const char *const call_allowed[] = {"type",      "id",     "call_id", "name",
                                               "arguments", "status", NULL};
    static const char *const out_allowed[] = {"type", "id", "call_id", "output", "status", NULL};
    char prefix[48];
    snprintf(prefix, sizeof prefix, "input[%zu].", i);
    int is_call = strcmp(type, "function_call") == 0;
    const char *call_id, *name = NULL, *text;
    if (check_known(it, is_call ? call_allowed : out_allowed, prefix, e) < 0) return -1;
    if (http_json_get_string(it, "call_id", 1, 128, NULL, &call_id, e) < 0 ||
        (is_call && http_json_get_string(it, "name", 1, 64, NULL, &name, e) < 0) ||
        http_json_get_string(it, is_call ? "arguments" : "output", 1, 0, NULL, &text, e) < 0)
        return nested(e, prefix, e->param);
    if (!is_call) {
        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
                                              call_id, "content", text));
        return 0;
    }
    json_t *last = json_array_get(list, json_array_size(list) - 1);
    const char *last_role = json_string_value(json_object_get(last, "role"));
    if (!last_role || strcmp(last_role, "assistant")) {
        last = message("assistant", "");
        json_array_append_new(list, last);
    }
    json_t *calls = json_object_get(last, "tool_calls");
    if (!calls) {
        calls = json_array();
        json_object_set_new(last, "tool_calls", calls);
    }
    json_t *args = json_string(text);
    json_array_append_new(calls, openai_call(call_id, name, args));
    json_decref(args);
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
        if (type && (!strcmp(type, "function_call") || !strcmp(type, "function_call_output"))) {
            if (responses_call_item(it, i, type, list, e) < 0) return -1;
            continue;
        }
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

/* A Responses tool {type: "function", name, description, parameters, strict} as an OpenAI
 * function (the core checks the members). */
static json_t *responses_tool(const json_t *t, const char *prefix, http_error *e) {
    static const char *const allowed[] = {"type",       "name",   "description",
                                          "parameters", "strict", NULL};
    const char *type = json_string_value(json_object_get(t, "type"));
    if (!type || strcmp(type, "function")) {
        char field[64];
        snprintf(field, sizeof field, "%stype", prefix);
        unsupported(e, field, "only function tools");
        return NULL;
    }
    if (check_known(t, allowed, prefix, e) < 0) return NULL;
    json_t *fn = json_deep_copy(t);
    json_object_del(fn, "type");
    return fn;
}

/* Responses tools, tool_choice ("none" | "auto" | "required" | {type: "function", name}) and
 * parallel_tool_calls -> chat's. */
static int responses_tools(const json_t *in, json_t *out, http_error *e) {
    if (translate_tools(in, out, responses_tool, e) < 0) return -1;
    const json_t *tc = json_object_get(in, "tool_choice");
    int no_tools = !json_object_get(out, "tools");
    if (json_is_string(
            tc)) { /* the core checks the value; none and auto without tools say nothing */
        const char *v = json_string_value(tc);
        if (!(no_tools && (!strcmp(v, "none") || !strcmp(v, "auto"))))
            json_object_set(out, "tool_choice", (json_t *)tc);
    } else if (json_is_object(tc)) {
        static const char *const tc_allowed[] = {"type", "name", NULL};
        const char *type = json_string_value(json_object_get(tc, "type"));
        const char *name = json_string_value(json_object_get(tc, "name"));
        if (check_known(tc, tc_allowed, "tool_choice.", e) < 0) return -1;
        if (!type || strcmp(type, "function") || !name)
            return http_error_set(e, 400, NULL, "tool_choice", NULL,
                                  "'tool_choice' must be none, auto, required or "
                                  "{\"type\": \"function\", \"name\": ...}");
        json_object_set_new(
            out, "tool_choice",
            json_pack("{s:s, s:{s:s}}", "type", "function", "function", "name", name));
    } else if (tc && !json_is_null(tc)) {
        return http_error_set(e, 400, NULL, "tool_choice", NULL,
                              "'tool_choice' must be a string or an object");
    }
    const json_t *ptc = json_object_get(in, "parallel_tool_calls");
    if (ptc && !json_is_null(ptc)) {
        if (!json_is_boolean(ptc))
            return http_error_set(e, 400, NULL, "parallel_tool_calls", NULL,
                                  "'parallel_tool_calls' must be a boolean");
        if (json_object_get(out, "tools"))
            json_object_set(out, "parallel_tool_calls", (json_t *)ptc);
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
        responses_tools(in, out, e) < 0 ||
        only_empty(in, "include", "no extra output can be included", e) < 0 ||
        only_empty(in, "metadata", "responses are not stored", e) < 0 ||
        only_empty(in, "reasoning", "reasoning is not supported", e) < 0 ||
        only_empty(in, "background", "background responses are not supported", e) < 0)
        return -1;
    const char *s;
    if (http_json_get_string(in, "truncation", 0, 16, "disabled", &s, e) < 0) return -1;
    if (strcmp(s, "disabled")) return unsupported(e, "truncation", "only 'disabled'");
    if (http_json_get_string(in, "service_tier", 0, 16, "auto", &s, e) < 0) return -1;
    if (strcmp(s, "auto") && strcmp(s, "default"))
        return unsupported(e, "service_tier", "only 'auto' and 'default'");
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
    json_t *calls;      /* the tool calls so far: [{id, name, arguments (text)}] */
    int block,
        block_kind; /* Anthropic stream: the open content block (kind 0 none, 1 text, 2 tool) */
    int failed;     /* a gathered stream carried an error: err */
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
    d->calls = json_array();
    return d;
}

void dialect_out_free(dialect_out *d) {
    if (!d) return;
    mh_buf_free(&d->text);
    free(d->model);
    json_decref(d->calls);
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
    return strcmp(finish, "length") == 0       ? "max_tokens"
           : strcmp(finish, "tool_calls") == 0 ? "tool_use"
                                               : "end_turn";
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
    /* Ollama ends a turn of calls with "stop" too */
    const char *why = !d->finish[0] || strcmp(d->finish, "tool_calls") == 0 ? "stop" : d->finish;
    json_object_set_new(o, "done_reason", json_string(why));
    json_object_set_new(o, "total_duration", json_integer(ns(now - d->t_start)));
    json_object_set_new(o, "load_duration", json_integer(0));
    json_object_set_new(o, "prompt_eval_count", json_integer(d->prompt_tokens));
    json_object_set_new(o, "prompt_eval_duration", json_integer(ns(first - d->t_start)));
    json_object_set_new(o, "eval_count", json_integer(evals));
    json_object_set_new(o, "eval_duration", json_integer(ns(now - first)));
}

/* An Ollama chat/generate object with `text` (done: false unless final). */
static json_t *ollama_object(const dialect_out *d, const char *text, size_t len, int done,
                             int with_calls) {
    char at[48];
    rfc3339(mh_now_wall(), at, sizeof at);
    json_t *o = json_pack("{s:s, s:s}", "model", d->model, "created_at", at);
    if (d->api == DIALECT_OLLAMA_CHAT) {
        json_t *msg = json_pack("{s:s, s:s%}", "role", "assistant", "content", text, len);
        json_object_set_new(o, "message", msg);
        if (with_calls && json_array_size(d->calls)) {
            json_t *calls = json_array();
            size_t k;
            const json_t *c;
            json_array_foreach(d->calls, k, c) json_array_append_new(
                calls, json_pack("{s:{s:O, s:o}}", "function", "name", json_object_get(c, "name"),
                                 "arguments",
                                 call_args(json_string_value(json_object_get(c, "arguments")))));
            json_object_set_new(msg, "tool_calls", calls);
        }
    } else
        json_object_set_new(o, "response", json_stringn(text, len));
    json_object_set_new(o, "done", json_boolean(done));
    if (done) ollama_stats(d, o);
    return o;
}

static json_t *anthropic_usage(const dialect_out *d) {
    return json_pack("{s:I, s:I}", "input_tokens", (json_int_t)d->prompt_tokens, "output_tokens",
                     (json_int_t)d->completion_tokens);
}

static json_t *anthropic_tool_use(const json_t *c, int with_input) {
    json_t *input =
        with_input ? call_args(json_string_value(json_object_get(c, "arguments"))) : json_object();
    if (!json_is_object(input)) { /* arguments that are not an object: kept as text */
        json_t *raw = json_pack("{s:o}", "arguments", input);
        input = raw;
    }
    return json_pack("{s:s, s:O, s:O, s:o}", "type", "tool_use", "id", json_object_get(c, "id"),
                     "name", json_object_get(c, "name"), "input", input);
}

static json_t *anthropic_message(const dialect_out *d, const char *text, size_t len) {
    json_t *content = json_array();
    if (text && (len > 0 || json_array_size(d->calls) == 0))
        json_array_append_new(content, json_pack("{s:s, s:s%}", "type", "text", "text", text, len));
    size_t k;
    const json_t *c;
    if (text)
        json_array_foreach(d->calls, k, c) json_array_append_new(content, anthropic_tool_use(c, 1));
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

/* Responses: the function_call output item of call k (output index k + 1). */
static json_t *responses_call(const dialect_out *d, size_t k, int done) {
    const json_t *c = json_array_get(d->calls, k);
    char id[64];
    snprintf(id, sizeof id, "fc_%s_%zu", d->item_id, k);
    return json_pack("{s:s, s:s, s:O, s:O, s:s, s:s}", "type", "function_call", "id", id, "call_id",
                     json_object_get(c, "id"), "name", json_object_get(c, "name"), "arguments",
                     done ? json_string_value(json_object_get(c, "arguments")) : "", "status",
                     done ? "completed" : "in_progress");
}

/* The output items of a finished response: the message (kept when it has text, when nothing
 * else came, or in a stream, which opened it first), then the calls. */
static json_t *responses_output(const dialect_out *d, const char *text, size_t len) {
    json_t *items = json_array();
    if (len > 0 || d->stream || json_array_size(d->calls) == 0)
        json_array_append_new(items, responses_item(d, text, len, 1));
    for (size_t k = 0; k < json_array_size(d->calls); k++)
        json_array_append_new(items, responses_call(d, k, 1));
    return items;
}

/* The response object; `text` NULL while in progress. */
static json_t *responses_object(const dialect_out *d, const char *text, size_t len) {
    int incomplete = text && strcmp(d->finish, "length") == 0;
    const char *status = !text ? "in_progress" : incomplete ? "incomplete" : "completed";
    json_t *r =
        json_pack("{s:s, s:s, s:I, s:s, s:n, s:o, s:s, s:o, s:b, s:n, s:s, s:[], "
                  "s:{s:{s:s}}, s:s, s:b}",
                  "id", d->id, "object", "response", "created_at", (json_int_t)d->created, "status",
                  status, "error", "incomplete_details",
                  incomplete ? json_pack("{s:s}", "reason", "max_output_tokens") : json_null(),
                  "model", d->model, "output", text ? responses_output(d, text, len) : json_array(),
                  "parallel_tool_calls", 0, "previous_response_id", "tool_choice", "none", "tools",
                  "text", "format", "type", "text", "truncation", "disabled", "store", 0);
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
static void take_calls(dialect_out *d, const json_t *tool_calls, mh_buf *out);

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
    take_calls(d, json_object_get(json_object_get(choice, "message"), "tool_calls"), NULL);
    d->n_deltas = d->completion_tokens;
    d->closed = 1;
    switch (d->api) {
    case DIALECT_ANTHROPIC_MESSAGES: return anthropic_message(d, t, len);
    case DIALECT_OPENAI_RESPONSES: return responses_object(d, t, len);
    default: return ollama_object(d, t, len, 1, 1);
    }
}

/* Anthropic stream blocks: the first text opens a text block; a tool call closes the open block
 * and opens its own; text after a call opens a new text block. A reply of nothing sends one
 * empty text block. */
static void close_block(dialect_out *d, mh_buf *out) {
    if (!d->block_kind) return;
    emit(d, out, "content_block_stop",
         json_pack("{s:s, s:i}", "type", "content_block_stop", "index", d->block));
    d->block_kind = 0;
    d->block++;
}

static void open_text_block(dialect_out *d, mh_buf *out) {
    if (d->block_kind == 1) return;
    close_block(d, out);
    emit(d, out, "content_block_start",
         json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index", d->block,
                   "content_block", "type", "text", "text", ""));
    d->block_kind = 1;
}

/* OpenAI tool_calls (a whole message's, or a stream delta's) into d->calls: an entry with a new
 * index or id starts a call, arguments text is appended to the call it belongs to. */
static void take_calls(dialect_out *d, const json_t *tool_calls, mh_buf *out) {
    size_t k;
    const json_t *tc;
    json_array_foreach(tool_calls, k, tc) {
        const json_t *fn = json_object_get(tc, "function");
        const char *id = json_string_value(json_object_get(tc, "id"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        const json_t *index = json_object_get(tc, "index");
        size_t at = json_is_integer(index) ? (size_t)json_integer_value(index) : (size_t)-1;
        json_t *cur = json_array_get(d->calls, at);
        const char *cur_id = json_string_value(json_object_get(cur, "id"));
        if (!cur || (id && cur_id && strcmp(id, cur_id))) {
            char made[48];
            snprintf(made, sizeof made, "call_%zu", json_array_size(d->calls));
            cur = json_pack("{s:s, s:s, s:s}", "id", id ? id : made, "name", name ? name : "",
                            "arguments", "");
            json_array_append_new(d->calls, cur);
            if (d->stream && d->api == DIALECT_OPENAI_RESPONSES) {
                size_t k = json_array_size(d->calls) - 1;
                emit(d, out, "response.output_item.added",
                     json_pack("{s:I, s:o}", "output_index", (json_int_t)(k + 1), "item",
                               responses_call(d, k, 0)));
            }
            if (d->stream && d->api == DIALECT_ANTHROPIC_MESSAGES) {
                close_block(d, out);
                emit(d, out, "content_block_start",
                     json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", d->block,
                               "content_block", anthropic_tool_use(cur, 0)));
                d->block_kind = 2;
            }
        }
        if (!args || !args[0]) continue;
        mh_buf b = {0};
        mh_buf_printf(&b, "%s%s", json_string_value(json_object_get(cur, "arguments")), args);
        json_object_set_new(cur, "arguments", json_string(b.data));
        mh_buf_free(&b);
        if (d->stream && d->api == DIALECT_OPENAI_RESPONSES) {
            size_t k = 0;
            while (json_array_get(d->calls, k) != cur) k++;
            char id[64];
            snprintf(id, sizeof id, "fc_%s_%zu", d->item_id, k);
            emit(d, out, "response.function_call_arguments.delta",
                 json_pack("{s:s, s:I, s:s}", "item_id", id, "output_index", (json_int_t)(k + 1),
                           "delta", args));
        }
        if (d->stream && d->api == DIALECT_ANTHROPIC_MESSAGES && d->block_kind == 2)
            emit(d, out, "content_block_delta",
                 json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta", "index",
                           d->block, "delta", "type", "input_json_delta", "partial_json", args));
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
    take_calls(d, json_object_get(json_object_get(choice, "delta"), "tool_calls"), out);
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
        open_text_block(d, out);
        emit(d, out, "content_block_delta",
             json_pack("{s:s, s:i, s:{s:s, s:s%}}", "type", "content_block_delta", "index",
                       d->block, "delta", "type", "text_delta", "text", t, len));
        break;
    case DIALECT_OPENAI_RESPONSES:
        mh_buf_append(&d->text, t, len);
        emit(d, out, "response.output_text.delta",
             json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", d->item_id, "output_index", 0,
                       "content_index", 0, "delta", t, len, "logprobs"));
        break;
    default: emit(d, out, NULL, ollama_object(d, t, len, 0, 0));
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
        if (d->block == 0 && !d->block_kind) open_text_block(d, out); /* an empty reply */
        close_block(d, out);
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
        for (size_t k = 0; k < json_array_size(d->calls); k++) {
            json_t *item = responses_call(d, k, 1);
            emit(d, out, "response.function_call_arguments.done",
                 json_pack("{s:O, s:I, s:O}", "item_id", json_object_get(item, "id"),
                           "output_index", (json_int_t)(k + 1), "arguments",
                           json_object_get(item, "arguments")));
            emit(d, out, "response.output_item.done",
                 json_pack("{s:I, s:o}", "output_index", (json_int_t)(k + 1), "item", item));
        }
        emit(d, out,
             strcmp(d->finish, "length") == 0 ? "response.incomplete" : "response.completed",
             json_pack("{s:o}", "response", responses_object(d, t, len)));
    } else {
        if (json_array_size(d->calls)) /* the calls, then the totals, as Ollama sends them */
            emit(d, out, NULL, ollama_object(d, "", 0, 0, 1));
        emit(d, out, NULL, ollama_object(d, "", 0, 1, 0));
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
    default: return ollama_object(d, t, len, 1, 1);
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
