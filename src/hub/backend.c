/* backend.c — see backend.h. */
#include "hub/backend.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http_json.h"
#include "hub/proc.h"
#include "util/common.h"
#include "util/log.h"

#define LOG_RING           1000
#define HEALTH_POLL_US     100000
#define CONTROL_TIMEOUT_MS (15 * 60 * 1000) /* loading a big model takes a while */
#define PROXY_TIMEOUT_MS   (5 * 60 * 1000)  /* longest silence on a proxied request */

enum op { OP_NONE, OP_START, OP_STOP, OP_LOAD, OP_UNLOAD };

struct hub_backend {
    const hub_backend_env *env;
    hub_model_config cfg; /* deep copy */
    lc_model *lcm;
    const lc_backend_ops *ops;

    hub_proc *proc;
    int port;
    char token[33];
    http_client *client;

    enum op op; /* the lifecycle operation in progress */
    lc_done_fn done;
    void *done_arg;
    struct event *poll_ev;
    double start_deadline;
    http_client_req *poll_req;
    struct event *deferred_ev; /* finish_later */
    int deferred_status;
    char deferred_msg[512];
    unsigned gen; /* bumped when a process goes away: older requests' answers are ignored */

    /* liveness probe of a running process (hub_backend_health_tick) */
    http_client *probe_client; /* its own connection: never queued behind proxied requests */
    http_client_req *probe_req;
    double last_probe_at; /* when the last probe was sent (0: none since the start) */
    int probe_failures;   /* consecutive probes that could not connect */
    int unresponsive;     /* killed for not answering: its exit is reported as such */

    /* upstream */
    char *up_host, *up_prefix;
    int up_port;

    char **ring; /* (LOG_RING) last output lines */
    int ring_head, ring_count;
};

/* ==== Completing lifecycle operations (always from the loop, never inside the op call) ==== */

static void finish(hub_backend *b, int status, const char *message) {
    lc_done_fn done = b->done;
    void *arg = b->done_arg;
    b->op = OP_NONE;
    b->done = NULL;
    b->done_arg = NULL;
    if (done) done(arg, status, message);
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    hub_backend *b = arg;
    finish(b, b->deferred_status, b->deferred_msg[0] ? b->deferred_msg : NULL);
}

/* Complete the current operation from the loop, after the op call has returned. */
static void finish_later(hub_backend *b, int status, const char *message) {
    b->deferred_status = status;
    snprintf(b->deferred_msg, sizeof b->deferred_msg, "%s", message ? message : "");
    if (!b->deferred_ev) b->deferred_ev = event_new(b->env->base, -1, 0, deferred_cb, b);
    event_add(b->deferred_ev, &(struct timeval){0, 0});
}

/* ==== Output lines ==== */

static void on_line(void *arg, const char *line, size_t len) {
    hub_backend *b = arg;
    int slot = (b->ring_head + b->ring_count) % LOG_RING;
    if (b->ring_count == LOG_RING) {
        free(b->ring[b->ring_head]);
        b->ring_head = (b->ring_head + 1) % LOG_RING;
        slot = (b->ring_head + b->ring_count - 1) % LOG_RING;
    } else {
        b->ring_count++;
    }
    char *copy = mh_xmalloc(len + 1);
    memcpy(copy, line, len);
    copy[len] = 0;
    b->ring[slot] = copy;
    if (b->env->on_line) b->env->on_line(b->env->arg, b, line, len);
}

json_t *hub_backend_tail(const hub_backend *b, int n) {
    json_t *arr = json_array();
    if (n > b->ring_count) n = b->ring_count;
    for (int i = b->ring_count - n; i < b->ring_count; i++)
        json_array_append_new(arr, json_string(b->ring[(b->ring_head + i) % LOG_RING]));
    return arr;
}

/* The last few lines, for a start failure message. */
static void last_lines(const hub_backend *b, char *out, size_t outlen) {
    out[0] = 0;
    size_t used = 0;
    int n = MH_MIN(b->ring_count, 3);
    for (int i = b->ring_count - n; i < b->ring_count && used + 4 < outlen; i++) {
        int w = snprintf(out + used, outlen - used, "%s%s", used ? " | " : "",
                         b->ring[(b->ring_head + i) % LOG_RING]);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* ==== Process ==== */

/* Context of a request to a backend's process, tagged with the process generation. */
typedef struct request_ctx {
    hub_backend *b;
    unsigned gen;
} request_ctx;

static request_ctx *request_ctx_new(hub_backend *b) {
    request_ctx *rc = mh_xmalloc(sizeof *rc);
    rc->b = b;
    rc->gen = b->gen;
    return rc;
}

static void drop_process(hub_backend *b);

static void release_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    hub_proc_free(arg);
}

/* Free the process and client outside their own callbacks. */
static void drop_process(hub_backend *b) {
    b->gen++;
    if (b->poll_ev) event_del(b->poll_ev);
    b->poll_req = NULL;                         /* cancelled with its client below */
    if (b->client) http_client_free(b->client); /* safe inside its callbacks */
    b->client = NULL;
    b->probe_req = NULL;
    if (b->probe_client) http_client_free(b->probe_client);
    b->probe_client = NULL;
    b->probe_failures = 0;
    if (b->proc)
        event_base_once(b->env->base, -1, EV_TIMEOUT, release_cb, b->proc, &(struct timeval){0, 0});
    b->proc = NULL;
    b->port = 0;
}

static void on_proc_exit(void *arg, int code) {
    hub_backend *b = arg;
    char why[96], tail[400], msg[600];
    if (code >= 0)
        snprintf(why, sizeof why, "exited with status %d", code);
    else
        snprintf(why, sizeof why, "was killed by signal %d", -code);
    last_lines(b, tail, sizeof tail);
    log_info("%s: process %d %s", b->cfg.name, b->proc ? (int)hub_proc_pid(b->proc) : 0, why);
    int external = b->cfg.backend != HUB_BACKEND_WORKER;
    enum op op = b->op;
    drop_process(b); /* answers of requests to the dead process are ignored from here on */
    if (op == OP_START || (op == OP_LOAD && external)) {
        if (b->lcm) lc_note_exit_code(b->lcm, code);
        snprintf(msg, sizeof msg, "%s %s while starting%s%s", b->cfg.name, why, tail[0] ? ": " : "",
                 tail);
        finish(b, -1, msg);
        return;
    }
    if (op == OP_STOP || (op == OP_UNLOAD && external)) {
        finish(b, 0, NULL);
        return;
    }
    /* nobody asked it to go: a crash. A worker's load or unload in progress is over too; the
     * lifecycle learns of the crash first, so that answer is stale for it. */
    lc_done_fn done = b->done;
    void *darg = b->done_arg;
    b->op = OP_NONE;
    b->done = NULL;
    if (b->lcm && b->unresponsive)
        lc_notify_failed(b->lcm, code, "unresponsive",
                         "unresponsive: the process stopped answering its health probe and was "
                         "killed");
    else if (b->lcm)
        lc_notify_exit(b->lcm, code);
    b->unresponsive = 0;
    if (done) done(darg, -1, "the process died");
}

static void on_health(http_client_req *cr, const http_client_result *res, void *arg);

static void poll_health(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    hub_backend *b = arg;
    if (b->op != OP_START && b->op != OP_LOAD) return;
    if (mh_now_mono() > b->start_deadline) {
        char msg[600], tail[400];
        last_lines(b, tail, sizeof tail);
        snprintf(msg, sizeof msg, "%s did not become ready within %.0f s%s%s", b->cfg.name,
                 b->env->start_timeout, tail[0] ? ": " : "", tail);
        drop_process(b); /* killed and reaped; its exit is not reported */
        finish(b, -1, msg);
        return;
    }
    if (b->poll_req) return;
    http_client_request_opts o = {.method = "GET", .path = "/health", .timeout_ms = 2000};
    http_client_callbacks cb = {.on_done = on_health};
    request_ctx *rc = request_ctx_new(b);
    if (http_client_request(b->client, &o, &cb, rc, &b->poll_req) < 0) {
        free(rc);
        b->poll_req = NULL;
    }
}

static void on_health(http_client_req *cr, const http_client_result *res, void *arg) {
    (void)cr;
    request_ctx *rc = arg;
    hub_backend *b = rc->b;
    int stale = rc->gen != b->gen;
    free(rc);
    if (stale) return;
    b->poll_req = NULL;
    if (b->op != OP_START && b->op != OP_LOAD) return;
    /* a modelhub worker answers 200; any answer below 500 means an external server listens */
    int ready = res->error == 0 &&
                (b->cfg.backend == HUB_BACKEND_WORKER ? res->status == 200
                                                      : res->status >= 200 && res->status < 500);
    if (!ready) return;
    event_del(b->poll_ev);
    log_info("%s: ready on port %d (pid %d)", b->cfg.name, b->port, (int)hub_proc_pid(b->proc));
    finish(b, 0, NULL);
}

/* Expand ${PORT} and ${MODEL_PATH} in an external command. */
static char *expand_cmd(const hub_backend *b) {
    mh_buf out = {0};
    const char *s = b->cfg.cmd;
    while (*s) {
        if (strncmp(s, "${PORT}", 7) == 0) {
            mh_buf_printf(&out, "%d", b->port);
            s += 7;
        } else if (strncmp(s, "${MODEL_PATH}", 13) == 0) {
            const char *mp = b->cfg.model_path ? b->cfg.model_path : "";
            mh_buf_append(&out, mp, strlen(mp));
            s += 13;
        } else {
            mh_buf_append(&out, s, 1);
            s++;
        }
    }
    mh_buf_append(&out, "", 0);
    return out.data;
}

static void random_token(char out[33]) {
    unsigned char raw[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, raw, sizeof raw) : -1;
    if (fd >= 0) close(fd);
    if (n != (ssize_t)sizeof raw)
        for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (unsigned char)(rand() ^ (int)mh_now_mono());
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static int spawn_process(hub_backend *b, char *err, size_t errlen) {
    b->port = b->cfg.port > 0 ? b->cfg.port : b->env->alloc_port(b->env->arg, b);
    if (b->port <= 0) return snprintf(err, errlen, "no free port for %s", b->cfg.name), -1;
    random_token(b->token);
    char port[16], ctx[16], threads[16], parallel[16], qsize[16], qtimeout[32], log_path[4096];
    snprintf(port, sizeof port, "%d", b->port);
    snprintf(ctx, sizeof ctx, "%d", b->cfg.context_length);
    snprintf(threads, sizeof threads, "%d", b->cfg.threads);
    snprintf(parallel, sizeof parallel, "%d", b->cfg.max_concurrency);
    snprintf(qsize, sizeof qsize, "%d", b->cfg.queue_size);
    snprintf(qtimeout, sizeof qtimeout, "%g", b->cfg.queue_timeout);
    char *cmd = NULL;
    const char *argv[32];
    int n = 0;
    if (b->cfg.backend == HUB_BACKEND_WORKER) {
        const char *a[] = {b->env->self_exe,
                           "serve",
                           "--worker",
                           "--jit",
                           "-m",
                           b->cfg.model_path,
                           "--host",
                           "127.0.0.1",
                           "--port",
                           port,
                           "--alias",
                           b->cfg.name,
                           "--ctx",
                           ctx,
                           "--threads",
                           threads,
                           "--parallel",
                           parallel,
                           "--queue-size",
                           qsize,
                           "--queue-timeout",
                           qtimeout,
                           "--log-level",
                           b->cfg.log_level ? b->cfg.log_level : "info"};
        for (size_t i = 0; i < MH_ARRAY_LEN(a); i++) argv[n++] = a[i];
    } else {
        cmd = expand_cmd(b);
        const char *a[] = {b->env->self_exe, "hub", "exec-guard", "--", "/bin/sh", "-c", cmd};
        for (size_t i = 0; i < MH_ARRAY_LEN(a); i++) argv[n++] = a[i];
    }
    argv[n] = NULL;
    char token_env[64], port_env[32];
    snprintf(token_env, sizeof token_env, "MODELHUB_CONTROL_TOKEN=%s", b->token);
    snprintf(port_env, sizeof port_env, "PORT=%d", b->port);
    const char **env = mh_xcalloc((size_t)b->cfg.n_env + 3, sizeof *env);
    int k = 0;
    for (int i = 0; i < b->cfg.n_env; i++) env[k++] = b->cfg.env[i];
    env[k++] = b->cfg.backend == HUB_BACKEND_WORKER ? token_env : port_env;
    env[k] = NULL;
    if (b->env->log_dir)
        snprintf(log_path, sizeof log_path, "%s/%s.log", b->env->log_dir, b->cfg.name);
    hub_proc_opts o = {
        argv,    env, b->env->log_dir ? log_path : NULL, b->env->log_max_bytes, on_proc_exit,
        on_line, b};
    int rc = hub_proc_spawn(b->env->base, &o, &b->proc, err, errlen);
    free(env);
    free(cmd);
    if (rc < 0) {
        b->port = 0;
        return -1;
    }
    b->client = http_client_new(b->env->base, "127.0.0.1", b->port, 16, PROXY_TIMEOUT_MS);
    b->probe_client = http_client_new(b->env->base, "127.0.0.1", b->port, 1, PROXY_TIMEOUT_MS);
    b->unresponsive = 0;
    b->last_probe_at = 0;
    log_info("%s: started pid %d on port %d", b->cfg.name, (int)hub_proc_pid(b->proc), b->port);
    return 0;
}

/* Start the process and report ready once it answers its health check. */
static int begin_start(hub_backend *b, enum op op, lc_done_fn done, void *arg) {
    if (b->op != OP_NONE || b->proc) return -1;
    char err[512];
    if (spawn_process(b, err, sizeof err) < 0) {
        log_error("%s: %s", b->cfg.name, err);
        b->op = op;
        b->done = done;
        b->done_arg = arg;
        finish_later(b, -1, err);
        return 0;
    }
    b->op = op;
    b->done = done;
    b->done_arg = arg;
    b->start_deadline = mh_now_mono() + b->env->start_timeout;
    if (!b->poll_ev) b->poll_ev = event_new(b->env->base, -1, EV_PERSIST, poll_health, b);
    event_add(b->poll_ev, &(struct timeval){0, HEALTH_POLL_US});
    return 0;
}

static int begin_stop(hub_backend *b, enum op op, lc_done_fn done, void *arg) {
    if (b->op != OP_NONE && b->op != OP_START && b->op != OP_LOAD) return -1;
    if (b->op == OP_START || b->op == OP_LOAD) {
        /* stopping while starting: the start is abandoned (its caller was told already) */
        if (b->poll_ev) event_del(b->poll_ev);
    }
    b->op = op;
    b->done = done;
    b->done_arg = arg;
    if (!b->proc) {
        finish_later(b, 0, NULL);
        return 0;
    }
    hub_proc_stop(b->proc, b->env->stop_grace);
    return 0;
}

/* ==== Liveness probe ==== */

static void on_probe(http_client_req *cr, const http_client_result *res, void *arg) {
    (void)cr;
    request_ctx *rc = arg;
    hub_backend *b = rc->b;
    int stale = rc->gen != b->gen;
    free(rc);
    if (stale) return;
    b->probe_req = NULL;
    if (res->head_received) { /* any answer: the server is alive (busy or not) */
        b->probe_failures = 0;
        return;
    }
    if (res->error == HTTP_CLIENT_ECANCELED || !b->proc || b->unresponsive) return;
    /* a refused connection can be the moment of an exit: wait for a second one */
    if (res->error != HTTP_CLIENT_ETIMEDOUT && ++b->probe_failures < 2) return;
    log_warn("%s: pid %d did not answer its health probe (%s): killing it as unresponsive",
             b->cfg.name, (int)hub_proc_pid(b->proc), http_client_strerror(res->error));
    b->unresponsive = 1;
    hub_proc_kill(b->proc); /* on_proc_exit reports it; waiting clients fail from there */
}

void hub_backend_health_tick(hub_backend *b, double interval_s, double timeout_s) {
    if (interval_s <= 0 || !b->proc || !b->probe_client || b->probe_req || b->unresponsive) return;
    if (!b->lcm || lc_model_proc(b->lcm) != LC_PROC_RUNNING) return;
    /* a worker loads and unloads on a thread of its own and keeps answering /health meanwhile;
     * a start (and an external server's load or unload, which are its start and stop) has the
     * start timeout instead */
    int worker_op =
        b->cfg.backend == HUB_BACKEND_WORKER && (b->op == OP_LOAD || b->op == OP_UNLOAD);
    if (b->op != OP_NONE && !worker_op) return;
    double now = mh_now_mono();
    /* with clients waiting on it, probe every quarter of the timeout: a hang is noticed within
     * 1.25 timeouts, not after a whole interval */
    double every = interval_s;
    if ((lc_model_in_flight(b->lcm) > 0 || worker_op) && timeout_s / 4 < every)
        every = timeout_s / 4;
    if (b->last_probe_at == 0) b->last_probe_at = now; /* the first probe one period after start */
    if (now < b->last_probe_at + every) return;
    b->last_probe_at = now;
    int ms = (int)(timeout_s * 1000);
    http_client_request_opts o = {.method = "GET",
                                  .path = b->cfg.backend == HUB_BACKEND_WORKER ? "/health" : "/",
                                  .timeout_ms = ms > 0 ? ms : 1,
                                  .deadline_ms = ms > 0 ? ms : 1};
    http_client_callbacks cb = {.on_done = on_probe};
    request_ctx *rc = request_ctx_new(b);
    if (http_client_request(b->probe_client, &o, &cb, rc, &b->probe_req) < 0) {
        free(rc);
        b->probe_req = NULL;
    }
}

/* ==== Worker control requests ==== */

static void on_control_done(http_client_req *cr, const http_client_result *res, void *arg) {
    (void)cr;
    request_ctx *rc = arg;
    hub_backend *b = rc->b;
    int stale = rc->gen != b->gen;
    free(rc);
    if (stale || (b->op != OP_LOAD && b->op != OP_UNLOAD)) return;
    if (res->error == 0 && res->status == 200) {
        finish(b, 0, NULL);
        return;
    }
    char msg[600];
    const char *detail = res->error ? http_client_strerror(res->error) : NULL;
    json_t *body = res->body ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(json_object_get(body, "error"), "message"));
    snprintf(msg, sizeof msg, "%s: %s failed: %s", b->cfg.name,
             b->op == OP_LOAD ? "load" : "unload",
             b->unresponsive ? "the worker stopped answering its health probe and was killed"
             : m             ? m
             : detail        ? detail
             : res->body     ? res->body
                             : "unknown error");
    json_decref(body);
    finish(b, -1, msg);
}

static int control_request(hub_backend *b, enum op op, const char *path, lc_done_fn done,
                           void *arg) {
    if (b->op != OP_NONE || !b->client) return -1;
    http_header h[] = {{"X-Control-Token", b->token}};
    http_client_request_opts o = {.method = "POST",
                                  .path = path,
                                  .headers = h,
                                  .nheaders = 1,
                                  .timeout_ms = CONTROL_TIMEOUT_MS};
    http_client_callbacks cb = {.on_done = on_control_done};
    b->op = op;
    b->done = done;
    b->done_arg = arg;
    request_ctx *rc = request_ctx_new(b);
    if (http_client_request(b->client, &o, &cb, rc, NULL) < 0) {
        free(rc);
        b->op = OP_NONE;
        b->done = NULL;
        return -1;
    }
    return 0;
}

/* ==== Worker ops ==== */

static int worker_start(void *impl, lc_done_fn done, void *arg) {
    return begin_start(impl, OP_START, done, arg);
}
static int worker_stop(void *impl, lc_done_fn done, void *arg) {
    return begin_stop(impl, OP_STOP, done, arg);
}
static int worker_load(void *impl, lc_done_fn done, void *arg) {
    return control_request(impl, OP_LOAD, "/control/load", done, arg);
}
static int worker_unload(void *impl, lc_done_fn done, void *arg) {
    return control_request(impl, OP_UNLOAD, "/control/unload", done, arg);
}

static uint64_t process_rss(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    unsigned long size = 0, resident = 0;
    int ok = fscanf(fp, "%lu %lu", &size, &resident) == 2;
    fclose(fp);
    return ok ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static void proc_probe(void *impl, lc_probe *out) {
    hub_backend *b = impl;
    if (b->proc && hub_proc_running(b->proc)) {
        out->pid = (int)hub_proc_pid(b->proc);
        out->port = b->port;
        out->memory_bytes = process_rss(hub_proc_pid(b->proc));
    }
}

static const lc_backend_ops worker_ops = {
    .kind = "worker",
    .owns_process = 1,
    .load_is_start = 0,
    .start = worker_start,
    .stop = worker_stop,
    .load = worker_load,
    .unload = worker_unload,
    .probe = proc_probe,
};

/* ==== External ops: loading is starting ==== */

static int external_start(void *impl, lc_done_fn done, void *arg) {
    return begin_start(impl, OP_START, done, arg);
}
static int external_stop(void *impl, lc_done_fn done, void *arg) {
    return begin_stop(impl, OP_STOP, done, arg);
}

static const lc_backend_ops external_ops = {
    .kind = "external",
    .owns_process = 1,
    .load_is_start = 1,
    .start = external_start,
    .stop = external_stop,
    .load = external_start,
    .unload = external_stop,
    .probe = proc_probe,
};

/* ==== Upstream ops ==== */

static void on_upstream_check(http_client_req *cr, const http_client_result *res, void *arg) {
    (void)cr;
    hub_backend *b = arg;
    if (b->op != OP_LOAD) return;
    if (res->error == 0 && res->status < 500) {
        finish(b, 0, NULL);
        return;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "%s: upstream %s does not answer: %s", b->cfg.name, b->cfg.upstream,
             res->error ? http_client_strerror(res->error) : "server error");
    finish(b, -1, msg);
}

static int upstream_load(void *impl, lc_done_fn done, void *arg) {
    hub_backend *b = impl;
    if (b->op != OP_NONE) return -1;
    char path[1024];
    snprintf(path, sizeof path, "%s/v1/models", b->up_prefix);
    http_client_request_opts o = {.method = "GET", .path = path, .timeout_ms = 10000};
    http_client_callbacks cb = {.on_done = on_upstream_check};
    b->op = OP_LOAD;
    b->done = done;
    b->done_arg = arg;
    if (http_client_request(b->client, &o, &cb, b, NULL) < 0) {
        b->op = OP_NONE;
        return -1;
    }
    return 0;
}

static int upstream_unload(void *impl, lc_done_fn done, void *arg) {
    hub_backend *b = impl;
    if (b->op != OP_NONE) return -1;
    b->op = OP_UNLOAD;
    b->done = done;
    b->done_arg = arg;
    finish_later(b, 0, NULL);
    return 0;
}

static void upstream_probe(void *impl, lc_probe *out) {
    hub_backend *b = impl;
    out->port = b->up_port;
}

static const lc_backend_ops upstream_ops = {
    .kind = "upstream",
    .owns_process = 0,
    .load_is_start = 0,
    .load = upstream_load,
    .unload = upstream_unload,
    .probe = upstream_probe,
};

/* http://host[:port][/prefix] */
static int parse_upstream(hub_backend *b) {
    const char *u = b->cfg.upstream;
    if (strncmp(u, "http://", 7) != 0) return -1;
    u += 7;
    const char *slash = strchr(u, '/');
    size_t hostport_len = slash ? (size_t)(slash - u) : strlen(u);
    char hostport[512];
    if (hostport_len == 0 || hostport_len >= sizeof hostport) return -1;
    memcpy(hostport, u, hostport_len);
    hostport[hostport_len] = 0;
    char *colon = strrchr(hostport, ':');
    b->up_port = 80;
    if (colon) {
        *colon = 0;
        long port;
        if (mh_parse_long(colon + 1, 1, 65535, &port) < 0) return -1;
        b->up_port = (int)port;
    }
    b->up_host = mh_xstrdup(hostport);
    b->up_prefix = mh_xstrdup(slash ? slash : "");
    size_t pl = strlen(b->up_prefix);
    if (pl && b->up_prefix[pl - 1] == '/') b->up_prefix[pl - 1] = 0;
    return 0;
}

/* ==== Public ==== */

hub_backend *hub_backend_new(const hub_backend_env *env, const hub_model_config *cfg) {
    hub_backend *b = mh_xcalloc(1, sizeof *b);
    b->env = env;
    hub_model_config_copy(&b->cfg, cfg);
    b->ring = mh_xcalloc(LOG_RING, sizeof *b->ring);
    switch (cfg->backend) {
    case HUB_BACKEND_WORKER: b->ops = &worker_ops; break;
    case HUB_BACKEND_EXTERNAL: b->ops = &external_ops; break;
    case HUB_BACKEND_UPSTREAM:
        b->ops = &upstream_ops;
        if (parse_upstream(b) == 0)
            b->client = http_client_new(env->base, b->up_host, b->up_port, 16, PROXY_TIMEOUT_MS);
        break;
    }
    return b;
}

void hub_backend_free(hub_backend *b) {
    if (!b) return;
    if (b->poll_ev) event_free(b->poll_ev);
    if (b->deferred_ev) event_free(b->deferred_ev);
    b->done = NULL; /* nobody waits any more */
    b->op = OP_NONE;
    b->gen++;
    if (b->client) http_client_free(b->client); /* its pending answers are stale now */
    if (b->probe_client) http_client_free(b->probe_client);
    if (b->proc) hub_proc_free(b->proc);
    for (int i = 0; i < b->ring_count; i++) free(b->ring[(b->ring_head + i) % LOG_RING]);
    free(b->ring);
    free(b->up_host);
    free(b->up_prefix);
    hub_model_config_clear(&b->cfg);
    free(b);
}

const lc_backend_ops *hub_backend_ops(const hub_backend *b) {
    return b->ops;
}
void hub_backend_set_model(hub_backend *b, lc_model *m) {
    b->lcm = m;
}
const hub_model_config *hub_backend_config(const hub_backend *b) {
    return &b->cfg;
}

void hub_backend_update_config(hub_backend *b, const hub_model_config *cfg) {
    hub_model_config copy;
    hub_model_config_copy(&copy, cfg);
    hub_model_config_clear(&b->cfg);
    b->cfg = copy;
}

http_client *hub_backend_client(hub_backend *b) {
    return b->client;
}
const char *hub_backend_path_prefix(const hub_backend *b) {
    return b->up_prefix ? b->up_prefix : "";
}
int hub_backend_port(const hub_backend *b) {
    return b->port;
}
