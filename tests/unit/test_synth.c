/* test_synth.c — synthetic GGUF files: keys, shapes, value scales, vocabularies, validation,
 * determinism, and that the engine runs them to finite, prompt-dependent output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/synth.h"
#include "test_util.h"

static char tmp_dir[256];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmp_dir, sizeof tmp_dir, "%s/test_synth.XXXXXX", base);
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    char *out = buf[slot++ % 4];
    snprintf(out, sizeof buf[0], "%s/%s", tmp_dir, name);
    return out;
}

static gguf *write_and_open(const synth_params *p) {
    char err[512] = "";
    int rc = synth_write(p, err, sizeof err);
    if (rc != 0) fail_msg("synth_write: %s", err);
    gguf *f = NULL;
    if (gguf_open(p->path, &f, err, sizeof err) < 0) fail_msg("gguf_open: %s", err);
    return f;
}

static uint32_t get_u32(const gguf *f, const char *key) {
    uint32_t v = 0;
    if (gguf_get_u32(f, key, &v) != 0) fail_msg("missing u32 key %s", key);
    return v;
}

static void assert_str_key(const gguf *f, const char *key, const char *want) {
    gguf_str s;
    if (gguf_get_str(f, key, &s) != 0) fail_msg("missing string key %s", key);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

/* The tensor `name` exists with this type and shape (ne1 = 0: a vector). */
static const gguf_tensor *expect_tensor(const gguf *f, const char *name, uint32_t type,
                                        uint64_t ne0, uint64_t ne1) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) fail_msg("missing tensor %s", name);
    assert_int_equal(t->type, type);
    assert_int_equal(t->n_dims, ne1 ? 2 : 1);
    assert_int_equal(t->ne[0], ne0);
    if (ne1) assert_int_equal(t->ne[1], ne1);
    return t;
}

/* Mean and std of rows [row0, row1) of a 2-D F32/F16 tensor; every value must be finite. */
static void tensor_stats(const gguf_tensor *t, uint64_t row0, uint64_t row1, double *mean,
                         double *std) {
    uint64_t ne0 = t->ne[0];
    double sum = 0, sum2 = 0;
    for (uint64_t r = row0; r < row1; r++)
        for (uint64_t i = 0; i < ne0; i++) {
            uint64_t k = r * ne0 + i;
            float v = t->type == GGML_TYPE_F32 ? ((const float *)t->data)[k]
                                               : fp16_to_fp32(((const uint16_t *)t->data)[k]);
            if (!isfinite(v)) fail_msg("%s[%llu] is not finite", t->name, (unsigned long long)k);
            sum += v;
            sum2 += (double)v * v;
        }
    double n = (double)(ne0 * (row1 - row0));
    *mean = sum / n;
    *std = sqrt(sum2 / n - *mean * *mean);
}

/* A matrix with values ~ N(0, want_std): mean near 0, std within 10 %. */
static void expect_scale(const gguf_tensor *t, uint64_t row0, uint64_t row1, double want_std) {
    double mean, std;
    tensor_stats(t, row0, row1, &mean, &std);
    if (fabs(std - want_std) > 0.1 * want_std || fabs(mean) > 0.1 * want_std)
        fail_msg("%s rows %llu..%llu: mean %g std %g, want std %g", t->name,
                 (unsigned long long)row0, (unsigned long long)row1, mean, std, want_std);
}

/* A norm vector: every value within 0.15 of 1. */
static void expect_norm(const gguf_tensor *t) {
    const float *v = t->data;
    for (uint64_t i = 0; i < t->ne[0]; i++)
        if (!(fabsf(v[i] - 1.0f) < 0.15f))
            fail_msg("%s[%llu] = %g", t->name, (unsigned long long)i, v[i]);
}

/* The first token ids of the built-in vocabulary: the normal pieces start after these. */
#define BUILTIN_FIRST_NORMAL 259

static void test_default_model(void **state) {
    (void)state;
    synth_params p;
    synth_params_default(&p);
    p.path = tmp_path("default.gguf");
    gguf *f = write_and_open(&p);

    assert_int_equal(gguf_version(f), 3);
    assert_str_key(f, "general.architecture", "llama");
    assert_str_key(f, "general.name", "synth");
    assert_int_equal(get_u32(f, "general.file_type"), 0);
    assert_int_equal(get_u32(f, "llama.embedding_length"), 64);
    assert_int_equal(get_u32(f, "llama.block_count"), 2);
    assert_int_equal(get_u32(f, "llama.attention.head_count"), 4);
    assert_int_equal(get_u32(f, "llama.attention.head_count_kv"), 4);
    assert_int_equal(get_u32(f, "llama.feed_forward_length"), 192);
    assert_int_equal(get_u32(f, "llama.rope.dimension_count"), 16);
    assert_int_equal(get_u32(f, "llama.context_length"), 2048);
    float eps = 0, base = 0;
    assert_int_equal(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    assert_int_equal(gguf_get_f32(f, "llama.rope.freq_base", &base), 0);
    assert_true(fabsf(eps - 1e-5f) < 1e-9f);
    assert_true(base == 10000.0f);

    /* The built-in vocabulary. */
    int n_vocab = synth_builtin_vocab_size();
    assert_true(n_vocab > BUILTIN_FIRST_NORMAL + 300);
    assert_int_equal(get_u32(f, "llama.vocab_size"), (uint32_t)n_vocab);
    assert_str_key(f, "tokenizer.ggml.model", "llama");
    const gguf_kv *tokens, *scores, *types;
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &tokens), 0);
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &scores), 0);
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VT_INT32, &types), 0);
    assert_int_equal(tokens->arr_n, (uint64_t)n_vocab);
    assert_int_equal(scores->arr_n, (uint64_t)n_vocab);
    assert_int_equal(types->arr_n, (uint64_t)n_vocab);
    gguf_str *pieces = calloc((size_t)n_vocab, sizeof *pieces);
    assert_int_equal(gguf_arr_strings(tokens, pieces), 0);
    assert_true(pieces[0].len == 5 && memcmp(pieces[0].ptr, "<unk>", 5) == 0);
    assert_true(pieces[1].len == 3 && memcmp(pieces[1].ptr, "<s>", 3) == 0);
    assert_true(pieces[2].len == 4 && memcmp(pieces[2].ptr, "</s>", 4) == 0);
    assert_true(pieces[3].len == 6 && memcmp(pieces[3].ptr, "<0x00>", 6) == 0);
    assert_true(pieces[258].len == 6 && memcmp(pieces[258].ptr, "<0xFF>", 6) == 0);
    assert_int_equal((int)gguf_arr_num(types, 0), 2);
    assert_int_equal((int)gguf_arr_num(types, 1), 3);
    assert_int_equal((int)gguf_arr_num(types, 3), 6);
    int found_the = 0;
    for (int i = BUILTIN_FIRST_NORMAL; i < n_vocab; i++) {
        assert_int_equal((int)gguf_arr_num(types, (uint64_t)i), 1);
        if (i > BUILTIN_FIRST_NORMAL) /* decreasing scores */
            assert_true(gguf_arr_num(scores, (uint64_t)i) < gguf_arr_num(scores, (uint64_t)i - 1));
        for (int j = BUILTIN_FIRST_NORMAL; j < i; j++) /* no duplicates */
            assert_false(pieces[i].len == pieces[j].len &&
                         memcmp(pieces[i].ptr, pieces[j].ptr, pieces[i].len) == 0);
        found_the |= pieces[i].len == 6 && memcmp(pieces[i].ptr, "\xe2\x96\x81the", 6) == 0;
    }
    assert_true(found_the);
    free(pieces);
    assert_int_equal(get_u32(f, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(get_u32(f, "tokenizer.ggml.eos_token_id"), 2);

    /* Tensors: names, shapes, types, scales. */
    assert_int_equal(gguf_n_tensors(f), 3 + 9 * 2);
    const double s_dim = 1.0 / sqrt(64.0), s_ff = 1.0 / sqrt(192.0);
    const gguf_tensor *embd =
        expect_tensor(f, "token_embd.weight", GGML_TYPE_F32, 64, (uint64_t)n_vocab);
    const gguf_tensor *out =
        expect_tensor(f, "output.weight", GGML_TYPE_F32, 64, (uint64_t)n_vocab);
    expect_scale(embd, 0, (uint64_t)n_vocab, s_dim);
    expect_scale(out, BUILTIN_FIRST_NORMAL, (uint64_t)n_vocab, s_dim);
    expect_scale(out, 3, BUILTIN_FIRST_NORMAL, s_dim * 0.25); /* byte tokens: rarely the argmax */
    expect_norm(expect_tensor(f, "output_norm.weight", GGML_TYPE_F32, 64, 0));
    for (int l = 0; l < 2; l++) {
        char name[64];
#define T(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
        expect_norm(expect_tensor(f, T("attn_norm.weight"), GGML_TYPE_F32, 64, 0));
        expect_norm(expect_tensor(f, T("ffn_norm.weight"), GGML_TYPE_F32, 64, 0));
        expect_scale(expect_tensor(f, T("attn_q.weight"), GGML_TYPE_F32, 64, 64), 0, 64, s_dim);
        expect_scale(expect_tensor(f, T("attn_k.weight"), GGML_TYPE_F32, 64, 64), 0, 64, s_dim);
        expect_scale(expect_tensor(f, T("attn_v.weight"), GGML_TYPE_F32, 64, 64), 0, 64, s_dim);
        expect_scale(expect_tensor(f, T("attn_output.weight"), GGML_TYPE_F32, 64, 64), 0, 64,
                     s_dim);
        expect_scale(expect_tensor(f, T("ffn_gate.weight"), GGML_TYPE_F32, 64, 192), 0, 192, s_dim);
        expect_scale(expect_tensor(f, T("ffn_up.weight"), GGML_TYPE_F32, 64, 192), 0, 192, s_dim);
        expect_scale(expect_tensor(f, T("ffn_down.weight"), GGML_TYPE_F32, 192, 64), 0, 64, s_ff);
#undef T
    }
    gguf_close(f);
}

static void test_gqa_f16_tied(void **state) {
    (void)state;
    synth_params p;
    synth_params_default(&p);
    p.path = tmp_path("gqa.gguf");
    p.n_embd = 96;
    p.n_layer = 3;
    p.n_head = 6;
    p.n_head_kv = 2;
    p.n_ff = 160;
    p.n_ctx = 512;
    p.type = GGML_TYPE_F16;
    p.tied = 1;
    p.name = "gqa test";
    p.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}";
    gguf *f = write_and_open(&p);
    assert_str_key(f, "general.name", "gqa test");
    assert_str_key(f, "tokenizer.chat_template", p.chat_template);
    assert_int_equal(get_u32(f, "general.file_type"), 1);
    assert_int_equal(get_u32(f, "llama.attention.head_count_kv"), 2);
    assert_int_equal(get_u32(f, "llama.rope.dimension_count"), 16);
    assert_int_equal(get_u32(f, "llama.context_length"), 512);
    assert_int_equal(gguf_n_tensors(f), 2 + 9 * 3);
    assert_null(gguf_find_tensor(f, "output.weight"));
    uint64_t n_vocab = (uint64_t)synth_builtin_vocab_size();
    const gguf_tensor *embd = expect_tensor(f, "token_embd.weight", GGML_TYPE_F16, 96, n_vocab);
    expect_scale(embd, BUILTIN_FIRST_NORMAL, n_vocab, 0.5 / sqrt(96.0)); /* tied: half scale */
    expect_norm(expect_tensor(f, "output_norm.weight", GGML_TYPE_F32, 96, 0));
    const double s_dim = 1.0 / sqrt(96.0);
    expect_scale(expect_tensor(f, "blk.2.attn_q.weight", GGML_TYPE_F16, 96, 96), 0, 96, s_dim);
    expect_scale(expect_tensor(f, "blk.2.attn_k.weight", GGML_TYPE_F16, 96, 32), 0, 32, s_dim);
    expect_scale(expect_tensor(f, "blk.2.attn_v.weight", GGML_TYPE_F16, 96, 32), 0, 32, s_dim);
    expect_scale(expect_tensor(f, "blk.1.ffn_up.weight", GGML_TYPE_F16, 96, 160), 0, 160, s_dim);
    expect_scale(expect_tensor(f, "blk.0.ffn_down.weight", GGML_TYPE_F16, 160, 96), 0, 96,
                 1.0 / sqrt(160.0));
    expect_norm(expect_tensor(f, "blk.2.ffn_norm.weight", GGML_TYPE_F32, 96, 0));
    gguf_close(f);
}

/* Bytes of a key's value (strings and arrays walked). */
static size_t value_bytes(uint32_t type, uint32_t arr_type, uint64_t arr_n, const uint8_t *val) {
    static const size_t scalar[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == GGUF_VT_STRING) {
        uint64_t len;
        memcpy(&len, val, 8);
        return 8 + (size_t)len;
    }
    if (type != GGUF_VT_ARRAY) return scalar[type];
    if (arr_type != GGUF_VT_STRING) return (size_t)arr_n * scalar[arr_type];
    size_t n = 0;
    for (uint64_t i = 0; i < arr_n; i++) n += value_bytes(GGUF_VT_STRING, 0, 0, val + n);
    return n;
}

/* Every tokenizer.* key of `src` is in `dst` with the same type and value bytes. */
static void expect_same_tokenizer(const gguf *src, const gguf *dst) {
    int n = 0;
    for (int i = 0; i < gguf_n_kv(src); i++) {
        const gguf_kv *a = gguf_kv_at(src, i);
        if (a->key.len < 10 || memcmp(a->key.ptr, "tokenizer.", 10) != 0) continue;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)a->key.len, a->key.ptr);
        int j = gguf_find_key(dst, key);
        if (j < 0) fail_msg("%s was not copied", key);
        const gguf_kv *b = gguf_kv_at(dst, j);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->arr_type, b->arr_type);
        assert_int_equal(a->arr_n, b->arr_n);
        size_t len = value_bytes(a->type, a->arr_type, a->arr_n, a->val);
        assert_int_equal(len, value_bytes(b->type, b->arr_type, b->arr_n, b->val));
        assert_memory_equal(a->val, b->val, len);
        n++;
    }
    assert_true(n >= 5);
}

static void test_vocab_from(void **state) {
    (void)state;
    const char *src_path = test_model_path("stories260K.gguf");
    gguf *src;
    char err[512];
    if (gguf_open(src_path, &src, err, sizeof err) < 0) fail_msg("%s: %s", src_path, err);
    synth_params p;
    synth_params_default(&p);
    p.path = tmp_path("vocab.gguf");
    p.vocab_from = src_path;
    gguf *f = write_and_open(&p);
    expect_same_tokenizer(src, f);
    const gguf_kv *tokens;
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &tokens), 0);
    assert_int_equal(tokens->arr_n, 512);
    assert_int_equal(get_u32(f, "llama.vocab_size"), 512);
    expect_tensor(f, "token_embd.weight", GGML_TYPE_F32, 64, 512);
    expect_tensor(f, "output.weight", GGML_TYPE_F32, 64, 512);
    gguf_close(f);

    /* The 32000-token Llama 2 vocabulary (F16 model) and a chat template that overrides none. */
    const char *llama2 = test_model_path("llama-2-tiny-random.gguf");
    p.path = tmp_path("vocab32k.gguf");
    p.vocab_from = llama2;
    p.type = GGML_TYPE_F16;
    p.chat_template = "{{ messages }}";
    f = write_and_open(&p);
    assert_int_equal(get_u32(f, "llama.vocab_size"), 32000);
    expect_tensor(f, "output.weight", GGML_TYPE_F16, 64, 32000);
    assert_str_key(f, "tokenizer.chat_template", "{{ messages }}");
    gguf_close(f);
    gguf_close(src);
}

static void expect_invalid(synth_params *p, const char *needle) {
    char err[512] = "";
    p->path = tmp_path("invalid.gguf");
    unlink(p->path);
    int rc = synth_write(p, err, sizeof err);
    if (rc != -2) fail_msg("want -2 for '%s', got %d (%s)", needle, rc, err);
    if (!strstr(err, needle)) fail_msg("message '%s' lacks '%s'", err, needle);
    struct stat st;
    assert_int_not_equal(stat(p->path, &st), 0); /* nothing written */
}

static void test_invalid(void **state) {
    (void)state;
    synth_params p;
#define RESET() synth_params_default(&p)
    RESET(), p.n_embd = 100, p.n_head = 3, expect_invalid(&p, "not divisible by --heads");
    RESET(), p.n_head_kv = 3, expect_invalid(&p, "not divisible by --kv-heads");
    RESET(), p.n_embd = 12, p.n_head = 4, expect_invalid(&p, "must be even");
    RESET(), p.n_head = 128, expect_invalid(&p, "--heads");
    RESET(), p.n_layer = 0, expect_invalid(&p, "--layers");
    RESET(), p.n_embd = -4, expect_invalid(&p, "--dim");
    RESET(), p.n_ctx = 0, expect_invalid(&p, "--ctx");
    RESET(), p.type = GGML_TYPE_Q4_K, expect_invalid(&p, "--type");
    RESET(), p.rms_eps = 0, expect_invalid(&p, "--rms-eps");
    RESET(), p.name = "", expect_invalid(&p, "--name");
    RESET(), p.vocab_from = tmp_path("no-such-file.gguf"), expect_invalid(&p, "--vocab-from");
    RESET(), p.vocab_from = test_model_path("stories260K.gguf.inp"),
             expect_invalid(&p, "--vocab-from");
#undef RESET
    char err[256];
    synth_params_default(&p);
    assert_int_equal(synth_validate(&p, err, sizeof err), -1); /* no path */
    assert_non_null(strstr(err, "-o FILE"));
}

static void test_deterministic(void **state) {
    (void)state;
    synth_params p;
    synth_params_default(&p);
    p.path = tmp_path("seed-a.gguf");
    p.seed = 7;
    char err[512];
    assert_int_equal(synth_write(&p, err, sizeof err), 0);
    p.path = tmp_path("seed-b.gguf");
    assert_int_equal(synth_write(&p, err, sizeof err), 0);
    p.path = tmp_path("seed-c.gguf");
    p.seed = 8;
    assert_int_equal(synth_write(&p, err, sizeof err), 0);
    size_t la, lb, lc;
    char *a = test_read_file(tmp_path("seed-a.gguf"), &la);
    char *b = test_read_file(tmp_path("seed-b.gguf"), &lb);
    char *c = test_read_file(tmp_path("seed-c.gguf"), &lc);
    assert_non_null(a), assert_non_null(b), assert_non_null(c);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    assert_int_equal(la, lc);
    assert_memory_not_equal(a, c, la);
    free(a), free(b), free(c);
}

/* Greedy continuation of `prompt` (n tokens) for `steps` tokens; logits must stay finite. */
static void greedy(model_ctx *c, int n_vocab, const int32_t *prompt, int n, int steps,
                   int32_t *out) {
    model_ctx_rewind(c, 0, 0);
    assert_int_equal(model_ctx_eval(c, 0, prompt, n), 0);
    for (int s = 0; s < steps; s++) {
        const float *logits = model_ctx_logits(c, 0);
        int best = 0;
        float lo = logits[0], hi = logits[0];
        for (int i = 0; i < n_vocab; i++) {
            if (!isfinite(logits[i])) fail_msg("logit %d is not finite at step %d", i, s);
            if (logits[i] > logits[best]) best = i;
            lo = fminf(lo, logits[i]), hi = fmaxf(hi, logits[i]);
        }
        assert_true(hi - lo > 1.0f); /* not flat */
        out[s] = best;
        assert_int_equal(model_ctx_eval(c, 0, &out[s], 1), 0);
    }
}

static int distinct(const int32_t *ids, int n) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= ids[j] == ids[i];
        count += !seen;
    }
    return count;
}

/* The engine runs synthetic models of several shapes to finite, prompt-dependent output. */
static void test_engine_runs_synth(void **state) {
    (void)state;
    struct {
        int dim, layers, heads, kv, type, tied;
    } shapes[] = {
        {64, 2, 4, 0, GGML_TYPE_F32, 0},
        {96, 6, 6, 2, GGML_TYPE_F16, 1},
        {128, 12, 8, 4, GGML_TYPE_F16, 0},
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        synth_params p;
        synth_params_default(&p);
        p.path = tmp_path("engine.gguf");
        p.n_embd = shapes[k].dim, p.n_layer = shapes[k].layers, p.n_head = shapes[k].heads;
        p.n_head_kv = shapes[k].kv, p.type = shapes[k].type, p.tied = shapes[k].tied;
        char err[512];
        assert_int_equal(synth_write(&p, err, sizeof err), 0);
        model *m;
        if (model_load(p.path, &m, err, sizeof err) < 0) fail_msg("model_load: %s", err);
        threadpool *tp = threadpool_new(2);
        model_ctx *c = model_ctx_new(m, &(model_ctx_params){.n_ctx = 256, .kv_type = MODEL_KV_F32},
                                     tp, err, sizeof err);
        assert_non_null(c);
        int n_vocab = model_get_hparams(m)->n_vocab;
        const int32_t prompt_a[] = {1, 400, 500, 600, 700}, prompt_b[] = {1, 900, 800, 300};
        int32_t out_a[32], out_b[32];
        greedy(c, n_vocab, prompt_a, 5, 32, out_a);
        greedy(c, n_vocab, prompt_b, 4, 32, out_b);
        int da = distinct(out_a, 32), db = distinct(out_b, 32);
        if (da < 3 || db < 3 || memcmp(out_a, out_b, sizeof out_a) == 0)
            fail_msg("shape %zu degenerate: %d and %d distinct tokens", k, da, db);
        model_ctx_free(c);
        threadpool_free(tp);
        model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_model), cmocka_unit_test(test_gqa_f16_tied),
        cmocka_unit_test(test_vocab_from),    cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_deterministic), cmocka_unit_test(test_engine_runs_synth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
