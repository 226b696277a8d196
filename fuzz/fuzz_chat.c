/* fuzz_chat.c — libFuzzer target for the chat template renderer (src/engine/chat.c).
 *
 * The input is JSON, as a request's `messages` would be: an array of objects with "role" and
 * "content" strings (other shapes are skipped, wrong types give a NULL role or content, which
 * chat_format must answer with an error, not a crash). Every family formats the messages with and
 * without the generation prompt; a success must hand out a NUL-terminated string of the stated
 * length, a failure a message and *out NULL. A string input is also run through chat_detect() as
 * a template. Violations abort().
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

#define MAX_MESSAGES 64

static void format_all(const chat_message *m, size_t n) {
    for (int fam = 0; fam <= CHAT_FAMILY_COUNT; fam++) {
        for (int gen = 0; gen < 2; gen++) {
            char *out = (char *)1, err[256];
            size_t len = 12345;
            err[0] = 0;
            int rc = chat_format((chat_family)fam, m, n, gen, &out, &len, err, sizeof err);
            if (rc == 0) {
                CHECK(fam < CHAT_FAMILY_COUNT && out && strlen(out) == len);
                free(out);
            } else {
                CHECK(rc == -1 && out == NULL && err[0] && memchr(err, 0, sizeof err));
            }
        }
        const char *const *stops = chat_stop_strings((chat_family)fam);
        CHECK(stops);
        for (size_t i = 0; stops[i]; i++) CHECK(stops[i][0]);
        CHECK(chat_family_name((chat_family)fam));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!root) return 0;
    if (json_is_string(root)) {
        /* A template: detection must name a family that round-trips through its name. */
        chat_family f = chat_detect(json_string_value(root));
        CHECK(f >= 0 && f < CHAT_FAMILY_COUNT);
        int back = chat_family_from_name(chat_family_name(f));
        CHECK(back == -1 || back == (int)f || f == CHAT_UNKNOWN);
        (void)chat_family_from_name(json_string_value(root));
    } else if (json_is_array(root)) {
        chat_message m[MAX_MESSAGES];
        size_t n = 0, i;
        json_t *v;
        json_array_foreach(root, i, v) {
            if (n == MAX_MESSAGES) break;
            m[n].role = json_string_value(json_object_get(v, "role"));
            m[n].content = json_string_value(json_object_get(v, "content"));
            n++;
        }
        format_all(m, n);
    }
    json_decref(root);
    return 0;
}
