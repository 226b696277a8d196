/* test_kernels.c — half-float conversion and every SIMD kernel against its scalar reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/kernels.h"
#include "engine/threadpool.h"

static uint64_t rng_state = 0x1234567887654321ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

/* Every finite half survives half -> float -> half unchanged; NaNs stay NaN. */
static void test_fp16_roundtrip_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_fp32((uint16_t)h);
        if (isnan(f)) {
            assert_true(isnan(fp16_to_fp32(fp32_to_fp16(f))));
            continue;
        }
        if (fp32_to_fp16(f) != h) fail_msg("half 0x%04x -> %g -> 0x%04x", h, f, fp32_to_fp16(f));
    }
    assert_float_equal(fp16_to_fp32(0x3c00), 1.0f, 0);
    assert_float_equal(fp16_to_fp32(0xc000), -2.0f, 0);
    assert_float_equal(fp16_to_fp32(0x0001), 5.960464477539063e-8f, 0); /* smallest subnormal */
    assert_int_equal(fp32_to_fp16(65520.0f), 0x7c00);                   /* rounds to inf */
    assert_int_equal(fp32_to_fp16(65504.0f), 0x7bff);
    assert_int_equal(fp32_to_fp16(1e-9f), 0);
}

/* Our conversion rounds exactly like the F16C instruction on random floats of every scale. */
static void test_fp16_matches_hardware(void **state) {
    (void)state;
    if (!kernels_have_avx2()) skip();
    uint16_t hw[8], sw[8];
    float in[8], back_hw[8], back_sw[8];
    for (int iter = 0; iter < 200000; iter++) {
        for (int i = 0; i < 8; i++) {
            rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t bits = (uint32_t)(rng_state >> 32);
            /* bias toward the half range so subnormals and rounding edges are hit often */
            if (i & 1) bits = (bits & 0x87ffffff) | 0x38000000;
            memcpy(&in[i], &bits, 4);
            if (isnan(in[i])) in[i] = 1.0f;
        }
        f32_to_f16_row_f16c(in, hw, 8);
        f32_to_f16_row_ref(in, sw, 8);
        for (int i = 0; i < 8; i++)
            if (hw[i] != sw[i]) fail_msg("%.9g: hardware 0x%04x, ours 0x%04x", in[i], hw[i], sw[i]);
        f16_to_f32_row_f16c(hw, back_hw, 8);
        f16_to_f32_row_ref(hw, back_sw, 8);
        assert_memory_equal(back_hw, back_sw, sizeof back_hw);
    }
}

static void test_dot_simd_matches_ref(void **state) {
    (void)state;
    if (!kernels_have_avx2()) skip();
    static float a[4099], b[4099];
    static uint16_t ah[4099];
    int sizes[] = {1, 7, 8, 31, 32, 33, 64, 100, 256, 1000, 4096, 4099};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        for (int i = 0; i < n; i++) {
            a[i] = frand();
            b[i] = frand();
            ah[i] = fp32_to_fp16(a[i]);
        }
        float r, v;
        dot_f32_ref(n, &r, a, b);
        dot_f32_avx2(n, &v, a, b);
        /* summation order differs: allow a relative error of a few ulps times sqrt(n) */
        assert_float_equal(r, v, 1e-5 * sqrt(n) * (1 + fabs(r)));
        dot_f16_ref(n, &r, ah, b);
        dot_f16_avx2(n, &v, ah, b);
        assert_float_equal(r, v, 1e-5 * sqrt(n) * (1 + fabs(r)));
        float rows_ref[4099], rows_simd[4099];
        f16_to_f32_row_ref(ah, rows_ref, n);
        f16_to_f32_row_f16c(ah, rows_simd, n);
        assert_memory_equal(rows_ref, rows_simd, (size_t)n * sizeof(float));
    }
}

static void test_rmsnorm_softmax(void **state) {
    (void)state;
    float x[5] = {1, 2, 3, 4, 5}, w[5] = {1, 1, 1, 1, 2}, out[5];
    rmsnorm(out, x, w, 5, 0);
    float rms = sqrtf((1 + 4 + 9 + 16 + 25) / 5.0f);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], x[i] / rms, 1e-6);
    assert_float_equal(out[4], 2 * 5 / rms, 1e-6);
    float s[4] = {1000, 1000, 1000, 1000}; /* no overflow with large logits */
    softmax(s, 4);
    for (int i = 0; i < 4; i++) assert_float_equal(s[i], 0.25, 1e-7);
}

static void sum_task(void *arg, int ith, int nth) {
    int *hits = arg;
    __atomic_add_fetch(&hits[ith], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&hits[64], nth, __ATOMIC_RELAXED);
}

/* Every thread runs every task exactly once, also after the workers went to sleep. */
static void test_threadpool(void **state) {
    (void)state;
    threadpool *tp = threadpool_new(3);
    assert_int_equal(threadpool_size(tp), 3);
    int hits[65] = {0};
    for (int i = 0; i < 1000; i++) threadpool_run(tp, sum_task, hits);
    struct timespec ts = {0, 20 * 1000 * 1000}; /* let the workers fall asleep */
    nanosleep(&ts, NULL);
    threadpool_run(tp, sum_task, hits);
    for (int i = 0; i < 3; i++) assert_int_equal(hits[i], 1001);
    assert_int_equal(hits[64], 3 * 3 * 1001);
    threadpool_free(tp);
    assert_true(threadpool_default_size() >= 1);
}

int main(void) {
    kernels_init(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_roundtrip_exhaustive),
        cmocka_unit_test(test_fp16_matches_hardware),
        cmocka_unit_test(test_dot_simd_matches_ref),
        cmocka_unit_test(test_rmsnorm_softmax),
        cmocka_unit_test(test_threadpool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
