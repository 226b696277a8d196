/* quant.c — see quant.h. Reference code first (quantizers, dequantizers, dot products), then the
 * AVX2+FMA+F16C twins, then the AVX512-VNNI ones, then the batched tiles. SIMD functions carry
 * __attribute__((target)) so the build needs no -march flag; kernels_init() checks the CPU
 * before any of them can run. */
#include "engine/quant.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/kernels.h"
#include "util/common.h"

/* MH_NO_SIMD: the portable code only (see kernels.c). */
#if defined(__x86_64__) && !defined(MH_NO_SIMD)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023 /* arch_prctl: ask for an XSAVE feature (Linux >= 5.16) */
#define XFEATURE_XTILEDATA  18     /* the AMX tile data */
#define HAVE_X86            1
#else
#define HAVE_X86 0
#endif

/* ==== Helpers ==== */

#define H2F(h) fp16_to_fp32(h)
#define F2H(f) fp32_to_fp16(f)

/* Round to nearest, ties to even (what the SIMD conversions do), for |x| < 2^22. */
static inline int nearest_int(float x) {
    float v = x + 12582912.0f; /* 1.5 * 2^23: the mantissa then holds round(x) */
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

float bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t fp32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ==== BF16 ==== */

void quantize_row_bf16(const float *src, void *dst, int n) {
    uint16_t *d = dst;
    for (int i = 0; i < n; i++) d[i] = fp32_to_bf16(src[i]);
}

void dequantize_row_bf16(const void *src, float *dst, int n) {
    const uint16_t *s = src;
    for (int i = 0; i < n; i++) dst[i] = bf16_to_fp32(s[i]);
}

/* ==== 32-element formats: quantizers ==== */

/* The value of largest magnitude, with its sign. */
static float signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    return max;
}

static void min_max(const float *x, int n, float *lo, float *hi) {
    *lo = FLT_MAX, *hi = -FLT_MAX;
    for (int i = 0; i < n; i++) {
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
}

/* Symmetric 2^bits-level quantization of one 32-element block: the value of largest magnitude
 * maps to the most negative level, x = d * (q - offset). Fills q[32] in [0, 2 * offset). */
static float quant_sym32(const float *x, int offset, uint8_t *q) {
    float max = signed_absmax(x, 32);
    float d = max / -(float)offset;
    float id = d != 0 ? 1.0f / d : 0.0f;
    d = H2F(F2H(d));
    for (int j = 0; j < 32; j++)
        q[j] = (uint8_t)clampi(nearest_int(x[j] * id) + offset, 0, 2 * offset - 1);
    return d;
}

/* Affine quantization to levels 0..nmax of one 32-element block: x = d * q + m. */
static void quant_affine32(const float *x, int nmax, uint8_t *q, float *d_out, float *m_out) {
    float lo, hi;
    min_max(x, 32, &lo, &hi);
    float d = (hi - lo) / (float)nmax;
    float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) q[j] = (uint8_t)clampi(nearest_int((x[j] - lo) * id), 0, nmax);
    *d_out = d;
    *m_out = lo;
}

static void pack_nibbles16(const uint8_t *q, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
}

static uint32_t pack_fifth_bits(const uint8_t *q) {
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) qh |= (uint32_t)((q[j] >> 4) & 1) << j;
    return qh;
}

void quantize_row_q4_0(const float *src, void *dst, int n) {
    block_q4_0 *y = dst;
    uint8_t q[32];
    for (int i = 0; i < n / QK4_0; i++) {
        y[i].d = F2H(quant_sym32(src + i * 32, 8, q));
        pack_nibbles16(q, y[i].qs);
    }
}

void quantize_row_q4_1(const float *src, void *dst, int n) {
    block_q4_1 *y = dst;
    uint8_t q[32];
    float d, m;
    for (int i = 0; i < n / QK4_1; i++) {
        quant_affine32(src + i * 32, 15, q, &d, &m);
        y[i].d = F2H(d);
        y[i].m = F2H(m);
        pack_nibbles16(q, y[i].qs);
    }
}

void quantize_row_q5_0(const float *src, void *dst, int n) {
    block_q5_0 *y = dst;
    uint8_t q[32];
    for (int i = 0; i < n / QK5_0; i++) {
        y[i].d = F2H(quant_sym32(src + i * 32, 16, q));
        uint32_t qh = pack_fifth_bits(q);
        memcpy(y[i].qh, &qh, 4);
        pack_nibbles16(q, y[i].qs);
    }
}

void quantize_row_q5_1(const float *src, void *dst, int n) {
    block_q5_1 *y = dst;
    uint8_t q[32];
    float d, m;
    for (int i = 0; i < n / QK5_1; i++) {
        quant_affine32(src + i * 32, 31, q, &d, &m);
        y[i].d = F2H(d);
        y[i].m = F2H(m);
        uint32_t qh = pack_fifth_bits(q);
        memcpy(y[i].qh, &qh, 4);
        pack_nibbles16(q, y[i].qs);
    }
}

/* Q8_0 and Q8_1 as llama.cpp's x86 code makes them: id = 127 / amax, round half to even. */
void quantize_row_q8_0(const float *src, void *dst, int n) {
    block_q8_0 *y = dst;
    for (int i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        y[i].d = F2H(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)nearest_int(x[j] * id);
    }
}

void quantize_row_q8_1(const float *src, void *dst, int n) {
    block_q8_1 *y = dst;
    for (int i = 0; i < n / QK8_1; i++) {
        const float *x = src + i * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            y[i].qs[j] = (int8_t)nearest_int(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].d = F2H(d);
        y[i].s = F2H((float)sum * d);
    }
}

/* ==== 32-element formats: dequantizers ==== */

void dequantize_row_q4_0(const void *src, float *dst, int n) {
    const block_q4_0 *x = src;
    for (int i = 0; i < n / QK4_0; i++) {
        float d = H2F(x[i].d);
        for (int j = 0; j < 16; j++) {
            dst[i * 32 + j] = d * (float)((x[i].qs[j] & 15) - 8);
            dst[i * 32 + j + 16] = d * (float)((x[i].qs[j] >> 4) - 8);
        }
    }
}

void dequantize_row_q4_1(const void *src, float *dst, int n) {
    const block_q4_1 *x = src;
    for (int i = 0; i < n / QK4_1; i++) {
        float d = H2F(x[i].d), m = H2F(x[i].m);
        for (int j = 0; j < 16; j++) {
            dst[i * 32 + j] = d * (float)(x[i].qs[j] & 15) + m;
            dst[i * 32 + j + 16] = d * (float)(x[i].qs[j] >> 4) + m;
        }
    }
}

void dequantize_row_q5_0(const void *src, float *dst, int n) {
    const block_q5_0 *x = src;
    for (int i = 0; i < n / QK5_0; i++) {
        float d = H2F(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int lo = (x[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[i * 32 + j] = d * (float)(lo - 16);
            dst[i * 32 + j + 16] = d * (float)(hi - 16);
        }
    }
}

void dequantize_row_q5_1(const void *src, float *dst, int n) {
    const block_q5_1 *x = src;
    for (int i = 0; i < n / QK5_1; i++) {
        float d = H2F(x[i].d), m = H2F(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int lo = (x[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[i * 32 + j] = d * (float)lo + m;
            dst[i * 32 + j + 16] = d * (float)hi + m;
        }
    }
}

void dequantize_row_q8_0(const void *src, float *dst, int n) {
    const block_q8_0 *x = src;
    for (int i = 0; i < n / QK8_0; i++) {
        float d = H2F(x[i].d);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = d * (float)x[i].qs[j];
    }
}

void dequantize_row_q8_1(const void *src, float *dst, int n) {
    const block_q8_1 *x = src;
    for (int i = 0; i < n / QK8_1; i++) {
        float d = H2F(x[i].d);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = d * (float)x[i].qs[j];
    }
}

/* ==== K-quants: quantizers ==== */

/* Fit x ~= scale * q + offset (offset <= 0) with q in 0..nmax over n values: try a range of
 * step sizes around (max - min) / nmax, refit scale and offset by least squares for each
 * assignment, keep the one of least squared error. Returns scale, *offset_out <= 0. */
static float fit_affine(const float *x, int n, int nmax, float *offset_out) {
    float lo, hi;
    min_max(x, n, &lo, &hi);
    if (lo > 0) lo = 0;
    if (hi <= lo) {
        *offset_out = lo;
        return 0;
    }
    float best_scale = (hi - lo) / (float)nmax, best_offset = lo, best_err = FLT_MAX;
    uint8_t q[32];
    for (int step = -10; step <= 10; step++) {
        float iscale = ((float)nmax + 0.1f * (float)step) / (hi - lo);
        float sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int i = 0; i < n; i++) {
            q[i] = (uint8_t)clampi(nearest_int((x[i] - lo) * iscale), 0, nmax);
            sq += q[i], sqq += (float)q[i] * q[i], sx += x[i], sqx += (float)q[i] * x[i];
        }
        float det = (float)n * sqq - sq * sq;
        if (det <= 0) continue;
        float scale = ((float)n * sqx - sq * sx) / det;
        float offset = (sx - scale * sq) / (float)n;
        if (offset > 0) { /* the format cannot add: refit the scale alone */
            offset = 0;
            scale = sqq > 0 ? sqx / sqq : 0;
        }
        if (scale <= 0) continue;
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = scale * (float)q[i] + offset - x[i];
            err += e * e;
        }
        if (err < best_err) best_err = err, best_scale = scale, best_offset = offset;
    }
    *offset_out = best_offset;
    return best_scale;
}

/* Pack 8 six-bit scales and mins into the 12 bytes of Q4_K/Q5_K (layout in quant.h). */
static void pack_scales_k4(const uint8_t *sc, const uint8_t *m, uint8_t *s) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)((m[j] & 63) | (m[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

static void unpack_scales_k4(const uint8_t *s, uint8_t *sc, uint8_t *m) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 15) | (s[j] >> 6) << 4);
        m[j + 4] = (uint8_t)((s[j + 8] >> 4) | (s[j + 4] >> 6) << 4);
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): 8 sub-blocks of 32, each fit affinely, their
 * scales and mins quantized to 6 bits under fp16 super-block factors; then every element is
 * re-quantized against the scales as stored. Fills q[256], the header fields and scales. */
static void quant_k_affine(const float *x, int nmax, uint8_t *q, uint16_t *d_out,
                           uint16_t *dmin_out, uint8_t *scales) {
    float scale[8], min[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float offset;
        scale[j] = fit_affine(x + 32 * j, 32, nmax, &offset);
        min[j] = -offset;
        if (scale[j] > max_scale) max_scale = scale[j];
        if (min[j] > max_min) max_min = min[j];
    }
    float d = H2F(F2H(max_scale / 63.0f)), dmin = H2F(F2H(max_min / 63.0f));
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)(d > 0 ? clampi(nearest_int(scale[j] / d), 0, 63) : 0);
        m[j] = (uint8_t)(dmin > 0 ? clampi(nearest_int(min[j] / dmin), 0, 63) : 0);
    }
    *d_out = F2H(d);
    *dmin_out = F2H(dmin);
    pack_scales_k4(sc, m, scales);
    for (int j = 0; j < 8; j++) {
        float ds = d * sc[j], dm = dmin * m[j];
        for (int l = 0; l < 32; l++)
            q[32 * j + l] =
                (uint8_t)(ds > 0 ? clampi(nearest_int((x[32 * j + l] + dm) / ds), 0, nmax) : 0);
    }
}

void quantize_row_q4_K(const float *src, void *dst, int n) {
    block_q4_K *y = dst;
    uint8_t q[QK_K];
    for (int i = 0; i < n / QK_K; i++) {
        quant_k_affine(src + i * QK_K, 15, q, &y[i].d, &y[i].dmin, y[i].scales);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
    }
}

void quantize_row_q5_K(const float *src, void *dst, int n) {
    block_q5_K *y = dst;
    uint8_t q[QK_K];
    for (int i = 0; i < n / QK_K; i++) {
        quant_k_affine(src + i * QK_K, 31, q, &y[i].d, &y[i].dmin, y[i].scales);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                y[i].qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
            }
    }
}

/* Symmetric fit x ~= scale * (q - 32), q in 0..63, of one 16-element group: candidate step
 * sizes around |max| / 32, least-squares scale for each assignment, least error wins. */
static float fit_sym6(const float *x) {
    float max = signed_absmax(x, 16);
    if (max == 0) return 0;
    float best_scale = max / -32.0f, best_err = FLT_MAX;
    for (int step = -8; step <= 8; step++) {
        float iscale = (-32.0f + 0.25f * (float)step) / max;
        float sqx = 0, sqq = 0;
        int q[16];
        for (int i = 0; i < 16; i++) {
            q[i] = clampi(nearest_int(x[i] * iscale), -32, 31);
            sqx += (float)q[i] * x[i], sqq += (float)q[i] * (float)q[i];
        }
        if (sqq <= 0) continue;
        float scale = sqx / sqq, err = 0;
        for (int i = 0; i < 16; i++) {
            float e = scale * (float)q[i] - x[i];
            err += e * e;
        }
        if (err < best_err) best_err = err, best_scale = scale;
    }
    return best_scale;
}

void quantize_row_q6_K(const float *src, void *dst, int n) {
    block_q6_K *y = dst;
    for (int i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float scale[16], max_scale = 0, amax = 0;
        for (int g = 0; g < 16; g++) {
            scale[g] = fit_sym6(x + 16 * g);
            if (fabsf(scale[g]) > amax) amax = fabsf(scale[g]), max_scale = scale[g];
        }
        uint8_t q[QK_K];
        if (amax == 0) {
            memset(y + i, 0, sizeof *y);
            memset(q, 32, sizeof q);
        } else {
            float iscale = -128.0f / max_scale;
            float d = H2F(F2H(1.0f / iscale));
            y[i].d = F2H(d);
            for (int g = 0; g < 16; g++) {
                int s = clampi(nearest_int(iscale * scale[g]), -128, 127);
                y[i].scales[g] = (int8_t)s;
                float ds = d * (float)s;
                for (int l = 0; l < 16; l++)
                    q[16 * g + l] =
                        (uint8_t)(ds != 0 ? clampi(nearest_int(x[16 * g + l] / ds), -32, 31) + 32
                                          : 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            const uint8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((qq[l] & 15) | (qq[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((qq[l + 32] & 15) | (qq[l + 96] & 15) << 4);
                qh[l] = (uint8_t)((qq[l] >> 4) | (qq[l + 32] >> 4) << 2 | (qq[l + 64] >> 4) << 4 |
                                  (qq[l + 96] >> 4) << 6);
            }
        }
    }
}

/* Q8_K as llama.cpp makes it: the value of largest magnitude maps to -127. */
void quantize_row_q8_K(const float *src, void *dst, int n) {
    block_q8_K *y = dst;
    for (int i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float max = signed_absmax(x, QK_K);
        if (max == 0) {
            memset(y + i, 0, sizeof *y);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) y[i].qs[j] = (int8_t)MH_MIN(127, nearest_int(iscale * x[j]));
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ==== K-quants: dequantizers ==== */

void dequantize_row_q4_K(const void *src, float *dst, int n) {
    const block_q4_K *x = src;
    for (int i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = H2F(x[i].d), dmin = H2F(x[i].dmin);
        uint8_t sc[8], m[8];
        unpack_scales_k4(x[i].scales, sc, m);
        for (int c = 0; c < 4; c++) {
            const uint8_t *qs = x[i].qs + 32 * c;
            float d1 = d * sc[2 * c], m1 = dmin * m[2 * c];
            float d2 = d * sc[2 * c + 1], m2 = dmin * m[2 * c + 1];
            for (int l = 0; l < 32; l++) {
                dst[64 * c + l] = d1 * (float)(qs[l] & 15) - m1;
                dst[64 * c + 32 + l] = d2 * (float)(qs[l] >> 4) - m2;
            }
        }
    }
}

void dequantize_row_q5_K(const void *src, float *dst, int n) {
    const block_q5_K *x = src;
    for (int i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = H2F(x[i].d), dmin = H2F(x[i].dmin);
        uint8_t sc[8], m[8];
        unpack_scales_k4(x[i].scales, sc, m);
        for (int c = 0; c < 4; c++) {
            const uint8_t *qs = x[i].qs + 32 * c;
            float d1 = d * sc[2 * c], m1 = dmin * m[2 * c];
            float d2 = d * sc[2 * c + 1], m2 = dmin * m[2 * c + 1];
            for (int l = 0; l < 32; l++) {
                int lo = (qs[l] & 15) | ((x[i].qh[l] >> (2 * c)) & 1) << 4;
                int hi = (qs[l] >> 4) | ((x[i].qh[l] >> (2 * c + 1)) & 1) << 4;
                dst[64 * c + l] = d1 * (float)lo - m1;
                dst[64 * c + 32 + l] = d2 * (float)hi - m2;
            }
        }
    }
}

/* The 256 six-bit quants of a Q6_K block, 0..63 in element order. */
static void unpack_q6_K(const block_q6_K *b, uint8_t *q) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        uint8_t *qq = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            qq[l] = (uint8_t)((ql[l] & 15) | (qh[l] & 3) << 4);
            qq[l + 32] = (uint8_t)((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4);
            qq[l + 64] = (uint8_t)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
            qq[l + 96] = (uint8_t)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
        }
    }
}

void dequantize_row_q6_K(const void *src, float *dst, int n) {
    const block_q6_K *x = src;
    uint8_t q[QK_K];
    for (int i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = H2F(x[i].d);
        unpack_q6_K(&x[i], q);
        for (int e = 0; e < QK_K; e++) dst[e] = d * (float)x[i].scales[e / 16] * (float)(q[e] - 32);
    }
}

void dequantize_row_q8_K(const void *src, float *dst, int n) {
    const block_q8_K *x = src;
    for (int i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; j++) dst[i * QK_K + j] = x[i].d * (float)x[i].qs[j];
}

/* ==== Reference dot products ====
 * Integer sums per block, then the block's float factors, as llama.cpp's reference code. */

void dot_q4_0_q8_0_ref(int n, float *out, const void *w, const void *x) {
    const block_q4_0 *a = w;
    const block_q8_0 *b = x;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += ((a[i].qs[j] & 15) - 8) * b[i].qs[j] + ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + 16];
        sum += (float)s * H2F(a[i].d) * H2F(b[i].d);
    }
    *out = sum;
}

void dot_q4_1_q8_1_ref(int n, float *out, const void *w, const void *x) {
    const block_q4_1 *a = w;
    const block_q8_1 *b = x;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += (a[i].qs[j] & 15) * b[i].qs[j] + (a[i].qs[j] >> 4) * b[i].qs[j + 16];
        sum += (float)s * H2F(a[i].d) * H2F(b[i].d) + H2F(a[i].m) * H2F(b[i].s);
    }
    *out = sum;
}

void dot_q5_0_q8_0_ref(int n, float *out, const void *w, const void *x) {
    const block_q5_0 *a = w;
    const block_q8_0 *b = x;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        uint32_t qh;
        memcpy(&qh, a[i].qh, 4);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            int lo = ((a[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4) - 16;
            int hi = ((a[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            s += lo * b[i].qs[j] + hi * b[i].qs[j + 16];
        }
        sum += (float)s * H2F(a[i].d) * H2F(b[i].d);
    }
    *out = sum;
}

void dot_q5_1_q8_1_ref(int n, float *out, const void *w, const void *x) {
    const block_q5_1 *a = w;
    const block_q8_1 *b = x;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        uint32_t qh;
        memcpy(&qh, a[i].qh, 4);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (a[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            int hi = (a[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            s += lo * b[i].qs[j] + hi * b[i].qs[j + 16];
        }
        sum += (float)s * H2F(a[i].d) * H2F(b[i].d) + H2F(a[i].m) * H2F(b[i].s);
    }
    *out = sum;
}

void dot_q8_0_q8_0_ref(int n, float *out, const void *w, const void *x) {
    const block_q8_0 *a = w;
    const block_q8_0 *b = x;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        int s = 0;
        for (int j = 0; j < 32; j++) s += a[i].qs[j] * b[i].qs[j];
        sum += (float)s * H2F(a[i].d) * H2F(b[i].d);
    }
    *out = sum;
}

void dot_q4_K_q8_K_ref(int n, float *out, const void *w, const void *x) {
    const block_q4_K *a = w;
    const block_q8_K *b = x;
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        unpack_scales_k4(a[i].scales, sc, m);
        int sumi = 0, summ = 0;
        for (int c = 0; c < 4; c++) {
            const uint8_t *qs = a[i].qs + 32 * c;
            const int8_t *q8 = b[i].qs + 64 * c;
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++)
                s1 += (qs[l] & 15) * q8[l], s2 += (qs[l] >> 4) * q8[l + 32];
            sumi += sc[2 * c] * s1 + sc[2 * c + 1] * s2;
        }
        for (int j = 0; j < 8; j++) summ += m[j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        sum += b[i].d * (H2F(a[i].d) * (float)sumi - H2F(a[i].dmin) * (float)summ);
    }
    *out = sum;
}

void dot_q5_K_q8_K_ref(int n, float *out, const void *w, const void *x) {
    const block_q5_K *a = w;
    const block_q8_K *b = x;
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        unpack_scales_k4(a[i].scales, sc, m);
        int sumi = 0, summ = 0;
        for (int c = 0; c < 4; c++) {
            const uint8_t *qs = a[i].qs + 32 * c;
            const int8_t *q8 = b[i].qs + 64 * c;
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                int lo = (qs[l] & 15) | ((a[i].qh[l] >> (2 * c)) & 1) << 4;
                int hi = (qs[l] >> 4) | ((a[i].qh[l] >> (2 * c + 1)) & 1) << 4;
                s1 += lo * q8[l], s2 += hi * q8[l + 32];
            }
            sumi += sc[2 * c] * s1 + sc[2 * c + 1] * s2;
        }
        for (int j = 0; j < 8; j++) summ += m[j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        sum += b[i].d * (H2F(a[i].d) * (float)sumi - H2F(a[i].dmin) * (float)summ);
    }
    *out = sum;
}

void dot_q6_K_q8_K_ref(int n, float *out, const void *w, const void *x) {
    const block_q6_K *a = w;
    const block_q8_K *b = x;
    float sum = 0;
    uint8_t q[QK_K];
    for (int i = 0; i < n / QK_K; i++) {
        unpack_q6_K(&a[i], q);
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += (q[16 * g + l] - 32) * b[i].qs[16 * g + l];
            sumi += a[i].scales[g] * s;
        }
        sum += b[i].d * H2F(a[i].d) * (float)sumi;
    }
    *out = sum;
}

void dot_bf16_f32_ref(int n, float *out, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    float sum = 0;
    for (int i = 0; i < n; i++) sum += bf16_to_fp32(a[i]) * b[i];
    *out = sum;
}

/* ==== AVX2 + FMA + F16C ==== */

#if HAVE_X86
#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

TARGET_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TARGET_AVX2 static inline float hsum128_ps(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TARGET_AVX2 static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

TARGET_AVX2 static inline float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

/* The 32 nibbles of 16 bytes in element order (byte j: element j low, element j + 16 high). */
TARGET_AVX2 static inline __m256i nibbles32(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(15));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set. */
TARGET_AVX2 static inline __m256i bits_to_bytes(uint32_t bits) {
    const __m256i shuf =
        _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfell));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

/* Signed 8-bit dot product in 8 int32 lanes (|w| <= 128, |x| <= 127: no saturation). */
TARGET_AVX2 static inline __m256i dot_i8(__m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Unsigned (w <= 63) times signed 8-bit dot product in 8 int32 lanes. */
TARGET_AVX2 static inline __m256i dot_u8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

TARGET_AVX2 static inline __m256i q5_0_weights(const block_q5_0 *b) {
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    /* (q | 16) - 16 == q when the fifth bit is set, q | 0xF0 (== q - 16) when it is not */
    return _mm256_or_si256(nibbles32(b->qs),
                           _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8((char)0xF0)));
}

TARGET_AVX2 static inline __m256i q5_1_weights(const block_q5_1 *b) {
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    return _mm256_or_si256(nibbles32(b->qs),
                           _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16)));
}

#define LOAD256(p) _mm256_loadu_si256((const __m256i *)(p))

TARGET_AVX2 void dot_q8_0_q8_0_avx2(int n, float *out, const void *w, const void *x) {
    const block_q8_0 *a = w, *b = x;
    int nb = n / 32, i = 0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 2 <= nb; i += 2) {
        __m256i p0 = dot_i8(LOAD256(a[i].qs), LOAD256(b[i].qs));
        __m256i p1 = dot_i8(LOAD256(a[i + 1].qs), LOAD256(b[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), _mm256_cvtepi32_ps(p0),
                               acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i + 1].d) * h2f(b[i + 1].d)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i p0 = dot_i8(LOAD256(a[i].qs), LOAD256(b[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), _mm256_cvtepi32_ps(p0),
                               acc0);
    }
    *out = hsum_ps(_mm256_add_ps(acc0, acc1));
}

TARGET_AVX2 void dot_q4_0_q8_0_avx2(int n, float *out, const void *w, const void *x) {
    const block_q4_0 *a = w;
    const block_q8_0 *b = x;
    int nb = n / 32, i = 0;
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 2 <= nb; i += 2) {
        __m256i p0 = dot_i8(_mm256_sub_epi8(nibbles32(a[i].qs), eight), LOAD256(b[i].qs));
        __m256i p1 = dot_i8(_mm256_sub_epi8(nibbles32(a[i + 1].qs), eight), LOAD256(b[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), _mm256_cvtepi32_ps(p0),
                               acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i + 1].d) * h2f(b[i + 1].d)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i p0 = dot_i8(_mm256_sub_epi8(nibbles32(a[i].qs), eight), LOAD256(b[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), _mm256_cvtepi32_ps(p0),
                               acc0);
    }
    *out = hsum_ps(_mm256_add_ps(acc0, acc1));
}

TARGET_AVX2 void dot_q5_0_q8_0_avx2(int n, float *out, const void *w, const void *x) {
    const block_q5_0 *a = w;
    const block_q8_0 *b = x;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / 32; i++) {
        __m256i p = dot_i8(q5_0_weights(&a[i]), LOAD256(b[i].qs));
        acc =
            _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *out = hsum_ps(acc);
}

TARGET_AVX2 void dot_q4_1_q8_1_avx2(int n, float *out, const void *w, const void *x) {
    const block_q4_1 *a = w;
    const block_q8_1 *b = x;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int i = 0; i < n / 32; i++) {
        __m256i p = dot_u8(nibbles32(a[i].qs), LOAD256(b[i].qs));
        acc =
            _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(a[i].m) * h2f(b[i].s);
    }
    *out = hsum_ps(acc) + summs;
}

TARGET_AVX2 void dot_q5_1_q8_1_avx2(int n, float *out, const void *w, const void *x) {
    const block_q5_1 *a = w;
    const block_q8_1 *b = x;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int i = 0; i < n / 32; i++) {
        __m256i p = dot_u8(q5_1_weights(&a[i]), LOAD256(b[i].qs));
        acc =
            _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(a[i].m) * h2f(b[i].s);
    }
    *out = hsum_ps(acc) + summs;
}

/* Q4_K/Q5_K scales and mins, 8 bytes each, with 32-bit word operations. */
static inline void unpack_scales_k4_fast(const uint8_t *s, uint8_t *sc, uint8_t *m) {
    uint32_t u0, u1, u2, v[4];
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    v[0] = u0 & 0x3f3f3f3f;
    v[1] = (u2 & 0x0f0f0f0f) | ((u0 >> 6) & 0x03030303) << 4;
    v[2] = u1 & 0x3f3f3f3f;
    v[3] = ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 6) & 0x03030303) << 4;
    memcpy(sc, v, 8);
    memcpy(m, v + 2, 8);
}

/* dmin * sum_j m[j] * (bsums[2j] + bsums[2j + 1]) in 4 float lanes. */
TARGET_AVX2 static inline __m128 k4_mins(const uint8_t *m, const int16_t *bsums) {
    __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)m));
    __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums),
                                _mm_loadu_si128((const __m128i *)(bsums + 8)));
    return _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs));
}

TARGET_AVX2 void dot_q4_K_q8_K_avx2(int n, float *out, const void *w, const void *x) {
    const block_q4_K *a = w;
    const block_q8_K *b = x;
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        float d = b[i].d * h2f(a[i].d), dmin = -b[i].d * h2f(a[i].dmin);
        uint8_t sc[8], m[8];
        unpack_scales_k4_fast(a[i].scales, sc, m);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), k4_mins(m, b[i].bsums), accm);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q4 = LOAD256(a[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q4, m4),
                    hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            __m256i pl = _mm256_maddubs_epi16(lo, LOAD256(b[i].qs + 64 * c));
            __m256i ph = _mm256_maddubs_epi16(hi, LOAD256(b[i].qs + 64 * c + 32));
            pl = _mm256_madd_epi16(pl, _mm256_set1_epi16(sc[2 * c]));
            ph = _mm256_madd_epi16(ph, _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *out = hsum_ps(acc) + hsum128_ps(accm);
}

TARGET_AVX2 void dot_q5_K_q8_K_avx2(int n, float *out, const void *w, const void *x) {
    const block_q5_K *a = w;
    const block_q8_K *b = x;
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        float d = b[i].d * h2f(a[i].d), dmin = -b[i].d * h2f(a[i].dmin);
        uint8_t sc[8], m[8];
        unpack_scales_k4_fast(a[i].scales, sc, m);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), k4_mins(m, b[i].bsums), accm);
        __m256i sumi = _mm256_setzero_si256();
        __m256i qh = LOAD256(a[i].qh);
        for (int c = 0; c < 4; c++) {
            __m256i q4 = LOAD256(a[i].qs + 32 * c);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, m4),
                                         _mm256_slli_epi16(_mm256_and_si256(qh, one), 4));
            __m256i hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4));
            qh = _mm256_srli_epi16(qh, 2);
            __m256i pl = _mm256_maddubs_epi16(lo, LOAD256(b[i].qs + 64 * c));
            __m256i ph = _mm256_maddubs_epi16(hi, LOAD256(b[i].qs + 64 * c + 32));
            pl = _mm256_madd_epi16(pl, _mm256_set1_epi16(sc[2 * c]));
            ph = _mm256_madd_epi16(ph, _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *out = hsum_ps(acc) + hsum128_ps(accm);
}

/* Q6_K: the four 32-element groups of a 128-element half, as unsigned 6-bit bytes. */
TARGET_AVX2 static inline void q6_K_half(const uint8_t *ql, const uint8_t *qh, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    __m256i la = LOAD256(ql), lb = LOAD256(ql + 32), h = LOAD256(qh);
    q[0] = _mm256_or_si256(_mm256_and_si256(la, m4), _mm256_slli_epi16(_mm256_and_si256(h, m2), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(lb, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4));
}

/* Shuffles that spread the int16 scales (8 per half, both lanes) over a 32-element group g:
 * scale 2g on the low 16 elements, scale 2g + 1 on the high 16. */
TARGET_AVX2 static inline __m256i q6_scale_shuffle(int g) {
    short lo = (short)((4 * g + 1) << 8 | (4 * g)), hi = (short)((4 * g + 3) << 8 | (4 * g + 2));
    return _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
}

TARGET_AVX2 void dot_q6_K_q8_K_avx2(int n, float *out, const void *w, const void *x) {
    const block_q6_K *a = w;
    const block_q8_K *b = x;
    __m256i shuf[4];
    for (int g = 0; g < 4; g++) shuf[g] = q6_scale_shuffle(g);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
        /* sum((q - 32) * x) = sum(q * x) - 32 * sum(x): the second term from bsums */
        __m256i corr = _mm256_madd_epi16(sc16, LOAD256(b[i].bsums));
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i scl = _mm256_broadcastsi128_si256(
                _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(a[i].scales + 8 * h))));
            __m256i q[4];
            q6_K_half(a[i].ql + 64 * h, a[i].qh + 32 * h, q);
            for (int g = 0; g < 4; g++) {
                __m256i p = _mm256_maddubs_epi16(q[g], LOAD256(b[i].qs + 128 * h + 32 * g));
                sumi =
                    _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_shuffle_epi8(scl, shuf[g])));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *out = hsum_ps(acc);
}

TARGET_AVX2 static inline __m256 load_bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

TARGET_AVX2 void dot_bf16_f32_avx2(int n, float *out, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(load_bf16x8(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(load_bf16x8(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(load_bf16x8(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(load_bf16x8(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(load_bf16x8(a + i), _mm256_loadu_ps(b + i), acc0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += bf16_to_fp32(a[i]) * b[i];
    *out = sum;
}

TARGET_AVX2 void dequantize_row_bf16_avx2(const void *src, float *dst, int n) {
    const uint16_t *s = src;
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(s + i));
    for (; i < n; i++) dst[i] = bf16_to_fp32(s[i]);
}

/* ---- activation quantizers ---- */

TARGET_AVX2 static inline float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* round(x * id) for 32 floats, packed to int8 in order; *sum gets the sum of the quants. */
TARGET_AVX2 static inline __m256i quant32(const float *x, __m256 id, int *sum) {
    __m256i i[4];
    for (int k = 0; k < 4; k++)
        i[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (sum)
        *sum = hsum_epi32(
            _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TARGET_AVX2 static inline float absmax32(const float *x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    for (int k = 1; k < 4; k++)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)));
    return hmax_ps(m);
}

TARGET_AVX2 void quantize_row_q8_0_avx2(const float *src, void *dst, int n) {
    block_q8_0 *y = dst;
    for (int i = 0; i < n / 32; i++) {
        float amax = absmax32(src + 32 * i);
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        y[i].d = F2H(amax / 127.0f);
        _mm256_storeu_si256((__m256i *)y[i].qs, quant32(src + 32 * i, _mm256_set1_ps(id), NULL));
    }
}

TARGET_AVX2 void quantize_row_q8_1_avx2(const float *src, void *dst, int n) {
    block_q8_1 *y = dst;
    for (int i = 0; i < n / 32; i++) {
        float amax = absmax32(src + 32 * i);
        float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        int sum;
        _mm256_storeu_si256((__m256i *)y[i].qs, quant32(src + 32 * i, _mm256_set1_ps(id), &sum));
        y[i].d = F2H(d);
        y[i].s = F2H((float)sum * d);
    }
}

TARGET_AVX2 void quantize_row_q8_K_avx2(const float *src, void *dst, int n) {
    block_q8_K *y = dst;
    for (int i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float amax = 0;
        for (int k = 0; k < 8; k++) amax = fmaxf(amax, absmax32(x + 32 * k));
        if (amax == 0) {
            memset(y + i, 0, sizeof *y);
            continue;
        }
        float max = 0; /* the first value of that magnitude, with its sign (as the reference) */
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        float iscale = -127.0f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        for (int k = 0; k < 8; k++) {
            __m256i q = quant32(x + 32 * k, vs, NULL);
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * k), q);
            /* bsums of the two 16-element groups: widen, pair-add, sum each 128-bit half */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
                                          _mm256_set1_epi16(1));
            __m128i lo = _mm256_castsi256_si128(s), hi = _mm256_extracti128_si256(s, 1);
            lo = _mm_hadd_epi32(lo, hi);
            lo = _mm_hadd_epi32(lo, lo);
            y[i].bsums[2 * k] = (int16_t)_mm_cvtsi128_si32(lo);
            y[i].bsums[2 * k + 1] = (int16_t)_mm_extract_epi32(lo, 1);
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- four activation rows at a time ----
 * The weight block is loaded (and unpacked) once and used for four tokens: batched prefill on
 * CPUs without the packed AVX512 kernels. out[t] = dot(w, row t of x), rows xs bytes apart. */

/* Signed weights of one 32-element block against four tokens' Q8_0 blocks. */
TARGET_AVX2 static inline void dot4_block32(__m256i wq, float dw, const block_q8_0 *const xb[4],
                                            int i, __m256 acc[4]) {
    __m256i aw = _mm256_sign_epi8(wq, wq);
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(LOAD256(xb[t][i].qs), wq));
        p = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
        acc[t] =
            _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(xb[t][i].d)), _mm256_cvtepi32_ps(p), acc[t]);
    }
}

#define DOT4_B32(name, block_t, WEIGHTS)                                                           \
    TARGET_AVX2 void name(int n, float *out, const void *w, const void *x, size_t xs) {            \
        const block_t *a = w;                                                                      \
        const block_q8_0 *xb[4];                                                                   \
        for (int t = 0; t < 4; t++) xb[t] = (const block_q8_0 *)((const uint8_t *)x + t * xs);     \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),            \
                         _mm256_setzero_ps()};                                                     \
        for (int i = 0; i < n / 32; i++) dot4_block32(WEIGHTS, h2f(a[i].d), xb, i, acc);           \
        for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]);                                      \
    }
DOT4_B32(dot4_q8_0_q8_0_avx2, block_q8_0, LOAD256(a[i].qs))
DOT4_B32(dot4_q4_0_q8_0_avx2, block_q4_0, _mm256_sub_epi8(nibbles32(a[i].qs), _mm256_set1_epi8(8)))
DOT4_B32(dot4_q5_0_q8_0_avx2, block_q5_0, q5_0_weights(&a[i]))

TARGET_AVX2 void dot4_q4_K_q8_K_avx2(int n, float *out, const void *w, const void *x, size_t xs) {
    const block_q4_K *a = w;
    const block_q8_K *b[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) b[t] = (const block_q8_K *)((const uint8_t *)x + t * xs);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[4];
    __m128 accm[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) acc[t] = _mm256_setzero_ps(), accm[t] = _mm_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        unpack_scales_k4_fast(a[i].scales, sc, m);
        float d = h2f(a[i].d), dmin = h2f(a[i].dmin);
        __m256i sumi[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            sumi[t] = _mm256_setzero_si256();
            accm[t] =
                _mm_fmadd_ps(_mm_set1_ps(-dmin * b[t][i].d), k4_mins(m, b[t][i].bsums), accm[t]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i q4 = LOAD256(a[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q4, m4),
                    hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            __m256i sl = _mm256_set1_epi16(sc[2 * c]), sh = _mm256_set1_epi16(sc[2 * c + 1]);
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                __m256i pl =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, LOAD256(b[t][i].qs + 64 * c)), sl);
                __m256i ph = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(hi, LOAD256(b[t][i].qs + 64 * c + 32)), sh);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(pl, ph));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
            acc[t] =
                _mm256_fmadd_ps(_mm256_set1_ps(d * b[t][i].d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]) + hsum128_ps(accm[t]);
}

TARGET_AVX2 void dot4_q6_K_q8_K_avx2(int n, float *out, const void *w, const void *x, size_t xs) {
    const block_q6_K *a = w;
    const block_q8_K *b[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) b[t] = (const block_q8_K *)((const uint8_t *)x + t * xs);
    __m256i shuf[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) shuf[g] = q6_scale_shuffle(g);
    __m256 acc[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) acc[t] = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
        __m256i sumi[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) /* the -32 offset through bsums, as dot_q6_K_q8_K_avx2 */
            sumi[t] = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32(_mm256_madd_epi16(sc16, LOAD256(b[t][i].bsums)), 5));
#pragma GCC unroll 4
        for (int h = 0; h < 2; h++) {
            __m256i scl = _mm256_broadcastsi128_si256(
                _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(a[i].scales + 8 * h))));
            __m256i q[4];
            q6_K_half(a[i].ql + 64 * h, a[i].qh + 32 * h, q);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m256i sg = _mm256_shuffle_epi8(scl, shuf[g]);
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) {
                    __m256i p = _mm256_maddubs_epi16(q[g], LOAD256(b[t][i].qs + 128 * h + 32 * g));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, sg));
                }
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(b[t][i].d * h2f(a[i].d)),
                                     _mm256_cvtepi32_ps(sumi[t]), acc[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]);
}

int quant_have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#else /* not x86: the "_avx2" names are the portable code, so kernels.c links anywhere */
int quant_have_avx2(void) {
    return 0;
}
#define SAME_AS_REF(name)                                                                          \
    void dot_##name##_avx2(int n, float *out, const void *w, const void *x) {                      \
        dot_##name##_ref(n, out, w, x);                                                            \
    }
SAME_AS_REF(q4_0_q8_0)
SAME_AS_REF(q4_1_q8_1)
SAME_AS_REF(q5_0_q8_0)
SAME_AS_REF(q5_1_q8_1)
SAME_AS_REF(q8_0_q8_0)
SAME_AS_REF(q4_K_q8_K)
SAME_AS_REF(q5_K_q8_K)
SAME_AS_REF(q6_K_q8_K)
SAME_AS_REF(bf16_f32)
#undef SAME_AS_REF
#define DOT4_AS_REF(name)                                                                          \
    void dot4_##name##_avx2(int n, float *out, const void *w, const void *x, size_t xs) {          \
        for (int t = 0; t < 4; t++) dot_##name##_ref(n, &out[t], w, (const uint8_t *)x + t * xs);  \
    }
DOT4_AS_REF(q4_0_q8_0)
DOT4_AS_REF(q5_0_q8_0)
DOT4_AS_REF(q8_0_q8_0)
DOT4_AS_REF(q4_K_q8_K)
DOT4_AS_REF(q6_K_q8_K)
#undef DOT4_AS_REF
void quantize_row_q8_0_avx2(const float *src, void *dst, int n) {
    quantize_row_q8_0(src, dst, n);
}
void quantize_row_q8_1_avx2(const float *src, void *dst, int n) {
    quantize_row_q8_1(src, dst, n);
}
void quantize_row_q8_K_avx2(const float *src, void *dst, int n) {
    quantize_row_q8_K(src, dst, n);
}
void dequantize_row_bf16_avx2(const void *src, float *dst, int n) {
    dequantize_row_bf16(src, dst, n);
}
#endif

/* ==== Packed weights: layouts and portable packers ==== */

#define ROUND64(x) (((x) + 63) & ~(size_t)63)

/* Per group of 16 rows (see quant.h; every region starts 64-byte aligned):
 *   Q8_0  half d[nb][16] (padded to 64) · u8 q[nb][8 chunks][64]
 *   Q4_0  half d[nb][16] (padded to 64) · u8 nibbles[nb][4 chunks][64]
 *   Q5_0  per block: half d[16] · u64 qh[8] (96 bytes) · then (64-aligned) nibbles[nb][4][64]
 *   Q4_K  per super-block: half d[16], dmin[16] · u8 sc[8][16] · u8 m[8][16] · nibbles[32][64]
 *   Q6_K  per super-block: half d[16] (padded to 64) · i8 sc[16][16] · per 32-element unit
 *         nibbles[4][64] then high bits[2][64] */
static size_t group_bytes_q8_0(int n) {
    return ROUND64((size_t)(n / 32) * 32) + (size_t)(n / 32) * 512;
}
static size_t group_bytes_q4_0(int n) {
    return ROUND64((size_t)(n / 32) * 32) + (size_t)(n / 32) * 256;
}
static size_t group_bytes_q5_0(int n) {
    return ROUND64((size_t)(n / 32) * 96) + (size_t)(n / 32) * 256;
}
static size_t group_bytes_q4_K(int n) {
    return (size_t)(n / 256) * (64 + 256 + 2048);
}
static size_t group_bytes_q6_K(int n) {
    return (size_t)(n / 256) * (64 + 256 + 8 * 384);
}

/* Element e (0..31) of a 32-element unit lives in nibble chunk k = (e & 15) / 4, byte 4r + e % 4,
 * low nibble when e < 16. */
static inline int chunk_of(int e) {
    return (e & 15) >> 2;
}

static void pack_q8_0(const void *rows, size_t row_bytes, int n_rows, int n, void *group) {
    int nb = n / 32;
    uint8_t *g = group;
    uint16_t *d = (uint16_t *)g;
    uint8_t *q = g + ROUND64((size_t)nb * 32);
    if (n_rows < 16) memset(g, 0, group_bytes_q8_0(n)); /* missing rows: zero scales, quants */
    const block_q8_0 *x[16];
    for (int r = 0; r < n_rows; r++)
        x[r] = (const block_q8_0 *)((const uint8_t *)rows + (size_t)r * row_bytes);
    /* written in order: per block, the 16 scales, then chunk by chunk 4 bytes of each row */
    for (int b = 0; b < nb; b++) {
        for (int r = 0; r < n_rows; r++) d[16 * b + r] = x[r][b].d;
        uint8_t *qb = q + 512 * (size_t)b;
        for (int k = 0; k < 8; k++)
            for (int r = 0; r < n_rows; r++) memcpy(qb + 64 * k + 4 * r, x[r][b].qs + 4 * k, 4);
    }
}

/* Nibble chunks of one 32-element unit of 16 rows: q[r][e] (0..15) -> 4 chunks of 64 bytes. */
static void put_nibbles(uint8_t *chunks, int r, const uint8_t *q) {
    for (int e = 0; e < 16; e++)
        chunks[64 * chunk_of(e) + 4 * r + e % 4] = (uint8_t)((q[e] & 15) | (q[e + 16] & 15) << 4);
}

static void pack_q4_0(const void *rows, size_t row_bytes, int n_rows, int n, void *group) {
    int nb = n / 32;
    uint8_t *g = group;
    uint16_t *d = (uint16_t *)g;
    uint8_t *nib = g + ROUND64((size_t)nb * 32);
    memset(g, 0, group_bytes_q4_0(n));
    uint8_t q[32];
    for (int r = 0; r < n_rows; r++) {
        const block_q4_0 *x = (const block_q4_0 *)((const uint8_t *)rows + (size_t)r * row_bytes);
        for (int b = 0; b < nb; b++) {
            d[16 * b + r] = x[b].d;
            for (int j = 0; j < 16; j++) q[j] = x[b].qs[j] & 15, q[j + 16] = x[b].qs[j] >> 4;
            put_nibbles(nib + 256 * b, r, q);
        }
    }
}

static void pack_q5_0(const void *rows, size_t row_bytes, int n_rows, int n, void *group) {
    int nb = n / 32;
    uint8_t *g = group;
    uint8_t *nib = g + ROUND64((size_t)nb * 96);
    memset(g, 0, group_bytes_q5_0(n));
    uint8_t q[32];
    for (int r = 0; r < n_rows; r++) {
        const block_q5_0 *x = (const block_q5_0 *)((const uint8_t *)rows + (size_t)r * row_bytes);
        for (int b = 0; b < nb; b++) {
            uint16_t *d = (uint16_t *)(g + 96 * b);
            uint64_t *qh = (uint64_t *)(g + 96 * b + 32);
            uint32_t bits;
            memcpy(&bits, x[b].qh, 4);
            d[r] = x[b].d;
            for (int j = 0; j < 16; j++) q[j] = x[b].qs[j] & 15, q[j + 16] = x[b].qs[j] >> 4;
            put_nibbles(nib + 256 * b, r, q);
            for (int e = 0; e < 32; e++)
                if ((bits >> e) & 1) qh[chunk_of(e) + (e >= 16 ? 4 : 0)] |= 1ull << (4 * r + e % 4);
        }
    }
}

static void pack_q4_K(const void *rows, size_t row_bytes, int n_rows, int n, void *group) {
    int nsb = n / QK_K;
    uint8_t *g = group;
    memset(g, 0, group_bytes_q4_K(n));
    uint8_t q[32], sc[8], m[8];
    for (int r = 0; r < n_rows; r++) {
        const block_q4_K *x = (const block_q4_K *)((const uint8_t *)rows + (size_t)r * row_bytes);
        for (int s = 0; s < nsb; s++) {
            uint8_t *sb = g + (size_t)s * 2368;
            ((uint16_t *)sb)[r] = x[s].d;
            ((uint16_t *)sb)[16 + r] = x[s].dmin;
            unpack_scales_k4(x[s].scales, sc, m);
            for (int j = 0; j < 8; j++) sb[64 + 16 * j + r] = sc[j], sb[192 + 16 * j + r] = m[j];
            for (int j = 0; j < 8; j++) { /* sub-block j: nibbles of chunk c = j / 2 */
                const uint8_t *qs = x[s].qs + 32 * (j / 2);
                for (int l = 0; l < 32; l++) q[l] = j % 2 ? qs[l] >> 4 : qs[l] & 15;
                put_nibbles(sb + 320 + 256 * j, r, q);
            }
        }
    }
}

static void pack_q6_K(const void *rows, size_t row_bytes, int n_rows, int n, void *group) {
    int nsb = n / QK_K;
    uint8_t *g = group;
    memset(g, 0, group_bytes_q6_K(n));
    uint8_t q[QK_K];
    for (int r = 0; r < n_rows; r++) {
        const block_q6_K *x = (const block_q6_K *)((const uint8_t *)rows + (size_t)r * row_bytes);
        for (int s = 0; s < nsb; s++) {
            uint8_t *sb = g + (size_t)s * 3392;
            ((uint16_t *)sb)[r] = x[s].d;
            for (int gi = 0; gi < 16; gi++) sb[64 + 16 * gi + r] = (uint8_t)x[s].scales[gi];
            unpack_q6_K(&x[s], q);
            for (int u = 0; u < 8; u++) {
                uint8_t *unit = sb + 320 + 384 * u;
                const uint8_t *qq = q + 32 * u;
                put_nibbles(unit, r, qq);
                for (int e = 0; e < 32; e++)
                    unit[256 + 64 * (e >= 16) + 4 * r + e % 4] |=
                        (uint8_t)((qq[e] >> 4) << (2 * chunk_of(e)));
            }
        }
    }
}

/* ==== Activation rows for packed kernels ==== */

size_t quant_act_bytes(int act, int n) {
    if (act == MH_ACT_Q8) return ROUND64((size_t)n + 12 * (size_t)(n / 32));
    return ROUND64((size_t)n + 4 * (size_t)(n / QK_K) + 8 * (size_t)(n / 16) +
                   8 * (size_t)(n / 32));
}

/* Q8_0 semantics (same quants and d as quantize_row_q8_0) in the MH_ACT_Q8 layout. */
static void act_q8_ref(const float *x, void *dst, int n) {
    int nb = n / 32;
    int8_t *q = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int32_t *nsum = (int32_t *)(d + nb);
    float *dsum = (float *)(nsum + nb);
    block_q8_0 blk;
    for (int b = 0; b < nb; b++) {
        quantize_row_q8_0(x + 32 * b, &blk, 32);
        memcpy(q + 32 * b, blk.qs, 32);
        d[b] = H2F(blk.d);
        int s = 0;
        for (int j = 0; j < 32; j++) s += blk.qs[j];
        nsum[b] = -s;
        dsum[b] = d[b] * (float)s;
    }
}

/* Q8_K semantics in the MH_ACT_Q8K layout, with the given Q8_K block quantizer (the reference
 * one or its AVX2 twin, which writes the same bytes). */
static void act_q8k_with(const float *x, void *dst, int n,
                         void (*quantize)(const float *, void *, int)) {
    int nsb = n / QK_K;
    int8_t *q = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int32_t *nsum16 = (int32_t *)(d + nsb);
    float *sum32 = (float *)(nsum16 + n / 16);
    float *dsum32 = sum32 + n / 32, *dsum16 = dsum32 + n / 32;
    block_q8_K blk;
    for (int s = 0; s < nsb; s++) {
        quantize(x + QK_K * s, &blk, QK_K);
        memcpy(q + QK_K * s, blk.qs, QK_K);
        d[s] = blk.d;
        for (int g = 0; g < 16; g++) {
            nsum16[16 * s + g] = -blk.bsums[g];
            dsum16[16 * s + g] = blk.d * (float)blk.bsums[g];
        }
        for (int j = 0; j < 8; j++) {
            sum32[8 * s + j] = (float)(blk.bsums[2 * j] + blk.bsums[2 * j + 1]);
            dsum32[8 * s + j] = blk.d * sum32[8 * s + j];
        }
    }
}

static void act_q8k_ref(const float *x, void *dst, int n) {
    act_q8k_with(x, dst, n, quantize_row_q8_K);
}

void quant_act_row_ref(int act, const float *x, void *dst, int n) {
    if (act == MH_ACT_Q8)
        act_q8_ref(x, dst, n);
    else
        act_q8k_ref(x, dst, n);
}

/* ==== Packed reference dot products (for tests) ==== */

static inline int nib_at(const uint8_t *chunks, int r, int e) {
    uint8_t v = chunks[64 * chunk_of(e) + 4 * r + e % 4];
    return e < 16 ? v & 15 : v >> 4;
}

float quant_pack_dot_ref(int type, int n, const void *group, int r, const void *act) {
    const uint8_t *g = group, *a = act;
    const int8_t *xq = act;
    float sum = 0;
    if (type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0) {
        int nb = n / 32;
        const float *dx = (const float *)(a + n);
        for (int b = 0; b < nb; b++) {
            int s = 0;
            uint16_t dw;
            for (int e = 0; e < 32; e++) {
                int w;
                if (type == GGML_TYPE_Q8_0)
                    w = (int8_t)
                        g[ROUND64((size_t)nb * 32) + 512 * b + 64 * (e / 4) + 4 * r + e % 4];
                else if (type == GGML_TYPE_Q4_0)
                    w = nib_at(g + ROUND64((size_t)nb * 32) + 256 * b, r, e) - 8;
                else {
                    uint64_t qh;
                    memcpy(&qh, g + 96 * b + 32 + 8 * (chunk_of(e) + (e >= 16 ? 4 : 0)), 8);
                    w = (nib_at(g + ROUND64((size_t)nb * 96) + 256 * b, r, e) |
                         (int)((qh >> (4 * r + e % 4)) & 1) << 4) -
                        16;
                }
                s += w * xq[32 * b + e];
            }
            if (type == GGML_TYPE_Q5_0)
                memcpy(&dw, g + 96 * b + 2 * r, 2);
            else
                memcpy(&dw, g + 32 * b + 2 * r, 2);
            sum += (float)s * H2F(dw) * dx[b];
        }
        return sum;
    }
    int nsb = n / QK_K;
    const float *dx = (const float *)(a + n);
    for (int s = 0; s < nsb; s++) {
        const uint8_t *xs8 = (const uint8_t *)(xq + QK_K * s);
        const int8_t *xs = (const int8_t *)xs8;
        if (type == GGML_TYPE_Q4_K) {
            const uint8_t *sb = g + (size_t)s * 2368;
            uint16_t d, dmin;
            memcpy(&d, sb + 2 * r, 2);
            memcpy(&dmin, sb + 32 + 2 * r, 2);
            int sumi = 0, summ = 0;
            for (int j = 0; j < 8; j++) {
                int sj = 0, xj = 0;
                for (int e = 0; e < 32; e++)
                    sj += nib_at(sb + 320 + 256 * j, r, e) * xs[32 * j + e], xj += xs[32 * j + e];
                sumi += sb[64 + 16 * j + r] * sj;
                summ += sb[192 + 16 * j + r] * xj;
            }
            sum += dx[s] * (H2F(d) * (float)sumi - H2F(dmin) * (float)summ);
        } else {
            const uint8_t *sb = g + (size_t)s * 3392;
            uint16_t d;
            memcpy(&d, sb + 2 * r, 2);
            int sumi = 0;
            for (int u = 0; u < 8; u++) {
                const uint8_t *unit = sb + 320 + 384 * u;
                for (int half = 0; half < 2; half++) {
                    int sg = 0;
                    for (int e = 16 * half; e < 16 * half + 16; e++) {
                        int hi =
                            (unit[256 + 64 * (e >= 16) + 4 * r + e % 4] >> (2 * chunk_of(e))) & 3;
                        sg += ((nib_at(unit, r, e) | hi << 4) - 32) * xs[32 * u + e];
                    }
                    sumi += (int8_t)sb[64 + 16 * (2 * u + half) + r] * sg;
                }
            }
            sum += dx[s] * H2F(d) * (float)sumi;
        }
    }
    return sum;
}

/* ==== Packed kernels: AVX512F+BW+VL+VNNI ==== */

#if HAVE_X86
#define TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define TILE_INLINE TARGET_VNNI static inline __attribute__((always_inline))
#define MAX_TILE    8 /* tokens per register tile */
#ifndef PF_AHEAD
#define PF_AHEAD 2048 /* decode: prefetch this many bytes ahead of the block being read */
#endif

static inline int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t ld64(const void *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

#define BCAST32(p)     _mm512_set1_epi32(ld32(p))
#define DPB(acc, w, p) _mm512_dpbusd_epi32(acc, w, BCAST32(p))

TILE_INLINE void store_rows(float *dst, __m512 v, __mmask16 m, int accumulate) {
    if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, dst));
    _mm512_mask_storeu_ps(dst, m, v);
}

TILE_INLINE void prefetch_ahead(const uint8_t *p, int lines) {
#pragma GCC unroll 8
    for (int i = 0; i < lines; i++) _mm_prefetch((const char *)p + PF_AHEAD + 64 * i, _MM_HINT_T0);
}

/* 4 nibble chunks of 64 bytes -> 8 registers of unsigned bytes: w[k] elements 4k.., w[4 + k]
 * elements 16 + 4k.. of each row. */
TILE_INLINE void unpack_nibbles(const uint8_t *c, __m512i w[8]) {
    const __m512i m4 = _mm512_set1_epi8(15);
#pragma GCC unroll 8
    for (int k = 0; k < 4; k++) {
        __m512i v = _mm512_loadu_si512(c + 64 * k);
        w[k] = _mm512_and_si512(v, m4);
        w[4 + k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
}

/* 32-element block types: acc = -(offset) * sum(x) + sum over 8 registers of w * x. */
TILE_INLINE __m512i dot_block32(const __m512i w[8], const uint8_t *xb, int32_t nsum, int shift) {
    __m512i acc = _mm512_slli_epi32(_mm512_set1_epi32(nsum), (unsigned)shift);
#pragma GCC unroll 8
    for (int k = 0; k < 4; k++) {
        acc = DPB(acc, w[k], xb + 4 * k);
        acc = DPB(acc, w[4 + k], xb + 16 + 4 * k);
    }
    return acc;
}

/* One tile of T tokens over a group of a 32-element block type. kind 0: Q8_0, 1: Q4_0, 2: Q5_0. */
TILE_INLINE void tile_b32(int kind, int n, const uint8_t *g, const uint8_t *act, size_t as, int T,
                          float *y, size_t ldy, int accumulate, __mmask16 m) {
    const int nb = n / 32;
    const size_t hdr = kind == 2 ? 96 : 32;
    const uint8_t *qs = g + ROUND64((size_t)nb * hdr);
    const size_t qstride = kind == 0 ? 512 : 256;
    const int shift = kind == 0 ? 7 : kind == 1 ? 3 : 4;
    __m512 out[MAX_TILE];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) out[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *qb = qs + qstride * (size_t)b;
        if (T <= 8) prefetch_ahead(qb, (int)(qstride / 64));
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + hdr * (size_t)b)));
        __m512i w[8];
        if (kind == 0) { /* stored signed: flip to unsigned (q + 128) for VPDPBUSD */
            const __m512i flip = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 8
            for (int k = 0; k < 4; k++) { /* element order of dot_block32: 4k.., then 16 + 4k.. */
                w[k] = _mm512_xor_si512(_mm512_loadu_si512(qb + 64 * k), flip);
                w[4 + k] = _mm512_xor_si512(_mm512_loadu_si512(qb + 64 * (4 + k)), flip);
            }
        } else {
            unpack_nibbles(qb, w);
            if (kind == 2) {
                const uint8_t *qh = g + 96 * (size_t)b + 32;
                const __m512i sixteen = _mm512_set1_epi8(16);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++)
                    w[k] =
                        _mm512_mask_add_epi8(w[k], _cvtu64_mask64(ld64(qh + 8 * k)), w[k], sixteen);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *a = act + (size_t)t * as;
            const float *dx = (const float *)(a + n);
            const int32_t *nsum = (const int32_t *)(dx + nb);
            __m512i acc = dot_block32(w, a + 32 * b, nsum[b], shift);
            out[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc),
                                     _mm512_mul_ps(d, _mm512_set1_ps(dx[b])), out[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) store_rows(y + (size_t)t * ldy, out[t], m, accumulate);
}

/* Q4_K: per super-block, sub-block j's 8 registers against each token; scale and min folded
 * into a per-token float accumulator, then times the token's d. */
TILE_INLINE void tile_q4_K(int n, const uint8_t *g, const uint8_t *act, size_t as, int T, float *y,
                           size_t ldy, int accumulate, __mmask16 m) {
    const int nsb = n / QK_K;
    __m512 out[MAX_TILE];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) out[t] = _mm512_setzero_ps();
    for (int s = 0; s < nsb; s++) {
        const uint8_t *sb = g + (size_t)s * 2368;
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sb));
        __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + 32)));
        __m512 acc_f[MAX_TILE];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc_f[t] = _mm512_setzero_ps();
        for (int j = 0; j < 8; j++) {
            const uint8_t *cj = sb + 320 + 256 * j;
            if (T <= 8) prefetch_ahead(cj, 4);
            __m512i w[8];
            unpack_nibbles(cj, w);
            __m512 sc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                                             (const __m128i *)(sb + 64 + 16 * j)))));
            __m512 mn = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                                                (const __m128i *)(sb + 192 + 16 * j)))));
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const uint8_t *a = act + (size_t)t * as;
                const float *sum32 =
                    (const float *)(a + n + 4 * (size_t)nsb + 4 * (size_t)(n / 16));
                __m512i acc = _mm512_setzero_si512();
                const uint8_t *xb = a + QK_K * (size_t)s + 32 * (size_t)j;
#pragma GCC unroll 8
                for (int k = 0; k < 4; k++) {
                    acc = DPB(acc, w[k], xb + 4 * k);
                    acc = DPB(acc, w[4 + k], xb + 16 + 4 * k);
                }
                acc_f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), sc, acc_f[t]);
                acc_f[t] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(sum32[8 * s + j]), acc_f[t]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const float *dx = (const float *)(act + (size_t)t * as + n);
            out[t] = _mm512_fmadd_ps(acc_f[t], _mm512_set1_ps(dx[s]), out[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) store_rows(y + (size_t)t * ldy, out[t], m, accumulate);
}

/* Q6_K: per 32-element unit, 8 registers of 6-bit quants (4 for each 16-element scale group);
 * the -32 offset comes in through the accumulator's start value, -32 * sum(x) of the group. */
TILE_INLINE void tile_q6_K(int n, const uint8_t *g, const uint8_t *act, size_t as, int T, float *y,
                           size_t ldy, int accumulate, __mmask16 m) {
    const int nsb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    __m512 out[MAX_TILE];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) out[t] = _mm512_setzero_ps();
    for (int s = 0; s < nsb; s++) {
        const uint8_t *sb = g + (size_t)s * 3392;
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sb));
        __m512 acc_f[MAX_TILE];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc_f[t] = _mm512_setzero_ps();
        for (int u = 0; u < 8; u++) {
            const uint8_t *unit = sb + 320 + 384 * u;
            if (T <= 8) prefetch_ahead(unit, 6);
            __m512i w[8];
            __m512i h0 = _mm512_loadu_si512(unit + 256), h1 = _mm512_loadu_si512(unit + 320);
#pragma GCC unroll 8
            for (int k = 0; k < 4; k++) {
                __m512i v = _mm512_loadu_si512(unit + 64 * k);
                __m512i hl = k == 0   ? _mm512_slli_epi16(h0, 4)
                             : k == 1 ? _mm512_slli_epi16(h0, 2)
                             : k == 2 ? h0
                                      : _mm512_srli_epi16(h0, 2);
                __m512i hh = k == 0   ? _mm512_slli_epi16(h1, 4)
                             : k == 1 ? _mm512_slli_epi16(h1, 2)
                             : k == 2 ? h1
                                      : _mm512_srli_epi16(h1, 2);
                /* (v & 15) | (hl & 0x30), and the same for the high nibbles */
                w[k] = _mm512_ternarylogic_epi32(_mm512_and_si512(v, m4), hl, m30, 0xF8);
                w[4 + k] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                                     hh, m30, 0xF8);
            }
            __m512 sca = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                              (const __m128i *)(sb + 64 + 32 * u)))));
            __m512 scb = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                              (const __m128i *)(sb + 64 + 32 * u + 16)))));
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const uint8_t *a = act + (size_t)t * as;
                const int32_t *nsum16 = (const int32_t *)(a + n + 4 * (size_t)nsb);
                const uint8_t *xb = a + QK_K * (size_t)s + 32 * (size_t)u;
                __m512i acca = _mm512_slli_epi32(_mm512_set1_epi32(nsum16[16 * s + 2 * u]), 5);
                __m512i accb = _mm512_slli_epi32(_mm512_set1_epi32(nsum16[16 * s + 2 * u + 1]), 5);
#pragma GCC unroll 8
                for (int k = 0; k < 4; k++) {
                    acca = DPB(acca, w[k], xb + 4 * k);
                    accb = DPB(accb, w[4 + k], xb + 16 + 4 * k);
                }
                acc_f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acca), sca, acc_f[t]);
                acc_f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(accb), scb, acc_f[t]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const float *dx = (const float *)(act + (size_t)t * as + n);
            out[t] = _mm512_fmadd_ps(acc_f[t], _mm512_set1_ps(dx[s]), out[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) store_rows(y + (size_t)t * ldy, out[t], m, accumulate);
}

#define TILE_Q8_0(...) tile_b32(0, __VA_ARGS__)
#define TILE_Q4_0(...) tile_b32(1, __VA_ARGS__)
#define TILE_Q5_0(...) tile_b32(2, __VA_ARGS__)

/* ==== Packed kernels: AMX-INT8 ====
 * One 16-token tile at a time against one group: per 32-element unit u, A = the tokens' 32
 * quants (16 rows, one per token), B = the unit's 8 rows of 64 bytes (the packed layout is
 * already AMX's "VNNI" B layout: row k holds elements 4k..4k+3 of the 16 weight rows), C =
 * 16 tokens x 16 rows of int32. C goes to memory and the unit's scales are applied in AVX512;
 * two units are in flight so the tile unit and the vector units overlap. Nibble types are
 * first unpacked, once per call, into `scratch`. */

#define TARGET_AMX                                                                                 \
    __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,"       \
                          "f16c")))
#define AMX_MIN_TOKENS 2 /* fewer tokens than this in a tile: VNNI */

typedef struct amx_tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tilecfg;

static _Thread_local int amx_configured;

/* Tiles: 0, 1 C (16 x 64 bytes); 2, 3 A (16 x 32); 4, 5 B (8 x 64). A constant in memory: the
 * compiler does not see LDTILECFG read a local struct and may drop the stores to it. */
static const amx_tilecfg amx_cfg = {
    .palette = 1,
    .colsb = {64, 64, 32, 32, 64, 64},
    .rows = {16, 16, 16, 16, 8, 8},
};

TARGET_AMX static void amx_configure(void) {
    _tile_loadconfig(&amx_cfg);
    amx_configured = 1;
}

/* kinds: 0 Q8_0, 1 Q4_0, 2 Q5_0, 3 Q4_K, 4 Q6_K (two C tiles per unit, one per 16-group).
 * Unpacked B tiles hold signed quants (the format's offset removed: TDPBSSD needs no
 * correction), except Q4_K's 0..15 (TDPBSUD; its mins are applied in the epilogue). */
TILE_INLINE void unpack_unit(int kind, const uint8_t *g, int n, int u, uint8_t *dst) {
    __m512i w[8];
    if (kind == 1 || kind == 2) {
        int nb = n / 32;
        unpack_nibbles(g + ROUND64((size_t)nb * (kind == 2 ? 96 : 32)) + 256 * (size_t)u, w);
        if (kind == 2) {
            const uint8_t *qh = g + 96 * (size_t)u + 32;
            const __m512i sixteen = _mm512_set1_epi8(16);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                w[k] = _mm512_mask_add_epi8(w[k], _cvtu64_mask64(ld64(qh + 8 * k)), w[k], sixteen);
        }
        const __m512i off = _mm512_set1_epi8(kind == 2 ? 16 : 8);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) w[k] = _mm512_sub_epi8(w[k], off);
    } else if (kind == 3) {
        unpack_nibbles(g + (size_t)(u / 8) * 2368 + 320 + 256 * (size_t)(u % 8), w);
    } else {
        const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
        const __m512i off = _mm512_set1_epi8(32), z = _mm512_setzero_si512();
        const uint8_t *unit = g + (size_t)(u / 8) * 3392 + 320 + 384 * (size_t)(u % 8);
        __m512i h0 = _mm512_loadu_si512(unit + 256), h1 = _mm512_loadu_si512(unit + 320);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m512i v = _mm512_loadu_si512(unit + 64 * k);
            __m512i hl = k == 0   ? _mm512_slli_epi16(h0, 4)
                         : k == 1 ? _mm512_slli_epi16(h0, 2)
                         : k == 2 ? h0
                                  : _mm512_srli_epi16(h0, 2);
            __m512i hh = k == 0   ? _mm512_slli_epi16(h1, 4)
                         : k == 1 ? _mm512_slli_epi16(h1, 2)
                         : k == 2 ? h1
                                  : _mm512_srli_epi16(h1, 2);
            w[k] = _mm512_sub_epi8(
                _mm512_ternarylogic_epi32(_mm512_and_si512(v, m4), hl, m30, 0xF8), off);
            w[4 + k] =
                _mm512_sub_epi8(_mm512_ternarylogic_epi32(
                                    _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), hh, m30, 0xF8),
                                off);
        }
        /* two B tiles: the first 16 elements with the other rows zero, then the last 16 */
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            _mm512_store_si512(dst + 64 * k, w[k]);
            _mm512_store_si512(dst + 64 * (4 + k), z);
            _mm512_store_si512(dst + 512 + 64 * k, z);
            _mm512_store_si512(dst + 512 + 64 * (4 + k), w[4 + k]);
        }
        return;
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) _mm512_store_si512(dst + 64 * k, w[k]);
}

TARGET_AMX static void amx_unpack_group(int kind, const uint8_t *g, int n, uint8_t *dst) {
    if (kind == 0) return; /* Q8_0's packed quants are the B tiles */
    size_t unit_bytes = kind == 4 ? 1024 : 512;
    for (int u = 0; u < n / 32; u++) unpack_unit(kind, g, n, u, dst + unit_bytes * (size_t)u);
}

/* out[t] += C (16 tokens x 16 rows, int32) times sc (per row) times dx[t]; with `cor`, minus
 * cor (per row) times ds[t] (Q4_K's mins). dx and ds: the tokens' factors, `as` bytes apart. */
TILE_INLINE void amx_epilogue(__m512 out[16], const int32_t *c, __m512 sc, const uint8_t *dx,
                              int with_cor, __m512 cor, const uint8_t *ds, size_t as) {
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) {
        float fdx;
        memcpy(&fdx, dx + (size_t)t * as, 4);
        __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * t));
        out[t] = _mm512_fmadd_ps(v, _mm512_mul_ps(sc, _mm512_set1_ps(fdx)), out[t]);
        if (with_cor) {
            float fds;
            memcpy(&fds, ds + (size_t)t * as, 4);
            out[t] = _mm512_fnmadd_ps(cor, _mm512_set1_ps(fds), out[t]);
        }
    }
}

/* Row scales of unit u (Q6_K: *sc2 for its second 16-group; Q4_K: *cor, the mins) and the
 * offsets of the tokens' factors within an activation row. */
TILE_INLINE void amx_unit_scales(int kind, const uint8_t *g, int n, int u, __m512 *sc, __m512 *sc2,
                                 __m512 *cor, size_t *off_dx, size_t *off_ds) {
    if (kind <= 2) {
        const uint8_t *dp = g + (kind == 2 ? 96 : 32) * (size_t)u;
        *sc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dp));
        *off_dx = (size_t)n + 4 * (size_t)u;
        return;
    }
    int s = u / 8, j = u % 8, nsb = n / QK_K;
    *off_dx = (size_t)n + 4 * (size_t)s;
    if (kind == 3) {
        const uint8_t *sb = g + (size_t)s * 2368;
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sb));
        __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + 32)));
        *sc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                   _mm_loadu_si128((const __m128i *)(sb + 64 + 16 * j)))));
        *cor = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                       _mm_loadu_si128((const __m128i *)(sb + 192 + 16 * j)))));
        /* dsum32 of sub-block u */
        *off_ds = (size_t)n + 4 * (size_t)nsb + 4 * (size_t)(n / 16) + 4 * (size_t)(n / 32) +
                  4 * (size_t)u;
        return;
    }
    const uint8_t *sb = g + (size_t)s * 3392;
    __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sb));
    *sc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                               _mm_loadu_si128((const __m128i *)(sb + 64 + 32 * j)))));
    *sc2 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                _mm_loadu_si128((const __m128i *)(sb + 64 + 32 * j + 16)))));
}

/* Tile products of one unit into C tile C with A tile A and B tile B, stored to cb. The tile
 * numbers are pasted into the instructions: literal digits only. */
#define AMX_UNIT(C, A, B, kind, act, as, b, cb)                                                    \
    do {                                                                                           \
        _tile_loadd(A, act, (long)(as));                                                           \
        _tile_loadd(B, b, 64);                                                                     \
        _tile_zero(C);                                                                             \
        if ((kind) == 3)                                                                           \
            _tile_dpbsud(C, A, B);                                                                 \
        else                                                                                       \
            _tile_dpbssd(C, A, B);                                                                 \
        _tile_stored(C, cb, 64);                                                                   \
    } while (0)

/* One tile of 16 tokens (rows past M computed and dropped) against one group's units, unpacked
 * into `bsrc`. Two units in flight: the tile products of the next run while the scales of the
 * current one are applied. */
TILE_INLINE void amx_tile(int kind, int n, const uint8_t *g, const uint8_t *bsrc,
                          const uint8_t *act, size_t as, int M, float *y, size_t ldy,
                          int accumulate, __mmask16 m) {
    const int nu = n / 32;
    _Alignas(64) int32_t cbuf[2][256];
    __m512 out[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) out[t] = _mm512_setzero_ps();
    if (kind == 4) { /* Q6_K: both C tiles for one unit's two 16-groups */
        for (int u = 0; u < nu; u++) {
            __m512 sc, sc2 = _mm512_setzero_ps(), cor = sc2;
            size_t off_dx, off_ds = 0;
            amx_unit_scales(kind, g, n, u, &sc, &sc2, &cor, &off_dx, &off_ds);
            const uint8_t *b = bsrc + 1024 * (size_t)u;
            _tile_loadd(2, act + 32 * (size_t)u, (long)as);
            _tile_loadd(4, b, 64);
            _tile_loadd(5, b + 512, 64);
            _tile_zero(0);
            _tile_zero(1);
            _tile_dpbssd(0, 2, 4);
            _tile_dpbssd(1, 2, 5);
            _tile_stored(0, cbuf[0], 64);
            _tile_stored(1, cbuf[1], 64);
            amx_epilogue(out, cbuf[0], sc, act + off_dx, 0, cor, act, as);
            amx_epilogue(out, cbuf[1], sc2, act + off_dx, 0, cor, act, as);
        }
    } else {
        if (kind == 0) bsrc = g + ROUND64((size_t)nu * 32); /* Q8_0: the packed quants */
        AMX_UNIT(0, 2, 4, kind, act, as, bsrc, cbuf[0]);
        for (int u = 0; u < nu; u += 2) {
            if (u + 1 < nu)
                AMX_UNIT(1, 3, 5, kind, act + 32 * (size_t)(u + 1), as,
                         bsrc + 512 * (size_t)(u + 1), cbuf[1]);
            __m512 sc, sc2, cor = _mm512_setzero_ps();
            size_t off_dx, off_ds = 0;
            amx_unit_scales(kind, g, n, u, &sc, &sc2, &cor, &off_dx, &off_ds);
            amx_epilogue(out, cbuf[0], sc, act + off_dx, kind == 3, cor, act + off_ds, as);
            if (u + 1 >= nu) break;
            if (u + 2 < nu)
                AMX_UNIT(0, 2, 4, kind, act + 32 * (size_t)(u + 2), as,
                         bsrc + 512 * (size_t)(u + 2), cbuf[0]);
            amx_unit_scales(kind, g, n, u + 1, &sc, &sc2, &cor, &off_dx, &off_ds);
            amx_epilogue(out, cbuf[1], sc, act + off_dx, kind == 3, cor, act + off_ds, as);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        if (t < M) store_rows(y + (size_t)t * ldy, out[t], m, accumulate);
}

#define AMX_TILE_FN(name, kind)                                                                    \
    TARGET_AMX static void name(int n, const uint8_t *g, const uint8_t *bsrc, const uint8_t *act,  \
                                size_t as, int M, float *y, size_t ldy, int accumulate,            \
                                __mmask16 m) {                                                     \
        if (!amx_configured) amx_configure();                                                      \
        amx_tile(kind, n, g, bsrc, act, as, M, y, ldy, accumulate, m);                             \
    }
AMX_TILE_FN(amx_tile_q8_0, 0)
AMX_TILE_FN(amx_tile_q4_0, 1)
AMX_TILE_FN(amx_tile_q5_0, 2)
AMX_TILE_FN(amx_tile_q4_K, 3)
AMX_TILE_FN(amx_tile_q6_K, 4)

static int amx_enabled = -1;

/* The gemm entry of a packed type: with AMX, 16-token tiles while at least AMX_MIN_TOKENS are
 * left; then VNNI tiles of up to MAX_TILE tokens, each with a constant size so the tile's
 * loops unroll and its accumulators live in registers. */
#define DEFINE_PACKED_GEMM(name, TILE, AMX_FN, KIND)                                               \
    TARGET_VNNI static void name(int n, int nt, const void *group, int n_rows, const void *act,    \
                                 size_t as, float *y, size_t ldy, int accumulate, void *scratch) { \
        __mmask16 m = n_rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n_rows) - 1);          \
        const uint8_t *g = group, *a = act;                                                        \
        int t0 = 0;                                                                                \
        if (amx_enabled > 0 && nt >= AMX_MIN_TOKENS) {                                             \
            amx_unpack_group(KIND, g, n, scratch);                                                 \
            for (; nt - t0 >= AMX_MIN_TOKENS; t0 += 16)                                            \
                AMX_FN(n, g, scratch, a + (size_t)t0 * as, as, nt - t0 < 16 ? nt - t0 : 16,        \
                       y + (size_t)t0 * ldy, ldy, accumulate, m);                                  \
        }                                                                                          \
        for (; t0 < nt; t0 += MAX_TILE) {                                                          \
            const uint8_t *at = a + (size_t)t0 * as;                                               \
            float *yt = y + (size_t)t0 * ldy;                                                      \
            switch (nt - t0 >= MAX_TILE ? MAX_TILE : nt - t0) {                                    \
            case 8: TILE(n, g, at, as, 8, yt, ldy, accumulate, m); break;                          \
            case 7: TILE(n, g, at, as, 7, yt, ldy, accumulate, m); break;                          \
            case 6: TILE(n, g, at, as, 6, yt, ldy, accumulate, m); break;                          \
            case 5: TILE(n, g, at, as, 5, yt, ldy, accumulate, m); break;                          \
            case 4: TILE(n, g, at, as, 4, yt, ldy, accumulate, m); break;                          \
            case 3: TILE(n, g, at, as, 3, yt, ldy, accumulate, m); break;                          \
            case 2: TILE(n, g, at, as, 2, yt, ldy, accumulate, m); break;                          \
            default: TILE(n, g, at, as, 1, yt, ldy, accumulate, m); break;                         \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_PACKED_GEMM(gemm_q8_0_vnni, TILE_Q8_0, amx_tile_q8_0, 0)
DEFINE_PACKED_GEMM(gemm_q4_0_vnni, TILE_Q4_0, amx_tile_q4_0, 1)
DEFINE_PACKED_GEMM(gemm_q5_0_vnni, TILE_Q5_0, amx_tile_q5_0, 2)
DEFINE_PACKED_GEMM(gemm_q4_K_vnni, tile_q4_K, amx_tile_q4_K, 3)
DEFINE_PACKED_GEMM(gemm_q6_K_vnni, tile_q6_K, amx_tile_q6_K, 4)

int quant_have_amx(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8") &&
               quant_have_vnni() &&
               syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
    return have;
}

int quant_have_vnni(void) {
    __builtin_cpu_init();
    return quant_have_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
}

static const mh_pack_ops pack_ops_q8_0 = {MH_ACT_Q8, group_bytes_q8_0, pack_q8_0, gemm_q8_0_vnni};
static const mh_pack_ops pack_ops_q4_0 = {MH_ACT_Q8, group_bytes_q4_0, pack_q4_0, gemm_q4_0_vnni};
static const mh_pack_ops pack_ops_q5_0 = {MH_ACT_Q8, group_bytes_q5_0, pack_q5_0, gemm_q5_0_vnni};
static const mh_pack_ops pack_ops_q4_K = {MH_ACT_Q8K, group_bytes_q4_K, pack_q4_K, gemm_q4_K_vnni};
static const mh_pack_ops pack_ops_q6_K = {MH_ACT_Q8K, group_bytes_q6_K, pack_q6_K, gemm_q6_K_vnni};

static int pack_enabled = -1; /* -1: not decided yet */

void quant_set_packed(int mode) {
    pack_enabled = mode >= MH_PACK_VNNI && quant_have_vnni();
    amx_enabled = pack_enabled && mode >= MH_PACK_AMX && quant_have_amx();
}

int quant_packed_mode(void) {
    return amx_enabled > 0 ? MH_PACK_AMX : pack_enabled > 0 ? MH_PACK_VNNI : MH_PACK_OFF;
}

int quant_default_pack_mode(void) {
    if (getenv("MODELHUB_NO_PACK")) return MH_PACK_OFF;
    return getenv("MODELHUB_NO_AMX") ? MH_PACK_VNNI : MH_PACK_AMX;
}

const mh_pack_ops *quant_pack_ops(int type) {
    if (pack_enabled < 0) quant_set_packed(quant_default_pack_mode());
    if (!pack_enabled) return NULL;
    switch (type) {
    case GGML_TYPE_Q8_0: return &pack_ops_q8_0;
    case GGML_TYPE_Q4_0: return &pack_ops_q4_0;
    case GGML_TYPE_Q5_0: return &pack_ops_q5_0;
    case GGML_TYPE_Q4_K: return &pack_ops_q4_K;
    case GGML_TYPE_Q6_K: return &pack_ops_q6_K;
    default: return NULL;
    }
}

/* The activation layouts with the AVX2 quantizers (same bytes as the reference ones). */
TARGET_AVX2 static void act_q8_avx2(const float *x, void *dst, int n) {
    int nb = n / 32;
    int8_t *q = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int32_t *nsum = (int32_t *)(d + nb);
    float *dsum = (float *)(nsum + nb);
    for (int b = 0; b < nb; b++) {
        float amax = absmax32(x + 32 * b);
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        int sum;
        _mm256_storeu_si256((__m256i *)(q + 32 * b), quant32(x + 32 * b, _mm256_set1_ps(id), &sum));
        d[b] = H2F(F2H(amax / 127.0f));
        nsum[b] = -sum;
        dsum[b] = d[b] * (float)sum;
    }
}

static void act_q8k_avx2(const float *x, void *dst, int n) {
    act_q8k_with(x, dst, n, quantize_row_q8_K_avx2);
}

void quant_act_row(int act, const float *x, void *dst, int n) {
    if (act == MH_ACT_Q8)
        act_q8_avx2(x, dst, n); /* packed kernels imply AVX2 */
    else
        act_q8k_avx2(x, dst, n);
}
#else
int quant_have_vnni(void) {
    return 0;
}
int quant_have_amx(void) {
    return 0;
}
void quant_set_packed(int mode) {
    (void)mode;
}
int quant_packed_mode(void) {
    return MH_PACK_OFF;
}
int quant_default_pack_mode(void) {
    return MH_PACK_OFF;
}
const mh_pack_ops *quant_pack_ops(int type) {
    (void)type;
    return NULL;
}
void quant_act_row(int act, const float *x, void *dst, int n) {
    quant_act_row_ref(act, x, dst, n);
}
#endif
