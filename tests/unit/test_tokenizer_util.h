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

/* Decode ids by concatenating their pieces (render_special off). Returns a malloc'd buffer. */
static inline char *decode(const tokenizer *t, const int32_t *ids, int n, size_t *len) {
    size_t cap = 64, k = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < n; i++) {
        int m = tokenizer_piece(t, ids[i], 0, NULL, 0);
        assert_true(m >= 0);
        if (k + (size_t)m + 1 > cap) {
            while (k + (size_t)m + 1 > cap) cap *= 2;
            buf = realloc(buf, cap);
        }
        assert_int_equal(tokenizer_piece(t, ids[i], 0, buf + k, (size_t)m), m);
        k += (size_t)m;
    }
    buf[k] = 0;
    *len = k;
    return buf;
}

/* Strict UTF-8 check (no overlongs, no surrogates, nothing above U+10FFFF). */
static inline int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf;
        if (b < 0x80) {
            i++;
            continue;
        } else if (b >= 0xc2 && b <= 0xdf)
            need = 1;
        else if (b == 0xe0)
            need = 2, lo = 0xa0;
        else if (b == 0xed)
            need = 2, hi = 0x9f;
        else if (b >= 0xe1 && b <= 0xef)
            need = 2;
        else if (b == 0xf0)
            need = 3, lo = 0x90;
        else if (b == 0xf4)
            need = 3, hi = 0x8f;
        else if (b >= 0xf1 && b <= 0xf3)
            need = 3;
        else
            return 0;
        if (i + need >= n) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) return 0;
        i += need + 1;
    }
    return 1;
}

#endif
