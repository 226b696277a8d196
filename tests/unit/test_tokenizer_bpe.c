/* test_tokenizer_bpe.c — byte-level BPE ("gpt2") vocabularies against llama.cpp's ids: the 46
 * vectors of GPT-2, StarCoder, Falcon, DeepSeek-Coder (../shared/models) and of Llama 3, Qwen 3
 * (tests/data), chat text with special tokens, end-of-generation tokens, round trips, the
 * UTF-8-safe stream, the Unicode helpers and pre-tokenizers, a hand-made vocabulary, malformed
 * ones, `modelhub tokenize`, and speed. */
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
#include "engine/unicode.h"

/* ==== Helpers ==== */

static char g_tmpdir[256];

/* A vocabulary file: "shared:NAME" is in the shared models folder ($MODELHUB_MODELS, else
 * $MODELHUB_SRC/../shared/models), "data:NAME" in tests/data of the source tree, "abs:PATH"
 * anywhere. */
static const char *vocab_path(const char *spec) {
    static char path[4][4200];
    static int slot;
    char *out = path[slot++ % 4];
    const char *src = getenv("MODELHUB_SRC");
    if (strncmp(spec, "abs:", 4) == 0) {
        snprintf(out, sizeof path[0], "%s", spec + 4);
    } else if (strncmp(spec, "data:", 5) == 0) {
        if (!src || !*src) fail_msg("MODELHUB_SRC is not set");
        snprintf(out, sizeof path[0], "%s/tests/data/%s", src, spec + 5);
    } else if (strncmp(spec, "shared:", 7) == 0) {
        const char *env = getenv("MODELHUB_MODELS");
        if (env && *env)
            snprintf(out, sizeof path[0], "%s/%s", env, spec + 7);
        else if (src && *src)
            snprintf(out, sizeof path[0], "%s/../shared/models/%s", src, spec + 7);
        else
            fail_msg("neither MODELHUB_MODELS nor MODELHUB_SRC is set");
    } else {
        fail_msg("bad vocabulary spec %s", spec);
    }
    return out;
}

static const char *tmp_path(const char *name) {
    static char path[512];
    if (!g_tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(g_tmpdir, sizeof g_tmpdir, "%s/mh-bpe-XXXXXX", base && *base ? base : "/tmp");
        assert_non_null(mkdtemp(g_tmpdir));
    }
    snprintf(path, sizeof path, "%s/%s", g_tmpdir, name);
    return path;
}

static loaded load_vocab(const char *spec) {
    return load_vocab_at(vocab_path(spec));
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "    %s:", label);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

static void expect_ids_len(const tokenizer *t, const char *s, size_t len, int add_special,
                           int parse_special, const int32_t *want, int n_want) {
    int n;
    int32_t *got = encode(t, s, len, add_special, parse_special, &n);
    int same = n == n_want && (n == 0 || memcmp(got, want, (size_t)n * sizeof *got) == 0);
    if (!same) {
        fprintf(stderr, "  encode(\"%.*s\", add_special=%d, parse_special=%d)\n", (int)len, s,
                add_special, parse_special);
        print_ids("want", want, n_want);
        print_ids("got ", got, n);
    }
    free(got);
    assert_true(same);
}

static void expect_ids(const tokenizer *t, const char *s, int add_special, int parse_special,
                       const int32_t *want, int n_want) {
    expect_ids_len(t, s, strlen(s), add_special, parse_special, want, n_want);
}

/* ==== Reference vectors (llama.cpp's test-tokenizer-0 format) ==== */

#define MAX_STRINGS 64

typedef struct vectors {
    char *inp_buf, *out_buf;
    const char *text[MAX_STRINGS];
    size_t len[MAX_STRINGS];
    int n_text;
    int32_t *ids[MAX_STRINGS];
    int n_ids[MAX_STRINGS];
    int n_lines;
} vectors;

/* Strings of `inp` (each followed by the separator) and the id lines of `out`. */
static void load_vectors(const char *inp, const char *out, vectors *v) {
    memset(v, 0, sizeof *v);
    size_t inp_len, out_len;
    v->inp_buf = slurp(inp, &inp_len);
    v->out_buf = slurp(out, &out_len);

    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof sep - 1;
    char *p = v->inp_buf, *end = v->inp_buf + inp_len;
    while (p < end) {
        char *m = memmem(p, (size_t)(end - p), sep, sep_len);
        assert_non_null(m);
        assert_true(v->n_text < MAX_STRINGS);
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
        assert_true(v->n_lines < MAX_STRINGS);
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
    assert_int_equal(v->n_text, v->n_lines);
}

static void free_vectors(vectors *v) {
    for (int i = 0; i < v->n_lines; i++) free(v->ids[i]);
    free(v->inp_buf);
    free(v->out_buf);
}

/* Every string of the vectors, with a report per string that differs. */
static void check_vectors(const char *vocab, const char *inp, const char *out, int parse_special,
                          int n_expected) {
    vectors v;
    load_vectors(inp, out, &v);
    assert_int_equal(v.n_text, n_expected);
    loaded l = load_vocab(vocab);
    int failures = 0;
    for (int i = 0; i < v.n_text; i++) {
        int n;
        int32_t *got = encode(l.t, v.text[i], v.len[i], 0, parse_special, &n);
        if (n != v.n_ids[i] || (n > 0 && memcmp(got, v.ids[i], (size_t)n * sizeof *got) != 0)) {
            failures++;
            fprintf(stderr, "  %s: string %d (\"%.*s\") differs\n", vocab, i, (int)v.len[i],
                    v.text[i]);
            print_ids("want", v.ids[i], v.n_ids[i]);
            print_ids("got ", got, n);
        }
        free(got);
    }
    fprintf(stderr, "  %s%s: %d/%d strings match\n", vocab, parse_special ? " (parse_special)" : "",
            v.n_text - failures, v.n_text);
    unload(&l);
    free_vectors(&v);
    assert_int_equal(failures, 0);
}

static const char *const bpe_vocabs[] = {
    "shared:ggml-vocab-gpt-2.gguf",  "shared:ggml-vocab-starcoder.gguf",
    "shared:ggml-vocab-falcon.gguf", "shared:ggml-vocab-deepseek-coder.gguf",
    "data:ggml-vocab-llama3.gguf",   "data:ggml-vocab-qwen3.gguf",
};
#define N_BPE_VOCABS ((int)(sizeof bpe_vocabs / sizeof bpe_vocabs[0]))

static void check_46(const char *vocab) {
    char inp[4300], out[4300];
    snprintf(inp, sizeof inp, "%s.inp", vocab_path(vocab));
    snprintf(out, sizeof out, "%s.out", vocab_path(vocab));
    check_vectors(vocab, inp, out, 0, 46);
}

static void test_vectors_gpt2(void **state) {
    (void)state;
    check_46("shared:ggml-vocab-gpt-2.gguf");
}
static void test_vectors_starcoder(void **state) {
    (void)state;
    check_46("shared:ggml-vocab-starcoder.gguf");
}
static void test_vectors_falcon(void **state) {
    (void)state;
    check_46("shared:ggml-vocab-falcon.gguf");
}
static void test_vectors_deepseek_coder(void **state) {
    (void)state;
    check_46("shared:ggml-vocab-deepseek-coder.gguf");
}
static void test_vectors_llama3(void **state) {
    (void)state;
    check_46("data:ggml-vocab-llama3.gguf");
}
static void test_vectors_qwen3(void **state) {
    (void)state;
    check_46("data:ggml-vocab-qwen3.gguf");
}

/* Chat-format text with parse_special on: tests/data/chat-special.inp and llama.cpp's ids. */
static void test_vectors_chat_special(void **state) {
    (void)state;
    for (int i = 0; i < N_BPE_VOCABS; i++) {
        char out[300];
        const char *name = strchr(bpe_vocabs[i], ':') + 1;
        snprintf(out, sizeof out, "data:%s.chat-special.out", name);
        check_vectors(bpe_vocabs[i], vocab_path("data:chat-special.inp"), vocab_path(out), 1, 14);
    }
}

/* Pre-tokenizer names that share a rule set: a copy of a vocabulary under another
 * tokenizer.ggml.pre must give the same 46 vectors (smollm has no vocabulary file of its own;
 * llama.cpp runs it with StarCoder's expressions). */
static void check_46_as(const char *vocab, const char *pre) {
    char err[256];
    gguf *src;
    const char *path = vocab_path(vocab);
    if (gguf_open(path, &src, err, sizeof err) < 0) fail_msg("%s: %s", path, err);
    gguf_writer *w = gguf_writer_new();
    for (int i = 0; i < gguf_n_kv(src); i++) {
        const gguf_kv *kv = gguf_kv_at(src, i);
        if (kv->key.len == 18 && memcmp(kv->key.ptr, "tokenizer.ggml.pre", 18) == 0)
            gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
        else
            gguf_writer_copy_kv(w, kv);
    }
    const char *copy = tmp_path("renamed.gguf");
    if (gguf_writer_write(w, copy, err, sizeof err) < 0) fail_msg("%s", err);
    gguf_writer_free(w);
    gguf_close(src);

    char spec[600], inp[4300], out[4300];
    snprintf(spec, sizeof spec, "abs:%s", copy);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(out, sizeof out, "%s.out", path);
    fprintf(stderr, "  as pre '%s':\n", pre);
    check_vectors(spec, inp, out, 0, 46);
    unlink(copy);
}

static void test_pre_aliases(void **state) {
    (void)state;
    check_46_as("shared:ggml-vocab-starcoder.gguf", "smollm");
    check_46_as("shared:ggml-vocab-starcoder.gguf", "refact");
    check_46_as("shared:ggml-vocab-gpt-2.gguf", "olmo");
    check_46_as("data:ggml-vocab-llama3.gguf", "llama3");
    check_46_as("data:ggml-vocab-qwen3.gguf", "deepseek-r1-qwen");
}

/* ==== Special tokens, BOS, end of generation ==== */

static void test_special_tokens(void **state) {
    (void)state;
    char buf[64];

    /* Llama 3: BOS added by default; chat tokens are single control tokens. */
    loaded l = load_vocab("data:ggml-vocab-llama3.gguf");
    assert_int_equal(tokenizer_n_vocab(l.t), 128256);
    assert_int_equal(tokenizer_bos(l.t), 128000);
    assert_int_equal(tokenizer_eos(l.t), 128001);
    assert_true(tokenizer_adds_bos(l.t));
    expect_ids(l.t, "Hello", 1, 0, (int32_t[]){128000, 9906}, 2);
    expect_ids(l.t, "<|eot_id|>", 0, 1, (int32_t[]){128009}, 1);
    expect_ids(l.t, "<|start_header_id|>user<|end_header_id|>", 0, 1,
               (int32_t[]){128006, 882, 128007}, 3);
    int n;
    int32_t *ids = encode(l.t, "<|eot_id|>", 10, 0, 0, &n); /* as text: several pieces */
    assert_true(n > 1);
    for (int i = 0; i < n; i++) assert_true(ids[i] < 128000);
    free(ids);
    assert_true(tokenizer_is_eog(l.t, 128009));  /* <|eot_id|> */
    assert_true(tokenizer_is_eog(l.t, 128001));  /* <|end_of_text|>, EOS */
    assert_false(tokenizer_is_eog(l.t, 128008)); /* <|reserved_special_token_4|> (3.0) */
    assert_false(tokenizer_is_eog(l.t, 128000)); /* <|begin_of_text|> */
    assert_false(tokenizer_is_eog(l.t, 128006)); /* <|start_header_id|> */
    assert_false(tokenizer_is_eog(l.t, 9906));
    assert_true(tokenizer_is_control(l.t, 128000));
    assert_true(tokenizer_is_control(l.t, 128009));
    assert_false(tokenizer_is_control(l.t, 9906));
    assert_int_equal(tokenizer_piece(l.t, 128009, 0, buf, sizeof buf), 0);
    assert_int_equal(tokenizer_piece(l.t, 128009, 1, buf, sizeof buf), 10);
    assert_memory_equal(buf, "<|eot_id|>", 10);
    unload(&l);

    /* Qwen 3: no BOS; ChatML tokens; <think> is user-defined: cut out even as plain text. */
    l = load_vocab("data:ggml-vocab-qwen3.gguf");
    assert_int_equal(tokenizer_n_vocab(l.t), 151669);
    assert_false(tokenizer_adds_bos(l.t));
    assert_int_equal(tokenizer_eos(l.t), 151645);
    expect_ids(l.t, "Hello", 1, 0, (int32_t[]){9707}, 1);
    expect_ids(l.t, "<|im_start|>", 0, 1, (int32_t[]){151644}, 1);
    expect_ids(l.t, "<|im_start|>user\nHi<|im_end|>", 0, 1,
               (int32_t[]){151644, 872, 198, 13048, 151645}, 5);
    expect_ids(l.t, "<think>", 0, 0, (int32_t[]){151667}, 1);
    expect_ids(l.t, "<think>", 0, 1, (int32_t[]){151667}, 1);
    ids = encode(l.t, "<|im_start|>", 12, 0, 0, &n);
    assert_true(n > 1);
    free(ids);
    assert_true(tokenizer_is_eog(l.t, 151645));  /* <|im_end|> */
    assert_true(tokenizer_is_eog(l.t, 151643));  /* <|endoftext|> */
    assert_true(tokenizer_is_eog(l.t, 151662));  /* <|fim_pad|>, as llama.cpp */
    assert_true(tokenizer_is_eog(l.t, 151664));  /* <|file_sep|> */
    assert_false(tokenizer_is_eog(l.t, 151644)); /* <|im_start|> */
    assert_false(tokenizer_is_eog(l.t, 151667)); /* <think> */
    assert_true(tokenizer_is_control(l.t, 151644));
    assert_false(tokenizer_is_control(l.t, 151667));
    assert_int_equal(tokenizer_piece(l.t, 151667, 0, buf, sizeof buf), 7); /* user-defined */
    assert_memory_equal(buf, "<think>", 7);
    assert_int_equal(tokenizer_find(l.t, "<|im_end|>", 10), 151645);
    unload(&l);

    /* GPT-2: <|endoftext|> is BOS = EOS; no add_bos_token key, so no BOS (llama.cpp's BPE
     * default). */
    l = load_vocab("shared:ggml-vocab-gpt-2.gguf");
    assert_int_equal(tokenizer_bos(l.t), 50256);
    assert_false(tokenizer_adds_bos(l.t));
    assert_true(tokenizer_is_eog(l.t, 50256));
    expect_ids(l.t, "a<|endoftext|>b", 1, 1, (int32_t[]){64, 50256, 65}, 3);
    unload(&l);

    /* DeepSeek-Coder asks for BOS. */
    l = load_vocab("shared:ggml-vocab-deepseek-coder.gguf");
    assert_true(tokenizer_adds_bos(l.t));
    assert_int_equal(tokenizer_bos(l.t), 32013);
    assert_true(tokenizer_is_eog(l.t, 32014));
    unload(&l);
}

/* ==== Round trips, invalid input, the stream ==== */

static void test_round_trip(void **state) {
    (void)state;
    vectors v;
    char inp[4300], out[4300];
    snprintf(inp, sizeof inp, "%s.inp", vocab_path("shared:ggml-vocab-gpt-2.gguf"));
    snprintf(out, sizeof out, "%s.out", vocab_path("shared:ggml-vocab-gpt-2.gguf"));
    load_vectors(inp, out, &v);
    for (int k = 0; k < N_BPE_VOCABS; k++) {
        loaded l = load_vocab(bpe_vocabs[k]);
        for (int i = 0; i < v.n_text; i++) {
            int n;
            int32_t *ids = encode(l.t, v.text[i], v.len[i], 0, 0, &n);
            size_t len;
            char *text = decode(l.t, ids, n, &len);
            if (len != v.len[i] || memcmp(text, v.text[i], len) != 0)
                fail_msg("%s: string %d does not come back", bpe_vocabs[k], i);
            free(text);
            free(ids);
        }
        unload(&l);
    }
    free_vectors(&v);
}

/* Invalid UTF-8 is read as llama.cpp reads it: a bad byte is U+FFFD, an overlong form decodes
 * to its code point. */
static void test_invalid_utf8(void **state) {
    (void)state;
    static const struct {
        const char *bad, *same_as;
    } cases[] = {
        {"a\xff"
         "b",
         "a\xef\xbf\xbd"
         "b"},
        {"\xe6\x88", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"x \x80\x80 y", "x \xef\xbf\xbd\xef\xbf\xbd y"},
        {"\xc1\x81"
         "BC",
         "ABC"}, /* overlong 'A' */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    };
    for (int k = 0; k < N_BPE_VOCABS; k++) {
        loaded l = load_vocab(bpe_vocabs[k]);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            int n_want;
            int32_t *want = encode(l.t, cases[i].same_as, strlen(cases[i].same_as), 0, 0, &n_want);
            expect_ids(l.t, cases[i].bad, 0, 0, want, n_want);
            free(want);
        }
        /* Long runs of bad bytes overrun nothing. */
        char junk[4000];
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(0x80 + i % 0x80);
        int n;
        free(encode(l.t, junk, sizeof junk, 1, 1, &n));
        assert_true(n > 0);
        unload(&l);
    }
}

/* Every id of `s` through the stream: each chunk valid UTF-8, all together the input; some
 * characters must have been spread over several tokens for the test to mean anything. */
static void check_stream(const char *vocab, const char *s) {
    loaded l = load_vocab(vocab);
    int n;
    int32_t *ids = encode(l.t, s, strlen(s), 0, 0, &n);
    size_t cap = 64 + tokenizer_max_piece(l.t);
    assert_true(tokenizer_stream_cap(l.t) >= cap);
    char *chunk = malloc(cap);
    size_t total_cap = strlen(s) + 16, k = 0;
    char *all = malloc(total_cap);
    tokenizer_stream st = {0};
    int split_tokens = 0;
    for (int i = 0; i < n; i++) {
        size_t m = tokenizer_stream_push(&st, l.t, ids[i], chunk, cap);
        if (!utf8_valid((unsigned char *)chunk, m)) fail_msg("%s: chunk %d is not UTF-8", vocab, i);
        if (m == 0 && tokenizer_piece(l.t, ids[i], 0, NULL, 0) > 0) split_tokens++;
        assert_true(k + m <= total_cap);
        memcpy(all + k, chunk, m);
        k += m;
    }
    assert_int_equal(tokenizer_stream_flush(&st, chunk, cap), 0);
    assert_int_equal(k, strlen(s));
    assert_memory_equal(all, s, k);
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
    for (int k = 0; k < N_BPE_VOCABS; k++) check_stream(bpe_vocabs[k], s);
}

/* ==== Unicode helpers and pre-tokenizers ==== */

static void test_unicode_classes(void **state) {
    (void)state;
    static const struct {
        uint32_t cp;
        unsigned flags;
    } cases[] = {
        {'A', UNICODE_LETTER},
        {'z', UNICODE_LETTER},
        {'5', UNICODE_NUMBER},
        {'!', UNICODE_PUNCTUATION},
        {'_', UNICODE_PUNCTUATION},
        {'$', UNICODE_SYMBOL},
        {'`', UNICODE_SYMBOL},
        {' ', UNICODE_SEPARATOR | UNICODE_SPACE_FLAG},
        {'\n', UNICODE_OTHER | UNICODE_SPACE_FLAG},
        {0x1c, UNICODE_OTHER}, /* not White_Space */
        {0x85, UNICODE_OTHER | UNICODE_SPACE_FLAG},
        {0xa0, UNICODE_SEPARATOR | UNICODE_SPACE_FLAG},
        {0xe9, UNICODE_LETTER},
        {0x301, UNICODE_MARK},
        {0x378, UNICODE_UNASSIGNED},
        {0x660, UNICODE_NUMBER},  /* Arabic-Indic zero */
        {0x2164, UNICODE_NUMBER}, /* Roman numeral five (Nl) */
        {0x200b, UNICODE_OTHER},  /* zero width space: Cf, not White_Space */
        {0x3000, UNICODE_SEPARATOR | UNICODE_SPACE_FLAG},
        {0x4e00, UNICODE_LETTER},
        {0x9fff, UNICODE_LETTER},  /* CJK, assigned in 14.0 */
        {0x31350, UNICODE_LETTER}, /* CJK Extension H, 15.0 */
        {0xd800, UNICODE_OTHER},
        {0xe000, UNICODE_OTHER},
        {0x1f600, UNICODE_SYMBOL},
        {0x10ffff, UNICODE_UNASSIGNED},
        {0x110000, UNICODE_UNASSIGNED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (unicode_flags(cases[i].cp) != cases[i].flags)
            fail_msg("U+%04X: flags %u, want %u", cases[i].cp, unicode_flags(cases[i].cp),
                     cases[i].flags);
    assert_string_equal(unicode_version(), "15.0.0");
}

static void test_unicode_decode(void **state) {
    (void)state;
    static const struct {
        const char *s;
        size_t n;
        uint32_t cp;
        size_t len;
    } cases[] = {
        {"A", 1, 'A', 1},
        {"\xc3\xa9", 2, 0xe9, 2},
        {"\xe2\x82\xac", 3, 0x20ac, 3},
        {"\xf0\x9f\xa6\x99", 4, 0x1f999, 4},
        {"\xc3", 1, 0xfffd, 1},     /* truncated */
        {"\xe2\x82", 2, 0xfffd, 1}, /* truncated */
        {"\xc3(", 2, 0xfffd, 1},    /* not a continuation */
        {"\x80", 1, 0xfffd, 1},     /* stray continuation */
        {"\xf8\x88\x80\x80\x80", 5, 0xfffd, 1},
        {"\xc0\x80", 2, 0, 2},              /* overlong: accepted, as llama.cpp */
        {"\xed\xa0\x80", 3, 0xd800, 3},     /* surrogate: accepted, as llama.cpp */
        {"\xf4\x90\x80\x80", 4, 0xfffd, 1}, /* above U+10FFFF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = 99;
        uint32_t cp = unicode_decode((const unsigned char *)cases[i].s, cases[i].n, &len);
        if (cp != cases[i].cp || len != cases[i].len)
            fail_msg("case %zu: U+%04X/%zu, want U+%04X/%zu", i, cp, len, cases[i].cp,
                     cases[i].len);
    }
    unsigned char u[4];
    for (uint32_t cp = 0; cp <= 0x10ffff; cp += 97) {
        size_t n = unicode_encode(cp, u), len;
        assert_int_equal(unicode_decode(u, n, &len), cp);
        assert_int_equal(len, n);
    }
}

static void test_byte_mapping(void **state) {
    (void)state;
    int seen[324] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = unicode_byte_to_cp((uint8_t)b);
        assert_true(cp < 324);
        assert_int_equal(seen[cp]++, 0);
        assert_int_equal(unicode_cp_to_byte(cp), b);
        /* Every spelling is a printable, non-space character. */
        unsigned f = unicode_flags(cp);
        assert_false(f & UNICODE_SPACE_FLAG);
        assert_true((f & UNICODE_CLASS_MASK) != UNICODE_OTHER);
    }
    assert_int_equal(unicode_byte_to_cp(' '), 0x120);  /* Ġ */
    assert_int_equal(unicode_byte_to_cp('\n'), 0x10a); /* Ċ */
    assert_int_equal(unicode_byte_to_cp(0xad), 0x143);
    assert_int_equal(unicode_byte_to_cp('A'), 'A');
    assert_int_equal(unicode_byte_to_cp(0xe9), 0xe9);
    assert_int_equal(unicode_cp_to_byte(0x144), -1);
    assert_int_equal(unicode_cp_to_byte(' '), -1);
    assert_int_equal(unicode_cp_to_byte(0x2581), -1);
}

/* The words of `s` under pre-tokenizer `kind`, joined with '|'. */
static char *split_words(unicode_splitter *sp, enum unicode_pretok kind, const char *s) {
    static char out[1024];
    uint32_t cps[256];
    size_t n = 0, len = strlen(s);
    for (size_t off = 0, used; off < len; off += used)
        cps[n++] = unicode_decode((const unsigned char *)s + off, len - off, &used);
    const unicode_span *w;
    long n_words = unicode_split(sp, kind, cps, n, &w);
    assert_true(n_words >= 0);
    size_t k = 0;
    uint32_t next = 0;
    for (long i = 0; i < n_words; i++) {
        assert_int_equal(w[i].start, next); /* in order, nothing lost */
        assert_true(w[i].len > 0);
        next += w[i].len;
        if (i) out[k++] = '|';
        for (uint32_t j = w[i].start; j < w[i].start + w[i].len; j++)
            k += unicode_encode(cps[j], (unsigned char *)out + k);
    }
    assert_int_equal(next, n);
    out[k] = 0;
    return out;
}

static void test_pretokenizers(void **state) {
    (void)state;
    static const struct {
        enum unicode_pretok kind;
        const char *in, *want;
    } cases[] = {
        {UNICODE_PRETOK_GPT2, "Hello world", "Hello| world"},
        {UNICODE_PRETOK_GPT2, "  Hello", " | Hello"},
        {UNICODE_PRETOK_GPT2, "I've 12345 x", "I|'ve| 12345| x"},
        {UNICODE_PRETOK_GPT2, "I'VE", "I|'|VE"}, /* contractions are lower case only */
        {UNICODE_PRETOK_GPT2, "a\n\nb", "a|\n|\n|b"},
        {UNICODE_PRETOK_GPT2, "x   ", "x|   "},
        {UNICODE_PRETOK_GPT2, "x\ty", "x|\t|y"},
        {UNICODE_PRETOK_GPT2, " !!x", " !!|x"},
        {UNICODE_PRETOK_GPT2,
         "caf\xc3\xa9 \xe2\x82\xac"
         "5",
         "caf\xc3\xa9| \xe2\x82\xac|5"},
        {UNICODE_PRETOK_LLAMA3, "1234567", "123|456|7"},
        {UNICODE_PRETOK_LLAMA3, "Hello, World!", "Hello|,| World|!"},
        {UNICODE_PRETOK_LLAMA3, "I'M here", "I|'M| here"},
        {UNICODE_PRETOK_LLAMA3, "a\n\n b", "a|\n\n| b"},
        {UNICODE_PRETOK_LLAMA3, "((x", "((|x"},
        {UNICODE_PRETOK_LLAMA3, "\tx", "\tx"},
        {UNICODE_PRETOK_LLAMA3, "x ...\n\ny", "x| ...\n\n|y"},
        {UNICODE_PRETOK_LLAMA3, "a  \n  b", "a|  \n| | b"},
        {UNICODE_PRETOK_QWEN2, "1234", "1|2|3|4"},
        {UNICODE_PRETOK_QWEN2, "abc123", "abc|1|2|3"},
        {UNICODE_PRETOK_STARCODER, "abc123 45", "abc|1|2|3| |4|5"},
        {UNICODE_PRETOK_FALCON, "x=12345;", "x|=|123|45|;"},
        {UNICODE_PRETOK_FALCON, "a``b", "a|``|b"},
        {UNICODE_PRETOK_DEFAULT, "a+b=12345", "a|+|b|=|123|45"},
        {UNICODE_PRETOK_DEFAULT, "a``b", "a|``|b"},
        {UNICODE_PRETOK_DEEPSEEK_CODER, "int x\n= 42;", "int| x|\n|= |4|2|;"},
        {UNICODE_PRETOK_DEEPSEEK_CODER, "\xe6\x88\x91\xe6\x83\xb3 \xe3\x80\x80x",
         "\xe6\x88\x91\xe6\x83\xb3| |\xe3\x80\x80x"}, /* U+3000 is \s, not CJK */
    };
    unicode_splitter sp = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = split_words(&sp, cases[i].kind, cases[i].in);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu (\"%s\"): got \"%s\", want \"%s\"", i, cases[i].in, got,
                     cases[i].want);
    }
    const unicode_span *w;
    assert_int_equal(unicode_split(&sp, UNICODE_PRETOK_GPT2, NULL, 0, &w), 0);
    unicode_splitter_free(&sp);
}

/* ==== Hand-made vocabularies ==== */

#define G_SPACE "\xc4\xa0" /* Ġ: the byte-level spelling of ' ' */
#define G_NL    "\xc4\x8a" /* Ċ: '\n' */

static const struct {
    const char *text;
    int32_t type;
} tiny_vocab[] = {
    {"a", 1},        {"b", 1},
    {"c", 1},        {"ab", 1}, /* 0..3 */
    {"bc", 1},       {"abc", 1},
    {G_SPACE, 1},    {G_SPACE "a", 1}, /* 4..7 */
    {"aa", 1},       {"<|endoftext|>", 3},
    {"<u>", 4},      {"x", 1}, /* 8..11 */
    {"cca", 1},      {"ca", 1},
    {"abca", 1},     {G_NL G_SPACE, 1}, /* 12..15 */
    {"\xc3\x83", 1}, {"\xc2\xa9", 1},   /* 16..17: Ã © */
};
#define TINY_N ((int)(sizeof tiny_vocab / sizeof tiny_vocab[0]))

static const char *const tiny_merges[] = {
    "b c",            /* 0: bc */
    "a b",            /* 1: ab */
    "a bc",           /* 2: abc */
    G_SPACE " a",     /* 3: Ġa */
    "a a",            /* 4: aa */
    "c c",            /* 5: cc, which is no token */
    "cc a",           /* 6: cca */
    "a b",            /* 7: listed again: rank 1 stays */
    "nospace",        /* 8: not a pair, ignored */
    G_NL " " G_SPACE, /* 9: ĊĠ */
};

enum tiny_variant {
    TINY_GPT2,
    TINY_LLAMA3,      /* pre llama-bpe: ignore_merges, BOS by default */
    TINY_NO_PRE,      /* no tokenizer.ggml.pre: "default" */
    TINY_NO_MERGES,   /* error */
    TINY_MERGES_I32,  /* error */
    TINY_PRE_UNKNOWN, /* error */
    TINY_PRE_NOT_STR, /* error */
};

static gguf *write_tiny(enum tiny_variant v) {
    const char *texts[TINY_N];
    int32_t types[TINY_N];
    for (int i = 0; i < TINY_N; i++) texts[i] = tiny_vocab[i].text, types[i] = tiny_vocab[i].type;
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (v == TINY_LLAMA3)
        gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe");
    else if (v == TINY_PRE_UNKNOWN)
        gguf_writer_set_str(w, "tokenizer.ggml.pre", "klingon");
    else if (v == TINY_PRE_NOT_STR)
        gguf_writer_set_u32(w, "tokenizer.ggml.pre", 2);
    else if (v != TINY_NO_PRE)
        gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, TINY_N);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, TINY_N);
    if (v == TINY_MERGES_I32)
        gguf_writer_set_arr_i32(w, "tokenizer.ggml.merges", types, 3);
    else if (v != TINY_NO_MERGES)
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", tiny_merges,
                                sizeof tiny_merges / sizeof tiny_merges[0]);
    char err[256];
    const char *path = tmp_path("tiny.gguf");
    if (gguf_writer_write(w, path, err, sizeof err) < 0) fail_msg("%s", err);
    gguf_writer_free(w);
    gguf *f;
    if (gguf_open(path, &f, err, sizeof err) < 0) fail_msg("%s", err);
    unlink(path);
    return f;
}

static void test_tiny_vocab(void **state) {
    (void)state;
    char err[256], buf[32];
    tokenizer *t;
    gguf *f = write_tiny(TINY_GPT2);
    if (tokenizer_load(f, &t, err, sizeof err) < 0) fail_msg("%s", err);
    /* Lowest rank first: b+c (0) before a+b (1), then a+bc (2). */
    expect_ids(t, "abc", 0, 0, (int32_t[]){5}, 1);
    /* Equal ranks: leftmost first, "aaa" -> aa, a. */
    expect_ids(t, "aaa", 0, 0, (int32_t[]){8, 0}, 2);
    expect_ids(t, "aaaa", 0, 0, (int32_t[]){8, 8}, 2);
    /* The space is spelled Ġ and merges into the word after it. */
    expect_ids(t, "b a", 0, 0, (int32_t[]){1, 7}, 2);
    /* A merge through a text that is no token: c+c -> "cc", then cc+a -> cca. */
    expect_ids(t, "cca", 0, 0, (int32_t[]){12}, 1);
    /* Ending on such a text: its single bytes that are tokens (llama.cpp's fallback). */
    expect_ids(t, "cc", 0, 0, (int32_t[]){2, 2}, 2);
    /* A byte with no token at all is dropped, as llama.cpp drops it. */
    expect_ids(t, "d", 0, 0, NULL, 0);
    /* Without ignore_merges a whole-word token is only reached through merges. */
    expect_ids(t, "abca", 0, 0, (int32_t[]){5, 0}, 2);
    /* Two-byte characters are two symbols: é = C3 A9 -> "Ã", "©". */
    expect_ids(t, "\xc3\xa9", 0, 0, (int32_t[]){16, 17}, 2);
    expect_ids(t, "\n ", 0, 0, (int32_t[]){15}, 1);
    /* Special tokens: user-defined always, control with parse_special. */
    expect_ids(t, "a<u>b", 0, 0, (int32_t[]){0, 10, 1}, 3);
    expect_ids(t, "a<|endoftext|>b", 0, 1, (int32_t[]){0, 9, 1}, 3);
    /* No bos key: llama.cpp's BPE default is 11; no add_bos_token key: not added. */
    assert_int_equal(tokenizer_bos(t), 11);
    assert_false(tokenizer_adds_bos(t));
    expect_ids(t, "a", 1, 0, (int32_t[]){0}, 1);
    assert_true(tokenizer_is_eog(t, 9));
    /* Pieces: byte-level spelling back to bytes. */
    assert_int_equal(tokenizer_piece(t, 7, 0, buf, sizeof buf), 2);
    assert_memory_equal(buf, " a", 2);
    assert_int_equal(tokenizer_piece(t, 15, 0, buf, sizeof buf), 2);
    assert_memory_equal(buf, "\n ", 2);
    assert_int_equal(tokenizer_piece(t, 16, 0, buf, sizeof buf), 1);
    assert_int_equal((unsigned char)buf[0], 0xc3);
    assert_int_equal(tokenizer_piece(t, 10, 0, buf, sizeof buf), 3);
    assert_memory_equal(buf, "<u>", 3);
    assert_int_equal(tokenizer_piece(t, 9, 0, buf, sizeof buf), 0);
    assert_int_equal(tokenizer_piece(t, 9, 1, buf, sizeof buf), 13);
    /* The stream holds the lead byte until its continuation arrives. */
    tokenizer_stream st = {0};
    assert_int_equal(tokenizer_stream_push(&st, t, 16, buf, sizeof buf), 0);
    assert_int_equal(tokenizer_stream_push(&st, t, 17, buf, sizeof buf), 2);
    assert_memory_equal(buf, "\xc3\xa9", 2);
    tokenizer_free(t);
    gguf_close(f);

    /* llama-bpe: a word that is a whole token is taken as it is; BOS by default. */
    f = write_tiny(TINY_LLAMA3);
    if (tokenizer_load(f, &t, err, sizeof err) < 0) fail_msg("%s", err);
    expect_ids(t, "abca", 0, 0, (int32_t[]){14}, 1);
    expect_ids(t, "abc", 0, 0, (int32_t[]){5}, 1);
    assert_true(tokenizer_adds_bos(t));
    expect_ids(t, "abca", 1, 0, (int32_t[]){11, 14}, 2);
    tokenizer_free(t);
    gguf_close(f);

    /* No pre key: llama.cpp's "default" pre-tokenizer. */
    f = write_tiny(TINY_NO_PRE);
    if (tokenizer_load(f, &t, err, sizeof err) < 0) fail_msg("%s", err);
    expect_ids(t, "abc", 0, 0, (int32_t[]){5}, 1);
    tokenizer_free(t);
    gguf_close(f);
}

static void test_malformed_bpe(void **state) {
    (void)state;
    static const struct {
        enum tiny_variant v;
        const char *want;
    } cases[] = {
        {TINY_NO_MERGES, "missing key tokenizer.ggml.merges"},
        {TINY_MERGES_I32, "tokenizer.ggml.merges is not an array of strings"},
        {TINY_PRE_UNKNOWN, "pre-tokenizer 'klingon' (tokenizer.ggml.pre) is not supported"},
        {TINY_PRE_NOT_STR, "tokenizer.ggml.pre is not a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gguf *f = write_tiny(cases[i].v);
        tokenizer *t = (tokenizer *)(uintptr_t)1;
        char err[256] = "";
        int rc = tokenizer_load(f, &t, err, sizeof err);
        if (rc != -1 || t != NULL || !strstr(err, cases[i].want))
            fail_msg("case %zu: rc %d, message \"%s\", wanted \"%s\"", i, rc, err, cases[i].want);
        gguf_close(f);
    }
}

/* ==== modelhub tokenize ==== */

static void test_cli_tokenize(void **state) {
    (void)state;
    const char *bin = getenv("MODELHUB_BIN");
    if (!bin || !*bin) skip();
    char cmd[5000], line[256];
    snprintf(cmd, sizeof cmd,
             "'%s' tokenize -m '%s' -p '<|im_start|>user\nHi<|im_end|>' --parse-special "
             "--no-bos 2>&1",
             bin, vocab_path("data:ggml-vocab-qwen3.gguf"));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof line, p));
    assert_int_equal(pclose(p), 0);
    assert_string_equal(line, "151644 872 198 13048 151645\n");

    snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s' -p 'Hello world' --pieces 2>&1", bin,
             vocab_path("data:ggml-vocab-llama3.gguf"));
    p = popen(cmd, "r");
    assert_non_null(p);
    char all[1024] = "";
    while (fgets(line, sizeof line, p)) strncat(all, line, sizeof all - strlen(all) - 1);
    assert_int_equal(pclose(p), 0);
    assert_string_equal(all, "128000 '<|begin_of_text|>'\n  9906 'Hello'\n  1917 ' world'\n");
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
    fprintf(stderr, "    %s: %zu bytes -> %d tokens in %.1f ms\n", what, len, n, dt * 1e3);
    assert_true(dt < SPEED_LIMIT_S);
}

static void test_speed_100kb(void **state) {
    (void)state;
    vectors v;
    char inp[4300], out[4300];
    snprintf(inp, sizeof inp, "%s.inp", vocab_path("shared:ggml-vocab-gpt-2.gguf"));
    snprintf(out, sizeof out, "%s.out", vocab_path("shared:ggml-vocab-gpt-2.gguf"));
    load_vectors(inp, out, &v);
    const size_t size = 100 * 1024;
    char *text = malloc(size);
    size_t k = 0;
    for (int i = 0; k < size; i = (i + 1) % v.n_text) {
        size_t m = v.len[i] < size - k ? v.len[i] : size - k;
        memcpy(text + k, v.text[i], m);
        k += m;
        if (k < size) text[k++] = ' ';
    }
    char *same = malloc(size), *nospace = malloc(size), *digits = malloc(size);
    char *spaces = malloc(size), *chat = malloc(size);
    memset(same, 'a', size);
    memset(spaces, ' ', size);
    for (size_t i = 0; i < size; i++) nospace[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i % 36];
    for (size_t i = 0; i < size; i++) digits[i] = (char)('0' + i * 7 % 10);
    static const char turn[] = "<|im_start|>user\nHi there<|im_end|>\n";
    for (size_t i = 0; i < size; i++) chat[i] = turn[i % (sizeof turn - 1)];

    for (int i = 0; i < N_BPE_VOCABS; i++) {
        double t0 = now_s();
        loaded l = load_vocab(bpe_vocabs[i]);
        fprintf(stderr, "  %s: loaded in %.0f ms, longest piece %zu bytes\n", bpe_vocabs[i],
                (now_s() - t0) * 1e3, tokenizer_max_piece(l.t));
        time_encode(l.t, "mixed text", text, size, 0);
        time_encode(l.t, "one letter repeated (one word)", same, size, 0);
        time_encode(l.t, "letters and digits, no spaces", nospace, size, 0);
        time_encode(l.t, "digits", digits, size, 0);
        time_encode(l.t, "spaces", spaces, size, 0);
        time_encode(l.t, "chat turns, parse_special", chat, size, 1);
        unload(&l);
    }
    free(text);
    free(same);
    free(nospace);
    free(digits);
    free(spaces);
    free(chat);
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
        cmocka_unit_test(test_vectors_gpt2),
        cmocka_unit_test(test_vectors_starcoder),
        cmocka_unit_test(test_vectors_falcon),
        cmocka_unit_test(test_vectors_deepseek_coder),
        cmocka_unit_test(test_vectors_llama3),
        cmocka_unit_test(test_vectors_qwen3),
        cmocka_unit_test(test_vectors_chat_special),
        cmocka_unit_test(test_pre_aliases),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_stream_never_splits),
        cmocka_unit_test(test_unicode_classes),
        cmocka_unit_test(test_unicode_decode),
        cmocka_unit_test(test_byte_mapping),
        cmocka_unit_test(test_pretokenizers),
        cmocka_unit_test(test_tiny_vocab),
        cmocka_unit_test(test_malformed_bpe),
        cmocka_unit_test(test_cli_tokenize),
        cmocka_unit_test(test_speed_100kb),
    };
    // clang-format on
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
