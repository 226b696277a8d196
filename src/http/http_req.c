/* http_req.c — the request object handlers own: accessors, answers, client-gone handling. */
#include "http/http_req.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "http/http_internal.h"
#include "util/common.h"

/* ==== Life cycle ==== */

http_req *http_req_new_(http_server *srv, http_conn *conn, struct evhttp_request *ev) {
    http_req *r = mh_xcalloc(1, sizeof *r);
    r->srv = srv;
    r->base = srv->base;
    r->conn = conn;
    r->ev = ev;
    r->route_index = -1;
    r->t_start = mh_now_mono();
    TAILQ_INIT(&r->query);
    if (conn) conn->current = r;
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    if (evcon) {
        char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(evcon, &addr, &port);
        snprintf(r->peer, sizeof r->peer, "%s", addr ? addr : "");
    }
    r->next = srv->reqs;
    if (srv->reqs) srv->reqs->prev = r;
    srv->reqs = r;
    /* Counted in the unmatched slot until the dispatcher moves it to its route. */
    srv->stats[srv->nroutes].requests++;
    srv->stats[srv->nroutes].in_flight++;
    return r;
}

static void req_free(http_req *r) {
    if (r->notify_ev) event_free(r->notify_ev);
    if (r->chunk) evbuffer_free(r->chunk);
    evhttp_clear_headers(&r->query);
    for (size_t i = 0; i < r->nsegs; i++) free(r->segs[i]);
    free(r->segs);
    free(r->raw_path);
    free(r->path);
    free(r->rest);
    free(r->body);
    free(r->note);
    free(r);
}

void http_req_release_conn_(http_req *r) {
    if (!r->conn) return;
    http_conn_disarm_(r->conn);
    r->conn->current = NULL;
    r->conn = NULL;
}

void http_req_finish_(http_req *r) {
    MH_ASSERT(!(r->flags & REQ_DONE));
    r->flags |= REQ_DONE;
    http_req_release_conn_(r);
    http_server *s = r->srv;
    if (s) {
        int gone = (r->flags & REQ_GONE) != 0;
        int status = r->status ? r->status : 499;
        double dt = mh_now_mono() - r->t_start;
        http_route_stats *st = &s->stats[r->route_index < 0 ? s->nroutes : (size_t)r->route_index];
        st->in_flight--;
        st->duration_sum_s += dt;
        if (status >= 200 && status < 300)
            st->status_2xx++;
        else if (status >= 300 && status < 400)
            st->status_3xx++;
        else if (status >= 400 && status < 500)
            st->status_4xx++;
        else if (status >= 500)
            st->status_5xx++;
        if (s->log_fn) {
            http_log_entry e = {
                .method = r->method,
                .path = r->raw_path ? r->raw_path : "",
                .route = r->route_index < 0 ? NULL : st->pattern,
                .peer = r->peer,
                .status = status,
                .client_gone = gone,
                .duration_s = dt,
                .bytes_out = r->bytes_out,
                .note = r->note,
            };
            s->log_fn(&e, s->log_arg);
        }
        if (r->prev)
            r->prev->next = r->next;
        else
            s->reqs = r->next;
        if (r->next) r->next->prev = r->prev;
        r->prev = r->next = NULL;
    }
    if (r->flags & REQ_IN_CB)
        r->flags |= REQ_FREE_LATER; /* inside on_close: freed when it returns */
    else
        req_free(r);
}

static void req_notify_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    http_req *r = arg;
    if (!r->on_close || (r->flags & REQ_DONE)) return;
    http_close_fn fn = r->on_close;
    r->on_close = NULL; /* at most once */
    r->flags |= REQ_IN_CB;
    fn(r, r->on_close_arg);
    r->flags &= ~REQ_IN_CB;
    if (r->flags & REQ_FREE_LATER) req_free(r);
}

static void req_schedule_notify(http_req *r) {
    if (!r->on_close || (r->flags & REQ_DONE)) return;
    if (!r->notify_ev) r->notify_ev = event_new(r->base, -1, 0, req_notify_cb, r);
    MH_ASSERT(r->notify_ev);
    event_active(r->notify_ev, 0, 0);
}

void http_req_mark_gone_(http_req *r) {
    if (r->flags & REQ_GONE) return;
    r->flags |= REQ_GONE;
    if (r->srv && !(r->flags & REQ_DONE)) {
        http_server *s = r->srv;
        s->stats[r->route_index < 0 ? s->nroutes : (size_t)r->route_index].client_gone++;
    }
    req_schedule_notify(r);
}

void http_req_on_close(http_req *r, http_close_fn fn, void *arg) {
    r->on_close = fn;
    r->on_close_arg = arg;
    if (!fn) return;
    if (r->flags & REQ_GONE)
        req_schedule_notify(r);
    else if (r->conn)
        http_conn_arm_close_watch_(r->conn);
}

int http_req_gone(const http_req *r) {
    return (r->flags & REQ_GONE) != 0;
}

size_t http_req_output_pending(const http_req *r) {
    if (!r->ev || (r->flags & REQ_GONE)) return 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->ev);
    if (!evcon) return 0;
    return evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(evcon)));
}

struct evhttp_request *http_req_evhttp(http_req *r) {
    return (r->flags & REQ_GONE) ? NULL : r->ev;
}

/* ==== Reading ==== */

const char *http_req_method(const http_req *r) {
    return r->method;
}

const char *http_req_path(const http_req *r) {
    return r->path ? r->path : "/";
}

const char *http_req_raw_path(const http_req *r) {
    return r->raw_path ? r->raw_path : "/";
}

const http_route *http_req_route(const http_req *r) {
    if (!r->srv || r->route_index < 0) return NULL;
    return &r->srv->routes[r->route_index].route;
}

const char *http_req_param(const http_req *r, const char *name) {
    for (size_t i = 0; i < r->nparams; i++) {
        const char *n = r->param_names[i];
        if (n[0] == '{') {
            size_t len = strlen(n) - 2;
            if (strlen(name) == len && strncmp(n + 1, name, len) == 0) return r->param_values[i];
        } else if (strcmp(n, name) == 0) {
            return r->param_values[i];
        }
    }
    return NULL;
}

size_t http_req_nsegments(const http_req *r) {
    return r->nsegs;
}

const char *http_req_segment(const http_req *r, size_t i) {
    return i < r->nsegs ? r->segs[i] : NULL;
}

const char *http_req_query(http_req *r, const char *key) {
    if (r->query_state == 0) {
        const struct evhttp_uri *uri = r->ev ? evhttp_request_get_evhttp_uri(r->ev) : NULL;
        const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
        r->query_state = 1;
        if (q && evhttp_parse_query_str(q, &r->query) < 0) r->query_state = -1;
    }
    if (r->query_state < 0) return NULL;
    return evhttp_find_header(&r->query, key);
}

const char *http_req_header(const http_req *r, const char *name) {
    if (!r->ev) return NULL;
    return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const char *http_req_body(http_req *r, size_t *len) {
    if (!r->body) {
        struct evbuffer *in = r->ev ? evhttp_request_get_input_buffer(r->ev) : NULL;
        size_t n = in ? evbuffer_get_length(in) : 0;
        r->body = mh_xmalloc(n + 1);
        if (n) evbuffer_copyout(in, r->body, n);
        r->body[n] = 0;
        r->body_len = n;
    }
    if (len) *len = r->body_len;
    return r->body;
}

int http_req_json(http_req *r, json_t **out, http_error *e) {
    size_t n;
    const char *b = http_req_body(r, &n);
    return http_json_parse(b, n, 1, out, e);
}

const char *http_req_bearer(const http_req *r) {
    const char *h = http_req_header(r, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    h += 7;
    while (*h == ' ') h++;
    return h;
}

int http_token_equal(const char *given, const char *secret) {
    size_t a = strlen(given), b = strlen(secret);
    /* Every byte of the secret is compared, whatever matched before and whatever the length
     * of what was given (a short guess is read cyclically): the time depends on the secret's
     * length only. volatile keeps the compiler from turning the loop into an early exit. */
    volatile unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++) {
        unsigned char g = a ? (unsigned char)given[i % a] : 0;
        diff |= (unsigned char)((unsigned char)secret[i] ^ g);
    }
    return diff == 0;
}

int http_req_bearer_ok(const http_req *r, const char *token) {
    if (!token || !*token) return 1;
    const char *got = http_req_bearer(r);
    if (!got) return 0;
    return http_token_equal(got, token);
}

const char *http_req_peer(const http_req *r) {
    return r->peer;
}

int http_req_is_loopback(const http_req *r) {
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, r->peer, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, r->peer, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
        if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
    }
    return 0;
}

double http_req_age(const http_req *r) {
    return mh_now_mono() - r->t_start;
}

void http_req_set_note(http_req *r, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(r->note);
    r->note = mh_xstrdup(buf);
}

/* ==== Answering ==== */

const char *http_reason_phrase_(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return NULL; /* libevent picks its own */
    }
}

int http_req_set_header(http_req *r, const char *name, const char *value) {
    MH_ASSERT(!(r->flags & (REQ_DONE | REQ_STREAMING)));
    if (!r->ev) return -1;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_remove_header(h, name);
    return evhttp_add_header(h, name, value) == 0 ? 0 : -1;
}

int http_reply(http_req *r, int status, const char *content_type, const void *data, size_t len) {
    MH_ASSERT(!(r->flags & (REQ_DONE | REQ_STREAMING)));
    r->status = status;
    int rc = -1;
    struct evhttp_request *ev = r->ev;
    r->ev = NULL;
    /* Off the connection first: libevent may free the connection synchronously inside the send
     * (Connection: close), and its close callback must not find us. */
    http_req_release_conn_(r);
    if (ev && !(r->flags & REQ_GONE)) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(ev);
        evhttp_remove_header(h, "Content-Type");
        evhttp_add_header(h, "Content-Type",
                          content_type ? content_type : "application/octet-stream");
        struct evbuffer *b = evbuffer_new();
        MH_ASSERT(b);
        if (len) evbuffer_add(b, data, len);
        evhttp_send_reply(ev, status, http_reason_phrase_(status), b);
        evbuffer_free(b);
        r->bytes_out += len;
        rc = 0;
    } else if (ev) {
        evhttp_send_reply_end(ev); /* detached by libevent: this frees it */
    }
    http_req_finish_(r);
    return rc;
}

int http_reply_json(http_req *r, int status, const json_t *body) {
    static const char fallback[] = "{\"error\":{\"message\":\"cannot serialise the answer\","
                                   "\"type\":\"server_error\",\"param\":null,\"code\":null}}";
    char *text = http_json_dump(body);
    if (!text) return http_reply(r, 500, "application/json", fallback, sizeof fallback - 1);
    int rc = http_reply(r, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

int http_reply_json_take(http_req *r, int status, json_t *body) {
    int rc = http_reply_json(r, status, body);
    json_decref(body);
    return rc;
}

int http_reply_error(http_req *r, const http_error *e) {
    if (e->retry_after_s > 0) {
        char v[24];
        snprintf(v, sizeof v, "%d", e->retry_after_s);
        http_req_set_header(r, "Retry-After", v);
    }
    json_t *env = http_error_envelope(e);
    int status = e->status >= 400 ? e->status : 500;
    if (!env) return http_reply(r, status, "application/json", "{}", 2);
    return http_reply_json_take(r, status, env);
}

int http_reply_errorf(http_req *r, int status, const char *type, const char *param,
                      const char *code, const char *fmt, ...) {
    http_error e;
    char msg[sizeof e.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    http_error_set(&e, status, type, param, code, "%s", msg);
    return http_reply_error(r, &e);
}
