/* test_tokenizer_util.h — helpers the tokenizer tests share: whole files, a vocabulary loaded
 * from a GGUF, encoding into a fresh array. Include after <cmocka.h>. */
#ifndef MH_TEST_TOKENIZER_UTIL_H
#define MH_TEST_TOKENIZER_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

/* A whole file, NUL-terminated; the test fails when it cannot be read. */
static inline char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

typedef struct loaded {
    gguf *f;
    tokenizer *t;
} loaded;

/* The tokenizer of the GGUF at `path`; the test fails when it does not load. */
static inline loaded load_vocab_at(const char *path) {
    loaded l = {0};
    char err[512];
    if (gguf_open(path, &l.f, err, sizeof err) < 0) fail_msg("%s: %s", path, err);
    if (tokenizer_load(l.f, &l.t, err, sizeof err) < 0) fail_msg("%s: %s", path, err);
    return l;
}

static inline void unload(loaded *l) {
    tokenizer_free(l->t);
    gguf_close(l->f);
}

/* Encode into a malloc'd array of *n ids. */
static inline int32_t *encode(const tokenizer *t, const char *s, size_t len, int add_special,
                              int parse_special, int *n) {
    int count = tokenizer_encode(t, s, len, add_special, parse_special, NULL, 0);
    assert_true(count >= 0);
    int32_t *ids = malloc(((size_t)count + 1) * sizeof *ids);
    assert_non_null(ids);
    assert_int_equal(tokenizer_encode(t, s, len, add_special, parse_special, ids, count), count);
    *n = count;
    return ids;
}

#endif
