/* test_sampler.c — each sampling stage, its order, and reproducibility by seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "engine/sampler.h"

static sampler_params plain(float temp, uint64_t seed) {
    sampler_params p = sampler_defaults();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

static void counts(sampler_params p, const float *logits, int n, int draws, int *out) {
    sampler *s = sampler_new(&p, n);
    assert_non_null(s);
    for (int i = 0; i < n; i++) out[i] = 0;
    for (int i = 0; i < draws; i++) {
        int32_t t = sampler_sample(s, logits, NULL, 0);
        assert_true(t >= 0 && t < n);
        out[t]++;
    }
    sampler_free(s);
}

static void test_greedy(void **state) {
    (void)state;
    float logits[5] = {0.1f, 3.0f, 2.9f, -1.0f, 3.0f};
    assert_int_equal(sampler_argmax(logits, 5), 1); /* first of the ties */
    int c[5];
    counts(plain(0, 1), logits, 5, 100, c);
    assert_int_equal(c[1], 100);
}

/* With no filters, draws follow softmax(logits / T). */
static void test_distribution(void **state) {
    (void)state;
    float logits[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    int c[3];
    counts(plain(1.0f, 7), logits, 3, 40000, c);
    assert_float_equal(c[0] / 40000.0, 0.5, 0.015);
    assert_float_equal(c[1] / 40000.0, 0.3, 0.015);
    assert_float_equal(c[2] / 40000.0, 0.2, 0.015);
    /* T = 0.5 squares the odds: 0.25 : 0.09 : 0.04 */
    counts(plain(0.5f, 7), logits, 3, 40000, c);
    assert_float_equal(c[0] / 40000.0, 0.25 / 0.38, 0.015);
    assert_float_equal(c[2] / 40000.0, 0.04 / 0.38, 0.015);
}

static void test_filters(void **state) {
    (void)state;
    float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    int c[4];
    sampler_params p = plain(1.0f, 3);
    p.top_k = 2;
    counts(p, logits, 4, 5000, c);
    assert_true(c[0] > 0 && c[1] > 0 && c[2] == 0 && c[3] == 0);
    p = plain(1.0f, 3);
    p.top_p = 0.9f; /* 0.5 + 0.3 = 0.8 < 0.9, + 0.15 reaches it */
    counts(p, logits, 4, 5000, c);
    assert_true(c[2] > 0 && c[3] == 0);
    p = plain(1.0f, 3);
    p.min_p = 0.5f; /* keeps p >= 0.25 */
    counts(p, logits, 4, 5000, c);
    assert_true(c[0] > 0 && c[1] > 0 && c[2] == 0 && c[3] == 0);
    /* filters are applied before temperature: a huge T does not revive filtered tokens */
    p = plain(50.0f, 3);
    p.top_k = 2;
    counts(p, logits, 4, 5000, c);
    assert_true(c[2] == 0 && c[3] == 0);
    assert_float_equal(c[0] / 5000.0, 0.5, 0.05);
}

static void test_repetition_penalty(void **state) {
    (void)state;
    float logits[3] = {2.0f, 1.9f, -1.0f};
    sampler_params p = plain(0, 1);
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 2;
    sampler *s = sampler_new(&p, 3);
    int32_t hist[3] = {0, 0, 2};
    assert_int_equal(sampler_sample(s, logits, hist, 3), 1);     /* 2.0 / 1.5 < 1.9 */
    assert_int_equal(sampler_sample(s, logits, hist + 2, 1), 0); /* 0 not in the window */
    int32_t old[3] = {0, 2, 2};                                  /* window = last 2 only */
    assert_int_equal(sampler_sample(s, logits, old, 3), 0);
    assert_float_equal(logits[0], 2.0f, 0); /* input untouched */
    sampler_free(s);
}

static void test_seed_reproducible(void **state) {
    (void)state;
    float logits[50];
    for (int i = 0; i < 50; i++) logits[i] = sinf((float)i);
    sampler_params p = plain(1.0f, 1234);
    sampler *a = sampler_new(&p, 50), *b = sampler_new(&p, 50);
    p.seed = 1235;
    sampler *d = sampler_new(&p, 50);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int32_t x = sampler_sample(a, logits, NULL, 0);
        assert_int_equal(x, sampler_sample(b, logits, NULL, 0));
        differ += x != sampler_sample(d, logits, NULL, 0);
    }
    assert_true(differ > 20);
    sampler_free(a);
    sampler_free(b);
    sampler_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_seed_reproducible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
