/* test_tools.c — tool requests validated, rendered per template style, and calls read back out
 * of generated text (whole and while streaming). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "serve/tools.h"

static const char *const weather_tools =
    "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
    "\"description\": \"Weather in a city\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}, "
    "{\"type\": \"function\", \"function\": {\"name\": \"get_time\"}}]";

/* A request body: the two tools plus `extra` members (", ..." or ""). */
static json_t *body_with(const char *extra) {
    char text[2048];
    snprintf(text, sizeof text, "%s%s}", weather_tools, extra);
    json_t *b = json_loads(text, 0, NULL);
    assert_non_null(b);
    return b;
}

static void expect_400(const char *body_text, const char *param) {
    json_t *b = json_loads(body_text, 0, NULL);
    assert_non_null(b);
    tools_request tr;
    http_error e;
    assert_int_equal(tools_parse_request(b, &tr, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.param, param);
    json_decref(b);
}

static void test_parse_request(void **state) {
    (void)state;
    tools_request tr;
    http_error e;
    json_t *b = body_with("");
    assert_int_equal(tools_parse_request(b, &tr, &e), 0);
    assert_int_equal(tr.choice, TOOLS_AUTO);
    assert_int_equal(tr.parallel, 1);
    json_decref(b);
    b = body_with(", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": "
                  "\"get_time\"}}, \"parallel_tool_calls\": false");
    assert_int_equal(tools_parse_request(b, &tr, &e), 0);
    assert_int_equal(tr.choice, TOOLS_NAMED);
    assert_string_equal(tr.named, "get_time");
    assert_int_equal(tr.parallel, 0);
    json_decref(b);
    b = json_loads("{\"tool_choice\": \"none\"}", 0, NULL);
    assert_int_equal(tools_parse_request(b, &tr, &e), 0);
    assert_int_equal(tr.choice, TOOLS_NONE);
    json_decref(b);

    expect_400("{\"tools\": {}}", "tools");
    expect_400("{\"tools\": [{\"type\": \"code\", \"function\": {\"name\": \"x\"}}]}",
               "tools[0].type");
    expect_400("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"a b\"}}]}",
               "tools[0].function.name");
    expect_400("{\"tools\": [{\"type\": \"function\", \"function\": {}}]}",
               "tools[0].function.name");
    expect_400("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"x\", "
               "\"parameters\": \"not a schema\"}}]}",
               "tools[0].function.parameters");
    expect_400("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"x\", "
               "\"parameters\": {\"type\": \"string\"}}}]}",
               "tools[0].function.parameters");
    expect_400("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"x\", "
               "\"extra\": 1}}]}",
               "tools[0].function.extra");
    expect_400("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"x\"}}, "
               "{\"type\": \"function\", \"function\": {\"name\": \"x\"}}]}",
               "tools");
    expect_400("{\"tool_choice\": \"required\"}", "tool_choice");
    expect_400("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"x\"}}], "
               "\"tool_choice\": \"sometimes\"}",
               "tool_choice");
    expect_400("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"x\"}}], "
               "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"y\"}}}",
               "tool_choice");
    expect_400("{\"parallel_tool_calls\": 1}", "parallel_tool_calls");
}

static void test_check_message(void **state) {
    (void)state;
    http_error e;
    json_t *m = json_loads("{\"role\": \"tool\", \"content\": \"18C\"}", 0, NULL);
    assert_int_equal(tools_check_message(m, 3, &e), -1);
    assert_string_equal(e.param, "messages[3].tool_call_id");
    json_decref(m);
    m = json_loads("{\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"c\", \"type\": "
                   "\"function\", \"function\": {\"name\": \"f\", \"arguments\": {}}}]}",
                   0, NULL);
    assert_int_equal(tools_check_message(m, 1, &e), -1); /* arguments must be a string */
    assert_string_equal(e.param, "messages[1].tool_calls[0]");
    json_decref(m);
    m = json_loads("{\"role\": \"user\", \"tool_calls\": []}", 0, NULL);
    assert_int_equal(tools_check_message(m, 0, &e), -1);
    json_decref(m);
    m = json_loads("{\"role\": \"tool\", \"tool_call_id\": \"c\", \"content\": \"ok\"}", 0, NULL);
    assert_int_equal(tools_check_message(m, 0, &e), 0);
    json_decref(m);
}

static const char *const history =
    "[{\"role\": \"developer\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Weather in \"},"
    "  {\"type\": \"text\", \"text\": \"Paris?\"}]},"
    " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": "
    "\"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": "
    "\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"18C\"},"
    " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"sunny\"}]";

static void test_render_styles(void **state) {
    (void)state;
    json_t *b = body_with(""), *msgs = json_loads(history, 0, NULL);
    tools_request tr;
    http_error e;
    assert_int_equal(tools_parse_request(b, &tr, &e), 0);
    tools_prompt p;

    tools_build_messages(msgs, &tr, TOOLS_STYLE_HERMES, &p);
    assert_int_equal(p.n, 4); /* system (with the tools), user, assistant, both results */
    assert_string_equal(p.msgs[0].role, "system");
    assert_true(strncmp(p.msgs[0].content, "Be brief.\n\n# Tools", 18) == 0);
    assert_non_null(strstr(p.msgs[0].content, "<tools>\n{\"type\":\"function\",\"function\":"
                                              "{\"name\":\"get_weather\""));
    assert_string_equal(p.msgs[1].content, "Weather in Paris?");
    assert_string_equal(p.msgs[2].content,
                        "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":"
                        "\"Paris\"}}\n</tool_call>");
    assert_string_equal(p.msgs[3].role, "user");
    assert_string_equal(p.msgs[3].content, "<tool_response>\n18C\n</tool_response>\n"
                                           "<tool_response>\nsunny\n</tool_response>");
    tools_prompt_free(&p);

    tools_build_messages(msgs, &tr, TOOLS_STYLE_LLAMA3, &p);
    assert_int_equal(p.n, 5);
    assert_string_equal(p.msgs[2].content,
                        "{\"name\":\"get_weather\",\"parameters\":{\"city\":\"Paris\"}}");
    assert_string_equal(p.msgs[3].role, "ipython");
    assert_string_equal(p.msgs[3].content, "18C");
    /* the llama3 template accepts the ipython role; the others refuse it */
    char *out = NULL, err[128];
    assert_int_equal(chat_format(CHAT_LLAMA3, p.msgs, p.n, 1, &out, NULL, err, sizeof err), 0);
    assert_non_null(strstr(out, "<|start_header_id|>ipython<|end_header_id|>\n\n18C<|eot_id|>"));
    free(out);
    assert_int_equal(chat_format(CHAT_CHATML, p.msgs, p.n, 1, &out, NULL, err, sizeof err), -1);
    tools_prompt_free(&p);

    tools_build_messages(msgs, &tr, TOOLS_STYLE_GENERIC, &p);
    assert_string_equal(p.msgs[3].content, "Result of the call c1 of get_weather: 18C");
    tools_prompt_free(&p);

    /* no tools: messages pass through, developer becomes system */
    tools_request none = {0};
    tools_build_messages(msgs, &none, TOOLS_STYLE_HERMES, &p);
    assert_int_equal(p.n, 4);
    assert_string_equal(p.msgs[0].role, "system");
    assert_string_equal(p.msgs[0].content, "Be brief.");
    tools_prompt_free(&p);
    json_decref(msgs);
    json_decref(b);
}

/* Parse `text`; returns the calls (or NULL) and writes the content into `content`. */
static json_t *parse(const tools_request *tr, tools_style st, int forced, const char *text,
                     char *content, size_t cap) {
    mh_buf c = {0};
    json_t *calls = NULL;
    tools_parse_output(tr, st, forced, text, strlen(text), "call_x", &c, &calls);
    snprintf(content, cap, "%s", c.data ? c.data : "");
    mh_buf_free(&c);
    return calls;
}

static void expect_call(const json_t *calls, size_t i, const char *name, const char *args) {
    const json_t *c = json_array_get(calls, i);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "type")), "function");
    char id[32];
    snprintf(id, sizeof id, "call_x_%zu", i);
    assert_string_equal(json_string_value(json_object_get(c, "id")), id);
    const json_t *f = json_object_get(c, "function");
    assert_string_equal(json_string_value(json_object_get(f, "name")), name);
    assert_string_equal(json_string_value(json_object_get(f, "arguments")), args);
}

static void test_parse_output(void **state) {
    (void)state;
    json_t *b = body_with("");
    tools_request tr;
    http_error e;
    assert_int_equal(tools_parse_request(b, &tr, &e), 0);
    char content[512];

    json_t *calls = parse(&tr, TOOLS_STYLE_HERMES, 0,
                          "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                          "{\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": "
                          "\"get_time\", \"arguments\": {}}\n</tool_call>",
                          content, sizeof content);
    assert_int_equal(json_array_size(calls), 2);
    expect_call(calls, 0, "get_weather", "{\"city\":\"Oslo\"}");
    expect_call(calls, 1, "get_time", "{}");
    assert_string_equal(content, "Let me look.");
    json_decref(calls);

    /* forced: the prompt opened the call; a missing close tag at the end is fine */
    calls = parse(&tr, TOOLS_STYLE_HERMES, 1, "{\"name\": \"get_time\", \"arguments\": {}}",
                  content, sizeof content);
    assert_int_equal(json_array_size(calls), 1);
    assert_string_equal(content, "");
    json_decref(calls);

    /* not a call: an undeclared function, broken JSON, or plain text stay content */
    const char *plain[] = {
        "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {</tool_call>",
        "It is sunny.",
    };
    for (size_t i = 0; i < 3; i++) {
        assert_null(parse(&tr, TOOLS_STYLE_HERMES, 0, plain[i], content, sizeof content));
        assert_string_equal(content, plain[i]);
    }

    calls =
        parse(&tr, TOOLS_STYLE_LLAMA3, 0,
              "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}; "
              "{\"name\": \"get_time\", \"parameters\": {}}",
              content, sizeof content);
    assert_int_equal(json_array_size(calls), 2);
    expect_call(calls, 0, "get_weather", "{\"city\":\"Rome\"}");
    json_decref(calls);
    /* arguments given as a JSON string are parsed too */
    calls = parse(&tr, TOOLS_STYLE_GENERIC, 0,
                  "  {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Kyiv\\\"}\"}",
                  content, sizeof content);
    expect_call(calls, 0, "get_weather", "{\"city\":\"Kyiv\"}");
    json_decref(calls);
    assert_null(
        parse(&tr, TOOLS_STYLE_GENERIC, 0, "The answer is {\"name\": 1}", content, sizeof content));

    /* parallel_tool_calls false: the first call only */
    tr.parallel = 0;
    calls = parse(&tr, TOOLS_STYLE_GENERIC, 0,
                  "{\"name\": \"get_time\", \"arguments\": {}} {\"name\": \"get_time\", "
                  "\"arguments\": {}}",
                  content, sizeof content);
    assert_int_equal(json_array_size(calls), 1);
    json_decref(calls);
    /* tool_choice none reads no calls */
    tr.choice = TOOLS_NONE;
    assert_null(parse(&tr, TOOLS_STYLE_GENERIC, 0, "{\"name\": \"get_time\", \"arguments\": {}}",
                      content, sizeof content));
    json_decref(b);
}

static void test_stream_safe(void **state) {
    (void)state;
    int in_call;
    const char *t = "Sure <tool_ca";
    assert_int_equal(tools_stream_safe(TOOLS_STYLE_HERMES, t, strlen(t), &in_call), 5);
    assert_int_equal(in_call, 0);
    t = "Sure <tool_call>\n{";
    assert_int_equal(tools_stream_safe(TOOLS_STYLE_HERMES, t, strlen(t), &in_call), 5);
    assert_int_equal(in_call, 1);
    t = "Sure <b>";
    assert_int_equal(tools_stream_safe(TOOLS_STYLE_HERMES, t, strlen(t), &in_call), strlen(t));
    t = "  ";
    assert_int_equal(tools_stream_safe(TOOLS_STYLE_GENERIC, t, strlen(t), &in_call), 0);
    t = " {\"na";
    assert_int_equal(tools_stream_safe(TOOLS_STYLE_GENERIC, t, strlen(t), &in_call), 0);
    assert_int_equal(in_call, 1);
    t = "<|pyth";
    assert_int_equal(tools_stream_safe(TOOLS_STYLE_LLAMA3, t, strlen(t), &in_call), 0);
    assert_int_equal(in_call, 0);
    t = " Hello";
    assert_int_equal(tools_stream_safe(TOOLS_STYLE_LLAMA3, t, strlen(t), &in_call), strlen(t));
}

static void test_call_schema(void **state) {
    (void)state;
    json_t *b = body_with(", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": "
                          "\"get_weather\"}}");
    tools_request tr;
    http_error e;
    assert_int_equal(tools_parse_request(b, &tr, &e), 0);
    json_t *s = tools_call_schema(&tr, TOOLS_STYLE_LLAMA3);
    char *text = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text,
                        "{\"additionalProperties\":false,\"properties\":{\"name\":{\"const\":"
                        "\"get_weather\"},\"parameters\":{\"properties\":{\"city\":{\"type\":"
                        "\"string\"}},\"required\":[\"city\"],\"type\":\"object\"}},\"required\":"
                        "[\"name\",\"parameters\"],\"type\":\"object\"}");
    free(text);
    json_decref(s);
    tr.choice = TOOLS_REQUIRED; /* any of the two */
    s = tools_call_schema(&tr, TOOLS_STYLE_HERMES);
    assert_int_equal(json_array_size(json_object_get(s, "anyOf")), 2);
    json_decref(s);
    json_decref(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_request), cmocka_unit_test(test_check_message),
        cmocka_unit_test(test_render_styles), cmocka_unit_test(test_parse_output),
        cmocka_unit_test(test_stream_safe),   cmocka_unit_test(test_call_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
