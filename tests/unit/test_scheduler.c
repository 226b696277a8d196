/* test_scheduler.c — slots, queue, stop strings, cancellation and the prompt cache, on
 * stories260K. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

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
    pthread_mutex_lock(&c->lock);
    if (ev->type == SCHED_EV_STARTED) c->started = 1;
    if (ev->type == SCHED_EV_TEXT) {
        assert_true(c->len + ev->len < sizeof c->text);
        memcpy(c->text + c->len, ev->text, ev->len);
        c->len += ev->len;
        c->text[c->len] = 0;
        c->text_events++;
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_reference),
        cmocka_unit_test(test_stop_string),
        cmocka_unit_test(test_parallel_slots),
        cmocka_unit_test(test_queue_full_timeout_cancel),
        cmocka_unit_test(test_prompt_cache),
        cmocka_unit_test(test_embedding_job),
        cmocka_unit_test(test_invalid_and_free_with_queue),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
