/* http_fetch.h — blocking HTTP for the CLI (libcurl easy API).
 *
 * `modelhub hub status` and friends talk to a running hub: one request, wait, print. Blocking is
 * fine there; never use these on a loop thread. Each call uses its own easy handle, so separate
 * threads may fetch at the same time.
 */
#ifndef MH_HTTP_FETCH_H
#define MH_HTTP_FETCH_H

#include <stddef.h>

typedef struct http_fetch_result {
    long status; /* HTTP status, 0 when no response */
    char *body;  /* NUL-terminated, malloc'd (free with http_fetch_result_free) */
    size_t body_len;
    char content_type[128];
    char error[256]; /* transport error ("" when a response arrived, whatever its status) */
} http_fetch_result;

typedef struct http_fetch_opts {
    const char *method; /* NULL = GET, or POST when body is set */
    const char *bearer; /* Authorization: Bearer <bearer> when not NULL/empty */
    const char *body;   /* request body (copied by libcurl), NULL for none */
    size_t body_len;
    const char *content_type; /* NULL = application/json when there is a body */
    long timeout_ms;          /* whole transfer; 0 = 30 s */
    long connect_timeout_ms;  /* 0 = 5 s */
    size_t max_body;          /* response cap, 0 = 64 MiB */
} http_fetch_opts;

/* Perform one request to `url`. 0 when a response arrived (any status: check res->status), -1 on
 * a transport failure (refused, timeout, ...) with res->error set. *res is always initialised and
 * must be freed with http_fetch_result_free(). */
int http_fetch(const char *url, const http_fetch_opts *o, http_fetch_result *res);
void http_fetch_result_free(http_fetch_result *res);

/* Body bytes as they arrive (one call per read, not per line or event). Return 0 to go on,
 * non-zero to stop the transfer (http_fetch_stream then returns 0). */
typedef int (*http_fetch_chunk_fn)(const char *data, size_t len, void *arg);

/* GET `url` and hand the body to fn as it arrives — for following an SSE stream (`hub watch`,
 * `logs --follow`). No overall timeout; a stream silent for idle_timeout_ms (0 = none) fails.
 * Returns 0 when the body ended or fn stopped it, -1 on a transport failure (message in `err`).
 * *status gets the HTTP status (fn is not called for bodies of statuses >= 400: they are put in
 * `err` instead, truncated). */
int http_fetch_stream(const char *url, const char *bearer, long connect_timeout_ms,
                      long idle_timeout_ms, http_fetch_chunk_fn fn, void *arg, long *status,
                      char *err, size_t errlen);

#endif
