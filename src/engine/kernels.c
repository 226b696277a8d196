/* kernels.c — see kernels.h. SIMD twins use __attribute__((target)) so the build needs no
 * -march flag; kernels_init() checks the CPU before any of them can run. */
#include "engine/kernels.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

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
    if (absx > 0x7f800000) return (uint16_t)(sign | 0x7e00); /* NaN */
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (absx < 0x38800000) { /* result is subnormal or zero */
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

int kernels_have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#else
void dot_f32_avx2(int n, float *out, const void *w, const void *x) { dot_f32_ref(n, out, w, x); }
void dot_f16_avx2(int n, float *out, const void *w, const void *x) { dot_f16_ref(n, out, w, x); }
void f16_to_f32_row_f16c(const void *src, float *dst, int n) { f16_to_f32_row_ref(src, dst, n); }
void f32_to_f16_row_f16c(const float *src, void *dst, int n) { f32_to_f16_row_ref(src, dst, n); }
int kernels_have_avx2(void) { return 0; }
#endif

/* ==== Dispatch ==== */

static type_traits traits[GGML_TYPE_COUNT];
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *init_desc;
static int init_ref = -1;

const char *kernels_init(int force_ref) {
    pthread_mutex_lock(&init_lock);
    if (init_ref != force_ref) {
        int simd = !force_ref && kernels_have_avx2();
        memset(traits, 0, sizeof traits);
        traits[GGML_TYPE_F32] = (type_traits){1, GGML_TYPE_F32, f32_to_f32_row, f32_from_f32_row,
                                              simd ? dot_f32_avx2 : dot_f32_ref, NULL};
        traits[GGML_TYPE_F16] =
            (type_traits){1, GGML_TYPE_F32, simd ? f16_to_f32_row_f16c : f16_to_f32_row_ref,
                          simd ? f32_to_f16_row_f16c : f32_to_f16_row_ref,
                          simd ? dot_f16_avx2 : dot_f16_ref, NULL};
        traits[GGML_TYPE_BF16] =
            (type_traits){1, GGML_TYPE_F32, simd ? dequantize_row_bf16_avx2 : dequantize_row_bf16,
                          quantize_row_bf16, simd ? dot_bf16_f32_avx2 : dot_bf16_f32_ref, NULL};
        /* activation types: quantizers only (no dot product of their own) */
        traits[GGML_TYPE_Q8_1] = (type_traits){1, GGML_TYPE_Q8_1, dequantize_row_q8_1,
                                               simd ? quantize_row_q8_1_avx2 : quantize_row_q8_1,
                                               NULL, NULL};
        traits[GGML_TYPE_Q8_K] = (type_traits){1, GGML_TYPE_Q8_K, dequantize_row_q8_K,
                                               simd ? quantize_row_q8_K_avx2 : quantize_row_q8_K,
                                               NULL, NULL};
#define QTYPE(T, t, act, dot)                                                                      \
    traits[GGML_TYPE_##T] = (type_traits){1, GGML_TYPE_##act, dequantize_row_##t, quantize_row_##t,  \
                                          simd ? dot_##dot##_avx2 : dot_##dot##_ref, NULL}
        QTYPE(Q4_0, q4_0, Q8_0, q4_0_q8_0);
        QTYPE(Q4_1, q4_1, Q8_1, q4_1_q8_1);
        QTYPE(Q5_0, q5_0, Q8_0, q5_0_q8_0);
        QTYPE(Q5_1, q5_1, Q8_1, q5_1_q8_1);
        QTYPE(Q8_0, q8_0, Q8_0, q8_0_q8_0);
        QTYPE(Q4_K, q4_K, Q8_K, q4_K_q8_K);
        QTYPE(Q5_K, q5_K, Q8_K, q5_K_q8_K);
        QTYPE(Q6_K, q6_K, Q8_K, q6_K_q8_K);
#undef QTYPE
        /* Q8_0 is both a weight type and the activation type of Q4_0/Q5_0/Q8_0: the activation
         * side is quantized with the SIMD quantizer (same results as the reference). */
        if (simd) traits[GGML_TYPE_Q8_0].from_f32 = quantize_row_q8_0_avx2;
        init_desc = simd ? "avx2+fma+f16c" : "scalar";
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
