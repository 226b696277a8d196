/* sse_parser.h — split a Server-Sent Events byte stream into events.
 *
 * The hub forwards a worker's SSE bytes unchanged and, on the side, needs to see the events (usage
 * chunks, `data: [DONE]`, error events). Bytes arrive in arbitrary pieces (one piece per socket
 * read, not per event), so the parser keeps the partial line and event between feeds.
 *
 * Follows the WHATWG event-stream rules: lines end with CRLF, LF or CR (a CRLF split across two
 * feeds counts once); a blank line dispatches the event; lines starting with ':' are comments;
 * `data:` lines are joined with '\n'; one space after the colon is dropped; an event whose data is
 * empty is not dispatched. Fields other than data, event and id are ignored.
 *
 * Plain single-threaded object: one parser per stream, used by one thread at a time.
 */
#ifndef MH_SSE_PARSER_H
#define MH_SSE_PARSER_H

#include <stddef.h>

typedef struct sse_parser sse_parser;

/* One dispatched event. Pointers are valid only during the callback. */
typedef struct sse_event {
    const char *event; /* value of the last `event:` field, "" when none */
    const char *id;    /* value of the last `id:` field, "" when none */
    const char *data;  /* data lines joined by '\n', NUL-terminated */
    size_t data_len;
} sse_event;

typedef void (*sse_event_fn)(const sse_event *ev, void *arg);

/* A parser that holds at most `max_event_bytes` of one event (0 = 1 MiB). Larger events are
 * skipped up to their blank line and counted in sse_parser_dropped(). NULL on allocation failure.
 */
sse_parser *sse_parser_new(size_t max_event_bytes);
void sse_parser_free(sse_parser *p);

/* Consume `len` bytes; calls fn(ev, arg) for every event completed by them, in order. Returns the
 * number of events dispatched. `fn` must not call sse_parser_feed() on the same parser. */
int sse_parser_feed(sse_parser *p, const char *buf, size_t len, sse_event_fn fn, void *arg);

/* 1 when bytes of an unfinished event are held (a stream that stops here ended mid-event). */
int sse_parser_mid_event(const sse_parser *p);

/* Events skipped because they exceeded max_event_bytes. */
size_t sse_parser_dropped(const sse_parser *p);

/* Forget any partial line and event (e.g. to reuse the parser for a new stream). */
void sse_parser_reset(sse_parser *p);

/* 1 when the event is the OpenAI end marker `data: [DONE]`. */
int sse_event_is_done(const sse_event *ev);

#endif
