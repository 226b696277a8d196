/* http_stream.h — streamed answers (Server-Sent Events, or raw pass-through for a proxy).
 *
 *     http_req_on_close(r, on_client_gone, job);  // cancel generation when the client leaves
 *     http_stream_start_sse(r);                    // 200, text/event-stream, no-cache
 *     http_stream_event(r, "{\"choices\":...}");   // data: ...\n\n   (repeat, from the loop)
 *     http_stream_comment(r, "keep-alive");        // : keep-alive\n\n (during a long prefill)
 *     http_stream_event(r, "[DONE]");
 *     http_stream_end(r);                          // terminal: frees r
 *
 * After the client disconnects every write returns -1 and does nothing; http_stream_end() is
 * still required (it frees the request libevent detached). Each write becomes one HTTP chunk and
 * goes to libevent's output buffer at once — no batching; a client that reads slower than we
 * write makes that buffer grow (see http_req_output_pending()).
 *
 * Threads: loop thread only (see http_req.h and http_async.h).
 */
#ifndef MH_HTTP_STREAM_H
#define MH_HTTP_STREAM_H

#include <stddef.h>

#include <jansson.h>

#include "http/http_req.h"

/* Send the status line and headers (Content-Type `content_type`, Cache-Control: no-cache,
 * X-Accel-Buffering: no, chunked encoding) and start watching for the client leaving. Headers
 * added with http_req_set_header() before this call are sent too. At most once per request, and
 * not after a reply. Returns 0, or -1 when the client is already gone. */
int http_stream_start(http_req *r, int status, const char *content_type);
/* http_stream_start(r, 200, "text/event-stream"). */
int http_stream_start_sse(http_req *r);

/* Raw bytes as one chunk (proxies forward upstream bytes unchanged). 0, or -1 when gone. */
int http_stream_write(http_req *r, const void *data, size_t len);
/* One SSE event: every line of `data` as a `data:` line, then a blank line. 0 or -1. */
int http_stream_event(http_req *r, const char *data);
/* One SSE event with `v` serialised compactly as its data. 0 or -1. */
int http_stream_event_json(http_req *r, const json_t *v);
/* An SSE comment `: text\n\n` (keep-alive). 0 or -1. */
int http_stream_comment(http_req *r, const char *text);

/* 1 after http_stream_start() was called on r. */
int http_stream_started(const http_req *r);

/* Terminal: finish the chunked body (or, when the client is gone, free what libevent left
 * behind) and free `r`. Allowed when the stream started, or when the client is gone. */
void http_stream_end(http_req *r);

#endif
