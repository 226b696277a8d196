/* fuzz_request.c — libFuzzer target for the request-body validators of serve's generation
 * routes (serve_validate_request: chat/completions, completions, embeddings).
 *
 * Byte 0 picks the route (mod 3), the rest is the body. A rejection must be a 4xx with a
 * message and an error envelope that serializes; an acceptance must be a JSON object body (the
 * route never queues anything else). Violations abort(). serve.c and everything it links are
 * compiled instrumented (mhcore_fuzz in fuzz/CMakeLists.txt).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    serve_request_kind kind = (serve_request_kind)(data[0] % 3);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    http_error e;
    memset(&e, 0x55, sizeof e); /* a field left unset shows as garbage, not as "" */
    int rc = serve_validate_request(kind, body, len, &e);
    if (rc == 0) {
        json_t *root = json_loadb(body, len, 0, NULL);
        CHECK(root && json_is_object(root));
        json_decref(root);
        return 0;
    }
    CHECK(rc == -1);
    CHECK(e.status >= 400 && e.status < 500);
    CHECK(memchr(e.message, 0, sizeof e.message) && e.message[0]);
    CHECK(memchr(e.type, 0, sizeof e.type) && e.type[0]);
    CHECK(memchr(e.param, 0, sizeof e.param) && memchr(e.code, 0, sizeof e.code));
    json_t *env = http_error_envelope(&e);
    CHECK(env);
    char *text = json_dumps(env, 0);
    CHECK(text);
    free(text);
    json_decref(env);
    return 0;
}
