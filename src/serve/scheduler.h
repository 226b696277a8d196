/* scheduler.h — runs generation and embedding jobs for one loaded model.
 *
 * One engine thread owns N slots (each a sequence of one shared model context, with its own KV
 * cache) and a bounded FIFO queue. Every engine step is one batched forward pass (continuous
 * batching): the next token of every generating slot, plus prompt chunks of the slots still
 * prefilling, up to a token budget per step (n_batch) so a long prompt does not stall the
 * streams. The weights are read once per step for all of them. Jobs join at the next step and
 * leave when they finish. A slot keeps the tokens of its last job in its cache: a new job goes to
 * the free slot sharing the longest prefix with its prompt and evaluates only the rest (prompt
 * cache).
 *
 * Threads: sched_submit/sched_cancel/sched_job_release may be called from any thread. Job events
 * are delivered on the engine thread, in order, ending with exactly one SCHED_EV_DONE.
 */
#ifndef MH_SCHEDULER_H
#define MH_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/grammar.h"
#include "engine/model.h"
#include "engine/sampler.h"

enum sched_finish {
    SCHED_FINISH_STOP,      /* end of generation token or a stop string */
    SCHED_FINISH_LENGTH,    /* max_tokens reached, or the context is full */
    SCHED_FINISH_CANCELLED, /* sched_cancel (e.g. the client went away) */
    SCHED_FINISH_TIMEOUT,   /* waited in the queue longer than the queue timeout */
    SCHED_FINISH_ERROR,     /* see event.error */
};

enum sched_event_type {
    SCHED_EV_STARTED, /* left the queue: a slot is working on it */
    SCHED_EV_TEXT,    /* generated text, safe to show (whole UTF-8 characters, no stop string) */
    SCHED_EV_DONE,    /* last event of the job */
};

typedef struct sched_event {
    enum sched_event_type type;
    const char *text; /* TEXT: not NUL-terminated */
    size_t len;
    /* TEXT of a job with logprobs: the tokens sampled since the previous TEXT event, in
     * order (their text is this event's, give or take bytes of a character still incomplete).
     * Tokens whose text a stop string swallowed are never reported; nor is the end token. */
    const sampler_token_lp *lp;
    int n_lp;
    int finish;             /* DONE: enum sched_finish */
    int n_prompt;           /* DONE: prompt tokens */
    int n_cached;           /* DONE: prompt tokens reused from the slot's cache */
    int n_gen;              /* DONE: generated tokens */
    double t_prompt_s;      /* DONE: prefill time */
    double t_gen_s;         /* DONE: generation time */
    const float *embedding; /* DONE of an embedding job: n_embd floats */
    int n_embd;
    const char *error; /* DONE with SCHED_FINISH_ERROR */
} sched_event;

typedef void (*sched_event_fn)(void *arg, const sched_event *ev);

typedef struct sched_job_params {
    const int32_t *prompt; /* copied */
    int n_prompt;
    sampler_params sampling;
    int max_tokens;          /* <= 0: until the context is full */
    const char *const *stop; /* stop strings, copied; matched across tokens, never emitted */
    int n_stop;
    int embedding;    /* compute an embedding instead of generating */
    int logprobs;     /* report each token's log-probability (TEXT events' lp) */
    int top_logprobs; /* with logprobs: and this many most likely tokens (0-20) */
    grammar *grammar; /* NULL, or only tokens it allows (retained; the output ends when complete) */
    sched_event_fn on_event; /* engine thread */
    void *arg;
} sched_job_params;

typedef struct sched_config {
    int n_slots;          /* parallel jobs (>= 1) */
    int n_ctx;            /* context of each slot (> 0) */
    int kv_type;          /* enum model_kv_type */
    int n_batch;          /* tokens per engine step, 0 = MODEL_BATCH_DEFAULT */
    int queue_size;       /* jobs waiting beyond the slots; more are refused */
    double queue_timeout; /* seconds a job may wait for a slot; <= 0: no limit */
    int no_prompt_cache;  /* 1: every job evaluates its whole prompt (for measurements) */
} sched_config;

typedef struct sched sched;
typedef struct sched_job sched_job;

/* Create contexts for the slots and start the engine thread. The model and pool must outlive
 * the scheduler. NULL with `err` set on failure (e.g. memory for the KV caches). */
sched *sched_new(model *m, threadpool *tp, const sched_config *cfg, char *err, size_t errlen);
/* Cancel every job (each still gets its DONE), stop the thread, free the slots. */
void sched_free(sched *s);

#define SCHED_ERR_QUEUE_FULL (-1)
#define SCHED_ERR_INVALID    (-2)

/* Queue a job. On success *job holds a reference the caller must drop with sched_job_release
 * (after which it must not touch the job); events start arriving on the engine thread. Returns
 * SCHED_ERR_QUEUE_FULL when the queue is full, SCHED_ERR_INVALID for an empty prompt or one
 * longer than a slot's context (no events then). */
int sched_submit(sched *s, const sched_job_params *p, sched_job **job);
/* Ask the job to stop: it ends within one token with SCHED_FINISH_CANCELLED (or its natural
 * end if that came first). Safe from any thread while the caller holds its reference. */
void sched_cancel(sched_job *job);
void sched_job_release(sched_job *job);

/* Jobs waiting for a slot / running, for status pages. Any thread. */
int sched_queued(const sched *s);
int sched_active(const sched *s);
/* Bytes the slots hold: buffers plus the KV cache pages touched so far. Any thread. */
uint64_t sched_bytes(const sched *s);
/* KV cache bytes reserved for all slots (n_slots x n_ctx positions). */
uint64_t sched_kv_reserved(const sched *s);
int sched_n_ctx(const sched *s);

/* What the engine steps have carried so far (for tests and status pages). Any thread. */
typedef struct sched_stats {
    uint64_t steps;       /* batched passes run */
    uint64_t mixed_steps; /* passes that carried generated tokens and prompt chunks together */
    int max_decode;       /* most generating sequences in one pass */
    int max_seqs;         /* most sequences (generating or prefilling) in one pass */
} sched_stats;
void sched_get_stats(const sched *s, sched_stats *out);

#endif
