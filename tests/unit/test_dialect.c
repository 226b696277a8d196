/* test_dialect.c — the dialect translators: requests into OpenAI requests the core accepts (each
 * translated body goes through serve_validate_request), refusals naming the dialect's field, and
 * answers and streams translated back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "http/dialect.h"
#include "serve/serve.h"

/* Translate `text`; 0 with *out (OpenAI body, checked by the core) or the status, param in e. */
static int translate(dialect_api api, const char *text, dialect_request *out, http_error *e) {
    json_t *in = json_loads(text, 0, NULL);
    assert_non_null(in);
    memset(e, 0, sizeof *e);
    int rc = dialect_translate(api, in, out, e);
    json_decref(in);
    if (rc < 0) {
        assert_true(e->message[0]);
        return e->status;
    }
    char *body = http_json_dump(out->body);
    serve_request_kind kind = strcmp(out->path, "/v1/chat/completions") == 0 ? SERVE_REQ_CHAT
                              : strcmp(out->path, "/v1/completions") == 0    ? SERVE_REQ_COMPLETION
                                                                             : SERVE_REQ_EMBEDDING;
    http_error ve;
    int vrc = serve_validate_request(kind, body, strlen(body), &ve);
    if (vrc != 0) fprintf(stderr, "core refused %s: %s\n", body, ve.message);
    assert_int_equal(vrc, 0);
    free(body);
    return 0;
}

static const char *str_at(const json_t *body, const char *path) {
    /* "messages.1.content" style */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *v = body;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(tok)) : json_object_get(v, tok);
    return json_string_value(v);
}

static void test_ollama_requests(void **state) {
    (void)state;
    dialect_request dr;
    http_error e;
    assert_int_equal(
        translate(DIALECT_OLLAMA_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                  "\"options\":{\"temperature\":0.5,\"num_predict\":7,\"stop\":[\"x\"],"
                  "\"seed\":3,\"top_k\":5}}",
                  &dr, &e),
        0);
    assert_int_equal(dr.stream, 1); /* Ollama streams unless told not to */
    assert_true(
        json_is_true(json_object_get(json_object_get(dr.body, "stream_options"), "include_usage")));
    assert_int_equal(json_integer_value(json_object_get(dr.body, "max_tokens")), 7);
    assert_string_equal(str_at(dr.body, "stop.0"), "x");
    assert_string_equal(str_at(dr.body, "messages.0.content"), "hi");
    json_decref(dr.body);

    assert_int_equal(
        translate(DIALECT_OLLAMA_GENERATE,
                  "{\"model\":\"m\",\"prompt\":\"p\",\"system\":\"s\",\"stream\":false}", &dr, &e),
        0);
    assert_string_equal(dr.path, "/v1/chat/completions");
    assert_string_equal(str_at(dr.body, "messages.0.role"), "system");
    assert_string_equal(str_at(dr.body, "messages.1.content"), "p");
    assert_int_equal(dr.stream, 0);
    json_decref(dr.body);

    assert_int_equal(translate(DIALECT_OLLAMA_GENERATE,
                               "{\"model\":\"m\",\"prompt\":\"p\",\"raw\":true}", &dr, &e),
                     0);
    assert_string_equal(dr.path, "/v1/completions");
    json_decref(dr.body);

    assert_int_equal(
        translate(DIALECT_OLLAMA_EMBED, "{\"model\":\"m\",\"input\":[\"a\",\"b\"]}", &dr, &e), 0);
    assert_string_equal(dr.path, "/v1/embeddings");
    json_decref(dr.body);
}

static void test_refusals_name_the_field(void **state) {
    (void)state;
    static const struct {
        dialect_api api;
        const char *body, *param;
    } cases[] = {
        {DIALECT_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[],\"options\":{\"num_ctx\":9}}",
         "options.num_ctx"},
        {DIALECT_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[],\"options\":{\"top_p\":3}}",
         "options.top_p"},
        {DIALECT_OLLAMA_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"images\":[\"x\"]}]"
         "}",
         "messages[0].images"},
        {DIALECT_OLLAMA_CHAT, "{\"messages\":[]}", "model"},
        {DIALECT_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[],\"keep_alive\":\"5m\"}",
         "keep_alive"},
        {DIALECT_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"p\",\"format\":\"yaml\"}",
         "format"},
        {DIALECT_OLLAMA_EMBED, "{\"model\":\"m\",\"input\":\"a\",\"truncate\":true}", "truncate"},
        {DIALECT_ANTHROPIC_MESSAGES, "{\"model\":\"m\",\"messages\":[]}", "max_tokens"},
        {DIALECT_ANTHROPIC_MESSAGES,
         "{\"model\":\"m\",\"max_tokens\":4,\"temperature\":1.5,\"messages\":[]}", "temperature"},
        {DIALECT_ANTHROPIC_MESSAGES,
         "{\"model\":\"m\",\"max_tokens\":4,\"tools\":[{\"type\":\"web_search_20250305\","
         "\"name\":\"web_search\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         "tools[0].type"},
        {DIALECT_ANTHROPIC_MESSAGES,
         "{\"model\":\"m\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":[{"
         "\"type\":"
         "\"image\"}]}]}",
         "messages[0].content"},
        {DIALECT_OPENAI_RESPONSES,
         "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"r\"}",
         "previous_response_id"},
        {DIALECT_OPENAI_RESPONSES, "{\"model\":\"m\",\"input\":\"x\",\"store\":true}", "store"},
        {DIALECT_OPENAI_RESPONSES, "{\"model\":\"m\"}", "input"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dialect_request dr;
        http_error e;
        int status = translate(cases[i].api, cases[i].body, &dr, &e);
        if (status != 400 || strcmp(e.param, cases[i].param) != 0)
            fprintf(stderr, "case %zu: status %d param '%s' (%s)\n", i, status, e.param, e.message);
        assert_int_equal(status, 400);
        assert_string_equal(e.param, cases[i].param);
    }
}

static void test_anthropic_and_responses_requests(void **state) {
    (void)state;
    dialect_request dr;
    http_error e;
    assert_int_equal(translate(DIALECT_ANTHROPIC_MESSAGES,
                               "{\"model\":\"m\",\"max_tokens\":9,\"system\":[{\"type\":\"text\","
                               "\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}],\"messages\":[{"
                               "\"role\":\"user\",\"content\":\"hi\"}],\"stop_sequences\":[\".\"],"
                               "\"metadata\":{\"user_id\":\"u\"},\"stream\":true}",
                               &dr, &e),
                     0);
    assert_string_equal(str_at(dr.body, "messages.0.content"), "ab");
    assert_string_equal(str_at(dr.body, "user"), "u");
    assert_int_equal(dr.stream, 1);
    json_decref(dr.body);
    assert_int_equal(
        translate(DIALECT_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"instructions\":\"be brief\",\"input\":[{\"type\":"
                  "\"message\",\"role\":\"developer\",\"content\":[{\"type\":"
                  "\"input_text\",\"text\":\"x\"}]}],\"max_output_tokens\":16,"
                  "\"store\":false,\"text\":{\"format\":{\"type\":\"text\"}}}",
                  &dr, &e),
        0);
    assert_string_equal(str_at(dr.body, "messages.0.content"), "be brief");
    assert_string_equal(str_at(dr.body, "messages.1.role"), "system");
    assert_int_equal(json_integer_value(json_object_get(dr.body, "max_tokens")), 16);
    json_decref(dr.body);
}

/* Feed an OpenAI chat stream of `n` texts with finish `finish` and a usage chunk. */
static void feed(dialect_out *d, const char *const *texts, int n, const char *finish, mh_buf *b) {
    json_t *role = json_loads("{\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                              "\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}",
                              0, NULL);
    dialect_out_chunk(d, role, b);
    json_decref(role);
    for (int i = 0; i < n; i++) {
        json_t *c = json_pack("{s:s, s:[{s:i, s:{s:s}, s:n}]}", "model", "m", "choices", "index", 0,
                              "delta", "content", texts[i], "finish_reason");
        dialect_out_chunk(d, c, b);
        json_decref(c);
    }
    json_t *f = json_pack("{s:[{s:i, s:{}, s:s}]}", "choices", "index", 0, "delta", "finish_reason",
                          finish);
    dialect_out_chunk(d, f, b);
    json_decref(f);
    json_t *u = json_loads("{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":"
                           "2,\"total_tokens\":7}}",
                           0, NULL);
    dialect_out_chunk(d, u, b);
    json_decref(u);
    dialect_out_done(d, b);
}

static void test_streams(void **state) {
    (void)state;
    static const char *const texts[] = {"He", "llo"};
    mh_buf b = {0};
    dialect_out *d = dialect_out_new(DIALECT_OLLAMA_CHAT, 1, NULL);
    feed(d, texts, 2, "length", &b);
    /* three NDJSON lines, the last one done with the counts */
    int lines = 0;
    json_t *last = NULL;
    for (char *line = strtok(b.data, "\n"); line; line = strtok(NULL, "\n")) {
        json_decref(last);
        last = json_loads(line, 0, NULL);
        assert_non_null(last);
        lines++;
    }
    assert_int_equal(lines, 3);
    assert_true(json_is_true(json_object_get(last, "done")));
    assert_string_equal(str_at(last, "done_reason"), "length");
    assert_int_equal(json_integer_value(json_object_get(last, "eval_count")), 2);
    assert_int_equal(json_integer_value(json_object_get(last, "prompt_eval_count")), 5);
    json_decref(last);
    dialect_out_free(d);
    mh_buf_free(&b);

    d = dialect_out_new(DIALECT_ANTHROPIC_MESSAGES, 1, NULL);
    feed(d, texts, 2, "stop", &b);
    const char *order[] = {"event: message_start",       "event: content_block_start",
                           "event: content_block_delta", "event: content_block_stop",
                           "event: message_delta",       "event: message_stop"};
    const char *at = b.data;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        at = strstr(at, order[i]);
        assert_non_null(at);
    }
    assert_non_null(strstr(b.data, "\"stop_reason\":\"end_turn\""));
    assert_non_null(strstr(b.data, "\"output_tokens\":2"));
    dialect_out_free(d);
    mh_buf_free(&b);

    d = dialect_out_new(DIALECT_OLLAMA_GENERATE, 0, NULL); /* gathered into one answer */
    feed(d, texts, 2, "stop", &b);
    assert_int_equal(b.len, 0);
    int status;
    json_t *whole = dialect_out_whole(d, &status);
    assert_int_equal(status, 200);
    assert_string_equal(str_at(whole, "response"), "Hello");
    assert_true(json_is_true(json_object_get(whole, "done")));
    json_decref(whole);
    dialect_out_free(d);

    d = dialect_out_new(DIALECT_OPENAI_RESPONSES, 1, NULL);
    feed(d, texts, 2, "stop", &b);
    assert_non_null(strstr(b.data, "event: response.created"));
    assert_non_null(strstr(b.data, "\"text\":\"Hello\""));
    assert_non_null(strstr(b.data, "event: response.completed"));
    dialect_out_free(d);
    mh_buf_free(&b);
}

static void test_errors_and_garbage(void **state) {
    (void)state;
    http_error e;
    http_error_set(&e, 404, NULL, "model", NULL, "no such model");
    json_t *body = dialect_error_body(DIALECT_ANTHROPIC_MESSAGES, &e);
    assert_string_equal(str_at(body, "type"), "error");
    assert_string_equal(str_at(body, "error.type"), "not_found_error");
    json_decref(body);
    body = dialect_error_body(DIALECT_OLLAMA_GENERATE, &e);
    assert_string_equal(str_at(body, "error"), "no such model");
    json_decref(body);

    /* an error chunk mid-stream closes it; later chunks and done add nothing */
    mh_buf b = {0};
    dialect_out *d = dialect_out_new(DIALECT_ANTHROPIC_MESSAGES, 1, NULL);
    json_t *env = http_error_envelope(&e);
    dialect_out_chunk(d, env, &b);
    json_decref(env);
    assert_true(dialect_out_closed(d));
    assert_non_null(strstr(b.data, "event: error"));
    size_t len = b.len;
    json_t *junk[] = {json_array(), json_integer(3), json_loads("{\"choices\":7}", 0, NULL)};
    for (size_t i = 0; i < 3; i++) dialect_out_chunk(d, junk[i], &b);
    dialect_out_done(d, &b);
    assert_int_equal(b.len, len);
    dialect_out_free(d);
    mh_buf_free(&b);

    /* junk on an open stream does not crash; done still closes it */
    for (int api = DIALECT_OLLAMA_CHAT; api <= DIALECT_OPENAI_RESPONSES; api++) {
        d = dialect_out_new((dialect_api)api, 1, NULL);
        for (size_t i = 0; i < 3; i++) dialect_out_chunk(d, junk[i], &b);
        dialect_out_done(d, &b);
        json_t *whole = dialect_out_response(d, junk[2]);
        assert_non_null(whole);
        json_decref(whole);
        dialect_out_free(d);
        mh_buf_free(&b);
    }
    for (size_t i = 0; i < 3; i++) json_decref(junk[i]);
}

/* Found by fuzz_dialect: a model name longer than a fixed buffer, cut inside a UTF-8 sequence,
 * made every answer NULL. Names are kept whole; an unknown finish_reason reads as "stop". */
static void test_long_names_and_odd_finish(void **state) {
    (void)state;
    mh_buf name = {0};
    for (int i = 0; i < 150; i++) mh_buf_append(&name, "\xc3\xa9", 2); /* é: 300 bytes */
    json_t *chunk =
        json_pack("{s:s, s:[{s:i, s:{s:s}, s:s}]}", "model", name.data, "choices", "index", 0,
                  "delta", "content", "hi", "finish_reason",
                  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_non_null(chunk);
    for (int api = DIALECT_OLLAMA_CHAT; api <= DIALECT_OPENAI_RESPONSES; api++) {
        if (api == DIALECT_OLLAMA_EMBED || api == DIALECT_OLLAMA_EMBEDDINGS) continue;
        dialect_out *d = dialect_out_new((dialect_api)api, 0, NULL);
        mh_buf b = {0};
        dialect_out_chunk(d, chunk, &b);
        dialect_out_done(d, &b);
        int status;
        json_t *whole = dialect_out_whole(d, &status);
        assert_non_null(whole);
        assert_int_equal(status, 200);
        assert_string_equal(str_at(whole, "model"), name.data);
        if (api == DIALECT_OLLAMA_CHAT) assert_string_equal(str_at(whole, "done_reason"), "stop");
        json_decref(whole);
        dialect_out_free(d);
        mh_buf_free(&b);
    }
    json_decref(chunk);
    mh_buf_free(&name);
}

/* Tools, both ways: Anthropic and Ollama requests into OpenAI tools, calls and tool messages;
 * OpenAI calls back into tool_use blocks (whole and streamed) and Ollama tool_calls. */
static void test_tools(void **state) {
    (void)state;
    dialect_request dr;
    http_error e;
    assert_int_equal(
        translate(DIALECT_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"max_tokens\":9,\"tools\":[{\"name\":\"get\",\"description\":"
                  "\"d\",\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":"
                  "\"tool\",\"name\":\"get\",\"disable_parallel_tool_use\":true},\"messages\":["
                  "{\"role\":\"user\",\"content\":\"q\"},"
                  "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"t\"},"
                  "{\"type\":\"tool_use\",\"id\":\"tu1\",\"name\":\"get\",\"input\":{\"a\":1}}]},"
                  "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
                  "\"tu1\",\"content\":[{\"type\":\"text\",\"text\":\"42\"}],\"is_error\":true},"
                  "{\"type\":\"text\",\"text\":\"more\"}]}]}",
                  &dr, &e),
        0);
    assert_string_equal(str_at(dr.body, "tools.0.type"), "function");
    assert_string_equal(str_at(dr.body, "tools.0.function.name"), "get");
    assert_string_equal(str_at(dr.body, "tools.0.function.description"), "d");
    assert_string_equal(str_at(dr.body, "tool_choice.function.name"), "get");
    assert_true(json_is_false(json_object_get(dr.body, "parallel_tool_calls")));
    assert_string_equal(str_at(dr.body, "messages.1.content"), "t");
    assert_string_equal(str_at(dr.body, "messages.1.tool_calls.0.id"), "tu1");
    assert_string_equal(str_at(dr.body, "messages.1.tool_calls.0.function.arguments"), "{\"a\":1}");
    assert_string_equal(str_at(dr.body, "messages.2.role"), "tool");
    assert_string_equal(str_at(dr.body, "messages.2.tool_call_id"), "tu1");
    assert_string_equal(str_at(dr.body, "messages.2.content"), "Error: 42");
    assert_string_equal(str_at(dr.body, "messages.3.content"), "more");
    json_decref(dr.body);
    assert_int_equal(
        translate(DIALECT_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"max_tokens\":9,\"tool_choice\":{\"type\":\"any\"},"
                  "\"tools\":[{\"name\":\"get\",\"input_schema\":{}}],"
                  "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
                  &dr, &e),
        0);
    assert_string_equal(str_at(dr.body, "tool_choice"), "required");
    json_decref(dr.body);
    /* a tool_use from the user, a tool_result from the assistant: 400 naming the content */
    assert_int_equal(translate(DIALECT_ANTHROPIC_MESSAGES,
                               "{\"model\":\"m\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\","
                               "\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\","
                               "\"input\":{}}]}]}",
                               &dr, &e),
                     400);
    assert_string_equal(e.param, "messages[0].content");
    /* garbage in tool shapes: 400 naming the exact field */
    static const struct {
        dialect_api api;
        const char *body, *param;
    } bad[] = {
        {DIALECT_ANTHROPIC_MESSAGES,
         "{\"model\":\"m\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
         "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":"
         "\"b\",\"input\":[1]}]},{\"role\":\"user\",\"content\":\"r\"}]}",
         "messages[1].content[0].input"},
        {DIALECT_ANTHROPIC_MESSAGES,
         "{\"model\":\"m\",\"max_tokens\":9,\"tools\":[{\"name\":\"b\",\"input_schema\":7}],"
         "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
         "tools[0].input_schema"},
        {DIALECT_ANTHROPIC_MESSAGES,
         "{\"model\":\"m\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{"
         "\"type\":\"tool_result\",\"tool_use_id\":5}]}]}",
         "messages[0].content[0].tool_use_id"},
        {DIALECT_ANTHROPIC_MESSAGES,
         "{\"model\":\"m\",\"max_tokens\":9,\"tool_choice\":{\"type\":\"tool\"},"
         "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
         "tool_choice.type"},
        {DIALECT_OLLAMA_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"\","
         "\"tool_calls\":{}}]}",
         "messages[0].tool_calls"},
        {DIALECT_OLLAMA_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"\","
         "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":3}}]}]}",
         "messages[0].tool_calls[0]"},
        {DIALECT_OLLAMA_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\","
         "\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]}",
         "messages[0].tool_calls"},
        {DIALECT_OPENAI_RESPONSES,
         "{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\","
         "\"name\":\"f\",\"arguments\":{}}]}",
         "input[0].arguments"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(translate(bad[i].api, bad[i].body, &dr, &e), 400);
        if (strcmp(e.param, bad[i].param))
            fprintf(stderr, "case %zu: param '%s', message %s\n", i, e.param, e.message);
        assert_string_equal(e.param, bad[i].param);
    }

    assert_int_equal(
        translate(
            DIALECT_OLLAMA_CHAT,
            "{\"model\":\"m\",\"stream\":false,\"tools\":[{\"type\":\"function\",\"function\":"
            "{\"name\":\"get\",\"parameters\":{\"type\":\"object\"}}}],\"messages\":["
            "{\"role\":\"user\",\"content\":\"q\"},"
            "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":"
            "\"get\",\"arguments\":{\"a\":1}}},{\"function\":{\"name\":\"put\",\"arguments\":"
            "{}}}]},{\"role\":\"tool\",\"content\":\"p\",\"tool_name\":\"put\"},"
            "{\"role\":\"tool\",\"content\":\"g\"}]}",
            &dr, &e),
        0);
    assert_string_equal(str_at(dr.body, "tools.0.function.name"), "get");
    const char *get_id = str_at(dr.body, "messages.1.tool_calls.0.id");
    const char *put_id = str_at(dr.body, "messages.1.tool_calls.1.id");
    assert_string_equal(str_at(dr.body, "messages.1.tool_calls.0.function.arguments"), "{\"a\":1}");
    assert_string_equal(str_at(dr.body, "messages.2.tool_call_id"), put_id); /* by name */
    assert_string_equal(str_at(dr.body, "messages.3.tool_call_id"), get_id); /* the one open */
    json_decref(dr.body);
    assert_int_equal(
        translate(DIALECT_OLLAMA_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", &dr,
                  &e),
        400);

    assert_int_equal(
        translate(DIALECT_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"name\":\"get\","
                  "\"parameters\":{\"type\":\"object\"},\"strict\":true}],\"tool_choice\":"
                  "\"required\",\"parallel_tool_calls\":false,\"input\":[{\"role\":\"user\","
                  "\"content\":\"q\"},{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":"
                  "\"get\",\"arguments\":\"{}\"},{\"type\":\"function_call\",\"call_id\":\"c2\","
                  "\"name\":\"get\",\"arguments\":\"{}\"},{\"type\":\"function_call_output\","
                  "\"call_id\":\"c2\",\"output\":\"two\"}]}",
                  &dr, &e),
        0);
    assert_string_equal(str_at(dr.body, "tools.0.function.name"), "get");
    assert_string_equal(str_at(dr.body, "tool_choice"), "required");
    assert_true(json_is_false(json_object_get(dr.body, "parallel_tool_calls")));
    assert_string_equal(str_at(dr.body, "messages.1.tool_calls.1.id"), "c2"); /* one message */
    assert_string_equal(str_at(dr.body, "messages.2.tool_call_id"), "c2");
    assert_string_equal(str_at(dr.body, "messages.2.content"), "two");
    json_decref(dr.body);
    assert_int_equal(translate(DIALECT_OPENAI_RESPONSES,
                               "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":"
                               "\"file_search\"}]}",
                               &dr, &e),
                     400);
    assert_string_equal(e.param, "tools[0].type");
    /* tool_choice none/auto without tools means nothing and is accepted as before */
    assert_int_equal(translate(DIALECT_OPENAI_RESPONSES,
                               "{\"model\":\"m\",\"input\":\"x\",\"tool_choice\":\"auto\"}", &dr,
                               &e),
                     0);
    json_decref(dr.body);
    assert_int_equal(translate(DIALECT_ANTHROPIC_MESSAGES,
                               "{\"model\":\"m\",\"max_tokens\":2,\"tool_choice\":{\"type\":"
                               "\"none\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                               &dr, &e),
                     0);
    json_decref(dr.body);

    /* answers: a whole OpenAI message with a call */
    json_t *whole = json_loads(
        "{\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":"
        "\"\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get\","
        "\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{"
        "\"prompt_tokens\":3,\"completion_tokens\":4}}",
        0, NULL);
    assert_non_null(whole);
    dialect_out *d = dialect_out_new(DIALECT_ANTHROPIC_MESSAGES, 0, NULL);
    json_t *a = dialect_out_response(d, whole);
    assert_string_equal(str_at(a, "stop_reason"), "tool_use");
    assert_int_equal(json_array_size(json_object_get(a, "content")), 1);
    assert_string_equal(str_at(a, "content.0.type"), "tool_use");
    assert_string_equal(str_at(a, "content.0.id"), "c1");
    assert_string_equal(str_at(a, "content.0.name"), "get");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_array_get(json_object_get(a, "content"), 0), "input"), "a")),
        1);
    json_decref(a);
    dialect_out_free(d);
    d = dialect_out_new(DIALECT_OLLAMA_CHAT, 0, NULL);
    json_t *o = dialect_out_response(d, whole);
    assert_string_equal(str_at(o, "message.tool_calls.0.function.name"), "get");
    assert_string_equal(str_at(o, "done_reason"), "stop");
    assert_true(json_is_object(json_object_get(
        json_object_get(
            json_array_get(json_object_get(json_object_get(o, "message"), "tool_calls"), 0),
            "function"),
        "arguments")));
    json_decref(o);
    dialect_out_free(d);
    d = dialect_out_new(DIALECT_OPENAI_RESPONSES, 0, NULL);
    json_t *rr = dialect_out_response(d, whole);
    assert_int_equal(json_array_size(json_object_get(rr, "output")), 1); /* no text: the call */
    assert_string_equal(str_at(rr, "output.0.type"), "function_call");
    assert_string_equal(str_at(rr, "output.0.call_id"), "c1");
    assert_string_equal(str_at(rr, "output.0.arguments"), "{\"a\":1}");
    json_decref(rr);
    dialect_out_free(d);
    json_decref(whole);

    /* streamed: text, then a call whose arguments come in two pieces */
    mh_buf b = {0};
    d = dialect_out_new(DIALECT_ANTHROPIC_MESSAGES, 1, NULL);
    const char *chunks[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
        "\"arguments\":\":1}\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}"};
    for (size_t i = 0; i < 4; i++) {
        json_t *c = json_loads(chunks[i], 0, NULL);
        assert_non_null(c);
        dialect_out_chunk(d, c, &b);
        json_decref(c);
    }
    dialect_out_done(d, &b);
    const char *order[] = {
        "\"content_block_start\",\"index\":0",
        "\"text_delta\",\"text\":\"hi\"",
        "\"content_block_stop\",\"index\":0",
        "\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\"",
        "\"partial_json\":\"{\\\"a\\\"\"",
        "\"partial_json\":\":1}\"",
        "\"content_block_stop\",\"index\":1",
        "\"stop_reason\":\"tool_use\"",
        "message_stop"};
    const char *at = b.data;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *next = strstr(at, order[i]);
        if (!next) fprintf(stderr, "missing in order: %s\n%s\n", order[i], b.data);
        assert_non_null(next);
        at = next;
    }
    dialect_out_free(d);
    mh_buf_free(&b);

    /* a reply that is only a call: its tool_use block is block 0, no empty text block first */
    d = dialect_out_new(DIALECT_ANTHROPIC_MESSAGES, 1, NULL);
    for (size_t i = 1; i < 4; i++) {
        json_t *c = json_loads(chunks[i], 0, NULL);
        dialect_out_chunk(d, c, &b);
        json_decref(c);
    }
    dialect_out_done(d, &b);
    assert_non_null(strstr(b.data, "\"index\":0,\"content_block\":{\"type\":\"tool_use\""));
    assert_null(strstr(b.data, "\"type\":\"text\""));
    assert_null(strstr(b.data, "\"index\":1"));
    dialect_out_free(d);
    mh_buf_free(&b);
}

/* Feed OpenAI stream chunks through a streaming dialect_out; the whole output in *b. */
static void run_stream(dialect_api api, const char *const *chunks, size_t n, mh_buf *b) {
    dialect_out *d = dialect_out_new(api, 1, NULL);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_loads(chunks[i], 0, NULL);
        assert_non_null(c);
        dialect_out_chunk(d, c, b);
        json_decref(c);
    }
    dialect_out_done(d, b);
    dialect_out_free(d);
}

/* Every string of `order` in b, in that order. */
static void assert_in_order(const mh_buf *b, const char *const *order, size_t n) {
    const char *at = b->data;
    for (size_t i = 0; i < n; i++) {
        const char *next = strstr(at, order[i]);
        if (!next) fprintf(stderr, "missing in order: %s\n%s\n", order[i], b->data);
        assert_non_null(next);
        at = next + strlen(order[i]);
    }
}

/* Streamed calls into Ollama NDJSON (a line with message.tool_calls, arguments an object, before
 * the done line) and Responses events (function_call item added, arguments delta/done, item done,
 * then response.completed listing the call). */
static void test_tool_streams(void **state) {
    (void)state;
    const char *chunks[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"a\\\":1}\"}}]}}"
        "]}",
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}"};
    mh_buf b = {0};
    run_stream(DIALECT_OLLAMA_CHAT, chunks, 2, &b);
    /* two lines: the call, then done */
    char *nl = strchr(b.data, '\n');
    assert_non_null(nl);
    *nl = '\0';
    json_t *line = json_loads(b.data, 0, NULL);
    assert_non_null(line);
    assert_false(json_is_true(json_object_get(line, "done")));
    assert_string_equal(str_at(line, "message.tool_calls.0.function.name"), "get");
    json_t *args = json_object_get(
        json_object_get(
            json_array_get(json_object_get(json_object_get(line, "message"), "tool_calls"), 0),
            "function"),
        "arguments");
    assert_true(json_is_object(args));
    assert_int_equal(json_integer_value(json_object_get(args, "a")), 1);
    json_decref(line);
    json_t *last = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(last);
    assert_true(json_is_true(json_object_get(last, "done")));
    assert_string_equal(str_at(last, "done_reason"), "stop");
    json_decref(last);
    mh_buf_free(&b);

    mh_buf r = {0};
    run_stream(DIALECT_OPENAI_RESPONSES, chunks, 2, &r);
    const char *order[] = {"response.created",
                           "response.output_item.added",
                           "\"type\":\"function_call\"",
                           "response.function_call_arguments.delta",
                           "response.function_call_arguments.done",
                           "\"arguments\":\"{\\\"a\\\":1}\"",
                           "response.output_item.done",
                           "\"call_id\":\"c1\"",
                           "response.completed",
                           "\"status\":\"completed\"",
                           "\"type\":\"function_call\""};
    assert_in_order(&r, order, sizeof order / sizeof order[0]);
    mh_buf_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ollama_requests),
        cmocka_unit_test(test_refusals_name_the_field),
        cmocka_unit_test(test_anthropic_and_responses_requests),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_errors_and_garbage),
        cmocka_unit_test(test_long_names_and_odd_finish),
        cmocka_unit_test(test_tools),
        cmocka_unit_test(test_tool_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
