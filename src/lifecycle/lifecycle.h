/* lifecycle.h — THE model lifecycle, shared by `serve` (one local model) and `hub` (many workers).
 *
 * One state machine per model on two axes:
 *   process: stopped -> starting -> running -> stopping -> stopped; failed (exit code kept)
 *   memory:  unloaded -> loading -> loaded -> unloading -> unloaded; error (message kept)
 * Every change goes through one function that stamps timestamps, bumps counters and emits an
 * event. Callers ask for an outcome ("acquire": running, loaded and counted in flight) and wait
 * for it; they never read a state and then act on it.
 *
 * The owner of the traffic owns the clock: whoever calls lc_acquire/lc_release for every request
 * (the standalone server, or the hub for all its workers) runs lc_cron() at a fixed rate, which
 * fires idle unloads, waiter deadlines and restart backoff.
 *
 * Threading: everything here runs on one thread (the owner's event loop). Backends that work on
 * other threads must deliver their completions on that thread. This module does no I/O and
 * reads time only through the registry's clock, so tests drive it with a fake backend and clock.
 *
 * Callback contract (libuv's): a call that takes a callback returns LC_READY when the outcome
 * already holds (the callback never runs), LC_PENDING when the callback will run exactly once
 * later, or a negative LC_ERR_* (the callback never runs).
 */
#ifndef MH_LIFECYCLE_H
#define MH_LIFECYCLE_H

#include <jansson.h>
#include <stdint.h>

enum lc_status {
    LC_READY = 0,
    LC_PENDING = 1,
    LC_ERR_TIMEOUT = -1,     /* waited past the deadline (HTTP 503 + Retry-After) */
    LC_ERR_BUSY = -2,        /* group full and every member busy, for an explicit load (429) */
    LC_ERR_FAILED = -3,      /* start or load failed; message says why (503) */
    LC_ERR_QUARANTINED = -4, /* crashed too often; needs a manual start (503) */
    LC_ERR_CONFLICT = -5,    /* e.g. unload while requests are in flight (409) */
    LC_ERR_SHUTDOWN = -6,    /* the owner is shutting down (503) */
    LC_ERR_REMOVED = -7,     /* the model was removed by a reload (404) */
    LC_ERR_UNSUPPORTED = -8, /* the backend cannot do that (e.g. stop an upstream) (400) */
};

typedef enum lc_proc_state {
    LC_PROC_STOPPED,
    LC_PROC_STARTING,
    LC_PROC_RUNNING,
    LC_PROC_STOPPING,
    LC_PROC_FAILED,
} lc_proc_state;

typedef enum lc_mem_state {
    LC_MEM_UNLOADED,
    LC_MEM_LOADING,
    LC_MEM_LOADED,
    LC_MEM_UNLOADING,
    LC_MEM_ERROR,
} lc_mem_state;

typedef enum lc_reason {
    LC_REASON_NONE,
    LC_REASON_IDLE,
    LC_REASON_CAPACITY,
    LC_REASON_MANUAL,
    LC_REASON_CRASH,
    LC_REASON_RELOAD,
    LC_REASON_SHUTDOWN,
} lc_reason;

const char *lc_proc_state_name(lc_proc_state s);
const char *lc_mem_state_name(lc_mem_state s);
const char *lc_reason_name(lc_reason r);
/* HTTP status for an LC_ERR_* code. */
int lc_status_http(int status);

/* status is 0 on success or an LC_ERR_* code; message (may be NULL) explains a failure and is
 * only valid during the call. */
typedef void (*lc_done_fn)(void *arg, int status, const char *message);

/* What a backend reports about itself right now (cheap, synchronous). */
typedef struct lc_probe {
    int pid;               /* 0 when none */
    int port;              /* 0 when none */
    uint64_t memory_bytes; /* resident footprint of the model, 0 when unknown or unloaded */
    int queued;            /* requests waiting inside the backend (e.g. for a slot) */
} lc_probe;

/* The operations a model's backend offers. Each async op returns 0 and later calls done exactly
 * once (on the owner's thread), or returns <0 and never calls it. */
typedef struct lc_backend_ops {
    const char *kind;  /* "local" | "worker" | "external" | "upstream" */
    int owns_process;  /* 0: start/stop are not ours (local, upstream): always running */
    int load_is_start; /* 1: loading means starting the process (external commands) */
    int (*start)(void *impl, lc_done_fn done, void *arg);
    int (*stop)(void *impl, lc_done_fn done, void *arg);
    int (*load)(void *impl, lc_done_fn done, void *arg);
    int (*unload)(void *impl, lc_done_fn done, void *arg);
    void (*probe)(void *impl, lc_probe *out);
} lc_backend_ops;

/* Per-model settings the lifecycle needs (the rest of a model's config stays with its owner). */
typedef struct lc_model_config {
    const char *name;           /* copied */
    const char *const *aliases; /* NULL-terminated, copied; may be NULL */
    const char *model_path;     /* copied; shown in the snapshot */
    const char *group;          /* copied; NULL or "" = none */
    int is_default;             /* started with the owner */
    double idle_unload_s;       /* 0 = never */
} lc_model_config;

typedef struct lc_registry lc_registry;
typedef struct lc_model lc_model;
typedef struct lc_waiter lc_waiter;

/* ==== Registry ==== */

typedef struct lc_clock {
    double (*mono)(void *arg); /* seconds, monotonic: deadlines and idle timing */
    double (*wall)(void *arg); /* seconds since the epoch: what the snapshot shows */
    void *arg;
} lc_clock;

/* clock may be NULL for the real clocks. */
lc_registry *lc_registry_new(const lc_clock *clock);
/* Frees every model without calling backends; use lc_shutdown first for an orderly stop. The
 * owner must have freed (quiesced) its backends first: no completion may arrive afterwards. */
void lc_registry_free(lc_registry *r);
/* What the snapshot shows at its top. */
void lc_registry_set_info(lc_registry *r, const char *host, int port);
/* Crash policy: after `max_crashes` unexpected exits within `window_s`, quarantine. Restarts
 * after a crash wait backoff_s * 2^(crashes-1) (capped at 30 s). Defaults 3, 60 s, 1 s. */
void lc_registry_set_crash_policy(lc_registry *r, int max_crashes, double window_s,
                                  double backoff_s);

/* Declare (or update the cap of) a group. */
void lc_group_set(lc_registry *r, const char *name, int max_loaded);
void lc_group_remove(lc_registry *r, const char *name);

/* Add a model with its backend (the registry does not own `impl`). NULL if the name is taken. */
lc_model *lc_model_add(lc_registry *r, const lc_model_config *cfg, const lc_backend_ops *ops,
                       void *impl);
/* Remove a stopped model (process stopped or failed, memory unloaded): its waiters fail with
 * LC_ERR_REMOVED. Returns LC_ERR_CONFLICT when it is still running or has requests in flight. */
int lc_model_remove(lc_model *m);
/* Replace the lifecycle settings of a model (reload of an unchanged backend). */
void lc_model_update(lc_model *m, const lc_model_config *cfg);
/* Give a stopped, unloaded model a new backend (a reload that changed how it runs). Returns 0,
 * or LC_ERR_CONFLICT when it is running, loaded, busy or has an operation in progress. */
int lc_model_set_backend(lc_model *m, const lc_backend_ops *ops, void *impl);

/* Lookup by name or alias (also a model_path's base name, when `by_file` is set). */
lc_model *lc_find(const lc_registry *r, const char *name_or_alias, int by_file);
int lc_count(const lc_registry *r);
lc_model *lc_at(const lc_registry *r, int i);

/* Run periodic chores: waiter deadlines, idle unloads, restart backoff, drains. Call it at a
 * fixed rate (10 Hz is plenty) from the owner's loop. */
void lc_cron(lc_registry *r);

/* Observers: called after every state change of a model (and when one is added or removed,
 * with what = "added" / "removed"). The callback must not add or remove observers. */
typedef void (*lc_event_fn)(void *arg, const lc_model *m, const char *what);
int lc_subscribe(lc_registry *r, lc_event_fn fn, void *arg);
void lc_unsubscribe(lc_registry *r, int id);

/* Stop every model (unloading first, reason shutdown); waiters fail with LC_ERR_SHUTDOWN and new
 * requests are refused. done runs once when everything is stopped (LC_PENDING) — or the call
 * returns LC_READY when nothing was running. done runs from inside lifecycle calls: it must not
 * free the registry itself (defer that, e.g. leave the event loop). */
int lc_shutdown(lc_registry *r, lc_done_fn done, void *arg);

/* ==== Requests ==== */

/* Make `m` running and loaded (starting and loading it as needed, evicting the least recently
 * used idle member of a full group) and count one request in flight. Concurrent callers share
 * one start and one load. Waits at most timeout_s (<= 0: no limit). On success the caller must
 * call lc_release once its response has ended. *handle (may be NULL) lets a caller whose client
 * went away cancel the wait with lc_acquire_cancel. */
int lc_acquire(lc_model *m, double timeout_s, lc_done_fn cb, void *arg, lc_waiter **handle);
/* Stop waiting; the callback will not run. Only valid before the callback ran. */
void lc_acquire_cancel(lc_waiter *w);
/* A request acquired earlier has finished sending its response: the activity clock restarts.
 * tokens = tokens it generated (for the counters). */
void lc_release(lc_model *m, uint64_t tokens);

/* ==== Manual control ==== */

/* Start the process (clears quarantine and failure). */
int lc_start(lc_model *m, lc_done_fn cb, void *arg);
/* Stop the process (unloading first when loaded). Requests in flight are cut off. */
int lc_stop(lc_model *m, lc_reason reason, lc_done_fn cb, void *arg);
/* Load explicitly: starts the process when needed; a full group evicts its least recently used
 * idle member, and answers LC_ERR_BUSY at once when every member is busy. */
int lc_load(lc_model *m, lc_done_fn cb, void *arg);
/* Which members a load would evict right now (a JSON array of names, new reference), or NULL
 * with *status = LC_ERR_BUSY when it would be refused. */
json_t *lc_load_dry_run(lc_model *m, int *status);
/* Unload; LC_ERR_CONFLICT when requests are in flight (never unloads a busy model). */
int lc_unload(lc_model *m, lc_reason reason, lc_done_fn cb, void *arg);

/* ==== Backend notifications ==== */

/* The process exited without being asked to (crash): process -> failed with the code, memory ->
 * unloaded with reason crash. exit_code >= 0 is an exit status, < 0 is -signal. */
void lc_notify_exit(lc_model *m, int exit_code);
/* The same with the reason shown as the snapshot's failure_reason ("crash" for lc_notify_exit,
 * "unresponsive" for a process killed because it stopped answering its health probe; a static
 * string) and the error message (NULL: one made from the exit code). */
void lc_notify_failed(lc_model *m, int exit_code, const char *reason, const char *message);
/* The process of a start that is failing exited with this code (kept in the snapshot). */
void lc_note_exit_code(lc_model *m, int exit_code);
/* The backend unloaded on its own (e.g. a worker's own idle timer). */
void lc_notify_unloaded(lc_model *m, lc_reason reason);

/* ==== Reading ==== */

const char *lc_model_name(const lc_model *m);
lc_proc_state lc_model_proc(const lc_model *m);
lc_mem_state lc_model_mem(const lc_model *m);
int lc_model_in_flight(const lc_model *m);
void *lc_model_impl(const lc_model *m);
const lc_backend_ops *lc_model_ops(const lc_model *m);
/* Wall-clock unload time, or 0 when none is scheduled (not loaded, busy, or no timeout). */
double lc_model_unload_at(const lc_model *m);

/* The snapshot entry of one model (new reference), as /hub/status, /v1/models metadata,
 * /control/status and the dashboard all show it. */
json_t *lc_model_entry(const lc_model *m);
/* The whole snapshot: status, timestamp, host, port, uptime_s, counts, models, groups, warnings. */
json_t *lc_snapshot(const lc_registry *r);
/* Add a warning line to the snapshot (copied; the list is replaced by lc_clear_warnings). */
void lc_add_warning(lc_registry *r, const char *text);
void lc_clear_warnings(lc_registry *r);

#endif
