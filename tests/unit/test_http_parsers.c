/* test_http_parsers.c — the pure parts of src/http: the SSE splitter fed every possible split of
 * a sample stream, and the JSON helpers (parse errors with line:column, typed getters, the
 * OpenAI error envelope).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_json.h"
#include "http/sse_parser.h"

/* ==== SSE parser ==== */

/* What the sample stream must produce, in order. */
typedef struct want_event {
    const char *event;
    const char *id;
    const char *data;
} want_event;

/* Mixed line endings (LF, CRLF, lone CR), comments, multi-line data, fields without a space,
 * an event with no data (not dispatched), a field without a colon, an unknown field. */
static const char sample[] =
    ": keep-alive\n\n"
    "data: {\"id\":1}\n\n"
    "event: usage\r\nid: 7\r\ndata: {\"usage\":{\"total_tokens\":12}}\r\n\r\n"
    "data:line one\rdata: line two\r\r"
    "retry: 100\nevent: ignored\n\n"
    "data\n\n"
    "unknown: x\ndata:  two spaces\n\n"
    "data: [DONE]\n\n";

static const want_event sample_events[] = {
    {"", "", "{\"id\":1}"},         {"usage", "7", "{\"usage\":{\"total_tokens\":12}}"},
    {"", "", "line one\nline two"}, {"", "", ""},
    {"", "", " two spaces"},        {"", "", "[DONE]"},
};

typedef struct collected {
    int n;
    char event[16][64];
    char id[16][64];
    char data[16][256];
    size_t data_len[16];
    int done_seen;
} collected;

static void collect(const sse_event *ev, void *arg) {
    collected *c = arg;
    if (c->n >= 16) return;
    snprintf(c->event[c->n], sizeof c->event[0], "%s", ev->event);
    snprintf(c->id[c->n], sizeof c->id[0], "%s", ev->id);
    snprintf(c->data[c->n], sizeof c->data[0], "%s", ev->data);
    c->data_len[c->n] = ev->data_len;
    if (sse_event_is_done(ev)) c->done_seen++;
    c->n++;
}

static void check_collected(const collected *c, const char *what) {
    int n = (int)(sizeof sample_events / sizeof sample_events[0]);
    if (c->n != n) fail_msg("%s: %d events, want %d", what, c->n, n);
    for (int i = 0; i < n; i++) {
        if (strcmp(c->event[i], sample_events[i].event) || strcmp(c->id[i], sample_events[i].id) ||
            strcmp(c->data[i], sample_events[i].data) ||
            c->data_len[i] != strlen(sample_events[i].data))
            fail_msg("%s: event %d is (%s,%s,%s), want (%s,%s,%s)", what, i, c->event[i], c->id[i],
                     c->data[i], sample_events[i].event, sample_events[i].id,
                     sample_events[i].data);
    }
    if (c->done_seen != 1) fail_msg("%s: [DONE] seen %d times", what, c->done_seen);
}

static void test_sse_whole(void **state) {
    (void)state;
    sse_parser *p = sse_parser_new(0);
    collected c = {0};
    int n = sse_parser_feed(p, sample, sizeof sample - 1, collect, &c);
    assert_int_equal(n, 6);
    check_collected(&c, "whole");
    assert_int_equal(sse_parser_mid_event(p), 0);
    sse_parser_free(p);
}

/* Every way of cutting the stream into two and into three pieces, and byte by byte. */
static void test_sse_every_split(void **state) {
    (void)state;
    size_t len = sizeof sample - 1;
    char what[64];
    for (size_t i = 0; i <= len; i++) {
        sse_parser *p = sse_parser_new(0);
        collected c = {0};
        sse_parser_feed(p, sample, i, collect, &c);
        sse_parser_feed(p, sample + i, len - i, collect, &c);
        snprintf(what, sizeof what, "split at %zu", i);
        check_collected(&c, what);
        sse_parser_free(p);
    }
    sse_parser *p = sse_parser_new(0);
    for (size_t i = 0; i <= len; i++) {
        for (size_t j = i; j <= len; j++) {
            sse_parser_reset(p);
            collected c = {0};
            sse_parser_feed(p, sample, i, collect, &c);
            sse_parser_feed(p, sample + i, j - i, collect, &c);
            sse_parser_feed(p, sample + j, len - j, collect, &c);
            snprintf(what, sizeof what, "split at %zu and %zu", i, j);
            check_collected(&c, what);
        }
    }
    sse_parser_reset(p);
    collected c = {0};
    for (size_t i = 0; i < len; i++) sse_parser_feed(p, sample + i, 1, collect, &c);
    check_collected(&c, "byte by byte");
    sse_parser_free(p);
}

/* CRLF cut between its CR and LF must count as one line break, not a blank line. */
static void test_sse_crlf_across_feeds(void **state) {
    (void)state;
    sse_parser *p = sse_parser_new(0);
    collected c = {0};
    sse_parser_feed(p, "data: a\r", 8, collect, &c);
    sse_parser_feed(p, "\ndata: b\r", 9, collect, &c);
    assert_int_equal(c.n, 0); /* "a\nb" not yet dispatched: no blank line so far */
    sse_parser_feed(p, "\n\r\n", 3, collect, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.data[0], "a\nb");
    sse_parser_free(p);
}

static void test_sse_mid_event_and_oversize(void **state) {
    (void)state;
    sse_parser *p = sse_parser_new(64);
    collected c = {0};
    sse_parser_feed(p, "data: partial", 13, collect, &c);
    assert_int_equal(sse_parser_mid_event(p), 1);
    assert_int_equal(c.n, 0);
    sse_parser_reset(p);
    assert_int_equal(sse_parser_mid_event(p), 0);
    /* An event over the cap is skipped whole, the next one still arrives. */
    char big[400];
    memset(big, 'x', sizeof big);
    sse_parser_feed(p, "data: ", 6, collect, &c);
    sse_parser_feed(p, big, sizeof big, collect, &c);
    sse_parser_feed(p, "\ndata: more\n\ndata: ok\n\n", 23, collect, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.data[0], "ok");
    assert_int_equal(sse_parser_dropped(p), 1);
    /* Many data lines adding up over the cap: dropped too. */
    for (int i = 0; i < 20; i++) sse_parser_feed(p, "data: 0123456789\n", 17, collect, &c);
    sse_parser_feed(p, "\n", 1, collect, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(sse_parser_dropped(p), 2);
    sse_parser_free(p);
}

/* ==== JSON helpers ==== */

static void test_json_parse_errors(void **state) {
    (void)state;
    http_error e;
    json_t *v = NULL;
    const char *bad = "{\n  \"model\": \"x\",\n  \"temperature\": ,\n}";
    assert_int_equal(http_json_parse(bad, strlen(bad), 1, &v, &e), -1);
    assert_null(v);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
    assert_non_null(strstr(e.message, "line 3, column"));
    assert_string_equal(e.param, "");

    assert_int_equal(http_json_parse("[1,2]", 5, 1, &v, &e), -1);
    assert_non_null(strstr(e.message, "must be a JSON object"));
    assert_int_equal(http_json_parse("", 0, 1, &v, &e), -1);
    assert_non_null(strstr(e.message, "empty"));
    assert_int_equal(http_json_parse("[1,2]", 5, 0, &v, &e), 0);
    assert_true(json_is_array(v));
    json_decref(v);
    /* Not NUL-terminated input: only `len` bytes are read. */
    assert_int_equal(http_json_parse("{\"a\":1}garbage", 7, 1, &v, &e), 0);
    json_decref(v);
}

static void test_json_getters(void **state) {
    (void)state;
    http_error e;
    json_t *o = json_loads("{\"temperature\": 2.5, \"top_p\": 0.5, \"max_tokens\": 16.0,"
                           "\"n\": 1.5, \"stream\": true, \"stop\": null, \"model\": \"m\","
                           "\"messages\": [], \"seed\": \"7\", \"meta\": {}}",
                           0, NULL);
    assert_non_null(o);
    double d;
    long long i;
    int b;
    const char *s;
    const json_t *j;
    memset(&e, 0, sizeof e);
    assert_int_equal(http_json_get_number(o, "temperature", 0, 0, 2, 1, &d, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.param, "temperature");
    assert_non_null(strstr(e.message, "[0, 2]"));
    assert_int_equal(http_json_get_number(o, "top_p", 0, 0, 1, 1, &d, &e), 0);
    assert_true(d == 0.5);
    assert_int_equal(http_json_get_number(o, "missing", 0, 0, 1, 0.25, &d, &e), 0);
    assert_true(d == 0.25);
    assert_int_equal(http_json_get_number(o, "missing", 1, 0, 1, 0.25, &d, &e), -1);
    assert_string_equal(e.param, "missing");
    assert_string_equal(e.code, "missing_required_parameter");
    assert_int_equal(http_json_get_number(o, "model", 0, 0, 1, 0, &d, &e), -1);
    assert_string_equal(e.param, "model");
    assert_non_null(strstr(e.message, "not a string"));

    assert_int_equal(http_json_get_int(o, "max_tokens", 0, 1, 100, 5, &i, &e), 0);
    assert_int_equal(i, 16);
    assert_int_equal(http_json_get_int(o, "n", 0, 1, 10, 1, &i, &e), -1);
    assert_string_equal(e.param, "n");
    assert_int_equal(http_json_get_int(o, "max_tokens", 0, 1, 10, 5, &i, &e), -1);
    assert_non_null(strstr(e.message, "[1, 10]"));
    assert_int_equal(http_json_get_int(o, "seed", 0, 0, 100, 0, &i, &e), -1);
    assert_string_equal(e.param, "seed");

    assert_int_equal(http_json_get_bool(o, "stream", 0, 0, &b, &e), 0);
    assert_int_equal(b, 1);
    assert_int_equal(http_json_get_bool(o, "stop", 0, 0, &b, &e), 0); /* null = absent */
    assert_int_equal(b, 0);
    assert_int_equal(http_json_get_bool(o, "model", 0, 0, &b, &e), -1);

    assert_int_equal(http_json_get_string(o, "model", 1, 0, NULL, &s, &e), 0);
    assert_string_equal(s, "m");
    assert_int_equal(http_json_get_string(o, "stop", 0, 0, "dflt", &s, &e), 0);
    assert_string_equal(s, "dflt");
    assert_int_equal(http_json_get_string(o, "model", 1, 0, NULL, &s, &e), 0);
    assert_int_equal(http_json_get_string(o, "seed", 0, 0, NULL, &s, &e), 0);
    json_t *longs = json_pack("{s:s}", "user", "abcdef");
    assert_int_equal(http_json_get_string(longs, "user", 0, 3, NULL, &s, &e), -1);
    assert_string_equal(e.param, "user");
    json_decref(longs);

    assert_int_equal(http_json_get_array(o, "messages", 1, &j, &e), 0);
    assert_true(json_is_array(j));
    assert_int_equal(http_json_get_array(o, "meta", 1, &j, &e), -1);
    assert_string_equal(e.param, "meta");
    assert_int_equal(http_json_get_object(o, "meta", 1, &j, &e), 0);
    assert_int_equal(http_json_get_object(o, "nothing", 1, &j, &e), -1);
    assert_null(j);
    json_decref(o);
}

static void test_json_envelope(void **state) {
    (void)state;
    http_error e;
    e.retry_after_s = 5;
    assert_int_equal(http_error_set(&e, 429, NULL, NULL, "queue_full", "queue is full (%d)", 8),
                     -1);
    assert_int_equal(e.retry_after_s, 0);
    json_t *env = http_error_envelope(&e);
    json_t *err = json_object_get(env, "error");
    assert_non_null(err);
    assert_int_equal(json_object_size(err), 4);
    assert_string_equal(json_string_value(json_object_get(err, "message")), "queue is full (8)");
    assert_string_equal(json_string_value(json_object_get(err, "type")), "rate_limit_error");
    assert_true(json_is_null(json_object_get(err, "param")));
    assert_string_equal(json_string_value(json_object_get(err, "code")), "queue_full");
    json_decref(env);

    http_error_set(&e, 400, "invalid_request_error", "messages", NULL, "bad");
    env = http_error_envelope(&e);
    err = json_object_get(env, "error");
    assert_string_equal(json_string_value(json_object_get(err, "param")), "messages");
    assert_true(json_is_null(json_object_get(err, "code")));
    json_decref(env);

    assert_string_equal(http_error_default_type(401), "authentication_error");
    assert_string_equal(http_error_default_type(404), "not_found_error");
    assert_string_equal(http_error_default_type(503), "server_error");
    assert_string_equal(http_error_default_type(413), "invalid_request_error");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_whole),
        cmocka_unit_test(test_sse_every_split),
        cmocka_unit_test(test_sse_crlf_across_feeds),
        cmocka_unit_test(test_sse_mid_event_and_oversize),
        cmocka_unit_test(test_json_parse_errors),
        cmocka_unit_test(test_json_getters),
        cmocka_unit_test(test_json_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
