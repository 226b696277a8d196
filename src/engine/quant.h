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
 *         sc[j] = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4, m[j] = (s[j + 4] >> 4) | (s[j] >> 6)
 * << 4. Nibbles: 64-element chunk c uses qs[32c .. 32c + 31]; low nibbles are sub-block 2c, high
 * nibbles sub-block 2c + 1. Q5_K  as Q4_K plus qh[32] before qs: the fifth bit of element 64c + l
 * (l < 32) is bit 2c of qh[l], of element 64c + 32 + l bit 2c + 1. Q6_K  256 elements = 16 groups
 * of 16: ql[128] · qh[64] · int8 scales[16] · half d. x = d * scales[e / 16] * (q - 32), q 6 bits.
 * In each 128-element half h (ql += 64h, qh += 32h), for l < 32: element l = ql[l] & 15 | (qh[l] &
 * 3) << 4, element l + 32 = ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4, element l + 64 = ql[l] >> 4 |
 * (qh[l] >> 4 & 3)
 *         << 4, element l + 96 = ql[l + 32] >> 4 | (qh[l] >> 6) << 4.
 *   Q8_K  256 elements: float d · 256 int8 · int16 bsums[16] (sum of each 16 quants).
 *   BF16  the top 16 bits of an IEEE float.
 *
 * Which activation type each weight type's dot product takes (as llama.cpp):
 *   Q4_0, Q5_0, Q8_0 -> Q8_0;  Q4_1, Q5_1 -> Q8_1;  Q4_K, Q5_K, Q6_K -> Q8_K;  BF16 -> F32.
 *
 * Every dot kernel has a portable `_ref` and an AVX2+FMA+F16C twin (`_avx2`); the hot types also
 * have packed AVX512-VNNI kernels (below). kernels.c picks per CPU; tests compare them all.
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
    void dot_##name##_avx2(int n, float *out, const void *w, const void *x);
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

/* Four activation rows at a time (AVX2; the weight block is unpacked once for all four):
 * out[t] = dot(w, x + t * x_stride) for t < 4. */
#define MH_DOT4(name)                                                                              \
    void dot4_##name##_avx2(int n, float *out, const void *w, const void *x, size_t x_stride);
MH_DOT4(q4_0_q8_0)
MH_DOT4(q5_0_q8_0)
MH_DOT4(q8_0_q8_0)
MH_DOT4(q4_K_q8_K)
MH_DOT4(q6_K_q8_K)
#undef MH_DOT4

/* ==== Packed weights (AVX512-VNNI) ====
 * For the hot types (Q8_0, Q5_0, Q4_0, Q4_K, Q6_K) the weights are repacked once at load into
 * groups of MH_PACK_ROWS rows interleaved four elements at a time: one 512-bit VNNI
 * instruction then multiplies 4 elements of 16 rows by the same 4 activation bytes, the 16
 * lanes are the 16 rows' partial sums (no horizontal reduction), and the unpacked block of a
 * group stays in registers for several tokens (matrix-matrix work for prefill).
 *
 * Group layouts (a group = 16 rows; the scales of all blocks first, then all quants, each
 * region 64-byte aligned; per block, in element order):
 *   Q8_0  32 elements: half d[16] · 8 chunks of 64 bytes, chunk k = rows 0..15 x elements
 *         4k..4k+3 (signed quants).                                            544 = 16 x 34
 *   Q4_0  half d[16] · 4 chunks of 64 bytes of nibbles: byte 4r + i of chunk k holds element
 *         4k + i of row r (low nibble) and element 16 + 4k + i (high nibble).  288 = 16 x 18
 *   Q5_0  half d[16], u64 qh[8] (bit 4r + i of word k = fifth bit of element 4k + i of row r,
 *         word 4 + k the same for elements 16 + 4k + i) · 4 nibble chunks as Q4_0. 352 = 16 x 22
 *   Q4_K  256 elements, per super-block: half d[16], dmin[16] · u8 scales[8][16], mins[8][16]
 *         (sub-block, row) · 32 nibble chunks: chunk 4j + k holds sub-block j's elements
 *         4k + i (low) and 16 + 4k + i (high).                                 2368 = 16 x 148
 *   Q6_K  per super-block: half d[16] (padded to 64 bytes) · i8 scales[16][16] (group, row) ·
 *         per 32-element unit: 4 low-nibble
 *         chunks laid out as Q4_K's, then 2 chunks of high bit pairs: byte 4r + i of chunk h
 *         holds at shift 2k the top two bits of the element whose low bits are in nibble h
 *         (0 low, 1 high) of byte 4r + i of low chunk k.                          3392 = 16 x 212
 * Activations for packed kernels (one row of n elements, MH_ACT_*):
 *   MH_ACT_Q8   int8 q[n] · float d[n/32] · int32 nsum[n/32] (minus the sum of each block's q) ·
 *               float dsum[n/32] (d times that sum); q and d exactly as quantize_row_q8_0.
 *   MH_ACT_Q8K  int8 q[n] · float d[n/256] · int32 nsum16[n/16] · float sum32[n/32] ·
 *               float dsum32[n/32] · float dsum16[n/16] (sums of 16 and 32 quants, times d);
 *               q and d exactly as quantize_row_q8_K.
 * On CPUs with AMX-INT8 (and the kernel's permission to use it), batches of 8 or more tokens go
 * through 16-token x 16-row tile products (TDPBSSD on signed quants; TDPBSUD for Q4_K's
 * unsigned ones) of the same packed groups, with the per-block scales applied in AVX512 after
 * each tile; smaller batches and decode use the VNNI tiles.
 */
#define MH_PACK_ROWS 16
enum { MH_ACT_Q8 = 1, MH_ACT_Q8K = 2 };

typedef struct mh_pack_ops {
    int act;                      /* MH_ACT_* the kernel reads */
    size_t (*group_bytes)(int n); /* bytes of one group of 16 rows of n elements */
    /* Pack rows [0, n_rows) (n_rows <= 16; the rest of the group is zero) of n elements, rows
     * row_bytes apart in the GGUF type, into one group. Portable code. */
    void (*pack)(const void *rows, size_t row_bytes, int n_rows, int n, void *group);
    /* y[t * ldy + r] (+)= dot(row r, token t) for r < n_rows (of the group's 16), t < nt; the
     * activation rows `act_stride` bytes apart in format `act`, readable up to nt rounded up to
     * a multiple of 16 rows (whole AMX tiles are loaded; rows past nt are ignored). `scratch`:
     * MH_PACK_SCRATCH(n) bytes, 64-byte aligned, owned by the calling thread. */
    void (*gemm)(int n, int nt, const void *group, int n_rows, const void *act, size_t act_stride,
                 float *y, size_t ldy, int accumulate, void *scratch);
} mh_pack_ops;
#define MH_PACK_SCRATCH(n) ((size_t)(n)*32 + 64)

/* The packed kernels of `type` on this CPU, or NULL (then use type_traits.vec_dot). */
const mh_pack_ops *quant_pack_ops(int type);
/* Which packed kernels run: off, VNNI tiles only, or AMX tiles for batches too (each only as far
 * as the CPU has it). kernels_init sets quant_default_pack_mode(): AMX, less with
 * MODELHUB_NO_AMX / MODELHUB_NO_PACK in the environment, off with force_ref. Weights packed
 * earlier stay packed: change the mode before loading a model (tests switch it freely). */
enum { MH_PACK_OFF = 0, MH_PACK_VNNI = 1, MH_PACK_AMX = 2 };
void quant_set_packed(int mode);
int quant_packed_mode(void);
int quant_default_pack_mode(void);
/* Bytes of one activation row of n elements in format `act` (a multiple of 64). */
size_t quant_act_bytes(int act, int n);
/* Quantize one activation row into format `act` (SIMD), and the portable reference. */
void quant_act_row(int act, const float *x, void *dst, int n);
void quant_act_row_ref(int act, const float *x, void *dst, int n);
/* Reference dot product of row r of a packed group with one activation row (tests). */
float quant_pack_dot_ref(int type, int n, const void *group, int r, const void *act);

/* CPU checks for the dispatch in kernels.c. */
int quant_have_avx2(void);
int quant_have_vnni(void); /* AVX512F+BW+VL+VNNI */
int quant_have_amx(void);  /* AMX-TILE+INT8 with the kernel's permission (asked for once) */

#endif
