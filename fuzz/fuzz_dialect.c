/* fuzz_dialect.c — libFuzzer target for the dialect translators (src/http/dialect.c).
 *
 * Byte 0 picks the dialect (mod 6), the rest is a JSON document. It is translated as a request
 * (a refusal must be a 4xx naming its reason; an acceptance must give an OpenAI body that
 * serializes), then fed to a stream translator as an OpenAI chunk (twice, then [DONE]), to a
 * whole-answer translator and to a gathering one: none may crash, a gathering one writes
 * nothing, and whole answers must be JSON bodies.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/dialect.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    dialect_api api = (dialect_api)(data[0] % 6);
    json_t *in = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    if (!in) return 0;
    dialect_request dr;
    http_error e;
    memset(&e, 0x55, sizeof e);
    if (dialect_translate(api, in, &dr, &e) == 0) {
        char *text = json_dumps(dr.body, 0);
        CHECK(text && dr.path);
        free(text);
        json_decref(dr.body);
    } else {
        CHECK(e.status >= 400 && e.status < 500);
        CHECK(memchr(e.message, 0, sizeof e.message) && e.message[0]);
        json_t *body = dialect_error_body(api, &e);
        CHECK(body);
        json_decref(body);
    }
    mh_buf out = {0};
    dialect_out *d = dialect_out_new(api, 1, NULL);
    dialect_out_chunk(d, in, &out);
    dialect_out_chunk(d, in, &out);
    dialect_out_done(d, &out);
    CHECK(dialect_out_closed(d));
    dialect_out_free(d);
    mh_buf_free(&out);
    d = dialect_out_new(api, 0, NULL);
    json_t *whole = dialect_out_response(d, in);
    CHECK(whole);
    json_decref(whole);
    dialect_out_free(d);
    d = dialect_out_new(api, 0, NULL); /* a stream gathered into one answer */
    int status;
    dialect_out_chunk(d, in, &out);
    if (data[0] & 0x80) dialect_out_done(d, &out);
    CHECK(out.len == 0);
    whole = dialect_out_whole(d, &status);
    CHECK(whole && status >= 200);
    json_decref(whole);
    dialect_out_free(d);
    json_decref(in);
    return 0;
}
