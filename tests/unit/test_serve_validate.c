/* test_serve_validate.c — serve_validate_request(): the checks the generation routes run on a
 * body before they wait for the model, without a server. Also the regression inputs of
 * fuzz/fuzz_request.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "serve/serve.h"

/* Validate `body` as `kind`; returns the status (0 when accepted) and copies param. */
static int check(serve_request_kind kind, const char *body, char *param) {
    http_error e;
    memset(&e, 0, sizeof e);
    int rc = serve_validate_request(kind, body, strlen(body), &e);
    if (param) strcpy(param, rc ? e.param : "");
    if (rc) assert_true(e.message[0]);
    return rc ? e.status : 0;
}

static void test_accepts(void **state) {
    (void)state;
    assert_int_equal(check(SERVE_REQ_CHAT,
                           "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                           "{\"role\":\"assistant\",\"content\":null}],\"n\":2,\"stop\":[\"a\"],"
                           "\"logit_bias\":{\"3\":-100},\"stream\":true}",
                           NULL),
                     0);
    assert_int_equal(check(SERVE_REQ_COMPLETION, "{\"prompt\":\"p\",\"max_tokens\":4}", NULL), 0);
    assert_int_equal(
        check(SERVE_REQ_EMBEDDING, "{\"input\":\"a\",\"encoding_format\":\"base64\"}", NULL), 0);
}

static void test_rejects_with_param(void **state) {
    (void)state;
    char param[64];
    assert_int_equal(check(SERVE_REQ_CHAT, "{\"messages\":[]}", param), 400);
    assert_string_equal(param, "messages");
    assert_int_equal(check(SERVE_REQ_CHAT, "{\"messages\":[{\"role\":\"robot\"}]}", param), 400);
    assert_string_equal(param, "messages[0]");
    assert_int_equal(check(SERVE_REQ_CHAT, "{\"messages\":[{\"role\":\"tool\"}]}", param), 400);
    assert_string_equal(param, "messages[0].tool_call_id");
    assert_int_equal(check(SERVE_REQ_CHAT,
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"n\":9}", param),
                     400);
    assert_string_equal(param, "n");
    assert_int_equal(check(SERVE_REQ_COMPLETION, "{\"prompt\":[1]}", param), 400);
    assert_string_equal(param, "prompt");
    assert_int_equal(check(SERVE_REQ_COMPLETION, "{\"prompt\":\"a\",\"echo\":true}", param), 400);
    assert_string_equal(param, "echo");
    assert_int_equal(check(SERVE_REQ_EMBEDDING, "{\"input\":[\"\"]}", param), 400);
    assert_string_equal(param, "input");
    assert_int_equal(
        check(SERVE_REQ_EMBEDDING, "{\"input\":\"a\",\"encoding_format\":\"hex\"}", param), 400);
    assert_string_equal(param, "encoding_format");
    assert_int_equal(check(SERVE_REQ_COMPLETION,
                           "{\"prompt\":\"a\",\"stream_options\":{\"include_usage\":1}}", param),
                     400);
    assert_string_equal(param, "stream_options.include_usage");
    /* Not JSON, not an object, and a kind out of range. */
    assert_int_equal(check(SERVE_REQ_CHAT, "{\"messages\":", NULL), 400);
    assert_int_equal(check(SERVE_REQ_CHAT, "[]", NULL), 400);
    http_error e;
    assert_int_equal(serve_validate_request((serve_request_kind)7, "{}", 2, &e), -1);
    assert_int_equal(e.status, 500);
}

/* fuzz_request crash: a parse error quoting invalid UTF-8 ("near '...'") made
 * http_error_envelope() return NULL. The message is now made valid UTF-8. */
static void test_envelope_of_invalid_utf8(void **state) {
    (void)state;
    static const char body[] = "{\"mel\":\"m\",\"mes\\u000\xcd\x9e\x98\x9a\x8c\xdd\xc5\xddm\"}";
    http_error e;
    assert_int_equal(serve_validate_request(SERVE_REQ_CHAT, body, sizeof body - 1, &e), -1);
    assert_int_equal(e.status, 400);
    json_t *env = http_error_envelope(&e);
    assert_non_null(env);
    json_decref(env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_rejects_with_param),
        cmocka_unit_test(test_envelope_of_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
