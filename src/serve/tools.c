/* tools.c — see tools.h. */
#include "serve/tools.h"

#include <string.h>

#define MAX_TOOLS     128
#define MAX_NAME      64
#define HERMES_OPEN   "<tool_call>"
#define HERMES_CLOSE  "</tool_call>"
#define LLAMA3_PYTHON "<|python_tag|>"

/* ==== Request validation ==== */

/* A 400 naming `param`; `why` follows the quoted name. */
static int bad(http_error *e, const char *param, const char *why) {
    return http_error_set(e, 400, NULL, param, NULL, "'%s' %s", param, why);
}

/* OpenAI's rule for function names: letters, digits, '_' and '-', 1 to 64 of them. */
static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static const json_t *find_tool(const json_t *tools, const char *name) {
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (n && strcmp(n, name) == 0) return t;
    }
    return NULL;
}

static int check_tool(const json_t *t, size_t i, http_error *e) {
    char p[96];
    snprintf(p, sizeof p, "tools[%zu]", i);
    if (!json_is_object(t)) return bad(e, p, "must be an object");
    const char *type = json_string_value(json_object_get(t, "type"));
    snprintf(p, sizeof p, "tools[%zu].type", i);
    if (!type || strcmp(type, "function")) return bad(e, p, "must be 'function'");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)t, key, v) if (strcmp(key, "type") && strcmp(key, "function")) {
        snprintf(p, sizeof p, "tools[%zu].%.32s", i, key);
        return bad(e, p, "is not a recognized field");
    }
    const json_t *f = json_object_get(t, "function");
    snprintf(p, sizeof p, "tools[%zu].function", i);
    if (!json_is_object(f)) return bad(e, p, "must be an object");
    json_object_foreach((json_t *)f, key, v) {
        snprintf(p, sizeof p, "tools[%zu].function.%.32s", i, key);
        if (!strcmp(key, "name")) {
            if (!json_is_string(v) || !valid_name(json_string_value(v)))
                return bad(e, p, "must be 1 to 64 letters, digits, '_' or '-'");
        } else if (!strcmp(key, "description")) {
            if (!json_is_string(v) && !json_is_null(v)) return bad(e, p, "must be a string");
        } else if (!strcmp(key, "parameters")) {
            if (!json_is_object(v) && !json_is_null(v))
                return bad(e, p, "must be a JSON Schema object");
            const json_t *ty = json_object_get(v, "type");
            if (ty && !(json_is_string(ty) && !strcmp(json_string_value(ty), "object")))
                return bad(e, p, "must describe an object (\"type\": \"object\")");
        } else if (!strcmp(key, "strict")) {
            if (!json_is_boolean(v) && !json_is_null(v)) return bad(e, p, "must be a boolean");
        } else {
            return bad(e, p, "is not a recognized field");
        }
    }
    snprintf(p, sizeof p, "tools[%zu].function.name", i);
    if (!json_is_string(json_object_get(f, "name"))) return bad(e, p, "is required");
    return 0;
}

int tools_parse_request(const json_t *body, tools_request *out, http_error *e) {
    memset(out, 0, sizeof *out);
    out->parallel = 1;
    if (http_json_get_bool(body, "parallel_tool_calls", 0, 1, &out->parallel, e) < 0) return -1;
    const json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return bad(e, "tools", "must be an array");
        if (json_array_size(tools) > MAX_TOOLS)
            return http_error_set(e, 400, NULL, "tools", NULL, "'tools' may hold at most %d",
                                  MAX_TOOLS);
        size_t i;
        const json_t *t;
        json_array_foreach(tools, i, t) {
            if (check_tool(t, i, e) < 0) return -1;
            const char *name =
                json_string_value(json_object_get(json_object_get(t, "function"), "name"));
            if (find_tool(tools, name) != t)
                return http_error_set(e, 400, NULL, "tools", NULL,
                                      "'tools': the function '%s' is declared twice", name);
        }
        if (json_array_size(tools) > 0) out->tools = tools;
    }
    const json_t *choice = json_object_get(body, "tool_choice");
    out->choice = out->tools ? TOOLS_AUTO : TOOLS_NONE;
    if (!choice || json_is_null(choice)) return 0;
    if (json_is_string(choice)) {
        const char *c = json_string_value(choice);
        if (!strcmp(c, "none")) {
            out->choice = TOOLS_NONE;
            return 0;
        }
        if (strcmp(c, "auto") && strcmp(c, "required"))
            return http_error_set(e, 400, NULL, "tool_choice", NULL,
                                  "'tool_choice' must be 'none', 'auto', 'required' or "
                                  "{\"type\": \"function\", \"function\": {\"name\": ...}} "
                                  "(got '%.64s')",
                                  c);
        if (!out->tools)
            return http_error_set(e, 400, NULL, "tool_choice", NULL,
                                  "'tool_choice' '%s' needs 'tools'", c);
        out->choice = !strcmp(c, "auto") ? TOOLS_AUTO : TOOLS_REQUIRED;
        return 0;
    }
    const char *type = json_string_value(json_object_get(choice, "type"));
    const char *name =
        json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
    if (!json_is_object(choice) || !type || strcmp(type, "function") || !name)
        return http_error_set(e, 400, NULL, "tool_choice", NULL,
                              "'tool_choice' must be 'none', 'auto', 'required' or "
                              "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    if (!out->tools || !find_tool(out->tools, name))
        return http_error_set(e, 400, NULL, "tool_choice", NULL,
                              "'tool_choice' names the function '%.64s', which 'tools' does not "
                              "declare",
                              name);
    out->choice = TOOLS_NAMED;
    out->named = name;
    return 0;
}

int tools_check_message(const json_t *m, size_t i, http_error *e) {
    char p[96];
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!strcmp(role, "tool")) {
        snprintf(p, sizeof p, "messages[%zu].tool_call_id", i);
        const json_t *id = json_object_get(m, "tool_call_id");
        if (!json_is_string(id) || json_string_length(id) == 0)
            return bad(e, p, "is required: a tool message answers the call of that id");
        return 0;
    }
    const json_t *calls = json_object_get(m, "tool_calls");
    if (!calls || json_is_null(calls)) return 0;
    snprintf(p, sizeof p, "messages[%zu].tool_calls", i);
    if (strcmp(role, "assistant")) return bad(e, p, "is only for assistant messages");
    if (!json_is_array(calls)) return bad(e, p, "must be an array");
    size_t k;
    const json_t *c;
    json_array_foreach(calls, k, c) {
        snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu]", i, k);
        const json_t *f = json_object_get(c, "function");
        const char *type = json_string_value(json_object_get(c, "type"));
        if (!json_is_object(c) || !json_is_string(json_object_get(c, "id")) ||
            (type && strcmp(type, "function")) || !json_is_object(f) ||
            !json_is_string(json_object_get(f, "name")) ||
            !json_is_string(json_object_get(f, "arguments")))
            return bad(e, p,
                       "must be {\"id\": string, \"type\": \"function\", \"function\": "
                       "{\"name\": string, \"arguments\": string}}");
    }
    return 0;
}

/* ==== Prompts ==== */

tools_style tools_style_for(chat_family family) {
    switch (family) {
    case CHAT_CHATML: return TOOLS_STYLE_HERMES;
    case CHAT_LLAMA3: return TOOLS_STYLE_LLAMA3;
    default: return TOOLS_STYLE_GENERIC;
    }
}

const char *tools_style_name(tools_style style) {
    return style == TOOLS_STYLE_HERMES   ? "hermes"
           : style == TOOLS_STYLE_LLAMA3 ? "llama3"
                                         : "generic";
}

const char *tools_forced_prefix(tools_style style) {
    return style == TOOLS_STYLE_HERMES ? HERMES_OPEN "\n" : "";
}

static const char *args_key(tools_style style) {
    return style == TOOLS_STYLE_LLAMA3 ? "parameters" : "arguments";
}

static void put_json(mh_buf *b, const json_t *v) {
    char *s = http_json_dump(v);
    if (s) mh_buf_append(b, s, strlen(s));
    free(s);
}

static void put(mh_buf *b, const char *s) {
    mh_buf_append(b, s, strlen(s));
}

/* The tools text added to the system message. */
static void put_tools(mh_buf *b, const json_t *tools, tools_style style) {
    size_t i;
    const json_t *t;
    if (style == TOOLS_STYLE_HERMES) {
        put(b, "# Tools\n\nYou may call one or more functions to help with the user's request. "
               "The functions are described by JSON signatures inside <tools></tools>:\n<tools>");
        json_array_foreach(tools, i, t) {
            put(b, "\n");
            put_json(b, t);
        }
        put(b, "\n</tools>\n\nTo call a function, write a JSON object with its name and its "
               "arguments inside <tool_call></tool_call> tags:\n<tool_call>\n{\"name\": "
               "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
        return;
    }
    put(b, "You have access to the following functions:\n");
    json_array_foreach(tools, i, t) {
        put_json(b, json_object_get(t, "function"));
        put(b, "\n");
    }
    mh_buf_printf(b,
                  "\nTo call a function, reply with only a JSON object of the form {\"name\": "
                  "function name, \"%s\": object of argument names and values}, and nothing else.",
                  args_key(style));
}

/* Arguments as a JSON value: a past call's arguments string parsed, or the string itself. */
static json_t *args_value(const char *s) {
    json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(s);
}

/* A past assistant call, as the style writes it. */
static void put_call(mh_buf *b, const json_t *call, tools_style style) {
    const json_t *f = json_object_get(call, "function");
    json_t *obj = json_pack("{s:O, s:o}", "name", json_object_get(f, "name"), args_key(style),
                            args_value(json_string_value(json_object_get(f, "arguments"))));
    if (style == TOOLS_STYLE_HERMES) put(b, HERMES_OPEN "\n");
    put_json(b, obj);
    if (style == TOOLS_STYLE_HERMES) put(b, "\n" HERMES_CLOSE);
    json_decref(obj);
}

static void flatten(mh_buf *b, const json_t *content) {
    if (json_is_string(content)) {
        put(b, json_string_value(content));
        return;
    }
    size_t k;
    const json_t *part;
    json_array_foreach(content, k, part) {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t) put(b, t);
    }
}

/* The name of the call `id` among the assistant calls before message `before`. */
static const char *call_name(const json_t *messages, size_t before, const char *id) {
    for (size_t i = before; i-- > 0;) {
        size_t k;
        const json_t *c;
        json_array_foreach(json_object_get(json_array_get(messages, i), "tool_calls"), k, c) {
            const char *cid = json_string_value(json_object_get(c, "id"));
            if (cid && !strcmp(cid, id))
                return json_string_value(json_object_get(json_object_get(c, "function"), "name"));
        }
    }
    return NULL;
}

static void add(tools_prompt *p, const char *role, mh_buf *text) {
    p->msgs = mh_xrealloc(p->msgs, (p->n + 1) * sizeof *p->msgs);
    p->owned = mh_xrealloc(p->owned, (p->n_owned + 1) * sizeof *p->owned);
    if (!text->data) mh_buf_append(text, "", 0);
    p->owned[p->n_owned++] = text->data;
    p->msgs[p->n++] = (chat_message){role, text->data};
    *text = (mh_buf){0};
}

void tools_build_messages(const json_t *messages, const tools_request *tr, tools_style style,
                          tools_prompt *out) {
    memset(out, 0, sizeof *out);
    size_t n = json_array_size(messages), i = 0;
    mh_buf b = {0};
    if (tr->tools) { /* the tools go into the first system message, or one of their own */
        const json_t *first = json_array_get(messages, 0);
        const char *role = json_string_value(json_object_get(first, "role"));
        if (role && (!strcmp(role, "system") || !strcmp(role, "developer"))) {
            flatten(&b, json_object_get(first, "content"));
            if (b.len) put(&b, "\n\n");
            i = 1;
        }
        put_tools(&b, tr->tools, style);
        add(out, "system", &b);
    }
    for (; i < n; i++) {
        const json_t *m = json_array_get(messages, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (!strcmp(role, "tool")) {
            const char *id = json_string_value(json_object_get(m, "tool_call_id"));
            if (style == TOOLS_STYLE_HERMES) { /* consecutive results share one user turn */
                for (;; i++) {
                    if (b.len) put(&b, "\n");
                    put(&b, "<tool_response>\n");
                    flatten(&b, json_object_get(m, "content"));
                    put(&b, "\n</tool_response>");
                    const json_t *next = json_array_get(messages, i + 1);
                    const char *nr = json_string_value(json_object_get(next, "role"));
                    if (!nr || strcmp(nr, "tool")) break;
                    m = next;
                }
                add(out, "user", &b);
            } else if (style == TOOLS_STYLE_LLAMA3) {
                flatten(&b, content);
                add(out, "ipython", &b);
            } else {
                const char *name = call_name(messages, i, id);
                mh_buf_printf(&b, "Result of the call %s%s%s: ", id, name ? " of " : "",
                              name ? name : "");
                flatten(&b, content);
                add(out, "user", &b);
            }
            continue;
        }
        flatten(&b, content);
        const json_t *calls = json_object_get(m, "tool_calls");
        size_t k;
        const json_t *c;
        json_array_foreach(calls, k, c) {
            if (b.len) put(&b, "\n");
            put_call(&b, c, style);
        }
        add(out, !strcmp(role, "developer") ? "system" : role, &b);
    }
}

void tools_prompt_free(tools_prompt *p) {
    for (size_t i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    free(p->msgs);
    memset(p, 0, sizeof *p);
}

json_t *tools_call_schema(const tools_request *tr, tools_style style) {
    json_t *any = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tr->tools, i, t) {
        const json_t *f = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(f, "name"));
        if (tr->choice == TOOLS_NAMED && strcmp(name, tr->named)) continue;
        const json_t *params = json_object_get(f, "parameters");
        json_t *p = json_is_object(params) && json_object_size(params) > 0
                        ? json_deep_copy(params)
                        : json_pack("{s:s, s:{}, s:b}", "type", "object", "properties",
                                    "additionalProperties", 0); /* no parameters: {} */
        json_array_append_new(any, json_pack("{s:s, s:{s:{s:s}, s:o}, s:[s,s], s:b}", "type",
                                             "object", "properties", "name", "const", name,
                                             args_key(style), p, "required", "name",
                                             args_key(style), "additionalProperties", 0));
    }
    if (json_array_size(any) == 1) {
        json_t *one = json_incref(json_array_get(any, 0));
        json_decref(any);
        return one;
    }
    return json_pack("{s:o}", "anyOf", any);
}

/* ==== Reading calls back ==== */

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One call object {"name": declared function, args_key or "arguments": object}: appended to
 * calls. 0, or -1 when it is not one. */
static int take_call(const tools_request *tr, tools_style style, const json_t *obj,
                     const char *id_prefix, json_t *calls) {
    const char *name = json_string_value(json_object_get(obj, "name"));
    const json_t *args = json_object_get(obj, args_key(style));
    if (!args) args = json_object_get(obj, "arguments");
    if (!args) args = json_object_get(obj, "parameters");
    if (!name || !find_tool(tr->tools, name)) return -1;
    if (tr->choice == TOOLS_NAMED && strcmp(name, tr->named)) return -1;
    json_t *parsed = NULL;
    if (json_is_string(args)) args = parsed = json_loads(json_string_value(args), 0, NULL);
    if (!json_is_object(args)) {
        json_decref(parsed);
        return -1;
    }
    char *arg_text = http_json_dump(args);
    json_decref(parsed);
    char id[96];
    snprintf(id, sizeof id, "%s_%zu", id_prefix, json_array_size(calls));
    json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function",
                                           "function", "name", name, "arguments",
                                           arg_text ? arg_text : "{}"));
    free(arg_text);
    return 0;
}

/* JSON values one after another at text[*pos..len), separated by whitespace or ';' (Llama 3
 * writes several calls that way): each must be a call. */
static int take_json_calls(const tools_request *tr, tools_style style, const char *text, size_t len,
                           const char *id_prefix, json_t *calls) {
    size_t pos = 0;
    while (pos < len) {
        while (pos < len && (is_ws(text[pos]) || text[pos] == ';')) pos++;
        if (pos == len) break;
        json_error_t err;
        json_t *v =
            json_loadb(text + pos, len - pos, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
        if (!v) return -1;
        int rc = take_call(tr, style, v, id_prefix, calls);
        json_decref(v);
        if (rc < 0) return -1;
        pos += (size_t)err.position;
        if (!tr->parallel) break;
    }
    return json_array_size(calls) > 0 ? 0 : -1;
}

static const char *find(const char *text, size_t len, size_t from, const char *needle) {
    return from <= len ? memmem(text + from, len - from, needle, strlen(needle)) : NULL;
}

void tools_parse_output(const tools_request *tr, tools_style style, int forced, const char *text,
                        size_t len, const char *id_prefix, mh_buf *content, json_t **calls_out) {
    *calls_out = NULL;
    json_t *calls = json_array();
    mh_buf outside = {0};
    mh_buf_append(&outside, "", 0);
    int ok = tr->tools && tr->choice != TOOLS_NONE;
    if (ok && style == TOOLS_STYLE_HERMES) {
        size_t pos = 0, open_len = strlen(HERMES_OPEN);
        int first = 1;
        while (ok && pos <= len) {
            const char *open = forced && first ? text + pos : find(text, len, pos, HERMES_OPEN);
            if (!open) {
                mh_buf_append(&outside, text + pos, len - pos);
                break;
            }
            mh_buf_append(&outside, text + pos, (size_t)(open - (text + pos)));
            size_t body = (size_t)(open - text) + (forced && first ? 0 : open_len);
            const char *close = find(text, len, body, HERMES_CLOSE);
            size_t end = close ? (size_t)(close - text) : len;
            ok = take_json_calls(tr, style, text + body, end - body, id_prefix, calls) == 0;
            pos = close ? end + strlen(HERMES_CLOSE) : len + 1;
            first = 0;
            if (!tr->parallel) {
                if (pos < len) mh_buf_append(&outside, text + pos, len - pos);
                break;
            }
        }
    } else if (ok) {
        size_t pos = 0;
        while (pos < len && is_ws(text[pos])) pos++;
        if (len - pos >= strlen(LLAMA3_PYTHON) &&
            !memcmp(text + pos, LLAMA3_PYTHON, strlen(LLAMA3_PYTHON)))
            pos += strlen(LLAMA3_PYTHON);
        ok = pos < len && text[pos] == '{' &&
             take_json_calls(tr, style, text + pos, len - pos, id_prefix, calls) == 0;
    }
    if (ok && json_array_size(calls) > 0) {
        /* the text around the calls, without the blank lines that separated them */
        size_t a = 0, z = outside.len;
        while (a < z && is_ws(outside.data[a])) a++;
        while (z > a && is_ws(outside.data[z - 1])) z--;
        mh_buf_append(content, outside.data + a, z - a);
        *calls_out = calls;
    } else {
        if (forced)
            mh_buf_append(content, tools_forced_prefix(style), strlen(tools_forced_prefix(style)));
        mh_buf_append(content, text, len);
        json_decref(calls);
    }
    mh_buf_free(&outside);
}

size_t tools_stream_safe(tools_style style, const char *text, size_t len, int *in_call) {
    *in_call = 0;
    if (style == TOOLS_STYLE_HERMES) {
        const char *open = find(text, len, 0, HERMES_OPEN);
        if (open) {
            *in_call = 1;
            return (size_t)(open - text);
        }
        size_t n = strlen(HERMES_OPEN);
        for (size_t k = n - 1 < len ? n - 1 : len; k > 0; k--) /* a tail that may grow into it */
            if (!memcmp(text + len - k, HERMES_OPEN, k)) return len - k;
        return len;
    }
    size_t pos = 0;
    while (pos < len && is_ws(text[pos])) pos++;
    if (pos == len) return 0; /* only whitespace so far: a call may follow */
    size_t n = strlen(LLAMA3_PYTHON), have = len - pos;
    if (text[pos] == '{' || (have >= n && !memcmp(text + pos, LLAMA3_PYTHON, n))) {
        *in_call = 1; /* a JSON call, or Llama 3's python tag before one */
        return 0;
    }
    if (have < n && !memcmp(text + pos, LLAMA3_PYTHON, have)) return 0; /* may be the tag */
    return len;
}
