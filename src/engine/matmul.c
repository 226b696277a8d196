/* matmul.c — see matmul.h. */
#include "engine/matmul.h"

#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "util/common.h"

/* Below this many multiply-adds a matmul runs on the calling thread: waking workers costs more. */
#define MIN_MACS_PER_DISPATCH 32768
#define MAX_JOBS              4

struct mm_scratch {
    int n_threads, max_row, max_batch;
    float *row_f32;     /* (n_threads, max_row) a weight row widened to f32 */
    uint8_t *xq;        /* (MAX_JOBS, max_batch, xq_row_cap) activations in vec_dot_type */
    size_t xq_row_cap;  /* bytes per converted activation row */
    size_t bytes;
};

typedef struct mm_task {
    mm_scratch *s;
    const mm_job *jobs;
    int n_jobs;
    int B;
    const uint8_t *xq[MAX_JOBS]; /* converted activations per job, NULL = use x as f32 */
    size_t xq_row_bytes[MAX_JOBS];
} mm_task;

mm_scratch *mm_scratch_new(int n_threads, int max_row, int max_batch) {
    mm_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_threads = n_threads;
    s->max_row = max_row;
    s->max_batch = max_batch;
    /* every activation format takes at most 2 bytes per element plus a block header */
    s->xq_row_cap = (size_t)max_row * 2 + 512;
    size_t row_bytes = (size_t)n_threads * (size_t)max_row * sizeof(float);
    size_t xq_bytes = (size_t)MAX_JOBS * (size_t)max_batch * s->xq_row_cap;
    s->row_f32 = mh_aligned_alloc(row_bytes);
    s->xq = mh_aligned_alloc(xq_bytes);
    if (!s->row_f32 || !s->xq) {
        mm_scratch_free(s);
        return NULL;
    }
    s->bytes = row_bytes + xq_bytes;
    return s;
}

void mm_scratch_free(mm_scratch *s) {
    if (!s) return;
    free(s->row_f32);
    free(s->xq);
    free(s);
}

size_t mm_scratch_bytes(const mm_scratch *s) { return s->bytes; }

static void mm_rows(const mm_task *t, int ji, int r0, int r1, int ith) {
    const mm_job *j = &t->jobs[ji];
    const mm_weight *w = j->w;
    const uint8_t *base = w->data;
    int n = w->n_in, B = t->B;
    const uint8_t *xq = t->xq[ji];
    if (xq) { /* quantized activations: the type's own dot product */
        size_t xb = t->xq_row_bytes[ji];
        for (int r = r0; r < r1; r++) {
            const void *row = base + (size_t)r * w->row_bytes;
            for (int b = 0; b < B; b++) {
                float s;
                w->tt->vec_dot(n, &s, row, xq + (size_t)b * xb);
                float *dst = j->y + (size_t)b * j->y_stride + r;
                *dst = j->accumulate ? *dst + s : s;
            }
        }
        return;
    }
    if (B == 1 || w->type == GGML_TYPE_F32) {
        for (int r = r0; r < r1; r++) {
            const void *row = base + (size_t)r * w->row_bytes;
            for (int b = 0; b < B; b++) {
                float s;
                w->tt->vec_dot(n, &s, row, j->x + (size_t)b * n);
                float *dst = j->y + (size_t)b * j->y_stride + r;
                *dst = j->accumulate ? *dst + s : s;
            }
        }
        return;
    }
    /* several tokens, f32 activations: widen each row once, then dot it with every token */
    const type_traits *f32 = kernels_traits(GGML_TYPE_F32);
    float *row = t->s->row_f32 + (size_t)ith * (size_t)t->s->max_row;
    for (int r = r0; r < r1; r++) {
        w->tt->to_f32(base + (size_t)r * w->row_bytes, row, n);
        for (int b = 0; b < B; b++) {
            float s;
            f32->vec_dot(n, &s, row, j->x + (size_t)b * n);
            float *dst = j->y + (size_t)b * j->y_stride + r;
            *dst = j->accumulate ? *dst + s : s;
        }
    }
}

static void mm_worker(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    for (int i = 0; i < t->n_jobs; i++) {
        int n_out = t->jobs[i].w->n_out;
        int r0 = (int)((int64_t)n_out * ith / nth), r1 = (int)((int64_t)n_out * (ith + 1) / nth);
        mm_rows(t, i, r0, r1, ith);
    }
}

void mm_run(threadpool *tp, mm_scratch *s, const mm_job *jobs, int n_jobs, int B) {
    MH_ASSERT(n_jobs <= MAX_JOBS && B <= s->max_batch);
    mm_task t = {s, jobs, n_jobs, B, {0}, {0}};
    uint64_t macs = 0;
    for (int i = 0; i < n_jobs; i++) {
        const mm_job *j = &jobs[i];
        macs += (uint64_t)j->w->n_in * (uint64_t)j->w->n_out * (uint64_t)B;
        int vdt = j->w->tt->vec_dot_type;
        if (vdt == GGML_TYPE_F32) continue;
        /* convert this job's activations, or reuse an earlier job's conversion of them */
        for (int k = 0; k < i; k++)
            if (jobs[k].x == j->x && t.xq[k] && jobs[k].w->tt->vec_dot_type == vdt &&
                jobs[k].w->n_in == j->w->n_in) {
                t.xq[i] = t.xq[k];
                t.xq_row_bytes[i] = t.xq_row_bytes[k];
            }
        if (t.xq[i]) continue;
        const type_traits *q = kernels_traits(vdt);
        size_t rb = ggml_row_size((uint32_t)vdt, (uint64_t)j->w->n_in);
        MH_ASSERT(q && rb <= s->xq_row_cap);
        uint8_t *dst = s->xq + (size_t)i * (size_t)s->max_batch * s->xq_row_cap;
        for (int b = 0; b < B; b++) q->from_f32(j->x + (size_t)b * j->w->n_in, dst + (size_t)b * rb, j->w->n_in);
        t.xq[i] = dst;
        t.xq_row_bytes[i] = rb;
    }
    if (!tp || threadpool_size(tp) == 1 || macs < MIN_MACS_PER_DISPATCH)
        mm_worker(&t, 0, 1);
    else
        threadpool_run(tp, mm_worker, &t);
}
