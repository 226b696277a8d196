/* cmd_bench.c — `modelhub bench -m FILE`: prefill and decode speed, and how close decode comes
 * to the machine's memory bandwidth.
 *
 * Method (bench/vs-llamacpp measures llama.cpp the same way):
 *   prompt   token 0 is BOS (when the tokenizer has one), token i >= 1 is
 *            3 + (i * 7919) % (n_vocab - 3): fixed, spread over the vocabulary, no text needed.
 *   warm-up  one untimed prefill and a few decode steps (page faults of the mapping, caches).
 *   each rep rewind to 0; prefill = ONE model_ctx_eval of all N prompt tokens (timed); then M
 *            decode steps, each the argmax of the last logits fed back as one eval (timed as a
 *            whole). Reported: the median over reps of each.
 *   memcpy   the same number of threads each copy their slice of a buffer far bigger than the
 *            caches (4x the L3 by default); best of several runs; GB/s counts bytes read + bytes
 *            written (STREAM "Copy").
 *   decode bandwidth = model_bytes_per_token * decode tok/s (bytes of weights read per second).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/threadpool.h"
#include "util/common.h"

#define WARMUP_DECODE_STEPS 4
#define MEMCPY_RUNS         5

/* ==== Memory bandwidth ==== */

typedef struct copy_job {
    unsigned char *dst;
    const unsigned char *src;
    size_t size;
} copy_job;

static void copy_slice(void *arg, int ith, int nth) {
    const copy_job *j = arg;
    size_t per = (j->size / (size_t)nth + 63) & ~(size_t)63;
    size_t begin = per * (size_t)ith;
    if (begin >= j->size) return;
    size_t end = MH_MIN(begin + per, j->size);
    memcpy(j->dst + begin, j->src + begin, end - begin);
}

/* Best-of-MEMCPY_RUNS copy bandwidth in bytes/s (read + write), or 0 when memory is short. */
static double measure_memcpy(threadpool *tp, size_t size) {
    copy_job j = {mh_aligned_alloc(size), mh_aligned_alloc(size), size};
    double best = 0.0;
    if (j.dst && j.src) {
        memset(j.dst, 1, size); /* fault every page in before timing */
        memset((void *)j.src, 2, size);
        for (int run = 0; run < MEMCPY_RUNS; run++) {
            double t0 = mh_now_mono();
            threadpool_run(tp, copy_slice, &j);
            double dt = mh_now_mono() - t0;
            if (dt > 0 && 2.0 * (double)size / dt > best) best = 2.0 * (double)size / dt;
        }
    }
    free(j.dst);
    free((void *)j.src);
    return best;
}

/* Read-only pass over a slice: what decode does with the weights (no write stream). */
typedef struct read_job {
    const uint64_t *src;
    size_t words;
    uint64_t sums[64];
} read_job;

typedef uint64_t u64x2 __attribute__((vector_size(16)));

static void read_slice(void *arg, int ith, int nth) {
    read_job *j = arg;
    size_t per = (j->words / (size_t)nth + 15) & ~(size_t)15;
    size_t begin = per * (size_t)ith, end = MH_MIN(begin + per, j->words);
    u64x2 a0 = {0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const u64x2 *p = (const u64x2 *)(j->src + begin); /* 64-byte aligned: begin % 16 == 0 */
    for (size_t i = 0; begin + i + 16 <= end; i += 16, p += 8) {
        a0 += p[0], a1 += p[1], a2 += p[2], a3 += p[3];
        a4 += p[4], a5 += p[5], a6 += p[6], a7 += p[7];
    }
    a0 += a1 + a2 + a3 + a4 + a5 + a6 + a7;
    j->sums[ith & 63] = a0[0] + a0[1]; /* keeps the loads */
}

/* Best-of-MEMCPY_RUNS read bandwidth in bytes/s over `size` bytes split over the pool's
 * threads: the ceiling for decode, which only reads weights. 0 when memory is short. */
static double measure_read(threadpool *tp, size_t size) {
    read_job j = {mh_aligned_alloc(size), size / 8, {0}};
    double best = 0.0;
    if (j.src) {
        memset((void *)j.src, 3, size);
        for (int run = 0; run < MEMCPY_RUNS; run++) {
            double t0 = mh_now_mono();
            threadpool_run(tp, read_slice, &j);
            double dt = mh_now_mono() - t0;
            if (dt > 0 && (double)size / dt > best) best = (double)size / dt;
        }
    }
    free((void *)j.src);
    return best;
}

/* Default buffer size: 4x the last-level cache, at least 256 MiB, at most 1/8 of the RAM. */
static size_t default_copy_size(void) {
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    size_t cache = (size_t)MH_MAX(MH_MAX(l3, l2), 0L);
    size_t size = MH_MAX((size_t)256 << 20, 4 * cache);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) size = MH_MIN(size, (size_t)pages * (size_t)page / 8);
    return size;
}

/* ==== Timing the model ==== */

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct bench_result {
    double prefill_s, decode_s; /* medians */
    int32_t *generated;         /* gen_tokens ids of the first rep */
} bench_result;

/* Greedy-decode `steps` tokens after the current logits of each of the n_seq sequences, one
 * batched pass per step; ids of sequence 0 go to `out` when not NULL. */
static int decode_steps(model_ctx *c, int n_seq, int n_vocab, int steps, int32_t *out) {
    int32_t next[256];
    model_batch_item items[256];
    for (int s = 0; s < steps; s++) {
        for (int q = 0; q < n_seq; q++) {
            next[q] = argmax(model_ctx_logits(c, q), n_vocab);
            items[q] = (model_batch_item){q, &next[q], 1, MODEL_OUT_LOGITS};
        }
        if (out) out[s] = next[0];
        if (model_ctx_decode(c, items, n_seq) != 0) return -1;
    }
    return 0;
}

/* The prompt into every sequence (one batched call). */
static int prefill(model_ctx *c, int n_seq, const int32_t *prompt, int n_prompt) {
    model_batch_item items[256];
    for (int q = 0; q < n_seq; q++) {
        model_ctx_rewind(c, q, 0);
        items[q] = (model_batch_item){q, prompt, n_prompt, MODEL_OUT_LOGITS};
    }
    return model_ctx_decode(c, items, n_seq);
}

static int run_bench(model_ctx *c, int n_seq, int n_vocab, const int32_t *prompt, int n_prompt,
                     int n_gen, int reps, bench_result *r) {
    if (prefill(c, n_seq, prompt, n_prompt) != 0) return -1; /* warm-up */
    if (decode_steps(c, n_seq, n_vocab, MH_MIN(n_gen, WARMUP_DECODE_STEPS), NULL) < 0) return -1;
    double *prefill_t = mh_xcalloc((size_t)reps, sizeof(double));
    double *decode_t = mh_xcalloc((size_t)reps, sizeof(double));
    int rc = 0;
    for (int rep = 0; rep < reps && rc == 0; rep++) {
        double t0 = mh_now_mono();
        if (prefill(c, n_seq, prompt, n_prompt) != 0) rc = -1;
        double t1 = mh_now_mono();
        if (rc == 0 && decode_steps(c, n_seq, n_vocab, n_gen, rep == 0 ? r->generated : NULL) < 0)
            rc = -1;
        double t2 = mh_now_mono();
        prefill_t[rep] = t1 - t0;
        decode_t[rep] = t2 - t1;
    }
    r->prefill_s = median(prefill_t, reps);
    r->decode_s = median(decode_t, reps);
    free(prefill_t);
    free(decode_t);
    return rc;
}

/* ==== Command ==== */

static double per_second(double count, double seconds) {
    return seconds > 0 ? count / seconds : 0;
}

int cmd_bench(int argc, char **argv) {
    const char *path = NULL;
    long n_prompt = 128, n_gen = 32, threads = threadpool_default_size(), n_ctx = 0, reps = 3;
    long memcpy_mib = -1, n_batch = 0, n_seq = 1;
    int json = 0;
    const char *kv_type = "f16";
    const arg_spec specs[] = {
        {"--model", "-m", ARG_STRING, &path, 0, 0, "FILE", "the GGUF model (required)"},
        {"--prompt-tokens", "-p", ARG_INT, &n_prompt, 1, 1 << 20, "N",
         "prompt length of the prefill (default 128)"},
        {"--gen-tokens", "-n", ARG_INT, &n_gen, 1, 1 << 20, "N",
         "tokens decoded one by one (default 32)"},
        {"--threads", "-t", ARG_INT, &threads, 1, 1024, "N", "threads (default: all CPUs)"},
        {"--ctx", "-c", ARG_INT, &n_ctx, 0, 1 << 24, "N",
         "context size (default: prompt + gen tokens)"},
        {"--batch", "-b", ARG_INT, &n_batch, 0, MODEL_BATCH_MAX, "N",
         "tokens per forward pass of the prefill (default 64)"},
        {"--kv-type", NULL, ARG_STRING, &kv_type, 0, 0, "T", "KV cache type, f16 or f32 (f16)"},
        {"--seqs", "-s", ARG_INT, &n_seq, 1, 256, "N",
         "sequences prefilled and decoded side by side in each pass (default 1)"},
        {"--reps", "-r", ARG_INT, &reps, 1, 1000, "R", "repetitions, medians reported (default 3)"},
        {"--memcpy-mib", NULL, ARG_INT, &memcpy_mib, 0, 1 << 20, "MIB",
         "memcpy test buffer, 0 skips it (default 4x the L3 cache, >= 256)"},
        {"--json", NULL, ARG_FLAG, &json, 0, 0, NULL, "print one JSON object"},
    };
    arg_command cmd = {"bench",
                       "-m FILE [options]",
                       "Measure prefill and greedy-decode speed and compare decode's weight "
                       "traffic with the machine's memory copy bandwidth.",
                       specs,
                       (int)MH_ARRAY_LEN(specs),
                       NULL,
                       0,
                       0};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (!path) return args_error(&cmd, "a model is required (-m FILE)");
    int kv = model_kv_type_parse(kv_type);
    if (kv < 0) return args_error(&cmd, "--kv-type must be f16 or f32, not '%s'", kv_type);
    if (n_ctx == 0) n_ctx = n_prompt + n_gen;
    if (n_ctx < n_prompt + n_gen)
        return args_error(&cmd, "--ctx %ld is smaller than --prompt-tokens + --gen-tokens (%ld)",
                          n_ctx, n_prompt + n_gen);

    const char *kernels = kernels_init(0);
    char err[512];
    model *m = NULL;
    double t0 = mh_now_mono();
    if (model_load(path, &m, err, sizeof err) < 0) {
        fprintf(stderr, "modelhub bench: %s: %s\n", path, err);
        return 1;
    }
    double load_s = mh_now_mono() - t0;
    const model_hparams *hp = model_get_hparams(m);
    threadpool *tp = threadpool_new((int)threads);
    model_ctx *c = tp ? model_ctx_new(m,
                                      &(model_ctx_params){.n_ctx = (int)n_ctx,
                                                          .n_seq = (int)n_seq,
                                                          .kv_type = kv,
                                                          .n_batch = (int)n_batch},
                                      tp, err, sizeof err)
                      : NULL;
    if (!c) {
        fprintf(stderr, "modelhub bench: %s\n", tp ? err : "cannot start the threads");
        threadpool_free(tp);
        model_free(m);
        return 1;
    }

    int32_t *prompt = mh_xmalloc((size_t)n_prompt * sizeof *prompt);
    const tokenizer *tok = model_get_tokenizer(m);
    int32_t bos = tok ? tokenizer_bos(tok) : -1;
    for (long i = 0; i < n_prompt; i++)
        prompt[i] = hp->n_vocab > 3 ? 3 + (int32_t)((i * 7919) % (hp->n_vocab - 3)) : 0;
    if (bos >= 0 && bos < hp->n_vocab) prompt[0] = bos;

    bench_result r = {0, 0, mh_xcalloc((size_t)n_gen, sizeof(int32_t))};
    rc = run_bench(c, (int)n_seq, hp->n_vocab, prompt, (int)n_prompt, (int)n_gen, (int)reps, &r);
    double memcpy_bps = 0, read_bps = 0;
    size_t copy_size = memcpy_mib < 0 ? default_copy_size() : (size_t)memcpy_mib << 20;
    if (rc == 0 && copy_size > 0) {
        memcpy_bps = measure_memcpy(tp, copy_size);
        read_bps = measure_read(tp, copy_size);
    }

    if (rc < 0) {
        fprintf(stderr, "modelhub bench: evaluation failed\n");
    } else {
        double prefill_tps = per_second((double)(n_prompt * n_seq), r.prefill_s);
        double decode_tps = per_second((double)(n_gen * n_seq), r.decode_s);
        uint64_t bpt = model_bytes_per_token(m);
        double decode_bps = (double)bpt * decode_tps;
        double ratio = memcpy_bps > 0 ? decode_bps / memcpy_bps : 0;
        double read_ratio = read_bps > 0 ? decode_bps / read_bps : 0;
        if (json) {
            json_t *ids = json_array();
            for (long i = 0; i < n_gen; i++)
                json_array_append_new(ids, json_integer(r.generated[i]));
            json_t *o = json_pack(
                "{s:s, s:s, s:I, s:I, s:i, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:I, "
                "s:f, s:f, s:f, s:I, s:f, s:f, s:s, s:i, s:i, s:o}",
                "model", path, "name", hp->name, "n_params", (json_int_t)model_n_params(m),
                "weight_bytes", (json_int_t)model_weight_bytes(m), "threads", (int)threads,
                "kernels", kernels, "n_ctx", (int)n_ctx, "prompt_tokens", (int)n_prompt,
                "gen_tokens", (int)n_gen, "reps", (int)reps, "load_s", load_s, "prefill_s",
                r.prefill_s, "prefill_tok_s", prefill_tps, "decode_s", r.decode_s, "decode_tok_s",
                decode_tps, "bytes_per_token", (json_int_t)bpt, "decode_gbs", decode_bps / 1e9,
                "memcpy_gbs", memcpy_bps / 1e9, "bandwidth_ratio", ratio, "memcpy_bytes",
                (json_int_t)copy_size, "read_gbs", read_bps / 1e9, "read_bandwidth_ratio",
                read_ratio, "kv_type", model_kv_type_name(kv), "batch", model_ctx_n_batch(c),
                "seqs", (int)n_seq, "generated_ids", ids);
            char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
            if (s)
                printf("%s\n", s);
            else
                rc = -1, fprintf(stderr, "modelhub bench: cannot format JSON\n");
            free(s);
            json_decref(o);
        } else {
            printf("model      %s (%s, %.1fM params, %.1f MB of weights)\n", path, hp->name,
                   (double)model_n_params(m) / 1e6, (double)model_weight_bytes(m) / 1e6);
            printf("setup      %ld threads, kernels %s, ctx %ld (KV %s), batch %d, %ld reps "
                   "(medians), load %.3f s\n",
                   threads, kernels, n_ctx, model_kv_type_name(kv), model_ctx_n_batch(c), reps,
                   load_s);
            printf("prefill    %ld x %ld tokens in %.4f s = %.1f tok/s\n", n_seq, n_prompt,
                   r.prefill_s, prefill_tps);
            printf("decode     %ld x %ld tokens in %.4f s = %.2f tok/s\n", n_seq, n_gen, r.decode_s,
                   decode_tps);
            printf("bandwidth  %.2f MB/token x %.2f tok/s = %.2f GB/s of weights read\n",
                   (double)bpt / 1e6, decode_tps, decode_bps / 1e9);
            if (memcpy_bps > 0)
                printf("memcpy     %.2f GB/s (read + write, %ld threads, 2 x %zu MiB): decode "
                       "reaches %.0f%%\n",
                       memcpy_bps / 1e9, threads, copy_size >> 20, 100.0 * ratio);
            if (read_bps > 0)
                printf("read       %.2f GB/s (read only, %ld threads, %zu MiB): decode reaches "
                       "%.0f%%\n",
                       read_bps / 1e9, threads, copy_size >> 20, 100.0 * read_ratio);
        }
    }
    free(r.generated);
    free(prompt);
    model_ctx_free(c);
    threadpool_free(tp);
    model_free(m);
    return rc < 0 ? 1 : 0;
}
