/* http_client.c — pooled evhttp client connections to one upstream.
 *
 * How libevent 2.1 reports an outgoing request's end, and what we make of it:
 *   - response complete: cb(req) with the status                       -> OK
 *   - connect failed (refused, connect timeout): cb(req) with status 0 -> ECONNECT
 *   - connection error/EOF/timeout: error_cb(kind) then cb(NULL); the request is already freed,
 *     the connection reset. EOF before any head -> ENORESPONSE (ECONNECT when errno says
 *     refused); after the head -> EPARTIAL; TIMEOUT -> ETIMEDOUT.
 *   - evhttp_cancel_request calls error_cb synchronously: we never use it. Cancelling frees the
 *     whole connection from the pool's deferred event instead (evhttp_connection_free frees the
 *     queued request without calling anything).
 * A connection that failed in any way is retired and freed from the deferred event; a fresh one
 * is made for the next request.
 */
#include "http/http_client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "util/common.h"
#include "util/log.h"

#define DEFAULT_MAX_CONNS  8
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_BODY   ((size_t)64 << 20)
#define MAX_RESPONSE_HEAD  (64 * 1024)
/* An idle connection older than this is replaced rather than reused: the upstream (our own
 * server: 60 s keep-alive) may be closing it just as we send, which would fail the request. */
#define MAX_IDLE_S 20.0

typedef struct pool_conn {
    http_client *c;
    struct evhttp_connection *evcon;
    http_client_req *busy; /* the request in flight, NULL when idle */
    double idle_since;     /* mh_now_mono() when it last became idle */
    struct pool_conn *next;
} pool_conn;

enum cr_state { CR_QUEUED, CR_RUNNING, CR_FINISHING };

struct http_client_req {
    http_client *c;
    enum cr_state state;
    pool_conn *conn;           /* while running */
    struct evhttp_request *ev; /* while running; libevent frees it */
    enum evhttp_cmd_type method;
    char *path;
    http_header *headers; /* own copies, (nheaders) */
    size_t nheaders;
    struct evbuffer *req_body;
    struct timeval timeout;
    struct event *deadline_ev;
    size_t max_body;
    http_client_callbacks cb;
    void *arg;
    int cancelled; /* no more on_head/on_chunk */
    int error;     /* result when finishing */
    int ev_error;  /* last error_cb kind, -1 none */
    int saved_errno;
    int head_received;
    int status;
    uint64_t body_bytes;
    struct evbuffer *body; /* buffered mode */
    char message[160];
    struct http_client_req *next; /* queue or finishing list */
};

struct http_client {
    struct event_base *base;
    char *host;
    int port;
    int max_conns;
    int default_timeout_ms;
    pool_conn *conns; /* live connections */
    size_t nconns;
    pool_conn *retired;                       /* to free from work_ev */
    http_client_req *queue_head, *queue_tail; /* waiting for a connection */
    http_client_req *fin_head, *fin_tail;     /* on_done to deliver from work_ev */
    size_t pending;
    struct event *work_ev; /* deferred work: free retired connections, finish, dispatch */
    int depth;             /* user callbacks running right now */
    int closing;           /* http_client_free() called: no new requests */
    int free_later;        /* ... from inside a callback: the pool frees itself from the loop */
};

const char *http_client_strerror(int err) {
    switch (err) {
    case HTTP_CLIENT_OK: return "ok";
    case HTTP_CLIENT_ECONNECT: return "could not connect (refused, unreachable or timed out)";
    case HTTP_CLIENT_ENORESPONSE: return "connection closed before a response";
    case HTTP_CLIENT_EPARTIAL: return "connection closed in the middle of the response";
    case HTTP_CLIENT_ETIMEDOUT: return "timed out";
    case HTTP_CLIENT_ECANCELED: return "cancelled";
    case HTTP_CLIENT_EPROTO: return "malformed or oversized response";
    case HTTP_CLIENT_EINVAL: return "invalid request";
    default: return "unknown error";
    }
}

static void kick(http_client *c) {
    event_active(c->work_ev, 0, 0);
}

/* ==== Connections ==== */

static pool_conn *conn_new(http_client *c) {
    pool_conn *pc = calloc(1, sizeof *pc);
    if (!pc) return NULL;
    pc->c = c;
    pc->evcon = evhttp_connection_base_new(c->base, NULL, c->host, (ev_uint16_t)c->port);
    if (!pc->evcon) {
        free(pc);
        return NULL;
    }
    evhttp_connection_set_retries(pc->evcon, 0);
    pc->idle_since = mh_now_mono();
    evhttp_connection_set_max_headers_size(pc->evcon, MAX_RESPONSE_HEAD);
    pc->next = c->conns;
    c->conns = pc;
    c->nconns++;
    return pc;
}

/* Take a connection out of the pool; it is freed from work_ev, outside its own callbacks. */
static void conn_retire(pool_conn *pc) {
    http_client *c = pc->c;
    for (pool_conn **pp = &c->conns; *pp; pp = &(*pp)->next) {
        if (*pp == pc) {
            *pp = pc->next;
            c->nconns--;
            break;
        }
    }
    pc->busy = NULL;
    pc->next = c->retired;
    c->retired = pc;
    kick(c);
}

/* ==== Requests ==== */

static void cr_free(http_client_req *cr) {
    if (cr->deadline_ev) event_free(cr->deadline_ev);
    for (size_t i = 0; i < cr->nheaders; i++) {
        free((char *)cr->headers[i].name);
        free((char *)cr->headers[i].value);
    }
    free(cr->headers);
    free(cr->path);
    if (cr->req_body) evbuffer_free(cr->req_body);
    if (cr->body) evbuffer_free(cr->body);
    free(cr);
}

/* Run on_done and free. Only from the loop, outside libevent's callbacks for cr's connection
 * or inside them (never from inside an API call of ours). */
static void cr_complete(http_client_req *cr) {
    http_client *c = cr->c;
    http_client_result res = {
        .error = cr->error,
        .status = cr->status,
        .head_received = cr->head_received,
        .body_bytes = cr->body_bytes,
        .message = cr->error ? cr->message : "",
    };
    if (cr->body && cr->error == 0) {
        evbuffer_add(cr->body, "", 1);
        res.body_len = evbuffer_get_length(cr->body) - 1;
        res.body = (const char *)evbuffer_pullup(cr->body, -1);
    }
    c->pending--;
    c->depth++;
    cr->cb.on_done(cr, &res, cr->arg);
    c->depth--;
    cr_free(cr);
}

static void cr_set_error(http_client_req *cr, int error, const char *detail) {
    cr->error = error;
    snprintf(cr->message, sizeof cr->message, "%s:%d: %s%s%s", cr->c->host, cr->c->port,
             http_client_strerror(error), detail && *detail ? ": " : "", detail ? detail : "");
}

/* Queue cr for on_done from work_ev. */
static void cr_finish_later(http_client_req *cr) {
    http_client *c = cr->c;
    cr->state = CR_FINISHING;
    cr->next = NULL;
    if (c->fin_tail)
        c->fin_tail->next = cr;
    else
        c->fin_head = cr;
    c->fin_tail = cr;
    kick(c);
}

static void queue_remove(http_client *c, http_client_req *cr) {
    http_client_req *prev = NULL;
    for (http_client_req *q = c->queue_head; q; prev = q, q = q->next) {
        if (q != cr) continue;
        if (prev)
            prev->next = q->next;
        else
            c->queue_head = q->next;
        if (c->queue_tail == q) c->queue_tail = prev;
        q->next = NULL;
        return;
    }
}

/* Stop cr with `error`: no more on_head/on_chunk; on_done from work_ev. */
static void cr_abort(http_client_req *cr, int error, const char *detail) {
    if (cr->cancelled || cr->state == CR_FINISHING) return;
    cr->cancelled = 1;
    cr_set_error(cr, error, detail);
    if (cr->state == CR_QUEUED) queue_remove(cr->c, cr);
    /* A running request keeps its connection until work_ev frees the connection with it. */
    cr_finish_later(cr);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    cr_abort(arg, HTTP_CLIENT_ETIMEDOUT, "deadline passed");
}

void http_client_cancel(http_client_req *cr) {
    cr_abort(cr, HTTP_CLIENT_ECANCELED, NULL);
}

const char *http_client_req_header(const http_client_req *cr, const char *name) {
    if (!cr->ev || !cr->head_received) return NULL;
    return evhttp_find_header(evhttp_request_get_input_headers(cr->ev), name);
}

size_t http_client_req_each_header(const http_client_req *cr,
                                   void (*fn)(const char *name, const char *value, void *arg),
                                   void *arg) {
    if (!cr->ev || !cr->head_received) return 0;
    size_t n = 0;
    const struct evkeyvalq *h = evhttp_request_get_input_headers(cr->ev);
    for (const struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
        fn(kv->key, kv->value, arg);
        n++;
    }
    return n;
}

/* ---- libevent callbacks of a running request ---- */

static int on_ev_head(struct evhttp_request *ev, void *arg) {
    http_client_req *cr = arg;
    int status = evhttp_request_get_response_code(ev);
    if (status == 100) return 0; /* interim; libevent goes on to the real head */
    cr->head_received = 1;
    cr->status = status;
    if (!cr->cancelled && cr->cb.on_head) {
        cr->c->depth++;
        cr->cb.on_head(cr, status, cr->arg);
        cr->c->depth--;
    }
    return 0;
}

static void on_ev_chunk(struct evhttp_request *ev, void *arg) {
    http_client_req *cr = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(ev);
    size_t n = evbuffer_get_length(in);
    if (n == 0) return;
    cr->body_bytes += n;
    if (cr->cancelled) return; /* libevent drains the buffer after we return */
    if (cr->cb.on_chunk) {
        const char *data = (const char *)evbuffer_pullup(in, -1);
        cr->c->depth++;
        cr->cb.on_chunk(cr, data, n, cr->arg);
        cr->c->depth--;
    } else if (evbuffer_get_length(cr->body) + n > cr->max_body) {
        cr_abort(cr, HTTP_CLIENT_EPROTO, "response body over the limit");
    } else {
        evbuffer_add_buffer(cr->body, in);
    }
}

static void on_ev_error(enum evhttp_request_error err, void *arg) {
    http_client_req *cr = arg;
    cr->ev_error = (int)err;
    cr->saved_errno = errno; /* libevent restores the socket error before calling us */
}

static void on_ev_done(struct evhttp_request *ev, void *arg) {
    http_client_req *cr = arg;
    pool_conn *pc = cr->conn;
    int ok = 0;
    if (ev && evhttp_request_get_response_code(ev) != 0) {
        ok = 1;
        /* Data libevent did not hand to the chunk callback (not expected, but cheap to cover). */
        on_ev_chunk(ev, cr);
    } else if (ev) {
        cr_set_error(cr, HTTP_CLIENT_ECONNECT, NULL);
    } else if (cr->ev_error == EVREQ_HTTP_TIMEOUT) {
        cr_set_error(cr, HTTP_CLIENT_ETIMEDOUT,
                     cr->head_received ? "no data within the timeout, mid-response"
                                       : "no response within the timeout");
    } else if (cr->ev_error == EVREQ_HTTP_INVALID_HEADER ||
               cr->ev_error == EVREQ_HTTP_DATA_TOO_LONG) {
        cr_set_error(cr, HTTP_CLIENT_EPROTO, NULL);
    } else if (cr->head_received) {
        cr_set_error(cr, HTTP_CLIENT_EPARTIAL, cr->saved_errno ? strerror(cr->saved_errno) : NULL);
    } else if (cr->saved_errno == ECONNREFUSED) {
        cr_set_error(cr, HTTP_CLIENT_ECONNECT, strerror(cr->saved_errno));
    } else {
        cr_set_error(cr, HTTP_CLIENT_ENORESPONSE,
                     cr->saved_errno ? strerror(cr->saved_errno) : NULL);
    }
    cr->ev = NULL; /* libevent frees it after we return (or already did) */
    cr->conn = NULL;
    if (pc) {
        pc->busy = NULL;
        pc->idle_since = mh_now_mono();
        if (!ok)
            conn_retire(pc); /* freed later from work_ev, not here */
        else
            kick(pc->c); /* an idle connection: queued requests may go */
    }
    if (cr->cancelled) return; /* already on the finishing list with its error */
    cr->cancelled = 1;
    if (ok) cr->error = 0;
    /* We are inside libevent's callback for this connection, not inside an API call: on_done
     * may run now. */
    cr->state = CR_FINISHING;
    cr_complete(cr);
}

/* Put cr on an idle (or new) connection. */
static void cr_start(http_client_req *cr, pool_conn *pc) {
    http_client *c = cr->c;
    struct evhttp_request *ev = evhttp_request_new(on_ev_done, cr);
    if (!ev) {
        cr_abort(cr, HTTP_CLIENT_ECONNECT, "out of memory");
        return;
    }
    evhttp_request_set_header_cb(ev, on_ev_head);
    evhttp_request_set_chunked_cb(ev, on_ev_chunk);
    evhttp_request_set_error_cb(ev, on_ev_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(ev);
    char host[300];
    snprintf(host, sizeof host, "%s:%d", c->host, c->port);
    evhttp_add_header(h, "Host", host);
    for (size_t i = 0; i < cr->nheaders; i++)
        evhttp_add_header(h, cr->headers[i].name, cr->headers[i].value);
    if (cr->req_body) {
        char len[32];
        snprintf(len, sizeof len, "%zu", evbuffer_get_length(cr->req_body));
        evhttp_remove_header(h, "Content-Length");
        evhttp_add_header(h, "Content-Length", len);
        evbuffer_add_buffer(evhttp_request_get_output_buffer(ev), cr->req_body);
    }
    cr->state = CR_RUNNING;
    cr->conn = pc;
    cr->ev = ev;
    pc->busy = cr;
    evhttp_connection_set_timeout_tv(pc->evcon, &cr->timeout);
    /* May call on_ev_done synchronously (a refused connect); that is fine here: we run from
     * work_ev, not from inside an API call. */
    if (evhttp_make_request(pc->evcon, ev, cr->method, cr->path) != 0) {
        cr->ev = NULL; /* libevent freed it */
        cr->conn = NULL;
        conn_retire(pc);
        cr_abort(cr, HTTP_CLIENT_ECONNECT, "cannot start the request");
    }
}

/* ==== Deferred work ==== */

static void client_release(http_client *c) {
    while (c->conns) conn_retire(c->conns);
    while (c->retired) {
        pool_conn *pc = c->retired;
        c->retired = pc->next;
        evhttp_connection_free(pc->evcon);
        free(pc);
    }
    event_free(c->work_ev);
    free(c->host);
    free(c);
}

static void client_final_free_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    client_release(arg);
}

static void work_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    http_client *c = arg;
    /* 1. Finish aborted requests. A running one still holds its connection: free that
     *    connection, which frees the libevent request without calling back. */
    while (c->fin_head) {
        http_client_req *cr = c->fin_head;
        c->fin_head = cr->next;
        if (!c->fin_head) c->fin_tail = NULL;
        cr->next = NULL;
        if (cr->conn) {
            pool_conn *pc = cr->conn;
            cr->conn = NULL;
            cr->ev = NULL;
            conn_retire(pc);
        }
        cr_complete(cr);
    }
    /* 2. Free retired connections: we are not inside any of their callbacks here. */
    while (c->retired) {
        pool_conn *pc = c->retired;
        c->retired = pc->next;
        evhttp_connection_free(pc->evcon);
        free(pc);
    }
    /* 3. Start queued requests on idle or new connections. */
    double now = mh_now_mono();
    for (pool_conn *p = c->conns, *next; p; p = next) {
        next = p->next;
        if (!p->busy && now - p->idle_since > MAX_IDLE_S) conn_retire(p); /* freed next pass */
    }
    while (c->queue_head) {
        pool_conn *pc = NULL;
        for (pool_conn *p = c->conns; p; p = p->next)
            if (!p->busy) {
                pc = p;
                break;
            }
        if (!pc && (int)c->nconns < c->max_conns) pc = conn_new(c);
        if (!pc) break;
        http_client_req *cr = c->queue_head;
        c->queue_head = cr->next;
        if (!c->queue_head) c->queue_tail = NULL;
        cr->next = NULL;
        cr_start(cr, pc);
    }
    /* 4. http_client_free() was called from inside a callback: everything has been cancelled
     *    and delivered above; free the pool from a fresh event, not from this one. */
    if (c->free_later == 1 && c->depth == 0 && !c->fin_head) {
        c->free_later = 2;
        if (event_base_once(c->base, -1, EV_TIMEOUT, client_final_free_cb, c, NULL) != 0)
            client_final_free_cb(-1, 0, c);
    }
}

/* ==== API ==== */

http_client *http_client_new(struct event_base *base, const char *host, int port, int max_conns,
                             int default_timeout_ms) {
    if (!host || port <= 0 || port > 65535) return NULL;
    http_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base = base;
    c->host = strdup(host);
    c->port = port;
    c->max_conns = max_conns > 0 ? max_conns : DEFAULT_MAX_CONNS;
    c->default_timeout_ms = default_timeout_ms > 0 ? default_timeout_ms : DEFAULT_TIMEOUT_MS;
    c->work_ev = event_new(base, -1, 0, work_cb, c);
    if (!c->host || !c->work_ev) {
        if (c->work_ev) event_free(c->work_ev);
        free(c->host);
        free(c);
        return NULL;
    }
    return c;
}

static int parse_method(const char *m, enum evhttp_cmd_type *out) {
    static const struct {
        const char *name;
        enum evhttp_cmd_type type;
    } methods[] = {
        {"GET", EVHTTP_REQ_GET},         {"POST", EVHTTP_REQ_POST}, {"PUT", EVHTTP_REQ_PUT},
        {"DELETE", EVHTTP_REQ_DELETE},   {"HEAD", EVHTTP_REQ_HEAD}, {"PATCH", EVHTTP_REQ_PATCH},
        {"OPTIONS", EVHTTP_REQ_OPTIONS},
    };
    for (size_t i = 0; i < MH_ARRAY_LEN(methods); i++)
        if (strcasecmp(m, methods[i].name) == 0) {
            *out = methods[i].type;
            return 0;
        }
    return -1;
}

int http_client_request(http_client *c, const http_client_request_opts *o,
                        const http_client_callbacks *cb, void *arg, http_client_req **out) {
    if (out) *out = NULL;
    enum evhttp_cmd_type method;
    if (!c || c->closing || !o || !cb || !cb->on_done || !o->method || !o->path ||
        o->path[0] != '/' || parse_method(o->method, &method) < 0 || (o->body_len && !o->body))
        return HTTP_CLIENT_EINVAL;
    http_client_req *cr = calloc(1, sizeof *cr);
    if (!cr) return HTTP_CLIENT_EINVAL;
    cr->c = c;
    cr->method = method;
    cr->cb = *cb;
    cr->arg = arg;
    cr->ev_error = -1;
    cr->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
    int tmo = o->timeout_ms > 0 ? o->timeout_ms : c->default_timeout_ms;
    cr->timeout.tv_sec = tmo / 1000;
    cr->timeout.tv_usec = (tmo % 1000) * 1000;
    cr->path = strdup(o->path);
    int bad = !cr->path;
    if (o->nheaders) {
        cr->headers = calloc(o->nheaders, sizeof *cr->headers);
        bad |= !cr->headers;
        for (size_t i = 0; !bad && i < o->nheaders; i++) {
            if (!o->headers[i].name || !o->headers[i].value) {
                bad = 1;
                break;
            }
            cr->headers[i].name = strdup(o->headers[i].name);
            cr->headers[i].value = strdup(o->headers[i].value);
            cr->nheaders = i + 1;
            bad |= !cr->headers[i].name || !cr->headers[i].value;
        }
    }
    if (!bad && (o->body_len || method == EVHTTP_REQ_POST || method == EVHTTP_REQ_PUT)) {
        cr->req_body = evbuffer_new();
        bad |= !cr->req_body || (o->body_len && evbuffer_add(cr->req_body, o->body, o->body_len));
    }
    if (!bad && !cb->on_chunk) bad |= !(cr->body = evbuffer_new());
    if (!bad && o->deadline_ms > 0) {
        cr->deadline_ev = evtimer_new(c->base, deadline_cb, cr);
        struct timeval tv = {o->deadline_ms / 1000, (o->deadline_ms % 1000) * 1000};
        bad |= !cr->deadline_ev || event_add(cr->deadline_ev, &tv) != 0;
    }
    if (bad) {
        cr_free(cr);
        return HTTP_CLIENT_EINVAL;
    }
    cr->state = CR_QUEUED;
    if (c->queue_tail)
        c->queue_tail->next = cr;
    else
        c->queue_head = cr;
    c->queue_tail = cr;
    c->pending++;
    kick(c); /* started from the loop, so no callback can run inside this call */
    if (out) *out = cr;
    return 0;
}

size_t http_client_pending(const http_client *c) {
    return c->pending;
}

size_t http_client_connections(const http_client *c) {
    return c->nconns;
}

void http_client_free(http_client *c) {
    if (!c || c->closing) return;
    c->closing = 1;
    for (pool_conn *pc = c->conns; pc; pc = pc->next)
        if (pc->busy) cr_abort(pc->busy, HTTP_CLIENT_ECANCELED, NULL);
    while (c->queue_head) cr_abort(c->queue_head, HTTP_CLIENT_ECANCELED, NULL);
    if (c->depth > 0) {
        /* Inside one of our callbacks, libevent may still be using a connection of ours:
         * finish from the loop (work_cb delivers the on_done calls, then frees the pool). */
        c->free_later = 1;
        kick(c);
        return;
    }
    work_cb(-1, 0, c); /* delivers on_done for all of them and retires their connections */
    client_release(c);
}
