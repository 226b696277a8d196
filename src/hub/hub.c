/* hub.c — the hub daemon (see hub.h).
 *
 * Reads top to bottom: the hub's state, models (backends on the lifecycle core), auth, the
 * router (proxying OpenAI requests to workers, streams chunk by chunk), the control API, events
 * and logs (SSE), reload, metrics and the dashboard, the cron, and hub_run() which wires it all.
 */
#include "hub/hub.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/dialect.h"
#include "http/http_client.h"
#include "http/http_json.h"
#include "http/http_loop.h"
#include "http/http_req.h"
#include "http/http_server.h"
#include "http/http_stream.h"
#include "http/sse_parser.h"
#include "hub/backend.h"
#include "hub/config.h"
#include "hub/web.h"
#include "lifecycle/lifecycle.h"
#include "util/common.h"
#include "util/log.h"

#define CRON_INTERVAL_US      100000 /* 10 Hz */
#define SSE_KEEPALIVE_S       15.0
#define PROXY_SILENCE_MS      (30 * 60 * 1000)
#define LOG_TAIL_DEFAULT      100
#define LOG_TAIL_MAX          1000
#define MAX_FORWARDED_HEADERS 32

typedef struct hub hub;
typedef struct proxy proxy;

/* A long-lived SSE stream: event subscribers and log followers. */
typedef struct watcher {
    hub *h;
    http_req *req;
    hub_backend *follow; /* log follower of this backend; NULL for /hub/events */
    int redact;          /* an events subscriber without the admin key (see redact_entry) */
    double last_write;
    struct watcher *prev, *next;
} watcher;

/* A model changed by a reload that needs a restart once it is idle. */
typedef struct pending_restart {
    lc_model *m;
    hub_backend *fresh; /* the backend with the new configuration, swapped in once stopped */
    int was_running, was_loaded;
    int stopping;
    struct pending_restart *next;
} pending_restart;

struct hub {
    hub_config *cfg;
    char *config_path;
    char self_exe[PATH_MAX];
    char runtime_path[PATH_MAX];
    char log_dir[PATH_MAX]; /* the backends' log folder (outlives config reloads) */
    struct event_base *base;
    http_server *http;
    struct event *cron_ev, *sigterm_ev, *sigint_ev, *sighup_ev;
    lc_registry *reg;
    hub_backend_env benv;
    watcher *watchers;
    proxy *proxies;
    pending_restart *restarts;
    int stopping;
    double started_wall;
};

static int mkdir_p(const char *path);

/* ==== Models ==== */

static hub_backend *backend_of(const lc_model *m) {
    return lc_model_impl(m);
}

static lc_model_config lc_config_of(const hub_model_config *mc) {
    return (lc_model_config){.name = mc->name,
                             .aliases = (const char *const *)mc->aliases,
                             .model_path = mc->model_path ? mc->model_path
                                           : mc->upstream ? mc->upstream
                                                          : mc->cmd,
                             .group = mc->group,
                             .is_default = mc->is_default,
                             .idle_unload_s = mc->idle_unload_s};
}

static lc_model *add_model(hub *h, const hub_model_config *mc) {
    hub_backend *b = hub_backend_new(&h->benv, mc);
    lc_model_config lcfg = lc_config_of(mc);
    lc_model *m = lc_model_add(h->reg, &lcfg, hub_backend_ops(b), b);
    if (!m) {
        hub_backend_free(b);
        return NULL;
    }
    hub_backend_set_model(b, m);
    return m;
}

static void start_default(lc_model *m) {
    const hub_model_config *mc = hub_backend_config(backend_of(m));
    if (!mc->is_default) return;
    int rc = mc->jit_enabled ? lc_start(m, NULL, NULL) : lc_load(m, NULL, NULL);
    if (rc < 0) log_warn("%s: could not start: %d", mc->name, rc);
}

/* A free port for a worker without one: from model_starting_port up, skipping the ports of the
 * hub, of other models' configs and of running backends, and checking it can be bound. */
static int alloc_port(void *arg, const hub_backend *self) {
    hub *h = arg;
    for (int port = h->cfg->model_starting_port; port < 65536; port++) {
        if (port == h->cfg->port) continue;
        int taken = 0;
        for (int i = 0; i < h->cfg->n_models && !taken; i++) taken = h->cfg->models[i].port == port;
        for (int i = 0; i < lc_count(h->reg) && !taken; i++) {
            const hub_backend *b = backend_of(lc_at(h->reg, i));
            taken = b != self && hub_backend_port(b) == port;
        }
        if (taken) continue;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return 0;
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok) return port;
    }
    return 0;
}

/* ==== Auth ==== */

static int check_api_key(hub *h, http_req *r) {
    if (h->cfg->n_api_keys == 0) return 1;
    int ok = 0;
    for (int i = 0; i < h->cfg->n_api_keys; i++) /* every key, so the time names none */
        ok |= http_req_bearer_ok(r, h->cfg->api_keys[i]);
    if (ok) return 1;
    http_reply_errorf(r, 401, NULL, NULL, "invalid_api_key",
                      "missing or invalid API key (Authorization: Bearer ...)");
    return 0;
}

/* The request carries the admin key (or none is set). Compared in constant time. */
static int is_admin(const hub *h, const http_req *r) {
    if (!h->cfg->admin_key || !h->cfg->admin_key[0]) return 1;
    const char *alt = http_req_header(r, "X-Admin-Key");
    int bearer = http_req_bearer_ok(r, h->cfg->admin_key);
    int header = alt ? http_token_equal(alt, h->cfg->admin_key) : 0;
    return bearer | header;
}

static int check_admin(hub *h, http_req *r) {
    if (is_admin(h, r)) return 1;
    http_reply_errorf(r, 401, NULL, NULL, "invalid_admin_key",
                      "this route needs the hub's admin key (Authorization: Bearer ...)");
    return 0;
}

/* What a reader without the admin key sees of a model entry when a key is set: no file paths
 * or command lines (model_path holds a cmd: line too), no error text (it may quote either). */
static void redact_entry(json_t *e) {
    if (!json_is_object(e)) return;
    if (!json_is_null(json_object_get(e, "model_path")))
        json_object_set_new(e, "model_path", json_string("(redacted)"));
    if (!json_is_null(json_object_get(e, "error")))
        json_object_set_new(e, "error", json_string("(redacted: send the admin key to see it)"));
}

/* Redact a whole snapshot in place (see redact_entry); marks it "redacted": true. */
static void redact_snapshot(json_t *s) {
    json_object_del(s, "config_path");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(s, "models"), i, e) redact_entry(e);
    json_object_set_new(s, "redacted", json_true());
}

/* ==== Router: OpenAI requests to the model's backend ==== */

struct proxy {
    hub *h;
    http_req *req; /* NULL once answered */
    lc_model *m;
    lc_waiter *waiter;
    int acquired;
    http_client_req *creq;
    char *body;
    size_t body_len;
    char path[1024];
    /* response */
    int status;
    int streaming; /* text/event-stream: forwarded chunk by chunk */
    char content_type[128];
    char *hdr_names[MAX_FORWARDED_HEADERS], *hdr_values[MAX_FORWARDED_HEADERS];
    int n_hdrs;
    mh_buf buffered; /* a non-stream answer, sent whole once complete */
    sse_parser *sse;
    dialect_out *dout; /* a dialect route (dialect.h): translates the OpenAI answer; else NULL */
    int gather;        /* dout: the worker streams, the client gets one answer at the end */
    uint64_t tokens;
    double t_start;
    proxy *prev, *next;
};

static void proxy_free(proxy *p) {
    hub *h = p->h;
    if (p->prev)
        p->prev->next = p->next;
    else
        h->proxies = p->next;
    if (p->next) p->next->prev = p->prev;
    for (int i = 0; i < p->n_hdrs; i++) {
        free(p->hdr_names[i]);
        free(p->hdr_values[i]);
    }
    free(p->body);
    mh_buf_free(&p->buffered);
    if (p->sse) sse_parser_free(p->sse);
    dialect_out_free(p->dout);
    free(p);
}

/* The request is over: answer if nobody did, release the model, free. */
static void proxy_finish(proxy *p) {
    if (p->req) {
        if (http_stream_started(p->req))
            http_stream_end(p->req);
        else
            http_reply_errorf(p->req, 499, NULL, NULL, NULL, "client closed the request");
        p->req = NULL;
    }
    if (p->acquired) lc_release(p->m, p->tokens);
    p->acquired = 0;
    proxy_free(p);
}

static void proxy_note(proxy *p) {
    if (p->req)
        http_req_set_note(p->req, "model=%s upstream_status=%d tokens=%llu", lc_model_name(p->m),
                          p->status, (unsigned long long)p->tokens);
}

static int hop_by_hop(const char *name) {
    static const char *const skip[] = {
        "connection", "keep-alive", "transfer-encoding", "content-length", "te",
        "trailer",    "upgrade",    "proxy-connection",  "date",           "server"};
    for (size_t i = 0; i < MH_ARRAY_LEN(skip); i++)
        if (strcasecmp(name, skip[i]) == 0) return 1;
    return 0;
}

static void keep_header(const char *name, const char *value, void *arg) {
    proxy *p = arg;
    if (hop_by_hop(name) || strcasecmp(name, "content-type") == 0 ||
        p->n_hdrs == MAX_FORWARDED_HEADERS)
        return;
    p->hdr_names[p->n_hdrs] = mh_xstrdup(name);
    p->hdr_values[p->n_hdrs++] = mh_xstrdup(value);
}

/* Count generated tokens from what passes by: usage when the answer has it, else one per
 * streamed content chunk. */
static void count_event(const sse_event *ev, void *arg) {
    proxy *p = arg;
    if (ev->data_len == 0 || sse_event_is_done(ev)) return;
    json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!j) return;
    json_t *ct = json_object_get(json_object_get(j, "usage"), "completion_tokens");
    json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
    const char *text =
        json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
    if (!text) text = json_string_value(json_object_get(choice, "text"));
    if (json_is_integer(ct))
        p->tokens = (uint64_t)json_integer_value(ct); /* the worker's own count wins */
    else if (text && text[0])
        p->tokens++;
    json_decref(j);
}

/* Terminal: answer with `e` in the shape the route's clients expect. */
static void proxy_reply_error(proxy *p, const http_error *e) {
    if (p->dout) {
        char v[16];
        snprintf(v, sizeof v, "%d", e->retry_after_s);
        if (e->retry_after_s > 0) http_req_set_header(p->req, "Retry-After", v);
        http_reply_json_take(p->req, e->status, dialect_error_body(dialect_out_api(p->dout), e));
    } else {
        http_reply_error(p->req, e);
    }
    p->req = NULL;
}

static void proxy_write_buf(proxy *p, mh_buf *b) {
    if (b->len && p->req && !http_req_gone(p->req)) http_stream_write(p->req, b->data, b->len);
    mh_buf_free(b);
}

/* A dialect stream: each OpenAI event of the worker becomes the dialect's bytes. */
static void translate_event(const sse_event *ev, void *arg) {
    proxy *p = arg;
    mh_buf b = {0};
    count_event(ev, p);
    if (sse_event_is_done(ev)) {
        dialect_out_done(p->dout, &b);
    } else {
        json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
        if (j) dialect_out_chunk(p->dout, j, &b);
        json_decref(j);
    }
    proxy_write_buf(p, &b);
}

static void on_upstream_head(http_client_req *cr, int status, void *arg) {
    proxy *p = arg;
    p->status = status;
    const char *ct = http_client_req_header(cr, "Content-Type");
    snprintf(p->content_type, sizeof p->content_type, "%s", ct ? ct : "application/json");
    http_client_req_each_header(cr, keep_header, p);
    p->streaming = strncasecmp(p->content_type, "text/event-stream", 17) == 0;
    if (!p->streaming || !p->req || http_req_gone(p->req)) return;
    if (p->gather) {
        p->sse = sse_parser_new(0);
        return;
    }
    for (int i = 0; i < p->n_hdrs; i++)
        http_req_set_header(p->req, p->hdr_names[i], p->hdr_values[i]);
    http_stream_start(p->req, status, p->dout ? dialect_out_stream_type(p->dout) : p->content_type);
    p->sse = sse_parser_new(0);
}

static void on_upstream_chunk(http_client_req *cr, const char *data, size_t len, void *arg) {
    (void)cr;
    proxy *p = arg;
    if (!p->streaming) {
        mh_buf_append(&p->buffered, data, len);
        return;
    }
    if (p->dout) {
        if (p->sse) sse_parser_feed(p->sse, data, len, translate_event, p);
        return;
    }
    if (p->req && !http_req_gone(p->req)) http_stream_write(p->req, data, len);
    if (p->sse) sse_parser_feed(p->sse, data, len, count_event, p);
}

static void on_upstream_done(http_client_req *cr, const http_client_result *res, void *arg) {
    (void)cr;
    proxy *p = arg;
    p->creq = NULL;
    /* cancelled with the client still there: the worker's process went away (crash, or killed
     * as unresponsive) and took its connections with it — answered like any failure below */
    if (!p->req || http_req_gone(p->req)) {
        proxy_finish(p);
        return;
    }
    const char *name = lc_model_name(p->m);
    if (p->streaming && p->gather) { /* the whole answer gathered from the worker's stream */
        int status;
        json_t *body = dialect_out_whole(p->dout, &status);
        p->status = status;
        proxy_note(p);
        http_reply_json_take(p->req, status, body);
        p->req = NULL;
        proxy_finish(p);
        return;
    }
    if (p->streaming && p->dout) {
        if (!dialect_out_closed(p->dout)) { /* no [DONE]: never a clean end */
            http_error e;
            http_error_set(&e, 500, "server_error", NULL, "worker_failed",
                           "the worker of model '%s' ended the stream early: %s", name,
                           res->error ? http_client_strerror(res->error) : "no end marker");
            mh_buf b = {0};
            dialect_out_error(p->dout, &e, &b);
            proxy_write_buf(p, &b);
            p->status = 500;
        }
        proxy_note(p);
        http_stream_end(p->req);
        p->req = NULL;
        proxy_finish(p);
        return;
    }
    if (p->streaming) {
        if (res->error) { /* died mid-stream: say so before the end, never a clean end */
            http_error e;
            http_error_set(&e, 500, "server_error", NULL, "worker_failed",
                           "the worker of model '%s' failed while streaming: %s", name,
                           http_client_strerror(res->error));
            json_t *env = http_error_envelope(&e);
            http_stream_event_json(p->req, env);
            json_decref(env);
            http_stream_event(p->req, "[DONE]");
            p->status = 500;
        }
        proxy_note(p);
        http_stream_end(p->req);
        p->req = NULL;
        proxy_finish(p);
        return;
    }
    if (res->error) {
        http_error e;
        if (!res->head_received) { /* never answered: down, hung and killed, or restarting */
            http_error_set(&e, 503, NULL, NULL, "worker_unavailable",
                           "the worker of model '%s' did not answer: %s", name,
                           http_client_strerror(res->error));
            e.retry_after_s = 1;
        } else {
            http_error_set(&e, 500, "server_error", NULL, "worker_failed",
                           "the worker of model '%s' failed while answering: %s", name,
                           http_client_strerror(res->error));
        }
        p->status = e.status;
        proxy_note(p);
        proxy_reply_error(p, &e);
        proxy_finish(p);
        return;
    }
    json_t *body = json_loadb(p->buffered.data ? p->buffered.data : "", p->buffered.len, 0, NULL);
    json_t *ct = json_object_get(json_object_get(body, "usage"), "completion_tokens");
    if (json_is_integer(ct)) p->tokens = (uint64_t)json_integer_value(ct);
    if (p->dout) { /* the whole answer (or the worker's error) in the dialect */
        http_error e;
        proxy_note(p);
        if (p->status == 200 && json_is_object(body)) {
            http_reply_json_take(p->req, 200, dialect_out_response(p->dout, body));
            p->req = NULL;
        } else {
            dialect_error_parse(body, p->status == 200 ? 502 : p->status, &e);
            proxy_reply_error(p, &e);
        }
        json_decref(body);
        proxy_finish(p);
        return;
    }
    json_decref(body);
    for (int i = 0; i < p->n_hdrs; i++)
        http_req_set_header(p->req, p->hdr_names[i], p->hdr_values[i]);
    proxy_note(p);
    http_reply(p->req, p->status, p->content_type, p->buffered.data, p->buffered.len);
    p->req = NULL;
    proxy_finish(p);
}

static void proxy_forward(proxy *p) {
    hub_backend *b = backend_of(p->m);
    http_client *c = hub_backend_client(b);
    http_header hdrs[3];
    size_t nh = 0;
    const char *ct = p->dout ? NULL : http_req_header(p->req, "Content-Type");
    const char *accept = p->dout ? NULL : http_req_header(p->req, "Accept");
    hdrs[nh++] = (http_header){"Content-Type", ct ? ct : "application/json"};
    if (accept) hdrs[nh++] = (http_header){"Accept", accept};
    http_client_request_opts o = {.method = http_req_method(p->req),
                                  .path = p->path,
                                  .headers = hdrs,
                                  .nheaders = nh,
                                  .body = p->body,
                                  .body_len = p->body_len,
                                  .timeout_ms = PROXY_SILENCE_MS};
    http_client_callbacks cb = {on_upstream_head, on_upstream_chunk, on_upstream_done};
    if (!c || http_client_request(c, &o, &cb, p, &p->creq) < 0) {
        http_error e;
        http_error_set(&e, 503, NULL, NULL, "worker_unavailable",
                       "the worker of model '%s' is not running", lc_model_name(p->m));
        e.retry_after_s = 1;
        proxy_reply_error(p, &e);
        proxy_finish(p);
    }
}

static void on_proxy_acquired(void *arg, int status, const char *message) {
    proxy *p = arg;
    p->waiter = NULL;
    if (status != 0) {
        http_error e;
        int code = lc_status_http(status);
        http_error_set(&e, code, NULL, NULL,
                       status == LC_ERR_TIMEOUT ? "model_load_timeout"
                       : status == LC_ERR_BUSY  ? "group_busy"
                                                : "model_unavailable",
                       "model '%s' is not available: %s", lc_model_name(p->m), message);
        if (code == 503) e.retry_after_s = status == LC_ERR_QUARANTINED ? 30 : 2;
        if (p->req) proxy_reply_error(p, &e);
        proxy_finish(p);
        return;
    }
    p->acquired = 1;
    if (!p->req || http_req_gone(p->req)) {
        proxy_finish(p);
        return;
    }
    proxy_forward(p);
}

static void on_proxy_client_gone(http_req *r, void *arg) {
    (void)r;
    proxy *p = arg;
    if (p->creq) {
        http_client_cancel(p->creq); /* on_upstream_done follows */
        return;
    }
    if (p->waiter) {
        lc_acquire_cancel(p->waiter);
        p->waiter = NULL;
        proxy_finish(p);
    }
}

static void proxy_start(hub *h, http_req *r, const char *name, const char *body, size_t len,
                        const char *path, dialect_out *dout, int gather);

static void route_proxy(http_req *r, void *arg) {
    hub *h = arg;
    if (!check_api_key(h, r)) return;
    size_t len;
    const char *body = http_req_body(r, &len);
    json_t *j;
    http_error e;
    if (http_json_parse(body, len, 1, &j, &e) < 0) {
        http_reply_error(r, &e);
        return;
    }
    const char *name = NULL;
    if (http_json_get_string(j, "model", 1, 256, NULL, &name, &e) < 0) {
        json_decref(j);
        http_reply_error(r, &e);
        return;
    }
    proxy_start(h, r, name, body, len, http_req_raw_path(r), NULL, 0);
    json_decref(j);
}

/* Route `len` bytes of `body` (copied) for model `name` to `path` on its backend once the model
 * is ready; `dout` (stolen; NULL for the OpenAI routes) translates the answer, gathering a
 * streamed one into a whole answer when `gather`. */
static void proxy_start(hub *h, http_req *r, const char *name, const char *body, size_t len,
                        const char *path, dialect_out *dout, int gather) {
    lc_model *m = lc_find(h->reg, name, 0);
    proxy *p = mh_xcalloc(1, sizeof *p);
    p->h = h;
    p->req = r;
    p->dout = dout;
    p->gather = gather;
    if (!m) {
        http_error e;
        http_error_set(&e, 404, NULL, "model", "model_not_found",
                       "the model '%.200s' does not exist", name);
        proxy_reply_error(p, &e);
        dialect_out_free(p->dout);
        free(p);
        return;
    }
    p->m = m;
    p->t_start = mh_now_mono();
    p->body = mh_xmalloc(len + 1);
    memcpy(p->body, body, len);
    p->body_len = len;
    snprintf(p->path, sizeof p->path, "%s%s", hub_backend_path_prefix(backend_of(m)), path);
    p->next = h->proxies;
    if (h->proxies) h->proxies->prev = p;
    h->proxies = p;
    http_req_on_close(r, on_proxy_client_gone, p);
    const hub_model_config *mc = hub_backend_config(backend_of(m));
    int rc = lc_acquire(m, mc->queue_timeout, on_proxy_acquired, p, &p->waiter);
    if (rc == LC_READY)
        on_proxy_acquired(p, 0, NULL);
    else if (rc < 0)
        on_proxy_acquired(p, rc,
                          rc == LC_ERR_SHUTDOWN ? "the hub is shutting down"
                          : rc == LC_ERR_QUARANTINED
                              ? "it crashed repeatedly and is quarantined until a manual "
                                "start"
                              : "refused");
}

/* ==== Other API dialects: translated here, forwarded to the backend's OpenAI routes ==== */

static void dialect_proxy(hub *h, http_req *r, dialect_api api) {
    if (!check_api_key(h, r)) return;
    http_error e;
    json_t *in;
    dialect_request dr;
    if (http_req_json(r, &in, &e) < 0) {
        http_reply_json_take(r, e.status, dialect_error_body(api, &e));
        return;
    }
    int rc = dialect_translate(api, in, &dr, &e);
    json_decref(in);
    if (rc < 0) {
        http_reply_json_take(r, e.status, dialect_error_body(api, &e));
        return;
    }
    int gather = !dr.stream && strcmp(dr.path, "/v1/embeddings") != 0;
    if (gather) { /* a stream from the worker times the first token (Ollama's durations) */
        json_object_set_new(dr.body, "stream", json_true());
        json_object_set_new(dr.body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    char *body = http_json_dump(dr.body);
    if (!body) {
        http_error_set(&e, 500, NULL, NULL, NULL, "out of memory");
        http_reply_json_take(r, 500, dialect_error_body(api, &e));
    } else {
        proxy_start(h, r, dr.model, body, strlen(body), dr.path,
                    dialect_out_new(api, dr.stream, dr.model), gather);
    }
    free(body);
    json_decref(dr.body);
}

static void route_messages(http_req *r, void *arg) {
    dialect_proxy(arg, r, DIALECT_ANTHROPIC_MESSAGES);
}
static void route_responses(http_req *r, void *arg) {
    dialect_proxy(arg, r, DIALECT_OPENAI_RESPONSES);
}
static void route_ollama_chat(http_req *r, void *arg) {
    dialect_proxy(arg, r, DIALECT_OLLAMA_CHAT);
}
static void route_ollama_generate(http_req *r, void *arg) {
    dialect_proxy(arg, r, DIALECT_OLLAMA_GENERATE);
}
static void route_ollama_embed(http_req *r, void *arg) {
    dialect_proxy(arg, r, DIALECT_OLLAMA_EMBED);
}
static void route_ollama_embeddings(http_req *r, void *arg) {
    dialect_proxy(arg, r, DIALECT_OLLAMA_EMBEDDINGS);
}

/* /api/tags (every model) and /api/ps (the loaded ones), from the hub's own registry. */
static void ollama_list(hub *h, http_req *r, int loaded_only) {
    if (!check_api_key(h, r)) return;
    json_t *snap = lc_snapshot(h->reg);
    http_reply_json_take(r, 200,
                         dialect_ollama_models(json_object_get(snap, "models"), loaded_only));
    json_decref(snap);
}
static void route_ollama_tags(http_req *r, void *arg) {
    ollama_list(arg, r, 0);
}
static void route_ollama_ps(http_req *r, void *arg) {
    ollama_list(arg, r, 1);
}
static void route_ollama_version(http_req *r, void *arg) {
    (void)arg;
    http_reply_json_take(r, 200, dialect_ollama_version(MODELHUB_VERSION));
}

static void route_ollama_show(http_req *r, void *arg) {
    hub *h = arg;
    if (!check_api_key(h, r)) return;
    http_error e;
    json_t *in = NULL;
    const char *name;
    lc_model *m = NULL;
    if (http_req_json(r, &in, &e) == 0 && dialect_ollama_show_name(in, &name, &e) == 0 &&
        !(m = lc_find(h->reg, name, 0)))
        http_error_set(&e, 404, NULL, "model", NULL, "model '%.200s' not found", name);
    if (!m) {
        json_decref(in);
        http_reply_json_take(r, e.status, dialect_error_body(DIALECT_OLLAMA_CHAT, &e));
        return;
    }
    json_decref(in);
    json_t *entry = lc_model_entry(m);
    http_reply_json_take(r, 200, dialect_ollama_show(entry));
    json_decref(entry);
}

/* ==== OpenAI model list and health ==== */

/* GET /v1/models/{id}: one model object, 404 for a name the hub does not know. */
static void route_model(http_req *r, void *arg) {
    hub *h = arg;
    if (!check_api_key(h, r)) return;
    const char *id = http_req_param(r, "id");
    lc_model *m = lc_find(h->reg, id, 0);
    if (!m) {
        http_reply_errorf(r, 404, NULL, "model", "model_not_found",
                          "the model '%.200s' does not exist", id);
        return;
    }
    http_reply_json_take(r, 200,
                         json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", lc_model_name(m), "object",
                                   "model", "created", (int)h->started_wall, "owned_by", "modelhub",
                                   "metadata", lc_model_entry(m)));
}

static void route_models(http_req *r, void *arg) {
    hub *h = arg;
    if (!check_api_key(h, r)) return;
    int redact = !is_admin(h, r);
    json_t *data = json_array();
    for (int i = 0; i < lc_count(h->reg); i++) {
        lc_model *m = lc_at(h->reg, i);
        json_t *entry = lc_model_entry(m);
        if (redact) redact_entry(entry);
        json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", lc_model_name(m),
                                              "object", "model", "created", (int)h->started_wall,
                                              "owned_by", "modelhub", "metadata", entry));
    }
    http_reply_json_take(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void route_health(http_req *r, void *arg) {
    hub *h = arg;
    json_t *s = lc_snapshot(h->reg);
    json_t *body =
        json_pack("{s:s, s:O, s:O}", "status", h->stopping ? "shutting_down" : "ok", "counts",
                  json_object_get(s, "counts"), "uptime_s", json_object_get(s, "uptime_s"));
    json_decref(s);
    http_reply_json_take(r, 200, body);
}

/* ==== Control API ==== */

static json_t *snapshot(hub *h) {
    json_t *s = lc_snapshot(h->reg);
    json_object_set_new(s, "config_path", json_string(h->config_path));
    json_object_set_new(s, "pid", json_integer((json_int_t)getpid()));
    json_object_set_new(s, "admin_key_required",
                        json_boolean(h->cfg->admin_key && h->cfg->admin_key[0]));
    json_object_set_new(s, "enable_status_page", json_boolean(h->cfg->enable_status_page));
    return s;
}

static void route_status(http_req *r, void *arg) {
    hub *h = arg;
    json_t *s = snapshot(h);
    if (!is_admin(h, r)) redact_snapshot(s);
    http_reply_json_take(r, 200, s);
}

typedef struct control_call {
    hub *h;
    http_req *req;
    lc_model *m;
    char action[16];
} control_call;

static void control_answer(hub *h, http_req *r, lc_model *m, const char *action, int status,
                           const char *message) {
    (void)h;
    if (status < 0) {
        http_error e;
        http_error_set(&e, lc_status_http(status), NULL, NULL, NULL, "%s %s: %s", action,
                       lc_model_name(m), message ? message : "failed");
        http_reply_error(r, &e);
        return;
    }
    json_t *body = json_pack("{s:s, s:s, s:o}", "action", action, "model", lc_model_name(m),
                             "entry", lc_model_entry(m));
    http_reply_json_take(r, 200, body);
}

static const char *status_text(int status) {
    switch (status) {
    case LC_ERR_BUSY: return "its group is full and every loaded member is busy";
    case LC_ERR_CONFLICT: return "it has requests in flight";
    case LC_ERR_QUARANTINED: return "it is quarantined after repeated crashes; start it first";
    case LC_ERR_SHUTDOWN: return "the hub is shutting down";
    case LC_ERR_UNSUPPORTED: return "its backend has no process to start or stop";
    default: return "failed";
    }
}

static void on_control_done(void *arg, int status, const char *message) {
    control_call *cc = arg;
    if (status != 0 && status > 0) status = LC_ERR_FAILED;
    if (status < 0 && !message) message = status_text(status);
    control_answer(cc->h, cc->req, cc->m, cc->action, status, message);
    free(cc);
}

static void route_model_action(http_req *r, void *arg) {
    hub *h = arg;
    if (!check_admin(h, r)) return;
    const char *name = http_req_param(r, "name"), *action = http_req_param(r, "action");
    lc_model *m = lc_find(h->reg, name, 0);
    if (!m) {
        http_reply_errorf(r, 404, NULL, NULL, "model_not_found", "the model '%s' does not exist",
                          name);
        return;
    }
    const char *dry = http_req_query(r, "dry_run");
    if (strcmp(action, "load") == 0 && dry && strcmp(dry, "0") != 0) {
        int status;
        json_t *evict = lc_load_dry_run(m, &status);
        if (!evict) {
            http_reply_errorf(r, 429, NULL, NULL, "group_busy", "load %s: %s", name,
                              status_text(status));
            return;
        }
        http_reply_json_take(r, 200,
                             json_pack("{s:s, s:s, s:b, s:o}", "action", "load", "model", name,
                                       "dry_run", 1, "would_evict", evict));
        return;
    }
    control_call *cc = mh_xcalloc(1, sizeof *cc);
    cc->h = h;
    cc->req = r;
    cc->m = m;
    snprintf(cc->action, sizeof cc->action, "%s", action);
    int rc;
    if (strcmp(action, "start") == 0)
        rc = lc_start(m, on_control_done, cc);
    else if (strcmp(action, "stop") == 0)
        rc = lc_stop(m, LC_REASON_MANUAL, on_control_done, cc);
    else if (strcmp(action, "load") == 0)
        rc = lc_load(m, on_control_done, cc);
    else if (strcmp(action, "unload") == 0)
        rc = lc_unload(m, LC_REASON_MANUAL, on_control_done, cc);
    else {
        free(cc);
        http_reply_errorf(r, 404, NULL, NULL, NULL,
                          "unknown action '%s' (start, stop, load or unload)", action);
        return;
    }
    if (rc == LC_PENDING) return;
    free(cc);
    control_answer(h, r, m, action, rc, rc < 0 ? status_text(rc) : NULL);
}

/* ==== Events and logs (SSE) ==== */

static void watcher_gone(http_req *r, void *arg) {
    (void)r;
    watcher *w = arg;
    hub *h = w->h;
    if (w->prev)
        w->prev->next = w->next;
    else
        h->watchers = w->next;
    if (w->next) w->next->prev = w->prev;
    http_stream_end(w->req);
    free(w);
}

static watcher *watcher_new(hub *h, http_req *r, hub_backend *follow) {
    watcher *w = mh_xcalloc(1, sizeof *w);
    w->h = h;
    w->req = r;
    w->follow = follow;
    w->last_write = mh_now_mono();
    w->next = h->watchers;
    if (h->watchers) h->watchers->prev = w;
    h->watchers = w;
    http_req_on_close(r, watcher_gone, w);
    return w;
}

static void on_lifecycle_event(void *arg, const lc_model *m, const char *what) {
    hub *h = arg;
    if (!h->watchers) return;
    json_t *ev = json_pack("{s:s, s:s, s:f}", "type", what, "name", lc_model_name(m), "timestamp",
                           round(mh_now_wall() * 1000) / 1000);
    if (strcmp(what, "removed") != 0) json_object_set_new(ev, "model", lc_model_entry(m));
    char *data = http_json_dump(ev), *redacted = NULL;
    double now = mh_now_mono();
    for (watcher *w = h->watchers; w; w = w->next) {
        if (w->follow) continue;
        if (w->redact && !redacted) {
            redact_entry(json_object_get(ev, "model"));
            redacted = http_json_dump(ev);
        }
        http_stream_event(w->req, w->redact ? redacted : data);
        w->last_write = now;
    }
    json_decref(ev);
    free(data);
    free(redacted);
}

static void route_events(http_req *r, void *arg) {
    hub *h = arg;
    if (http_stream_start_sse(r) < 0) {
        http_stream_end(r);
        return;
    }
    /* the current snapshot first, then one event per change */
    int redact = !is_admin(h, r);
    json_t *snap = snapshot(h);
    if (redact) redact_snapshot(snap);
    json_t *ev = json_pack("{s:s, s:o}", "type", "snapshot", "snapshot", snap);
    http_stream_event_json(r, ev);
    json_decref(ev);
    watcher_new(h, r, NULL)->redact = redact;
}

static void on_backend_line(void *arg, hub_backend *b, const char *line, size_t len) {
    hub *h = arg;
    json_t *ev = NULL;
    double now = mh_now_mono();
    for (watcher *w = h->watchers; w; w = w->next) {
        if (w->follow != b) continue;
        if (!ev) ev = json_pack("{s:s%}", "line", line, len);
        http_stream_event_json(w->req, ev);
        w->last_write = now;
    }
    json_decref(ev);
}

static void route_logs(http_req *r, void *arg) {
    hub *h = arg;
    if (!check_admin(h, r)) return;
    const char *name = http_req_param(r, "name");
    lc_model *m = lc_find(h->reg, name, 0);
    if (!m) {
        http_reply_errorf(r, 404, NULL, NULL, "model_not_found", "the model '%s' does not exist",
                          name);
        return;
    }
    long tail = LOG_TAIL_DEFAULT;
    const char *t = http_req_query(r, "tail");
    if (t && mh_parse_long(t, 0, LOG_TAIL_MAX, &tail) < 0) {
        http_reply_errorf(r, 400, NULL, "tail", NULL, "tail must be an integer in [0, %d]",
                          LOG_TAIL_MAX);
        return;
    }
    const char *follow = http_req_query(r, "follow");
    json_t *lines = hub_backend_tail(backend_of(m), (int)tail);
    if (!follow || strcmp(follow, "0") == 0 || strcmp(follow, "false") == 0) {
        http_reply_json_take(r, 200,
                             json_pack("{s:s, s:o}", "model", lc_model_name(m), "lines", lines));
        return;
    }
    if (http_stream_start_sse(r) < 0) {
        json_decref(lines);
        http_stream_end(r);
        return;
    }
    json_t *first = json_pack("{s:s, s:o}", "model", lc_model_name(m), "lines", lines);
    http_stream_event_json(r, first);
    json_decref(first);
    watcher_new(h, r, backend_of(m));
}

/* ==== Reload ==== */

static void reload_apply_top(hub *h, hub_config *next) {
    if (strcmp(next->host, h->cfg->host) != 0 || next->port != h->cfg->port)
        lc_add_warning(h->reg, "host/port changed in the config: they apply after a hub restart");
    h->benv.start_timeout = next->start_timeout;
    h->benv.stop_grace = next->stop_grace;
    h->benv.log_max_bytes = next->log_max_bytes;
    http_server_set_access(h->http, (const char *const *)next->allowed_hosts,
                           (const char *const *)next->cors_origins);
    if (strcmp(next->log_path, h->log_dir) != 0 && mkdir_p(next->log_path) == 0)
        snprintf(h->log_dir, sizeof h->log_dir, "%s", next->log_path);
}

static void restart_step(hub *h, pending_restart *pr);

static void on_restart_stopped(void *arg, int status, const char *message) {
    pending_restart *pr = arg;
    (void)status, (void)message;
    pr->stopping = -1; /* stopped: the cron swaps the backend */
}

/* Swap a changed model's backend once it is stopped, then bring it back as it was. */
static void restart_step(hub *h, pending_restart *pr) {
    lc_model *m = pr->m;
    if (pr->stopping == 1) return;
    if (pr->stopping == 0) {
        if (lc_model_in_flight(m) > 0) return; /* once idle */
        lc_proc_state ps = lc_model_proc(m);
        lc_mem_state ms = lc_model_mem(m);
        int active = ps == LC_PROC_RUNNING || ps == LC_PROC_STARTING || ms == LC_MEM_LOADED ||
                     ms == LC_MEM_LOADING;
        if (active && hub_backend_ops(backend_of(m))->owns_process) {
            pr->stopping = 1;
            int rc = lc_stop(m, LC_REASON_RELOAD, on_restart_stopped, pr);
            if (rc != LC_PENDING) pr->stopping = -1;
            return;
        }
        if (active && ms == LC_MEM_LOADED) { /* upstream: unload */
            pr->stopping = 1;
            int rc = lc_unload(m, LC_REASON_RELOAD, on_restart_stopped, pr);
            if (rc != LC_PENDING) pr->stopping = -1;
            return;
        }
        pr->stopping = -1;
    }
    /* stopped: the new backend */
    hub_backend *old = backend_of(m), *b = pr->fresh;
    if (lc_model_set_backend(m, hub_backend_ops(b), b) != 0) {
        pr->stopping = 0; /* busy again: try later */
        return;
    }
    hub_backend_set_model(b, m);
    lc_model_config lcfg = lc_config_of(hub_backend_config(b));
    lc_model_update(m, &lcfg);
    hub_backend_free(old);
    log_info("%s: restarted with its new configuration", lc_model_name(m));
    if (pr->was_loaded)
        lc_load(m, NULL, NULL);
    else if (pr->was_running)
        lc_start(m, NULL, NULL);
    /* unlink and free */
    for (pending_restart **pp = &h->restarts; *pp; pp = &(*pp)->next)
        if (*pp == pr) {
            *pp = pr->next;
            break;
        }
    free(pr);
}

typedef struct removal {
    hub *h;
    lc_model *m;
} removal;

static void remove_now(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    removal *rm = arg;
    hub_backend *b = backend_of(rm->m);
    if (lc_model_remove(rm->m) == 0)
        hub_backend_free(b);
    else
        log_warn("%s: still busy, not removed", lc_model_name(rm->m));
    free(rm);
}

/* The model stopped: remove it from the loop, outside the lifecycle's and the backend's
 * callbacks that are still on the stack (never free an object inside its own callback). */
static void on_removed_stopped(void *arg, int status, const char *message) {
    (void)status, (void)message;
    removal *rm = arg;
    event_base_once(rm->h->base, -1, EV_TIMEOUT, remove_now, rm, &(struct timeval){0, 0});
}

static void route_reload(http_req *r, void *arg) {
    hub *h = arg;
    if (!check_admin(h, r)) return;
    char errs[16384];
    hub_config *next;
    if (hub_config_load(h->config_path, &next, errs, sizeof errs) < 0) {
        http_reply_errorf(r, 400, NULL, NULL, "invalid_config",
                          "the configuration was not reloaded, nothing changed:\n%s", errs);
        return;
    }
    json_t *started = json_array(), *stopped = json_array(), *restarted = json_array(),
           *updated = json_array(), *unchanged = json_array(), *added = json_array();
    lc_clear_warnings(h->reg);
    reload_apply_top(h, next);
    for (int i = 0; i < next->n_groups; i++)
        lc_group_set(h->reg, next->groups[i].name, next->groups[i].max_loaded);
    for (int i = 0; i < h->cfg->n_groups; i++)
        if (!hub_config_find_group(next, h->cfg->groups[i].name))
            lc_group_remove(h->reg, h->cfg->groups[i].name);
    /* removed models stop, then go */
    int n_gone = 0;
    lc_model **gone = mh_xcalloc((size_t)lc_count(h->reg) + 1, sizeof *gone);
    for (int i = 0; i < lc_count(h->reg); i++) {
        lc_model *m = lc_at(h->reg, i);
        if (!hub_config_find_model(next, lc_model_name(m)) ||
            strcmp(hub_config_find_model(next, lc_model_name(m))->name, lc_model_name(m)) != 0)
            gone[n_gone++] = m;
    }
    for (int i = 0; i < n_gone; i++) {
        lc_model *m = gone[i];
        json_array_append_new(stopped, json_string(lc_model_name(m)));
        for (pending_restart **pp = &h->restarts; *pp; pp = &(*pp)->next)
            if ((*pp)->m == m) {
                pending_restart *pr = *pp;
                *pp = pr->next;
                hub_backend_free(pr->fresh);
                free(pr);
                break;
            }
        removal *rm = mh_xcalloc(1, sizeof *rm);
        rm->h = h;
        rm->m = m;
        int rc = hub_backend_ops(backend_of(m))->owns_process
                     ? lc_stop(m, LC_REASON_RELOAD, on_removed_stopped, rm)
                     : lc_unload(m, LC_REASON_RELOAD, on_removed_stopped, rm);
        if (rc != LC_PENDING) on_removed_stopped(rm, rc, NULL);
    }
    free(gone);
    for (int k = 0; k < next->n_models; k++) {
        const hub_model_config *mc = &next->models[k];
        lc_model *m = lc_find(h->reg, mc->name, 0);
        if (!m) {
            m = add_model(h, mc);
            if (!m) continue;
            if (mc->is_default) {
                start_default(m);
                json_array_append_new(started, json_string(mc->name));
            } else {
                json_array_append_new(added, json_string(mc->name));
            }
            continue;
        }
        hub_backend *b = backend_of(m);
        const hub_model_config *old = hub_backend_config(b);
        if (hub_model_config_equal(old, mc)) {
            json_array_append_new(unchanged, json_string(mc->name));
            continue;
        }
        if (!hub_model_config_needs_restart(old, mc)) {
            hub_backend_update_config(b, mc);
            lc_model_config lcfg = lc_config_of(mc);
            lc_model_update(m, &lcfg);
            json_array_append_new(updated, json_string(mc->name));
            continue;
        }
        /* needs a restart once idle: keep a private copy of the new config for it */
        pending_restart *pr = NULL;
        for (pending_restart *x = h->restarts; x; x = x->next)
            if (x->m == m) pr = x;
        if (!pr) {
            pr = mh_xcalloc(1, sizeof *pr);
            pr->m = m;
            pr->next = h->restarts;
            h->restarts = pr;
            lc_proc_state ps = lc_model_proc(m);
            pr->was_running = ps == LC_PROC_RUNNING || ps == LC_PROC_STARTING;
            pr->was_loaded = lc_model_mem(m) == LC_MEM_LOADED || lc_model_mem(m) == LC_MEM_LOADING;
        } else {
            hub_backend_free(pr->fresh); /* changed again before it was applied */
        }
        pr->fresh = hub_backend_new(&h->benv, mc);
        json_array_append_new(restarted, json_string(mc->name));
        restart_step(h, pr);
    }
    hub_config_free(h->cfg);
    h->cfg = next;
    log_info("reloaded %s", h->config_path);
    http_reply_json_take(r, 200,
                         json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "started", started, "stopped",
                                   stopped, "restarted", restarted, "updated", updated, "unchanged",
                                   unchanged, "added", added));
}

/* ==== Shutdown ==== */

/* Every model is stopped: end the long-lived streams (they saw the last events) and leave the
 * loop a moment later, so that replies already queued (the shutdown request's own) go out. */
static void on_all_stopped(void *arg, int status, const char *message) {
    (void)status, (void)message;
    hub *h = arg;
    while (h->watchers) {
        watcher *w = h->watchers;
        h->watchers = w->next;
        if (h->watchers) h->watchers->prev = NULL;
        http_req_on_close(w->req, NULL, NULL);
        http_stream_end(w->req);
        free(w);
    }
    event_base_loopexit(h->base, &(struct timeval){0, 100000});
}

static void begin_shutdown(hub *h, const char *why) {
    if (h->stopping) return;
    h->stopping = 1;
    log_info("shutting down (%s)", why);
    if (lc_shutdown(h->reg, on_all_stopped, h) == LC_READY) on_all_stopped(h, 0, NULL);
}

static void route_shutdown(http_req *r, void *arg) {
    hub *h = arg;
    if (!check_admin(h, r)) return;
    http_reply_json_take(r, 200, json_pack("{s:s}", "status", "shutting_down"));
    begin_shutdown(h, "POST /hub/shutdown");
}

/* ==== Metrics and dashboard ==== */

static void route_metrics(http_req *r, void *arg) {
    hub *h = arg;
    mh_buf b = {0};
    mh_buf_printf(&b, "# TYPE modelhub_model_loaded gauge\n# TYPE modelhub_model_running gauge\n"
                      "# TYPE modelhub_model_in_flight gauge\n"
                      "# TYPE modelhub_model_requests_total counter\n"
                      "# TYPE modelhub_model_tokens_generated_total counter\n"
                      "# TYPE modelhub_model_restarts_total counter\n");
    for (int i = 0; i < lc_count(h->reg); i++) {
        lc_model *m = lc_at(h->reg, i);
        json_t *e = lc_model_entry(m);
        const char *n = lc_model_name(m);
        mh_buf_printf(&b, "modelhub_model_loaded{model=\"%s\"} %d\n", n,
                      lc_model_mem(m) == LC_MEM_LOADED);
        mh_buf_printf(&b, "modelhub_model_running{model=\"%s\"} %d\n", n,
                      lc_model_proc(m) == LC_PROC_RUNNING);
        mh_buf_printf(&b, "modelhub_model_in_flight{model=\"%s\"} %d\n", n, lc_model_in_flight(m));
        mh_buf_printf(&b, "modelhub_model_requests_total{model=\"%s\"} %lld\n", n,
                      (long long)json_integer_value(json_object_get(e, "requests_total")));
        mh_buf_printf(&b, "modelhub_model_tokens_generated_total{model=\"%s\"} %lld\n", n,
                      (long long)json_integer_value(json_object_get(e, "tokens_generated")));
        mh_buf_printf(&b, "modelhub_model_restarts_total{model=\"%s\"} %lld\n", n,
                      (long long)json_integer_value(json_object_get(e, "restarts")));
        json_decref(e);
    }
    mh_buf_printf(&b, "# TYPE modelhub_http_requests_total counter\n");
    for (size_t i = 0; i < http_server_stats_count(h->http); i++) {
        http_route_stats st;
        http_server_stats_get(h->http, i, &st);
        mh_buf_printf(
            &b,
            "modelhub_http_requests_total{method=\"%s\",route=\"%s\",class=\"2xx\"} %llu\n"
            "modelhub_http_requests_total{method=\"%s\",route=\"%s\",class=\"4xx\"} %llu\n"
            "modelhub_http_requests_total{method=\"%s\",route=\"%s\",class=\"5xx\"} %llu\n",
            st.method, st.pattern, (unsigned long long)st.status_2xx, st.method, st.pattern,
            (unsigned long long)st.status_4xx, st.method, st.pattern,
            (unsigned long long)st.status_5xx);
    }
    http_reply(r, 200, "text/plain; version=0.0.4", b.data, b.len);
    mh_buf_free(&b);
}

static const web_asset *find_asset(const char *name) {
    for (const web_asset *a = web_assets; a->name; a++)
        if (strcmp(a->name, name) == 0) return a;
    return NULL;
}

static void route_dashboard(http_req *r, void *arg) {
    hub *h = arg;
    const web_asset *a = h->cfg->enable_status_page ? find_asset("dashboard.html") : NULL;
    if (!a) {
        http_reply_errorf(r, 404, NULL, NULL, NULL,
                          h->cfg->enable_status_page ? "the dashboard was not built in"
                                                     : "the status page is disabled");
        return;
    }
    http_req_set_header(r, "Cache-Control", "no-cache");
    http_reply(r, 200, "text/html; charset=utf-8", a->data, a->len);
}

static const char *content_type_of(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".png")) return "image/png";
    if (!strcmp(dot, ".json")) return "application/json";
    return "application/octet-stream";
}

/* Any other file of web/ (scripts, styles, icons the page refers to as /hub/assets/NAME). */
static void route_asset(http_req *r, void *arg) {
    hub *h = arg;
    const char *name = http_req_param(r, "file");
    const web_asset *a = h->cfg->enable_status_page && name ? find_asset(name) : NULL;
    if (!a) {
        http_reply_errorf(r, 404, NULL, NULL, NULL, "no such asset");
        return;
    }
    http_req_set_header(r, "Cache-Control", "no-cache");
    http_reply(r, 200, content_type_of(name), a->data, a->len);
}

/* ==== Routes ==== */

static const http_route routes[] = {
    {"POST", "/v1/chat/completions", route_proxy,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/v1/completions", route_proxy,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/v1/embeddings", route_proxy, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"GET", "/v1/models", route_models, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"GET", "/v1/models/{id}", route_model, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"POST", "/v1/messages", route_messages,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/v1/responses", route_responses,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/api/chat", route_ollama_chat,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/api/generate", route_ollama_generate,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/api/embed", route_ollama_embed, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"POST", "/api/embeddings", route_ollama_embeddings, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"POST", "/api/show", route_ollama_show, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"GET", "/api/tags", route_ollama_tags, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"GET", "/api/ps", route_ollama_ps, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"GET", "/api/version", route_ollama_version, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_CORS},
    {"GET", "/health", route_health, HTTP_ROUTE_PUBLIC},
    {"GET", "/metrics", route_metrics, HTTP_ROUTE_PUBLIC},
    {"GET", "/hub", route_dashboard, HTTP_ROUTE_PUBLIC},
    {"GET", "/hub/assets/{file}", route_asset, HTTP_ROUTE_PUBLIC},
    {"GET", "/hub/status", route_status, HTTP_ROUTE_PUBLIC},
    {"GET", "/hub/events", route_events, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_STREAM},
    {"GET", "/hub/models/{name}/logs", route_logs, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_STREAM},
    /* state-changing controls: never from another site's page, key or no key */
    {"POST", "/hub/models/{name}/{action}", route_model_action,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_SAME_ORIGIN},
    {"POST", "/hub/reload", route_reload, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_SAME_ORIGIN},
    {"POST", "/hub/shutdown", route_shutdown, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_SAME_ORIGIN},
};

/* ==== Cron, signals ==== */

static void cron(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    hub *h = arg;
    lc_cron(h->reg);
    for (int i = 0; i < lc_count(h->reg); i++)
        hub_backend_health_tick(backend_of(lc_at(h->reg, i)), h->cfg->health_check_interval,
                                h->cfg->health_check_timeout);
    for (pending_restart *pr = h->restarts, *next; pr; pr = next) {
        next = pr->next;
        restart_step(h, pr);
    }
    double now = mh_now_mono();
    for (watcher *w = h->watchers; w; w = w->next)
        if (now - w->last_write >= SSE_KEEPALIVE_S) {
            http_stream_comment(w->req, "keep-alive");
            w->last_write = now;
        }
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    hub *h = arg;
    if (sig == SIGHUP) {
        log_info("SIGHUP: use POST /hub/reload (or `modelhub hub reload`) to reload");
        return;
    }
    begin_shutdown(h, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_request_logged(const http_log_entry *e, void *arg) {
    (void)arg;
    log_info("%s %s %d %.1f ms%s%s%s", e->method, e->path, e->status, e->duration_s * 1e3,
             e->note ? " " : "", e->note ? e->note : "", e->client_gone ? " (client gone)" : "");
}

/* ==== Files ==== */

static int mkdir_p(const char *path) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static void write_runtime_file(hub *h) {
    if (mkdir_p(h->cfg->state_dir) < 0) {
        log_warn("cannot create state dir %s: %s", h->cfg->state_dir, strerror(errno));
        return;
    }
    snprintf(h->runtime_path, sizeof h->runtime_path, "%s/%s", h->cfg->state_dir, HUB_RUNTIME_FILE);
    json_t *j = json_pack("{s:i, s:s, s:i, s:s, s:f}", "pid", (int)getpid(), "host", h->cfg->host,
                          "port", http_server_port(h->http), "config", h->config_path, "started_at",
                          h->started_wall);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", h->runtime_path);
    if (json_dump_file(j, tmp, JSON_COMPACT) == 0) rename(tmp, h->runtime_path);
    json_decref(j);
}

/* ==== Run ==== */

int hub_run(const char *config_path, int ready_fd) {
    char err[16384];
    hub_config *cfg;
    if (hub_config_load(config_path, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "modelhub hub: invalid configuration:\n%s\n", err);
        return 1;
    }
    hub *h = mh_xcalloc(1, sizeof *h);
    h->cfg = cfg;
    char *abs_path = realpath(config_path, NULL); /* so the CLI finds it from anywhere */
    h->config_path = abs_path ? abs_path : mh_xstrdup(config_path);
    h->started_wall = mh_now_wall();
    int level = log_parse_level(cfg->log_level);
    if (level >= 0) log_level_current = level;
    log_set_tag("hub");
    ssize_t n = readlink("/proc/self/exe", h->self_exe, sizeof h->self_exe - 1);
    if (n <= 0)
        snprintf(h->self_exe, sizeof h->self_exe, "modelhub");
    else
        h->self_exe[n] = 0;
    if (mkdir_p(cfg->log_path) < 0)
        log_warn("cannot create log folder %s: %s", cfg->log_path, strerror(errno));
    snprintf(h->log_dir, sizeof h->log_dir, "%s", cfg->log_path);

    int status = 1;
    h->base = http_loop_new(err, sizeof err);
    if (!h->base) {
        fprintf(stderr, "modelhub hub: %s\n", err);
        goto done;
    }
    http_server_config hc = {.host = cfg->host,
                             .port = cfg->port,
                             .allowed_hosts = (const char *const *)cfg->allowed_hosts,
                             .cors_origins = (const char *const *)cfg->cors_origins,
                             .routes = routes,
                             .nroutes = MH_ARRAY_LEN(routes),
                             .arg = h};
    h->http = http_server_new(h->base, &hc, err, sizeof err);
    if (!h->http) {
        fprintf(stderr, "modelhub hub: cannot listen on %s:%d: %s\n", cfg->host, cfg->port, err);
        goto done;
    }
    http_server_set_log_hook(h->http, on_request_logged, h);
    h->benv = (hub_backend_env){.base = h->base,
                                .self_exe = h->self_exe,
                                .log_dir = h->log_dir,
                                .log_max_bytes = cfg->log_max_bytes,
                                .start_timeout = cfg->start_timeout,
                                .stop_grace = cfg->stop_grace,
                                .alloc_port = alloc_port,
                                .on_line = on_backend_line,
                                .arg = h};
    h->reg = lc_registry_new(NULL);
    lc_registry_set_info(h->reg, cfg->host, http_server_port(h->http));
    lc_subscribe(h->reg, on_lifecycle_event, h);
    for (int i = 0; i < cfg->n_groups; i++)
        lc_group_set(h->reg, cfg->groups[i].name, cfg->groups[i].max_loaded);
    for (int i = 0; i < cfg->n_models; i++) add_model(h, &cfg->models[i]);

    h->cron_ev = event_new(h->base, -1, EV_PERSIST, cron, h);
    event_add(h->cron_ev, &(struct timeval){0, CRON_INTERVAL_US});
    h->sigterm_ev = evsignal_new(h->base, SIGTERM, on_signal, h);
    h->sigint_ev = evsignal_new(h->base, SIGINT, on_signal, h);
    h->sighup_ev = evsignal_new(h->base, SIGHUP, on_signal, h);
    event_add(h->sigterm_ev, NULL);
    event_add(h->sigint_ev, NULL);
    event_add(h->sighup_ev, NULL);

    for (int i = 0; i < lc_count(h->reg); i++) start_default(lc_at(h->reg, i));
    write_runtime_file(h);
    int port = http_server_port(h->http);
    log_info("hub listening on http://%s:%d (%d models, %d groups); dashboard http://%s:%d/hub",
             cfg->host, port, cfg->n_models, cfg->n_groups, cfg->host, port);
    printf("listening on %s:%d\n", cfg->host, port);
    fflush(stdout);
    if (ready_fd >= 0) {
        char line[32];
        int len = snprintf(line, sizeof line, "%d\n", port);
        if (write(ready_fd, line, (size_t)len) < 0) log_warn("cannot notify the starter");
        close(ready_fd);
    }
    event_base_dispatch(h->base);
    status = 0;

done:
    if (h->runtime_path[0]) unlink(h->runtime_path);
    /* requests still waiting for a model end now; those talking to a worker end when its
     * backend (and client) is freed below */
    for (proxy *p = h->proxies, *next; p; p = next) {
        next = p->next;
        if (p->waiter) {
            lc_acquire_cancel(p->waiter);
            p->waiter = NULL;
            proxy_finish(p);
        }
    }
    while (h->restarts) {
        pending_restart *pr = h->restarts;
        h->restarts = pr->next;
        hub_backend_free(pr->fresh);
        free(pr);
    }
    if (h->reg) {
        /* backends first (they kill what still runs), then the registry */
        for (int i = 0; i < lc_count(h->reg); i++) hub_backend_free(backend_of(lc_at(h->reg, i)));
        while (h->proxies) proxy_finish(h->proxies);
        lc_registry_free(h->reg);
    }
    if (h->http) http_server_free(h->http);
    if (h->cron_ev) event_free(h->cron_ev);
    if (h->sigterm_ev) event_free(h->sigterm_ev);
    if (h->sigint_ev) event_free(h->sigint_ev);
    if (h->sighup_ev) event_free(h->sighup_ev);
    if (h->base) http_loop_free(h->base);
    hub_config_free(h->cfg);
    free(h->config_path);
    free(h);
    log_info("hub stopped");
    return status;
}
