/* fuzz_grammar.c — libFuzzer target for the JSON-schema grammar (src/engine/grammar.c).
 *
 * The input is a schema (JSON) and, after a NUL byte, a walk: each byte proposes the next output
 * byte, and the first byte at or after it (mod 256) that the machine takes is written. Checked:
 * a refused schema says why; the machine never gets stuck (no byte taken and not accepting);
 * the fewest bytes to finish is 0 exactly when accepting; and an output the machine accepts is
 * a JSON document. A walk byte of 0xff at an accepting point ends the output there.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

#define MAX_OUT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t schema_len = nul ? (size_t)(nul - data) : size;
    json_t *schema = json_loadb((const char *)data, schema_len, JSON_DECODE_ANY, NULL);
    if (!schema) return 0;
    grammar *g = NULL;
    char err[256];
    err[0] = 0;
    if (grammar_from_schema(schema, &g, err, sizeof err) < 0) {
        CHECK(err[0]);
        json_decref(schema);
        return 0;
    }
    json_decref(schema);
    grammar_state *st = grammar_state_new(g, NULL);
    CHECK(st);
    static char out[MAX_OUT];
    size_t n = 0;
    const uint8_t *walk = nul ? nul + 1 : data + size, *end = data + size;
    for (; walk < end && n < MAX_OUT; walk++) {
        int accepting = grammar_state_accepting(st);
        CHECK((grammar_state_rest(st) == 0) == (accepting != 0));
        if (accepting && *walk == 0xff) break;
        int taken = 0;
        for (int k = 0; k < 256 && !taken; k++) {
            char c = (char)((*walk + k) & 0xff);
            if (grammar_state_feed(st, &c, 1) == 0) {
                out[n++] = c;
                taken = 1;
            }
        }
        CHECK(taken || accepting);                      /* never stuck */
        CHECK(taken || !grammar_state_continuable(st)); /* "continuable" means a byte fits */
        if (!taken) break;
    }
    if (grammar_state_accepting(st)) {
        json_error_t je;
        json_t *doc = json_loadb(out, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        CHECK(doc); /* what the machine accepts is JSON */
        json_decref(doc);
    }
    grammar_state_free(st);
    grammar_free(g);
    return 0;
}
