/* http_req.h — one request received by an http_server, from dispatch to answer.
 *
 * Ownership (the one rule to remember): the handler receives `r` and owns it until it calls
 * exactly one *terminal* function — http_reply(), http_reply_json(), http_reply_json_take(),
 * http_reply_error(), http_reply_errorf() or http_stream_end() (http_stream.h). The terminal
 * call frees `r`; the owner must drop its pointer then. The answer may come later than the handler
 * returns (waiting for a model load, streaming tokens from an engine thread): keep `r` and answer
 * from the loop when ready.
 *
 * Client gone: `r` stays valid when the client disconnects. From then on http_req_gone() is 1,
 * every write is a no-op returning -1, and the owner must still make its terminal call (which
 * only frees). libevent detaches but does not free a request whose client left mid-answer; the
 * terminal call is what finally frees it (evhttp_send_reply_end on the detached request).
 *
 * Noticing the client going away: libevent stops reading a connection while its request is being
 * handled, so by default a disconnect is only seen when a write fails. http_req_on_close() and
 * http_stream_start() re-enable reading (with the read timeout off, data that arrives meanwhile
 * is left for the next request) so an EOF is noticed at once. A client that half-closes its side
 * after sending the request counts as gone.
 *
 * The on_close callback runs from the loop (never from inside libevent's teardown), at most once,
 * never after the terminal call. It may make the terminal call itself.
 *
 * Threads: every function here is for the loop thread only. Engine threads hand results to the
 * loop with http_async (http_async.h).
 */
#ifndef MH_HTTP_REQ_H
#define MH_HTTP_REQ_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "http/http_json.h"
#include "http/http_server.h"

struct evhttp_request;

typedef void (*http_close_fn)(http_req *r, void *arg);

/* ---- Reading the request ---- */

const char *http_req_method(const http_req *r);      /* "GET", "POST", ... */
const char *http_req_path(const http_req *r);        /* percent-decoded path, without query */
const char *http_req_raw_path(const http_req *r);    /* path as received */
const http_route *http_req_route(const http_req *r); /* matched route, NULL before/without */

/* Value of a `{name}` segment of the matched pattern, or of "*" (rest of the path); NULL when
 * the pattern has no such name. Decoded. */
const char *http_req_param(const http_req *r, const char *name);
/* Decoded path segments, empty ones skipped: "/hub/models/a%20b/start" -> hub, models, "a b",
 * start. NULL past the end. */
size_t http_req_nsegments(const http_req *r);
const char *http_req_segment(const http_req *r, size_t i);

/* Query parameter (decoded, '+' as space), NULL when absent or the query is malformed. */
const char *http_req_query(http_req *r, const char *key);
/* Request header (case-insensitive name), NULL when absent. */
const char *http_req_header(const http_req *r, const char *name);

/* Body as a NUL-terminated buffer owned by `r` ("" when empty); *len without the NUL.
 * Embedded NULs are possible: trust *len, not strlen. */
const char *http_req_body(http_req *r, size_t *len);
/* Parse the body as a JSON object: 0 with a new reference in *out, or -1 and a 400 in `e`
 * (malformed JSON names line and column). */
int http_req_json(http_req *r, json_t **out, http_error *e);

/* The token of `Authorization: Bearer <token>`, NULL when absent. */
const char *http_req_bearer(const http_req *r);
/* 1 when `token` is NULL/empty (no auth configured) or equals the bearer token (compared in
 * constant time), else 0. */
int http_req_bearer_ok(const http_req *r, const char *token);
/* 1 when the NUL-terminated strings are equal. Constant time in the content: no early exit on
 * the first differing byte, and a length difference does not skip the comparison. */
int http_token_equal(const char *given, const char *secret);

const char *http_req_peer(const http_req *r); /* client address, "" when unknown */
int http_req_is_loopback(const http_req *r);
double http_req_age(const http_req *r); /* seconds since dispatch */

/* Free text for this request's log line (http_log_entry.note), e.g. "model=x tokens=12".
 * Replaces an earlier note. */
void http_req_set_note(http_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Lifetime ---- */

/* Call fn(r, arg) from the loop when the client disconnects before the terminal call (see top).
 * Replaces an earlier registration; NULL fn unregisters. If the client is already gone, fn is
 * scheduled at once. */
void http_req_on_close(http_req *r, http_close_fn fn, void *arg);
/* 1 once the client has disconnected (or the server was freed). */
int http_req_gone(const http_req *r);
/* Bytes queued for this client and not yet written to the socket (backpressure for proxies). */
size_t http_req_output_pending(const http_req *r);
/* The libevent request, for what this API does not cover; NULL once gone. Do not answer it
 * directly: use the terminal functions. */
struct evhttp_request *http_req_evhttp(http_req *r);

/* ---- Answering ---- */

/* Add a response header (e.g. Retry-After) before the answer or stream starts. 0 or -1. */
int http_req_set_header(http_req *r, const char *name, const char *value);

/* Terminal: answer with `len` bytes of `content_type` (NULL = application/octet-stream).
 * Returns 0 when handed to libevent, -1 when the client was gone. Frees `r` either way. */
int http_reply(http_req *r, int status, const char *content_type, const void *data, size_t len);
/* Terminal: answer with `body` serialised compactly, Content-Type application/json. Borrows. */
int http_reply_json(http_req *r, int status, const json_t *body);
/* Terminal: like http_reply_json but steals the reference to `body`. */
int http_reply_json_take(http_req *r, int status, json_t *body);
/* Terminal: answer with the OpenAI error envelope and e->status (plus Retry-After when
 * e->retry_after_s > 0). */
int http_reply_error(http_req *r, const http_error *e);
/* Terminal: http_error_set() + http_reply_error() in one call. */
int http_reply_errorf(http_req *r, int status, const char *type, const char *param,
                      const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
