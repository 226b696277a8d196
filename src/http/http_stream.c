/* http_stream.c — chunked answers: SSE events and raw pass-through. */
#include "http/http_stream.h"

#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "http/http_internal.h"
#include "util/common.h"

int http_stream_start(http_req *r, int status, const char *content_type) {
    MH_ASSERT(!(r->flags & (REQ_DONE | REQ_STREAMING)));
    r->flags |= REQ_STREAMING;
    r->status = status;
    /* A request libevent detached without our close callback noticing (only possible for a
     * connection that could not get our guard) must not reach evhttp_send_reply_start. */
    if (r->ev && !evhttp_request_get_connection(r->ev)) http_req_mark_gone_(r);
    if (!r->ev || (r->flags & REQ_GONE)) return -1;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_remove_header(h, "Content-Type");
    evhttp_add_header(h, "Content-Type", content_type ? content_type : "text/event-stream");
    if (!evhttp_find_header(h, "Cache-Control")) evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(r->ev, status, http_reason_phrase_(status));
    if (r->conn) http_conn_arm_close_watch_(r->conn);
    return 0;
}

int http_stream_start_sse(http_req *r) {
    return http_stream_start(r, 200, "text/event-stream");
}

int http_stream_started(const http_req *r) {
    return (r->flags & REQ_STREAMING) != 0;
}

/* Send what is in r->chunk as one HTTP chunk. */
static int stream_flush(http_req *r) {
    size_t n = evbuffer_get_length(r->chunk);
    if (n == 0) return 0;
    r->bytes_out += n;
    evhttp_send_reply_chunk(r->ev, r->chunk); /* moves the bytes out of r->chunk */
    return 0;
}

static int stream_writable(http_req *r) {
    MH_ASSERT(r->flags & REQ_STREAMING);
    MH_ASSERT(!(r->flags & REQ_DONE));
    if (!r->ev || (r->flags & REQ_GONE)) return 0;
    if (!r->chunk) r->chunk = evbuffer_new();
    MH_ASSERT(r->chunk);
    return 1;
}

int http_stream_write(http_req *r, const void *data, size_t len) {
    if (!stream_writable(r)) return -1;
    if (len == 0) return 0;
    evbuffer_add(r->chunk, data, len);
    return stream_flush(r);
}

int http_stream_event(http_req *r, const char *data) {
    if (!stream_writable(r)) return -1;
    /* One `data:` line per line of the payload (a raw newline would end the field). */
    const char *p = data;
    for (;;) {
        size_t n = strcspn(p, "\r\n");
        evbuffer_add(r->chunk, "data: ", 6);
        evbuffer_add(r->chunk, p, n);
        evbuffer_add(r->chunk, "\n", 1);
        p += n;
        if (!*p) break;
        if (p[0] == '\r' && p[1] == '\n') p++;
        p++;
    }
    evbuffer_add(r->chunk, "\n", 1);
    return stream_flush(r);
}

int http_stream_event_json(http_req *r, const json_t *v) {
    if (!stream_writable(r)) return -1;
    char *text = http_json_dump(v);
    if (!text) return -1;
    int rc = http_stream_event(r, text);
    free(text);
    return rc;
}

int http_stream_comment(http_req *r, const char *text) {
    if (!stream_writable(r)) return -1;
    evbuffer_add_printf(r->chunk, ": %s\n\n", text ? text : "");
    return stream_flush(r);
}

void http_stream_end(http_req *r) {
    MH_ASSERT(!(r->flags & REQ_DONE));
    MH_ASSERT((r->flags & REQ_STREAMING) || (r->flags & REQ_GONE));
    struct evhttp_request *ev = r->ev;
    r->ev = NULL;
    http_req_release_conn_(r);
    /* Attached: writes the last chunk and completes the answer. Detached by libevent after the
     * client left: frees the request (the DESIGN trap — it is not freed otherwise). */
    if (ev) evhttp_send_reply_end(ev);
    http_req_finish_(r);
}
