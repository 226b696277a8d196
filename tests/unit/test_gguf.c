/* test_gguf.c — the GGUF reader and writer: the shared model files parse with the facts their
 * README documents, typed getters convert and refuse as promised, the writer round-trips every
 * value type, and hand-made corrupt files each fail with a message that names the problem.
 *
 * Models are found through MODELHUB_MODELS (fallback "$MODELHUB_SRC/../shared/models").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine/gguf.h"

/* ==== Helpers ==== */

static const char *models_dir(void) {
    static char dir[4096];
    const char *env = getenv("MODELHUB_MODELS");
    if (env && *env) return env;
    const char *src = getenv("MODELHUB_SRC");
    snprintf(dir, sizeof dir, "%s/../shared/models", src && *src ? src : ".");
    return dir;
}

static const char *model_path(const char *name) {
    static char path[4096 + 256];
    snprintf(path, sizeof path, "%s/%s", models_dir(), name);
    return path;
}

static gguf *open_model(const char *name) {
    gguf *f = NULL;
    char err[512] = "";
    if (gguf_open(model_path(name), &f, err, sizeof err) < 0)
        fail_msg("%s: %s (set MODELHUB_MODELS to the shared models folder)", model_path(name), err);
    return f;
}

static int str_eq(gguf_str s, const char *want) {
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void assert_key_u32(const gguf *f, const char *key, uint32_t want) {
    uint32_t v = 0;
    int rc = gguf_get_u32(f, key, &v);
    if (rc != 0 || v != want) fail_msg("%s: rc %d value %u, want %u", key, rc, v, want);
}

static void assert_key_str(const gguf *f, const char *key, const char *want) {
    gguf_str s = {0};
    int rc = gguf_get_str(f, key, &s);
    if (rc != 0 || !str_eq(s, want))
        fail_msg("%s: rc %d value '%.*s', want '%s'", key, rc, (int)s.len, s.ptr ? s.ptr : "",
                 want);
}

static void assert_tensor(const gguf *f, const char *name, uint32_t type, uint32_t n_dims,
                          uint64_t ne0, uint64_t ne1) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) fail_msg("tensor %s missing", name);
    if (t->type != type || t->n_dims != n_dims || t->ne[0] != ne0 || t->ne[1] != ne1)
        fail_msg("tensor %s: type %u dims %u [%llu, %llu], want type %u dims %u [%llu, %llu]", name,
                 t->type, t->n_dims, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                 type, n_dims, (unsigned long long)ne0, (unsigned long long)ne1);
    assert_int_equal(t->nbytes, ggml_row_size(type, ne0) * ne1);
}

/* A growable byte buffer to build GGUF files in memory. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_u8(buf *b, uint8_t v) {
    put(b, &v, 1);
}
static void put_u32(buf *b, uint32_t v) {
    put(b, &v, 4);
}
static void put_u64(buf *b, uint64_t v) {
    put(b, &v, 8);
}
static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_zeros(buf *b, size_t n) {
    for (size_t i = 0; i < n; i++) put_u8(b, 0);
}
static void pad_to(buf *b, size_t align) {
    while (b->len % align) put_u8(b, 0);
}

static void put_header(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}

static void put_key(buf *b, const char *key, uint32_t type) {
    put_str(b, key);
    put_u32(b, type);
}

static void put_kv_u32(buf *b, const char *key, uint32_t v) {
    put_key(b, key, GGUF_VT_UINT32);
    put_u32(b, v);
}

static void put_kv_str(buf *b, const char *key, const char *v) {
    put_key(b, key, GGUF_VT_STRING);
    put_str(b, v);
}

static void put_tensor_info(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                            uint32_t type, uint64_t offset) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, offset);
}

/* A file with one kv and one tensor `name` described by the arguments, then `data_bytes` of data
 * after the header padded to 32. */
static void build_one_tensor(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                             uint32_t type, uint64_t offset, size_t data_bytes) {
    put_header(b, 3, 1, 1);
    put_kv_str(b, "general.architecture", "llama");
    put_tensor_info(b, name, n_dims, ne, type, offset);
    pad_to(b, 32);
    put_zeros(b, data_bytes);
}

/* Parse b (copied to an allocation of exactly its size, so a sanitizer sees any overread). */
static int parse_buf(const buf *b, gguf **f, char *err, size_t errlen) {
    uint8_t *copy = malloc(b->len ? b->len : 1);
    assert_non_null(copy);
    if (b->len) memcpy(copy, b->p, b->len);
    static gguf *const sentinel = (gguf *)"not reset";
    *f = sentinel; /* must be reset to NULL on failure */
    err[0] = 0;
    int rc = gguf_open_memory(copy, b->len, f, err, errlen);
    if (rc == 0) {
        /* walk it while the buffer is alive */
        for (int i = 0; i < gguf_n_tensors(*f); i++) assert_non_null(gguf_tensor_at(*f, i)->data);
        gguf_close(*f);
        *f = sentinel;
    }
    free(copy);
    return rc;
}

static void expect_error_at(buf *b, const char *want, const char *also, const char *file,
                            int line) {
    gguf *f;
    char err[512];
    int rc = parse_buf(b, &f, err, sizeof err);
    if (rc != -1 || f != NULL || !strstr(err, want) || (also && !strstr(err, also)))
        fail_msg("%s:%d: rc %d, error '%s'; wanted '%s'%s%s", file, line, rc, err, want,
                 also ? " and " : "", also ? also : "");
    free(b->p);
    *b = (buf){0};
}
#define expect_error(b, want)        expect_error_at(b, want, NULL, __FILE__, __LINE__)
#define expect_error2(b, want, also) expect_error_at(b, want, also, __FILE__, __LINE__)

static void expect_ok(buf *b) {
    gguf *f;
    char err[512];
    if (parse_buf(b, &f, err, sizeof err) != 0) fail_msg("valid file rejected: %s", err);
    free(b->p);
    *b = (buf){0};
}

/* ==== The shared model files ==== */

static void test_stories_header(void **state) {
    (void)state;
    gguf *f = open_model("stories260K.gguf");
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_file_size(f), 1185376);
    assert_int_equal(gguf_alignment(f), 32);
    assert_int_equal(gguf_data_offset(f), 14176);
    assert_int_equal(gguf_n_tensors(f), 48);
    assert_int_equal(gguf_n_kv(f), 19);
    assert_memory_equal(gguf_base(f), "GGUF", 4);

    assert_key_str(f, "general.architecture", "llama");
    assert_key_str(f, "general.name", "llama");
    assert_key_str(f, "tokenizer.ggml.model", "llama");
    assert_key_u32(f, "llama.context_length", 2048);
    assert_key_u32(f, "llama.embedding_length", 64);
    assert_key_u32(f, "llama.feed_forward_length", 172);
    assert_key_u32(f, "llama.block_count", 5);
    assert_key_u32(f, "llama.attention.head_count", 8);
    assert_key_u32(f, "llama.attention.head_count_kv", 4);
    assert_key_u32(f, "llama.rope.dimension_count", 8);
    assert_key_u32(f, "tokenizer.ggml.bos_token_id", 1);
    assert_key_u32(f, "tokenizer.ggml.eos_token_id", 2);
    assert_key_u32(f, "tokenizer.ggml.unknown_token_id", 0);
    assert_key_u32(f, "tokenizer.ggml.seperator_token_id", 4294967295u);
    assert_key_u32(f, "tokenizer.ggml.padding_token_id", 4294967295u);
    float eps = 0;
    assert_int_equal(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    assert_true(eps == 1e-5f);
    const gguf_kv *kv = gguf_kv_at(f, gguf_find_key(f, "llama.attention.layer_norm_rms_epsilon"));
    assert_int_equal(kv->type, GGUF_VT_FLOAT32);

    /* what the README says is absent */
    uint32_t u;
    float fl;
    assert_int_equal(gguf_get_f32(f, "llama.rope.freq_base", &fl), -1);
    assert_int_equal(gguf_get_u32(f, "general.file_type", &u), -1);
    assert_int_equal(gguf_get_u32(f, "general.alignment", &u), -1);
    assert_int_equal(gguf_find_key(f, "tokenizer.ggml.add_bos_token"), -1);

    /* vocabulary: 512 tokens, <unk> <s> </s> then the 256 byte tokens */
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &kv), 0);
    assert_int_equal(kv->arr_n, 512);
    gguf_str *tokens = calloc(kv->arr_n, sizeof *tokens);
    assert_int_equal(gguf_arr_strings(kv, tokens), 0);
    assert_true(str_eq(tokens[0], "<unk>"));
    assert_true(str_eq(tokens[1], "<s>"));
    assert_true(str_eq(tokens[2], "</s>"));
    for (int b = 0; b < 256; b++) {
        char want[16];
        snprintf(want, sizeof want, "<0x%02X>", b);
        if (!str_eq(tokens[3 + b], want)) fail_msg("token %d is not %s", 3 + b, want);
    }
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const uint8_t *p = (const uint8_t *)tokens[i].ptr;
        assert_true(p > gguf_base(f) && p + tokens[i].len <= gguf_base(f) + gguf_data_offset(f));
    }
    free(tokens);
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &kv), 0);
    assert_int_equal(kv->arr_n, 512);
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VT_INT32, &kv), 0);
    assert_int_equal(kv->arr_n, 512);
    assert_true(gguf_arr_num(kv, 0) == 2.0); /* <unk> is UNKNOWN */
    assert_true(gguf_arr_num(kv, 1) == 3.0); /* <s> is CONTROL */
    assert_true(gguf_arr_num(kv, 3) == 6.0); /* <0x00> is BYTE */
    gguf_close(f);
}

static void test_stories_tensors(void **state) {
    (void)state;
    gguf *f = open_model("stories260K.gguf");
    assert_tensor(f, "token_embd.weight", GGML_TYPE_F32, 2, 64, 512);
    assert_tensor(f, "output.weight", GGML_TYPE_F32, 2, 64, 512);
    assert_tensor(f, "output_norm.weight", GGML_TYPE_F32, 1, 64, 1);
    for (int l = 0; l < 5; l++) {
        static const struct {
            const char *name;
            uint32_t n_dims;
            uint64_t ne0, ne1;
        } per_block[] = {
            {"attn_q", 2, 64, 64},      {"attn_k", 2, 64, 32},   {"attn_v", 2, 64, 32},
            {"attn_output", 2, 64, 64}, {"attn_norm", 1, 64, 1}, {"ffn_gate", 2, 64, 172},
            {"ffn_down", 2, 172, 64},   {"ffn_up", 2, 64, 172},  {"ffn_norm", 1, 64, 1},
        };
        for (size_t i = 0; i < sizeof per_block / sizeof per_block[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, per_block[i].name);
            assert_tensor(f, name, GGML_TYPE_F32, per_block[i].n_dims, per_block[i].ne0,
                          per_block[i].ne1);
        }
    }
    assert_null(gguf_find_tensor(f, "blk.5.attn_q.weight"));
    assert_null(gguf_tensor_at(f, 48));
    assert_null(gguf_tensor_at(f, -1));

    uint64_t numbers = 0, end = 0;
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_int_equal(t->type, GGML_TYPE_F32);
        assert_int_equal(t->offset % 32, 0);
        assert_ptr_equal(t->data, gguf_base(f) + 14176 + t->offset);
        numbers += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (t->offset + t->nbytes > end) end = t->offset + t->nbytes;
    }
    assert_int_equal(numbers, 292800);
    assert_int_equal(14176 + end, gguf_file_size(f)); /* the last tensor ends the file */
    assert_int_equal(gguf_find_tensor(f, "token_embd.weight")->offset, 0);
    /* the untied copy of the embedding is byte-identical */
    assert_memory_equal(gguf_find_tensor(f, "token_embd.weight")->data,
                        gguf_find_tensor(f, "output.weight")->data, 64 * 512 * 4);
    gguf_close(f);
}

static void test_tiny_random(void **state) {
    (void)state;
    gguf *f = open_model("llama-2-tiny-random.gguf");
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_file_size(f), 1750560);
    assert_int_equal(gguf_data_offset(f), 724416);
    assert_int_equal(gguf_n_tensors(f), 12);
    assert_key_str(f, "general.name", "LLaMA v2");
    assert_key_u32(f, "general.file_type", 1);
    assert_key_u32(f, "llama.context_length", 4096);
    assert_key_u32(f, "llama.embedding_length", 8);
    assert_key_u32(f, "llama.feed_forward_length", 32);
    assert_key_u32(f, "llama.block_count", 1);
    assert_key_u32(f, "llama.attention.head_count", 2);
    assert_key_u32(f, "llama.attention.head_count_kv", 2);
    assert_key_u32(f, "llama.rope.dimension_count", 4);
    const gguf_kv *kv;
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &kv), 0);
    assert_int_equal(kv->arr_n, 32000);

    assert_tensor(f, "token_embd.weight", GGML_TYPE_F16, 2, 8, 32000);
    assert_tensor(f, "output.weight", GGML_TYPE_F16, 2, 8, 32000);
    assert_tensor(f, "blk.0.attn_q.weight", GGML_TYPE_F16, 2, 8, 8);
    assert_tensor(f, "blk.0.attn_k.weight", GGML_TYPE_F16, 2, 8, 8);
    assert_tensor(f, "blk.0.attn_v.weight", GGML_TYPE_F16, 2, 8, 8);
    assert_tensor(f, "blk.0.attn_output.weight", GGML_TYPE_F16, 2, 8, 8);
    assert_tensor(f, "blk.0.ffn_gate.weight", GGML_TYPE_F16, 2, 8, 32);
    assert_tensor(f, "blk.0.ffn_up.weight", GGML_TYPE_F16, 2, 8, 32);
    assert_tensor(f, "blk.0.ffn_down.weight", GGML_TYPE_F16, 2, 32, 8);
    assert_tensor(f, "blk.0.attn_norm.weight", GGML_TYPE_F32, 1, 8, 1);
    assert_tensor(f, "blk.0.ffn_norm.weight", GGML_TYPE_F32, 1, 8, 1);
    assert_tensor(f, "output_norm.weight", GGML_TYPE_F32, 1, 8, 1);
    int n_f16 = 0;
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        n_f16 += t->type == GGML_TYPE_F16;
        assert_ptr_equal(t->data, gguf_base(f) + 724416 + t->offset);
    }
    assert_int_equal(n_f16, 9);
    assert_int_equal(gguf_find_tensor(f, "token_embd.weight")->nbytes, 512000);
    const gguf_tensor *out = gguf_find_tensor(f, "output.weight");
    assert_int_equal(724416 + out->offset + out->nbytes, gguf_file_size(f));
    gguf_close(f);
}

static void test_vocab_files(void **state) {
    (void)state;
    static const struct {
        const char *file, *model, *pre;
        uint64_t n_tokens, n_merges;
    } vocabs[] = {
        {"ggml-vocab-llama-spm.gguf", "llama", "default", 32000, 0},
        {"ggml-vocab-gpt-2.gguf", "gpt2", "gpt-2", 50257, 50000},
        {"ggml-vocab-starcoder.gguf", "gpt2", "starcoder", 49152, 48872},
        {"ggml-vocab-falcon.gguf", "gpt2", "falcon", 65024, 64784},
        {"ggml-vocab-deepseek-coder.gguf", "gpt2", "deepseek-coder", 32256, 31757},
        {"ggml-vocab-bert-bge.gguf", "bert", "bert-bge", 30522, 0},
    };
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) {
        gguf *f = open_model(vocabs[i].file);
        assert_int_equal(gguf_n_tensors(f), 0);
        assert_key_str(f, "tokenizer.ggml.model", vocabs[i].model);
        assert_key_str(f, "tokenizer.ggml.pre", vocabs[i].pre);
        const gguf_kv *kv;
        assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &kv), 0);
        assert_int_equal(kv->arr_n, vocabs[i].n_tokens);
        gguf_str *s = calloc(kv->arr_n, sizeof *s);
        assert_int_equal(gguf_arr_strings(kv, s), 0);
        const uint8_t *last = (const uint8_t *)s[kv->arr_n - 1].ptr + s[kv->arr_n - 1].len;
        assert_true(last <= gguf_base(f) + gguf_file_size(f));
        free(s);
        int rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_VT_STRING, &kv);
        if (vocabs[i].n_merges) {
            assert_int_equal(rc, 0);
            assert_int_equal(kv->arr_n, vocabs[i].n_merges);
        } else {
            assert_int_equal(rc, -1);
        }
        gguf_close(f);
    }
}

static void test_open_errors(void **state) {
    (void)state;
    gguf *f = (gguf *)1;
    char err[512] = "";
    assert_int_equal(gguf_open("/nonexistent/model.gguf", &f, err, sizeof err), -1);
    assert_null(f);
    assert_non_null(strstr(err, "cannot open: No such file or directory"));
    assert_int_equal(gguf_open(models_dir(), &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));

    char dir[] = "/tmp/test_gguf.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(gguf_open(path, &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "file too small (0 bytes)"));
    unlink(path);
    rmdir(dir);

    assert_int_equal(gguf_open_memory(NULL, 0, &f, err, sizeof err), -1);
    assert_null(f);
    assert_non_null(strstr(err, "file too small"));
}

/* ==== Typed getters and arrays ==== */

/* A file holding one key of every value type, and arrays of every element type. */
static void build_all_types(buf *b) {
    put_header(b, 3, 0, 29);
    put_key(b, "v.u8", GGUF_VT_UINT8), put_u8(b, 200);
    put_key(b, "v.i8", GGUF_VT_INT8), put_u8(b, (uint8_t)-5);
    put_key(b, "v.u16", GGUF_VT_UINT16), put(b, &(uint16_t){60000}, 2);
    put_key(b, "v.i16", GGUF_VT_INT16), put(b, &(int16_t){-30000}, 2);
    put_key(b, "v.u32", GGUF_VT_UINT32), put_u32(b, 4000000000u);
    put_key(b, "v.i32", GGUF_VT_INT32), put(b, &(int32_t){-2000000000}, 4);
    put_key(b, "v.i32pos", GGUF_VT_INT32), put(b, &(int32_t){123456}, 4);
    put_key(b, "v.f32", GGUF_VT_FLOAT32), put(b, &(float){1.5f}, 4);
    put_key(b, "v.bool", GGUF_VT_BOOL), put_u8(b, 1);
    put_key(b, "v.str", GGUF_VT_STRING), put_str(b, "h\xc3\xa9llo\n\"x\"");
    put_key(b, "v.empty", GGUF_VT_STRING), put_str(b, "");
    put_key(b, "v.u64", GGUF_VT_UINT64), put_u64(b, ((uint64_t)1 << 63) + 5);
    put_key(b, "v.u64small", GGUF_VT_UINT64), put_u64(b, 77);
    put_key(b, "v.i64", GGUF_VT_INT64), put(b, &(int64_t){-((int64_t)1 << 62)}, 8);
    put_key(b, "v.f64", GGUF_VT_FLOAT64), put(b, &(double){-0.375}, 8);
    /* arrays of every element type but array */
    static const uint8_t a_u8[] = {1, 2, 255};
    static const int8_t a_i8[] = {-1, 7};
    static const uint16_t a_u16[] = {65535, 0};
    static const int16_t a_i16[] = {-32768, 32767};
    static const uint32_t a_u32[] = {1, 4294967295u, 3};
    static const int32_t a_i32[] = {-7, 8};
    static const float a_f32[] = {0.25f, -1e30f};
    static const uint8_t a_bool[] = {1, 0, 1};
    static const uint64_t a_u64[] = {18446744073709551615ull, 9};
    static const int64_t a_i64[] = {-9000000000000000000ll};
    static const double a_f64[] = {1e-300, -2.5};
    static const struct {
        const char *key;
        uint32_t type;
        const void *data;
        uint64_t n, size;
    } arrays[] = {
        {"a.u8", GGUF_VT_UINT8, a_u8, 3, 1},     {"a.i8", GGUF_VT_INT8, a_i8, 2, 1},
        {"a.u16", GGUF_VT_UINT16, a_u16, 2, 2},  {"a.i16", GGUF_VT_INT16, a_i16, 2, 2},
        {"a.u32", GGUF_VT_UINT32, a_u32, 3, 4},  {"a.i32", GGUF_VT_INT32, a_i32, 2, 4},
        {"a.f32", GGUF_VT_FLOAT32, a_f32, 2, 4}, {"a.bool", GGUF_VT_BOOL, a_bool, 3, 1},
        {"a.u64", GGUF_VT_UINT64, a_u64, 2, 8},  {"a.i64", GGUF_VT_INT64, a_i64, 1, 8},
        {"a.f64", GGUF_VT_FLOAT64, a_f64, 2, 8}, {"a.empty", GGUF_VT_UINT32, NULL, 0, 4},
    };
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        put_key(b, arrays[i].key, GGUF_VT_ARRAY);
        put_u32(b, arrays[i].type);
        put_u64(b, arrays[i].n);
        put(b, arrays[i].data, arrays[i].n * arrays[i].size);
    }
    put_key(b, "a.str", GGUF_VT_ARRAY), put_u32(b, GGUF_VT_STRING), put_u64(b, 3);
    put_str(b, "a"), put_str(b, ""), put_str(b, "ccc");
    put_key(b, "a.strempty", GGUF_VT_ARRAY), put_u32(b, GGUF_VT_STRING), put_u64(b, 0);
}

static void test_getters(void **state) {
    (void)state;
    buf b = {0};
    build_all_types(&b);
    gguf *f = NULL;
    char err[256];
    assert_int_equal(gguf_open_memory(b.p, b.len, &f, err, sizeof err), 0);
    assert_int_equal(gguf_n_kv(f), 29);
    assert_int_equal(gguf_n_tensors(f), 0);
    assert_null(gguf_kv_at(f, 29));
    assert_null(gguf_kv_at(f, -1));

    /* u32 from any integer width when in range */
    assert_key_u32(f, "v.u8", 200);
    assert_key_u32(f, "v.u16", 60000);
    assert_key_u32(f, "v.u32", 4000000000u);
    assert_key_u32(f, "v.i32pos", 123456);
    assert_key_u32(f, "v.u64small", 77);
    assert_key_u32(f, "v.bool", 1);
    /* out of range or not an integer: -2, and the output is left alone */
    uint32_t u = 99;
    assert_int_equal(gguf_get_u32(f, "v.i8", &u), -2);
    assert_int_equal(gguf_get_u32(f, "v.i16", &u), -2);
    assert_int_equal(gguf_get_u32(f, "v.i32", &u), -2);
    assert_int_equal(gguf_get_u32(f, "v.i64", &u), -2);
    assert_int_equal(gguf_get_u32(f, "v.u64", &u), -2);
    assert_int_equal(gguf_get_u32(f, "v.f32", &u), -2);
    assert_int_equal(gguf_get_u32(f, "v.f64", &u), -2);
    assert_int_equal(gguf_get_u32(f, "v.str", &u), -2);
    assert_int_equal(gguf_get_u32(f, "a.u32", &u), -2);
    assert_int_equal(gguf_get_u32(f, "v.missing", &u), -1);
    assert_int_equal(gguf_get_u32(f, "v.u3", &u), -1); /* a prefix is not a match */
    assert_int_equal(u, 99);

    int64_t i64 = 0;
    assert_int_equal(gguf_get_i64(f, "v.i8", &i64), 0);
    assert_int_equal(i64, -5);
    assert_int_equal(gguf_get_i64(f, "v.i16", &i64), 0);
    assert_int_equal(i64, -30000);
    assert_int_equal(gguf_get_i64(f, "v.i32", &i64), 0);
    assert_int_equal(i64, -2000000000);
    assert_int_equal(gguf_get_i64(f, "v.i64", &i64), 0);
    assert_true(i64 == -((int64_t)1 << 62));
    assert_int_equal(gguf_get_i64(f, "v.u32", &i64), 0);
    assert_int_equal(i64, 4000000000);
    assert_int_equal(gguf_get_i64(f, "v.u64", &i64), -2); /* > INT64_MAX */
    assert_int_equal(gguf_get_i64(f, "v.str", &i64), -2);
    assert_int_equal(gguf_get_i64(f, "nope", &i64), -1);

    float fl = 0;
    assert_int_equal(gguf_get_f32(f, "v.f32", &fl), 0);
    assert_true(fl == 1.5f);
    assert_int_equal(gguf_get_f32(f, "v.f64", &fl), 0);
    assert_true(fl == -0.375f);
    assert_int_equal(gguf_get_f32(f, "v.u8", &fl), 0);
    assert_true(fl == 200.0f);
    assert_int_equal(gguf_get_f32(f, "v.u64", &fl), 0);
    assert_true(fl == 9223372036854775808.0f);
    assert_int_equal(gguf_get_f32(f, "v.str", &fl), -2);
    assert_int_equal(gguf_get_f32(f, "a.f32", &fl), -2);
    assert_int_equal(gguf_get_f32(f, "nope", &fl), -1);

    int bl = 0;
    assert_int_equal(gguf_get_bool(f, "v.bool", &bl), 0);
    assert_int_equal(bl, 1);
    assert_int_equal(gguf_get_bool(f, "v.str", &bl), -2);
    assert_int_equal(gguf_get_bool(f, "nope", &bl), -1);

    gguf_str s = {0};
    assert_int_equal(gguf_get_str(f, "v.str", &s), 0);
    assert_true(str_eq(s, "h\xc3\xa9llo\n\"x\""));
    assert_int_equal(gguf_get_str(f, "v.empty", &s), 0);
    assert_int_equal(s.len, 0);
    assert_int_equal(gguf_get_str(f, "v.u32", &s), -2);
    assert_int_equal(gguf_get_str(f, "a.str", &s), -2);
    assert_int_equal(gguf_get_str(f, "nope", &s), -1);

    const gguf_kv *kv = NULL;
    assert_int_equal(gguf_get_arr(f, "a.u32", GGUF_VT_UINT32, &kv), 0);
    assert_int_equal(kv->arr_n, 3);
    assert_true(gguf_arr_num(kv, 1) == 4294967295.0);
    assert_true(gguf_arr_num(kv, 3) == 0.0); /* past the end */
    assert_int_equal(gguf_get_arr(f, "a.u32", GGUF_VT_INT32, &kv), -2);
    assert_int_equal(gguf_get_arr(f, "v.u32", GGUF_VT_UINT32, &kv), -2);
    assert_int_equal(gguf_get_arr(f, "nope", GGUF_VT_UINT32, &kv), -1);
    static const struct {
        const char *key;
        uint32_t type;
        uint64_t i;
        double want;
    } nums[] = {
        {"a.u8", GGUF_VT_UINT8, 2, 255},
        {"a.i8", GGUF_VT_INT8, 0, -1},
        {"a.u16", GGUF_VT_UINT16, 0, 65535},
        {"a.i16", GGUF_VT_INT16, 0, -32768},
        {"a.i32", GGUF_VT_INT32, 0, -7},
        {"a.f32", GGUF_VT_FLOAT32, 1, -1e30f},
        {"a.bool", GGUF_VT_BOOL, 2, 1},
        {"a.u64", GGUF_VT_UINT64, 1, 9},
        {"a.u64", GGUF_VT_UINT64, 0, 18446744073709551615.0},
        {"a.i64", GGUF_VT_INT64, 0, -9e18},
        {"a.f64", GGUF_VT_FLOAT64, 0, 1e-300},
        {"a.f64", GGUF_VT_FLOAT64, 1, -2.5},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        assert_int_equal(gguf_get_arr(f, nums[i].key, nums[i].type, &kv), 0);
        if (gguf_arr_num(kv, nums[i].i) != nums[i].want)
            fail_msg("%s[%llu] = %g, want %g", nums[i].key, (unsigned long long)nums[i].i,
                     gguf_arr_num(kv, nums[i].i), nums[i].want);
    }
    assert_int_equal(gguf_get_arr(f, "a.empty", GGUF_VT_UINT32, &kv), 0);
    assert_int_equal(kv->arr_n, 0);
    assert_true(gguf_arr_num(kv, 0) == 0.0);

    gguf_str strs[3];
    assert_int_equal(gguf_get_arr(f, "a.str", GGUF_VT_STRING, &kv), 0);
    assert_int_equal(gguf_arr_strings(kv, strs), 0);
    assert_true(str_eq(strs[0], "a") && str_eq(strs[1], "") && str_eq(strs[2], "ccc"));
    assert_true(gguf_arr_num(kv, 0) == 0.0); /* not numeric */
    assert_int_equal(gguf_get_arr(f, "a.u8", GGUF_VT_UINT8, &kv), 0);
    assert_int_equal(gguf_arr_strings(kv, strs), -1);
    assert_int_equal(gguf_get_arr(f, "a.strempty", GGUF_VT_STRING, &kv), 0);
    assert_int_equal(kv->arr_n, 0);
    assert_int_equal(gguf_arr_strings(kv, strs), 0);
    gguf_close(f);
    free(b.p);
}

static void test_type_tables(void **state) {
    (void)state;
    assert_int_equal(ggml_type_from_name("f32"), GGML_TYPE_F32);
    assert_int_equal(ggml_type_from_name("F16"), GGML_TYPE_F16);
    assert_int_equal(ggml_type_from_name("Q8_0"), GGML_TYPE_Q8_0);
    assert_int_equal(ggml_type_from_name("q4_k"), GGML_TYPE_Q4_K);
    assert_int_equal(ggml_type_from_name("q4_2"), -1);
    assert_int_equal(ggml_type_from_name(""), -1);
    assert_string_equal(ggml_type_name(GGML_TYPE_BF16), "bf16");
    assert_string_equal(ggml_type_name(4), "unknown"); /* removed q4_2 */
    assert_string_equal(ggml_type_name(GGML_TYPE_COUNT), "unknown");
    assert_string_equal(ggml_type_name(UINT32_MAX), "unknown");
    assert_string_equal(gguf_value_type_name(GGUF_VT_ARRAY), "array");
    assert_string_equal(gguf_value_type_name(GGUF_VT_COUNT), "unknown");
    assert_int_equal(ggml_row_size(GGML_TYPE_F32, 64), 256);
    assert_int_equal(ggml_row_size(GGML_TYPE_F16, 8), 16);
    assert_int_equal(ggml_row_size(GGML_TYPE_Q8_0, 64), 68);
    assert_int_equal(ggml_row_size(GGML_TYPE_Q4_K, 512), 288);
    assert_int_equal(ggml_row_size(4, 64), 0);
    assert_int_equal(ggml_blck_size(GGML_TYPE_Q6_K), 256);
    assert_int_equal(ggml_type_size(GGML_TYPE_Q6_K), 210);
    assert_int_equal(ggml_type_size(UINT32_MAX), 0);
}

/* ==== Writer ==== */

static const size_t scalar_sizes[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* Same type and the same value bytes. */
static void assert_kv_same(const gguf_kv *a, const gguf_kv *b) {
    if (a->key.len != b->key.len || memcmp(a->key.ptr, b->key.ptr, a->key.len) != 0)
        fail_msg("key '%.*s' became '%.*s'", (int)a->key.len, a->key.ptr, (int)b->key.len,
                 b->key.ptr);
    if (a->type != b->type)
        fail_msg("%.*s: type %u became %u", (int)a->key.len, a->key.ptr, a->type, b->type);
    if (a->type == GGUF_VT_STRING) {
        uint64_t la, lb;
        memcpy(&la, a->val, 8);
        memcpy(&lb, b->val, 8);
        assert_int_equal(la, lb);
        assert_memory_equal(a->val + 8, b->val + 8, la);
    } else if (a->type == GGUF_VT_ARRAY) {
        assert_int_equal(a->arr_type, b->arr_type);
        assert_int_equal(a->arr_n, b->arr_n);
        if (a->arr_type == GGUF_VT_STRING) {
            gguf_str *sa = calloc(a->arr_n + 1, sizeof *sa), *sb = calloc(a->arr_n + 1, sizeof *sb);
            assert_int_equal(gguf_arr_strings(a, sa), 0);
            assert_int_equal(gguf_arr_strings(b, sb), 0);
            for (uint64_t i = 0; i < a->arr_n; i++) {
                assert_int_equal(sa[i].len, sb[i].len);
                assert_memory_equal(sa[i].ptr, sb[i].ptr, sa[i].len);
            }
            free(sa);
            free(sb);
        } else if (a->arr_n) {
            assert_memory_equal(a->val, b->val, a->arr_n * scalar_sizes[a->arr_type]);
        }
    } else {
        assert_memory_equal(a->val, b->val, scalar_sizes[a->type]);
    }
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    *len = fread(p, 1, (size_t)n, fp);
    fclose(fp);
    return p;
}

static void test_writer_roundtrip(void **state) {
    (void)state;
    buf b = {0};
    build_all_types(&b);
    gguf *src = NULL;
    char err[512];
    assert_int_equal(gguf_open_memory(b.p, b.len, &src, err, sizeof err), 0);

    gguf_writer *w = gguf_writer_new();
    for (int i = 0; i < gguf_n_kv(src); i++) gguf_writer_copy_kv(w, gguf_kv_at(src, i));
    gguf_writer_set_u32(w, "w.u32", 4294967295u);
    gguf_writer_set_i32(w, "w.i32", INT32_MIN);
    gguf_writer_set_f32(w, "w.f32", -0.125f);
    gguf_writer_set_bool(w, "w.bool", 7);
    gguf_writer_set_bool(w, "w.false", 0);
    gguf_writer_set_str(w, "w.str", "tab\there");
    const char *const strs[] = {"x", "", "\xe2\x96\x81hello"};
    gguf_writer_set_arr_str(w, "w.astr", strs, 3);
    const float fs[] = {1.0f, -2.5f, 1e-20f, INFINITY};
    gguf_writer_set_arr_f32(w, "w.af32", fs, 4);
    const int32_t is[] = {INT32_MIN, 0, INT32_MAX};
    gguf_writer_set_arr_i32(w, "w.ai32", is, 3);

    /* tensors whose sizes are not multiples of 32, so the writer must pad between them */
    static const struct {
        const char *name;
        uint32_t type, n_dims;
        uint64_t ne[4];
        uint64_t nbytes;
    } tensors[] = {
        {"t.f32", GGML_TYPE_F32, 2, {3, 5}, 60},
        {"t.f16", GGML_TYPE_F16, 1, {7}, 14},
        {"t.q8_0", GGML_TYPE_Q8_0, 2, {64, 2}, 136},
        {"t.i8.4d", GGML_TYPE_I8, 4, {2, 3, 4, 5}, 120},
        {"t.q4_k", GGML_TYPE_Q4_K, 1, {256}, 144},
        {"a-name-of-exactly-sixty-four-bytes-which-is-the-longest-allowed!",
         GGML_TYPE_F32,
         1,
         {1},
         4},
    };
    enum { N_TENSORS = sizeof tensors / sizeof tensors[0] };
    uint8_t data[N_TENSORS][256];
    for (int i = 0; i < N_TENSORS; i++) {
        for (size_t k = 0; k < sizeof data[i]; k++) data[i][k] = (uint8_t)(i * 31 + k * 7 + 1);
        gguf_writer_add_tensor(w, tensors[i].name, tensors[i].type, tensors[i].n_dims,
                               tensors[i].ne, data[i]);
    }

    char dir[] = "/tmp/test_gguf.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    assert_int_equal(gguf_writer_write(w, path, err, sizeof err), 0);
    gguf_writer_free(w);

    gguf *f = NULL;
    if (gguf_open(path, &f, err, sizeof err) < 0) fail_msg("written file rejected: %s", err);
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_alignment(f), 32);
    assert_int_equal(gguf_data_offset(f) % 32, 0);
    assert_int_equal(gguf_n_kv(f), gguf_n_kv(src) + 9);
    for (int i = 0; i < gguf_n_kv(src); i++) assert_kv_same(gguf_kv_at(src, i), gguf_kv_at(f, i));

    assert_key_u32(f, "w.u32", 4294967295u);
    int64_t i64;
    assert_int_equal(gguf_get_i64(f, "w.i32", &i64), 0);
    assert_int_equal(i64, INT32_MIN);
    float fl;
    assert_int_equal(gguf_get_f32(f, "w.f32", &fl), 0);
    assert_true(fl == -0.125f);
    int bl;
    assert_int_equal(gguf_get_bool(f, "w.bool", &bl), 0);
    assert_int_equal(bl, 1);
    assert_int_equal(gguf_kv_at(f, gguf_find_key(f, "w.bool"))->val[0], 1); /* stored as 1 */
    assert_int_equal(gguf_get_bool(f, "w.false", &bl), 0);
    assert_int_equal(bl, 0);
    assert_key_str(f, "w.str", "tab\there");
    const gguf_kv *kv;
    gguf_str got[3];
    assert_int_equal(gguf_get_arr(f, "w.astr", GGUF_VT_STRING, &kv), 0);
    assert_int_equal(kv->arr_n, 3);
    assert_int_equal(gguf_arr_strings(kv, got), 0);
    for (int i = 0; i < 3; i++) assert_true(str_eq(got[i], strs[i]));
    assert_int_equal(gguf_get_arr(f, "w.af32", GGUF_VT_FLOAT32, &kv), 0);
    assert_int_equal(kv->arr_n, 4);
    assert_memory_equal(kv->val, fs, sizeof fs);
    assert_int_equal(gguf_get_arr(f, "w.ai32", GGUF_VT_INT32, &kv), 0);
    assert_int_equal(kv->arr_n, 3);
    assert_memory_equal(kv->val, is, sizeof is);

    assert_int_equal(gguf_n_tensors(f), N_TENSORS);
    uint64_t next = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_string_equal(t->name, tensors[i].name);
        assert_int_equal(t->type, tensors[i].type);
        assert_int_equal(t->n_dims, tensors[i].n_dims);
        for (uint32_t d = 0; d < 4; d++)
            assert_int_equal(t->ne[d], d < tensors[i].n_dims ? tensors[i].ne[d] : 1);
        assert_int_equal(t->nbytes, tensors[i].nbytes);
        assert_int_equal(t->offset % 32, 0);
        assert_true(t->offset >= next); /* no overlap */
        next = t->offset + t->nbytes;
        assert_int_equal(((const uint8_t *)t->data - gguf_base(f)) % 32, 0);
        assert_memory_equal(t->data, data[i], t->nbytes);
    }
    assert_int_equal(gguf_file_size(f), gguf_data_offset(f) + (next + 31) / 32 * 32);
    gguf_close(f);
    gguf_close(src);
    free(b.p);

    /* a failed write names the file and leaves nothing behind */
    w = gguf_writer_new();
    gguf_writer_set_u32(w, "k", 1);
    snprintf(path, sizeof path, "%s/no/such/dir.gguf", dir);
    assert_int_equal(gguf_writer_write(w, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot create"));
    assert_non_null(strstr(err, "dir.gguf"));
    gguf_writer_free(w);
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    unlink(path);
    assert_int_equal(rmdir(dir), 0); /* fails if a .tmp was left behind */
}

/* Copying every kv and tensor of a real model reproduces it byte for byte. */
static void copy_model_exactly(const char *name) {
    gguf *src = open_model(name);
    gguf_writer *w = gguf_writer_new();
    for (int i = 0; i < gguf_n_kv(src); i++) gguf_writer_copy_kv(w, gguf_kv_at(src, i));
    for (int i = 0; i < gguf_n_tensors(src); i++) {
        const gguf_tensor *t = gguf_tensor_at(src, i);
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    char dir[] = "/tmp/test_gguf.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64], err[512];
    snprintf(path, sizeof path, "%s/copy.gguf", dir);
    if (gguf_writer_write(w, path, err, sizeof err) < 0) fail_msg("write: %s", err);
    gguf_writer_free(w);
    size_t len = 0;
    uint8_t *copy = read_file(path, &len);
    assert_non_null(copy);
    assert_int_equal(len, gguf_file_size(src));
    if (memcmp(copy, gguf_base(src), len) != 0)
        fail_msg("copy of %s differs from the original", name);
    free(copy);
    gguf_close(src);
    unlink(path);
    rmdir(dir);
}

static void test_writer_copies_models(void **state) {
    (void)state;
    copy_model_exactly("stories260K.gguf");
    copy_model_exactly("llama-2-tiny-random.gguf");
}

/* ==== Corrupt files, each with the message it must give ==== */

static void test_corrupt_header(void **state) {
    (void)state;
    buf b = {0};
    build_one_tensor(&b, "w", 2, (uint64_t[]){8, 2}, GGML_TYPE_F32, 0, 64);
    expect_ok(&b);
    put_header(&b, 2, 0, 0); /* version 2 is accepted */
    expect_ok(&b);
    put_header(&b, 3, 0, 0);
    expect_ok(&b);

    put(&b, "GGUX", 4), put_u32(&b, 3), put_u64(&b, 0), put_u64(&b, 0);
    expect_error(&b, "not a GGUF file (bad magic)");
    put(&b, "gguf", 4), put_u32(&b, 3), put_u64(&b, 0), put_u64(&b, 0);
    expect_error(&b, "bad magic");
    put(&b, "GGU", 3);
    expect_error(&b, "file too small (3 bytes)");
    put(&b, "GGUF\3", 5);
    expect_error(&b, "truncated file: version at offset 4 needs 4 bytes, only 1 left");
    put(&b, "GGUF", 4), put_u32(&b, 3), put_u64(&b, 0), put_u32(&b, 0);
    expect_error(&b, "truncated file: metadata count at offset 16");
    put_header(&b, 1, 0, 0);
    expect_error(&b, "GGUF version 1 is not supported");
    put_header(&b, 4, 0, 0);
    expect_error(&b, "unsupported GGUF version 4");
    put_header(&b, 0, 0, 0);
    expect_error(&b, "unsupported GGUF version 0");
    put_header(&b, 0x03000000, 0, 0); /* a big-endian file */
    expect_error(&b, "unsupported GGUF version 50331648");

    put_header(&b, 3, (uint64_t)1 << 60, 0);
    expect_error(&b, "tensor count 1152921504606846976 is more than the file can hold");
    put_header(&b, 3, UINT64_MAX, 0);
    expect_error(&b, "tensor count 18446744073709551615 is more than the file can hold");
    put_header(&b, 3, 0, UINT64_MAX);
    expect_error(&b, "metadata count 18446744073709551615 is more than the file can hold");
    /* exactly one more kv than 13-byte entries fit */
    put_header(&b, 3, 0, 3), put_zeros(&b, 2 * 13 + 12);
    expect_error(&b, "metadata count 3 is more than the file can hold");
    put_header(&b, 3, 2, 0), put_zeros(&b, 63);
    expect_error(&b, "tensor count 2 is more than the file can hold");
}

static void test_corrupt_metadata(void **state) {
    (void)state;
    buf b = {0};
    put_header(&b, 3, 0, 1), put_u64(&b, 1000), put(&b, "abcdefgh", 8);
    expect_error(&b, "key of metadata entry 0 at offset 24 has length 1000, past end of file");
    put_header(&b, 3, 0, 1), put_u64(&b, UINT64_MAX), put_zeros(&b, 16);
    expect_error(&b, "has length 18446744073709551615, past end of file");
    put_header(&b, 3, 0, 1), put_key(&b, "general.name", GGUF_VT_STRING), put_u64(&b, 9);
    put(&b, "LLaMA v2", 8);
    expect_error(&b, "string value of key 'general.name' at offset 48 has length 9, past end");
    put_header(&b, 3, 0, 1), put_key(&b, "k", GGUF_VT_UINT64), put_zeros(&b, 7);
    expect_error(&b, "truncated file: metadata value at offset 37 needs 8 bytes, only 7 left");
    put_header(&b, 3, 0, 1), put_key(&b, "k", GGUF_VT_COUNT), put_u32(&b, 0);
    expect_error(&b, "key 'k' has unknown value type 13");
    put_header(&b, 3, 0, 1), put_key(&b, "k", UINT32_MAX), put_u32(&b, 0);
    expect_error(&b, "key 'k' has unknown value type 4294967295");

    /* arrays */
    put_header(&b, 3, 0, 1), put_key(&b, "a", GGUF_VT_ARRAY), put_u32(&b, GGUF_VT_UINT32);
    put_u64(&b, 1000000), put_zeros(&b, 400);
    expect_error(&b, "array 'a' of 1000000 u32 elements extends past end of file");
    put_header(&b, 3, 0, 1), put_key(&b, "a", GGUF_VT_ARRAY), put_u32(&b, GGUF_VT_UINT64);
    put_u64(&b, (UINT64_MAX / 8) + 2), put_zeros(&b, 64); /* count * 8 would wrap */
    expect_error(&b, "array 'a' of 2305843009213693953 u64 elements extends past end of file");
    put_header(&b, 3, 0, 1), put_key(&b, "a", GGUF_VT_ARRAY), put_u32(&b, GGUF_VT_UINT8);
    put_u64(&b, 5), put_zeros(&b, 4);
    expect_error(&b, "array 'a' of 5 u8 elements extends past end of file");
    put_header(&b, 3, 0, 1), put_key(&b, "tokens", GGUF_VT_ARRAY), put_u32(&b, GGUF_VT_STRING);
    put_u64(&b, UINT64_MAX), put_zeros(&b, 64);
    expect_error(&b, "array 'tokens' claims 18446744073709551615 strings, more than the file can");
    put_header(&b, 3, 0, 1), put_key(&b, "tokens", GGUF_VT_ARRAY), put_u32(&b, GGUF_VT_STRING);
    put_u64(&b, 3), put_str(&b, "ab"), put_u64(&b, 100), put_zeros(&b, 20);
    expect_error(&b, "string value of key 'tokens'");
    put_header(&b, 3, 0, 1), put_key(&b, "a", GGUF_VT_ARRAY), put_u32(&b, GGUF_VT_ARRAY);
    put_u64(&b, 1), put_u32(&b, GGUF_VT_UINT8), put_u64(&b, 0);
    expect_error(&b, "key 'a' is an array of arrays, which is not supported");
    put_header(&b, 3, 0, 1), put_key(&b, "a", GGUF_VT_ARRAY), put_u32(&b, 200), put_u64(&b, 0);
    expect_error(&b, "key 'a' is an array of unknown type 200");
    put_header(&b, 3, 0, 1), put_key(&b, "a", GGUF_VT_ARRAY), put_u32(&b, GGUF_VT_UINT8);
    put_u32(&b, 0);
    expect_error(&b, "truncated file: array length");

    /* duplicates, also when not adjacent, and a long key is cut in the message */
    put_header(&b, 3, 0, 3), put_kv_u32(&b, "k", 1), put_kv_u32(&b, "kk", 2);
    put_kv_str(&b, "k", "again");
    expect_error(&b, "duplicate metadata key 'k'");
    char longkey[201];
    memset(longkey, 'x', 200);
    longkey[200] = 0;
    put_header(&b, 3, 0, 2), put_kv_u32(&b, longkey, 1), put_kv_u32(&b, longkey, 1);
    expect_error(&b, "duplicate metadata key 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    /* keys differing only after a NUL byte are different keys */
    put_header(&b, 3, 0, 2);
    put_u64(&b, 3), put(&b, "a\0b", 3), put_u32(&b, GGUF_VT_UINT8), put_u8(&b, 1);
    put_u64(&b, 3), put(&b, "a\0c", 3), put_u32(&b, GGUF_VT_UINT8), put_u8(&b, 1);
    expect_ok(&b);
    /* a key that is a prefix of another is no duplicate */
    put_header(&b, 3, 0, 2), put_kv_u32(&b, "ab", 1), put_kv_u32(&b, "a", 1);
    expect_ok(&b);
}

static void test_corrupt_alignment(void **state) {
    (void)state;
    buf b = {0};
    put_header(&b, 3, 0, 1), put_kv_u32(&b, "general.alignment", 48);
    expect_error(&b, "general.alignment = 48 is not a power of two");
    put_header(&b, 3, 0, 1), put_kv_u32(&b, "general.alignment", 0);
    expect_error(&b, "general.alignment = 0 is not a power of two");
    put_header(&b, 3, 0, 1), put_kv_u32(&b, "general.alignment", UINT32_MAX);
    expect_error(&b, "general.alignment = 4294967295 is not a power of two");
    put_header(&b, 3, 0, 1), put_key(&b, "general.alignment", GGUF_VT_UINT64), put_u64(&b, 32);
    expect_error(&b, "general.alignment has type u64, expected u32");
    put_header(&b, 3, 0, 1), put_kv_str(&b, "general.alignment", "32");
    expect_error(&b, "general.alignment has type string, expected u32");
    put_header(&b, 3, 0, 1), put_key(&b, "general.alignment", GGUF_VT_ARRAY);
    put_u32(&b, GGUF_VT_UINT32), put_u64(&b, 1), put_u32(&b, 32);
    expect_error(&b, "general.alignment has type array, expected u32");

    /* a valid alignment of 64 moves the data section and checks offsets against 64 */
    put_header(&b, 3, 1, 1), put_kv_u32(&b, "general.alignment", 64);
    put_tensor_info(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 64);
    pad_to(&b, 64), put_zeros(&b, 128);
    gguf *f = NULL;
    char err[256];
    assert_int_equal(gguf_open_memory(b.p, b.len, &f, err, sizeof err), 0);
    assert_int_equal(gguf_alignment(f), 64);
    assert_int_equal(gguf_data_offset(f), 128);
    assert_ptr_equal(gguf_tensor_at(f, 0)->data, b.p + 128 + 64);
    gguf_close(f);
    free(b.p);
    b = (buf){0};
    put_header(&b, 3, 1, 1), put_kv_u32(&b, "general.alignment", 64);
    put_tensor_info(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 32);
    pad_to(&b, 64), put_zeros(&b, 128);
    expect_error(&b, "tensor 'w' offset 32 is not a multiple of the alignment 64");
    /* a huge alignment pushes the data section past the end */
    put_header(&b, 3, 1, 1), put_kv_u32(&b, "general.alignment", 1u << 31);
    put_tensor_info(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 0);
    put_zeros(&b, 64);
    expect_error(&b, "tensor data section would start at 2147483648, past end");
}

static void test_corrupt_tensors(void **state) {
    (void)state;
    buf b = {0};
    build_one_tensor(&b, "w", 0, NULL, GGML_TYPE_F32, 0, 64);
    expect_error(&b, "tensor 'w' has 0 dimensions (1..4 supported)");
    build_one_tensor(&b, "w", 5, (uint64_t[]){1, 1, 1, 1, 1}, GGML_TYPE_F32, 0, 64);
    expect_error(&b, "tensor 'w' has 5 dimensions (1..4 supported)");
    put_header(&b, 3, 1, 0), put_str(&b, "w"), put_u32(&b, UINT32_MAX), put_zeros(&b, 64);
    expect_error(&b, "tensor 'w' has 4294967295 dimensions");
    build_one_tensor(&b, "w", 4, (uint64_t[]){2, 2, 2, 2}, GGML_TYPE_F32, 0, 64);
    expect_ok(&b);
    build_one_tensor(&b, "w", 2, (uint64_t[]){8, 0}, GGML_TYPE_F32, 0, 64);
    expect_error(&b, "tensor 'w' has invalid dimension 1 = 0");
    build_one_tensor(&b, "w", 1, (uint64_t[]){(uint64_t)1 << 41}, GGML_TYPE_F32, 0, 64);
    expect_error(&b, "tensor 'w' has invalid dimension 0 = 2199023255552");
    build_one_tensor(&b, "w", 3, (uint64_t[]){1 << 20, 1 << 20, 1 << 20}, GGML_TYPE_F32, 0, 64);
    expect_error(&b, "tensor 'w' has too many elements");
    build_one_tensor(&b, "w", 1, (uint64_t[]){32}, 4, 0, 64);
    expect_error(&b, "tensor 'w' has unknown type 4");
    build_one_tensor(&b, "w", 1, (uint64_t[]){32}, 39, 0, 64);
    expect_error(&b, "tensor 'w' has unknown type 39");
    build_one_tensor(&b, "w", 1, (uint64_t[]){32}, GGML_TYPE_COUNT, 0, 64);
    expect_error(&b, "tensor 'w' has unknown type 40");
    build_one_tensor(&b, "w", 1, (uint64_t[]){32}, UINT32_MAX, 0, 64);
    expect_error(&b, "tensor 'w' has unknown type 4294967295");
    build_one_tensor(&b, "w", 2, (uint64_t[]){33, 2}, GGML_TYPE_Q8_0, 0, 128);
    expect_error(&b, "tensor 'w' of type q8_0 has row length 33, not a multiple of 32");
    build_one_tensor(&b, "w", 1, (uint64_t[]){128}, GGML_TYPE_Q4_K, 0, 256);
    expect_error(&b, "tensor 'w' of type q4_k has row length 128, not a multiple of 256");
    build_one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 16, 64);
    expect_error(&b, "tensor 'w' offset 16 is not a multiple of the alignment 32");

    /* data past the end: by one byte, by a huge offset, by a huge size */
    build_one_tensor(&b, "blk.0.ffn_up.weight", 2, (uint64_t[]){8, 2}, GGML_TYPE_F32, 0, 63);
    expect_error2(&b, "extends past end of file", "blk.0.ffn_up.weight");
    build_one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, (uint64_t)1 << 63, 64);
    expect_error2(&b, "extends past end of file", "'w'");
    build_one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, UINT64_MAX - 31, 64);
    expect_error2(&b, "extends past end of file", "'w'");
    build_one_tensor(&b, "w", 2, (uint64_t[]){1 << 20, 1 << 20}, GGML_TYPE_F32, 0, 64);
    expect_error2(&b, "extends past end of file", "'w'");
    build_one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 32, 63);
    expect_error(&b, "tensor 'w' extends past end of file (data 32+32, file has 63)");
    /* no data section at all: the header ends unaligned at the end of the file */
    put_header(&b, 3, 1, 0), put_tensor_info(&b, "w", 1, (uint64_t[]){1}, GGML_TYPE_F32, 0);
    expect_error(&b, "truncated file: tensor data section would start at");

    /* names */
    char name[80];
    memset(name, 'n', 65);
    name[65] = 0;
    build_one_tensor(&b, name, 1, (uint64_t[]){8}, GGML_TYPE_F32, 0, 64);
    expect_error(&b, "tensor 0 has a name of 65 bytes (at most 64 allowed)");
    put_header(&b, 3, 1, 0), put_u64(&b, 3), put(&b, "a\0b", 3);
    put_u32(&b, 1), put_u64(&b, 8), put_u32(&b, GGML_TYPE_F32), put_u64(&b, 0);
    pad_to(&b, 32), put_zeros(&b, 32);
    expect_error(&b, "tensor 0 has a NUL byte in its name");
    put_header(&b, 3, 1, 0), put_u64(&b, UINT64_MAX - 3), put_zeros(&b, 40);
    expect_error(&b, "name of tensor 0 at offset 24 has length 18446744073709551612, past end");
    put_header(&b, 3, 1, 0), put_str(&b, "a-name-of-thirty-two-bytes-long!"), put_u32(&b, 2);
    put_u64(&b, 8), put_u32(&b, 0);
    expect_error(&b, "truncated file: tensor dimension at offset 76 needs 8 bytes, only 4 left");

    put_header(&b, 3, 3, 0);
    put_tensor_info(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 0);
    put_tensor_info(&b, "v", 1, (uint64_t[]){8}, GGML_TYPE_F32, 32);
    put_tensor_info(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 64);
    pad_to(&b, 32), put_zeros(&b, 96);
    expect_error(&b, "duplicate tensor name 'w'");
    /* tensors may share data (the reader does not forbid overlap) */
    put_header(&b, 3, 2, 0);
    put_tensor_info(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 0);
    put_tensor_info(&b, "v", 1, (uint64_t[]){8}, GGML_TYPE_F32, 0);
    pad_to(&b, 32), put_zeros(&b, 32);
    expect_ok(&b);
}

/* Counts are ints: a file big enough to "hold" more than INT_MAX entries must still be refused
 * rather than have its count wrap negative. The file is an untouched anonymous mapping (zeros,
 * never backed by memory). */
static void test_counts_past_int_max(void **state) {
    (void)state;
    static const struct {
        uint64_t n_tensors, n_kv, size;
        const char *want;
    } cases[] = {
        {0, (uint64_t)INT_MAX + 2, 24 + 13 * ((uint64_t)INT_MAX + 3), "metadata count 2147483649"},
        {(uint64_t)INT_MAX + 2, 0, 24 + 32 * ((uint64_t)INT_MAX + 3), "tensor count 2147483649"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *p = mmap(NULL, cases[i].size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            print_message("skipped: cannot map %llu bytes: %s\n", (unsigned long long)cases[i].size,
                          strerror(errno));
            continue;
        }
        memcpy(p, "GGUF", 4);
        uint32_t version = 3;
        memcpy(p + 4, &version, 4);
        memcpy(p + 8, &cases[i].n_tensors, 8);
        memcpy(p + 16, &cases[i].n_kv, 8);
        gguf *f = (gguf *)1;
        char err[256] = "";
        int rc = gguf_open_memory(p, cases[i].size, &f, err, sizeof err);
        munmap(p, cases[i].size);
        if (rc != -1 || f || !strstr(err, cases[i].want))
            fail_msg("rc %d error '%s', wanted '%s'", rc, err, cases[i].want);
    }
}

/* Duplicate checks must not be quadratic: 100k keys and 60k tensors parse in about 50 ms (the
 * pairwise check took 28 s; the bound leaves room for valgrind), and a duplicate pair far apart
 * is still found. */
static void test_many_entries_parse_fast(void **state) {
    (void)state;
    enum { N_KV = 100000, N_T = 60000 };
    for (int dup = 0; dup < 3; dup++) {
        buf b = {0};
        put_header(&b, 3, N_T, N_KV);
        char name[32];
        for (int i = 0; i < N_KV; i++) {
            snprintf(name, sizeof name, "k%d", dup == 1 && i == N_KV - 1 ? 0 : i);
            put_key(&b, name, GGUF_VT_UINT8), put_u8(&b, 1);
        }
        for (int i = 0; i < N_T; i++) {
            snprintf(name, sizeof name, "t%d", dup == 2 && i == N_T - 1 ? 0 : i);
            put_tensor_info(&b, name, 1, (uint64_t[]){8}, GGML_TYPE_F32, 0);
        }
        pad_to(&b, 32), put_zeros(&b, 32);
        gguf *f = NULL;
        char err[256] = "";
        double t0 = (double)clock() / CLOCKS_PER_SEC;
        int rc = gguf_open_memory(b.p, b.len, &f, err, sizeof err);
        double elapsed = (double)clock() / CLOCKS_PER_SEC - t0;
        if (elapsed > 5.0) fail_msg("parse took %.2f s", elapsed);
        if (dup == 0) {
            if (rc != 0) fail_msg("rejected: %s", err);
            assert_int_equal(gguf_n_kv(f), N_KV);
            assert_int_equal(gguf_n_tensors(f), N_T);
            assert_int_equal(gguf_find_key(f, "k99999"), N_KV - 1);
            assert_non_null(gguf_find_tensor(f, "t59999"));
            gguf_close(f);
        } else {
            assert_int_equal(rc, -1);
            assert_string_equal(err, dup == 1 ? "duplicate metadata key 'k0'"
                                              : "duplicate tensor name 't0'");
        }
        free(b.p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_header),
        cmocka_unit_test(test_stories_tensors),
        cmocka_unit_test(test_tiny_random),
        cmocka_unit_test(test_vocab_files),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_type_tables),
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_writer_copies_models),
        cmocka_unit_test(test_corrupt_header),
        cmocka_unit_test(test_corrupt_metadata),
        cmocka_unit_test(test_corrupt_alignment),
        cmocka_unit_test(test_corrupt_tensors),
        cmocka_unit_test(test_counts_past_int_max),
        cmocka_unit_test(test_many_entries_parse_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
