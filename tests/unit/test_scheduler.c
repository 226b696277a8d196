/* test_scheduler.c — slots, queue, stop strings, cancellation and the prompt cache on
 * stories260K; continuous batching (jobs that share engine steps give exactly the text each
 * gives alone) on stories260K and on quantized synthetic models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "engine/synth.h"
#include "serve/scheduler.h"
#include "test_util.h"

/* Collects the events of one job; the test thread waits for DONE. */
typedef struct collector {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char text[65536];
    size_t len;
    int started, done, finish, n_prompt, n_cached, n_gen, text_events;
    float embedding[64];
    int n_embd;
    volatile int block_first_text; /* hold the engine thread at the first text event */
    int bad_utf8;
    /* hold the engine thread at text event number hold_at (1-based) until hold_release */
    int hold_at;
    volatile int holding, released;
    /* at this job's first text event, note how many text events `watch` had */
    struct collector *watch;
    int watch_at_first_text;
    sampler_token_lp lp[256]; /* the jobs's tokens, when it asked for logprobs */
    int n_lp;
} collector;

static void collector_init(collector *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
}

static void collector_destroy(collector *c) {
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
}

static void on_event(void *arg, const sched_event *ev) {
    collector *c = arg;
    if (ev->type == SCHED_EV_TEXT && c->block_first_text) {
        while (__atomic_load_n(&c->block_first_text, __ATOMIC_ACQUIRE)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (ev->type == SCHED_EV_TEXT && c->hold_at && c->text_events + 1 == c->hold_at) {
        __atomic_store_n(&c->holding, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&c->released, __ATOMIC_ACQUIRE)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (ev->type == SCHED_EV_TEXT && c->watch && c->text_events == 0) {
        /* the watched job's events come from this same engine thread */
        c->watch_at_first_text = c->watch->text_events;
    }
    pthread_mutex_lock(&c->lock);
    if (ev->type == SCHED_EV_STARTED) c->started = 1;
    if (ev->type == SCHED_EV_TEXT) {
        assert_true(c->len + ev->len < sizeof c->text);
        memcpy(c->text + c->len, ev->text, ev->len);
        c->len += ev->len;
        c->text[c->len] = 0;
        c->text_events++;
        for (int i = 0; i < ev->n_lp && c->n_lp < 256; i++) c->lp[c->n_lp++] = ev->lp[i];
        /* every chunk ends on a character boundary */
        unsigned char last = (unsigned char)ev->text[ev->len - 1];
        if (last >= 0xc0) c->bad_utf8 = 1;
    }
    if (ev->type == SCHED_EV_DONE) {
        c->done++;
        c->finish = ev->finish;
        c->n_prompt = ev->n_prompt;
        c->n_cached = ev->n_cached;
        c->n_gen = ev->n_gen;
        if (ev->embedding) {
            c->n_embd = ev->n_embd;
            memcpy(c->embedding, ev->embedding,
                   sizeof(float) * (size_t)(ev->n_embd < 64 ? ev->n_embd : 64));
        }
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}

static void wait_done(collector *c) {
    pthread_mutex_lock(&c->lock);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    while (!c->done)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) != 0) break;
    int done = c->done;
    pthread_mutex_unlock(&c->lock);
    assert_int_equal(done, 1);
}

/* Wait (generously: the machine is shared) until the engine thread holds at c->hold_at. */
static void hold_wait(collector *c) {
    for (int i = 0; i < 60000 && !__atomic_load_n(&c->holding, __ATOMIC_ACQUIRE); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_true(__atomic_load_n(&c->holding, __ATOMIC_ACQUIRE));
}

static void hold_release(collector *c) {
    __atomic_store_n(&c->released, 1, __ATOMIC_RELEASE);
}

static model *mdl;
static threadpool *pool;
static const int32_t once_upon[] = {1, 403, 407, 261, 378};
static char reference_text[4096];

static int setup(void **state) {
    (void)state;
    char err[256];
    if (model_load(test_model_path("stories260K.gguf"), &mdl, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    pool = threadpool_new(2);
    /* the reference continuation: the .txt minus the prompt and run.c's final newline */
    char *ref =
        test_read_file(test_model_path("reference/stories260K.once-upon-a-time.steps64.txt"), NULL);
    if (!ref) return -1;
    snprintf(reference_text, sizeof reference_text, "%s", ref + strlen("Once upon a time"));
    reference_text[strlen(reference_text) - 1] = 0;
    free(ref);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    threadpool_free(pool);
    model_free(mdl);
    return 0;
}

static sched_job_params greedy_params(collector *c, int max_tokens) {
    sched_job_params p = {.prompt = once_upon,
                          .n_prompt = 5,
                          .max_tokens = max_tokens,
                          .on_event = on_event,
                          .arg = c};
    p.sampling = sampler_defaults();
    p.sampling.temperature = 0;
    return p;
}

static sched *new_sched(int slots, int queue, double timeout) {
    char err[256];
    sched_config cfg = {.n_slots = slots,
                        .n_ctx = 512,
                        .kv_type = MODEL_KV_F32,
                        .queue_size = queue,
                        .queue_timeout = timeout};
    sched *s = sched_new(mdl, pool, &cfg, err, sizeof err);
    assert_non_null(s);
    return s;
}

static void test_greedy_matches_reference(void **state) {
    (void)state;
    sched *s = new_sched(1, 4, 0);
    collector c;
    collector_init(&c);
    sched_job_params p = greedy_params(&c, 60);
    sched_job *j;
    assert_int_equal(sched_submit(s, &p, &j), 0);
    wait_done(&c);
    assert_int_equal(c.started, 1);
    assert_int_equal(c.finish, SCHED_FINISH_LENGTH);
    assert_int_equal(c.n_gen, 60);
    assert_int_equal(c.n_prompt, 5);
    assert_string_equal(c.text, reference_text);
    assert_false(c.bad_utf8);
    sched_job_release(j);
    collector_destroy(&c);
    sched_free(s);
}

/* A stop string spanning several tokens ends generation; neither it nor what follows is sent. */
static void test_stop_string(void **state) {
    (void)state;
    sched *s = new_sched(1, 4, 0);
    collector c;
    collector_init(&c);
    sched_job_params p = greedy_params(&c, 60);
    const char *stops[] = {"zzz-never", "named Lily"};
    p.stop = stops;
    p.n_stop = 2;
    sched_job *j;
    assert_int_equal(sched_submit(s, &p, &j), 0);
    wait_done(&c);
    assert_int_equal(c.finish, SCHED_FINISH_STOP);
    assert_string_equal(c.text, ", there was a little girl ");
    assert_true(c.n_gen < 60);
    sched_job_release(j);
    collector_destroy(&c);
    sched_free(s);
}

/* Two slots generate at once and give the same greedy text as one. */
static void test_parallel_slots(void **state) {
    (void)state;
    sched *s = new_sched(2, 4, 0);
    collector a, b;
    collector_init(&a);
    collector_init(&b);
    a.block_first_text = 1; /* a holds its slot until b has started */
    sched_job_params pa = greedy_params(&a, 60), pb = greedy_params(&b, 60);
    sched_job *ja, *jb;
    assert_int_equal(sched_submit(s, &pa, &ja), 0);
    assert_int_equal(sched_submit(s, &pb, &jb), 0);
    for (int i = 0; i < 5000 && sched_active(s) < 2; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(sched_active(s), 2);
    __atomic_store_n(&a.block_first_text, 0, __ATOMIC_RELEASE);
    wait_done(&a);
    wait_done(&b);
    assert_string_equal(a.text, reference_text);
    assert_string_equal(b.text, reference_text);
    sched_job_release(ja);
    sched_job_release(jb);
    collector_destroy(&a);
    collector_destroy(&b);
    sched_free(s);
}

/* One slot, queue of one: a third job is refused; a queued job times out while the slot is
 * busy; cancelling frees the slot. */
static void test_queue_full_timeout_cancel(void **state) {
    (void)state;
    sched *s = new_sched(1, 1, 0.3);
    collector a, b, d;
    collector_init(&a);
    collector_init(&b);
    collector_init(&d);
    a.block_first_text = 1;
    sched_job_params pa = greedy_params(&a, 0), pb = greedy_params(&b, 10),
                     pd = greedy_params(&d, 10);
    sched_job *ja, *jb, *jd;
    assert_int_equal(sched_submit(s, &pa, &ja), 0);
    for (int i = 0; i < 5000 && sched_active(s) < 1; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(sched_submit(s, &pb, &jb), 0);
    assert_int_equal(sched_submit(s, &pd, &jd), SCHED_ERR_QUEUE_FULL);
    assert_null(jd);
    assert_int_equal(sched_queued(s), 1);
    /* the engine thread is held by a's first token, so b's timeout is seen once it is free:
     * release a only after b has waited long enough */
    struct timespec ts = {0, 400 * 1000000};
    nanosleep(&ts, NULL);
    sched_cancel(ja);
    __atomic_store_n(&a.block_first_text, 0, __ATOMIC_RELEASE);
    wait_done(&b);
    assert_int_equal(b.finish, SCHED_FINISH_TIMEOUT);
    assert_int_equal(b.started, 0);
    wait_done(&a);
    assert_int_equal(a.finish, SCHED_FINISH_CANCELLED);
    assert_true(a.n_gen <= 2); /* stopped within a token of the cancel */
    sched_job_release(ja);
    sched_job_release(jb);
    /* the slot is free again */
    collector e;
    collector_init(&e);
    sched_job_params pe = greedy_params(&e, 5);
    sched_job *je;
    assert_int_equal(sched_submit(s, &pe, &je), 0);
    wait_done(&e);
    assert_int_equal(e.finish, SCHED_FINISH_LENGTH);
    sched_job_release(je);
    collector_destroy(&a);
    collector_destroy(&b);
    collector_destroy(&d);
    collector_destroy(&e);
    sched_free(s);
}

/* A follow-up prompt that extends the previous prompt + answer reuses the cached prefix. */
static void test_prompt_cache(void **state) {
    (void)state;
    sched *s = new_sched(1, 4, 0);
    collector a, b;
    collector_init(&a);
    collector_init(&b);
    sched_job_params pa = greedy_params(&a, 20);
    sched_job *ja, *jb;
    assert_int_equal(sched_submit(s, &pa, &ja), 0);
    wait_done(&a);
    assert_int_equal(a.n_cached, 0);
    /* prompt 2 = prompt 1 + its first 19 generated tokens (the 20th was never evaluated) */
    const tokenizer *tok = model_get_tokenizer(mdl);
    int32_t prompt2[64];
    static char combined[70000];
    snprintf(combined, sizeof combined, "Once upon a time%s", a.text);
    int n2 = tokenizer_encode(tok, combined, strlen(combined), 1, 0, prompt2, 64);
    assert_true(n2 > 20 && n2 < 64);
    sched_job_params pb = greedy_params(&b, 5);
    pb.prompt = prompt2;
    pb.n_prompt = n2;
    assert_int_equal(sched_submit(s, &pb, &jb), 0);
    wait_done(&b);
    assert_true(b.n_cached >= 5 + 15); /* most of the first exchange came from the cache */
    assert_true(b.n_cached < n2);
    sched_job_release(ja);
    sched_job_release(jb);
    collector_destroy(&a);
    collector_destroy(&b);
    sched_free(s);
}

static void test_embedding_job(void **state) {
    (void)state;
    sched *s = new_sched(1, 4, 0);
    collector c;
    collector_init(&c);
    sched_job_params p = greedy_params(&c, 0);
    p.embedding = 1;
    sched_job *j;
    assert_int_equal(sched_submit(s, &p, &j), 0);
    wait_done(&c);
    assert_int_equal(c.finish, SCHED_FINISH_STOP);
    assert_int_equal(c.n_embd, 64);
    double norm = 0;
    for (int i = 0; i < 64; i++) norm += c.embedding[i] * c.embedding[i];
    assert_float_equal(norm, 1.0, 1e-4);
    sched_job_release(j);
    collector_destroy(&c);
    sched_free(s);
}

static void test_invalid_and_free_with_queue(void **state) {
    (void)state;
    sched *s = new_sched(1, 8, 0);
    collector c;
    collector_init(&c);
    sched_job_params p = greedy_params(&c, 10);
    p.n_prompt = 0;
    sched_job *j;
    assert_int_equal(sched_submit(s, &p, &j), SCHED_ERR_INVALID);
    static int32_t big[600];
    for (int i = 0; i < 600; i++) big[i] = 5;
    p.prompt = big;
    p.n_prompt = 600; /* more than the 512-token slot */
    assert_int_equal(sched_submit(s, &p, &j), SCHED_ERR_INVALID);
    /* jobs still queued or running when the scheduler is freed each get their DONE */
    collector cs[4];
    sched_job *js[4];
    for (int i = 0; i < 4; i++) {
        collector_init(&cs[i]);
        sched_job_params q = greedy_params(&cs[i], 0);
        assert_int_equal(sched_submit(s, &q, &js[i]), 0);
    }
    sched_free(s);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cs[i].done, 1);
        sched_job_release(js[i]);
        collector_destroy(&cs[i]);
    }
    collector_destroy(&c);
}

/* ==== Continuous batching ==== */

/* Greedy jobs that share engine steps must each give exactly the text the same job gives in a
 * scheduler of its own (F32 KV: the only difference is which rows share a pass). */

typedef struct prompt {
    int32_t ids[512];
    int n;
    int max_tokens;
} prompt;

static void encode_prompt(model *m, prompt *p, const char *text, int max_tokens) {
    p->n = tokenizer_encode(model_get_tokenizer(m), text, strlen(text), 1, 0, p->ids, 512);
    assert_true(p->n > 1 && p->n < 512);
    p->max_tokens = max_tokens;
}

/* A long prompt of ordinary tokens (a fixed pseudo-random walk over the vocabulary). */
static void long_prompt(model *m, prompt *p, int n, int max_tokens) {
    int n_vocab = model_get_hparams(m)->n_vocab;
    uint32_t x = 12345;
    p->ids[0] = 1;
    for (int i = 1; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p->ids[i] = 3 + (int32_t)((x >> 8) % (uint32_t)(n_vocab - 3));
    }
    p->n = n;
    p->max_tokens = max_tokens;
}

static sched *new_batching_sched(model *m, int slots, int n_batch) {
    char err[256];
    sched_config cfg = {.n_slots = slots,
                        .n_ctx = 512,
                        .kv_type = MODEL_KV_F32,
                        .n_batch = n_batch,
                        .queue_size = 8};
    sched *s = sched_new(m, pool, &cfg, err, sizeof err);
    if (!s) fail_msg("sched_new: %s", err);
    return s;
}

static sched_job_params prompt_params(const prompt *pr, collector *c) {
    sched_job_params p = greedy_params(c, pr->max_tokens);
    p.prompt = pr->ids;
    p.n_prompt = pr->n;
    return p;
}

/* The text of one job run in a scheduler of its own. */
static void run_alone(model *m, const prompt *pr, char *out, size_t cap) {
    sched *s = new_batching_sched(m, 1, 0);
    collector c;
    collector_init(&c);
    sched_job_params p = prompt_params(pr, &c);
    sched_job *j;
    assert_int_equal(sched_submit(s, &p, &j), 0);
    wait_done(&c);
    assert_true(c.finish == SCHED_FINISH_LENGTH || c.finish == SCHED_FINISH_STOP);
    assert_true(c.n_gen > 0);
    snprintf(out, cap, "%s", c.text);
    sched_job_release(j);
    collector_destroy(&c);
    sched_free(s);
}

static char alone_text[4][65536];

/* Four jobs with different prompts and lengths: the first is held at its first token until the
 * other three are queued, so all four generate in the same passes from then on. */
static void check_four_concurrent(model *m, const char *const texts[4]) {
    prompt prs[4];
    for (int i = 0; i < 4; i++) {
        encode_prompt(m, &prs[i], texts[i], 24 + 8 * i);
        run_alone(m, &prs[i], alone_text[i], sizeof alone_text[i]);
    }
    sched *s = new_batching_sched(m, 4, 0);
    collector cs[4];
    sched_job *js[4];
    for (int i = 0; i < 4; i++) collector_init(&cs[i]);
    cs[0].hold_at = 1;
    sched_job_params p0 = prompt_params(&prs[0], &cs[0]);
    assert_int_equal(sched_submit(s, &p0, &js[0]), 0);
    hold_wait(&cs[0]);
    for (int i = 1; i < 4; i++) {
        sched_job_params p = prompt_params(&prs[i], &cs[i]);
        assert_int_equal(sched_submit(s, &p, &js[i]), 0);
    }
    hold_release(&cs[0]);
    for (int i = 0; i < 4; i++) {
        wait_done(&cs[i]);
        assert_string_equal(cs[i].text, alone_text[i]);
        sched_job_release(js[i]);
        collector_destroy(&cs[i]);
    }
    sched_stats st;
    sched_get_stats(s, &st);
    assert_int_equal(st.max_decode, 4); /* they really shared passes */
    assert_true(st.mixed_steps >= 1);   /* three prompts ran beside the first one's decode */
    sched_free(s);
}

static const char *const story_prompts[4] = {"Once upon a time", "The little dog ran",
                                             "Lily and Ben went to the park", "One day"};

static void test_batch_four_concurrent_stories(void **state) {
    (void)state;
    check_four_concurrent(mdl, story_prompts);
}

/* A synthetic model written to a temporary folder, loaded, and its file removed (the mapping
 * stays valid). */
static model *synth_model(int type, int dim) {
    char dir[] = "/tmp/mh-sched-XXXXXX", path[600], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    synth_params sp;
    synth_params_default(&sp);
    sp.path = path;
    sp.n_embd = dim;
    sp.n_layer = 3;
    sp.n_head = 4;
    sp.n_head_kv = 2;
    sp.n_ctx = 512;
    sp.type = type;
    sp.seed = 7;
    if (synth_write(&sp, err, sizeof err) != 0) fail_msg("synth_write: %s", err);
    model *m = NULL;
    if (model_load(path, &m, err, sizeof err) < 0) fail_msg("model_load: %s", err);
    unlink(path);
    rmdir(dir);
    return m;
}

static void test_batch_four_concurrent_q8_0(void **state) {
    (void)state;
    model *m = synth_model(GGML_TYPE_Q8_0, 128);
    check_four_concurrent(m, story_prompts);
    model_free(m);
}

static void test_batch_four_concurrent_q4_k_m(void **state) {
    (void)state;
    model *m = synth_model(SYNTH_TYPE_Q4_K_M, 256);
    check_four_concurrent(m, story_prompts);
    model_free(m);
}

/* A job that arrives while another is ten tokens into its answer joins the next step; both
 * keep their alone text. */
static void test_batch_join_mid_generation(void **state) {
    (void)state;
    prompt pa, pb;
    encode_prompt(mdl, &pa, "Once upon a time", 60);
    encode_prompt(mdl, &pb, "The little dog ran", 30);
    char ta[65536], tb[65536];
    run_alone(mdl, &pa, ta, sizeof ta);
    run_alone(mdl, &pb, tb, sizeof tb);
    sched *s = new_batching_sched(mdl, 2, 0);
    collector a, b;
    collector_init(&a);
    collector_init(&b);
    a.hold_at = 10;
    sched_job_params qa = prompt_params(&pa, &a), qb = prompt_params(&pb, &b);
    sched_job *ja, *jb;
    assert_int_equal(sched_submit(s, &qa, &ja), 0);
    hold_wait(&a);
    b.watch = &a;
    assert_int_equal(sched_submit(s, &qb, &jb), 0);
    hold_release(&a);
    wait_done(&a);
    wait_done(&b);
    assert_string_equal(a.text, ta);
    assert_string_equal(b.text, tb);
    assert_true(b.watch_at_first_text >= 10 && b.watch_at_first_text < 60);
    sched_stats st;
    sched_get_stats(s, &st);
    assert_int_equal(st.max_decode, 2);
    sched_job_release(ja);
    sched_job_release(jb);
    collector_destroy(&a);
    collector_destroy(&b);
    sched_free(s);
}

/* Cancelling one of three batched jobs ends it within a step; the other two are unaffected. */
static void test_batch_cancel_one(void **state) {
    (void)state;
    prompt prs[3];
    char texts[2][65536];
    encode_prompt(mdl, &prs[0], "Once upon a time", 50);
    encode_prompt(mdl, &prs[1], "Lily and Ben went to the park", 50);
    encode_prompt(mdl, &prs[2], "The little dog ran", 200);
    run_alone(mdl, &prs[0], texts[0], sizeof texts[0]);
    run_alone(mdl, &prs[1], texts[1], sizeof texts[1]);
    sched *s = new_batching_sched(mdl, 3, 0);
    collector cs[3];
    sched_job *js[3];
    for (int i = 0; i < 3; i++) collector_init(&cs[i]);
    cs[0].hold_at = 1;
    sched_job_params p0 = prompt_params(&prs[0], &cs[0]);
    assert_int_equal(sched_submit(s, &p0, &js[0]), 0);
    hold_wait(&cs[0]);
    cs[2].hold_at = 8;
    for (int i = 1; i < 3; i++) {
        sched_job_params p = prompt_params(&prs[i], &cs[i]);
        assert_int_equal(sched_submit(s, &p, &js[i]), 0);
    }
    hold_release(&cs[0]);
    hold_wait(&cs[2]); /* the third is 8 tokens in, beside the others */
    sched_cancel(js[2]);
    hold_release(&cs[2]);
    for (int i = 0; i < 3; i++) wait_done(&cs[i]);
    assert_int_equal(cs[2].finish, SCHED_FINISH_CANCELLED);
    assert_true(cs[2].n_gen >= 8 && cs[2].n_gen <= 9);
    assert_string_equal(cs[0].text, texts[0]);
    assert_string_equal(cs[1].text, texts[1]);
    assert_int_equal(cs[0].finish, SCHED_FINISH_LENGTH);
    for (int i = 0; i < 3; i++) {
        sched_job_release(js[i]);
        collector_destroy(&cs[i]);
    }
    assert_int_equal(sched_active(s), 0);
    sched_free(s);
}

/* A 400-token prompt arriving beside a live stream is evaluated in budget-sized chunks: the
 * stream keeps producing a token every step meanwhile, and both keep their alone text. */
static void test_batch_long_prefill_beside_stream(void **state) {
    (void)state;
    prompt pa, pb;
    encode_prompt(mdl, &pa, "Once upon a time", 100);
    long_prompt(mdl, &pb, 400, 20);
    char ta[65536], tb[65536];
    run_alone(mdl, &pa, ta, sizeof ta);
    run_alone(mdl, &pb, tb, sizeof tb);
    sched *s = new_batching_sched(mdl, 2, 32); /* 400 tokens take 13+ steps */
    collector a, b;
    collector_init(&a);
    collector_init(&b);
    a.hold_at = 5;
    sched_job_params qa = prompt_params(&pa, &a), qb = prompt_params(&pb, &b);
    sched_job *ja, *jb;
    assert_int_equal(sched_submit(s, &qa, &ja), 0);
    hold_wait(&a);
    b.watch = &a;
    assert_int_equal(sched_submit(s, &qb, &jb), 0);
    hold_release(&a);
    wait_done(&a);
    wait_done(&b);
    /* a had 5 tokens when b arrived; b's prompt needs at least 400 / 31 passes, each carrying
     * one of a's tokens */
    assert_true(b.watch_at_first_text >= 5 + 400 / 31);
    assert_string_equal(a.text, ta);
    assert_string_equal(b.text, tb);
    sched_stats st;
    sched_get_stats(s, &st);
    assert_true(st.mixed_steps >= 400 / 31);
    sched_job_release(ja);
    sched_job_release(jb);
    collector_destroy(&a);
    collector_destroy(&b);
    sched_free(s);
}

/* Three jobs on the same 300-token prompt, one on a prompt sharing its first 200 tokens,
 * submitted together (n choices, a common system prompt): the prefix is computed once and the
 * others copy its keys and values. Each still gives exactly its alone text. */
static void test_shared_prompt_prefix(void **state) {
    (void)state;
    prompt prs[4];
    for (int i = 0; i < 3; i++) long_prompt(mdl, &prs[i], 300, 16);
    long_prompt(mdl, &prs[3], 300, 16);
    for (int i = 200; i < 300; i++) prs[3].ids[i] = 3 + (prs[3].ids[i] * 7 + i) % 400;
    run_alone(mdl, &prs[0], alone_text[0], sizeof alone_text[0]);
    run_alone(mdl, &prs[3], alone_text[3], sizeof alone_text[3]);
    sched *s = new_batching_sched(mdl, 4, 64); /* several steps per prompt */
    collector cs[4];
    sched_job *js[4];
    for (int i = 0; i < 4; i++) collector_init(&cs[i]);
    for (int i = 0; i < 4; i++) {
        sched_job_params p = prompt_params(&prs[i], &cs[i]);
        assert_int_equal(sched_submit(s, &p, &js[i]), 0);
    }
    int computed = 0, copied = 0;
    for (int i = 0; i < 4; i++) {
        wait_done(&cs[i]);
        assert_string_equal(cs[i].text, alone_text[i == 3 ? 3 : 0]);
        assert_int_equal(cs[i].n_prompt, 300);
        if (cs[i].n_cached == 0) computed++;
        if (i < 3 && cs[i].n_cached == 299) copied++;
        if (i == 3) assert_true(cs[i].n_cached >= 200);
        sched_job_release(js[i]);
        collector_destroy(&cs[i]);
    }
    assert_int_equal(computed, 1); /* one slot computed the common prefix */
    assert_int_equal(copied, 2);   /* the other two copies of that prompt copied all of it */
    sched_free(s);
}

/* Each token's reported log-probabilities equal the log-softmax of the logits a one-sequence
 * context computes for the same tokens, with the request's penalties and biases applied by hand:
 * what the sampler saw, not a second opinion. */
static void test_logprobs_match_direct_computation(void **state) {
    (void)state;
    sched *s = new_sched(2, 4, 0);
    collector c;
    collector_init(&c);
    sched_job_params p = greedy_params(&c, 40);
    p.sampling.temperature = 1.0f;
    p.sampling.seed = 11;
    p.sampling.presence_penalty = 0.4f;
    p.sampling.frequency_penalty = 0.3f;
    p.sampling.n_bias = 1;
    p.sampling.bias[0] = (sampler_bias){261, 1.5f};
    p.logprobs = 1;
    p.top_logprobs = 5;
    sched_job *j;
    assert_int_equal(sched_submit(s, &p, &j), 0);
    wait_done(&c);
    assert_true(c.n_gen > 10);
    assert_int_equal(c.n_lp, c.n_gen); /* every generated token reported once */

    const tokenizer *tok = model_get_tokenizer(mdl);
    int n_vocab = model_get_hparams(mdl)->n_vocab;
    char err[256], text[65536];
    size_t len = 0;
    model_ctx *ctx = model_ctx_new(mdl, &(model_ctx_params){.n_ctx = 512, .kv_type = MODEL_KV_F32},
                                   pool, err, sizeof err);
    assert_non_null(ctx);
    assert_int_equal(model_ctx_eval(ctx, 0, once_upon, 5), 0);
    int *count = calloc((size_t)n_vocab, sizeof *count);
    double *l = malloc((size_t)n_vocab * sizeof *l);
    for (int i = 0; i < c.n_lp; i++) {
        const float *logits = model_ctx_logits(ctx, 0);
        double max = -1e300, sum = 0;
        for (int t = 0; t < n_vocab; t++) {
            l[t] = logits[t] - count[t] * 0.3 - (count[t] > 0 ? 0.4 : 0) + (t == 261 ? 1.5 : 0);
            if (l[t] > max) max = l[t];
        }
        for (int t = 0; t < n_vocab; t++) sum += exp(l[t] - max);
        double lse = max + log(sum);
        const sampler_token_lp *e = &c.lp[i];
        assert_float_equal(e->chosen.logprob, l[e->chosen.id] - lse, 2e-3);
        assert_int_equal(e->n_top, 5);
        for (int k = 0; k < 5; k++) {
            assert_float_equal(e->top[k].logprob, l[e->top[k].id] - lse, 2e-3);
            int above = 0; /* tokens more likely than the k-th by a clear margin */
            for (int t = 0; t < n_vocab; t++) above += l[t] - lse > e->top[k].logprob + 2e-3;
            assert_true(above <= k);
        }
        int32_t id = e->chosen.id;
        count[id]++;
        int n = tokenizer_piece(tok, id, 0, text + len, sizeof text - len);
        assert_true(n >= 0);
        len += (size_t)n;
        assert_int_equal(model_ctx_eval(ctx, 0, &id, 1), 0);
    }
    text[len] = 0;
    assert_string_equal(text, c.text); /* the reported tokens spell the text */
    free(count);
    free(l);
    model_ctx_free(ctx);
    sched_job_release(j);
    collector_destroy(&c);
    sched_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_reference),
        cmocka_unit_test(test_stop_string),
        cmocka_unit_test(test_parallel_slots),
        cmocka_unit_test(test_queue_full_timeout_cancel),
        cmocka_unit_test(test_prompt_cache),
        cmocka_unit_test(test_embedding_job),
        cmocka_unit_test(test_invalid_and_free_with_queue),
        cmocka_unit_test(test_batch_four_concurrent_stories),
        cmocka_unit_test(test_batch_four_concurrent_q8_0),
        cmocka_unit_test(test_batch_four_concurrent_q4_k_m),
        cmocka_unit_test(test_batch_join_mid_generation),
        cmocka_unit_test(test_batch_cancel_one),
        cmocka_unit_test(test_batch_long_prefill_beside_stream),
        cmocka_unit_test(test_shared_prompt_prefix),
        cmocka_unit_test(test_logprobs_match_direct_computation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
