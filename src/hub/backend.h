/* backend.h — the hub's model backends behind the lifecycle's backend interface.
 *
 *   worker   — a child `modelhub serve --worker --jit` on 127.0.0.1, health-polled until ready,
 *              loaded and unloaded through its /control routes with a per-start random token.
 *   external — any OpenAI-compatible server command (`cmd:`), run through `modelhub hub
 *              exec-guard`; loading it means starting it and unloading means stopping it.
 *   upstream — a remote server: nothing to start; "loading" checks that it answers.
 *
 * Each backend also keeps the last lines of its process output (across restarts) for the logs
 * route, and hands every new line to the hub for live followers.
 *
 * Threads: loop thread only.
 */
#ifndef MH_HUB_BACKEND_H
#define MH_HUB_BACKEND_H

#include "http/http_client.h"
#include "hub/config.h"
#include "lifecycle/lifecycle.h"

struct event_base;

typedef struct hub_backend hub_backend;

/* What every backend shares with the hub. Owned by the hub; must outlive the backends. */
typedef struct hub_backend_env {
    struct event_base *base;
    const char *self_exe; /* this binary, to run `serve` and `hub exec-guard` */
    const char *log_dir;  /* worker logs go to log_dir/NAME.log; NULL = not written */
    long long log_max_bytes;
    double start_timeout; /* seconds until healthy */
    double stop_grace;    /* seconds between SIGTERM and SIGKILL */
    /* a free port for a worker that has none configured; 0 when none can be found */
    int (*alloc_port)(void *arg, const hub_backend *b);
    /* one new output line of a backend's process */
    void (*on_line)(void *arg, hub_backend *b, const char *line, size_t len);
    void *arg;
} hub_backend_env;

/* A backend for `cfg` (copied). */
hub_backend *hub_backend_new(const hub_backend_env *env, const hub_model_config *cfg);
/* Stop a running process at once (SIGKILL to its group, reaped) and free everything. Pending
 * lifecycle callbacks are dropped: call it only once the lifecycle no longer waits on it (the
 * model was stopped), or right before freeing the registry. */
void hub_backend_free(hub_backend *b);

const lc_backend_ops *hub_backend_ops(const hub_backend *b);
void hub_backend_set_model(hub_backend *b, lc_model *m);
const hub_model_config *hub_backend_config(const hub_backend *b);
/* Replace the settings that need no restart (aliases, group, idle, ...). */
void hub_backend_update_config(hub_backend *b, const hub_model_config *cfg);

/* Where requests go: a client to the running server (NULL when there is none) and the path
 * prefix of an upstream URL ("" otherwise). */
http_client *hub_backend_client(hub_backend *b);
const char *hub_backend_path_prefix(const hub_backend *b);
int hub_backend_port(const hub_backend *b); /* 0 when not running */

/* Liveness: called by the hub's cron. Every interval_s (<= 0: never) while the process is
 * running, GET /health (a worker) or / (a cmd: server) on a connection of its own; every
 * timeout_s / 4 instead while requests are in flight or a worker loads or unloads. Not during a
 * start (the start timeout covers it). Any answer within timeout_s counts as alive. No answer in
 * time (or two refused connections in a row) kills the process group with SIGKILL, and its exit is
 * reported to the lifecycle as failed with the reason "unresponsive" (restart by the usual
 * backoff). */
void hub_backend_health_tick(hub_backend *b, double interval_s, double timeout_s);

/* The last `n` output lines (at most 1000), oldest first, as a JSON array (new reference). */
json_t *hub_backend_tail(const hub_backend *b, int n);

#endif
