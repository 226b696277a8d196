/* test_lifecycle.c — the shared lifecycle core driven by a fake backend and a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "lifecycle/lifecycle.h"

/* ==== Fake clock ==== */

static double fake_now = 1000.0;
static double clock_mono(void *arg) {
    return (void)arg, fake_now;
}
static double clock_wall(void *arg) {
    return (void)arg, 1.7e9 + fake_now;
}
static const lc_clock fake_clock = {clock_mono, clock_wall, NULL};

/* ==== Fake backend: records operations; the test completes them ==== */

enum { OP_START, OP_STOP, OP_LOAD, OP_UNLOAD };
static const char *const op_names[] = {"start", "stop", "load", "unload"};

typedef struct fake {
    const char *name;
    int pending_kind; /* -1 none */
    lc_done_fn done;
    void *done_arg;
    int calls[4];
    int refuse; /* ops return -1 */
} fake;

static char oplog[4096]; /* "a:start b:load ..." in call order */

static int fake_op(fake *f, int kind, lc_done_fn done, void *arg) {
    if (f->refuse) return -1;
    assert_int_equal(f->pending_kind, -1); /* one operation at a time */
    f->pending_kind = kind;
    f->done = done;
    f->done_arg = arg;
    f->calls[kind]++;
    size_t n = strlen(oplog);
    snprintf(oplog + n, sizeof oplog - n, "%s%s:%s", n ? " " : "", f->name, op_names[kind]);
    return 0;
}
static int f_start(void *impl, lc_done_fn d, void *a) {
    return fake_op(impl, OP_START, d, a);
}
static int f_stop(void *impl, lc_done_fn d, void *a) {
    return fake_op(impl, OP_STOP, d, a);
}
static int f_load(void *impl, lc_done_fn d, void *a) {
    return fake_op(impl, OP_LOAD, d, a);
}
static int f_unload(void *impl, lc_done_fn d, void *a) {
    return fake_op(impl, OP_UNLOAD, d, a);
}
static void f_probe(void *impl, lc_probe *out) {
    fake *f = impl;
    out->pid = 4242;
    out->port = 47850;
    out->memory_bytes = strlen(f->name) * 1000;
}

static const lc_backend_ops worker_ops = {"worker", 1,      0,        f_start,
                                          f_stop,   f_load, f_unload, f_probe};
static const lc_backend_ops local_ops = {"local", 0, 0, NULL, NULL, f_load, f_unload, f_probe};
static const lc_backend_ops external_ops = {"external", 1,       1,      f_start,
                                            f_stop,     f_start, f_stop, f_probe};

/* Complete the pending operation of f, which must be `kind`. */
static void complete(fake *f, int kind, int status, const char *msg) {
    if (f->pending_kind != kind)
        fail_msg("%s: expected pending %s, have %s", f->name, op_names[kind],
                 f->pending_kind < 0 ? "none" : op_names[f->pending_kind]);
    f->pending_kind = -1;
    f->done(f->done_arg, status, msg);
}

/* ==== Callback recorder ==== */

typedef struct result {
    int calls;
    int status;
    char message[256];
} result;

static void on_done(void *arg, int status, const char *message) {
    result *r = arg;
    r->calls++;
    r->status = status;
    snprintf(r->message, sizeof r->message, "%s", message ? message : "");
}

/* ==== Event recorder ==== */

static char events[8192];
static void on_event(void *arg, const lc_model *m, const char *what) {
    (void)arg;
    if (strcmp(what, "process") && strcmp(what, "memory")) return;
    size_t n = strlen(events);
    snprintf(events + n, sizeof events - n, "%s%s:%s/%s", n ? " " : "", lc_model_name(m),
             lc_proc_state_name(lc_model_proc(m)), lc_mem_state_name(lc_model_mem(m)));
}

static lc_registry *reg;

static int setup(void **state) {
    (void)state;
    fake_now = 1000.0;
    oplog[0] = 0;
    events[0] = 0;
    reg = lc_registry_new(&fake_clock);
    lc_subscribe(reg, on_event, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    lc_registry_free(reg);
    return 0;
}

static lc_model *add(fake *f, const lc_backend_ops *ops, const char *group, double idle) {
    f->pending_kind = -1;
    lc_model_config cfg = {
        .name = f->name, .group = group, .idle_unload_s = idle, .model_path = "/models/x.gguf"};
    lc_model *m = lc_model_add(reg, &cfg, ops, f);
    assert_non_null(m);
    return m;
}

/* Acquire and drive a worker model to loaded through start and load. */
static void acquire_ready(lc_model *m, fake *f, result *r) {
    assert_int_equal(lc_acquire(m, 30, on_done, r, NULL), LC_PENDING);
    if (lc_model_proc(m) != LC_PROC_RUNNING) complete(f, OP_START, 0, NULL);
    complete(f, OP_LOAD, 0, NULL);
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->status, 0);
}

static json_t *entry_of(lc_model *m) {
    json_t *e = lc_model_entry(m);
    assert_non_null(e);
    return e;
}

/* ==== Tests ==== */

/* First request starts and loads; concurrent requests share that one start and load. */
static void test_jit_shared_load(void **state) {
    (void)state;
    fake f = {.name = "a"};
    lc_model *m = add(&f, &worker_ops, NULL, 0);
    result r[20] = {0};
    for (int i = 0; i < 20; i++)
        assert_int_equal(lc_acquire(m, 30, on_done, &r[i], NULL), LC_PENDING);
    assert_int_equal(lc_model_proc(m), LC_PROC_STARTING);
    complete(&f, OP_START, 0, NULL);
    assert_int_equal(lc_model_mem(m), LC_MEM_LOADING);
    assert_int_equal(r[0].calls, 0);
    complete(&f, OP_LOAD, 0, NULL);
    for (int i = 0; i < 20; i++) assert_int_equal(r[i].calls, 1), assert_int_equal(r[i].status, 0);
    assert_int_equal(f.calls[OP_START], 1);
    assert_int_equal(f.calls[OP_LOAD], 1);
    assert_int_equal(lc_model_in_flight(m), 20);
    /* loaded now: the next request is ready at once, no callback */
    result again = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &again, NULL), LC_READY);
    assert_int_equal(again.calls, 0);
    for (int i = 0; i < 21; i++) lc_release(m, 3);
    json_t *e = entry_of(m);
    assert_int_equal(json_integer_value(json_object_get(e, "requests_total")), 21);
    assert_int_equal(json_integer_value(json_object_get(e, "tokens_generated")), 63);
    assert_string_equal(json_string_value(json_object_get(e, "process_state")), "running");
    assert_string_equal(json_string_value(json_object_get(e, "memory_state")), "loaded");
    json_decref(e);
    assert_string_equal(events, "a:starting/unloaded a:running/unloaded a:running/loading "
                                "a:running/loaded");
}

/* Idle unload fires idle_unload_s after the last response ended, never while busy; unload_at
 * is exact. */
static void test_idle_unload(void **state) {
    (void)state;
    fake f = {.name = "a"};
    lc_model *m = add(&f, &worker_ops, NULL, 2.0);
    result r = {0};
    acquire_ready(m, &f, &r);
    assert_true(lc_model_unload_at(m) == 0); /* busy: no unload scheduled */
    fake_now += 10;                          /* a long request, far past the timeout */
    lc_cron(reg);
    assert_int_equal(f.calls[OP_UNLOAD], 0);
    lc_release(m, 1);
    double end = fake_now;
    assert_true(lc_model_unload_at(m) == 1.7e9 + end + 2.0);
    json_t *e = entry_of(m);
    assert_true(json_real_value(json_object_get(e, "unload_at")) == 1.7e9 + end + 2.0);
    json_decref(e);
    fake_now = end + 1.9;
    lc_cron(reg);
    assert_int_equal(f.calls[OP_UNLOAD], 0);
    fake_now = end + 2.0;
    lc_cron(reg);
    assert_int_equal(f.calls[OP_UNLOAD], 1);
    assert_int_equal(lc_model_mem(m), LC_MEM_UNLOADING);
    complete(&f, OP_UNLOAD, 0, NULL);
    assert_int_equal(lc_model_mem(m), LC_MEM_UNLOADED);
    assert_int_equal(lc_model_proc(m), LC_PROC_RUNNING); /* memory axis only */
    e = entry_of(m);
    assert_string_equal(json_string_value(json_object_get(e, "last_unload_reason")), "idle");
    assert_true(json_is_null(json_object_get(e, "unload_at")));
    json_decref(e);
    /* the next request loads again, without a start */
    result r2 = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r2, NULL), LC_PENDING);
    complete(&f, OP_LOAD, 0, NULL);
    assert_int_equal(r2.status, 0);
    assert_int_equal(f.calls[OP_START], 1);
    lc_release(m, 0);
}

/* max_loaded 1 and two models alternating: every switch evicts the other. */
static void test_group_switch(void **state) {
    (void)state;
    lc_group_set(reg, "g", 1);
    fake fa = {.name = "a"}, fb = {.name = "b"};
    lc_model *a = add(&fa, &worker_ops, "g", 0), *b = add(&fb, &worker_ops, "g", 0);
    result r = {0};
    acquire_ready(a, &fa, &r);
    lc_release(a, 0);
    oplog[0] = 0;
    result rb = {0};
    assert_int_equal(lc_acquire(b, 30, on_done, &rb, NULL), LC_PENDING);
    complete(&fb, OP_START, 0, NULL);
    complete(&fa, OP_UNLOAD, 0, NULL); /* capacity eviction of a */
    complete(&fb, OP_LOAD, 0, NULL);
    assert_int_equal(rb.status, 0);
    assert_string_equal(oplog, "b:start a:unload b:load");
    json_t *e = entry_of(a);
    assert_string_equal(json_string_value(json_object_get(e, "last_unload_reason")), "capacity");
    json_decref(e);
    lc_release(b, 0);
    oplog[0] = 0;
    result ra = {0};
    assert_int_equal(lc_acquire(a, 30, on_done, &ra, NULL), LC_PENDING);
    complete(&fb, OP_UNLOAD, 0, NULL);
    complete(&fa, OP_LOAD, 0, NULL);
    assert_string_equal(oplog, "b:unload a:load");
    lc_release(a, 0);
    json_t *s = lc_snapshot(reg);
    json_t *g = json_array_get(json_object_get(s, "groups"), 0);
    assert_int_equal(json_integer_value(json_object_get(g, "loaded")), 1);
    assert_int_equal(json_integer_value(json_object_get(g, "max_loaded")), 1);
    assert_int_equal(json_array_size(json_object_get(g, "members")), 2);
    json_decref(s);
}

/* A busy member is not evicted: the load waits for it to drain; an explicit load gets BUSY. */
static void test_group_busy(void **state) {
    (void)state;
    lc_group_set(reg, "g", 1);
    fake fa = {.name = "a"}, fb = {.name = "b"};
    lc_model *a = add(&fa, &worker_ops, "g", 0), *b = add(&fb, &worker_ops, "g", 0);
    result r = {0};
    acquire_ready(a, &fa, &r); /* a stays in flight */
    int status = 0;
    json_t *plan = lc_load_dry_run(b, &status);
    assert_null(plan);
    assert_int_equal(status, LC_ERR_BUSY);
    /* explicit load refuses at once */
    result rl = {0};
    assert_int_equal(lc_load(b, on_done, &rl), LC_ERR_BUSY);
    assert_int_equal(fb.calls[OP_START], 0);
    /* a request waits */
    result rb = {0};
    assert_int_equal(lc_acquire(b, 30, on_done, &rb, NULL), LC_PENDING);
    complete(&fb, OP_START, 0, NULL);
    fake_now += 5;
    lc_cron(reg);
    assert_int_equal(fa.calls[OP_UNLOAD], 0); /* a is busy */
    assert_int_equal(rb.calls, 0);
    lc_release(a, 0); /* drains: now it can go */
    assert_int_equal(fa.calls[OP_UNLOAD], 1);
    complete(&fa, OP_UNLOAD, 0, NULL);
    complete(&fb, OP_LOAD, 0, NULL);
    assert_int_equal(rb.status, 0);
    lc_release(b, 0);
    /* with b idle, the dry run names it */
    plan = lc_load_dry_run(a, &status);
    assert_non_null(plan);
    assert_int_equal(json_array_size(plan), 1);
    assert_string_equal(json_string_value(json_array_get(plan, 0)), "b");
    json_decref(plan);
}

/* With max_loaded 2 the least recently used idle member goes. */
static void test_group_lru(void **state) {
    (void)state;
    lc_group_set(reg, "g", 2);
    fake fa = {.name = "a"}, fb = {.name = "b"}, fc = {.name = "c"};
    lc_model *a = add(&fa, &worker_ops, "g", 0), *b = add(&fb, &worker_ops, "g", 0),
             *c = add(&fc, &worker_ops, "g", 0);
    result r1 = {0}, r2 = {0}, r3 = {0};
    acquire_ready(a, &fa, &r1);
    fake_now += 1;
    acquire_ready(b, &fb, &r2);
    fake_now += 1;
    lc_release(b, 0); /* b used last at t+2 */
    fake_now += 1;
    lc_release(a, 0); /* a used last at t+3: b is now the LRU */
    assert_int_equal(lc_acquire(c, 30, on_done, &r3, NULL), LC_PENDING);
    complete(&fc, OP_START, 0, NULL);
    assert_int_equal(fb.calls[OP_UNLOAD], 1);
    assert_int_equal(fa.calls[OP_UNLOAD], 0);
    complete(&fb, OP_UNLOAD, 0, NULL);
    complete(&fc, OP_LOAD, 0, NULL);
    assert_int_equal(r3.status, 0);
    lc_release(c, 0);
}

/* A crash marks failed with the code; the next request restarts after the backoff; three crashes
 * in the window quarantine until a manual start. */
static void test_crash_restart_quarantine(void **state) {
    (void)state;
    fake f = {.name = "a"};
    lc_model *m = add(&f, &worker_ops, NULL, 0);
    result r = {0};
    acquire_ready(m, &f, &r);
    lc_notify_exit(m, -9);
    assert_int_equal(lc_model_proc(m), LC_PROC_FAILED);
    assert_int_equal(lc_model_mem(m), LC_MEM_UNLOADED);
    json_t *e = entry_of(m);
    assert_int_equal(json_integer_value(json_object_get(e, "exit_code")), -9);
    assert_string_equal(json_string_value(json_object_get(e, "last_unload_reason")), "crash");
    assert_non_null(strstr(json_string_value(json_object_get(e, "error")), "signal 9"));
    json_decref(e);
    lc_release(m, 0); /* the proxied request ends with an error */

    result r2 = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r2, NULL), LC_PENDING);
    assert_int_equal(f.calls[OP_START], 1); /* backing off: not yet */
    fake_now += 1.0;
    lc_cron(reg);
    assert_int_equal(f.calls[OP_START], 2);
    complete(&f, OP_START, 0, NULL);
    complete(&f, OP_LOAD, 0, NULL);
    assert_int_equal(r2.status, 0);
    e = entry_of(m);
    assert_int_equal(json_integer_value(json_object_get(e, "restarts")), 1);
    json_decref(e);
    lc_release(m, 0);

    lc_notify_exit(m, 1); /* second crash: backoff doubles */
    result r3 = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r3, NULL), LC_PENDING);
    fake_now += 1.0;
    lc_cron(reg);
    assert_int_equal(f.calls[OP_START], 2);
    fake_now += 1.0;
    lc_cron(reg);
    assert_int_equal(f.calls[OP_START], 3);
    complete(&f, OP_START, 0, NULL);
    complete(&f, OP_LOAD, 0, NULL);
    lc_release(m, 0);

    lc_notify_exit(m, 1); /* third within 60 s: quarantined */
    result r4 = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r4, NULL), LC_ERR_QUARANTINED);
    assert_int_equal(lc_status_http(LC_ERR_QUARANTINED), 503);
    e = entry_of(m);
    assert_true(json_is_true(json_object_get(e, "quarantined")));
    json_decref(e);
    result rs = {0};
    assert_int_equal(lc_start(m, on_done, &rs), LC_PENDING); /* manual start clears it */
    complete(&f, OP_START, 0, NULL);
    assert_int_equal(rs.status, 0);
    assert_int_equal(lc_acquire(m, 30, on_done, &r4, NULL), LC_PENDING);
    complete(&f, OP_LOAD, 0, NULL);
    assert_int_equal(r4.status, 0);
    lc_release(m, 0);
}

/* A crash during loading: the late completion of the load is ignored. */
static void test_crash_while_loading(void **state) {
    (void)state;
    fake f = {.name = "a"};
    lc_model *m = add(&f, &worker_ops, NULL, 0);
    result r = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r, NULL), LC_PENDING);
    complete(&f, OP_START, 0, NULL);
    assert_int_equal(lc_model_mem(m), LC_MEM_LOADING);
    lc_notify_exit(m, 139);
    assert_int_equal(lc_model_proc(m), LC_PROC_FAILED);
    complete(&f, OP_LOAD, -1, "connection reset"); /* stale: no effect */
    assert_int_equal(lc_model_proc(m), LC_PROC_FAILED);
    assert_int_equal(r.calls, 0); /* still waiting: the restart will serve it */
    fake_now += 1;
    lc_cron(reg);
    complete(&f, OP_START, 0, NULL);
    complete(&f, OP_LOAD, 0, NULL);
    assert_int_equal(r.status, 0);
    lc_release(m, 0);
}

static void test_timeout_and_cancel(void **state) {
    (void)state;
    fake f = {.name = "a"};
    lc_model *m = add(&f, &worker_ops, NULL, 0);
    result r1 = {0}, r2 = {0};
    lc_waiter *w2;
    assert_int_equal(lc_acquire(m, 5, on_done, &r1, NULL), LC_PENDING);
    assert_int_equal(lc_acquire(m, 5, on_done, &r2, &w2), LC_PENDING);
    lc_acquire_cancel(w2); /* its client went away */
    fake_now += 4.9;
    lc_cron(reg);
    assert_int_equal(r1.calls, 0);
    fake_now += 0.1;
    lc_cron(reg);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r1.status, LC_ERR_TIMEOUT);
    assert_int_equal(lc_status_http(r1.status), 503);
    assert_int_equal(r2.calls, 0);
    /* the start still completes and is kept */
    complete(&f, OP_START, 0, NULL);
    assert_int_equal(lc_model_proc(m), LC_PROC_RUNNING);
    assert_int_equal(lc_model_mem(m), LC_MEM_UNLOADED); /* nobody wants it loaded any more */
}

static void test_load_failure(void **state) {
    (void)state;
    fake f = {.name = "a"};
    lc_model *m = add(&f, &local_ops, NULL, 0);
    assert_int_equal(lc_model_proc(m), LC_PROC_RUNNING);
    result r = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r, NULL), LC_PENDING);
    complete(&f, OP_LOAD, -1, "model.gguf: tensor 'x' extends past end of file");
    assert_int_equal(r.status, LC_ERR_FAILED);
    assert_non_null(strstr(r.message, "extends past end of file"));
    assert_int_equal(lc_model_mem(m), LC_MEM_ERROR);
    json_t *e = entry_of(m);
    assert_non_null(strstr(json_string_value(json_object_get(e, "error")), "extends past"));
    json_decref(e);
    /* the next request tries again */
    result r2 = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r2, NULL), LC_PENDING);
    complete(&f, OP_LOAD, 0, NULL);
    assert_int_equal(r2.status, 0);
    lc_release(m, 0);
    /* never unload a busy model; a manual unload of an idle one works */
    result ru = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r2, NULL), LC_READY);
    assert_int_equal(lc_unload(m, LC_REASON_MANUAL, on_done, &ru), LC_ERR_CONFLICT);
    lc_release(m, 0);
    assert_int_equal(lc_unload(m, LC_REASON_MANUAL, on_done, &ru), LC_PENDING);
    complete(&f, OP_UNLOAD, 0, NULL);
    assert_int_equal(ru.status, 0);
    assert_int_equal(lc_stop(m, LC_REASON_MANUAL, on_done, &ru), LC_ERR_UNSUPPORTED);
}

/* External commands: loading is starting, unloading is stopping. */
static void test_external(void **state) {
    (void)state;
    fake f = {.name = "ext"};
    lc_model *m = add(&f, &external_ops, NULL, 1.0);
    result r = {0};
    assert_int_equal(lc_acquire(m, 30, on_done, &r, NULL), LC_PENDING);
    assert_int_equal(lc_model_proc(m), LC_PROC_STARTING);
    assert_int_equal(lc_model_mem(m), LC_MEM_LOADING);
    complete(&f, OP_START, 0, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(lc_model_proc(m), LC_PROC_RUNNING);
    assert_int_equal(lc_model_mem(m), LC_MEM_LOADED);
    lc_release(m, 0);
    fake_now += 1.0;
    lc_cron(reg);
    complete(&f, OP_STOP, 0, NULL); /* idle: the process stops */
    assert_int_equal(lc_model_proc(m), LC_PROC_STOPPED);
    assert_int_equal(lc_model_mem(m), LC_MEM_UNLOADED);
    json_t *e = entry_of(m);
    assert_string_equal(json_string_value(json_object_get(e, "last_unload_reason")), "idle");
    assert_string_equal(json_string_value(json_object_get(e, "backend")), "external");
    json_decref(e);
}

static void test_manual_stop_and_shutdown(void **state) {
    (void)state;
    fake fa = {.name = "a"}, fb = {.name = "b"};
    lc_model *a = add(&fa, &worker_ops, NULL, 0), *b = add(&fb, &worker_ops, NULL, 0);
    result r = {0}, rs = {0};
    acquire_ready(a, &fa, &r);
    lc_release(a, 0);
    assert_int_equal(lc_stop(a, LC_REASON_MANUAL, on_done, &rs), LC_PENDING);
    complete(&fa, OP_STOP, 0, NULL);
    assert_int_equal(rs.status, 0);
    assert_int_equal(lc_model_proc(a), LC_PROC_STOPPED);
    assert_int_equal(lc_model_mem(a), LC_MEM_UNLOADED);
    result r2 = {0};
    acquire_ready(a, &fa, &r2);
    lc_release(a, 0);
    result rb = {0};
    acquire_ready(b, &fb, &rb);
    result shut = {0};
    assert_int_equal(lc_shutdown(reg, on_done, &shut), LC_PENDING);
    assert_int_equal(lc_acquire(a, 30, on_done, &r2, NULL), LC_ERR_SHUTDOWN);
    complete(&fa, OP_STOP, 0, NULL);
    assert_int_equal(shut.calls, 0);
    complete(&fb, OP_STOP, 0, NULL);
    assert_int_equal(shut.calls, 1);
    json_t *e = entry_of(b);
    assert_string_equal(json_string_value(json_object_get(e, "last_unload_reason")), "shutdown");
    json_decref(e);
}

static void test_find_and_remove(void **state) {
    (void)state;
    fake f = {.name = "alpha"};
    f.pending_kind = -1;
    const char *aliases[] = {"a1", "gpt-4o", NULL};
    lc_model_config cfg = {.name = "alpha", .aliases = aliases, .model_path = "/m/alpha-q8.gguf"};
    lc_model *m = lc_model_add(reg, &cfg, &worker_ops, &f);
    assert_non_null(m);
    assert_null(lc_model_add(reg, &cfg, &worker_ops, &f)); /* name taken */
    assert_ptr_equal(lc_find(reg, "gpt-4o", 0), m);
    assert_null(lc_find(reg, "alpha-q8.gguf", 0));
    assert_ptr_equal(lc_find(reg, "alpha-q8.gguf", 1), m);
    assert_null(lc_find(reg, "beta", 1));
    result r = {0};
    acquire_ready(m, &f, &r);
    assert_int_equal(lc_model_remove(m), LC_ERR_CONFLICT);
    lc_release(m, 0);
    assert_int_equal(lc_stop(m, LC_REASON_RELOAD, on_done, &r), LC_PENDING);
    complete(&f, OP_STOP, 0, NULL);
    assert_int_equal(lc_model_remove(m), 0);
    assert_int_equal(lc_count(reg), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jit_shared_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_unload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_switch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_restart_quarantine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_while_loading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_external, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_stop_and_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_and_remove, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
