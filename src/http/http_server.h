/* http_server.h — an evhttp server with a route table, OpenAI-style errors and per-route counters.
 *
 * serve and hub each run one of these on their loop. Requests are dispatched through a table:
 *
 *     static const http_route routes[] = {
 *         {"GET",  "/v1/models",               route_models, HTTP_ROUTE_PUBLIC},
 *         {"POST", "/v1/chat/completions",     route_chat,   HTTP_ROUTE_STREAM},
 *         {"POST", "/hub/models/{name}/start", route_start,  0},
 *         {"GET",  "/hub/static/{*}",          route_static, HTTP_ROUTE_PUBLIC},
 *     };
 *
 * Pattern segments are literals, `{name}` (any one segment, read with http_req_param(r, "name"))
 * or a final `{*}` (the rest of the path, possibly empty: http_req_param(r, "*")). Matching is
 * on the percent-decoded segments; empty segments ("//", trailing "/") are ignored. The first route
 * whose pattern and method match wins. A path no route matches gets 404; a path that matches only
 * with other methods gets 405 with an Allow header; HEAD is served by GET routes (no body sent).
 * Handlers receive an http_req (http_req.h) and own it until they answer it.
 *
 * Limits. Answered by us in the OpenAI error envelope:
 *   - a body over max_body_bytes announced by Content-Length: 413 as soon as the request head
 *     arrives; the body is read and thrown away and the connection stays usable (with `Expect:
 *     100-continue` the body is never sent and the connection is closed after the 413).
 *   - a request line that is not `METHOD SP TARGET SP VERSION`: 400; a version other than
 *     HTTP/1.0 or HTTP/1.1: 505; a method other than GET HEAD POST PUT DELETE OPTIONS PATCH: 501.
 *     These three close the connection after the answer.
 * Left to libevent, which answers with its own small HTML page and closes the connection:
 *   - chunked uploads, which cannot be judged from their head: 413 once past the limit (OpenAI
 *     clients send JSON with a Content-Length, so this only concerns hand-made clients);
 *   - a request head over max_header_bytes or a target or header it cannot parse: 400.
 * Requests answered by libevent itself are not counted and not logged.
 *
 * Auth: when `api_key` is set, every route without HTTP_ROUTE_PUBLIC requires
 * `Authorization: Bearer <api_key>` and answers 401 otherwise. HTTP_ROUTE_LOOPBACK routes answer
 * 403 to peers other than 127.0.0.0/8 and ::1.
 *
 * Browser-side protections (a web page the user visits can send requests to a loopback server):
 *   - Host check (DNS rebinding): when the server is bound to a loopback address, or when
 *     `allowed_hosts` is given, a request whose Host header names anything else than localhost,
 *     127.x.x.x, [::1], the bound address or an entry of allowed_hosts ("*" = any) gets 403
 *     (code invalid_host), on every route. A request without a Host header passes (HTTP/1.0).
 *     Bound to 0.0.0.0 / :: without allowed_hosts, every Host is accepted.
 *   - HTTP_ROUTE_SAME_ORIGIN routes (state-changing controls) refuse cross-site requests with 403
 *     (code cross_site_request): a `Sec-Fetch-Site` other than same-origin or none, or an
 *     `Origin` other than http://<the request's Host>. A form or a text/plain fetch from another
 *     site is refused before the handler runs, whatever the keys.
 *   - CORS is off by default: no Access-Control-* header is ever sent. HTTP_ROUTE_CORS routes
 *     answer an origin listed in `cors_origins` with Access-Control-Allow-Origin (and Vary:
 *     Origin), answer its preflight (OPTIONS with Access-Control-Request-Method) with 204 and
 *     the allowed methods and headers before any auth, and refuse a cross-origin request from an
 *     origin not listed with 403 (code origin_not_allowed).
 *
 * Threads: everything here runs on the loop thread of the base the server was created on.
 */
#ifndef MH_HTTP_SERVER_H
#define MH_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct http_server http_server;
typedef struct http_req http_req;

/* A route handler: answer `r` now or later (see http_req.h). `arg` is http_server_config.arg. */
typedef void (*http_handler_fn)(http_req *r, void *arg);

enum {
    HTTP_ROUTE_PUBLIC = 1u << 0, /* no API key needed (e.g. /health) */
    HTTP_ROUTE_LOOPBACK =
        1u << 1, /* only peers on the loopback interface (the worker control routes) */
    HTTP_ROUTE_STREAM = 1u << 2,      /* informational: the route may answer with a stream */
    HTTP_ROUTE_SAME_ORIGIN = 1u << 3, /* refuse cross-site requests (see above) */
    HTTP_ROUTE_CORS = 1u << 4,        /* listed cors_origins may call it from a browser */
};

typedef struct http_route {
    const char *method;  /* "GET", "POST", ... or "*" for any method */
    const char *pattern; /* see above; copied by http_server_new() */
    http_handler_fn handler;
    unsigned flags; /* HTTP_ROUTE_* */
} http_route;

typedef struct http_server_config {
    const char *host;        /* address to bind, NULL = "127.0.0.1" */
    int port;                /* 0 = an ephemeral port, see http_server_port() */
    size_t max_body_bytes;   /* 0 = 8 MiB */
    size_t max_header_bytes; /* 0 = 64 KiB (request line + headers) */
    int timeout_s;           /* idle keep-alive and per-read/write timeout, 0 = 60 s */
    const char *api_key;     /* NULL or "" = no auth; copied */
    /* NULL-terminated lists, copied; NULL = none. See "Browser-side protections" above. */
    const char *const *allowed_hosts; /* extra Host names (without port); "*" = any */
    const char *const *cors_origins;  /* e.g. "http://localhost:3000" (scheme://host[:port]) */
    const http_route *routes;         /* the table, copied */
    size_t nroutes;
    void *arg; /* passed to every handler */
} http_server_config;

/* Counters of one route (index nroutes: requests no route took — 404, 405, 401, 403, 413, 400). */
typedef struct http_route_stats {
    const char *method; /* "(none)" for the unmatched slot */
    const char *pattern;
    uint64_t requests;  /* dispatched to this route */
    uint64_t in_flight; /* dispatched and not yet answered */
    uint64_t status_2xx, status_3xx, status_4xx, status_5xx;
    uint64_t client_gone;  /* the client disconnected before the answer was complete */
    double duration_sum_s; /* dispatch to answer, summed over finished requests */
} http_route_stats;

/* One finished request, for the per-request log line. Strings valid during the call only. */
typedef struct http_log_entry {
    const char *method;
    const char *path;   /* as received, still percent-encoded, without the query */
    const char *route;  /* matching pattern, NULL when none matched */
    const char *peer;   /* client address */
    int status;         /* status sent (or meant, if the client had left); 499: none */
    int client_gone;    /* the client disconnected before the answer was complete */
    double duration_s;  /* dispatch to answer (for streams: to http_stream_end) */
    uint64_t bytes_out; /* body bytes handed to libevent */
    const char *note;   /* set with http_req_set_note(), NULL when none */
} http_log_entry;

typedef void (*http_log_fn)(const http_log_entry *e, void *arg);

/* Create a server on `base` (which should come from http_loop_new()) and bind it. NULL with a
 * message in `err` when the address cannot be bound or a route pattern is invalid. */
http_server *http_server_new(struct event_base *base, const http_server_config *cfg, char *err,
                             size_t errlen);

/* Replace the Host names accepted besides the loopback ones and the bound host, and the CORS
 * origins (both as in http_server_config; copied). Requests from then on see the new lists. */
void http_server_set_access(http_server *s, const char *const *allowed_hosts,
                            const char *const *cors_origins);

/* The bound port (the real one when the config asked for port 0). */
int http_server_port(const http_server *s);

/* Call fn once per request the server answered (routes and its own 4xx), at answer time. */
void http_server_set_log_hook(http_server *s, http_log_fn fn, void *arg);

/* Counters for /metrics: index 0..nroutes-1 are the routes in table order, index nroutes is the
 * unmatched slot. Returns the number of slots. */
size_t http_server_stats_count(const http_server *s);
void http_server_stats_get(const http_server *s, size_t i, http_route_stats *out);

/* Connections currently open. */
size_t http_server_connections(const http_server *s);

/* Close the listener and every connection. Requests still owned by handlers stay valid: they
 * become "gone" (writes are no-ops, on_close callbacks run from the loop) and their owners must
 * still answer or end them, which then only frees them. Loop thread, never from a handler. */
void http_server_free(http_server *s);

#endif
