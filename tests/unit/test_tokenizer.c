/* test_tokenizer.c — the SentencePiece ("llama") tokenizer against llama.cpp's reference ids,
 * round trips, the UTF-8-safe stream, hand-made vocabularies and malformed ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "test_tokenizer_util.h"

#define N_VECTORS 46

/* ==== Helpers ==== */

static char g_models[4096];
static char g_tmpdir[256];

/* The shared models folder: $MODELHUB_MODELS, else $MODELHUB_SRC/../shared/models. */
static const char *models_dir(void) {
    if (g_models[0]) return g_models;
    const char *env = getenv("MODELHUB_MODELS");
    if (env && *env) {
        snprintf(g_models, sizeof g_models, "%s", env);
    } else {
        const char *src = getenv("MODELHUB_SRC");
        if (!src || !*src) fail_msg("neither MODELHUB_MODELS nor MODELHUB_SRC is set");
        snprintf(g_models, sizeof g_models, "%s/../shared/models", src);
    }
    return g_models;
}

static char *model_path(const char *name) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", models_dir(), name);
    return path;
}

static loaded load_vocab(const char *name) {
    return load_vocab_at(model_path(name));
}

static int32_t *encode_str(const tokenizer *t, const char *s, int add_special, int parse_special,
                           int *n) {
    return encode(t, s, strlen(s), add_special, parse_special, n);
}

static void expect_ids(const tokenizer *t, const char *s, int add_special, int parse_special,
                       const int32_t *want, int n_want) {
    int n;
    int32_t *got = encode_str(t, s, add_special, parse_special, &n);
    int same = n == n_want && memcmp(got, want, (size_t)n * sizeof *got) == 0;
    if (!same) {
        fprintf(stderr, "encode(\"%s\", add_special=%d, parse_special=%d)\n  want:", s, add_special,
                parse_special);
        for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n  got: ");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n");
    }
    free(got);
    assert_true(same);
}

/* ==== Reference vectors (llama.cpp's test-tokenizer-0 format) ==== */

typedef struct vectors {
    char *inp_buf, *out_buf;
    const char *text[N_VECTORS + 1];
    size_t len[N_VECTORS + 1];
    int n_text;
    int32_t *ids[N_VECTORS + 1];
    int n_ids[N_VECTORS + 1];
    int n_lines;
} vectors;

static void load_vectors(const char *vocab, vectors *v) {
    memset(v, 0, sizeof *v);
    char name[256];
    size_t inp_len, out_len;
    snprintf(name, sizeof name, "%s.inp", vocab);
    v->inp_buf = slurp(model_path(name), &inp_len);
    snprintf(name, sizeof name, "%s.out", vocab);
    v->out_buf = slurp(model_path(name), &out_len);

    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof sep - 1;
    char *p = v->inp_buf, *end = v->inp_buf + inp_len;
    while (p < end) {
        char *m = memmem(p, (size_t)(end - p), sep, sep_len);
        assert_non_null(m); /* every string is followed by the separator */
        assert_true(v->n_text < N_VECTORS + 1);
        v->text[v->n_text] = p;
        v->len[v->n_text] = (size_t)(m - p);
        v->n_text++;
        p = m + sep_len;
    }

    char *line = v->out_buf;
    while (line < v->out_buf + out_len) {
        char *nl = memchr(line, '\n', (size_t)(v->out_buf + out_len - line));
        if (!nl) nl = v->out_buf + out_len;
        *nl = 0;
        assert_true(v->n_lines < N_VECTORS + 1);
        int cap = 16, n = 0;
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        for (char *q = line; *q;) {
            char *e;
            long id = strtol(q, &e, 10);
            if (e == q) break;
            if (n == cap) ids = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            ids[n++] = (int32_t)id;
            q = e;
        }
        v->ids[v->n_lines] = ids;
        v->n_ids[v->n_lines] = n;
        v->n_lines++;
        line = nl + 1;
    }
}

static void free_vectors(vectors *v) {
    for (int i = 0; i < v->n_lines; i++) free(v->ids[i]);
    free(v->inp_buf);
    free(v->out_buf);
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "    %s:", label);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

static void check_vectors(const char *vocab) {
    vectors v;
    load_vectors(vocab, &v);
    assert_int_equal(v.n_text, N_VECTORS);
    assert_int_equal(v.n_lines, N_VECTORS);
    loaded l = load_vocab(vocab);
    int failures = 0;
    for (int i = 0; i < N_VECTORS; i++) {
        int n;
        int32_t *got = encode(l.t, v.text[i], v.len[i], 0, 0, &n);
        if (n != v.n_ids[i] || memcmp(got, v.ids[i], (size_t)n * sizeof *got) != 0) {
            failures++;
            fprintf(stderr, "  %s: string %d (\"%.*s\") differs\n", vocab, i, (int)v.len[i],
                    v.text[i]);
            print_ids("want", v.ids[i], v.n_ids[i]);
            print_ids("got ", got, n);
        }
        free(got);
    }
    fprintf(stderr, "  %s: %d/%d strings match\n", vocab, N_VECTORS - failures, N_VECTORS);
    unload(&l);
    free_vectors(&v);
    assert_int_equal(failures, 0);
}

static void test_vectors_llama_spm(void **state) {
    (void)state;
    check_vectors("ggml-vocab-llama-spm.gguf");
}

static void test_vectors_stories260k(void **state) {
    (void)state;
    check_vectors("stories260K.gguf");
}

/* ==== Prompts of the reference generations ==== */

/* The "prompt_ids:" line of a reference .ids file. */
static int read_prompt_ids(const char *name, int32_t *ids, int max) {
    size_t len;
    char *buf = slurp(model_path(name), &len);
    char *p = strstr(buf, "prompt_ids:");
    assert_non_null(p);
    p += strlen("prompt_ids:");
    int n = 0;
    while (n < max) {
        char *e;
        long id = strtol(p, &e, 10);
        if (e == p) break;
        ids[n++] = (int32_t)id;
        p = e;
        while (*p == ' ') p++;
        if (*p == '\n' || !*p) break;
    }
    free(buf);
    return n;
}

static void test_once_upon_a_time(void **state) {
    (void)state;
    static const int32_t stories[] = {1, 403, 407, 261, 378};
    static const int32_t tiny[] = {1, 9038, 2501, 263, 931};
    int32_t ref[16];

    loaded l = load_vocab("stories260K.gguf");
    assert_true(tokenizer_adds_bos(l.t));
    assert_int_equal(tokenizer_bos(l.t), 1);
    assert_int_equal(tokenizer_eos(l.t), 2);
    assert_int_equal(tokenizer_n_vocab(l.t), 512);
    expect_ids(l.t, "Once upon a time", 1, 0, stories, 5);
    int n = read_prompt_ids("reference/stories260K.once-upon-a-time.steps64.ids", ref, 16);
    expect_ids(l.t, "Once upon a time", 1, 0, ref, n);
    expect_ids(l.t, "Once upon a time", 0, 0, stories + 1, 4);
    unload(&l);

    l = load_vocab("llama-2-tiny-random.gguf");
    assert_int_equal(tokenizer_n_vocab(l.t), 32000);
    expect_ids(l.t, "Once upon a time", 1, 0, tiny, 5);
    n = read_prompt_ids("reference/llama-2-tiny-random.once-upon-a-time.steps32.ids", ref, 16);
    expect_ids(l.t, "Once upon a time", 1, 0, ref, n);
    unload(&l);
}

/* ==== Special tokens in real vocabularies ==== */

static void test_parse_special(void **state) {
    (void)state;
    loaded l = load_vocab("ggml-vocab-llama-spm.gguf");
    int n_hello, n_world, n_plain, n;
    int32_t *hello = encode_str(l.t, "Hello", 0, 0, &n_hello);
    int32_t *world = encode_str(l.t, "world", 0, 0, &n_world); /* with its dummy prefix */

    /* "<s>Hello</s>world": control tokens are cut out, and each text after a special token
     * gets the dummy-prefix space again (llama.cpp's is_prev_special). */
    int32_t want[16];
    int k = 0;
    want[k++] = 1;
    for (int i = 0; i < n_hello; i++) want[k++] = hello[i];
    want[k++] = 2;
    for (int i = 0; i < n_world; i++) want[k++] = world[i];
    expect_ids(l.t, "<s>Hello</s>world", 0, 1, want, k);

    /* With parse_special off the same text is ordinary text: no control ids appear. */
    int32_t *plain = encode_str(l.t, "<s>Hello</s>world", 0, 0, &n_plain);
    assert_true(n_plain > k);
    for (int i = 0; i < n_plain; i++) assert_false(plain[i] == 1 || plain[i] == 2);
    free(plain);

    /* A special token at the very start emits no prefix token before it; BOS + parsed <s>. */
    int32_t *ids = encode_str(l.t, "<s>", 1, 1, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 1);
    free(ids);
    /* <unk> is an unknown-type token: parsed only with parse_special. */
    ids = encode_str(l.t, "<unk>", 0, 1, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 0);
    free(ids);
    /* Empty text: nothing, or BOS alone. */
    assert_int_equal(tokenizer_encode(l.t, "", 0, 0, 0, NULL, 0), 0);
    int32_t one[4];
    assert_int_equal(tokenizer_encode(l.t, "", 0, 1, 0, one, 4), 1);
    assert_int_equal(one[0], 1);

    /* A short buffer: the full count comes back, only `max` ids are written. */
    int32_t small[2] = {-7, -7};
    int total = tokenizer_encode(l.t, "Hello world and more words", 26, 1, 0, small, 1);
    assert_true(total > 2);
    assert_int_equal(small[0], 1);
    assert_int_equal(small[1], -7);

    /* Pieces and flags. */
    char buf[64];
    assert_int_equal(tokenizer_piece(l.t, 1, 0, buf, sizeof buf), 0);
    assert_int_equal(tokenizer_piece(l.t, 1, 1, buf, sizeof buf), 3);
    assert_memory_equal(buf, "<s>", 3);
    assert_int_equal(tokenizer_piece(l.t, 0, 0, buf, sizeof buf), 0); /* <unk>, as llama.cpp */
    assert_int_equal(tokenizer_piece(l.t, 0, 1, buf, sizeof buf), 5);
    assert_int_equal(tokenizer_piece(l.t, 3 + 0x41, 0, buf, sizeof buf), 1); /* <0x41> */
    assert_int_equal(buf[0], 'A');
    assert_int_equal(tokenizer_piece(l.t, 15043, 0, buf, sizeof buf), 6); /* "▁Hello" */
    assert_memory_equal(buf, " Hello", 6);
    assert_int_equal(tokenizer_piece(l.t, 15043, 0, buf, 2), 6); /* truncated, full length */
    assert_int_equal(tokenizer_piece(l.t, 32000, 0, buf, sizeof buf), -1);
    assert_int_equal(tokenizer_piece(l.t, -1, 0, buf, sizeof buf), -1);
    assert_true(tokenizer_is_eog(l.t, 2));
    assert_false(tokenizer_is_eog(l.t, 1));
    assert_false(tokenizer_is_eog(l.t, 32000));
    assert_true(tokenizer_is_control(l.t, 1));
    assert_true(tokenizer_is_control(l.t, 2));
    assert_false(tokenizer_is_control(l.t, 15043));
    assert_int_equal(tokenizer_find(l.t, "\xe2\x96\x81Hello", 8), 15043);
    assert_int_equal(tokenizer_find(l.t, "no such piece at all", 20), -1);
    assert_true(tokenizer_max_piece(l.t) >= 6);

    free(hello);
    free(world);
    unload(&l);
}

/* ==== Round trips and the stream ==== */

static void check_round_trip(const char *vocab) {
    vectors v;
    load_vectors(vocab, &v);
    loaded l = load_vocab(vocab);
    int failures = 0;
    for (int i = 0; i < v.n_text; i++) {
        int n;
        int32_t *ids = encode(l.t, v.text[i], v.len[i], 1, 0, &n);
        size_t len;
        char *text = decode(l.t, ids, n, &len);
        /* BOS renders as ""; the dummy prefix comes back as one leading space. */
        int ok = v.len[i] == 0 ? len == 0
                               : len == v.len[i] + 1 && text[0] == ' ' &&
                                     memcmp(text + 1, v.text[i], v.len[i]) == 0;
        if (!ok) {
            failures++;
            fprintf(stderr, "  %s: round trip of string %d gave \"%s\"\n", vocab, i, text);
        }
        free(ids);
        free(text);
    }
    unload(&l);
    free_vectors(&v);
    assert_int_equal(failures, 0);
}

/* U+2581 -> ' ' in place; returns the new length. */
static size_t unescape_spaces(char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            s[k++] = ' ';
            i += 3;
        } else {
            s[k++] = s[i++];
        }
    }
    return k;
}

/* Invalid UTF-8 is tokenized byte-wise and comes back byte for byte, with one exception that
 * llama.cpp shares: a lead byte just before a space swallows part of the escaped U+2581, whose
 * bytes then come back as byte tokens, i.e. as U+2581 rather than ' '. That case also makes
 * more symbols than input characters. */
static void test_invalid_utf8(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int exact; /* no lead byte right before a space */
    } inputs[] = {
        {"\xc3 \xc3 \xc3 ", 0},
        {"\xf0 x\xff\x80 ", 0},
        {"\xe6\x88", 1},
        {"a\xf8\x88\x80\x80\x80"
         "b",
         1},
        {" \xf0\x9f\xa6", 1},
        {"\xc3", 1},
        {"\xf0  \xe2 \xe2\x96 \xed\xa0\x80", 0},
        {"x\xff\xffy\x80\xbf z", 1},
    };
    for (int v = 0; v < 2; v++) {
        loaded l = load_vocab(v ? "stories260K.gguf" : "ggml-vocab-llama-spm.gguf");
        for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
            const char *in = inputs[i].text;
            size_t in_len = strlen(in);
            int n;
            int32_t *ids = encode_str(l.t, in, 0, 0, &n);
            size_t len;
            char *text = decode(l.t, ids, n, &len);
            if (!inputs[i].exact) len = unescape_spaces(text, len);
            assert_int_equal(len, in_len + 1);
            assert_int_equal(text[0], ' ');
            assert_memory_equal(text + 1, in, in_len);
            free(text);
            free(ids);
        }
        /* A long run of the worst case must not overrun anything either. */
        char worst[3000];
        for (size_t i = 0; i + 1 < sizeof worst; i += 2) worst[i] = '\xf0', worst[i + 1] = ' ';
        int n;
        free(encode(l.t, worst, sizeof worst, 1, 1, &n));
        assert_true(n > (int)sizeof worst);
        unload(&l);
    }
}

static void test_round_trip(void **state) {
    (void)state;
    check_round_trip("ggml-vocab-llama-spm.gguf");
    check_round_trip("stories260K.gguf");
}

/* Feed every id of `s` to the stream: each chunk must be valid UTF-8 on its own, and all of
 * them together the input (after the dummy-prefix space). */
static void check_stream(const char *vocab, const char *s) {
    loaded l = load_vocab(vocab);
    int n;
    int32_t *ids = encode_str(l.t, s, 1, 0, &n);
    size_t cap = 64 + tokenizer_max_piece(l.t);
    assert_true(tokenizer_stream_cap(l.t) >= cap);
    char *chunk = malloc(cap);
    size_t total_cap = strlen(s) + 16, k = 0;
    char *all = malloc(total_cap);
    tokenizer_stream st = {0};
    int split_tokens = 0;
    for (int i = 0; i < n; i++) {
        size_t m = tokenizer_stream_push(&st, l.t, ids[i], chunk, cap);
        assert_true(m <= cap);
        if (!utf8_valid((unsigned char *)chunk, m)) fail_msg("chunk %d is not valid UTF-8", i);
        if (m == 0 && tokenizer_piece(l.t, ids[i], 0, NULL, 0) > 0) split_tokens++;
        assert_true(k + m <= total_cap);
        memcpy(all + k, chunk, m);
        k += m;
    }
    size_t m = tokenizer_stream_flush(&st, chunk, cap);
    assert_int_equal(m, 0); /* nothing left over from valid input */
    assert_int_equal(k, strlen(s) + 1);
    assert_int_equal(all[0], ' ');
    assert_memory_equal(all + 1, s, strlen(s));
    /* The test is only meaningful when some characters were spread over byte tokens. */
    assert_true(split_tokens > 0);
    free(all);
    free(chunk);
    free(ids);
    unload(&l);
}

static void test_stream_never_splits(void **state) {
    (void)state;
    const char *s = "a \xc3\xa9t\xc3\xa9 \xe2\x82\xac 5 \xf0\x9f\xa6\x99 llama \xf0\x9f\x98\x81"
                    "\xe6\x88\x91\xe6\x83\xb3 \xd0\xbd\xd0\xb0 \xe1\x9e\x80\xe1\x9e\xb6 "
                    "\xf0\x9f\x9a\x80\xe2\x9c\x85 \xc3\x84pfel \xf4\x8f\xbf\xbf end";
    check_stream("ggml-vocab-llama-spm.gguf", s);
    check_stream("stories260K.gguf", s); /* 512 tokens: nearly every non-ASCII byte alone */
}

static void test_stream_invalid_bytes(void **state) {
    (void)state;
    loaded l = load_vocab("ggml-vocab-llama-spm.gguf");
    int32_t byte[256];
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        byte[b] = tokenizer_find(l.t, name, 6);
        assert_true(byte[b] >= 0);
    }
    char out[256];
    tokenizer_stream st = {0};
    const char fffd[] = "\xef\xbf\xbd";
    /* A stray continuation byte and a byte that never starts UTF-8: U+FFFD, no stall. */
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0x80], out, sizeof out), 3);
    assert_memory_equal(out, fffd, 3);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xff], out, sizeof out), 3);
    assert_memory_equal(out, fffd, 3);
    /* A complete sequence in three byte tokens comes out whole, at its last byte. */
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xe6], out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0x88], out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0x91], out, sizeof out), 3);
    assert_memory_equal(out, "\xe6\x88\x91", 3);
    /* An incomplete sequence cut by ASCII: U+FFFD for the broken part, then the ASCII. */
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xe6], out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0x88], out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte['A'], out, sizeof out), 4);
    assert_memory_equal(out,
                        "\xef\xbf\xbd"
                        "A",
                        4);
    /* A lead byte followed by a lead byte: the first is broken, the second waits. */
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xc3], out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xc3], out, sizeof out), 3);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xa9], out, sizeof out), 2);
    assert_memory_equal(out, "\xc3\xa9", 2);
    /* Surrogates and overlongs are not let through. */
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xed], out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xa0], out, sizeof out), 6);
    assert_true(utf8_valid((unsigned char *)out, 6));
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xc0], out, sizeof out), 3);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xaf], out, sizeof out), 3);
    /* Control tokens stream as nothing; a pending tail survives them. */
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xf0], out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, 2, out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0x9f], out, sizeof out), 0);
    /* The end of the stream with a tail pending: one U+FFFD. */
    assert_int_equal(tokenizer_stream_flush(&st, out, sizeof out), 3);
    assert_memory_equal(out, fffd, 3);
    assert_int_equal(st.n_pending, 0);
    assert_int_equal(tokenizer_stream_flush(&st, out, sizeof out), 0);
    /* A normal piece after a pending lead byte: both handled, nothing stalls. */
    assert_int_equal(tokenizer_stream_push(&st, l.t, byte[0xe2], out, sizeof out), 0);
    assert_int_equal(tokenizer_stream_push(&st, l.t, 15043, out, sizeof out), 9);
    assert_memory_equal(out, "\xef\xbf\xbd Hello", 9);
    /* A cap that is too small is never overrun. */
    memset(out, 'x', sizeof out);
    assert_true(tokenizer_stream_push(&st, l.t, 15043, out, 4) <= 4);
    assert_int_equal(out[4], 'x');
    unload(&l);
}

/* ==== Hand-made vocabularies ==== */

static const char *tmp_path(const char *name) {
    static char path[512];
    if (!g_tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(g_tmpdir, sizeof g_tmpdir, "%s/mh-tok-XXXXXX", base && *base ? base : "/tmp");
        assert_non_null(mkdtemp(g_tmpdir));
    }
    snprintf(path, sizeof path, "%s/%s", g_tmpdir, name);
    return path;
}

#define SP "\xe2\x96\x81" /* U+2581, SentencePiece's space */

/* A small vocabulary: index, text, score, type. */
static const struct {
    const char *text;
    float score;
    int32_t type;
} small_vocab[] = {
    {"<unk>", 0, 2},    {"<s>", 0, 3},       {"</s>", 0, 3},  {"<0xC3>", 0, 6},     /* 0..3 */
    {"<0xA9>", 0, 6},   {SP, -1, 1},         {"a", -2, 1},    {"b", -2, 1},         /* 4..7 */
    {"c", -2, 1},       {"ab", -5, 1},       {"bc", -4, 1},   {"abc", -3, 1},       /* 8..11 */
    {SP "a", -6, 1},    {"aa", -7, 1},       {"<|u|>", 0, 4}, {"<|im_end|>", 0, 1}, /* 12..15 */
    {"zz", 0, 5},       {"x" SP "y", -1, 1}, {"x", -2, 1},    {"y", -2, 1},         /* 16..19 */
    {SP "y", -1.5f, 1},                                                             /* 20 */
};
#define SMALL_N ((int)(sizeof small_vocab / sizeof small_vocab[0]))

enum defect {
    DEFECT_NONE,
    DEFECT_NO_MODEL,
    DEFECT_MODEL_GPT2,
    DEFECT_MODEL_NOT_STRING,
    DEFECT_NO_TOKENS,
    DEFECT_EMPTY_TOKENS,
    DEFECT_TOKENS_NOT_STRINGS,
    DEFECT_SCORES_SHORT,
    DEFECT_SCORES_STRINGS,
    DEFECT_TYPES_SHORT,
    DEFECT_TYPES_FLOAT,
    DEFECT_TYPE_VALUE,
    DEFECT_BOS_RANGE,
    DEFECT_BOS_STRING,
    DEFECT_EOS_NEGATIVE,
    DEFECT_ADD_BOS_STRING,
    DEFECT_NO_SCORES_NO_TYPES, /* valid: both arrays are optional */
    DEFECT_NO_SPACE_PREFIX,    /* valid: add_space_prefix = false */
};

/* Write the small vocabulary with one defect and open it. */
static gguf *write_small(enum defect d, const char *name) {
    const char *texts[SMALL_N];
    float scores[SMALL_N];
    int32_t types[SMALL_N];
    for (int i = 0; i < SMALL_N; i++) {
        texts[i] = small_vocab[i].text;
        scores[i] = small_vocab[i].score;
        types[i] = small_vocab[i].type;
    }
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    if (d == DEFECT_MODEL_GPT2)
        gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    else if (d == DEFECT_MODEL_NOT_STRING)
        gguf_writer_set_u32(w, "tokenizer.ggml.model", 7);
    else if (d != DEFECT_NO_MODEL)
        gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (d == DEFECT_TOKENS_NOT_STRINGS)
        gguf_writer_set_arr_i32(w, "tokenizer.ggml.tokens", types, SMALL_N);
    else if (d == DEFECT_EMPTY_TOKENS)
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, 0);
    else if (d != DEFECT_NO_TOKENS)
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, SMALL_N);
    if (d == DEFECT_SCORES_SHORT)
        gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", scores, 5);
    else if (d == DEFECT_SCORES_STRINGS)
        gguf_writer_set_arr_str(w, "tokenizer.ggml.scores", texts, SMALL_N);
    else if (d != DEFECT_NO_SCORES_NO_TYPES)
        gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", scores, SMALL_N);
    if (d == DEFECT_TYPE_VALUE) types[7] = 9;
    if (d == DEFECT_TYPES_SHORT)
        gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, SMALL_N - 1);
    else if (d == DEFECT_TYPES_FLOAT)
        gguf_writer_set_arr_f32(w, "tokenizer.ggml.token_type", scores, SMALL_N);
    else if (d != DEFECT_NO_SCORES_NO_TYPES)
        gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, SMALL_N);
    if (d == DEFECT_BOS_RANGE)
        gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1000);
    else if (d == DEFECT_BOS_STRING)
        gguf_writer_set_str(w, "tokenizer.ggml.bos_token_id", "1");
    else
        gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (d == DEFECT_EOS_NEGATIVE)
        gguf_writer_set_i32(w, "tokenizer.ggml.eos_token_id", -5);
    else
        gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0xffffffffu);
    if (d == DEFECT_ADD_BOS_STRING) gguf_writer_set_str(w, "tokenizer.ggml.add_bos_token", "yes");
    if (d == DEFECT_NO_SPACE_PREFIX) gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", 0);

    char err[512];
    const char *path = tmp_path(name);
    if (gguf_writer_write(w, path, err, sizeof err) < 0) fail_msg("write %s: %s", path, err);
    gguf_writer_free(w);
    gguf *f = NULL;
    if (gguf_open(path, &f, err, sizeof err) < 0) fail_msg("open %s: %s", path, err);
    unlink(path);
    return f;
}

static void test_malformed_vocab(void **state) {
    (void)state;
    static const struct {
        enum defect d;
        const char *want; /* a substring of the message */
    } cases[] = {
        {DEFECT_NO_MODEL, "missing key tokenizer.ggml.model"},
        {DEFECT_MODEL_GPT2, "missing key tokenizer.ggml.merges"}, /* gpt2 without merges */
        {DEFECT_MODEL_NOT_STRING, "tokenizer.ggml.model is not a string"},
        {DEFECT_NO_TOKENS, "missing key tokenizer.ggml.tokens"},
        {DEFECT_EMPTY_TOKENS, "tokenizer.ggml.tokens is empty"},
        {DEFECT_TOKENS_NOT_STRINGS, "tokenizer.ggml.tokens is not an array of strings"},
        {DEFECT_SCORES_SHORT, "tokenizer.ggml.scores has 5 entries for 21 tokens"},
        {DEFECT_SCORES_STRINGS, "tokenizer.ggml.scores is not an array of numbers"},
        {DEFECT_TYPES_SHORT, "tokenizer.ggml.token_type has 20 entries for 21 tokens"},
        {DEFECT_TYPES_FLOAT, "tokenizer.ggml.token_type is not an array of integers"},
        {DEFECT_TYPE_VALUE, "token 7 has type 9"},
        {DEFECT_BOS_RANGE, "tokenizer.ggml.bos_token_id = 1000 is out of range"},
        {DEFECT_BOS_STRING, "tokenizer.ggml.bos_token_id is not an integer"},
        {DEFECT_EOS_NEGATIVE, "tokenizer.ggml.eos_token_id = -5 is out of range"},
        {DEFECT_ADD_BOS_STRING, "tokenizer.ggml.add_bos_token is not a bool"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gguf *f = write_small(cases[i].d, "bad.gguf");
        tokenizer *t = (tokenizer *)(uintptr_t)1;
        char err[256] = "";
        int rc = tokenizer_load(f, &t, err, sizeof err);
        if (rc != -1 || t != NULL || !strstr(err, cases[i].want))
            fail_msg("case %zu: rc %d, message \"%s\", wanted \"%s\"", i, rc, err, cases[i].want);
        gguf_close(f);
    }
}

static void test_small_vocab(void **state) {
    (void)state;
    char err[256];
    tokenizer *t;
    gguf *f = write_small(DEFECT_NONE, "small.gguf");
    if (tokenizer_load(f, &t, err, sizeof err) < 0) fail_msg("%s", err);
    assert_int_equal(tokenizer_n_vocab(t), SMALL_N);

    /* Best score first: in "▁ab", ab (-5) beats ▁a (-6); "▁a" would leave ▁a,b. */
    expect_ids(t, "ab", 0, 0, (int32_t[]){5, 9}, 2);
    /* "▁abc": bc (-4) first, then a+bc = abc (-3); ▁abc is no piece. */
    expect_ids(t, "abc", 0, 0, (int32_t[]){5, 11}, 2);
    /* "▁aaa": ▁a (-6) beats aa (-7); then the remaining a,a merge. */
    expect_ids(t, "aaa", 0, 0, (int32_t[]){12, 13}, 2);
    /* Not in the vocabulary: bytes when there are byte tokens, else <unk>. */
    expect_ids(t, "\xc3\xa9", 0, 0, (int32_t[]){5, 3, 4}, 3);
    expect_ids(t, "\xc3\xa8", 0, 0, (int32_t[]){5, 3, 0}, 3);
    /* Spaces inside a piece: "▁x▁y" -> ▁,x,▁y (-1.5) -> ▁,x▁y (-1). Pieces only grow through
     * pieces: without ▁y there would be no way to x▁y. */
    expect_ids(t, "x y", 0, 0, (int32_t[]){5, 17}, 2);
    /* BOS, EOS. */
    expect_ids(t, "b", 1, 0, (int32_t[]){1, 5, 7}, 3);
    /* User-defined pieces are cut out even without parse_special; control ones only with it. */
    expect_ids(t, "a<|u|>b", 0, 0, (int32_t[]){12, 14, 5, 7}, 4);
    expect_ids(t, "<|u|>", 0, 0, (int32_t[]){14}, 1);
    expect_ids(t, "b</s>", 0, 1, (int32_t[]){5, 7, 2}, 3);
    /* As text, "</s>" has no pieces and no byte tokens here: <unk> per byte. */
    expect_ids(t, "b</s>", 0, 0, (int32_t[]){5, 7, 0, 0, 0, 0}, 6);

    /* Pieces by type. */
    char buf[32];
    assert_int_equal(tokenizer_piece(t, 14, 0, buf, sizeof buf), 5); /* user-defined: text */
    assert_memory_equal(buf, "<|u|>", 5);
    assert_int_equal(tokenizer_piece(t, 16, 1, buf, sizeof buf), 0); /* unused: nothing */
    assert_int_equal(tokenizer_piece(t, 3, 0, buf, sizeof buf), 1);  /* byte */
    assert_int_equal((unsigned char)buf[0], 0xc3);
    assert_int_equal(tokenizer_piece(t, 17, 0, buf, sizeof buf), 3); /* x▁y -> "x y" */
    assert_memory_equal(buf, "x y", 3);
    /* <|im_end|> ends a turn and is treated as control, whatever its stored type. */
    assert_true(tokenizer_is_eog(t, 15));
    assert_true(tokenizer_is_control(t, 15));
    assert_true(tokenizer_is_eog(t, 2));
    assert_false(tokenizer_is_eog(t, 1));
    tokenizer_free(t);
    gguf_close(f);

    /* add_space_prefix = false: no dummy prefix. */
    f = write_small(DEFECT_NO_SPACE_PREFIX, "noprefix.gguf");
    if (tokenizer_load(f, &t, err, sizeof err) < 0) fail_msg("%s", err);
    expect_ids(t, "abc", 0, 0, (int32_t[]){11}, 1);
    expect_ids(t, "a b", 0, 0, (int32_t[]){6, 5, 7}, 3);
    /* Equal scores: the leftmost pair merges first, "aaa" -> aa,a. */
    expect_ids(t, "aaa", 0, 0, (int32_t[]){13, 6}, 2);
    /* Still a prefix after a special token? No: add_space_prefix is off everywhere. */
    expect_ids(t, "<|u|>b", 0, 0, (int32_t[]){14, 7}, 2);
    tokenizer_free(t);
    gguf_close(f);

    /* No scores and no types: all tokens normal with score 0 (ties: leftmost pair first, so
     * "▁abc" -> ▁a,b,c -> ▁a,bc);
     * nothing is special, so "<s>" is plain text. */
    f = write_small(DEFECT_NO_SCORES_NO_TYPES, "plain.gguf");
    if (tokenizer_load(f, &t, err, sizeof err) < 0) fail_msg("%s", err);
    expect_ids(t, "abc", 0, 0, (int32_t[]){12, 10}, 2);
    expect_ids(t, "<s>", 0, 1, (int32_t[]){5, 0, 0, 0}, 4);
    assert_int_equal(tokenizer_piece(t, 1, 0, buf, sizeof buf), 3); /* "<s>" is normal text */
    assert_false(tokenizer_is_control(t, 1));
    tokenizer_free(t);
    gguf_close(f);
}

/* Write and load a vocabulary of normal/user-defined/control tokens, scores all zero. */
static tokenizer *load_tokens_only(const char *const *texts, const int32_t *types, int n,
                                   gguf **f) {
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, (uint64_t)n);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    char err[256];
    const char *path = tmp_path("tokens.gguf");
    if (gguf_writer_write(w, path, err, sizeof err) < 0) fail_msg("%s", err);
    gguf_writer_free(w);
    if (gguf_open(path, f, err, sizeof err) < 0) fail_msg("%s", err);
    unlink(path);
    tokenizer *t;
    if (tokenizer_load(*f, &t, err, sizeof err) < 0) fail_msg("%s", err);
    return t;
}

/* The order special texts are cut out in (llama.cpp's): longest text first over the whole
 * input, each taking its leftmost non-overlapping occurrences in what is still raw text. */
static void test_partition_rules(void **state) {
    (void)state;
    static const char *const texts[] = {
        "<unk>", "<s>", "</s>", SP,    "x",   "y", "z", "w", /* 0..7 */
        "xy",    "yzw", "zw",   "dup", "dup",                /* 8..12 */
    };
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 4, 4, 3, 3, 4};
    gguf *f;
    tokenizer *t = load_tokens_only(texts, types, 13, &f);
    /* yzw (3 bytes) is cut first although xy starts earlier: x is left as text. */
    expect_ids(t, "xyzw", 0, 0, (int32_t[]){3, 4, 9}, 3);
    expect_ids(t, "xyzw", 0, 1, (int32_t[]){3, 4, 9}, 3);
    /* zw is control: cut only with parse_special; the text after it gets the prefix again. */
    expect_ids(t, "xyzwzwx", 0, 1, (int32_t[]){3, 4, 9, 10, 3, 4}, 6);
    /* Without parse_special "zw" is text, yet z+w still merge into its id: merging looks up
     * pieces of any type, as llama.cpp's SPM does. */
    expect_ids(t, "xyzwzwx", 0, 0, (int32_t[]){3, 4, 9, 3, 10, 4}, 6);
    /* Non-overlapping, leftmost first: "xyxy" -> xy, xy; "yzwzw" -> yzw, then zw. */
    expect_ids(t, "xyxy", 0, 0, (int32_t[]){8, 8}, 2);
    expect_ids(t, "yzwzw", 0, 1, (int32_t[]){9, 10}, 2);
    /* Two tokens spell "dup": the control one (lower id) with parse_special, else the
     * user-defined one. */
    expect_ids(t, "dup", 0, 1, (int32_t[]){11}, 1);
    expect_ids(t, "dup", 0, 0, (int32_t[]){12}, 1);
    tokenizer_free(t);
    gguf_close(f);
}

/* ==== Speed ==== */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#if defined(__SANITIZE_ADDRESS__)
#define SPEED_LIMIT_S 5.0
#else
#define SPEED_LIMIT_S 1.0
#endif

static void time_encode(const tokenizer *t, const char *what, const char *text, size_t len,
                        int parse_special) {
    double t0 = now_s();
    int n = tokenizer_encode(t, text, len, 1, parse_special, NULL, 0);
    double dt = now_s() - t0;
    assert_true(n > 0);
    fprintf(stderr, "  %s: %zu bytes -> %d tokens in %.1f ms\n", what, len, n, dt * 1e3);
    assert_true(dt < SPEED_LIMIT_S);
}

static void test_speed_100kb(void **state) {
    (void)state;
    vectors v;
    load_vectors("ggml-vocab-llama-spm.gguf", &v);
    const size_t size = 100 * 1024;
    char *text = malloc(size);
    size_t k = 0;
    for (int i = 0; k < size; i = (i + 1) % v.n_text) {
        size_t m = v.len[i] < size - k ? v.len[i] : size - k;
        memcpy(text + k, v.text[i], m);
        k += m;
        if (k < size) text[k++] = ' ';
    }
    char *same = malloc(size), *nospace = malloc(size), *specials = malloc(size);
    memset(same, 'a', size);
    for (size_t i = 0; i < size; i++) nospace[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i % 36];
    for (size_t i = 0; i < size; i++) specials[i] = "<s>a</s>"[i % 8];

    loaded l = load_vocab("ggml-vocab-llama-spm.gguf");
    time_encode(l.t, "mixed text", text, size, 0);
    time_encode(l.t, "one letter repeated", same, size, 0);
    time_encode(l.t, "no spaces", nospace, size, 0);
    time_encode(l.t, "special tokens", specials, size, 1);
    unload(&l);
    l = load_vocab("stories260K.gguf");
    time_encode(l.t, "mixed text, 512-token vocabulary", text, size, 0);
    unload(&l);
    free(text);
    free(same);
    free(nospace);
    free(specials);
    free_vectors(&v);
}

static int cleanup(void **state) {
    (void)state;
    if (g_tmpdir[0]) rmdir(g_tmpdir);
    return 0;
}

int main(void) {
    // clang-format off
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_llama_spm),
        cmocka_unit_test(test_vectors_stories260k),
        cmocka_unit_test(test_once_upon_a_time),
        cmocka_unit_test(test_parse_special),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_stream_never_splits),
        cmocka_unit_test(test_stream_invalid_bytes),
        cmocka_unit_test(test_malformed_vocab),
        cmocka_unit_test(test_small_vocab),
        cmocka_unit_test(test_partition_rules),
        cmocka_unit_test(test_speed_100kb),
    };
    // clang-format on
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
