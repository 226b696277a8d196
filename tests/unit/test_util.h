/* test_util.h — helpers shared by the unit tests: where the shared models are, reading files. */
#ifndef MH_TEST_UTIL_H
#define MH_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Path of a file in the shared models folder: $MODELHUB_MODELS, else
 * $MODELHUB_SRC/../shared/models. */
static inline const char *test_model_path(const char *name) {
    static char buf[8][4096];
    static int slot;
    char *out = buf[slot++ % 8];
    const char *dir = getenv("MODELHUB_MODELS");
    if (dir && *dir)
        snprintf(out, sizeof buf[0], "%s/%s", dir, name);
    else
        snprintf(out, sizeof buf[0], "%s/../shared/models/%s",
                 getenv("MODELHUB_SRC") ? getenv("MODELHUB_SRC") : ".", name);
    return out;
}

/* Whole file, NUL-terminated; NULL when it cannot be read. Caller frees. */
static inline char *test_read_file(const char *path, size_t *len_out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        fclose(fp);
        return NULL;
    }
    fclose(fp);
    buf[n] = 0;
    if (len_out) *len_out = (size_t)n;
    return buf;
}

#endif
