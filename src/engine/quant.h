/* quant.h — ggml's quantized block formats: packed structs, quantizers, dequantizers, and dot
 * products of a weight row with an activation row quantized to the matching 8-bit type.
 *
 * Formats (all little-endian; "half" is IEEE fp16; n elements make n / block rows of blocks):
 *   Q4_0  32 elements: half d · 16 bytes of nibbles.      x = d * (q - 8)
 *         byte j holds element j (low nibble) and element j + 16 (high nibble).
 *   Q4_1  32 elements: half d · half m · 16 bytes.        x = d * q + m
 *   Q5_0  32 elements: half d · u32 qh · 16 bytes.        x = d * (q - 16), q = nibble | bit << 4
 *         bit j of qh is the fifth bit of element j (j < 32), nibbles as Q4_0.
 *   Q5_1  32 elements: half d · half m · u32 qh · 16 B.   x = d * q + m
 *   Q8_0  32 elements: half d · 32 int8.                  x = d * q
 *   Q8_1  32 elements: half d · half s · 32 int8.         x = d * q, s = d * sum(q)
 *   Q4_K  256 elements = 8 sub-blocks of 32: half d · half dmin · 12 bytes of 6-bit scales and
 *         mins · 128 bytes of nibbles. x = d * sc[j] * q - dmin * m[j] for sub-block j.
 *         Scales: for j < 4 sc[j] = s[j] & 63, m[j] = s[j + 4] & 63; for j >= 4
 *         sc[j] = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4, m[j] = (s[j + 4] >> 4) | (s[j] >> 6) << 4.
 *         Nibbles: 64-element chunk c uses qs[32c .. 32c + 31]; low nibbles are sub-block 2c,
 *         high nibbles sub-block 2c + 1.
 *   Q5_K  as Q4_K plus qh[32] before qs: the fifth bit of element 64c + l (l < 32) is bit 2c of
 *         qh[l], of element 64c + 32 + l bit 2c + 1.
 *   Q6_K  256 elements = 16 groups of 16: ql[128] · qh[64] · int8 scales[16] · half d.
 *         x = d * scales[e / 16] * (q - 32), q 6 bits. In each 128-element half h (ql += 64h,
 *         qh += 32h), for l < 32: element l = ql[l] & 15 | (qh[l] & 3) << 4, element l + 32 =
 *         ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4, element l + 64 = ql[l] >> 4 | (qh[l] >> 4 & 3)
 *         << 4, element l + 96 = ql[l + 32] >> 4 | (qh[l] >> 6) << 4.
 *   Q8_K  256 elements: float d · 256 int8 · int16 bsums[16] (sum of each 16 quants).
 *   BF16  the top 16 bits of an IEEE float.
 *
 * Which activation type each weight type's dot product takes (as llama.cpp):
 *   Q4_0, Q5_0, Q8_0 -> Q8_0;  Q4_1, Q5_1 -> Q8_1;  Q4_K, Q5_K, Q6_K -> Q8_K;  BF16 -> F32.
 *
 * Every dot kernel has a portable `_ref` and an AVX2+FMA+F16C twin (`_avx2`); some have an
 * AVX512-VNNI/AVX-VNNI version (`_vnni`). kernels.c picks one per CPU; tests compare them.
 * Row lengths must be multiples of the block size. All functions are thread-safe.
 */
#ifndef MH_QUANT_H
#define MH_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K  256

typedef struct {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "q4_0 block");

typedef struct {
    uint16_t d, m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 block");

typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 block");

typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 block");

typedef struct {
    uint16_t d;
    int8_t qs[QK8_0];
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block");

typedef struct {
    uint16_t d, s; /* s = d * sum(qs) */
    int8_t qs[QK8_1];
} block_q8_1;
_Static_assert(sizeof(block_q8_1) == 36, "q8_1 block");

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 scales and 8 mins of 6 bits */
    uint8_t qs[QK_K / 2];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 144, "q4_K block");

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 176, "q5_K block");

typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == 210, "q6_K block");

typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
_Static_assert(sizeof(block_q8_K) == 292, "q8_K block");

typedef uint16_t mh_bf16;
_Static_assert(sizeof(mh_bf16) == 2, "bf16");

/* BF16 <-> F32 (round to nearest even; NaN stays NaN). */
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

/* ==== Quantizers (f32 row -> blocks) and dequantizers (blocks -> f32 row) ====
 * Signatures match type_traits.from_f32 / to_f32: (src, dst, n). */
#define MH_QUANT_TYPE(t)                                                                           \
    void quantize_row_##t(const float *src, void *dst, int n);                                     \
    void dequantize_row_##t(const void *src, float *dst, int n);
MH_QUANT_TYPE(q4_0)
MH_QUANT_TYPE(q4_1)
MH_QUANT_TYPE(q5_0)
MH_QUANT_TYPE(q5_1)
MH_QUANT_TYPE(q8_0)
MH_QUANT_TYPE(q8_1)
MH_QUANT_TYPE(q4_K)
MH_QUANT_TYPE(q5_K)
MH_QUANT_TYPE(q6_K)
MH_QUANT_TYPE(q8_K)
MH_QUANT_TYPE(bf16)
#undef MH_QUANT_TYPE

/* Activation quantizers with SIMD twins (same results as the reference up to rounding of
 * exact ties). */
void quantize_row_q8_0_avx2(const float *src, void *dst, int n);
void quantize_row_q8_1_avx2(const float *src, void *dst, int n);
void quantize_row_q8_K_avx2(const float *src, void *dst, int n);
void dequantize_row_bf16_avx2(const void *src, float *dst, int n);

/* ==== Dot products: *out = dot(weight row w, activation row x), n elements ==== */
#define MH_DOT(name)                                                                               \
    void dot_##name##_ref(int n, float *out, const void *w, const void *x);                        \
    void dot_##name##_avx2(int n, float *out, const void *w, const void *x);                       \
    void dot_##name##_vnni(int n, float *out, const void *w, const void *x);
MH_DOT(q4_0_q8_0)
MH_DOT(q4_1_q8_1)
MH_DOT(q5_0_q8_0)
MH_DOT(q5_1_q8_1)
MH_DOT(q8_0_q8_0)
MH_DOT(q4_K_q8_K)
MH_DOT(q5_K_q8_K)
MH_DOT(q6_K_q8_K)
MH_DOT(bf16_f32)
#undef MH_DOT

/* ==== Tiles: several weight rows times several activation rows ====
 * For r < nr, t < nt: y[t * ldy + r] = dot(row r of w, row t of x) (+= when accumulate), rows of
 * w `ldw` bytes apart, of x `ldx` bytes apart. The weight blocks are unpacked once per tile and
 * reused for every activation row, which is what makes batched prefill matrix-matrix work. */
typedef void (*mh_gemm_fn)(int n, int nr, int nt, const void *w, size_t ldw, const void *x,
                           size_t ldx, float *y, size_t ldy, int accumulate);
#define MH_GEMM(name)                                                                              \
    void gemm_##name##_avx2(int n, int nr, int nt, const void *w, size_t ldw, const void *x,       \
                            size_t ldx, float *y, size_t ldy, int accumulate);                     \
    void gemm_##name##_vnni(int n, int nr, int nt, const void *w, size_t ldw, const void *x,       \
                            size_t ldx, float *y, size_t ldy, int accumulate);
MH_GEMM(q4_0_q8_0)
MH_GEMM(q4_1_q8_1)
MH_GEMM(q5_0_q8_0)
MH_GEMM(q5_1_q8_1)
MH_GEMM(q8_0_q8_0)
MH_GEMM(q4_K_q8_K)
MH_GEMM(q5_K_q8_K)
MH_GEMM(q6_K_q8_K)
#undef MH_GEMM

/* CPU checks for the dispatch in kernels.c. */
int quant_have_avx2(void);
int quant_have_vnni(void); /* AVX512F+BW+VL+VNNI, or AVX-VNNI */

#endif
