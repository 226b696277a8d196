/* kernels.c — see kernels.h. SIMD twins use __attribute__((target)) so the build needs no
 * -march flag; kernels_init() checks the CPU before any of them can run. */
#include "engine/kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant.h"

/* MH_NO_SIMD: the portable kernels only (the fuzz build: clang 14 rejects
 * __builtin_cpu_supports("f16c")). */
#if defined(__x86_64__) && !defined(MH_NO_SIMD)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

static int use_avx2; /* set by kernels_init: rmsnorm dispatches itself */

/* ==== Half floats ==== */

float fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000 | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx > 0x7f800000) return (uint16_t)(sign | 0x7e00);  /* NaN */
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (absx < 0x38800000) {                                  /* result is subnormal or zero */
        if (absx < 0x33000000) return (uint16_t)sign; /* below half of the smallest subnormal */
        uint32_t e = absx >> 23;
        uint32_t mant = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 + (113 - e) ... in [14, 24] */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((absx >> 13) - (112u << 10)); /* rebias exponent, keep 10 mantissa bits */
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

/* ==== Reference kernels ==== */

void dot_f32_ref(int n, float *out, const void *w, const void *x) {
    const float *a = w, *b = x;
    float sum = 0;
    for (int i = 0; i < n; i++) sum += a[i] * b[i];
    *out = sum;
}

void dot_f16_ref(int n, float *out, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    float sum = 0;
    for (int i = 0; i < n; i++) sum += fp16_to_fp32(a[i]) * b[i];
    *out = sum;
}

void f16_to_f32_row_ref(const void *src, float *dst, int n) {
    const uint16_t *s = src;
    for (int i = 0; i < n; i++) dst[i] = fp16_to_fp32(s[i]);
}

static void f32_to_f32_row(const void *src, float *dst, int n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f32_from_f32_row(const float *src, void *dst, int n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void f32_to_f16_row_ref(const float *src, void *dst, int n) {
    uint16_t *d = dst;
    for (int i = 0; i < n; i++) d[i] = fp32_to_fp16(src[i]);
}

/* ==== AVX2 + FMA + F16C kernels ==== */

#if HAVE_X86
#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

TARGET_AVX2 static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 shuf = _mm_movehdup_ps(lo);
    __m128 sums = _mm_add_ps(lo, shuf);
    shuf = _mm_movehl_ps(shuf, sums);
    sums = _mm_add_ss(sums, shuf);
    return _mm_cvtss_f32(sums);
}

TARGET_AVX2 void dot_f32_avx2(int n, float *out, const void *w, const void *x) {
    const float *a = w, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += a[i] * b[i];
    *out = sum;
}

TARGET_AVX2 void dot_f16_avx2(int n, float *out, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int i = 0;
#define LOADH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(LOADH(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(LOADH(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(LOADH(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(LOADH(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(LOADH(a + i), _mm256_loadu_ps(b + i), acc0);
#undef LOADH
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += fp16_to_fp32(a[i]) * b[i];
    *out = sum;
}

TARGET_AVX2 void f16_to_f32_row_f16c(const void *src, float *dst, int n) {
    const uint16_t *s = src;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++) dst[i] = fp16_to_fp32(s[i]);
}

TARGET_AVX2 void f32_to_f16_row_f16c(const float *src, void *dst, int n) {
    uint16_t *d = dst;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) d[i] = fp32_to_fp16(src[i]);
}

/* exp(x) for x <= 0 (softmax arguments): 2^k * p(r) with |r| <= ln2 / 2 and a degree-6
 * polynomial, relative error about 2e-7; below -87 it returns 0 like expf. */
TARGET_AVX2 static inline __m256 exp_neg256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* exp(x) for any x: arguments clamped to [-87, 88], so it saturates instead of overflowing. */
TARGET_AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    return exp_neg256(x);
}

TARGET_AVX2 void swiglu_avx2(float *gate, const float *up, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp256(_mm256_xor_ps(g, sign));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* rmsnorm with the sum of squares in four double lanes (x2 to hide the latency). */
TARGET_AVX2 static void rmsnorm_avx2(float *out, const float *x, const float *w, int n, float eps) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i)),
                b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        s0 = _mm256_fmadd_pd(a, a, s0);
        s1 = _mm256_fmadd_pd(b, b, s1);
    }
    s0 = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s0), _mm256_extractf128_pd(s0, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs),
                                                _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Eight elements of a cached key/value row, f32 or half (widened on the fly; exact). */
#define KV_LOAD8(f16, base, off)                                                                   \
    ((f16) ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)(base) + (off)))) \
           : _mm256_loadu_ps((const float *)(base) + (off)))

/* One row's scores against keys [lo, hi) of a tile: s[j - j0] = scale * q . k_j, key j at
 * element (j - jb) * ks of kbase (f32 or half), four keys per step. Returns the max. The arithmetic
 * is the same whichever way the keys are stored. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline float
tile_scores(const float *q, const void *kbase, int f16, size_t ks, int jb, int j0, int lo, int hi,
            int nc, float scale, float *s) {
    float max = -INFINITY;
    int j = lo;
    for (; j + 4 <= hi; j += 4) {
        size_t k0 = (size_t)(j - jb) * ks;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < nc; c++) {
            __m256 qc = _mm256_loadu_ps(q + 8 * c);
            a0 = _mm256_fmadd_ps(qc, KV_LOAD8(f16, kbase, k0 + 8 * c), a0);
            a1 = _mm256_fmadd_ps(qc, KV_LOAD8(f16, kbase, k0 + ks + 8 * c), a1);
            a2 = _mm256_fmadd_ps(qc, KV_LOAD8(f16, kbase, k0 + 2 * ks + 8 * c), a2);
            a3 = _mm256_fmadd_ps(qc, KV_LOAD8(f16, kbase, k0 + 3 * ks + 8 * c), a3);
        }
        /* transpose-add the four sums into one vector of four */
        __m256 s01 = _mm256_hadd_ps(a0, a1), s23 = _mm256_hadd_ps(a2, a3);
        __m256 s8 = _mm256_hadd_ps(s01, s23);
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
        s4 = _mm_mul_ps(s4, _mm_set1_ps(scale));
        _mm_storeu_ps(s + (j - j0), s4);
        for (int i = 0; i < 4; i++) max = fmaxf(max, s[j - j0 + i]);
    }
    for (; j < hi; j++) {
        size_t kj = (size_t)(j - jb) * ks;
        __m256 acc = _mm256_setzero_ps();
        for (int c = 0; c < nc; c++)
            acc =
                _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * c), KV_LOAD8(f16, kbase, kj + 8 * c), acc);
        s[j - j0] = hsum256(acc) * scale;
        max = fmaxf(max, s[j - j0]);
    }
    return max;
}

/* out = out * alpha + sum_j w[j - j0] v_j over [lo, hi), 32 outputs at a time in registers;
 * value j at element (j - jb) * vs of vbase (f32 or half). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
tile_values(float *o, const void *vbase, int f16, size_t vs, int jb, int j0, int lo, int hi, int nc,
            float alpha, const float *w) {
    __m256 va = _mm256_set1_ps(alpha);
    for (int c0 = 0; c0 < nc; c0 += 4) {
        int cn = nc - c0 < 4 ? nc - c0 : 4;
        __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * c0), va), o1 = o0, o2 = o0, o3 = o0;
        if (cn > 1) o1 = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * c0 + 8), va);
        if (cn > 2) o2 = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * c0 + 16), va);
        if (cn > 3) o3 = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * c0 + 24), va);
        for (int j = lo; j < hi; j++) {
            size_t off = (size_t)(j - jb) * vs + 8 * (size_t)c0;
            __m256 wj = _mm256_broadcast_ss(w + (j - j0));
            o0 = _mm256_fmadd_ps(wj, KV_LOAD8(f16, vbase, off), o0);
            if (cn > 1) o1 = _mm256_fmadd_ps(wj, KV_LOAD8(f16, vbase, off + 8), o1);
            if (cn > 2) o2 = _mm256_fmadd_ps(wj, KV_LOAD8(f16, vbase, off + 16), o2);
            if (cn > 3) o3 = _mm256_fmadd_ps(wj, KV_LOAD8(f16, vbase, off + 24), o3);
        }
        _mm256_storeu_ps(o + 8 * c0, o0);
        if (cn > 1) _mm256_storeu_ps(o + 8 * c0 + 8, o1);
        if (cn > 2) _mm256_storeu_ps(o + 8 * c0 + 16, o2);
        if (cn > 3) _mm256_storeu_ps(o + 8 * c0 + 24, o3);
    }
}

/* The four tile kernels of one instruction set: [0] f32 cache, [1] half. */
typedef struct attn_tile_ops {
    float (*scores[2])(const float *q, const void *kbase, size_t ks, int jb, int j0, int lo, int hi,
                       int hd, float scale, float *s);
    void (*values[2])(float *o, const void *vbase, size_t vs, int jb, int j0, int lo, int hi,
                      int hd, float alpha, const float *w);
} attn_tile_ops;

#define ATTN_TILE_WRAPPERS(isa, target, min_hd)                                                    \
    target static float scores_##isa##_f32(const float *q, const void *kb, size_t ks, int jb,      \
                                           int j0, int lo, int hi, int hd, float scale,            \
                                           float *s) {                                             \
        return tile_scores_##isa(q, kb, 0, ks, jb, j0, lo, hi, hd, scale, s);                      \
    }                                                                                              \
    target static float scores_##isa##_f16(const float *q, const void *kb, size_t ks, int jb,      \
                                           int j0, int lo, int hi, int hd, float scale,            \
                                           float *s) {                                             \
        return tile_scores_##isa(q, kb, 1, ks, jb, j0, lo, hi, hd, scale, s);                      \
    }                                                                                              \
    target static void values_##isa##_f32(float *o, const void *vb, size_t vs, int jb, int j0,     \
                                          int lo, int hi, int hd, float alpha, const float *w) {   \
        tile_values_##isa(o, vb, 0, vs, jb, j0, lo, hi, hd, alpha, w);                             \
    }                                                                                              \
    target static void values_##isa##_f16(float *o, const void *vb, size_t vs, int jb, int j0,     \
                                          int lo, int hi, int hd, float alpha, const float *w) {   \
        tile_values_##isa(o, vb, 1, vs, jb, j0, lo, hi, hd, alpha, w);                             \
    }                                                                                              \
    static const attn_tile_ops tile_ops_##isa = {{scores_##isa##_f32, scores_##isa##_f16},         \
                                                 {values_##isa##_f32, values_##isa##_f16}};

/* (the AVX2 bodies take nc = hd / 8) */
#define tile_scores_avx2(q, kb, f16, ks, jb, j0, lo, hi, hd, scale, s)                             \
    tile_scores(q, kb, f16, ks, jb, j0, lo, hi, (hd) / 8, scale, s)
#define tile_values_avx2(o, vb, f16, vs, jb, j0, lo, hi, hd, alpha, w)                             \
    tile_values(o, vb, f16, vs, jb, j0, lo, hi, (hd) / 8, alpha, w)
ATTN_TILE_WRAPPERS(avx2, TARGET_AVX2, 8)

#define TARGET_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define KV_LOAD16(f16, base, off)                                                                  \
    ((f16) ? _mm512_cvtph_ps(                                                                      \
                 _mm256_loadu_si256((const __m256i *)((const uint16_t *)(base) + (off))))          \
           : _mm512_loadu_ps((const float *)(base) + (off)))

/* tile_scores with 16-float vectors (hd a multiple of 16): the four keys' sums are folded to
 * 8 lanes and then added as in the AVX2 version. */
__attribute__((target("avx512f,avx2,fma,f16c"), always_inline)) static inline float
tile_scores_avx512(const float *q, const void *kbase, int f16, size_t ks, int jb, int j0, int lo,
                   int hi, int hd, float scale, float *s) {
    int nc = hd / 16;
    float max = -INFINITY;
    int j = lo;
#define FOLD(v)                                                                                    \
    _mm256_add_ps(_mm512_castps512_ps256(v),                                                       \
                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
    for (; j + 4 <= hi; j += 4) {
        size_t k0 = (size_t)(j - jb) * ks;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < nc; c++) {
            __m512 qc = _mm512_loadu_ps(q + 16 * c);
            a0 = _mm512_fmadd_ps(qc, KV_LOAD16(f16, kbase, k0 + 16 * c), a0);
            a1 = _mm512_fmadd_ps(qc, KV_LOAD16(f16, kbase, k0 + ks + 16 * c), a1);
            a2 = _mm512_fmadd_ps(qc, KV_LOAD16(f16, kbase, k0 + 2 * ks + 16 * c), a2);
            a3 = _mm512_fmadd_ps(qc, KV_LOAD16(f16, kbase, k0 + 3 * ks + 16 * c), a3);
        }
        __m256 s01 = _mm256_hadd_ps(FOLD(a0), FOLD(a1)), s23 = _mm256_hadd_ps(FOLD(a2), FOLD(a3));
        __m256 s8 = _mm256_hadd_ps(s01, s23);
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
        s4 = _mm_mul_ps(s4, _mm_set1_ps(scale));
        _mm_storeu_ps(s + (j - j0), s4);
        for (int i = 0; i < 4; i++) max = fmaxf(max, s[j - j0 + i]);
    }
    for (; j < hi; j++) {
        size_t kj = (size_t)(j - jb) * ks;
        __m512 acc = _mm512_setzero_ps();
        for (int c = 0; c < nc; c++)
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + 16 * c), KV_LOAD16(f16, kbase, kj + 16 * c),
                                  acc);
        s[j - j0] = hsum256(FOLD(acc)) * scale;
        max = fmaxf(max, s[j - j0]);
    }
#undef FOLD
    return max;
}

/* tile_values with 16-float vectors, up to 128 outputs in registers at a time. */
__attribute__((target("avx512f,avx2,fma,f16c"), always_inline)) static inline void
tile_values_avx512(float *o, const void *vbase, int f16, size_t vs, int jb, int j0, int lo, int hi,
                   int hd, float alpha, const float *w) {
    int nc = hd / 16;
    __m512 va = _mm512_set1_ps(alpha);
    for (int c0 = 0; c0 < nc; c0 += 8) {
        int cn = nc - c0 < 8 ? nc - c0 : 8;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            acc[c] = c < cn ? _mm512_mul_ps(_mm512_loadu_ps(o + 16 * (c0 + c)), va)
                            : _mm512_setzero_ps();
        for (int j = lo; j < hi; j++) {
            size_t off = (size_t)(j - jb) * vs + 16 * (size_t)c0;
            __m512 wj = _mm512_set1_ps(w[j - j0]);
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                if (c < cn)
                    acc[c] = _mm512_fmadd_ps(wj, KV_LOAD16(f16, vbase, off + 16 * c), acc[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            if (c < cn) _mm512_storeu_ps(o + 16 * (c0 + c), acc[c]);
    }
}
ATTN_TILE_WRAPPERS(avx512, TARGET_AVX512, 16)

/* Half-precision caches read by this many rows or more are widened once per tile into the
 * scratch; fewer rows widen each element as they read it (cheaper than a copy they barely
 * reuse). Both give the same bits. */
#define ATTN_WIDEN_MIN_ROWS 6

/* The online-softmax walk over the tiles, with the tile kernels of one instruction set. */
TARGET_AVX2 static void attn_rows_with(const attn_rows_args *a, const attn_tile_ops *ops) {
    int hd = a->hd, nq = a->nq, nc = hd / 8;
    float *kt = a->scratch;          /* (ATTN_TILE, hd) the tile's keys as f32 */
    float *vt = kt + ATTN_TILE * hd; /* (ATTN_TILE, hd) its values */
    float *s = vt + ATTN_TILE * hd;  /* (ATTN_TILE + 8) one row's scores, then weights */
    float *m = s + ATTN_TILE + 16;   /* (nq) running max of each row */
    float *l = m + nq;               /* (nq) running sum of exp(score - max) */
    int widen = a->kv_f16 && nq >= ATTN_WIDEN_MIN_ROWS;
    int kmin = a->start[0], kmax = a->end[0];
    for (int i = 0; i < nq; i++) {
        kmin = a->start[i] < kmin ? a->start[i] : kmin;
        kmax = a->end[i] > kmax ? a->end[i] : kmax;
        m[i] = -INFINITY;
        l[i] = 0;
        memset(a->out[i], 0, (size_t)hd * sizeof(float));
    }
    for (int j0 = kmin / ATTN_TILE * ATTN_TILE; j0 < kmax; j0 += ATTN_TILE) {
        int j1 = j0 + ATTN_TILE < kmax ? j0 + ATTN_TILE : kmax;
        /* where key j lives: element (j - jb) * ks of kb */
        const void *kb = a->k, *vb = a->v;
        size_t ks = a->kv_stride;
        int f16 = a->kv_f16, jb = 0;
        if (widen) {
            const uint16_t *k16 = a->k, *v16 = a->v;
            for (int j = j0; j < j1; j++) {
                const uint16_t *kr = k16 + (size_t)j * a->kv_stride;
                const uint16_t *vr = v16 + (size_t)j * a->kv_stride;
                float *kd = kt + (size_t)(j - j0) * hd, *vd = vt + (size_t)(j - j0) * hd;
                for (int c = 0; c < nc; c++) {
                    _mm256_storeu_ps(kd + 8 * c, KV_LOAD8(1, kr, 8 * c));
                    _mm256_storeu_ps(vd + 8 * c, KV_LOAD8(1, vr, 8 * c));
                }
            }
            kb = kt;
            vb = vt;
            jb = j0;
            ks = (size_t)hd;
            f16 = 0;
        }
        for (int i = 0; i < nq; i++) {
            int lo = a->start[i] > j0 ? a->start[i] : j0, hi = a->end[i] < j1 ? a->end[i] : j1;
            if (lo >= hi) continue;
            float tmax = ops->scores[f16](a->q[i], kb, ks, jb, j0, lo, hi, hd, a->scale, s);
            float mn = fmaxf(m[i], tmax);
            float alpha = expf(m[i] - mn); /* 0 on the row's first tile */
            __m256 vmax = _mm256_set1_ps(mn), vsum = _mm256_setzero_ps();
            float sum = 0;
            int j = lo;
            for (; j + 8 <= hi; j += 8) {
                __m256 e = exp_neg256(_mm256_sub_ps(_mm256_loadu_ps(s + (j - j0)), vmax));
                _mm256_storeu_ps(s + (j - j0), e);
                vsum = _mm256_add_ps(vsum, e);
            }
            for (; j < hi; j++) {
                s[j - j0] = expf(s[j - j0] - mn);
                sum += s[j - j0];
            }
            l[i] = l[i] * alpha + sum + hsum256(vsum);
            m[i] = mn;
            ops->values[f16](a->out[i], vb, ks, jb, j0, lo, hi, hd, alpha, s);
        }
    }
    for (int i = 0; i < nq; i++) {
        __m256 inv = _mm256_set1_ps(1.0f / l[i]);
        for (int c = 0; c < nc; c++)
            _mm256_storeu_ps(a->out[i] + 8 * c,
                             _mm256_mul_ps(_mm256_loadu_ps(a->out[i] + 8 * c), inv));
    }
}

void attn_rows_avx2(const attn_rows_args *a) {
    if (a->hd % 8 || a->hd > 256)
        attn_rows_ref(a);
    else
        attn_rows_with(a, &tile_ops_avx2);
}

void attn_rows_avx512(const attn_rows_args *a) {
    if (a->hd % 16 || a->hd > 256)
        attn_rows_avx2(a);
    else
        attn_rows_with(a, &tile_ops_avx512);
}

int kernels_have_avx512(void) {
    __builtin_cpu_init();
    return kernels_have_avx2() && __builtin_cpu_supports("avx512f");
}

int kernels_have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#else
void dot_f32_avx2(int n, float *out, const void *w, const void *x) {
    dot_f32_ref(n, out, w, x);
}
void dot_f16_avx2(int n, float *out, const void *w, const void *x) {
    dot_f16_ref(n, out, w, x);
}
void f16_to_f32_row_f16c(const void *src, float *dst, int n) {
    f16_to_f32_row_ref(src, dst, n);
}
void f32_to_f16_row_f16c(const float *src, void *dst, int n) {
    f32_to_f16_row_ref(src, dst, n);
}
int kernels_have_avx2(void) {
    return 0;
}
void attn_rows_avx2(const attn_rows_args *a) {
    attn_rows_ref(a);
}
void attn_rows_avx512(const attn_rows_args *a) {
    attn_rows_ref(a);
}
int kernels_have_avx512(void) {
    return 0;
}
void swiglu_avx2(float *gate, const float *up, size_t n) {
    swiglu_ref(gate, up, n);
}
static void rmsnorm_avx2(float *out, const float *x, const float *w, int n, float eps) {
    (void)out, (void)x, (void)w, (void)n, (void)eps;
}
#endif

/* ==== Dispatch ==== */

static type_traits traits[GGML_TYPE_COUNT];
void (*attn_rows)(const attn_rows_args *a) = attn_rows_ref;
void (*swiglu)(float *gate, const float *up, size_t n) = swiglu_ref;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *init_desc;
static int init_ref = -1;

const char *kernels_init(int force_ref) {
    pthread_mutex_lock(&init_lock);
    if (init_ref != force_ref) {
        int simd = !force_ref && kernels_have_avx2();
        memset(traits, 0, sizeof traits);
/* a type: its activation type, dequantizer, quantizer, dot product */
#define TRAITS(act, to, from, dot)                                                                 \
    (type_traits){.supported = 1,                                                                  \
                  .vec_dot_type = (act),                                                           \
                  .to_f32 = (to),                                                                  \
                  .from_f32 = (from),                                                              \
                  .vec_dot = (dot)}
        traits[GGML_TYPE_F32] = TRAITS(GGML_TYPE_F32, f32_to_f32_row, f32_from_f32_row,
                                       simd ? dot_f32_avx2 : dot_f32_ref);
        traits[GGML_TYPE_F16] = TRAITS(
            GGML_TYPE_F32, simd ? f16_to_f32_row_f16c : f16_to_f32_row_ref,
            simd ? f32_to_f16_row_f16c : f32_to_f16_row_ref, simd ? dot_f16_avx2 : dot_f16_ref);
        traits[GGML_TYPE_BF16] =
            TRAITS(GGML_TYPE_F32, simd ? dequantize_row_bf16_avx2 : dequantize_row_bf16,
                   quantize_row_bf16, simd ? dot_bf16_f32_avx2 : dot_bf16_f32_ref);
        /* activation types: quantizers only (no dot product of their own) */
        traits[GGML_TYPE_Q8_1] = TRAITS(GGML_TYPE_Q8_1, dequantize_row_q8_1,
                                        simd ? quantize_row_q8_1_avx2 : quantize_row_q8_1, NULL);
        traits[GGML_TYPE_Q8_K] = TRAITS(GGML_TYPE_Q8_K, dequantize_row_q8_K,
                                        simd ? quantize_row_q8_K_avx2 : quantize_row_q8_K, NULL);
#define QTYPE(T, t, act, dot)                                                                      \
    traits[GGML_TYPE_##T] = TRAITS(GGML_TYPE_##act, dequantize_row_##t, quantize_row_##t,          \
                                   simd ? dot_##dot##_avx2 : dot_##dot##_ref)
        QTYPE(Q4_0, q4_0, Q8_0, q4_0_q8_0);
        QTYPE(Q4_1, q4_1, Q8_1, q4_1_q8_1);
        QTYPE(Q5_0, q5_0, Q8_0, q5_0_q8_0);
        QTYPE(Q5_1, q5_1, Q8_1, q5_1_q8_1);
        QTYPE(Q8_0, q8_0, Q8_0, q8_0_q8_0);
        QTYPE(Q4_K, q4_K, Q8_K, q4_K_q8_K);
        QTYPE(Q5_K, q5_K, Q8_K, q5_K_q8_K);
        QTYPE(Q6_K, q6_K, Q8_K, q6_K_q8_K);
#undef QTYPE
#undef TRAITS
        if (simd) {
            traits[GGML_TYPE_Q4_0].vec_dot4 = dot4_q4_0_q8_0_avx2;
            traits[GGML_TYPE_Q5_0].vec_dot4 = dot4_q5_0_q8_0_avx2;
            traits[GGML_TYPE_Q8_0].vec_dot4 = dot4_q8_0_q8_0_avx2;
            traits[GGML_TYPE_Q4_K].vec_dot4 = dot4_q4_K_q8_K_avx2;
            traits[GGML_TYPE_Q6_K].vec_dot4 = dot4_q6_K_q8_K_avx2;
        }
        /* Q8_0 is both a weight type and the activation type of Q4_0/Q5_0/Q8_0: the activation
         * side is quantized with the SIMD quantizer (same results as the reference). */
        if (simd) traits[GGML_TYPE_Q8_0].from_f32 = quantize_row_q8_0_avx2;
        attn_rows = !simd                   ? attn_rows_ref
                    : kernels_have_avx512() ? attn_rows_avx512
                                            : attn_rows_avx2;
        swiglu = simd ? swiglu_avx2 : swiglu_ref;
        use_avx2 = simd;
        quant_set_packed(simd ? quant_default_pack_mode() : MH_PACK_OFF);
        int mode = quant_packed_mode();
        init_desc = !simd                  ? "scalar"
                    : mode == MH_PACK_AMX  ? "amx-int8+avx512-vnni+avx2+fma+f16c"
                    : mode == MH_PACK_VNNI ? "avx512-vnni+avx2+fma+f16c"
                                           : "avx2+fma+f16c";
        init_ref = force_ref;
    }
    pthread_mutex_unlock(&init_lock);
    return init_desc;
}

const type_traits *kernels_traits(int ggml_type) {
    if (init_ref < 0) kernels_init(0);
    if (ggml_type < 0 || ggml_type >= GGML_TYPE_COUNT || !traits[ggml_type].supported) return NULL;
    return &traits[ggml_type];
}

/* ==== Norms and softmax ==== */

void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    if (use_avx2) {
        rmsnorm_avx2(out, x, w, n, eps);
        return;
    }
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    float sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void swiglu_ref(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* Plain two-pass softmax per row over its keys (widened to f32 first). */
void attn_rows_ref(const attn_rows_args *a) {
    int hd = a->hd;
    int kmax = 0;
    for (int i = 0; i < a->nq; i++) kmax = a->end[i] > kmax ? a->end[i] : kmax;
    float *att = a->scratch, *krow = att + kmax; /* (kmax) scores; (hd) one key or value row */
    for (int i = 0; i < a->nq; i++) {
        int lo = a->start[i], n = a->end[i] - lo;
        for (int p = 0; p < n; p++) {
            size_t off = (size_t)(lo + p) * a->kv_stride;
            if (a->kv_f16)
                f16_to_f32_row_ref((const uint16_t *)a->k + off, krow, hd);
            else
                memcpy(krow, (const float *)a->k + off, (size_t)hd * sizeof(float));
            float s;
            dot_f32_ref(hd, &s, krow, a->q[i]);
            att[p] = s * a->scale;
        }
        softmax(att, n);
        float *out = a->out[i];
        memset(out, 0, (size_t)hd * sizeof(float));
        for (int p = 0; p < n; p++) {
            size_t off = (size_t)(lo + p) * a->kv_stride;
            if (a->kv_f16)
                f16_to_f32_row_ref((const uint16_t *)a->v + off, krow, hd);
            else
                memcpy(krow, (const float *)a->v + off, (size_t)hd * sizeof(float));
            for (int d = 0; d < hd; d++) out[d] += att[p] * krow[d];
        }
    }
}
