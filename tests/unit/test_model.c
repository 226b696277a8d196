/* test_model.c — the forward pass against reference outputs of llama.cpp and llama2.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/synth.h"
#include "test_util.h"

/* Parse "prompt_ids: ..." and "generated_ids: ..." lines of a reference .ids file. */
static void read_ids(const char *name, int32_t *prompt, int *n_prompt, int32_t *gen, int *n_gen) {
    char *text = test_read_file(test_model_path(name), NULL);
    assert_non_null(text);
    *n_prompt = *n_gen = 0;
    char *line = strtok(text, "\n");
    while (line) {
        int32_t *dst = NULL;
        int *n = NULL;
        if (strncmp(line, "prompt_ids:", 11) == 0)
            dst = prompt, n = n_prompt, line += 11;
        else if (strncmp(line, "generated_ids:", 14) == 0)
            dst = gen, n = n_gen, line += 14;
        if (dst) {
            char *end;
            for (long v = strtol(line, &end, 10); end != line; v = strtol(line, &end, 10)) {
                dst[(*n)++] = (int32_t)v;
                line = end;
            }
        }
        line = strtok(NULL, "\n");
    }
    free(text);
}

/* A one-sequence context. */
static model_ctx *test_ctx(model *m, int n_ctx, threadpool *tp, int kv_type) {
    char err[256];
    model_ctx *c = model_ctx_new(m, &(model_ctx_params){.n_ctx = n_ctx, .kv_type = kv_type}, tp,
                                 err, sizeof err);
    if (!c) fail_msg("model_ctx_new: %s", err);
    return c;
}

/* Greedy generation from the prompt; returns the number of generated tokens. */
static int greedy(model *m, threadpool *tp, int kv_type, const int32_t *prompt, int n_prompt,
                  int n_gen, int32_t *out) {
    model_ctx *c = test_ctx(m, 512, tp, kv_type);
    assert_non_null(c);
    assert_int_equal(model_ctx_eval(c, 0, prompt, n_prompt), 0);
    int n = 0;
    while (n < n_gen) {
        int32_t t = sampler_argmax(model_ctx_logits(c, 0), model_get_hparams(m)->n_vocab);
        out[n++] = t;
        if (n < n_gen) assert_int_equal(model_ctx_eval(c, 0, &t, 1), 0);
    }
    model_ctx_free(c);
    return n;
}

static void check_reference_kv(const char *model_name, const char *ids_name, int force_ref,
                               int threads, int kv_type) {
    kernels_init(force_ref);
    int32_t prompt[64], want[512], got[512];
    int n_prompt, n_want;
    read_ids(ids_name, prompt, &n_prompt, want, &n_want);
    assert_true(n_prompt > 0 && n_want > 0);
    model *m;
    char err[256];
    int rc = model_load(test_model_path(model_name), &m, err, sizeof err);
    if (rc < 0) fail_msg("%s: %s", model_name, err);
    threadpool *tp = threadpool_new(threads);
    greedy(m, tp, kv_type, prompt, n_prompt, n_want, got);
    for (int i = 0; i < n_want; i++)
        if (got[i] != want[i])
            fail_msg("%s (%s kernels, %d threads, %s KV): token %d is %d, reference %d", ids_name,
                     force_ref ? "scalar" : "simd", threads, model_kv_type_name(kv_type), i, got[i],
                     want[i]);
    threadpool_free(tp);
    model_free(m);
    kernels_init(0);
}

/* Greedy ids equal the reference with either KV cache type. */
static void check_reference(const char *model_name, const char *ids_name, int force_ref,
                            int threads) {
    check_reference_kv(model_name, ids_name, force_ref, threads, MODEL_KV_F32);
    check_reference_kv(model_name, ids_name, force_ref, threads, MODEL_KV_F16);
}

static void test_stories_once_upon(void **state) {
    (void)state;
    check_reference("stories260K.gguf", "reference/stories260K.once-upon-a-time.steps64.ids", 0, 1);
    check_reference("stories260K.gguf", "reference/stories260K.once-upon-a-time.steps64.ids", 0, 2);
    check_reference("stories260K.gguf", "reference/stories260K.once-upon-a-time.steps64.ids", 1, 2);
}

static void test_stories_bos_only(void **state) {
    (void)state;
    check_reference("stories260K.gguf", "reference/stories260K.bos-only.steps256.ids", 0, 2);
}

static void test_tiny_random_f16(void **state) {
    (void)state;
    check_reference("llama-2-tiny-random.gguf",
                    "reference/llama-2-tiny-random.once-upon-a-time.steps32.ids", 0, 2);
    check_reference("llama-2-tiny-random.gguf",
                    "reference/llama-2-tiny-random.once-upon-a-time.steps32.ids", 1, 1);
}

/* Logits after each of positions 0..7 agree with run.c's within 1e-3 absolute. */
static void test_stories_logits(void **state) {
    (void)state;
    char *text = test_read_file(
        test_model_path("reference/stories260K.once-upon-a-time.logits-pos0-7.txt"), NULL);
    assert_non_null(text);
    model *m;
    char err[256];
    assert_int_equal(model_load(test_model_path("stories260K.gguf"), &m, err, sizeof err), 0);
    threadpool *tp = threadpool_new(2);
    model_ctx *c = test_ctx(m, 64, tp, MODEL_KV_F32);
    assert_non_null(c);
    int n_vocab = model_get_hparams(m)->n_vocab;
    assert_int_equal(n_vocab, 512);
    char *p = text;
    int lines = 0;
    double worst = 0;
    for (int pos = 0; pos < 8; pos++) {
        int fpos, tok, used;
        assert_int_equal(sscanf(p, "pos %d token %d:%n", &fpos, &tok, &used), 2);
        assert_int_equal(fpos, pos);
        p += used;
        assert_int_equal(model_ctx_eval(c, 0, &(int32_t){tok}, 1), 0);
        const float *logits = model_ctx_logits(c, 0);
        for (int i = 0; i < n_vocab; i++) {
            char *end;
            double want = strtod(p, &end);
            assert_true(end != p);
            p = end;
            double diff = fabs(want - logits[i]);
            if (diff > worst) worst = diff;
            if (diff > 1e-3) fail_msg("pos %d logit %d: %g, reference %g", pos, i, logits[i], want);
        }
        lines++;
        p = strchr(p, '\n');
        if (p)
            p++;
        else
            break;
    }
    assert_int_equal(lines, 8);
    printf("stories260K logits pos 0..7: worst abs diff %.3g\n", worst);
    model_ctx_free(c);
    threadpool_free(tp);
    model_free(m);
    free(text);
}

/* Prefill in one batch equals token-by-token evaluation, and rewind replays exactly. */
static void test_batch_equals_sequential(void **state) {
    (void)state;
    model *m;
    char err[256];
    assert_int_equal(model_load(test_model_path("stories260K.gguf"), &m, err, sizeof err), 0);
    threadpool *tp = threadpool_new(2);
    model_ctx *a = test_ctx(m, 256, tp, MODEL_KV_F32);
    model_ctx *b = test_ctx(m, 256, tp, MODEL_KV_F32);
    int32_t toks[150];
    for (int i = 0; i < 150; i++) toks[i] = (int32_t)((i * 37 + 11) % 512);
    assert_int_equal(model_ctx_eval(a, 0, toks, 150), 0); /* spans three batches */
    for (int i = 0; i < 150; i++) assert_int_equal(model_ctx_eval(b, 0, &toks[i], 1), 0);
    for (int i = 0; i < 512; i++)
        assert_float_equal(model_ctx_logits(a, 0)[i], model_ctx_logits(b, 0)[i], 1e-4);
    float first[512];
    memcpy(first, model_ctx_logits(a, 0), sizeof first);
    model_ctx_rewind(a, 0, 100);
    assert_int_equal(model_ctx_n_past(a, 0), 100);
    assert_int_equal(model_ctx_eval(a, 0, toks + 100, 50), 0);
    for (int i = 0; i < 512; i++) assert_float_equal(model_ctx_logits(a, 0)[i], first[i], 1e-5);
    model_ctx_free(a);
    model_ctx_free(b);
    threadpool_free(tp);
    model_free(m);
}

static void test_eval_errors(void **state) {
    (void)state;
    model *m;
    char err[256];
    assert_int_equal(model_load(test_model_path("stories260K.gguf"), &m, err, sizeof err), 0);
    model_ctx *c = test_ctx(m, 8, NULL, MODEL_KV_F32);
    assert_non_null(c);
    int32_t toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_int_equal(model_ctx_eval(c, 0, toks, 9), -1); /* longer than the context */
    assert_int_equal(model_ctx_n_past(c, 0), 0);
    assert_int_equal(model_ctx_eval(c, 0, (int32_t[]){512}, 1), -1); /* id out of range */
    assert_int_equal(model_ctx_eval(c, 0, (int32_t[]){-1}, 1), -1);
    assert_int_equal(model_ctx_eval(c, 0, toks, 8), 0);
    assert_int_equal(model_ctx_eval(c, 0, toks, 1), -1); /* full */
    volatile int stop = 1;
    model_ctx_rewind(c, 0, 0);
    model_ctx_set_abort(c, &stop);
    assert_int_equal(model_ctx_eval(c, 0, toks, 4), -2);
    model_ctx_set_abort(c, NULL);
    model_ctx_free(c);
    model_free(m);
}

static void test_embeddings(void **state) {
    (void)state;
    model *m;
    char err[256];
    assert_int_equal(model_load(test_model_path("stories260K.gguf"), &m, err, sizeof err), 0);
    model_ctx *c = test_ctx(m, 128, NULL, MODEL_KV_F32);
    float e1[64], e2[64], e3[64];
    int32_t a[] = {1, 403, 407, 261, 378}, b[] = {1, 403, 407, 261, 378}, d[] = {1, 300, 301};
    assert_int_equal(model_ctx_embed(c, 0, a, 5, e1), 0);
    assert_int_equal(model_ctx_embed(c, 0, b, 5, e2), 0);
    assert_int_equal(model_ctx_embed(c, 0, d, 3, e3), 0);
    double n1 = 0, dot12 = 0, dot13 = 0;
    for (int i = 0; i < 64; i++) {
        n1 += e1[i] * e1[i];
        dot12 += e1[i] * e2[i];
        dot13 += e1[i] * e3[i];
    }
    assert_float_equal(n1, 1.0, 1e-4);
    assert_float_equal(dot12, 1.0, 1e-4); /* same input, same vector */
    assert_true(dot13 < 0.9999);          /* different input, different vector */
    model_ctx_free(c);
    model_free(m);
}

static void test_load_errors(void **state) {
    (void)state;
    model *m = (model *)1;
    char err[256];
    assert_int_equal(model_load("/nonexistent/x.gguf", &m, err, sizeof err), -1);
    assert_null(m);
    assert_non_null(strstr(err, "cannot open"));
    /* a vocabulary-only file has no tensors */
    assert_int_equal(model_load(test_model_path("ggml-vocab-llama-spm.gguf"), &m, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "token_embd.weight"));
    /* an architecture we do not run */
    assert_int_equal(model_load(test_model_path("ggml-vocab-falcon.gguf"), &m, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "unsupported architecture 'falcon'"));
}

/* Sliding window (Mistral style): with one layer and a window of 4, the last token's logits
 * depend only on the last 4 tokens; without the window they depend on all of them. */
static void test_sliding_window(void **state) {
    (void)state;
    char err[256];
    const char *paths[2] = {"/tmp/mh-test-swa-on.gguf", "/tmp/mh-test-swa-off.gguf"};
    float last[2][2][512];
    for (int with = 0; with < 2; with++) {
        synth_params p;
        synth_params_default(&p);
        p.path = paths[with];
        p.n_layer = 1;
        p.vocab_from = test_model_path("stories260K.gguf");
        p.sliding_window = with == 0 ? 4 : 0;
        assert_int_equal(synth_write(&p, err, sizeof err), 0);
        model *m;
        assert_int_equal(model_load(p.path, &m, err, sizeof err), 0);
        assert_int_equal(model_get_hparams(m)->sliding_window, with == 0 ? 4 : 0);
        model_ctx *c = test_ctx(m, 64, NULL, MODEL_KV_F32);
        int32_t a[10] = {1, 300, 301, 302, 303, 304, 305, 306, 307, 308};
        int32_t b[10] = {1, 400, 401, 402, 403, 404, 305, 306, 307, 308}; /* same last 4 */
        assert_int_equal(model_ctx_eval(c, 0, a, 10), 0);
        memcpy(last[with][0], model_ctx_logits(c, 0), sizeof last[0][0]);
        model_ctx_rewind(c, 0, 0);
        assert_int_equal(model_ctx_eval(c, 0, b, 10), 0);
        memcpy(last[with][1], model_ctx_logits(c, 0), sizeof last[0][0]);
        model_ctx_free(c);
        model_free(m);
        remove(p.path);
    }
    double diff_on = 0, diff_off = 0;
    for (int i = 0; i < 512; i++) {
        diff_on = fmax(diff_on, fabs(last[0][0][i] - last[0][1][i]));
        diff_off = fmax(diff_off, fabs(last[1][0][i] - last[1][1][i]));
    }
    assert_true(diff_on < 1e-5);  /* the window hides the differing tokens */
    assert_true(diff_off > 1e-3); /* without it they matter */
}

/* Qwen models rotate the two halves of each head (NeoX rope). */
static void test_qwen_rope_mode(void **state) {
    (void)state;
    char err[256];
    synth_params p;
    synth_params_default(&p);
    p.path = "/tmp/mh-test-qwen2.gguf";
    p.arch = "qwen2";
    assert_int_equal(synth_write(&p, err, sizeof err), 0);
    model *m;
    assert_int_equal(model_load(p.path, &m, err, sizeof err), 0);
    assert_int_equal(model_get_hparams(m)->rope_mode, ROPE_NEOX);
    model_free(m);
    remove(p.path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_once_upon),
        cmocka_unit_test(test_stories_bos_only),
        cmocka_unit_test(test_tiny_random_f16),
        cmocka_unit_test(test_stories_logits),
        cmocka_unit_test(test_batch_equals_sequential),
        cmocka_unit_test(test_eval_errors),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_qwen_rope_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
