/* kernels.h — numeric building blocks of the engine: half floats, dot products per weight type,
 * norms, softmax. Every kernel has a portable `_ref` version and, where it matters, an
 * AVX2+FMA+F16C twin chosen once at start-up (kernels_init) by a CPU check.
 */
#ifndef MH_KERNELS_H
#define MH_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* IEEE half <-> single. fp32_to_fp16 rounds to nearest even, like F16C's default. */
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);

/* Per weight type: how to dequantize a row, and the dot product of a weight row with an
 * activation row already converted to `vec_dot_type`. */
typedef struct type_traits {
    int supported;
    int vec_dot_type; /* enum ggml_type of the activation side */
    void (*to_f32)(const void *src, float *dst, int n);
    void (*from_f32)(const float *src, void *dst, int n); /* quantize a row (synth, activations) */
    void (*vec_dot)(int n, float *out, const void *w, const void *x);
    /* Optional: the dot products of one weight row with 4 activation rows x_stride bytes apart,
     * the weight block unpacked once for the four (batched prefill without packed kernels). */
    void (*vec_dot4)(int n, float *out, const void *w, const void *x, size_t x_stride);
} type_traits;

/* Pick kernels for this CPU. Idempotent, thread-safe. `force_ref` selects the portable versions
 * (tests compare both). Returns a short description such as "avx512-vnni", "avx2+fma+f16c" or
 * "scalar". */
const char *kernels_init(int force_ref);
const type_traits *kernels_traits(int ggml_type);

/* Portable and SIMD versions, exported for the comparison tests. */
void dot_f32_ref(int n, float *out, const void *w, const void *x);
void dot_f32_avx2(int n, float *out, const void *w, const void *x);
void dot_f16_ref(int n, float *out, const void *w, const void *x);
void dot_f16_avx2(int n, float *out, const void *w, const void *x);
void f16_to_f32_row_ref(const void *src, float *dst, int n);
void f16_to_f32_row_f16c(const void *src, float *dst, int n);
void f32_to_f16_row_ref(const float *src, void *dst, int n);
void f32_to_f16_row_f16c(const float *src, void *dst, int n);
int kernels_have_avx2(void);

/* out = x / rms(x) * w  (n elements; out may alias x). Sums in double; AVX2 when available. */
void rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* gate[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up, n elements (SwiGLU).
 * Chosen by kernels_init: swiglu_avx2 (vectorised exp) or swiglu_ref. */
extern void (*swiglu)(float *gate, const float *up, size_t n);
void swiglu_ref(float *gate, const float *up, size_t n);
void swiglu_avx2(float *gate, const float *up, size_t n);
/* In-place softmax over n elements. */
void softmax(float *x, int n);

/* Attention of nq query rows that read the same key/value head (the q heads of one KV head,
 * for one or several tokens of a sequence). Row i sees the key positions [start[i], end[i]):
 *   out_i = sum_p softmax_p(scale * q_i . k_p) v_p   over those p.
 * Keys and values are rows of hd elements (f32, or IEEE half when kv_f16), position p's at
 * k + p * kv_stride elements. The SIMD twin walks the keys in tiles of ATTN_TILE positions
 * aligned to multiples of ATTN_TILE with a running (online) softmax, so each row's result
 * depends only on that row's query and range, never on which other rows share the call: a
 * token gets the same attention alone or batched with others. */
#define ATTN_TILE 32
typedef struct attn_rows_args {
    int nq, hd;
    const float *const *q;  /* (nq) rows of hd floats */
    float *const *out;      /* (nq) rows of hd floats, written */
    const int *start, *end; /* (nq) visible key positions of each row, start < end */
    const void *k, *v;      /* row of position 0 */
    size_t kv_stride;       /* elements between positions */
    int kv_f16;
    float scale;
    float *scratch; /* ATTN_SCRATCH_FLOATS(nq, hd, n_keys) floats, 32-byte aligned */
} attn_rows_args;
/* Scratch the kernels need for nq rows of hd over keys [0, n_keys). */
#define ATTN_SCRATCH_FLOATS(nq, hd, n_keys)                                                        \
    ((size_t)2 * ATTN_TILE * (hd) + ATTN_TILE + 16 + 2 * (size_t)(nq) + (size_t)(n_keys) + (hd))
extern void (*attn_rows)(const attn_rows_args *a);
void attn_rows_ref(const attn_rows_args *a);
void attn_rows_avx2(const attn_rows_args *a);
void attn_rows_avx512(const attn_rows_args *a); /* hd % 16 == 0; else the AVX2 twin */
int kernels_have_avx512(void);

#endif
