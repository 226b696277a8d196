/* lifecycle.c — see lifecycle.h. One drive() function per model decides the next backend
 * operation from the model's state and what its waiters want; everything else (requests, cron,
 * backend completions, manual control) changes inputs and calls drive(). */
#include "lifecycle/lifecycle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"

#define MAX_CRASH_HISTORY 16
#define MAX_OBSERVERS     16
#define BACKOFF_CAP_S     30.0

enum waiter_kind {
    WAIT_ACQUIRE, /* running + loaded, then counted in flight */
    WAIT_START,   /* running */
    WAIT_LOAD,    /* running + loaded (explicit: refuses to wait for a busy group) */
    WAIT_STOP,    /* stopped */
    WAIT_UNLOAD,  /* unloaded */
};

struct lc_waiter {
    lc_model *m;
    enum waiter_kind kind;
    double deadline; /* monotonic; 0 = none */
    lc_done_fn cb;
    void *arg;
    lc_waiter *prev, *next;
};

/* One backend operation in progress; its completion is ignored when the generation moved on
 * (the process crashed meanwhile, or the model was reset). */
typedef struct op_ctx {
    lc_model *m;
    unsigned gen;
    enum { OP_START, OP_STOP, OP_LOAD, OP_UNLOAD } kind;
} op_ctx;

struct lc_model {
    lc_registry *r;
    char *name;
    char **aliases; /* NULL-terminated */
    char *model_path;
    char *group;
    int is_default;
    double idle_unload_s;
    const lc_backend_ops *ops;
    void *impl;

    lc_proc_state proc;
    lc_mem_state mem;
    int exit_code, has_exit_code;
    const char *failure_reason; /* static: "crash", "unresponsive"; NULL unless failed */
    char *error;
    double started_at, loaded_at;                  /* wall, 0 = none */
    double last_activity_wall, last_activity_mono; /* end of the last response (or load) */
    int in_flight;
    int restarts;
    lc_reason last_unload_reason;
    uint64_t requests_total, tokens_generated;

    double crash_times[MAX_CRASH_HISTORY]; /* monotonic, ring */
    int n_crash_times;
    int quarantined;
    double restart_not_before; /* monotonic */
    int restart_pending;       /* the next start is a restart after a crash */

    int stop_requested;
    lc_reason stop_reason;
    int unload_requested;
    lc_reason unload_reason;
    int awaiting_slot;            /* evicted a group member and waits for its slot */
    lc_reason pending_mem_reason; /* reason of the unload in progress */

    unsigned op_gen;
    op_ctx *op; /* in progress, or NULL */

    lc_waiter *waiters; /* FIFO */
    lc_waiter *waiters_tail;
};

typedef struct group {
    char *name;
    int max_loaded;
} group;

typedef struct observer {
    int id;
    lc_event_fn fn;
    void *arg;
} observer;

struct lc_registry {
    lc_clock clock;
    char *host;
    int port;
    double started_wall;
    int max_crashes;
    double crash_window_s, backoff_s;
    lc_model **models;
    int n_models, cap_models;
    group *groups;
    int n_groups;
    observer observers[MAX_OBSERVERS];
    int n_observers, next_observer_id;
    char **warnings;
    int n_warnings;
    int shutting_down;
    lc_done_fn shutdown_cb;
    void *shutdown_arg;
};

static void drive(lc_model *m);
static void drive_group(lc_registry *r, const char *group_name);

/* ==== Names ==== */

const char *lc_proc_state_name(lc_proc_state s) {
    static const char *const names[] = {"stopped", "starting", "running", "stopping", "failed"};
    return s <= LC_PROC_FAILED ? names[s] : "unknown";
}

const char *lc_mem_state_name(lc_mem_state s) {
    static const char *const names[] = {"unloaded", "loading", "loaded", "unloading", "error"};
    return s <= LC_MEM_ERROR ? names[s] : "unknown";
}

const char *lc_reason_name(lc_reason r) {
    static const char *const names[] = {"none",  "idle",   "capacity", "manual",
                                        "crash", "reload", "shutdown"};
    return r <= LC_REASON_SHUTDOWN ? names[r] : "unknown";
}

int lc_status_http(int status) {
    switch (status) {
    case LC_READY:
    case LC_PENDING: return 200;
    case LC_ERR_BUSY: return 429;
    case LC_ERR_CONFLICT: return 409;
    case LC_ERR_REMOVED: return 404;
    case LC_ERR_UNSUPPORTED: return 400;
    default: return 503;
    }
}

static const char *status_message(int status) {
    switch (status) {
    case LC_ERR_TIMEOUT: return "timed out waiting for the model to become ready";
    case LC_ERR_BUSY: return "the model's group is full and every loaded member is busy";
    case LC_ERR_FAILED: return "the model failed to start or load";
    case LC_ERR_QUARANTINED:
        return "the model crashed repeatedly and is quarantined until a "
               "manual start";
    case LC_ERR_CONFLICT: return "the model has requests in flight";
    case LC_ERR_SHUTDOWN: return "shutting down";
    case LC_ERR_REMOVED: return "the model was removed from the configuration";
    case LC_ERR_UNSUPPORTED: return "this backend does not support that operation";
    default: return "ok";
    }
}

/* ==== Clock ==== */

static double real_mono(void *arg) {
    return (void)arg, mh_now_mono();
}
static double real_wall(void *arg) {
    return (void)arg, mh_now_wall();
}
static double now_mono(const lc_registry *r) {
    return r->clock.mono(r->clock.arg);
}
static double now_wall(const lc_registry *r) {
    return r->clock.wall(r->clock.arg);
}

/* ==== Events and state changes ==== */

static void emit(lc_model *m, const char *what) {
    lc_registry *r = m->r;
    for (int i = 0; i < r->n_observers; i++) r->observers[i].fn(r->observers[i].arg, m, what);
}

static void set_error(lc_model *m, const char *msg) {
    free(m->error);
    m->error = msg ? mh_xstrdup(msg) : NULL;
}

/* Every change of the process axis goes through here. */
static void set_proc(lc_model *m, lc_proc_state s) {
    if (m->proc == s) return;
    m->proc = s;
    if (s == LC_PROC_RUNNING) {
        m->started_at = now_wall(m->r);
        m->has_exit_code = 0;
        m->failure_reason = NULL;
    }
    if (s == LC_PROC_STOPPED || s == LC_PROC_FAILED) m->started_at = 0;
    emit(m, "process");
}

/* Every change of the memory axis goes through here. */
static void set_mem(lc_model *m, lc_mem_state s, lc_reason reason) {
    if (m->mem == s) return;
    lc_mem_state old = m->mem;
    m->mem = s;
    if (s == LC_MEM_LOADED) {
        m->loaded_at = now_wall(m->r);
        /* the idle clock of a fresh load starts now */
        m->last_activity_wall = m->loaded_at;
        m->last_activity_mono = now_mono(m->r);
        set_error(m, NULL);
    }
    if (s == LC_MEM_UNLOADED) {
        m->loaded_at = 0;
        if (old != LC_MEM_ERROR && old != LC_MEM_UNLOADED && reason != LC_REASON_NONE)
            m->last_unload_reason = reason;
    }
    emit(m, "memory");
}

/* ==== Waiters ==== */

static lc_waiter *waiter_add(lc_model *m, enum waiter_kind kind, double timeout_s, lc_done_fn cb,
                             void *arg) {
    lc_waiter *w = mh_xcalloc(1, sizeof *w);
    w->m = m;
    w->kind = kind;
    w->deadline = timeout_s > 0 ? now_mono(m->r) + timeout_s : 0;
    w->cb = cb;
    w->arg = arg;
    w->prev = m->waiters_tail;
    if (m->waiters_tail)
        m->waiters_tail->next = w;
    else
        m->waiters = w;
    m->waiters_tail = w;
    return w;
}

static void waiter_unlink(lc_waiter *w) {
    lc_model *m = w->m;
    if (w->prev)
        w->prev->next = w->next;
    else
        m->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        m->waiters_tail = w->prev;
}

static void waiter_finish(lc_waiter *w, int status, const char *msg) {
    waiter_unlink(w);
    lc_done_fn cb = w->cb;
    void *arg = w->arg;
    lc_model *m = w->m;
    int acquired = w->kind == WAIT_ACQUIRE && status == 0;
    free(w);
    if (acquired) {
        m->in_flight++;
        m->requests_total++;
        emit(m, "activity");
    }
    if (cb) cb(arg, status, msg ? msg : status_message(status));
}

/* Finish every waiter of the given kinds (mask of 1 << kind) with `status`. Waiters added by
 * the callbacks themselves are left alone. */
static void finish_waiters(lc_model *m, unsigned kinds, int status, const char *msg) {
    lc_waiter *last = m->waiters_tail;
    lc_waiter *w = m->waiters;
    while (w) {
        lc_waiter *next = w->next;
        int is_last = w == last;
        if (kinds & (1u << w->kind)) waiter_finish(w, status, msg);
        if (is_last) break;
        w = next;
    }
}

static int has_waiters(const lc_model *m, unsigned kinds) {
    for (const lc_waiter *w = m->waiters; w; w = w->next)
        if (kinds & (1u << w->kind)) return 1;
    return 0;
}

#define K(kind)       (1u << (kind))
#define WANTS_RUNNING (K(WAIT_ACQUIRE) | K(WAIT_START) | K(WAIT_LOAD))
#define WANTS_LOADED  (K(WAIT_ACQUIRE) | K(WAIT_LOAD))

/* ==== Groups ==== */

static group *find_group(const lc_registry *r, const char *name) {
    if (!name || !*name) return NULL;
    for (int i = 0; i < r->n_groups; i++)
        if (strcmp(r->groups[i].name, name) == 0) return &r->groups[i];
    return NULL;
}

static int occupies_slot(const lc_model *m) {
    return m->mem == LC_MEM_LOADING || m->mem == LC_MEM_LOADED || m->mem == LC_MEM_UNLOADING;
}

static int group_occupied(const lc_registry *r, const char *name) {
    int n = 0;
    for (int i = 0; i < r->n_models; i++)
        if (r->models[i]->group && strcmp(r->models[i]->group, name) == 0 &&
            occupies_slot(r->models[i]))
            n++;
    return n;
}

/* The least recently used member of m's group that is loaded and idle, or NULL. */
static lc_model *group_victim(const lc_model *m) {
    const lc_registry *r = m->r;
    lc_model *best = NULL;
    for (int i = 0; i < r->n_models; i++) {
        lc_model *o = r->models[i];
        if (o == m || !o->group || strcmp(o->group, m->group) != 0) continue;
        if (o->mem != LC_MEM_LOADED || o->in_flight > 0 || o->unload_requested ||
            o->stop_requested || o->op)
            continue;
        if (!best || o->last_activity_mono < best->last_activity_mono) best = o;
    }
    return best;
}

/* ==== Backend operations ==== */

static void op_done(void *arg, int status, const char *message);

static int op_begin(lc_model *m, int kind) {
    MH_ASSERT(!m->op);
    op_ctx *op = mh_xcalloc(1, sizeof *op);
    op->m = m;
    op->gen = ++m->op_gen;
    op->kind = kind;
    m->op = op;
    int (*fn)(void *, lc_done_fn, void *) = kind == OP_START  ? m->ops->start
                                            : kind == OP_STOP ? m->ops->stop
                                            : kind == OP_LOAD ? m->ops->load
                                                              : m->ops->unload;
    int rc = fn ? fn(m->impl, op_done, op) : -1;
    if (rc < 0) {
        m->op = NULL;
        free(op);
    }
    return rc;
}

/* Completion of a backend operation. */
static void op_done(void *arg, int status, const char *message) {
    op_ctx *op = arg;
    lc_model *m = op->m;
    int stale = m->op != op || op->gen != m->op_gen;
    int kind = op->kind;
    if (m->op == op) m->op = NULL;
    free(op);
    if (stale) return; /* superseded (crash, reset): the model moved on */
    int ok = status == 0;
    switch (kind) {
    case OP_START:
        if (ok) {
            set_error(m, NULL);
            if (m->restart_pending) m->restarts++;
            m->restart_pending = 0;
            set_proc(m, LC_PROC_RUNNING);
        } else {
            set_error(m, message ? message : "start failed");
            set_proc(m, LC_PROC_FAILED);
            lc_notify_exit(m, INT32_MIN); /* count it like a crash, without an exit code */
            finish_waiters(m, WANTS_RUNNING, LC_ERR_FAILED, m->error);
        }
        break;
    case OP_STOP:
        m->stop_requested = 0;
        set_proc(m, LC_PROC_STOPPED);
        if (m->mem != LC_MEM_UNLOADED) set_mem(m, LC_MEM_UNLOADED, m->stop_reason);
        finish_waiters(m, K(WAIT_STOP), ok ? 0 : LC_ERR_FAILED, message);
        if (m->ops->load_is_start) {
            m->unload_requested = 0;
            finish_waiters(m, K(WAIT_UNLOAD), 0, NULL);
        }
        break;
    case OP_LOAD:
        if (ok) {
            if (m->ops->load_is_start) {
                if (m->restart_pending) m->restarts++;
                m->restart_pending = 0;
                set_proc(m, LC_PROC_RUNNING);
            }
            set_mem(m, LC_MEM_LOADED, LC_REASON_NONE);
        } else {
            set_error(m, message ? message : "load failed");
            if (m->ops->load_is_start) {
                set_proc(m, LC_PROC_FAILED);
                set_mem(m, LC_MEM_UNLOADED, LC_REASON_NONE);
                lc_notify_exit(m, INT32_MIN);
            } else {
                set_mem(m, LC_MEM_ERROR, LC_REASON_NONE);
            }
            finish_waiters(m, WANTS_LOADED, LC_ERR_FAILED, m->error);
        }
        break;
    case OP_UNLOAD:
        m->unload_requested = 0;
        if (ok) {
            set_mem(m, LC_MEM_UNLOADED, m->pending_mem_reason);
        } else {
            /* the backend could not unload: it is still loaded */
            set_error(m, message ? message : "unload failed");
            set_mem(m, LC_MEM_LOADED, LC_REASON_NONE);
        }
        finish_waiters(m, K(WAIT_UNLOAD), ok ? 0 : LC_ERR_FAILED, message);
        break;
    }
    drive(m);
    if (m->group) drive_group(m->r, m->group);
}

/* ==== Drive ==== */

static void check_shutdown_done(lc_registry *r) {
    if (!r->shutting_down || !r->shutdown_cb) return;
    for (int i = 0; i < r->n_models; i++) {
        lc_model *m = r->models[i];
        if (m->op || m->mem == LC_MEM_LOADED ||
            (m->ops->owns_process && m->proc == LC_PROC_RUNNING))
            return;
    }
    lc_done_fn cb = r->shutdown_cb;
    r->shutdown_cb = NULL;
    cb(r->shutdown_arg, 0, NULL);
}

static void start_unload(lc_model *m, lc_reason reason) {
    m->pending_mem_reason = reason;
    if (m->ops->load_is_start) {
        m->stop_reason = reason;
        if (op_begin(m, OP_STOP) < 0) {
            m->unload_requested = 0;
            return;
        }
        set_proc(m, LC_PROC_STOPPING);
        set_mem(m, LC_MEM_UNLOADING, reason);
        return;
    }
    if (op_begin(m, OP_UNLOAD) < 0) {
        m->unload_requested = 0;
        finish_waiters(m, K(WAIT_UNLOAD), LC_ERR_FAILED, "the backend refused to unload");
        return;
    }
    set_mem(m, LC_MEM_UNLOADING, reason);
}

static void start_process(lc_model *m) {
    if (op_begin(m, OP_START) < 0) {
        set_error(m, "the backend could not start the process");
        set_proc(m, LC_PROC_FAILED);
        finish_waiters(m, WANTS_RUNNING, LC_ERR_FAILED, m->error);
        return;
    }
    set_proc(m, LC_PROC_STARTING);
}

static void start_load(lc_model *m) {
    if (op_begin(m, OP_LOAD) < 0) {
        set_error(m, "the backend could not load the model");
        set_mem(m, LC_MEM_ERROR, LC_REASON_NONE);
        finish_waiters(m, WANTS_LOADED, LC_ERR_FAILED, m->error);
        return;
    }
    if (m->ops->load_is_start) set_proc(m, LC_PROC_STARTING);
    set_mem(m, LC_MEM_LOADING, LC_REASON_NONE);
}

/* Try to make room in m's full group. Returns 1 when m may load now. */
static int claim_slot(lc_model *m) {
    group *g = find_group(m->r, m->group);
    if (!g || g->max_loaded <= 0) return 1;
    if (group_occupied(m->r, g->name) < g->max_loaded) {
        m->awaiting_slot = 0;
        return 1;
    }
    if (m->awaiting_slot) {
        for (int i = 0; i < m->r->n_models; i++) {
            lc_model *o = m->r->models[i];
            if (o->group && strcmp(o->group, g->name) == 0 && o->mem == LC_MEM_UNLOADING)
                return 0; /* an eviction for us is under way */
        }
        m->awaiting_slot = 0; /* it did not happen (the unload failed): choose again */
    }
    lc_model *victim = group_victim(m);
    if (!victim) {
        /* every member is busy: an explicit load says so now, requests wait for a drain */
        finish_waiters(m, K(WAIT_LOAD), LC_ERR_BUSY, NULL);
        return 0;
    }
    m->awaiting_slot = 1;
    victim->unload_requested = 1;
    victim->unload_reason = LC_REASON_CAPACITY;
    drive(victim);
    return 0;
}

static void drive(lc_model *m) {
    lc_registry *r = m->r;
    for (int guard = 0; guard < 8; guard++) {
        if (m->op) break; /* one backend operation at a time */
        int loaded = m->mem == LC_MEM_LOADED;
        int running = !m->ops->owns_process || m->proc == LC_PROC_RUNNING ||
                      (m->ops->load_is_start && loaded);

        /* 1. stop requested */
        if (m->stop_requested) {
            int active = m->ops->load_is_start ? (loaded || m->proc == LC_PROC_RUNNING)
                                               : m->proc == LC_PROC_RUNNING;
            if (!active) {
                m->stop_requested = 0;
                if (m->proc != LC_PROC_FAILED) set_proc(m, LC_PROC_STOPPED);
                finish_waiters(m, K(WAIT_STOP), 0, NULL);
                continue;
            }
            m->stop_reason = m->stop_reason ? m->stop_reason : LC_REASON_MANUAL;
            m->pending_mem_reason = m->stop_reason;
            if (op_begin(m, OP_STOP) < 0) {
                m->stop_requested = 0;
                finish_waiters(m, K(WAIT_STOP), LC_ERR_FAILED, "the backend refused to stop");
                continue;
            }
            if (loaded) set_mem(m, LC_MEM_UNLOADING, m->stop_reason);
            set_proc(m, LC_PROC_STOPPING);
            break;
        }

        /* 2. unload requested (never while requests are in flight) */
        if (m->unload_requested) {
            if (!loaded) {
                m->unload_requested = 0;
                finish_waiters(m, K(WAIT_UNLOAD), 0, NULL);
                continue;
            }
            if (m->in_flight > 0 && m->unload_reason != LC_REASON_SHUTDOWN) {
                m->unload_requested = 0; /* became busy meanwhile: keep it */
                finish_waiters(m, K(WAIT_UNLOAD), LC_ERR_CONFLICT, NULL);
                continue;
            }
            start_unload(m, m->unload_reason);
            break;
        }

        /* 3. someone wants it running */
        if (!running && has_waiters(m, WANTS_RUNNING) && !r->shutting_down) {
            if (m->quarantined && !has_waiters(m, K(WAIT_START))) {
                finish_waiters(m, WANTS_RUNNING, LC_ERR_QUARANTINED, NULL);
                continue;
            }
            if (now_mono(r) < m->restart_not_before && !has_waiters(m, K(WAIT_START)))
                break;                   /* backing off after a crash: lc_cron drives again */
            if (m->ops->load_is_start) { /* starting is loading: group rules apply */
                if (!claim_slot(m)) break;
                start_load(m);
                break;
            }
            start_process(m);
            break;
        }
        if (running) finish_waiters(m, K(WAIT_START), 0, NULL);

        /* 4. someone wants it loaded */
        if (running && !loaded && has_waiters(m, WANTS_LOADED) && !r->shutting_down) {
            if (m->mem != LC_MEM_UNLOADED && m->mem != LC_MEM_ERROR) break;
            if (!claim_slot(m)) break;
            start_load(m);
            break;
        }

        /* 5. ready: hand it to whoever waits */
        if (running && loaded && has_waiters(m, WANTS_LOADED)) {
            finish_waiters(m, WANTS_LOADED, 0, NULL);
            continue;
        }
        break;
    }
    check_shutdown_done(r);
}

static void drive_group(lc_registry *r, const char *group_name) {
    for (int i = 0; i < r->n_models; i++) {
        lc_model *o = r->models[i];
        if (o->group && strcmp(o->group, group_name) == 0 && o->waiters) drive(o);
    }
}

/* ==== Registry ==== */

lc_registry *lc_registry_new(const lc_clock *clock) {
    lc_registry *r = mh_xcalloc(1, sizeof *r);
    if (clock)
        r->clock = *clock;
    else
        r->clock = (lc_clock){real_mono, real_wall, NULL};
    r->host = mh_xstrdup("127.0.0.1");
    r->started_wall = now_wall(r);
    r->max_crashes = 3;
    r->crash_window_s = 60;
    r->backoff_s = 1;
    return r;
}

static void model_free(lc_model *m) {
    while (m->waiters) {
        lc_waiter *w = m->waiters;
        waiter_unlink(w);
        free(w);
    }
    free(m->op); /* the owner quiesced its backends: no completion can arrive any more */
    free(m->name);
    for (char **a = m->aliases; a && *a; a++) free(*a);
    free(m->aliases);
    free(m->model_path);
    free(m->group);
    free(m->error);
    free(m);
}

void lc_registry_free(lc_registry *r) {
    if (!r) return;
    for (int i = 0; i < r->n_models; i++) model_free(r->models[i]);
    free(r->models);
    for (int i = 0; i < r->n_groups; i++) free(r->groups[i].name);
    free(r->groups);
    lc_clear_warnings(r);
    free(r->host);
    free(r);
}

void lc_registry_set_info(lc_registry *r, const char *host, int port) {
    free(r->host);
    r->host = mh_xstrdup(host ? host : "");
    r->port = port;
}

void lc_registry_set_crash_policy(lc_registry *r, int max_crashes, double window_s,
                                  double backoff_s) {
    r->max_crashes = max_crashes;
    r->crash_window_s = window_s;
    r->backoff_s = backoff_s;
}

void lc_group_set(lc_registry *r, const char *name, int max_loaded) {
    group *g = find_group(r, name);
    if (!g) {
        r->groups = mh_xrealloc(r->groups, (size_t)(r->n_groups + 1) * sizeof *r->groups);
        g = &r->groups[r->n_groups++];
        g->name = mh_xstrdup(name);
    }
    g->max_loaded = max_loaded;
}

void lc_group_remove(lc_registry *r, const char *name) {
    group *g = find_group(r, name);
    if (!g) return;
    free(g->name);
    *g = r->groups[--r->n_groups];
}

static char *dup_or_null(const char *s) {
    return s && *s ? mh_xstrdup(s) : NULL;
}

static void apply_config(lc_model *m, const lc_model_config *cfg) {
    for (char **a = m->aliases; a && *a; a++) free(*a);
    free(m->aliases);
    int n = 0;
    while (cfg->aliases && cfg->aliases[n]) n++;
    m->aliases = mh_xcalloc((size_t)n + 1, sizeof *m->aliases);
    for (int i = 0; i < n; i++) m->aliases[i] = mh_xstrdup(cfg->aliases[i]);
    free(m->model_path);
    m->model_path = dup_or_null(cfg->model_path);
    free(m->group);
    m->group = dup_or_null(cfg->group);
    m->is_default = cfg->is_default;
    m->idle_unload_s = cfg->idle_unload_s > 0 ? cfg->idle_unload_s : 0;
}

lc_model *lc_model_add(lc_registry *r, const lc_model_config *cfg, const lc_backend_ops *ops,
                       void *impl) {
    if (!cfg->name || lc_find(r, cfg->name, 0)) return NULL;
    lc_model *m = mh_xcalloc(1, sizeof *m);
    m->r = r;
    m->name = mh_xstrdup(cfg->name);
    apply_config(m, cfg);
    m->ops = ops;
    m->impl = impl;
    m->proc = ops->owns_process ? LC_PROC_STOPPED : LC_PROC_RUNNING;
    if (!ops->owns_process) m->started_at = now_wall(r);
    m->mem = LC_MEM_UNLOADED;
    if (r->n_models == r->cap_models) {
        r->cap_models = r->cap_models ? r->cap_models * 2 : 8;
        r->models = mh_xrealloc(r->models, (size_t)r->cap_models * sizeof *r->models);
    }
    r->models[r->n_models++] = m;
    emit(m, "added");
    return m;
}

int lc_model_remove(lc_model *m) {
    lc_registry *r = m->r;
    int stopped = !m->ops->owns_process || m->proc == LC_PROC_STOPPED || m->proc == LC_PROC_FAILED;
    if (m->op || m->in_flight > 0 || !stopped ||
        (m->mem != LC_MEM_UNLOADED && m->mem != LC_MEM_ERROR))
        return LC_ERR_CONFLICT;
    finish_waiters(m, ~0u, LC_ERR_REMOVED, NULL);
    emit(m, "removed");
    for (int i = 0; i < r->n_models; i++)
        if (r->models[i] == m) {
            memmove(&r->models[i], &r->models[i + 1],
                    (size_t)(r->n_models - i - 1) * sizeof *r->models);
            r->n_models--;
            break;
        }
    model_free(m);
    return 0;
}

void lc_model_update(lc_model *m, const lc_model_config *cfg) {
    apply_config(m, cfg);
    emit(m, "config");
    drive(m);
}

int lc_model_set_backend(lc_model *m, const lc_backend_ops *ops, void *impl) {
    int stopped = !m->ops->owns_process || m->proc == LC_PROC_STOPPED || m->proc == LC_PROC_FAILED;
    if (m->op || m->in_flight > 0 || !stopped ||
        (m->mem != LC_MEM_UNLOADED && m->mem != LC_MEM_ERROR))
        return LC_ERR_CONFLICT;
    m->ops = ops;
    m->impl = impl;
    m->proc = ops->owns_process ? LC_PROC_STOPPED : LC_PROC_RUNNING;
    m->mem = LC_MEM_UNLOADED;
    m->quarantined = 0;
    m->n_crash_times = 0;
    m->restart_not_before = 0;
    emit(m, "config");
    return 0;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

lc_model *lc_find(const lc_registry *r, const char *name, int by_file) {
    if (!name) return NULL;
    for (int i = 0; i < r->n_models; i++) {
        lc_model *m = r->models[i];
        if (strcmp(m->name, name) == 0) return m;
        for (char **a = m->aliases; a && *a; a++)
            if (strcmp(*a, name) == 0) return m;
    }
    if (by_file)
        for (int i = 0; i < r->n_models; i++) {
            lc_model *m = r->models[i];
            if (m->model_path &&
                (strcmp(m->model_path, name) == 0 || strcmp(base_name(m->model_path), name) == 0))
                return m;
        }
    return NULL;
}

int lc_count(const lc_registry *r) {
    return r->n_models;
}
lc_model *lc_at(const lc_registry *r, int i) {
    return i >= 0 && i < r->n_models ? r->models[i] : NULL;
}

int lc_subscribe(lc_registry *r, lc_event_fn fn, void *arg) {
    if (r->n_observers == MAX_OBSERVERS) return -1;
    int id = ++r->next_observer_id;
    r->observers[r->n_observers++] = (observer){id, fn, arg};
    return id;
}

void lc_unsubscribe(lc_registry *r, int id) {
    for (int i = 0; i < r->n_observers; i++)
        if (r->observers[i].id == id) {
            r->observers[i] = r->observers[--r->n_observers];
            return;
        }
}

/* ==== Cron ==== */

void lc_cron(lc_registry *r) {
    double now = now_mono(r);
    for (int i = 0; i < r->n_models; i++) {
        lc_model *m = r->models[i];
        /* waiter deadlines */
        lc_waiter *last = m->waiters_tail;
        for (lc_waiter *w = m->waiters; w;) {
            lc_waiter *next = w->next;
            int is_last = w == last;
            if (w->deadline > 0 && now >= w->deadline) waiter_finish(w, LC_ERR_TIMEOUT, NULL);
            if (is_last) break;
            w = next;
        }
        /* idle unload */
        if (m->mem == LC_MEM_LOADED && m->in_flight == 0 && m->idle_unload_s > 0 && !m->op &&
            !m->unload_requested && now >= m->last_activity_mono + m->idle_unload_s) {
            m->unload_requested = 1;
            m->unload_reason = LC_REASON_IDLE;
        }
        /* restart backoff over, waiters pending, a group slot freed: try again */
        drive(m);
    }
}

/* ==== Requests ==== */

int lc_acquire(lc_model *m, double timeout_s, lc_done_fn cb, void *arg, lc_waiter **handle) {
    if (handle) *handle = NULL;
    if (m->r->shutting_down) return LC_ERR_SHUTDOWN;
    int running = !m->ops->owns_process || m->proc == LC_PROC_RUNNING;
    if (running && m->mem == LC_MEM_LOADED && !m->op && !m->unload_requested &&
        !m->stop_requested) {
        m->in_flight++;
        m->requests_total++;
        emit(m, "activity");
        return LC_READY;
    }
    if (m->quarantined) return LC_ERR_QUARANTINED;
    lc_waiter *w = waiter_add(m, WAIT_ACQUIRE, timeout_s, cb, arg);
    if (handle) *handle = w;
    emit(m, "queued");
    drive(m);
    return LC_PENDING;
}

void lc_acquire_cancel(lc_waiter *w) {
    if (!w) return;
    lc_model *m = w->m;
    waiter_unlink(w);
    free(w);
    emit(m, "queued");
}

void lc_release(lc_model *m, uint64_t tokens) {
    MH_ASSERT(m->in_flight > 0);
    m->in_flight--;
    m->tokens_generated += tokens;
    m->last_activity_wall = now_wall(m->r);
    m->last_activity_mono = now_mono(m->r);
    emit(m, "activity");
    /* a member that became idle may be what a waiting loader in its group needs */
    if (m->in_flight == 0 && m->group) drive_group(m->r, m->group);
}

/* ==== Manual control ==== */

int lc_start(lc_model *m, lc_done_fn cb, void *arg) {
    if (m->r->shutting_down) return LC_ERR_SHUTDOWN;
    m->quarantined = 0;
    m->restart_not_before = 0;
    m->n_crash_times = 0;
    if (m->ops->load_is_start) return lc_load(m, cb, arg);
    if (!m->ops->owns_process || (m->proc == LC_PROC_RUNNING && !m->stop_requested))
        return LC_READY;
    waiter_add(m, WAIT_START, 0, cb, arg);
    drive(m);
    return LC_PENDING;
}

int lc_stop(lc_model *m, lc_reason reason, lc_done_fn cb, void *arg) {
    if (!m->ops->owns_process) return LC_ERR_UNSUPPORTED;
    int active = m->proc == LC_PROC_RUNNING || m->proc == LC_PROC_STARTING ||
                 m->proc == LC_PROC_STOPPING || m->mem == LC_MEM_LOADED || m->mem == LC_MEM_LOADING;
    if (!active && !m->op) {
        if (m->proc == LC_PROC_FAILED) {
            set_proc(m, LC_PROC_STOPPED);
            m->quarantined = 0;
        }
        finish_waiters(m, WANTS_RUNNING, LC_ERR_FAILED, "the model was stopped");
        return LC_READY;
    }
    /* requests waiting for this model are told it was stopped rather than restarting it */
    finish_waiters(m, WANTS_RUNNING, LC_ERR_FAILED, "the model was stopped");
    m->stop_requested = 1;
    m->stop_reason = reason;
    waiter_add(m, WAIT_STOP, 0, cb, arg);
    drive(m);
    return LC_PENDING;
}

int lc_load(lc_model *m, lc_done_fn cb, void *arg) {
    if (m->r->shutting_down) return LC_ERR_SHUTDOWN;
    int running = !m->ops->owns_process || m->proc == LC_PROC_RUNNING;
    if (running && m->mem == LC_MEM_LOADED && !m->unload_requested && !m->op) return LC_READY;
    if (m->quarantined) return LC_ERR_QUARANTINED;
    if (!occupies_slot(m)) { /* refuse at once when the group is full of busy members */
        int status;
        json_t *plan = lc_load_dry_run(m, &status);
        if (!plan) return status;
        json_decref(plan);
    }
    waiter_add(m, WAIT_LOAD, 0, cb, arg);
    drive(m);
    return LC_PENDING;
}

json_t *lc_load_dry_run(lc_model *m, int *status) {
    *status = 0;
    json_t *evict = json_array();
    group *g = find_group(m->r, m->group);
    if (!g || g->max_loaded <= 0 || occupies_slot(m)) return evict;
    int occupied = group_occupied(m->r, g->name);
    if (occupied < g->max_loaded) return evict;
    lc_model *victim = group_victim(m);
    if (!victim) {
        /* a member already on its way out frees a slot too */
        for (int i = 0; i < m->r->n_models; i++) {
            lc_model *o = m->r->models[i];
            if (o != m && o->group && strcmp(o->group, g->name) == 0 && o->mem == LC_MEM_UNLOADING)
                return evict;
        }
        json_decref(evict);
        *status = LC_ERR_BUSY;
        return NULL;
    }
    json_array_append_new(evict, json_string(victim->name));
    return evict;
}

int lc_unload(lc_model *m, lc_reason reason, lc_done_fn cb, void *arg) {
    if (m->mem == LC_MEM_UNLOADED || m->mem == LC_MEM_ERROR) {
        if (m->mem == LC_MEM_ERROR) set_mem(m, LC_MEM_UNLOADED, LC_REASON_NONE);
        return LC_READY;
    }
    if (m->in_flight > 0) return LC_ERR_CONFLICT;
    if (m->mem == LC_MEM_LOADING)
        finish_waiters(m, WANTS_LOADED, LC_ERR_FAILED, "the model was unloaded while loading");
    m->unload_requested = 1;
    m->unload_reason = reason;
    waiter_add(m, WAIT_UNLOAD, 0, cb, arg);
    drive(m);
    return LC_PENDING;
}

int lc_shutdown(lc_registry *r, lc_done_fn done, void *arg) {
    r->shutting_down = 1;
    r->shutdown_cb = done;
    r->shutdown_arg = arg;
    for (int i = 0; i < r->n_models; i++) {
        lc_model *m = r->models[i];
        finish_waiters(m, WANTS_RUNNING, LC_ERR_SHUTDOWN, NULL);
        if (m->ops->owns_process) {
            if (m->proc == LC_PROC_RUNNING || m->proc == LC_PROC_STARTING || m->op) {
                m->stop_requested = 1;
                m->stop_reason = LC_REASON_SHUTDOWN;
            }
        } else if (m->mem == LC_MEM_LOADED || m->mem == LC_MEM_LOADING) {
            m->unload_requested = 1;
            m->unload_reason = LC_REASON_SHUTDOWN; /* even when busy: requests are cut off */
        }
    }
    for (int i = 0; i < r->n_models; i++) drive(r->models[i]);
    for (int i = 0; i < r->n_models; i++) {
        lc_model *m = r->models[i];
        if (m->op || m->mem == LC_MEM_LOADED ||
            (m->ops->owns_process && m->proc == LC_PROC_RUNNING))
            return LC_PENDING;
    }
    r->shutdown_cb = NULL;
    return LC_READY;
}

/* ==== Backend notifications ==== */

void lc_notify_exit(lc_model *m, int exit_code) {
    lc_notify_failed(m, exit_code, "crash", NULL);
}

void lc_notify_failed(lc_model *m, int exit_code, const char *reason, const char *message) {
    lc_registry *r = m->r;
    double now = now_mono(r);
    int counted_start_failure = exit_code == INT32_MIN;
    if (!counted_start_failure) {
        m->exit_code = exit_code;
        m->has_exit_code = 1;
        m->op_gen++;             /* completions of operations in progress are now stale */
        if (m->op) m->op = NULL; /* its context is freed when its completion arrives */
        char msg[96];
        if (exit_code < 0)
            snprintf(msg, sizeof msg, "the process was killed by signal %d", -exit_code);
        else
            snprintf(msg, sizeof msg, "the process exited with status %d", exit_code);
        set_error(m, message ? message : msg);
        m->failure_reason = reason;
        if (m->mem != LC_MEM_UNLOADED) set_mem(m, LC_MEM_UNLOADED, LC_REASON_CRASH);
        set_proc(m, LC_PROC_FAILED);
        m->stop_requested = 0;
        m->unload_requested = 0;
        m->awaiting_slot = 0;
        finish_waiters(m, K(WAIT_STOP) | K(WAIT_UNLOAD), 0, NULL);
    }
    if (r->shutting_down) {
        check_shutdown_done(r);
        return;
    }
    /* crash accounting: quarantine after max_crashes within the window */
    m->crash_times[m->n_crash_times % MAX_CRASH_HISTORY] = now;
    m->n_crash_times++;
    int recent = 0;
    int stored = MH_MIN(m->n_crash_times, MAX_CRASH_HISTORY);
    for (int i = 0; i < stored; i++)
        if (now - m->crash_times[i] <= r->crash_window_s) recent++;
    if (recent >= r->max_crashes) {
        m->quarantined = 1;
        finish_waiters(m, K(WAIT_ACQUIRE) | K(WAIT_LOAD), LC_ERR_QUARANTINED, NULL);
        emit(m, "quarantined");
    } else {
        double backoff = r->backoff_s * pow(2.0, recent - 1);
        m->restart_not_before = now + MH_MIN(backoff, BACKOFF_CAP_S);
    }
    m->restart_pending = 1;
    if (!counted_start_failure) {
        drive(m);
        if (m->group) drive_group(r, m->group);
    }
}

void lc_note_exit_code(lc_model *m, int exit_code) {
    m->exit_code = exit_code;
    m->has_exit_code = 1;
}

void lc_notify_unloaded(lc_model *m, lc_reason reason) {
    if (m->mem == LC_MEM_UNLOADED) return;
    set_mem(m, LC_MEM_UNLOADED, reason);
    drive(m);
    if (m->group) drive_group(m->r, m->group);
}

/* ==== Reading ==== */

const char *lc_model_name(const lc_model *m) {
    return m->name;
}
lc_proc_state lc_model_proc(const lc_model *m) {
    return m->proc;
}
lc_mem_state lc_model_mem(const lc_model *m) {
    return m->mem;
}
int lc_model_in_flight(const lc_model *m) {
    return m->in_flight;
}
void *lc_model_impl(const lc_model *m) {
    return m->impl;
}
const lc_backend_ops *lc_model_ops(const lc_model *m) {
    return m->ops;
}

double lc_model_unload_at(const lc_model *m) {
    if (m->mem != LC_MEM_LOADED || m->in_flight > 0 || m->idle_unload_s <= 0) return 0;
    return m->last_activity_wall + m->idle_unload_s;
}

static json_t *time_or_null(double t) {
    return t > 0 ? json_real(round(t * 1000.0) / 1000.0) : json_null();
}

static json_t *str_or_null(const char *s) {
    return s ? json_string(s) : json_null();
}

static int count_waiters(const lc_model *m, unsigned kinds) {
    int n = 0;
    for (const lc_waiter *w = m->waiters; w; w = w->next) n += (kinds & (1u << w->kind)) != 0;
    return n;
}

json_t *lc_model_entry(const lc_model *m) {
    lc_probe probe = {0};
    if (m->ops->probe) m->ops->probe(m->impl, &probe);
    json_t *aliases = json_array();
    for (char **a = m->aliases; a && *a; a++) json_array_append_new(aliases, json_string(*a));
    json_t *e = json_object();
    json_object_set_new(e, "name", json_string(m->name));
    json_object_set_new(e, "aliases", aliases);
    json_object_set_new(e, "model_path", str_or_null(m->model_path));
    json_object_set_new(e, "backend", json_string(m->ops->kind));
    json_object_set_new(e, "group", str_or_null(m->group));
    json_object_set_new(e, "default", json_boolean(m->is_default));
    json_object_set_new(e, "process_state", json_string(lc_proc_state_name(m->proc)));
    json_object_set_new(e, "pid", probe.pid > 0 ? json_integer(probe.pid) : json_null());
    json_object_set_new(e, "port", probe.port > 0 ? json_integer(probe.port) : json_null());
    json_object_set_new(e, "started_at", time_or_null(m->started_at));
    json_object_set_new(e, "exit_code",
                        m->has_exit_code ? json_integer(m->exit_code) : json_null());
    json_object_set_new(e, "failure_reason",
                        m->proc == LC_PROC_FAILED ? str_or_null(m->failure_reason) : json_null());
    json_object_set_new(e, "restarts", json_integer(m->restarts));
    json_object_set_new(e, "quarantined", json_boolean(m->quarantined));
    json_object_set_new(e, "memory_state", json_string(lc_mem_state_name(m->mem)));
    json_object_set_new(e, "loaded_at", time_or_null(m->loaded_at));
    json_object_set_new(e, "last_activity_ts", time_or_null(m->last_activity_wall));
    json_object_set_new(e, "in_flight", json_integer(m->in_flight));
    json_object_set_new(e, "queued",
                        json_integer(count_waiters(m, K(WAIT_ACQUIRE)) + probe.queued));
    json_object_set_new(e, "idle_unload_s",
                        m->idle_unload_s > 0 ? json_real(m->idle_unload_s) : json_null());
    json_object_set_new(e, "unload_at", time_or_null(lc_model_unload_at(m)));
    json_object_set_new(e, "last_unload_reason",
                        m->last_unload_reason ? json_string(lc_reason_name(m->last_unload_reason))
                                              : json_null());
    json_object_set_new(e, "memory_bytes", json_integer((json_int_t)probe.memory_bytes));
    json_object_set_new(e, "requests_total", json_integer((json_int_t)m->requests_total));
    json_object_set_new(e, "tokens_generated", json_integer((json_int_t)m->tokens_generated));
    json_object_set_new(e, "error", str_or_null(m->error));
    return e;
}

json_t *lc_snapshot(const lc_registry *r) {
    int running = 0, loaded = 0, failed = 0;
    json_t *models = json_array();
    for (int i = 0; i < r->n_models; i++) {
        const lc_model *m = r->models[i];
        running += m->proc == LC_PROC_RUNNING;
        loaded += m->mem == LC_MEM_LOADED;
        failed += m->proc == LC_PROC_FAILED || m->mem == LC_MEM_ERROR;
        json_array_append_new(models, lc_model_entry(m));
    }
    json_t *groups = json_array();
    for (int i = 0; i < r->n_groups; i++) {
        const group *g = &r->groups[i];
        json_t *members = json_array();
        int n_loaded = 0;
        for (int j = 0; j < r->n_models; j++) {
            const lc_model *m = r->models[j];
            if (!m->group || strcmp(m->group, g->name) != 0) continue;
            json_array_append_new(members, json_string(m->name));
            n_loaded += m->mem == LC_MEM_LOADED;
        }
        json_t *gj = json_object();
        json_object_set_new(gj, "name", json_string(g->name));
        json_object_set_new(gj, "max_loaded",
                            g->max_loaded > 0 ? json_integer(g->max_loaded) : json_null());
        json_object_set_new(gj, "loaded", json_integer(n_loaded));
        json_object_set_new(gj, "members", members);
        json_array_append_new(groups, gj);
    }
    json_t *warnings = json_array();
    for (int i = 0; i < r->n_warnings; i++)
        json_array_append_new(warnings, json_string(r->warnings[i]));
    json_t *counts = json_object();
    json_object_set_new(counts, "registered", json_integer(r->n_models));
    json_object_set_new(counts, "running", json_integer(running));
    json_object_set_new(counts, "loaded", json_integer(loaded));
    json_object_set_new(counts, "failed", json_integer(failed));
    double now = now_wall(r);
    json_t *s = json_object();
    json_object_set_new(s, "status", json_string(r->shutting_down ? "shutting_down" : "ok"));
    json_object_set_new(s, "timestamp", json_real(round(now * 1000.0) / 1000.0));
    json_object_set_new(s, "host", json_string(r->host));
    json_object_set_new(s, "port", json_integer(r->port));
    json_object_set_new(s, "uptime_s", json_real(round((now - r->started_wall) * 10.0) / 10.0));
    json_object_set_new(s, "counts", counts);
    json_object_set_new(s, "models", models);
    json_object_set_new(s, "groups", groups);
    json_object_set_new(s, "warnings", warnings);
    return s;
}

void lc_add_warning(lc_registry *r, const char *text) {
    r->warnings = mh_xrealloc(r->warnings, (size_t)(r->n_warnings + 1) * sizeof *r->warnings);
    r->warnings[r->n_warnings++] = mh_xstrdup(text);
}

void lc_clear_warnings(lc_registry *r) {
    for (int i = 0; i < r->n_warnings; i++) free(r->warnings[i]);
    free(r->warnings);
    r->warnings = NULL;
    r->n_warnings = 0;
}
