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

/* Draw len tokens in a row from the same logits and check each is want[i]. */
static void expect_draws(sampler *s, const float *logits, const int32_t *want, int len) {
    for (int i = 0; i < len; i++) assert_int_equal(sampler_sample(s, logits, NULL, 0), want[i]);
}

/* OpenAI's formula: a token chosen c times before loses c x frequency + (c > 0) x presence. Greedy
 * on fixed logits shows each: token 0 leads by 1.0 over token 1, 2.0 over token 2. */
static void test_frequency_presence(void **state) {
    (void)state;
    float logits[3] = {3.0f, 2.0f, 1.0f};
    /* no penalty: always token 0 */
    sampler_params p = plain(0, 1);
    sampler *s = sampler_new(&p, 3);
    expect_draws(s, logits, (const int32_t[]){0, 0, 0, 0, 0, 0}, 6);
    /* frequency 0.6: 0 (3.0), 0 (2.4), then 1 (2.0 > 1.8), 0 (1.8 > 1.4) */
    p.frequency_penalty = 0.6f;
    sampler_reset(s, &p);
    expect_draws(s, logits, (const int32_t[]){0, 0, 1, 0}, 4);
    /* presence 1.5 (once per token): 0, then 1 (2.0 > 1.5), then 0 (1.5 > 1.0 > 0.5), 0 */
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 1.5f;
    sampler_reset(s, &p);
    expect_draws(s, logits, (const int32_t[]){0, 1, 0, 0}, 4);
    /* a negative penalty favours repeats; a reset forgets what was chosen */
    p.presence_penalty = -2.0f;
    sampler_reset(s, &p);
    float flat[3] = {1.0f, 2.0f, 1.9f};
    assert_int_equal(sampler_sample(s, flat, NULL, 0), 1);
    sampler_reset(s, &p);
    assert_int_equal(sampler_sample(s, logits, NULL, 0), 0);
    sampler_free(s);
}

/* logit_bias adds to a logit; -100 bans a token even at temperature 1 with no filters. */
static void test_logit_bias(void **state) {
    (void)state;
    float logits[4] = {2.0f, 1.0f, 0.0f, 0.5f};
    sampler_params p = plain(0, 1);
    p.n_bias = 1;
    p.bias[0] = (sampler_bias){2, 2.5f};
    sampler *s = sampler_new(&p, 4);
    assert_int_equal(sampler_sample(s, logits, NULL, 0), 2);
    p.bias[0] = (sampler_bias){0, -100.0f};
    p.bias[1] = (sampler_bias){7, 50.0f}; /* outside the vocabulary: ignored by the sampler */
    p.n_bias = 2;
    sampler_reset(s, &p);
    assert_int_equal(sampler_sample(s, logits, NULL, 0), 1);
    sampler_free(s);
    p = plain(1.0f, 42);
    p.n_bias = 1;
    p.bias[0] = (sampler_bias){0, -100.0f};
    int c[4];
    counts(p, logits, 4, 2000, c);
    assert_int_equal(c[0], 0);
    assert_true(c[1] > 0 && c[2] > 0 && c[3] > 0);
    /* every token banned still yields a token */
    p = plain(0, 1);
    p.n_bias = 4;
    for (int i = 0; i < 4; i++) p.bias[i] = (sampler_bias){i, -100.0f};
    s = sampler_new(&p, 4);
    int32_t t = sampler_sample(s, logits, NULL, 0);
    assert_true(t >= 0 && t < 4);
    sampler_free(s);
}

/* The argmax keeps the first of equal maxima at every offset of its eight lanes and the tail. */
static void test_argmax_lanes(void **state) {
    (void)state;
    float v[37];
    for (int at = 0; at < 37; at++) {
        for (int i = 0; i < 37; i++) v[i] = (float)(i % 5) * 0.1f - 5.0f;
        v[at] = 1.0f;
        if (at + 9 < 37) v[at + 9] = 1.0f;
        assert_int_equal(sampler_argmax(v, 37), at);
    }
    for (int i = 0; i < 37; i++) v[i] = -INFINITY;
    assert_int_equal(sampler_argmax(v, 37), 0);
    v[3] = NAN;
    v[20] = -1.0f;
    assert_int_equal(sampler_argmax(v, 37), 20);
}

/* Log-probabilities: log-softmax of the penalised, biased logits, whatever the temperature and
 * filters; the top list sorted, ties to the lower id, clamped to 20 entries and to -9999. */
static void test_logprobs(void **state) {
    (void)state;
    enum { N = 30 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = (float)((i * 7) % 11) * 0.5f - 2.0f;
    sampler_params p = plain(0.7f, 3);
    p.top_k = 3; /* filters do not change the reported distribution */
    p.presence_penalty = 1.5f;
    p.n_bias = 2;
    p.bias[0] = (sampler_bias){4, 2.0f};
    p.bias[1] = (sampler_bias){5, -100.0f};
    sampler *s = sampler_new(&p, N);
    assert_non_null(s);
    int chosen[N] = {0};
    for (int step = 0; step < 6; step++) {
        double l[N], max = -1e300, sum = 0;
        for (int i = 0; i < N; i++) {
            l[i] = logits[i] - (chosen[i] ? 1.5 : 0) + (i == 4 ? 2.0 : 0);
            if (i == 5) l[i] = -1e30;
            if (l[i] > max) max = l[i];
        }
        for (int i = 0; i < N; i++) sum += exp(l[i] - max);
        double lse = max + log(sum);
        sampler_token_lp lp;
        int32_t t = sampler_sample_lp(s, logits, NULL, 0, 99, &lp);
        assert_int_equal(lp.chosen.id, t);
        assert_float_equal(lp.chosen.logprob, l[t] - lse, 1e-4);
        assert_int_equal(lp.n_top, SAMPLER_MAX_TOP_LOGPROBS);
        for (int k = 0; k < lp.n_top; k++) {
            int id = lp.top[k].id;
            assert_float_equal(lp.top[k].logprob, l[id] < -1e4 ? -9999.0 : l[id] - lse, 1e-4);
            if (k > 0) {
                assert_true(lp.top[k].logprob <= lp.top[k - 1].logprob);
                if (lp.top[k].logprob == lp.top[k - 1].logprob) assert_true(id > lp.top[k - 1].id);
            }
            /* nothing left out ranks above the last kept */
            if (k == lp.n_top - 1)
                for (int i = 0; i < N; i++) {
                    int kept = 0;
                    for (int q = 0; q < lp.n_top; q++) kept |= lp.top[q].id == i;
                    if (!kept) assert_true(l[i] - lse <= lp.top[k].logprob + 1e-6);
                }
        }
        assert_true(t != 5);
        chosen[t] = 1;
    }
    /* a vocabulary smaller than the ask, and no alternatives */
    sampler_token_lp lp;
    sampler *small = sampler_new(&p, 3);
    sampler_sample_lp(small, logits, NULL, 0, 20, &lp);
    assert_int_equal(lp.n_top, 3);
    sampler_sample_lp(small, logits, NULL, 0, 0, &lp);
    assert_int_equal(lp.n_top, 0);
    sampler_free(small);
    sampler_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_frequency_presence),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_argmax_lanes),
        cmocka_unit_test(test_logprobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
