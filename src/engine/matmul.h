/* matmul.h — y = W x for weight matrices of any supported type, split over the thread pool.
 *
 * A weight is n_out rows of n_in elements in its GGUF type. Activations are f32 rows. Types whose
 * dot product works on quantized activations (type_traits.vec_dot_type != F32) get each
 * activation row converted once per call, shared by every job of the call that reads the same
 * input. Weights repacked by mm_weight_pack go through the packed kernels: 16 rows by up to 8
 * tokens per register tile, so a prefill batch is matrix-matrix work. Several jobs (e.g. the q, k
 * and v projections of one input) run in one dispatch. Nothing is allocated per call: buffers live
 * in an mm_scratch made once per context.
 */
#ifndef MH_MATMUL_H
#define MH_MATMUL_H

#include <stddef.h>

#include "engine/kernels.h"
#include "engine/quant.h"
#include "engine/threadpool.h"

typedef struct mm_weight {
    const void *data; /* n_out rows of row_bytes */
    int type;         /* enum ggml_type */
    int n_in;         /* ne0: row length */
    int n_out;        /* ne1: number of rows */
    size_t row_bytes;
    const type_traits *tt;
    /* Filled by mm_weight_pack: the rows repacked in groups of MH_PACK_ROWS for this CPU's
     * packed kernels (see quant.h), or NULL (then tt->vec_dot reads `data`). */
    const void *packed;
    const mh_pack_ops *pk;
    size_t group_bytes;
} mm_weight;

/* Repack `w` (data, type, n_in, n_out, row_bytes set) for the packed kernels when this CPU has
 * them for its type; otherwise leave w->packed NULL. The copy is 64-byte aligned, belongs to the
 * caller (free() it; a struct copy of w shares it) and holds about as many bytes as the rows;
 * large copies are on transparent huge pages when the system allows. The original rows' pages
 * are then offered back to the kernel (MADV_PAGEOUT: contents unchanged, re-read on access).
 * Returns 0, or -1 when out of memory. */
int mm_weight_pack(mm_weight *w);

typedef struct mm_job {
    const mm_weight *w;
    const float *x; /* (B, w->n_in) */
    float *y;       /* (B, y_stride); the first n_out of each row are written */
    int y_stride;
    int accumulate; /* y += W x instead of y = W x */
} mm_job;

typedef struct mm_scratch mm_scratch;

/* Buffers for up to max_batch activation rows of up to max_row elements, for n_threads. */
mm_scratch *mm_scratch_new(int n_threads, int max_row, int max_batch);
void mm_scratch_free(mm_scratch *s);
size_t mm_scratch_bytes(const mm_scratch *s);

/* Run the jobs over B activation rows. tp may be NULL (the caller's thread does everything);
 * small products run on the caller's thread anyway. */
void mm_run(threadpool *tp, mm_scratch *s, const mm_job *jobs, int n_jobs, int B);

#endif
