/* fuzz_tokenizer.c — libFuzzer target for tokenizer encode/decode on arbitrary bytes.
 *
 * LLVMFuzzerInitialize loads three vocabularies once, one per backend and pre-tokenizer family:
 * SentencePiece (stories260K.gguf from the shared models folder), byte-level BPE llama3 and qwen3
 * (tests/data). Files are found through MODELHUB_FUZZ_ROOT (the repository root; default: the
 * source folder compiled in as MH_FUZZ_SOURCE_ROOT).
 *
 * Input: byte 0 picks the flags (add_special, parse_special); the rest is the text. Each
 * vocabulary encodes it; the count must not depend on the buffer size, every id must be in range,
 * and every id's piece and the streaming detokenizer must stay within their caps, and what the
 * stream emits must be valid UTF-8 (decode(encode(x)) == x is not asserted: SPM adds a
 * dummy-prefix space and BPE maps invalid bytes to U+FFFD). Violations abort().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

#ifndef MH_FUZZ_SOURCE_ROOT
#define MH_FUZZ_SOURCE_ROOT "."
#endif

static const char *const vocab_files[] = {
    "../shared/models/stories260K.gguf",
    "tests/data/ggml-vocab-llama3.gguf",
    "tests/data/ggml-vocab-qwen3.gguf",
};
#define N_VOCABS (sizeof vocab_files / sizeof vocab_files[0])

static gguf *files[N_VOCABS];
static tokenizer *toks[N_VOCABS];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *root = getenv("MODELHUB_FUZZ_ROOT");
    if (!root || !*root) root = MH_FUZZ_SOURCE_ROOT;
    for (size_t i = 0; i < N_VOCABS; i++) {
        char path[4096], err[256];
        snprintf(path, sizeof path, "%s/%s", root, vocab_files[i]);
        if (gguf_open(path, &files[i], err, sizeof err) != 0 ||
            tokenizer_load(files[i], &toks[i], err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_tokenizer: %s: %s (set MODELHUB_FUZZ_ROOT)\n", path, err);
            exit(1);
        }
    }
    return 0;
}

/* 1 when s[0..n) is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += k + 1;
    }
    return 1;
}

static void one(const tokenizer *t, const char *text, size_t len, int add_special,
                int parse_special) {
    int32_t small[4];
    int n = tokenizer_encode(t, text, len, add_special, parse_special, small, 4);
    CHECK(n >= 0);
    int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    CHECK(ids);
    int n2 = tokenizer_encode(t, text, len, add_special, parse_special, ids, n);
    CHECK(n2 == n);
    for (int i = 0; i < n && i < 4; i++) CHECK(ids[i] == small[i]);
    int nv = tokenizer_n_vocab(t);
    size_t maxp = tokenizer_max_piece(t), cap = tokenizer_stream_cap(t);
    char *buf = malloc(cap + 1), *out = malloc((size_t)n * cap + cap + 1);
    CHECK(buf && out);
    tokenizer_stream st = {0};
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        CHECK(ids[i] >= 0 && ids[i] < nv);
        int pl = tokenizer_piece(t, ids[i], 1, buf, cap);
        CHECK(pl >= 0 && (size_t)pl <= maxp);
        pl = tokenizer_piece(t, ids[i], 0, buf, cap);
        CHECK(pl >= 0 && (size_t)pl <= maxp);
        (void)tokenizer_is_eog(t, ids[i]);
        (void)tokenizer_is_control(t, ids[i]);
        size_t k = tokenizer_stream_push(&st, t, ids[i], out + used, cap);
        CHECK(k <= cap);
        used += k;
    }
    size_t k = tokenizer_stream_flush(&st, out + used, cap);
    CHECK(k <= cap);
    used += k;
    CHECK(st.n_pending == 0);
    CHECK(valid_utf8((const unsigned char *)out, used));
    CHECK(tokenizer_piece(t, nv, 1, buf, cap) == -1 && tokenizer_piece(t, -1, 1, buf, cap) == -1);
    (void)tokenizer_find(t, text, len);
    free(buf);
    free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int flags = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    for (size_t i = 0; i < N_VOCABS; i++) one(toks[i], text, len, flags & 1, (flags >> 1) & 1);
    return 0;
}
