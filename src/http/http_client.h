/* http_client.h — asynchronous HTTP/1.1 client to one upstream on the loop (evhttp client side).
 *
 * The hub proxies requests to its workers and calls their worker control routes with it. One
 * http_client is one upstream (host:port) with a small pool of keep-alive connections; each
 * connection carries one request at a time, extra requests wait in FIFO order.
 *
 * Streaming pass-through: on_head gives the status (headers readable with
 * http_client_req_header() during the call), on_chunk gives the body bytes as they arrive — one
 * call per socket read, not per SSE event (feed them to an sse_parser when events matter) — and
 * on_done ends every request. Without on_chunk the body is buffered and handed to on_done.
 *
 * Contract (libuv's): http_client_request() either fails — returns a negative HTTP_CLIENT_E*
 * and never calls a callback — or succeeds, and then on_done runs exactly once, later, from the
 * loop (never inside http_client_request()). on_head runs at most once, before any on_chunk.
 * The http_client_req handle is valid from success until on_done returns; it is freed then.
 *
 * Cancelling: http_client_cancel() (e.g. when the downstream client disconnected) may be called
 * any time before on_done, also from inside on_head/on_chunk. No on_head/on_chunk runs after it;
 * on_done runs once, later, with HTTP_CLIENT_ECANCELED.
 *
 * Connections are owned by the pool, never freed inside their own libevent callbacks (freed from
 * a deferred event of the pool), and never handed to evhttp_connection_free_on_completion.
 * Timeouts are always set explicitly (libevent's defaults are 45 s connect / 50 s read).
 * Idle connections are reused for at most 20 s. A request sent on a reused connection at the
 * very moment the upstream closes it fails with ENORESPONSE; retrying that is safe only for
 * idempotent requests, which is the caller's call.
 *
 * Threads: loop thread only.
 */
#ifndef MH_HTTP_CLIENT_H
#define MH_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct http_client http_client;
typedef struct http_client_req http_client_req;

enum http_client_error {
    HTTP_CLIENT_OK = 0,
    HTTP_CLIENT_ECONNECT = -1,    /* could not connect: refused, unreachable, connect timed out */
    HTTP_CLIENT_ENORESPONSE = -2, /* connected, but closed or reset before a response head */
    HTTP_CLIENT_EPARTIAL = -3,    /* the head arrived, then the connection died mid-body */
    HTTP_CLIENT_ETIMEDOUT = -4,   /* silence longer than timeout_ms, or deadline_ms passed */
    HTTP_CLIENT_ECANCELED = -5,   /* http_client_cancel() or http_client_free() */
    HTTP_CLIENT_EPROTO = -6,      /* malformed response, or buffered body over max_body */
    HTTP_CLIENT_EINVAL = -7,      /* bad arguments (returned by http_client_request only) */
};

typedef struct http_header {
    const char *name;
    const char *value;
} http_header;

typedef struct http_client_result {
    int error;           /* 0 or HTTP_CLIENT_E* */
    int status;          /* response status, 0 when no head arrived */
    int head_received;   /* tells "no response" from "died mid-response" for ETIMEDOUT too */
    uint64_t body_bytes; /* body bytes received */
    const char *body;    /* buffered body, NUL-terminated (only without on_chunk), else NULL */
    size_t body_len;
    const char *message; /* what went wrong, "" on success */
} http_client_result;

typedef struct http_client_callbacks {
    void (*on_head)(http_client_req *cr, int status, void *arg);                    /* optional */
    void (*on_chunk)(http_client_req *cr, const char *data, size_t len, void *arg); /* optional */
    void (*on_done)(http_client_req *cr, const http_client_result *res, void *arg); /* required */
} http_client_callbacks;

typedef struct http_client_request_opts {
    const char *method;         /* "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS" */
    const char *path;           /* "/v1/chat/completions?x=1", sent as is */
    const http_header *headers; /* extra request headers (Host and Content-Length are added) */
    size_t nheaders;
    const void *body; /* copied */
    size_t body_len;
    int timeout_ms;  /* longest silence: connecting, waiting for the head, between reads
                      * (0 = the client's default). Keep it above the upstream's keep-alive
                      * comment interval for long streams. */
    int deadline_ms; /* whole request including queueing, 0 = none */
    size_t max_body; /* cap for a buffered body, 0 = 64 MiB */
} http_client_request_opts;

/* A pool for http://host:port with at most `max_conns` connections (0 = 8) and a default
 * timeout (0 = 30 s). NULL on failure. */
http_client *http_client_new(struct event_base *base, const char *host, int port, int max_conns,
                             int default_timeout_ms);

/* Start a request. 0 and *out (may be NULL if not wanted) on success; negative on failure (no
 * callback will run). `cb` is copied; `arg` is passed to every callback. */
int http_client_request(http_client *c, const http_client_request_opts *o,
                        const http_client_callbacks *cb, void *arg, http_client_req **out);

/* Cancel (see top). Must not be called after on_done started. */
void http_client_cancel(http_client_req *cr);

/* A response header, during on_head and on_chunk only; NULL otherwise or when absent. */
const char *http_client_req_header(const http_client_req *cr, const char *name);
/* Call fn for every response header in order (for pass-through), during on_head and on_chunk
 * only. Returns the number of headers visited. */
size_t http_client_req_each_header(const http_client_req *cr,
                                   void (*fn)(const char *name, const char *value, void *arg),
                                   void *arg);

/* Requests started and not yet done (running plus queued). */
size_t http_client_pending(const http_client *c);
/* Connections currently in the pool (busy or idle). */
size_t http_client_connections(const http_client *c);

/* Cancel everything still pending (each on_done runs with ECANCELED) and free the pool; the
 * handle must not be used afterwards. Called outside this client's callbacks, the on_done calls
 * run before it returns. Called from inside one of them (e.g. stopping a worker when its last
 * control request finishes), the pool only marks itself: the on_done calls and the freeing
 * happen from the loop right after (libevent may still be using a connection below us).
 * Loop thread. */
void http_client_free(http_client *c);

/* "connection refused or unreachable", ... for an HTTP_CLIENT_E* code. */
const char *http_client_strerror(int err);

#endif
