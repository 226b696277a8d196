/* scheduler.c — see scheduler.h. */
#include "serve/scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/common.h"
#include "util/log.h"

/* Prompt tokens one slot evaluates per turn, so other slots keep generating during a long
 * prefill (and a cancelled prefill stops within one chunk). */
#define PREFILL_CHUNK 128

struct sched_job {
    atomic_int refs; /* the caller's and the scheduler's */
    volatile int cancel;
    int32_t *prompt;
    int n_prompt;
    sampler_params sp;
    int max_tokens;
    char **stop;
    int n_stop;
    size_t max_stop_len;
    int embedding;
    sched_event_fn on_event;
    void *arg;
    double submitted; /* monotonic */
    sched_job *next;  /* queue link */
};

typedef struct slot {
    model_ctx *ctx;
    sampler *smp;
    int32_t *tokens; /* (n_ctx) the tokens whose keys and values are in the cache */
    int n_tokens;
    sched_job *job; /* NULL when free */
    int n_prompt_done;
    int n_cached;
    int n_gen;
    tokenizer_stream ts;
    char *pending; /* text held back because it may be the start of a stop string */
    size_t pending_len, pending_cap;
    double t_start, t_prompt_end;
    float *embedding; /* (n_embd) */
} slot;

struct sched {
    model *m;
    const tokenizer *tok;
    sched_config cfg;
    slot *slots;
    int n_slots;
    uint64_t bytes;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    int thread_started;
    int stopping;
    sched_job *queue_head, *queue_tail;
    atomic_int n_queued;
    atomic_int n_active;
};

static void job_unref(sched_job *j) {
    if (atomic_fetch_sub(&j->refs, 1) != 1) return;
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->stop);
    free(j->prompt);
    free(j);
}

void sched_job_release(sched_job *job) {
    if (job) job_unref(job);
}

void sched_cancel(sched_job *job) {
    __atomic_store_n(&job->cancel, 1, __ATOMIC_RELEASE);
}

/* DONE for a job that never reached a slot. */
static void emit_done_unstarted(sched_job *j, int finish, const char *error) {
    sched_event ev = {
        .type = SCHED_EV_DONE, .finish = finish, .n_prompt = j->n_prompt, .error = error};
    j->on_event(j->arg, &ev);
}

/* ==== Text and stop strings ==== */

static void emit_text(sched_job *j, const char *text, size_t len) {
    if (len == 0) return;
    sched_event ev = {.type = SCHED_EV_TEXT, .text = text, .len = len};
    j->on_event(j->arg, &ev);
}

static void pending_append(slot *sl, const char *text, size_t len) {
    if (sl->pending_len + len > sl->pending_cap) {
        size_t cap = sl->pending_cap ? sl->pending_cap : 256;
        while (cap < sl->pending_len + len) cap *= 2;
        sl->pending = mh_xrealloc(sl->pending, cap);
        sl->pending_cap = cap;
    }
    memcpy(sl->pending + sl->pending_len, text, len);
    sl->pending_len += len;
}

/* Emit what is safe of the pending text. Returns 1 when a stop string was found (the text
 * before it was emitted, the rest dropped). */
static int flush_pending(slot *sl, int final) {
    sched_job *j = sl->job;
    size_t n = sl->pending_len;
    size_t first = n; /* earliest stop match */
    for (int i = 0; i < j->n_stop; i++) {
        const char *hit = memmem(sl->pending, n, j->stop[i], strlen(j->stop[i]));
        if (hit && (size_t)(hit - sl->pending) < first) first = (size_t)(hit - sl->pending);
    }
    if (first < n) {
        emit_text(j, sl->pending, first);
        sl->pending_len = 0;
        return 1;
    }
    size_t hold = 0;
    if (!final) /* keep the longest tail that could still grow into a stop string */
        for (int i = 0; i < j->n_stop; i++) {
            size_t sl_len = strlen(j->stop[i]);
            for (size_t k = MH_MIN(sl_len - 1, n); k > hold; k--)
                if (memcmp(sl->pending + n - k, j->stop[i], k) == 0) {
                    hold = k;
                    break;
                }
        }
    emit_text(j, sl->pending, n - hold);
    memmove(sl->pending, sl->pending + n - hold, hold);
    sl->pending_len = hold;
    return 0;
}

/* ==== Slots ==== */

static void slot_finish(sched *s, slot *sl, int finish, const char *error) {
    sched_job *j = sl->job;
    if (finish == SCHED_FINISH_STOP || finish == SCHED_FINISH_LENGTH) {
        if (!j->embedding) {
            char tail[16];
            size_t n = tokenizer_stream_flush(&sl->ts, tail, sizeof tail);
            pending_append(sl, tail, n);
            flush_pending(sl, 1);
        }
    }
    sched_event ev = {.type = SCHED_EV_DONE,
                      .finish = finish,
                      .n_prompt = j->n_prompt,
                      .n_cached = sl->n_cached,
                      .n_gen = sl->n_gen,
                      .error = error};
    double now = mh_now_mono();
    ev.t_prompt_s = (sl->t_prompt_end > 0 ? sl->t_prompt_end : now) - sl->t_start;
    ev.t_gen_s = sl->t_prompt_end > 0 ? now - sl->t_prompt_end : 0;
    if (j->embedding && finish == SCHED_FINISH_STOP) {
        ev.embedding = sl->embedding;
        ev.n_embd = model_get_hparams(s->m)->n_embd;
    }
    j->on_event(j->arg, &ev);
    sl->job = NULL;
    atomic_fetch_sub(&s->n_active, 1);
    job_unref(j);
}

/* Length of the common prefix of two token lists. */
static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int n = 0;
    while (n < na && n < nb && a[n] == b[n]) n++;
    return n;
}

static void slot_begin(sched *s, slot *sl, sched_job *j) {
    sl->job = j;
    sl->n_gen = 0;
    sl->pending_len = 0;
    memset(&sl->ts, 0, sizeof sl->ts);
    sl->t_start = mh_now_mono();
    sl->t_prompt_end = 0;
    if (j->embedding) {
        sl->n_cached = 0;
        sl->n_prompt_done = 0;
    } else {
        /* reuse the cached prefix, but evaluate at least one token to get fresh logits */
        int keep = s->cfg.no_prompt_cache
                       ? 0
                       : common_prefix(sl->tokens, sl->n_tokens, j->prompt, j->n_prompt);
        if (keep >= j->n_prompt) keep = j->n_prompt - 1;
        model_ctx_rewind(sl->ctx, keep);
        sl->n_tokens = keep;
        sl->n_cached = keep;
        sl->n_prompt_done = keep;
        sampler_reset(sl->smp, &j->sp);
    }
    sched_event ev = {.type = SCHED_EV_STARTED};
    j->on_event(j->arg, &ev);
}

/* One turn of a slot: a prefill chunk, or one generated token. */
static void slot_step(sched *s, slot *sl) {
    sched_job *j = sl->job;
    const tokenizer *tok = s->tok;
    if (__atomic_load_n(&j->cancel, __ATOMIC_ACQUIRE)) {
        slot_finish(s, sl, SCHED_FINISH_CANCELLED, NULL);
        return;
    }
    if (j->embedding) {
        model_ctx_set_abort(sl->ctx, &j->cancel);
        int rc = model_ctx_embed(sl->ctx, j->prompt, j->n_prompt, sl->embedding);
        model_ctx_set_abort(sl->ctx, NULL);
        sl->n_tokens = 0; /* the cache now holds nothing reusable */
        sl->t_prompt_end = mh_now_mono();
        slot_finish(s, sl,
                    rc == 0    ? SCHED_FINISH_STOP
                    : rc == -2 ? SCHED_FINISH_CANCELLED
                               : SCHED_FINISH_ERROR,
                    rc == -1 ? "the input does not fit the context" : NULL);
        return;
    }
    if (sl->n_prompt_done < j->n_prompt) {
        int n = MH_MIN(PREFILL_CHUNK, j->n_prompt - sl->n_prompt_done);
        model_ctx_set_abort(sl->ctx, &j->cancel);
        int rc = model_ctx_eval(sl->ctx, j->prompt + sl->n_prompt_done, n);
        model_ctx_set_abort(sl->ctx, NULL);
        if (rc == 0) {
            memcpy(sl->tokens + sl->n_tokens, j->prompt + sl->n_prompt_done,
                   (size_t)n * sizeof(int32_t));
            sl->n_tokens += n;
            sl->n_prompt_done += n;
        } else {
            /* keep whatever the cache holds consistent with the token list */
            int past = model_ctx_n_past(sl->ctx);
            if (past > sl->n_tokens) {
                memcpy(sl->tokens + sl->n_tokens, j->prompt + sl->n_prompt_done,
                       (size_t)(past - sl->n_tokens) * sizeof(int32_t));
                sl->n_tokens = past;
            }
            slot_finish(s, sl, rc == -2 ? SCHED_FINISH_CANCELLED : SCHED_FINISH_ERROR,
                        rc == -2 ? NULL : "evaluating the prompt failed");
            return;
        }
        if (sl->n_prompt_done == j->n_prompt) sl->t_prompt_end = mh_now_mono();
        return;
    }
    int32_t next = sampler_sample(sl->smp, model_ctx_logits(sl->ctx), sl->tokens, sl->n_tokens);
    if (tokenizer_is_eog(tok, next)) {
        slot_finish(s, sl, SCHED_FINISH_STOP, NULL);
        return;
    }
    sl->n_gen++;
    char piece[512];
    size_t len = tokenizer_stream_push(&sl->ts, tok, next, piece, sizeof piece);
    pending_append(sl, piece, len);
    if (j->n_stop > 0) {
        if (flush_pending(sl, 0)) {
            slot_finish(s, sl, SCHED_FINISH_STOP, NULL);
            return;
        }
    } else {
        emit_text(j, sl->pending, sl->pending_len);
        sl->pending_len = 0;
    }
    if ((j->max_tokens > 0 && sl->n_gen >= j->max_tokens) ||
        sl->n_tokens >= model_ctx_n_ctx(sl->ctx)) {
        slot_finish(s, sl, SCHED_FINISH_LENGTH, NULL);
        return;
    }
    if (model_ctx_eval(sl->ctx, &next, 1) != 0) {
        slot_finish(s, sl, SCHED_FINISH_ERROR, "evaluating a token failed");
        return;
    }
    sl->tokens[sl->n_tokens++] = next;
}

/* ==== Engine thread ==== */

/* Pick the free slot whose cache shares the longest prefix with the job's prompt. */
static slot *best_free_slot(sched *s, const sched_job *j) {
    slot *best = NULL;
    int best_len = -1;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->job) continue;
        int len =
            j->embedding ? 0 : common_prefix(sl->tokens, sl->n_tokens, j->prompt, j->n_prompt);
        if (len > best_len) {
            best = sl;
            best_len = len;
        }
    }
    return best;
}

static void *engine_main(void *arg) {
    sched *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        /* expire jobs that waited too long; hand the rest to free slots in FIFO order */
        double now = mh_now_mono();
        sched_job *expired = NULL;
        while (s->queue_head &&
               (s->stopping || (s->cfg.queue_timeout > 0 &&
                                now - s->queue_head->submitted >= s->cfg.queue_timeout))) {
            sched_job *j = s->queue_head;
            s->queue_head = j->next;
            s->n_queued--;
            j->next = expired;
            expired = j;
        }
        /* (only the head can be expired in FIFO order; later ones are younger) */
        while (s->queue_head && !s->stopping) {
            slot *sl = best_free_slot(s, s->queue_head);
            if (!sl) break;
            sched_job *j = s->queue_head;
            s->queue_head = j->next;
            s->n_queued--;
            j->next = NULL;
            sl->job = j; /* claimed; begun outside the lock */
            sl->n_prompt_done = -1;
            atomic_fetch_add(&s->n_active, 1);
        }
        if (!s->queue_head) s->queue_tail = NULL;
        int stopping = s->stopping;
        int active = atomic_load(&s->n_active);
        if (!expired && active == 0) {
            if (stopping) break;
            if (s->queue_head && s->cfg.queue_timeout > 0) {
                double wait = s->queue_head->submitted + s->cfg.queue_timeout - now;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + MH_MAX(wait, 0.001);
                ts.tv_sec = (time_t)t;
                ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
                pthread_cond_timedwait(&s->wake, &s->lock, &ts);
            } else {
                pthread_cond_wait(&s->wake, &s->lock);
            }
            continue;
        }
        pthread_mutex_unlock(&s->lock);

        while (expired) {
            sched_job *j = expired;
            expired = j->next;
            emit_done_unstarted(j, stopping ? SCHED_FINISH_CANCELLED : SCHED_FINISH_TIMEOUT,
                                stopping ? NULL : "timed out waiting for a free slot");
            job_unref(j);
        }
        for (int i = 0; i < s->n_slots; i++) {
            slot *sl = &s->slots[i];
            if (!sl->job) continue;
            if (sl->n_prompt_done < 0) slot_begin(s, sl, sl->job);
            if (stopping) sched_cancel(sl->job);
            slot_step(s, sl);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ==== Public ==== */

sched *sched_new(model *m, threadpool *tp, const sched_config *cfg, char *err, size_t errlen) {
    sched *s = mh_xcalloc(1, sizeof *s);
    s->m = m;
    s->tok = model_get_tokenizer(m);
    s->cfg = *cfg;
    s->n_slots = MH_MAX(cfg->n_slots, 1);
    s->slots = mh_xcalloc((size_t)s->n_slots, sizeof *s->slots);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    const model_hparams *hp = model_get_hparams(m);
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->ctx = model_ctx_new(m, cfg->n_ctx, tp, err, errlen);
        sampler_params sp = sampler_defaults();
        sl->smp = sl->ctx ? sampler_new(&sp, hp->n_vocab) : NULL;
        if (sl->ctx) {
            sl->tokens = malloc((size_t)model_ctx_n_ctx(sl->ctx) * sizeof *sl->tokens);
            sl->embedding = malloc((size_t)hp->n_embd * sizeof *sl->embedding);
        }
        if (!sl->ctx || !sl->smp || !sl->tokens || !sl->embedding) {
            if (sl->ctx) snprintf(err, errlen, "out of memory for slot %d", i);
            sched_free(s);
            return NULL;
        }
        s->bytes += model_ctx_bytes(sl->ctx);
    }
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        snprintf(err, errlen, "cannot start the engine thread");
        sched_free(s);
        return NULL;
    }
    s->thread_started = 1;
    return s;
}

void sched_free(sched *s) {
    if (!s) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = 1;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        model_ctx_free(sl->ctx);
        sampler_free(sl->smp);
        free(sl->tokens);
        free(sl->pending);
        free(sl->embedding);
    }
    free(s->slots);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s);
}

int sched_submit(sched *s, const sched_job_params *p, sched_job **out) {
    *out = NULL;
    if (p->n_prompt <= 0 || p->n_prompt > model_ctx_n_ctx(s->slots[0].ctx))
        return SCHED_ERR_INVALID;
    sched_job *j = mh_xcalloc(1, sizeof *j);
    atomic_init(&j->refs, 2);
    j->prompt = mh_xmalloc((size_t)p->n_prompt * sizeof *j->prompt);
    memcpy(j->prompt, p->prompt, (size_t)p->n_prompt * sizeof *j->prompt);
    j->n_prompt = p->n_prompt;
    j->sp = p->sampling;
    j->max_tokens = p->max_tokens;
    j->embedding = p->embedding;
    j->on_event = p->on_event;
    j->arg = p->arg;
    if (p->n_stop > 0) {
        j->stop = mh_xcalloc((size_t)p->n_stop, sizeof *j->stop);
        for (int i = 0; i < p->n_stop; i++)
            if (p->stop[i] && p->stop[i][0]) j->stop[j->n_stop++] = mh_xstrdup(p->stop[i]);
    }
    j->submitted = mh_now_mono();
    pthread_mutex_lock(&s->lock);
    int free_slots = s->n_slots - atomic_load(&s->n_active);
    if (s->stopping || s->n_queued >= s->cfg.queue_size + MH_MAX(free_slots, 0)) {
        pthread_mutex_unlock(&s->lock);
        atomic_store(&j->refs, 1);
        job_unref(j);
        return SCHED_ERR_QUEUE_FULL;
    }
    if (s->queue_tail)
        s->queue_tail->next = j;
    else
        s->queue_head = j;
    s->queue_tail = j;
    s->n_queued++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    *out = j;
    return 0;
}

int sched_queued(const sched *s) {
    return atomic_load(&s->n_queued);
}

int sched_active(const sched *s) {
    return atomic_load(&s->n_active);
}
uint64_t sched_bytes(const sched *s) {
    return s->bytes;
}
