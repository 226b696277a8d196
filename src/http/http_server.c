/* http_server.c — evhttp server: route table, dispatch, per-connection guard, counters.
 *
 * The guard. evhttp in libevent 2.1 offers no hook between reading a request head and reading its
 * body, so a body over the limit would be answered by libevent's own HTML 413 (after reading up to
 * the limit, and often lost to a connection reset). Instead each connection gets a bufferevent of
 * ours (evhttp_set_bevcb) with a callback on its input buffer, which runs when bytes arrive and
 * before evhttp parses them. It holds back the bytes of a request head until the head is complete,
 * then hands it to evhttp unchanged — unless its Content-Length is over the limit: then the head
 * goes in with `Content-Length: 0`, the body is thrown away as it arrives, and the dispatch of that
 * request answers 413 in the OpenAI envelope. The guard only edits the front of the input buffer,
 * which libevent allows (bufferevent input buffers are frozen at the end only).
 *
 * Connections are attached right after accept (one-shot event) to install the close callback;
 * that callback is the only place a connection's state is freed.
 */
#include "http/http_server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "http/http_internal.h"
#include "http/http_json.h"
#include "http/http_req.h"
#include "util/common.h"
#include "util/log.h"

#define DEFAULT_MAX_BODY   ((size_t)8 << 20)
#define DEFAULT_MAX_HEADER ((size_t)64 << 10)
#define DEFAULT_TIMEOUT_S  60
/* While a request is handled with reading re-enabled, at most this much pipelined data is read. */
#define ARMED_READ_HIGH_WM (64 * 1024)

static void conn_guard_run(http_conn *c);

/* ==== Route patterns ==== */

static void route_entry_clear(route_entry *e) {
    free((char *)e->route.method);
    free((char *)e->route.pattern);
    for (size_t i = 0; i < e->nsegs; i++) free(e->segs[i]);
    free(e->segs);
}

/* Split "/a/{b}/c" into segments; a final "{*}" makes the pattern a prefix. */
static int route_compile(route_entry *e, const http_route *r, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    if (!r->method || !r->pattern || !r->handler || r->pattern[0] != '/') {
        snprintf(err, errlen, "route %s: needs a method, a pattern starting with '/' and a handler",
                 r->pattern ? r->pattern : "(null)");
        return -1;
    }
    e->route = *r;
    e->route.method = mh_xstrdup(r->method);
    e->route.pattern = mh_xstrdup(r->pattern);
    const char *p = r->pattern;
    size_t nparams = 0;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 3 && strncmp(p, "{*}", 3) == 0) {
            if (p[3] != 0) {
                snprintf(err, errlen, "route %s: {*} must be the last segment", r->pattern);
                return -1;
            }
            e->wildcard = 1;
            break;
        }
        if (p[0] == '{') {
            if (n < 3 || p[n - 1] != '}' || ++nparams > HTTP_MAX_PARAMS - 1) {
                snprintf(err, errlen, "route %s: bad or too many {name} segments", r->pattern);
                return -1;
            }
        }
        e->segs = mh_xrealloc(e->segs, (e->nsegs + 1) * sizeof *e->segs);
        char *seg = mh_xmalloc(n + 1);
        memcpy(seg, p, n);
        seg[n] = 0;
        e->segs[e->nsegs++] = seg;
        p += n;
    }
    return 0;
}

/* Does the request path match the pattern? Fills the request's params when it does. */
static int route_match(const route_entry *e, http_req *r) {
    if (e->wildcard ? r->nsegs < e->nsegs : r->nsegs != e->nsegs) return 0;
    for (size_t i = 0; i < e->nsegs; i++)
        if (e->segs[i][0] != '{' && strcmp(e->segs[i], r->segs[i]) != 0) return 0;
    r->nparams = 0;
    for (size_t i = 0; i < e->nsegs; i++) {
        if (e->segs[i][0] != '{') continue;
        r->param_names[r->nparams] = e->segs[i];
        r->param_values[r->nparams] = r->segs[i];
        r->nparams++;
    }
    if (e->wildcard) {
        size_t len = 0;
        for (size_t i = e->nsegs; i < r->nsegs; i++) len += strlen(r->segs[i]) + 1;
        free(r->rest);
        r->rest = mh_xmalloc(len + 1);
        r->rest[0] = 0;
        for (size_t i = e->nsegs; i < r->nsegs; i++) {
            if (i > e->nsegs) strcat(r->rest, "/");
            strcat(r->rest, r->segs[i]);
        }
        r->param_names[r->nparams] = "*";
        r->param_values[r->nparams] = r->rest;
        r->nparams++;
    }
    return 1;
}

static int method_matches(const char *route_method, const char *method) {
    if (strcmp(route_method, "*") == 0 || strcmp(route_method, method) == 0) return 1;
    return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

/* ==== Connection guard ==== */

static http_conn *conn_find(http_server *s, struct bufferevent *bev) {
    for (http_conn *c = s->conns; c; c = c->next)
        if (c->bev == bev) return c;
    return NULL;
}

static void conn_free(http_conn *c) {
    http_server *s = c->srv;
    if (c->guard) evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->guard);
    if (c->attach_ev) event_free(c->attach_ev);
    if (c->stash) evbuffer_free(c->stash);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    free(c);
}

/* libevent is tearing the connection down (client EOF, error, timeout, keep-alive close, server
 * free). Runs inside evhttp_connection_free, before the bufferevent is freed. */
static void conn_close_cb(struct evhttp_connection *evcon, void *arg) {
    (void)evcon;
    http_conn *c = arg;
    http_req *r = c->current;
    if (r) {
        /* A request whose client left mid-answer has been detached (no connection) and is ours to
         * free with evhttp_send_reply_end. One still attached is freed by libevent right after
         * this callback (server shutdown): forget it. */
        if (r->ev && evhttp_request_get_connection(r->ev) != NULL) r->ev = NULL;
        r->conn = NULL;
        c->current = NULL;
        http_req_mark_gone_(r);
    }
    conn_free(c);
}

static void conn_attach(http_conn *c) {
    if (c->evcon) return;
    /* evhttp made this bufferevent's callback argument its connection object. */
    void *cbarg = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, NULL, &cbarg);
    MH_ASSERT(cbarg != NULL);
    c->evcon = cbarg;
    evhttp_connection_set_closecb(c->evcon, conn_close_cb, c);
}

static void conn_attach_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    conn_attach(arg);
}

/* Parse the complete head at the front of the stash: Content-Length (-1 when absent or not a
 * plain number), chunked transfer coding, Expect: 100-continue. */
static void head_inspect(const char *h, size_t n, int64_t *clen, int *chunked, int *expect) {
    *clen = -1;
    *chunked = 0;
    *expect = 0;
    const char *p = memchr(h, '\n', n); /* skip the request line */
    while (p && (size_t)(p - h) < n) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', n - (size_t)(line - h));
        if (!eol) break;
        size_t len = (size_t)(eol - line);
        if (len && line[len - 1] == '\r') len--;
        const char *colon = memchr(line, ':', len);
        if (colon) {
            size_t klen = (size_t)(colon - line);
            const char *v = colon + 1;
            size_t vlen = len - klen - 1;
            while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
            while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
            if (klen == 14 && strncasecmp(line, "content-length", 14) == 0 && *clen < 0) {
                int64_t x = 0;
                size_t i = 0;
                for (; i < vlen && v[i] >= '0' && v[i] <= '9' && x < ((int64_t)1 << 56); i++)
                    x = x * 10 + (v[i] - '0');
                if (i == vlen && vlen > 0) *clen = x;
            } else if (klen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
                *chunked = 1; /* any transfer coding: leave the body to libevent */
            } else if (klen == 6 && strncasecmp(line, "expect", 6) == 0 && vlen == 12 &&
                       strncasecmp(v, "100-continue", 12) == 0) {
                *expect = 1;
            }
        }
        p = eol;
    }
}

/* The head [0, head_len) in the stash asks for a body over the limit: rewrite it to carry no
 * body, drop the body bytes already here and remember to drop the rest as it arrives. */
static void head_refuse_body(http_conn *c, size_t head_len, uint64_t clen, int expect) {
    const char *h = (const char *)evbuffer_pullup(c->stash, (ev_ssize_t)head_len);
    struct evbuffer *nh = evbuffer_new();
    MH_ASSERT(h && nh);
    const char *line = h;
    const char *end = h + head_len;
    int first = 1;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t len = (size_t)(eol - line); /* head_len ends with a line break: eol != NULL */
        size_t content = (len && line[len - 1] == '\r') ? len - 1 : len;
        if (content == 0) break; /* the blank line */
        int drop = !first && content >= 15 && strncasecmp(line, "content-length:", 15) == 0;
        if (!drop) {
            evbuffer_add(nh, line, content);
            evbuffer_add(nh, "\r\n", 2);
        }
        first = 0;
        line = eol + 1;
    }
    evbuffer_add_printf(nh, "Content-Length: 0\r\n\r\n");
    evbuffer_drain(c->stash, head_len);
    size_t have = evbuffer_get_length(c->stash);
    size_t drop = have < clen ? have : (size_t)clen;
    evbuffer_drain(c->stash, drop);
    c->discard_left = clen - drop;
    c->oversize_pending = 1;
    c->oversize_len = clen;
    c->oversize_close = expect; /* the client waits for 100 and will not send the body */
    c->unparsed = evbuffer_get_length(nh);
    evbuffer_prepend_buffer(c->stash, nh);
    evbuffer_free(nh);
}

static int method_supported(const char *m, size_t n) {
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < MH_ARRAY_LEN(known); i++)
        if (strlen(known[i]) == n && memcmp(known[i], m, n) == 0) return 1;
    return 0;
}

/* The printable start of a token, for an error message. */
static void token_copy(char *out, size_t outlen, const char *t, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < outlen && k < 32; i++)
        out[k++] = t[i] > ' ' && t[i] < 127 ? t[i] : '?';
    out[k] = 0;
}

/* Judge the request line of a complete head: 0 when libevent may parse it, else the status we
 * answer ourselves — 400 (not three space-separated parts), 505 (a version other than HTTP/1.0
 * or 1.1: libevent would echo whatever digits it read, "HTTP/-1.1 501") or 501 (a method we do
 * not serve: libevent would answer with its own HTML page). */
static int request_line_check(const char *h, size_t n, char *what, size_t whatlen) {
    const char *eol = memchr(h, '\n', n);
    size_t len = eol ? (size_t)(eol - h) : n;
    if (len && h[len - 1] == '\r') len--;
    what[0] = 0;
    const char *sp1 = memchr(h, ' ', len);
    if (!sp1 || sp1 == h) return 400;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', len - (size_t)(target - h));
    if (!sp2 || sp2 == target) return 400;
    const char *ver = sp2 + 1;
    size_t vlen = len - (size_t)(ver - h);
    if (vlen == 0 || memchr(ver, ' ', vlen)) return 400;
    if (vlen != 8 || (memcmp(ver, "HTTP/1.1", 8) != 0 && memcmp(ver, "HTTP/1.0", 8) != 0)) {
        token_copy(what, whatlen, ver, vlen);
        return vlen > 5 && memcmp(ver, "HTTP/", 5) == 0 ? 505 : 400;
    }
    if (!method_supported(h, (size_t)(sp1 - h))) {
        token_copy(what, whatlen, h, (size_t)(sp1 - h));
        return 501;
    }
    return 0;
}

/* The head at the front of the stash is refused: replace everything with a minimal request that
 * libevent parses, throw away whatever else the client sends, and answer `status` at dispatch
 * (the connection closes after it). */
static void head_reject(http_conn *c, int status) {
    static const char fake[] = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    evbuffer_drain(c->stash, evbuffer_get_length(c->stash));
    evbuffer_add(c->stash, fake, sizeof fake - 1);
    c->discard_left = UINT64_MAX;
    c->unparsed = sizeof fake - 1;
    c->reject_status = status;
}

/* Move whatever libevent has not consumed into the stash and look for the end of the head. */
static void conn_guard_run(http_conn *c) {
    struct evbuffer *in = bufferevent_get_input(c->bev);
    http_server *s = c->srv;
    if (c->discard_left > 0 && evbuffer_get_length(in) > c->unparsed) {
        /* Body bytes of the refused request follow its rewritten head, which may still sit
         * unparsed at the front (a pipelined request waiting for the previous answer). */
        struct evbuffer *keep = NULL;
        if (c->unparsed) {
            keep = evbuffer_new();
            MH_ASSERT(keep);
            evbuffer_remove_buffer(in, keep, c->unparsed);
        }
        size_t have = evbuffer_get_length(in);
        size_t n = have < c->discard_left ? have : (size_t)c->discard_left;
        evbuffer_drain(in, n);
        c->discard_left -= n;
        if (keep) {
            evbuffer_prepend_buffer(in, keep);
            evbuffer_free(keep);
        }
    }
    if (c->gstate != GUARD_HEAD || evbuffer_get_length(in) == 0) return;
    evbuffer_remove_buffer(in, c->stash, evbuffer_get_length(in));
    size_t head_len = 0;
    for (;;) {
        struct evbuffer_ptr pos;
        size_t eol_len = 0;
        if (evbuffer_ptr_set(c->stash, &pos, c->scan_pos, EVBUFFER_PTR_SET) < 0) break;
        pos = evbuffer_search_eol(c->stash, &pos, &eol_len, EVBUFFER_EOL_CRLF);
        if (pos.pos < 0) break;
        size_t line_len = (size_t)pos.pos - c->scan_pos;
        c->scan_pos = (size_t)pos.pos + eol_len;
        if (line_len == 0) {
            head_len = c->scan_pos;
            break;
        }
    }
    if (head_len == 0) {
        if (evbuffer_get_length(c->stash) > s->max_header + 2) {
            /* Too big to be a head we accept: let libevent reject it its own way. */
            c->gstate = GUARD_OFF;
            evbuffer_prepend_buffer(in, c->stash);
        }
        return; /* wait for the rest of the head */
    }
    int64_t clen;
    int chunked, expect;
    const char *h = (const char *)evbuffer_pullup(c->stash, (ev_ssize_t)head_len);
    int bad = request_line_check(h, head_len, c->reject_what, sizeof c->reject_what);
    if (bad) {
        head_reject(c, bad);
        c->gstate = GUARD_PASSED;
        c->scan_pos = 0;
        evbuffer_prepend_buffer(in, c->stash);
        return;
    }
    head_inspect(h, head_len, &clen, &chunked, &expect);
    if (!chunked && clen > 0 && (uint64_t)clen > s->max_body)
        head_refuse_body(c, head_len, (uint64_t)clen, expect);
    c->gstate = GUARD_PASSED;
    c->scan_pos = 0;
    evbuffer_prepend_buffer(in, c->stash);
}

/* Input-buffer callback: bytes were added (socket read) or removed (evhttp parsing). */
static void conn_guard_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    (void)buf;
    http_conn *c = arg;
    if (c->in_guard) return;
    if (info->n_deleted && c->unparsed) /* libevent consumed some of the rewritten head */
        c->unparsed -= info->n_deleted < c->unparsed ? info->n_deleted : c->unparsed;
    if (info->n_added == 0) return;
    if (c->gstate == GUARD_PASSED && c->discard_left == 0) return; /* body bytes: libevent's */
    c->in_guard = 1;
    conn_guard_run(c);
    c->in_guard = 0;
}

/* evhttp asks for the bufferevent of a new connection (evhttp_set_bevcb). */
static struct bufferevent *conn_new_bev(struct event_base *base, void *arg) {
    http_server *s = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    if (!bev) return NULL; /* evhttp makes its own; that connection just has no guard */
    http_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->stash = evbuffer_new()) ||
        !(c->attach_ev = event_new(base, -1, 0, conn_attach_cb, c)) ||
        !(c->guard = evbuffer_add_cb(bufferevent_get_input(bev), conn_guard_cb, c))) {
        if (c && c->stash) evbuffer_free(c->stash);
        if (c && c->attach_ev) event_free(c->attach_ev);
        free(c);
        return bev;
    }
    c->srv = s;
    c->bev = bev;
    c->gstate = GUARD_HEAD;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    /* evhttp builds the connection object around `bev` as soon as we return; this runs before
     * the loop polls again, so before any byte of the connection is read. */
    event_active(c->attach_ev, 0, 0);
    return bev;
}

/* While a request is handled libevent does not read the connection, so a client's EOF goes
 * unnoticed until a write fails. Re-enable reading with no read callback (arriving data stays in
 * the buffer for the next request) and no read timeout, so that EOF reaches evhttp's error
 * callback at once, which detaches the request and frees the connection (conn_close_cb). */
void http_conn_arm_close_watch_(http_conn *c) {
    if (c->armed || !c->evcon) return;
    bufferevent_data_cb wcb;
    bufferevent_event_cb ecb;
    void *cbarg;
    bufferevent_getcb(c->bev, NULL, &wcb, &ecb, &cbarg);
    bufferevent_setcb(c->bev, NULL, wcb, ecb, cbarg);
    bufferevent_set_timeouts(c->bev, NULL, &c->srv->timeout);
    bufferevent_setwatermark(c->bev, EV_READ, 0, ARMED_READ_HIGH_WM);
    bufferevent_enable(c->bev, EV_READ);
    c->armed = 1;
}

/* Back to libevent's own state before it writes the answer: not reading, usual timeouts. */
void http_conn_disarm_(http_conn *c) {
    if (!c->armed) return;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_set_timeouts(c->bev, &c->srv->timeout, &c->srv->timeout);
    c->armed = 0;
}

/* ==== Browser-side checks ==== */

/* The host part of a Host header value, lowercased, without port and trailing dot ("[::1]"
 * keeps its brackets). 0 when it does not fit. */
static int host_name_of(const char *v, char *out, size_t outlen) {
    size_t n;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close) return 0;
        n = (size_t)(close - v) + 1;
    } else {
        const char *colon = strchr(v, ':');
        n = colon && !strchr(colon + 1, ':') ? (size_t)(colon - v) : strlen(v);
    }
    if (n == 0 || n >= outlen) return 0;
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)v[i]);
    if (n > 1 && out[n - 1] == '.') n--;
    out[n] = 0;
    return 1;
}

static int is_loopback_name(const char *h) {
    struct in_addr a4;
    if (strcmp(h, "localhost") == 0 || strcmp(h, "[::1]") == 0 || strcmp(h, "::1") == 0) return 1;
    return inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

static int host_allowed(const http_server *s, const char *value) {
    if (!s->host_check || s->any_host) return 1;
    char h[256];
    if (!host_name_of(value, h, sizeof h)) return 0;
    if (is_loopback_name(h) || (s->bound_host && strcmp(h, s->bound_host) == 0)) return 1;
    for (char **a = s->allowed_hosts; a && *a; a++)
        if (strcmp(h, *a) == 0) return 1;
    return 0;
}

/* Is `origin` the server's own, as the request names it: "http://" + its Host header? */
static int origin_is_own(const http_req *r, const char *origin) {
    const char *host = http_req_header(r, "Host");
    return host && strncasecmp(origin, "http://", 7) == 0 && strcasecmp(origin + 7, host) == 0;
}

static int origin_listed(const http_server *s, const char *origin) {
    for (char **o = s->cors_origins; o && *o; o++)
        if (strcasecmp(*o, origin) == 0) return 1;
    return 0;
}

/* A cross-site request to a SAME_ORIGIN route: the reason, or NULL when it may go on. */
static const char *cross_site_reason(const http_req *r) {
    const char *site = http_req_header(r, "Sec-Fetch-Site");
    if (site && strcasecmp(site, "same-origin") != 0 && strcasecmp(site, "none") != 0)
        return "Sec-Fetch-Site";
    const char *origin = http_req_header(r, "Origin");
    if (origin && !origin_is_own(r, origin)) return "Origin";
    return NULL;
}

/* OPTIONS with Access-Control-Request-Method on a path of a CORS route: answer it here, before
 * auth (preflights carry no credentials). 1 when answered. */
static int cors_preflight(http_server *s, http_req *r) {
    if (strcmp(r->method, "OPTIONS") != 0 || !http_req_header(r, "Access-Control-Request-Method"))
        return 0;
    char methods[128] = "";
    size_t n = 0;
    for (size_t i = 0; i < s->nroutes; i++) {
        const route_entry *e = &s->routes[i];
        if (!(e->route.flags & HTTP_ROUTE_CORS) || !route_match(e, r)) continue;
        if (strstr(methods, e->route.method)) continue;
        n += (size_t)snprintf(methods + n, n < sizeof methods ? sizeof methods - n : 0, "%s%s",
                              n ? ", " : "", e->route.method);
        if (n >= sizeof methods) break;
    }
    r->nparams = 0;
    if (!methods[0]) return 0;
    const char *origin = http_req_header(r, "Origin");
    http_req_set_header(r, "Vary", "Origin");
    if (!origin || !origin_listed(s, origin)) {
        http_reply_errorf(r, 403, NULL, NULL, "origin_not_allowed",
                          "origin %s may not call %s (see cors_origins)",
                          origin ? origin : "(none)", r->raw_path);
        return 1;
    }
    const char *want = http_req_header(r, "Access-Control-Request-Headers");
    http_req_set_header(r, "Access-Control-Allow-Origin", origin);
    http_req_set_header(r, "Access-Control-Allow-Methods", methods);
    http_req_set_header(r, "Access-Control-Allow-Headers",
                        want && strlen(want) < 512 ? want : "Authorization, Content-Type");
    http_req_set_header(r, "Access-Control-Max-Age", "600");
    http_reply(r, 204, "text/plain", NULL, 0);
    return 1;
}

/* ==== Dispatch ==== */

static void set_allow_header(http_server *s, http_req *r) {
    char allow[128] = "";
    size_t n = 0;
    for (size_t i = 0; i < s->nroutes; i++) {
        const route_entry *e = &s->routes[i];
        if (!route_match(e, r)) continue;
        const char *m = e->route.method;
        if (strstr(allow, m)) continue;
        n += (size_t)snprintf(allow + n, n < sizeof allow ? sizeof allow - n : 0, "%s%s",
                              n ? ", " : "", m);
        if (n >= sizeof allow) break;
    }
    r->nparams = 0;
    if (allow[0]) http_req_set_header(r, "Allow", allow);
}

/* Split the raw path into decoded segments. -1 on a segment that decodes to a NUL byte. */
static int req_parse_path(http_req *r, const char *raw) {
    size_t dlen = 0;
    r->raw_path = mh_xstrdup(raw && *raw ? raw : "/");
    r->path = evhttp_uridecode(r->raw_path, 0, &dlen);
    if (!r->path || strlen(r->path) != dlen) return -1;
    const char *p = r->raw_path;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *seg = mh_xmalloc(n + 1);
        memcpy(seg, p, n);
        seg[n] = 0;
        char *dec = evhttp_uridecode(seg, 0, &dlen);
        free(seg);
        if (!dec) return -1;
        if (strlen(dec) != dlen) {
            free(dec);
            return -1;
        }
        r->segs = mh_xrealloc(r->segs, (r->nsegs + 1) * sizeof *r->segs);
        r->segs[r->nsegs++] = dec;
        p += n;
    }
    return 0;
}

static const char *method_name(enum evhttp_cmd_type t) {
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "UNKNOWN";
    }
}

/* evhttp's generic callback: every request that reached a complete body comes here. */
static void server_dispatch_cb(struct evhttp_request *ev, void *arg) {
    http_server *s = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    http_conn *c = evcon ? conn_find(s, evhttp_connection_get_bufferevent(evcon)) : NULL;
    int oversize = 0, oversize_close = 0, reject = 0;
    uint64_t oversize_len = 0;
    char reject_what[sizeof c->reject_what] = "";
    if (c) {
        conn_attach(c);
        reject = c->reject_status;
        c->reject_status = 0;
        memcpy(reject_what, c->reject_what, sizeof reject_what);
        oversize = c->oversize_pending;
        oversize_len = c->oversize_len;
        oversize_close = c->oversize_close;
        c->oversize_pending = 0;
        /* Anything still in the input buffer is the next (pipelined) request's head. */
        if (c->gstate == GUARD_PASSED) c->gstate = GUARD_HEAD;
        c->in_guard = 1;
        conn_guard_run(c);
        c->in_guard = 0;
    }
    http_req *r = http_req_new_(s, c, ev);
    snprintf(r->method, sizeof r->method, "%s", method_name(evhttp_request_get_command(ev)));
    if (reject) {
        http_req_set_header(r, "Connection", "close");
        if (reject == 505)
            http_reply_errorf(r, 505, NULL, NULL, "http_version_not_supported",
                              "HTTP version %s is not supported (HTTP/1.0 or HTTP/1.1)",
                              reject_what);
        else if (reject == 501)
            http_reply_errorf(r, 501, NULL, NULL, "method_not_supported",
                              "method %s is not supported", reject_what);
        else
            http_reply_errorf(r, 400, NULL, NULL, "invalid_request_line", "malformed request line");
        return;
    }
    const char *host = http_req_header(r, "Host");
    if (host && !host_allowed(s, host)) {
        http_reply_errorf(r, 403, NULL, NULL, "invalid_host",
                          "this server does not answer to the host name in the Host header (add "
                          "it to allowed_hosts)");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    if (req_parse_path(r, uri ? evhttp_uri_get_path(uri) : "/") < 0) {
        http_reply_errorf(r, 400, NULL, NULL, "invalid_path", "malformed request path");
        return;
    }
    if (oversize) {
        if (oversize_close) http_req_set_header(r, "Connection", "close");
        http_reply_errorf(r, 413, NULL, NULL, "request_too_large",
                          "request body of %llu bytes is over the limit of %zu bytes",
                          (unsigned long long)oversize_len, s->max_body);
        return;
    }
    if (cors_preflight(s, r)) return;
    int path_matched = 0;
    size_t i = 0;
    for (; i < s->nroutes; i++) {
        if (!route_match(&s->routes[i], r)) continue;
        path_matched = 1;
        if (method_matches(s->routes[i].route.method, r->method)) break;
    }
    if (i == s->nroutes) {
        r->nparams = 0;
        if (path_matched) {
            set_allow_header(s, r);
            http_reply_errorf(r, 405, NULL, NULL, "method_not_allowed",
                              "method %s is not allowed for %s", r->method, r->raw_path);
        } else {
            http_reply_errorf(r, 404, NULL, NULL, "unknown_url", "unknown request URL: %s %s",
                              r->method, r->raw_path);
        }
        return;
    }
    const route_entry *e = &s->routes[i];
    const char *origin = http_req_header(r, "Origin");
    const char *why = NULL;
    if ((e->route.flags & HTTP_ROUTE_SAME_ORIGIN) && (why = cross_site_reason(r)) != NULL) {
        http_reply_errorf(r, 403, NULL, NULL, "cross_site_request",
                          "%s %s refuses cross-site requests (%s)", r->method, r->raw_path, why);
        return;
    }
    if ((e->route.flags & HTTP_ROUTE_CORS) && origin && !origin_is_own(r, origin)) {
        if (!origin_listed(s, origin)) {
            http_reply_errorf(r, 403, NULL, NULL, "origin_not_allowed",
                              "origin %s may not call %s (see cors_origins)", origin, r->raw_path);
            return;
        }
        http_req_set_header(r, "Access-Control-Allow-Origin", origin);
        http_req_set_header(r, "Vary", "Origin");
    }
    if ((e->route.flags & HTTP_ROUTE_LOOPBACK) && !http_req_is_loopback(r)) {
        http_reply_errorf(r, 403, NULL, NULL, "forbidden", "%s is only served on loopback",
                          r->raw_path);
        return;
    }
    if (!(e->route.flags & HTTP_ROUTE_PUBLIC) && !http_req_bearer_ok(r, s->api_key)) {
        http_req_set_header(r, "WWW-Authenticate", "Bearer");
        http_reply_errorf(r, 401, NULL, NULL, "invalid_api_key",
                          http_req_bearer(r) ? "incorrect API key provided"
                                             : "missing API key: send Authorization: Bearer <key>");
        return;
    }
    r->route_index = (int)i;
    s->stats[s->nroutes].in_flight--; /* counted in the unmatched slot until now */
    s->stats[s->nroutes].requests--;
    s->stats[i].requests++;
    s->stats[i].in_flight++;
    e->route.handler(r, s->arg); /* r may be freed from here on */
}

/* ==== Server ==== */

static void free_access(http_server *s) {
    for (char **a = s->allowed_hosts; a && *a; a++) free(*a);
    free(s->allowed_hosts);
    for (char **o = s->cors_origins; o && *o; o++) free(*o);
    free(s->cors_origins);
    s->allowed_hosts = s->cors_origins = NULL;
}

void http_server_set_access(http_server *s, const char *const *allowed_hosts,
                            const char *const *cors_origins) {
    free_access(s);
    char lower[256];
    s->any_host = 0;
    s->host_check = s->bound_host && is_loopback_name(s->bound_host);
    size_t n_hosts = 0, n_origins = 0;
    while (allowed_hosts && allowed_hosts[n_hosts]) n_hosts++;
    while (cors_origins && cors_origins[n_origins]) n_origins++;
    s->allowed_hosts = mh_xcalloc(n_hosts + 1, sizeof *s->allowed_hosts);
    for (size_t i = 0, k = 0; i < n_hosts; i++) {
        if (strcmp(allowed_hosts[i], "*") == 0) s->any_host = 1;
        if (host_name_of(allowed_hosts[i], lower, sizeof lower))
            s->allowed_hosts[k++] = mh_xstrdup(lower);
    }
    if (n_hosts) s->host_check = 1;
    s->cors_origins = mh_xcalloc(n_origins + 1, sizeof *s->cors_origins);
    for (size_t i = 0; i < n_origins; i++) {
        s->cors_origins[i] = mh_xstrdup(cors_origins[i]);
        size_t len = strlen(s->cors_origins[i]);
        if (len && s->cors_origins[i][len - 1] == '/') s->cors_origins[i][len - 1] = 0;
    }
}

http_server *http_server_new(struct event_base *base, const http_server_config *cfg, char *err,
                             size_t errlen) {
    http_server *s = mh_xcalloc(1, sizeof *s);
    s->base = base;
    s->max_body = cfg->max_body_bytes ? cfg->max_body_bytes : DEFAULT_MAX_BODY;
    s->max_header = cfg->max_header_bytes ? cfg->max_header_bytes : DEFAULT_MAX_HEADER;
    s->timeout.tv_sec = cfg->timeout_s > 0 ? cfg->timeout_s : DEFAULT_TIMEOUT_S;
    s->api_key = cfg->api_key && *cfg->api_key ? mh_xstrdup(cfg->api_key) : NULL;
    s->arg = cfg->arg;
    const char *bind_host = cfg->host && *cfg->host ? cfg->host : "127.0.0.1";
    char lower[256];
    if (host_name_of(bind_host, lower, sizeof lower)) s->bound_host = mh_xstrdup(lower);
    http_server_set_access(s, cfg->allowed_hosts, cfg->cors_origins);
    s->routes = mh_xcalloc(cfg->nroutes + 1, sizeof *s->routes);
    s->stats = mh_xcalloc(cfg->nroutes + 1, sizeof *s->stats);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (route_compile(&s->routes[i], &cfg->routes[i], err, errlen) < 0) {
            s->nroutes = i + 1;
            http_server_free(s);
            return NULL;
        }
        s->nroutes = i + 1;
        s->stats[i].method = s->routes[i].route.method;
        s->stats[i].pattern = s->routes[i].route.pattern;
    }
    s->nroutes = cfg->nroutes;
    s->stats[s->nroutes].method = "(none)";
    s->stats[s->nroutes].pattern = "(unmatched)";

    s->http = evhttp_new(base);
    if (!s->http) {
        snprintf(err, errlen, "libevent: evhttp_new failed");
        http_server_free(s);
        return NULL;
    }
    evhttp_set_max_body_size(s->http, (ev_ssize_t)s->max_body);
    evhttp_set_max_headers_size(s->http, (ev_ssize_t)s->max_header);
    evhttp_set_timeout_tv(s->http, &s->timeout);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(s->http, "application/json");
    /* For libevent's own 413 (chunked uploads): read the rest before closing, so the client
     * gets the answer rather than a reset. */
    evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_bevcb(s->http, conn_new_bev, s);
    evhttp_set_gencb(s->http, server_dispatch_cb, s);

    const char *host = cfg->host && *cfg->host ? cfg->host : "127.0.0.1";
    if (cfg->port < 0 || cfg->port > 65535) {
        snprintf(err, errlen, "port %d is out of range", cfg->port);
        http_server_free(s);
        return NULL;
    }
    errno = 0;
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)cfg->port);
    if (!bound) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, cfg->port,
                 errno ? strerror(errno) : "bind failed");
        http_server_free(s);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return s;
}

int http_server_port(const http_server *s) {
    return s->port;
}

void http_server_set_log_hook(http_server *s, http_log_fn fn, void *arg) {
    s->log_fn = fn;
    s->log_arg = arg;
}

size_t http_server_stats_count(const http_server *s) {
    return s->nroutes + 1;
}

void http_server_stats_get(const http_server *s, size_t i, http_route_stats *out) {
    MH_ASSERT(i <= s->nroutes);
    *out = s->stats[i];
}

size_t http_server_connections(const http_server *s) {
    return s->nconns;
}

void http_server_free(http_server *s) {
    if (!s) return;
    s->freeing = 1;
    /* Closes the listener and every connection; conn_close_cb runs for each attached one and
     * marks its current request gone. */
    if (s->http) evhttp_free(s->http);
    while (s->conns) { /* never attached: libevent freed their bufferevents already */
        http_conn *c = s->conns;
        c->guard = NULL;
        conn_free(c);
    }
    while (s->reqs) { /* requests still owned by handlers outlive the server */
        http_req *r = s->reqs;
        s->reqs = r->next;
        r->prev = r->next = NULL;
        r->srv = NULL;
        r->conn = NULL;
        r->ev = NULL;
        http_req_mark_gone_(r);
    }
    for (size_t i = 0; i < s->nroutes; i++) route_entry_clear(&s->routes[i]);
    free(s->routes);
    free(s->stats);
    free(s->api_key);
    free(s->bound_host);
    free_access(s);
    free(s);
}
