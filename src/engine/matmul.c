/* matmul.c — see matmul.h.
 *
 * Work is split over the pool by rows (packed weights: by groups of 16 rows). Each thread walks
 * its rows once and, for every row (group), runs all B activation rows of the call, so a
 * weight is read from memory once per call whatever B is. */
#include "engine/matmul.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/gguf.h"
#include "util/common.h"

/* Below this many multiply-adds a matmul runs on the calling thread: waking workers costs more. */
#define MIN_MACS_PER_DISPATCH 32768
#define MAX_JOBS              4
/* Unpacked weights: prefetch the row this many rows ahead (the hardware prefetcher alone
 * leaves a single thread well below the memory bandwidth). */
#define PREFETCH_ROWS 2

struct mm_scratch {
    int n_threads, max_row, max_batch;
    float *row_f32;    /* (n_threads, max_row) a weight row widened to f32 */
    uint8_t *pack_tmp; /* (n_threads, MH_PACK_SCRATCH(max_row)) packed kernels' scratch */
    uint8_t *xq;       /* (MAX_JOBS, max_batch, xq_row_cap) activations in the kernels' format */
    size_t xq_row_cap; /* bytes per converted activation row */
    int xq_rows;       /* activation rows per job: max_batch rounded up to 16 */
    size_t bytes;
};

typedef struct mm_task {
    mm_scratch *s;
    const mm_job *jobs;
    int n_jobs;
    int B;
    const uint8_t *xq[MAX_JOBS]; /* converted activations per job, NULL = use x as f32 */
    size_t xq_row_bytes[MAX_JOBS];
    int chunk[MAX_JOBS];        /* units (rows or groups) taken at a time */
    _Atomic int next[MAX_JOBS]; /* first unit not taken yet */
} mm_task;

/* Packed weights of 2 MiB and more go on transparent huge pages where the kernel allows them
 * (THP "madvise" mode): decode streams every weight once per token, and with 4 KiB pages that
 * is a TLB miss every 4 KiB. free() releases either kind. */
#define HUGE_PAGE ((size_t)2 << 20)

static void *alloc_packed(size_t n) {
    if (n < HUGE_PAGE) return mh_aligned_alloc(n);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n & ~(HUGE_PAGE - 1), MADV_HUGEPAGE); /* advice only: failure changes nothing */
#endif
    return p;
}

int mm_weight_pack(mm_weight *w) {
    w->packed = NULL;
    w->pk = quant_pack_ops(w->type);
    if (!w->pk) return 0;
    int n_groups = (w->n_out + MH_PACK_ROWS - 1) / MH_PACK_ROWS;
    w->group_bytes = w->pk->group_bytes(w->n_in);
    uint8_t *dst = alloc_packed((size_t)n_groups * w->group_bytes);
    if (!dst) {
        w->pk = NULL;
        return -1;
    }
    for (int g = 0; g < n_groups; g++) {
        int r0 = g * MH_PACK_ROWS, rows = MH_MIN(MH_PACK_ROWS, w->n_out - r0);
        w->pk->pack((const uint8_t *)w->data + (size_t)r0 * w->row_bytes, w->row_bytes, rows,
                    w->n_in, dst + (size_t)g * w->group_bytes);
    }
    w->packed = dst;
#ifdef MADV_PAGEOUT
    /* The kernels never read the original rows again: let the kernel reclaim their pages (a
     * file mapping just drops them; contents never change), so the process holds one copy. */
    uintptr_t page = 4096, lo = ((uintptr_t)w->data + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)w->data + (size_t)w->n_out * w->row_bytes) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_PAGEOUT);
#endif
    return 0;
}

mm_scratch *mm_scratch_new(int n_threads, int max_row, int max_batch) {
    mm_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_threads = n_threads;
    s->max_row = max_row;
    s->max_batch = max_batch;
    /* every activation format takes at most 2 bytes per element plus a block header */
    s->xq_row_cap = ((size_t)max_row * 2 + 512 + 63) & ~(size_t)63;
    /* packed kernels may read whole 16-row tiles of activations: round the rows up */
    s->xq_rows = (max_batch + 15) / 16 * 16;
    size_t row_bytes = (size_t)n_threads * (size_t)max_row * sizeof(float);
    size_t tmp_bytes = (size_t)n_threads * ((MH_PACK_SCRATCH(max_row) + 63) & ~(size_t)63);
    size_t xq_bytes = (size_t)MAX_JOBS * (size_t)s->xq_rows * s->xq_row_cap;
    s->row_f32 = mh_aligned_alloc(row_bytes);
    s->pack_tmp = mh_aligned_alloc(tmp_bytes);
    s->xq = mh_aligned_alloc(xq_bytes);
    if (!s->row_f32 || !s->xq || !s->pack_tmp) {
        mm_scratch_free(s);
        return NULL;
    }
    memset(s->xq, 0, xq_bytes); /* tile rows past a batch read zeros, never garbage */
    s->bytes = row_bytes + tmp_bytes + xq_bytes;
    return s;
}

void mm_scratch_free(mm_scratch *s) {
    if (!s) return;
    free(s->row_f32);
    free(s->pack_tmp);
    free(s->xq);
    free(s);
}

size_t mm_scratch_bytes(const mm_scratch *s) {
    return s->bytes;
}

static inline void put(float *dst, float v, int accumulate) {
    *dst = accumulate ? *dst + v : v;
}

static void prefetch_row(const void *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)row + o, 0, 2);
}

/* Rows [r0, r1) of an unpacked weight against all B activation rows. */
static void mm_rows(const mm_task *t, int ji, int r0, int r1, int ith) {
    const mm_job *j = &t->jobs[ji];
    const mm_weight *w = j->w;
    const uint8_t *base = w->data;
    int n = w->n_in, B = t->B;
    const uint8_t *xq = t->xq[ji];
    if (xq || B == 1 || w->type == GGML_TYPE_F32) {
        const uint8_t *x = xq ? xq : (const uint8_t *)j->x;
        size_t xb = xq ? t->xq_row_bytes[ji] : (size_t)n * sizeof(float);
        int b4 = xq && w->tt->vec_dot4 ? B / 4 * 4 : 0; /* tokens done four at a time */
        for (int r = r0; r < r1; r++) {
            const uint8_t *row = base + (size_t)r * w->row_bytes;
            if (r + PREFETCH_ROWS < r1)
                prefetch_row(row + PREFETCH_ROWS * w->row_bytes, w->row_bytes);
            for (int b = 0; b < b4; b += 4) {
                float s[4];
                w->tt->vec_dot4(n, s, row, x + (size_t)b * xb, xb);
                for (int k = 0; k < 4; k++)
                    put(j->y + (size_t)(b + k) * j->y_stride + r, s[k], j->accumulate);
            }
            for (int b = b4; b < B; b++) {
                float s;
                w->tt->vec_dot(n, &s, row, x + (size_t)b * xb);
                put(j->y + (size_t)b * j->y_stride + r, s, j->accumulate);
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
            put(j->y + (size_t)b * j->y_stride + r, s, j->accumulate);
        }
    }
}

/* Groups [g0, g1) of a packed weight against all B activation rows. */
static void mm_groups(const mm_task *t, int ji, int g0, int g1, int ith) {
    const mm_job *j = &t->jobs[ji];
    const mm_weight *w = j->w;
    void *tmp =
        t->s->pack_tmp + (size_t)ith * ((MH_PACK_SCRATCH(t->s->max_row) + 63) & ~(size_t)63);
    for (int g = g0; g < g1; g++) {
        int r0 = g * MH_PACK_ROWS;
        w->pk->gemm(w->n_in, t->B, (const uint8_t *)w->packed + (size_t)g * w->group_bytes,
                    MH_MIN(MH_PACK_ROWS, w->n_out - r0), t->xq[ji], t->xq_row_bytes[ji], j->y + r0,
                    (size_t)j->y_stride, j->accumulate, tmp);
    }
}

static int n_units(const mm_weight *w) {
    return w->packed ? (w->n_out + MH_PACK_ROWS - 1) / MH_PACK_ROWS : w->n_out;
}

/* Threads take chunks of rows (groups) from a shared counter, so one slowed down by another
 * process or by its share of memory traffic does not leave the others waiting at the end. */
static void mm_worker(void *arg, int ith, int nth) {
    (void)nth;
    mm_task *t = arg;
    for (int i = 0; i < t->n_jobs; i++) {
        const mm_weight *w = t->jobs[i].w;
        int units = n_units(w);
        for (;;) {
            int u0 = atomic_fetch_add_explicit(&t->next[i], t->chunk[i], memory_order_relaxed);
            if (u0 >= units) break;
            int u1 = MH_MIN(u0 + t->chunk[i], units);
            if (w->packed)
                mm_groups(t, i, u0, u1, ith);
            else
                mm_rows(t, i, u0, u1, ith);
        }
    }
}

/* The activation format a job's kernel reads: a packed kernel's MH_ACT_*, offset to stay apart
 * from ggml types, or the vec_dot_type (F32: none). */
static int act_format(const mm_weight *w) {
    return w->packed ? 1000 + w->pk->act : w->tt->vec_dot_type;
}

void mm_run(threadpool *tp, mm_scratch *s, const mm_job *jobs, int n_jobs, int B) {
    MH_ASSERT(n_jobs <= MAX_JOBS && B <= s->max_batch);
    mm_task t = {s, jobs, n_jobs, B, {0}, {0}, {0}, {0}};
    int nth = tp ? threadpool_size(tp) : 1;
    uint64_t macs = 0;
    for (int i = 0; i < n_jobs; i++) {
        const mm_job *j = &jobs[i];
        int n = j->w->n_in;
        macs += (uint64_t)n * (uint64_t)j->w->n_out * (uint64_t)B;
        /* 8 (decode: 16) chunks per thread: balance without contention on the counter */
        t.chunk[i] = MH_MAX(1, n_units(j->w) / ((B == 1 ? 16 : 8) * nth));
        atomic_init(&t.next[i], 0);
        int fmt = act_format(j->w);
        if (fmt == GGML_TYPE_F32) continue;
        /* convert this job's activations, or reuse an earlier job's conversion of them */
        for (int k = 0; k < i; k++)
            if (jobs[k].x == j->x && t.xq[k] && act_format(jobs[k].w) == fmt &&
                jobs[k].w->n_in == n) {
                t.xq[i] = t.xq[k];
                t.xq_row_bytes[i] = t.xq_row_bytes[k];
            }
        if (t.xq[i]) continue;
        uint8_t *dst = s->xq + (size_t)i * (size_t)s->xq_rows * s->xq_row_cap;
        size_t rb;
        if (j->w->packed) {
            rb = quant_act_bytes(j->w->pk->act, n);
            MH_ASSERT(rb <= s->xq_row_cap);
            for (int b = 0; b < B; b++)
                quant_act_row(j->w->pk->act, j->x + (size_t)b * n, dst + (size_t)b * rb, n);
        } else {
            const type_traits *q = kernels_traits(fmt);
            rb = ggml_row_size((uint32_t)fmt, (uint64_t)n);
            MH_ASSERT(q && rb <= s->xq_row_cap);
            for (int b = 0; b < B; b++) q->from_f32(j->x + (size_t)b * n, dst + (size_t)b * rb, n);
        }
        t.xq[i] = dst;
        t.xq_row_bytes[i] = rb;
    }
    if (!tp || threadpool_size(tp) == 1 || macs < MIN_MACS_PER_DISPATCH)
        mm_worker(&t, 0, 1);
    else
        threadpool_run(tp, mm_worker, &t);
}
