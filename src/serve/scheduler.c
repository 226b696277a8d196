/* scheduler.c — see scheduler.h. */
#include "serve/scheduler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/common.h"
#include "util/log.h"

/* When the generating slots alone fill the step's budget, prompts still get this share of it,
 * so a new request is never starved by many streams. */
#define MIN_PREFILL_SHARE 4 /* budget / 4 */

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
    int logprobs;     /* -1: none; else the number of top tokens to report with each token */
    grammar *grammar; /* NULL: unconstrained */
    sched_event_fn on_event;
    void *arg;
    double submitted; /* monotonic */
    sched_job *next;  /* queue link */
};

enum slot_phase {
    SLOT_FREE,
    SLOT_CLAIMED,  /* taken from the queue, not begun */
    SLOT_PREFILL,  /* evaluating its prompt */
    SLOT_GENERATE, /* the logits of its last token are ready to sample */
};

typedef struct slot {
    int seq; /* its sequence in the shared context */
    int phase;
    sampler *smp;
    int32_t *tokens; /* (n_ctx) the tokens whose keys and values are in the cache */
    int n_tokens;
    sched_job *job; /* NULL when free */
    int n_prompt_done;
    int n_cached;
    int n_gen;
    int32_t next;  /* token sampled this step, evaluated in the step's pass */
    int step_take; /* tokens this slot put in the current pass */
    tokenizer_stream ts;
    char *pending; /* text held back because it may be the start of a stop string */
    size_t pending_len, pending_cap;
    sampler_token_lp *lp; /* tokens sampled whose text has not been emitted (job->logprobs) */
    int n_lp, lp_cap;
    double t_start, t_prompt_end;
    float *embedding;  /* (n_embd) */
    grammar_state *gs; /* the job's grammar: where its output is (NULL without one) */
    uint8_t *allow;    /* (n_vocab) tokens the grammar allows this step */
    float *masked;     /* (n_vocab) logits with the others at -inf */
} slot;

struct sched {
    model *m;
    const tokenizer *tok;
    grammar_vocab *gvocab; /* made on the first job with a grammar (engine thread) */
    sched_config cfg;
    model_ctx *ctx; /* one sequence per slot */
    slot *slots;
    int n_slots;
    model_batch_item *items; /* (n_slots) one step's pass */
    slot **order;            /* (n_slots) prefilling slots by start time */

    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    int thread_started;
    int stopping;
    sched_job *queue_head, *queue_tail;
    atomic_int n_queued;
    atomic_int n_active;
    _Atomic uint64_t bytes; /* buffers + KV pages touched, refreshed after each step */
    _Atomic uint64_t n_steps, n_mixed_steps;
    atomic_int max_decode, max_seqs;
};

static void job_unref(sched_job *j) {
    if (atomic_fetch_sub(&j->refs, 1) != 1) return;
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->stop);
    free(j->prompt);
    grammar_free(j->grammar);
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

static void emit_text(slot *sl, const char *text, size_t len) {
    if (len == 0) return;
    sched_event ev = {
        .type = SCHED_EV_TEXT, .text = text, .len = len, .lp = sl->lp, .n_lp = sl->n_lp};
    sl->job->on_event(sl->job->arg, &ev);
    sl->n_lp = 0;
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
        emit_text(sl, sl->pending, first);
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
    emit_text(sl, sl->pending, n - hold);
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
    /* The slot is free before the client hears it is done, so a request sent at once on seeing
     * the end counts a free slot. Only this thread hands slots out, so the slot's buffers
     * (ev.embedding) stay untouched until the event returns. */
    sl->job = NULL;
    sl->phase = SLOT_FREE;
    atomic_fetch_sub(&s->n_active, 1);
    j->on_event(j->arg, &ev);
    job_unref(j);
}

/* Length of the common prefix of two token lists. */
static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int n = 0;
    while (n < na && n < nb && a[n] == b[n]) n++;
    return n;
}

/* ==== Constrained output ==== */

/* A new job: a fresh parse of its grammar, or none. Out of memory leaves the job unconstrained
 * and says so in the log. */
static void grammar_begin(sched *s, slot *sl) {
    grammar_state_free(sl->gs);
    sl->gs = NULL;
    sched_job *j = sl->job;
    if (!j->grammar) return;
    int n_vocab = model_get_hparams(s->m)->n_vocab;
    if (!s->gvocab) s->gvocab = grammar_vocab_new(s->tok);
    if (!sl->allow) sl->allow = malloc((size_t)n_vocab);
    if (!sl->masked) sl->masked = malloc((size_t)n_vocab * sizeof *sl->masked);
    if (s->gvocab && sl->allow && sl->masked) sl->gs = grammar_state_new(j->grammar, s->gvocab);
    if (!sl->gs) log_error("out of memory for a grammar: this job's output is not constrained");
}

/* The logits with every token the grammar refuses at -inf. */
static const float *grammar_mask(sched *s, slot *sl, const float *logits) {
    int n_vocab = model_get_hparams(s->m)->n_vocab;
    grammar_state_mask(sl->gs, sl->allow);
    for (int i = 0; i < n_vocab; i++) sl->masked[i] = sl->allow[i] ? logits[i] : -INFINITY;
    return sl->masked;
}

/* Whether the grammar has a complete output and allows nothing more: the job is done. */
static int grammar_done(const slot *sl) {
    return sl->gs && grammar_state_accepting(sl->gs) && !grammar_state_continuable(sl->gs);
}

static void slot_begin(sched *s, slot *sl) {
    sched_job *j = sl->job;
    sl->phase = SLOT_PREFILL;
    sl->n_gen = 0;
    sl->pending_len = 0;
    sl->n_lp = 0;
    memset(&sl->ts, 0, sizeof sl->ts);
    sl->t_start = mh_now_mono();
    sl->t_prompt_end = 0;
    /* reuse the cached prefix, but evaluate at least one token to get fresh logits; an
     * embedding pools every token, so it starts from nothing */
    int keep = s->cfg.no_prompt_cache || j->embedding
                   ? 0
                   : common_prefix(sl->tokens, sl->n_tokens, j->prompt, j->n_prompt);
    if (keep >= j->n_prompt) keep = j->n_prompt - 1;
    model_ctx_rewind(s->ctx, sl->seq, keep);
    sl->n_tokens = keep;
    sl->n_cached = keep;
    sl->n_prompt_done = keep;
    if (!j->embedding) sampler_reset(sl->smp, &j->sp);
    grammar_begin(s, sl);
    sched_event ev = {.type = SCHED_EV_STARTED};
    j->on_event(j->arg, &ev);
}

/* ==== Prompt sharing between slots ====
 *
 * Slots working on prompts with a common prefix (the n choices of one request, requests with
 * the same system prompt) compute that prefix once: a prefilling slot copies the keys and
 * values another slot already holds for the same tokens, and waits a step rather than compute
 * a long prefix a slot ahead of it is computing. */

#define SHARE_MIN_WAIT 32 /* tokens: a shorter common prefix is computed, not waited for */

/* The prefix of the job's prompt (at most all but its last token, whose logits the slot needs)
 * that slot `o` holds in its cache (held) or will hold once its prompt is done (planned). */
static int shared_with(const slot *o, const sched_job *j, int planned) {
    int limit = j->n_prompt - 1;
    if (planned)
        return o->phase == SLOT_PREFILL && !o->job->embedding
                   ? common_prefix(o->job->prompt, o->job->n_prompt, j->prompt, limit)
                   : 0;
    return common_prefix(o->tokens, o->n_tokens, j->prompt, limit);
}

/* Before laying out slot sl's next prompt chunk: take what other slots hold of its prompt.
 * Returns 1 when sl should wait this step for a slot ahead of it (earlier in `order`, index
 * `rank`, or further along) that is computing a long stretch of the same prompt. */
static int share_prefix(sched *s, slot *sl, slot **order, int rank) {
    sched_job *j = sl->job;
    if (s->cfg.no_prompt_cache || j->embedding) return 0;
    slot *best = NULL;
    int best_len = sl->n_prompt_done;
    for (int i = 0; i < s->n_slots; i++) {
        slot *o = &s->slots[i];
        if (o == sl) continue;
        int len = shared_with(o, j, 0);
        if (len > best_len) best = o, best_len = len;
    }
    if (best) {
        model_ctx_copy_prefix(s->ctx, sl->seq, best->seq, best_len);
        memcpy(sl->tokens + sl->n_tokens, j->prompt + sl->n_tokens,
               (size_t)(best_len - sl->n_tokens) * sizeof(int32_t));
        sl->n_cached += best_len - sl->n_prompt_done;
        sl->n_tokens = sl->n_prompt_done = best_len;
    }
    for (int i = 0; i < s->n_slots; i++) {
        slot *o = &s->slots[i];
        if (o == sl || o->phase != SLOT_PREFILL) continue;
        int ahead = o->n_prompt_done > sl->n_prompt_done;
        if (!ahead && o->n_prompt_done == sl->n_prompt_done) /* a tie goes to the older */
            for (int k = 0; k < rank; k++) ahead |= order[k] == o;
        if (ahead && shared_with(o, j, 1) >= sl->n_prompt_done + SHARE_MIN_WAIT) return 1;
    }
    return 0;
}

/* Sample the slot's next token from its logits and pass the text on. Returns 1 when the token
 * is to be evaluated in this step's pass, 0 when the job finished. */
static int slot_sample(sched *s, slot *sl) {
    sched_job *j = sl->job;
    const tokenizer *tok = s->tok;
    sampler_token_lp lp;
    const float *logits = model_ctx_logits(s->ctx, sl->seq);
    if (sl->gs) logits = grammar_mask(s, sl, logits);
    int32_t next = sampler_sample_lp(sl->smp, logits, sl->tokens, sl->n_tokens, j->logprobs,
                                     j->logprobs >= 0 ? &lp : NULL);
    /* logit_bias may have lifted a refused token (bans are finite): take the best allowed one */
    if (sl->gs && grammar_state_accept_token(sl->gs, next) < 0) {
        next = sampler_argmax(logits, model_get_hparams(s->m)->n_vocab);
        grammar_state_accept_token(sl->gs, next);
    }
    if (tokenizer_is_eog(tok, next)) {
        slot_finish(s, sl, SCHED_FINISH_STOP, NULL);
        return 0;
    }
    sl->n_gen++;
    if (j->logprobs >= 0) {
        if (sl->n_lp == sl->lp_cap) {
            sl->lp_cap = sl->lp_cap ? sl->lp_cap * 2 : 16;
            sl->lp = mh_xrealloc(sl->lp, (size_t)sl->lp_cap * sizeof *sl->lp);
        }
        sl->lp[sl->n_lp++] = lp;
    }
    char piece[512];
    size_t len = tokenizer_stream_push(&sl->ts, tok, next, piece, sizeof piece);
    pending_append(sl, piece, len);
    if (j->n_stop > 0) {
        if (flush_pending(sl, 0)) {
            slot_finish(s, sl, SCHED_FINISH_STOP, NULL);
            return 0;
        }
    } else {
        emit_text(sl, sl->pending, sl->pending_len);
        sl->pending_len = 0;
    }
    if (grammar_done(sl)) {
        slot_finish(s, sl, SCHED_FINISH_STOP, NULL);
        return 0;
    }
    if ((j->max_tokens > 0 && sl->n_gen >= j->max_tokens) ||
        sl->n_tokens >= model_ctx_n_ctx(s->ctx)) {
        slot_finish(s, sl, SCHED_FINISH_LENGTH, NULL);
        return 0;
    }
    sl->next = next;
    return 1;
}

static int by_start_time(const void *a, const void *b) {
    const slot *x = *(slot *const *)a, *y = *(slot *const *)b;
    return (x->t_start > y->t_start) - (x->t_start < y->t_start);
}

/* One engine step: sample every generating slot, lay out its next token and the prompt chunks
 * the budget allows in one pass, run it, and move each slot on. */
static void engine_step(sched *s) {
    int n_items = 0, n_decode = 0, n_prefill = 0;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->step_take = 0;
        if (!sl->job) continue;
        if (__atomic_load_n(&sl->job->cancel, __ATOMIC_ACQUIRE)) {
            slot_finish(s, sl, SCHED_FINISH_CANCELLED, NULL);
            continue;
        }
        if (sl->phase == SLOT_GENERATE && slot_sample(s, sl)) {
            s->items[n_items++] = (model_batch_item){sl->seq, &sl->next, 1, MODEL_OUT_LOGITS};
            sl->step_take = 1;
            n_decode++;
        } else if (sl->phase == SLOT_PREFILL) {
            s->order[n_prefill++] = sl;
        }
    }
    int budget =
        MH_MAX(model_ctx_n_batch(s->ctx) - n_decode, model_ctx_n_batch(s->ctx) / MIN_PREFILL_SHARE);
    /* the oldest prompt first: finishing one prompt early beats sharing the budget evenly */
    qsort(s->order, (size_t)n_prefill, sizeof *s->order, by_start_time);
    for (int i = 0; i < n_prefill && budget > 0; i++) {
        slot *sl = s->order[i];
        sched_job *j = sl->job;
        if (share_prefix(s, sl, s->order, i)) continue;
        int take = MH_MIN(budget, j->n_prompt - sl->n_prompt_done);
        int last = sl->n_prompt_done + take == j->n_prompt;
        int out = j->embedding ? MODEL_OUT_POOL : last ? MODEL_OUT_LOGITS : MODEL_OUT_NONE;
        s->items[n_items++] = (model_batch_item){sl->seq, j->prompt + sl->n_prompt_done, take, out};
        sl->step_take = take;
        budget -= take;
    }
    if (n_items == 0) return;
    int rc = model_ctx_decode(s->ctx, s->items, n_items);
    atomic_fetch_add(&s->n_steps, 1);
    if (n_decode > 0 && n_items > n_decode) atomic_fetch_add(&s->n_mixed_steps, 1);
    if (n_decode > atomic_load(&s->max_decode)) atomic_store(&s->max_decode, n_decode);
    if (n_items > atomic_load(&s->max_seqs)) atomic_store(&s->max_seqs, n_items);
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job || sl->step_take == 0) continue;
        sched_job *j = sl->job;
        if (rc != 0) { /* cannot happen with validated items: fail the step's jobs loudly */
            int past = model_ctx_n_past(s->ctx, sl->seq);
            model_ctx_rewind(s->ctx, sl->seq, MH_MIN(past, sl->n_tokens));
            sl->n_tokens = MH_MIN(past, sl->n_tokens);
            slot_finish(s, sl, SCHED_FINISH_ERROR, "evaluating the batch failed");
            continue;
        }
        if (sl->phase == SLOT_GENERATE) {
            sl->tokens[sl->n_tokens++] = sl->next;
            continue;
        }
        memcpy(sl->tokens + sl->n_tokens, j->prompt + sl->n_prompt_done,
               (size_t)sl->step_take * sizeof(int32_t));
        sl->n_tokens += sl->step_take;
        sl->n_prompt_done += sl->step_take;
        if (sl->n_prompt_done < j->n_prompt) continue;
        sl->t_prompt_end = mh_now_mono();
        if (!j->embedding) {
            sl->phase = SLOT_GENERATE;
            continue;
        }
        int prc = model_ctx_pooled(s->ctx, sl->seq, sl->embedding);
        /* the cache holds no reusable prompt: a generation's prefix never pooled */
        model_ctx_rewind(s->ctx, sl->seq, 0);
        sl->n_tokens = 0;
        slot_finish(s, sl, prc == 0 ? SCHED_FINISH_STOP : SCHED_FINISH_ERROR,
                    prc == 0 ? NULL : "pooling the embedding failed");
    }
    atomic_store(&s->bytes, model_ctx_bytes(s->ctx) + model_ctx_kv_used(s->ctx));
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
            sl->phase = SLOT_CLAIMED;
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
            if (sl->phase == SLOT_CLAIMED) slot_begin(s, sl);
            if (stopping) sched_cancel(sl->job);
        }
        engine_step(s);
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
    s->items = mh_xcalloc((size_t)s->n_slots, sizeof *s->items);
    s->order = mh_xcalloc((size_t)s->n_slots, sizeof *s->order);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    const model_hparams *hp = model_get_hparams(m);
    model_ctx_params cp = {
        .n_ctx = cfg->n_ctx, .n_seq = s->n_slots, .kv_type = cfg->kv_type, .n_batch = cfg->n_batch};
    s->ctx = model_ctx_new(m, &cp, tp, err, errlen);
    if (!s->ctx) {
        sched_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->seq = i;
        sampler_params sp = sampler_defaults();
        sl->smp = sampler_new(&sp, hp->n_vocab);
        sl->tokens = malloc((size_t)model_ctx_n_ctx(s->ctx) * sizeof *sl->tokens);
        sl->embedding = malloc((size_t)hp->n_embd * sizeof *sl->embedding);
        if (!sl->smp || !sl->tokens || !sl->embedding) {
            snprintf(err, errlen, "out of memory for slot %d", i);
            sched_free(s);
            return NULL;
        }
    }
    atomic_store(&s->bytes, model_ctx_bytes(s->ctx));
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
        sampler_free(sl->smp);
        free(sl->tokens);
        free(sl->pending);
        free(sl->lp);
        free(sl->embedding);
        grammar_state_free(sl->gs);
        free(sl->allow);
        free(sl->masked);
    }
    model_ctx_free(s->ctx);
    grammar_vocab_free(s->gvocab);
    free(s->slots);
    free(s->items);
    free(s->order);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s);
}

int sched_submit(sched *s, const sched_job_params *p, sched_job **out) {
    *out = NULL;
    if (p->n_prompt <= 0 || p->n_prompt > model_ctx_n_ctx(s->ctx)) return SCHED_ERR_INVALID;
    sched_job *j = mh_xcalloc(1, sizeof *j);
    atomic_init(&j->refs, 2);
    j->prompt = mh_xmalloc((size_t)p->n_prompt * sizeof *j->prompt);
    memcpy(j->prompt, p->prompt, (size_t)p->n_prompt * sizeof *j->prompt);
    j->n_prompt = p->n_prompt;
    j->sp = p->sampling;
    j->max_tokens = p->max_tokens;
    j->embedding = p->embedding;
    j->logprobs = p->embedding || !p->logprobs ? -1 : p->top_logprobs;
    j->grammar = p->embedding ? NULL : grammar_retain(p->grammar);
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
    return atomic_load(&((sched *)s)->bytes);
}
uint64_t sched_kv_reserved(const sched *s) {
    return model_ctx_kv_reserved(s->ctx);
}
int sched_n_ctx(const sched *s) {
    return model_ctx_n_ctx(s->ctx);
}

void sched_get_stats(const sched *s, sched_stats *out) {
    sched *m = (sched *)s;
    out->steps = atomic_load(&m->n_steps);
    out->mixed_steps = atomic_load(&m->n_mixed_steps);
    out->max_decode = atomic_load(&m->max_decode);
    out->max_seqs = atomic_load(&m->max_seqs);
}
