/* test_quant.c — quantized block formats and their kernels (src/engine/quant.h):
 *   sizes           every block struct has ggml's size;
 *   round trip      quantize -> dequantize error on random rows, under a bound per type;
 *   SIMD == ref     every AVX2 dot product against its scalar reference on random blocks;
 *   dot == deq·x    every dot product against the f32 dot of the dequantized weights with the
 *                   unquantized activations, within the activations' own rounding bound;
 *   quantizers      the AVX2 activation quantizers give the reference's bytes;
 *   packed          the AVX512-VNNI packed kernels (16-row groups, tiles of up to 8 tokens)
 *                   against the reference dot products, odd row and token counts, accumulate;
 *   matmul          mm_run with packed and unpacked weights against a naive product.
 * Rows have several blocks and odd block counts where the format allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/matmul.h"
#include "engine/quant.h"
#include "engine/threadpool.h"

/* ==== Random data ==== */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double urand(void) { /* (0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) * 0x1.0p-53;
}

/* Normal values with a per-row scale and a few outliers, like trained weights and activations. */
static void fill_random(float *x, int n, float scale) {
    for (int i = 0; i < n; i++) {
        double g = sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand());
        if (urand() < 0.01) g *= 4;
        x[i] = (float)(g * scale);
    }
}

/* ==== Types under test ==== */

typedef struct qtype {
    int type;       /* weight type */
    int act;        /* activation type its dot product takes */
    int block;      /* elements per block */
    double max_rel; /* round trip: RMS error / RMS value on normal data, at most */
    void (*ref)(int, float *, const void *, const void *);
    void (*simd)(int, float *, const void *, const void *);
} qtype;

/* Bounds: a b-bit uniform grid over a 32-element block's range of normal values gives an RMS
 * error near range / (2^b * sqrt(12)); the bounds below are about 1.5x what the quantizers do. */
static const qtype qtypes[] = {
    {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, 32, 0.130, dot_q4_0_q8_0_ref, dot_q4_0_q8_0_avx2},
    {GGML_TYPE_Q4_1, GGML_TYPE_Q8_1, 32, 0.110, dot_q4_1_q8_1_ref, dot_q4_1_q8_1_avx2},
    {GGML_TYPE_Q5_0, GGML_TYPE_Q8_0, 32, 0.065, dot_q5_0_q8_0_ref, dot_q5_0_q8_0_avx2},
    {GGML_TYPE_Q5_1, GGML_TYPE_Q8_1, 32, 0.055, dot_q5_1_q8_1_ref, dot_q5_1_q8_1_avx2},
    {GGML_TYPE_Q8_0, GGML_TYPE_Q8_0, 32, 0.008, dot_q8_0_q8_0_ref, dot_q8_0_q8_0_avx2},
    {GGML_TYPE_Q4_K, GGML_TYPE_Q8_K, 256, 0.100, dot_q4_K_q8_K_ref, dot_q4_K_q8_K_avx2},
    {GGML_TYPE_Q5_K, GGML_TYPE_Q8_K, 256, 0.050, dot_q5_K_q8_K_ref, dot_q5_K_q8_K_avx2},
    {GGML_TYPE_Q6_K, GGML_TYPE_Q8_K, 256, 0.030, dot_q6_K_q8_K_ref, dot_q6_K_q8_K_avx2},
    {GGML_TYPE_BF16, GGML_TYPE_F32, 1, 0.003, dot_bf16_f32_ref, dot_bf16_f32_avx2},
};
#define N_QTYPES (int)(sizeof qtypes / sizeof *qtypes)

static const type_traits *traits(int type) {
    const type_traits *tt = kernels_traits(type);
    if (!tt) fail_msg("type %s has no traits", ggml_type_name((uint32_t)type));
    return tt;
}

/* ==== Sizes ==== */

static void test_block_sizes(void **state) {
    (void)state;
    struct {
        int type;
        size_t size, block;
    } want[] = {
        {GGML_TYPE_Q4_0, sizeof(block_q4_0), QK4_0}, {GGML_TYPE_Q4_1, sizeof(block_q4_1), QK4_1},
        {GGML_TYPE_Q5_0, sizeof(block_q5_0), QK5_0}, {GGML_TYPE_Q5_1, sizeof(block_q5_1), QK5_1},
        {GGML_TYPE_Q8_0, sizeof(block_q8_0), QK8_0}, {GGML_TYPE_Q8_1, sizeof(block_q8_1), QK8_1},
        {GGML_TYPE_Q4_K, sizeof(block_q4_K), QK_K},  {GGML_TYPE_Q5_K, sizeof(block_q5_K), QK_K},
        {GGML_TYPE_Q6_K, sizeof(block_q6_K), QK_K},  {GGML_TYPE_Q8_K, sizeof(block_q8_K), QK_K},
        {GGML_TYPE_BF16, sizeof(mh_bf16), 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        assert_int_equal(ggml_type_size((uint32_t)want[i].type), want[i].size);
        assert_int_equal(ggml_blck_size((uint32_t)want[i].type), want[i].block);
        assert_non_null(kernels_traits(want[i].type));
    }
}

/* ==== Round trip ==== */

static double rel_rms_error(int type, const float *x, int n) {
    const type_traits *tt = traits(type);
    void *q = malloc(ggml_row_size((uint32_t)type, (uint64_t)n));
    float *y = malloc(sizeof(float) * (size_t)n);
    tt->from_f32(x, q, n);
    tt->to_f32(q, y, n);
    double err = 0, ref = 0;
    for (int i = 0; i < n; i++) {
        err += (double)(y[i] - x[i]) * (y[i] - x[i]);
        ref += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return sqrt(err / ref);
}

static void test_round_trip(void **state) {
    (void)state;
    enum { N = 256 * 33 };
    static float x[N];
    for (int i = 0; i < N_QTYPES; i++) {
        fill_random(x, N, 0.02f);
        double e = rel_rms_error(qtypes[i].type, x, N);
        print_message("  %-5s RMS error %.4f of RMS value (bound %.3f)\n",
                      ggml_type_name((uint32_t)qtypes[i].type), e, qtypes[i].max_rel);
        if (!(e <= qtypes[i].max_rel))
            fail_msg("%s: relative RMS error %g > %g", ggml_type_name((uint32_t)qtypes[i].type), e,
                     qtypes[i].max_rel);
    }
    /* activation types: Q8 grids */
    int acts[] = {GGML_TYPE_Q8_1, GGML_TYPE_Q8_K};
    for (int i = 0; i < 2; i++) {
        fill_random(x, N, 3.0f);
        double e = rel_rms_error(acts[i], x, N);
        if (!(e <= 0.015))
            fail_msg("%s: relative RMS error %g", ggml_type_name((uint32_t)acts[i]), e);
    }
    /* a row of zeros and a constant row survive */
    for (int i = 0; i < N_QTYPES; i++) {
        const type_traits *tt = traits(qtypes[i].type);
        float z[512] = {0}, c[512], back[512];
        uint8_t q[2048];
        for (int k = 0; k < 512; k++) c[k] = 0.75f;
        tt->from_f32(z, q, 512);
        tt->to_f32(q, back, 512);
        for (int k = 0; k < 512; k++) assert_true(back[k] == 0.0f);
        tt->from_f32(c, q, 512);
        tt->to_f32(q, back, 512);
        for (int k = 0; k < 512; k++) assert_float_equal(back[k], 0.75f, 0.75f * 0.02f);
    }
}

/* ==== Dot products ==== */

/* A weight row of n elements in `type` and an activation row quantized to `act` (kept in f32 in
 * xf too). */
typedef struct dot_case {
    int n;
    float *wf, *xf, *wdeq;
    uint8_t *w, *x;
} dot_case;

static void make_case(dot_case *c, const qtype *q, int n) {
    c->n = n;
    c->wf = malloc(sizeof(float) * (size_t)n);
    c->xf = malloc(sizeof(float) * (size_t)n);
    c->wdeq = malloc(sizeof(float) * (size_t)n);
    c->w = malloc(ggml_row_size((uint32_t)q->type, (uint64_t)n));
    c->x = malloc(ggml_row_size((uint32_t)q->act, (uint64_t)n) + 64);
    fill_random(c->wf, n, 0.05f);
    fill_random(c->xf, n, 1.0f + 4.0f * (float)urand());
    traits(q->type)->from_f32(c->wf, c->w, n);
    traits(q->type)->to_f32(c->w, c->wdeq, n);
    traits(q->act)->from_f32(c->xf, c->x, n);
}

static void free_case(dot_case *c) {
    free(c->wf);
    free(c->xf);
    free(c->wdeq);
    free(c->w);
    free(c->x);
}

/* Sum of |w_i * x_i| over the dequantized weights: the scale rounding errors are relative to. */
static double abs_sum(const dot_case *c) {
    double s = 0;
    for (int i = 0; i < c->n; i++) s += fabs((double)c->wdeq[i] * c->xf[i]);
    return s;
}

/* SIMD and reference agree to float summation order: 1e-5 of sum |w x| (plus a tiny floor). */
static void test_dot_simd_matches_ref(void **state) {
    (void)state;
    if (!quant_have_avx2()) skip();
    int sizes[] = {256, 768, 256 * 7, 4096};
    for (int i = 0; i < N_QTYPES; i++)
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
            for (int rep = 0; rep < 20; rep++) {
                dot_case c;
                make_case(&c, &qtypes[i], sizes[s] + (qtypes[i].block == 32 && rep % 2 ? 32 : 0));
                float r, v;
                qtypes[i].ref(c.n, &r, c.w, c.x);
                qtypes[i].simd(c.n, &v, c.w, c.x);
                double tol = 1e-5 * abs_sum(&c) + 1e-6;
                if (fabs(r - v) > tol)
                    fail_msg("%s n=%d: ref %.9g simd %.9g (tol %g)",
                             ggml_type_name((uint32_t)qtypes[i].type), c.n, r, v, tol);
                free_case(&c);
            }
}

/* Four activation rows at a time (AVX2, the weight block unpacked once) equal four single dot
 * products of the reference, to float summation order. */
static void test_dot4_matches_ref(void **state) {
    (void)state;
    if (!quant_have_avx2()) skip();
    for (int i = 0; i < N_QTYPES; i++) {
        const type_traits *tt = traits(qtypes[i].type);
        if (!tt->vec_dot4) continue;
        for (int rep = 0; rep < 10; rep++) {
            int n = 256 * (1 + rep % 4);
            dot_case c[4];
            for (int t = 0; t < 4; t++) make_case(&c[t], &qtypes[i], n);
            size_t xb = ggml_row_size((uint32_t)qtypes[i].act, (uint64_t)n);
            uint8_t *x = malloc(4 * xb);
            for (int t = 0; t < 4; t++) memcpy(x + t * xb, c[t].x, xb);
            float got[4];
            tt->vec_dot4(n, got, c[0].w, x, xb);
            for (int t = 0; t < 4; t++) {
                float want;
                qtypes[i].ref(n, &want, c[0].w, c[t].x);
                double tol = 1e-5 * abs_sum(&c[t]) + 1e-6; /* |w x| of row 0's weights too */
                for (int k = 0; k < n; k++) tol += 1e-5 * fabs((double)c[0].wdeq[k] * c[t].xf[k]);
                if (fabs(got[t] - want) > tol)
                    fail_msg("%s n=%d token %d: dot4 %.9g ref %.9g",
                             ggml_type_name((uint32_t)qtypes[i].type), n, t, got[t], want);
            }
            free(x);
            for (int t = 0; t < 4; t++) free_case(&c[t]);
        }
    }
}

/* The quantized dot product equals dot(dequantized w, x in f32) up to the rounding of x:
 * each x_i moves by at most half its block's step (d / 2), so |error| <= sum |w_i| d_i / 2,
 * plus 1e-4 relative for fp16 block sums (Q8_1's s) and float order. */
static void test_dot_matches_dequantized(void **state) {
    (void)state;
    for (int i = 0; i < N_QTYPES; i++)
        for (int rep = 0; rep < 30; rep++) {
            dot_case c;
            make_case(&c, &qtypes[i],
                      256 * (1 + rep % 5) + (qtypes[i].block == 32 ? 32 * (rep % 3) : 0));
            double exact = 0, bound = 0;
            for (int k = 0; k < c.n; k++) exact += (double)c.wdeq[k] * c.xf[k];
            int blk = qtypes[i].act == GGML_TYPE_Q8_K ? 256 : 32;
            for (int b = 0; qtypes[i].act != GGML_TYPE_F32 && b < c.n / blk; b++) {
                float amax = 0, wsum = 0;
                for (int k = b * blk; k < (b + 1) * blk; k++) {
                    amax = fmaxf(amax, fabsf(c.xf[k]));
                    wsum += fabsf(c.wdeq[k]);
                }
                bound += wsum * amax / 127.0f / 2.0f * 1.01f;
            }
            bound += 1e-4 * abs_sum(&c) + 1e-6;
            float got;
            traits(qtypes[i].type)->vec_dot(c.n, &got, c.w, c.x);
            if (fabs(got - exact) > bound)
                fail_msg("%s n=%d: dot %.7g, dequantized %.7g, bound %g",
                         ggml_type_name((uint32_t)qtypes[i].type), c.n, got, exact, bound);
            free_case(&c);
        }
}

/* ==== Activation quantizers ==== */

static void test_activation_quantizers(void **state) {
    (void)state;
    if (!quant_have_avx2()) skip();
    enum { N = 256 * 9 };
    static float x[N];
    static uint8_t a[N * 2], b[N * 2];
    for (int rep = 0; rep < 50; rep++) {
        fill_random(x, N, (float)(urand() * 10));
        if (rep == 0) memset(x, 0, sizeof x);
        if (rep == 1) x[17] = -x[3] * 0 - 5.0f, x[3] = 5.0f; /* equal magnitudes, both signs */
        quantize_row_q8_0(x, a, N);
        quantize_row_q8_0_avx2(x, b, N);
        assert_memory_equal(a, b, ggml_row_size(GGML_TYPE_Q8_0, N));
        quantize_row_q8_1(x, a, N);
        quantize_row_q8_1_avx2(x, b, N);
        assert_memory_equal(a, b, ggml_row_size(GGML_TYPE_Q8_1, N));
        quantize_row_q8_K(x, a, N);
        quantize_row_q8_K_avx2(x, b, N);
        assert_memory_equal(a, b, ggml_row_size(GGML_TYPE_Q8_K, N));
        for (int act = MH_ACT_Q8; act <= MH_ACT_Q8K; act++) {
            quant_act_row_ref(act, x, a, N);
            quant_act_row(act, x, b, N);
            size_t used =
                act == MH_ACT_Q8 ? N + 12 * (N / 32) : N + 4 * (N / 256) + 8 * (N / 16 + N / 32);
            assert_true(used <= quant_act_bytes(act, N));
            assert_memory_equal(a, b, used); /* the rest is padding */
        }
    }
    /* BF16 rounds to nearest even and keeps NaN a NaN */
    assert_int_equal(fp32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(fp32_to_bf16(1.00390625f), 0x3f80); /* tie, even stays */
    assert_int_equal(fp32_to_bf16(1.01171875f), 0x3f82); /* tie, odd rounds up */
    assert_true(isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
}

/* ==== Packed kernels ==== */

static const int packed_types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_Q4_K,
                                   GGML_TYPE_Q6_K};

/* Every packed kernel against the reference dot product with the standard activation blocks:
 * 37 rows (two full groups and a partial one), token counts across the tile sizes. */
static void test_packed_matches_ref(void **state) {
    (void)state;
    if (!quant_have_vnni()) skip();
    enum { ROWS = 37, MAX_T = 19 };
    for (int mode = MH_PACK_VNNI; mode <= MH_PACK_AMX; mode++)
        for (size_t ti = 0; ti < sizeof packed_types / sizeof *packed_types; ti++) {
            quant_set_packed(mode);
            int type = packed_types[ti];
            const mh_pack_ops *pk = quant_pack_ops(type);
            assert_non_null(pk);
            const type_traits *tt = traits(type);
            int block = (int)ggml_blck_size((uint32_t)type);
            int n = block == 32 ? 32 * 23 : 256 * 3;
            size_t rb = ggml_row_size((uint32_t)type, (uint64_t)n);
            uint8_t *w = malloc(rb * ROWS);
            float *f = malloc(sizeof(float) * (size_t)n * MAX_T);
            for (int r = 0; r < ROWS; r++) {
                fill_random(f, n, 0.05f * (float)(1 + r % 3));
                tt->from_f32(f, w + rb * r, n);
            }
            int n_groups = (ROWS + 15) / 16;
            uint8_t *packed = aligned_alloc(64, n_groups * pk->group_bytes(n));
            for (int g = 0; g < n_groups; g++)
                pk->pack(w + rb * 16 * g, rb, ROWS - 16 * g < 16 ? ROWS - 16 * g : 16, n,
                         packed + g * pk->group_bytes(n));
            /* activations, in both the packed format and the standard blocks */
            size_t ab = quant_act_bytes(pk->act, n);
            int std_act = tt->vec_dot_type;
            size_t sb = ggml_row_size((uint32_t)std_act, (uint64_t)n);
            uint8_t *act = aligned_alloc(64, ab * 32), *stda = malloc(sb * MAX_T); /* 2 AMX tiles */
            uint8_t *tmp = aligned_alloc(64, (MH_PACK_SCRATCH(n) + 63) / 64 * 64);
            memset(act, 0, ab * 32);
            fill_random(f, n * MAX_T, 2.0f);
            for (int t = 0; t < MAX_T; t++) {
                quant_act_row(pk->act, f + (size_t)t * n, act + ab * t, n);
                traits(std_act)->from_f32(f + (size_t)t * n, stda + sb * t, n);
            }
            int nts[] = {1, 2, 7, 8, 9, 16, 19};
            for (size_t k = 0; k < sizeof nts / sizeof *nts; k++) {
                int nt = nts[k];
                float y[MAX_T * 40];
                for (int i = 0; i < MAX_T * 40; i++) y[i] = 1.0f;
                for (int g = 0; g < n_groups; g++)
                    pk->gemm(n, nt, packed + g * pk->group_bytes(n),
                             ROWS - 16 * g < 16 ? ROWS - 16 * g : 16, act, ab, y + 16 * g, 40,
                             k % 2, tmp);
                for (int t = 0; t < MAX_T; t++)
                    for (int r = 0; r < 40; r++) {
                        float got = y[t * 40 + r];
                        if (t >= nt || r >= ROWS) { /* untouched */
                            assert_true(got == 1.0f);
                            continue;
                        }
                        float want, wref;
                        tt->vec_dot(n, &want, w + rb * r, stda + sb * t);
                        wref = quant_pack_dot_ref(type, n, packed + (r / 16) * pk->group_bytes(n),
                                                  r % 16, act + ab * t);
                        if (k % 2) got -= 1.0f;
                        double tol = 1e-5 * (fabs(want) + 1) * sqrt(n / 32.0);
                        if (fabs(got - want) > tol || fabs(wref - want) > tol)
                            fail_msg(
                                "%s nt=%d row %d token %d: packed %.7g, packed ref %.7g, dot %.7g",
                                ggml_type_name((uint32_t)type), nt, r, t, got, wref, want);
                    }
            }
            free(w);
            free(f);
            free(packed);
            free(act);
            free(tmp);
            free(stda);
        }
    quant_set_packed(quant_default_pack_mode());
}

/* ==== Matmul ==== */

static void test_matmul(void **state) {
    (void)state;
    enum { N_OUT = 45, B = 13 };
    int types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q5_0,
                   GGML_TYPE_Q4_1, GGML_TYPE_Q5_K, GGML_TYPE_BF16, GGML_TYPE_F16};
    threadpool *tp = threadpool_new(3);
    for (int mode = MH_PACK_OFF; mode <= MH_PACK_AMX; mode++)
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            quant_set_packed(mode);
            int type = types[ti], n = 512;
            const type_traits *tt = traits(type);
            size_t rb = ggml_row_size((uint32_t)type, (uint64_t)n);
            uint8_t *data = malloc(rb * N_OUT);
            float *wdeq = malloc(sizeof(float) * n * N_OUT), *x = malloc(sizeof(float) * n * B);
            float y[B * 50], want[B * N_OUT], tol[B * N_OUT];
            fill_random(wdeq, n * N_OUT, 0.05f);
            for (int r = 0; r < N_OUT; r++) tt->from_f32(wdeq + r * n, data + rb * r, n);
            for (int r = 0; r < N_OUT; r++) tt->to_f32(data + rb * r, wdeq + r * n, n);
            fill_random(x, n * B, 1.0f);
            /* exact product of the dequantized weights, and the bound of the activations' rounding
             * (half a step of each activation block, as in test_dot_matches_dequantized) */
            int ablk = tt->vec_dot_type == GGML_TYPE_F32    ? 0
                       : tt->vec_dot_type == GGML_TYPE_Q8_K ? 256
                                                            : 32;
            for (int b = 0; b < B; b++)
                for (int r = 0; r < N_OUT; r++) {
                    double s = 0, abs = 0, bound = 0;
                    for (int i = 0; i < n; i++) {
                        s += (double)wdeq[r * n + i] * x[b * n + i];
                        abs += fabs((double)wdeq[r * n + i] * x[b * n + i]);
                    }
                    for (int k = 0; ablk && k < n / ablk; k++) {
                        float amax = 0, wsum = 0;
                        for (int i = k * ablk; i < (k + 1) * ablk; i++) {
                            amax = fmaxf(amax, fabsf(x[b * n + i]));
                            wsum += fabsf(wdeq[r * n + i]);
                        }
                        bound += wsum * amax / 254.0f * 1.01f;
                    }
                    want[b * N_OUT + r] = (float)s;
                    tol[b * N_OUT + r] = (float)(bound + 1e-4 * abs + 1e-6);
                }
            mm_weight w = {data, type, n, N_OUT, rb, tt, NULL, NULL, 0};
            assert_int_equal(mm_weight_pack(&w), 0);
            assert_true(!w.packed ==
                        (mode == MH_PACK_OFF || !quant_have_vnni() || !quant_pack_ops(type)));
            mm_scratch *s = mm_scratch_new(3, n, B);
            for (int accumulate = 0; accumulate < 2; accumulate++)
                for (int nb = 1; nb <= B; nb += 6) {
                    for (int i = 0; i < B * 50; i++) y[i] = 0.5f;
                    mm_job job = {&w, x, y, 50, accumulate};
                    mm_run(tp, s, &job, 1, nb);
                    for (int b = 0; b < B; b++)
                        for (int r = 0; r < 50; r++) {
                            float got = y[b * 50 + r];
                            if (b >= nb || r >= N_OUT) {
                                assert_true(got == 0.5f);
                                continue;
                            }
                            if (accumulate) got -= 0.5f;
                            float ref = want[b * N_OUT + r];
                            if (fabsf(got - ref) > tol[b * N_OUT + r])
                                fail_msg("%s B=%d row %d token %d: %g, want %g",
                                         ggml_type_name((uint32_t)type), nb, r, b, got, ref);
                        }
                }
            mm_scratch_free(s);
            free((void *)w.packed);
            free(data);
            free(wdeq);
            free(x);
        }
    quant_set_packed(quant_default_pack_mode());
    threadpool_free(tp);
}

/* ==== Attention kernel (kernels.c) ==== */

/* attn_rows: the SIMD twins against the two-pass reference for rows with their own key ranges
 * (causal ends, sliding-window starts, ranges across tile boundaries), f32 and f16 caches; and a
 * row computed alone is bit for bit the row computed among others (batch invariance). */
static void test_attn_rows_simd_matches_ref(void **state) {
    (void)state;
    if (!kernels_have_avx2()) skip();
    enum { MAXN = 300, STRIDE = 3 * 128 + 8, NQ = 12 };
    static float k[MAXN * STRIDE], v[MAXN * STRIDE], q[NQ][128], out_r[NQ][128], out_s[NQ][128],
        out_1[128];
    static uint16_t k16[MAXN * STRIDE], v16[MAXN * STRIDE];
    static float scratch[ATTN_SCRATCH_FLOATS(NQ, 128, MAXN) + 64];
    int hds[] = {64, 128, 40, 80, 6};
    for (int simd = 0; simd < 2; simd++) /* AVX2, AVX512 */
        for (size_t h = 0; h < sizeof hds / sizeof *hds; h++)
            for (int f16 = 0; f16 < 2; f16++)
                for (int trial = 0; trial < 6; trial++) {
                    int hd = hds[h];
                    fill_random(k, MAXN * STRIDE, 1.0f);
                    fill_random(v, MAXN * STRIDE, 1.0f);
                    f32_to_f16_row_ref(k, k16, MAXN * STRIDE);
                    f32_to_f16_row_ref(v, v16, MAXN * STRIDE);
                    const float *qr[NQ];
                    float * or [NQ], *os[NQ];
                    int start[NQ], end[NQ];
                    for (int i = 0; i < NQ; i++) {
                        fill_random(q[i], 128, 2.0f);
                        qr[i] = q[i];
                        or [i] = out_r[i];
                        os[i] = out_s[i];
                        end[i] = 1 + (int)(((unsigned)(trial * 131 + i * 37)) % MAXN);
                        start[i] = trial % 2 ? (end[i] > 40 ? end[i] - 40 + i : 0) : 0;
                    }
                    attn_rows_args a = {.nq = NQ,
                                        .hd = hd,
                                        .q = qr,
                                        .out = or
                                        ,
                                        .start = start,
                                        .end = end,
                                        .k = f16 ? (const void *)(k16 + 5) : (const void *)(k + 5),
                                        .v = f16 ? (const void *)(v16 + 5) : (const void *)(v + 5),
                                        .kv_stride = STRIDE,
                                        .kv_f16 = f16,
                                        .scale = 0.125f,
                                        .scratch = scratch};
                    attn_rows_ref(&a);
                    a.out = os;
                    if (simd == 1 && !kernels_have_avx512()) continue;
                    (simd ? attn_rows_avx512 : attn_rows_avx2)(&a);
                    for (int i = 0; i < NQ; i++)
                        for (int d = 0; d < hd; d++)
                            assert_float_equal(out_r[i][d], out_s[i][d],
                                               2e-5 * (1 + fabsf(out_r[i][d])));
                    for (int i = 0; i < NQ; i += 5) { /* alone: the same bits */
                        float *o1[1] = {out_1};
                        attn_rows_args one = a;
                        one.nq = 1;
                        one.q = &qr[i];
                        one.out = o1;
                        one.start = &start[i];
                        one.end = &end[i];
                        (simd ? attn_rows_avx512 : attn_rows_avx2)(&one);
                        assert_memory_equal(out_1, out_s[i], (size_t)hd * sizeof(float));
                    }
                }
}

static void test_swiglu_rmsnorm_simd(void **state) {
    (void)state;
    if (!kernels_have_avx2()) skip();
    enum { N = 1003 };
    static float g[N], u[N], r[N], v[N], w[N];
    fill_random(g, N, 4.0f);
    fill_random(u, N, 1.0f);
    g[0] = -200.0f, g[1] = 200.0f, g[2] = -87.5f, g[3] = 0.0f; /* saturation and zero */
    memcpy(r, g, sizeof g);
    memcpy(v, g, sizeof g);
    swiglu_ref(r, u, N);
    swiglu_avx2(v, u, N);
    for (int i = 0; i < N; i++) assert_float_equal(r[i], v[i], 1e-6 * (1 + fabsf(r[i])));
    /* rmsnorm: the dispatched version against the defining formula */
    fill_random(w, N, 1.0f);
    rmsnorm(v, g, w, N, 1e-5f);
    double ss = 0;
    for (int i = 0; i < N; i++) ss += (double)g[i] * g[i];
    float scale = (float)(1.0 / sqrt(ss / N + 1e-5));
    for (int i = 0; i < N; i++)
        assert_float_equal(v[i], g[i] * scale * w[i], 1e-6 * (1 + fabsf(v[i])));
}

int main(void) {
    kernels_init(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_sizes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_dot_simd_matches_ref),
        cmocka_unit_test(test_dot_matches_dequantized),
        cmocka_unit_test(test_dot4_matches_ref),
        cmocka_unit_test(test_activation_quantizers),
        cmocka_unit_test(test_packed_matches_ref),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_attn_rows_simd_matches_ref),
        cmocka_unit_test(test_swiglu_rmsnorm_simd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
