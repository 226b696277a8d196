/* fuzz_sse.c — libFuzzer target for the SSE parser (src/http/sse_parser.c).
 *
 * The first input byte picks how the rest is cut into feeds (the parser must give the same events
 * however the bytes arrive) and a small event cap, so the dropped-event path is reached. Each
 * input is fed twice: whole, and in pieces; the two runs must dispatch the same events (same
 * data, event and id) and agree on mid_event and dropped. Every event must hold a NUL-terminated
 * data of data_len bytes. Violations abort().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/sse_parser.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

/* A running digest of every event, so two runs can be compared without storing them. */
typedef struct digest {
    uint64_t h;
    size_t n;
} digest;

static void mix(digest *d, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) d->h = (d->h ^ (unsigned char)s[i]) * 1099511628211ull;
    d->h = (d->h ^ 0xff) * 1099511628211ull; /* field separator */
}

static void on_event(const sse_event *ev, void *arg) {
    digest *d = arg;
    CHECK(ev->event && ev->id && ev->data);
    CHECK(strlen(ev->data) <= ev->data_len && ev->data[ev->data_len] == 0);
    /* data_len may be 0: a bare `data` line dispatches an empty event (WHATWG). */
    mix(d, ev->event, strlen(ev->event));
    mix(d, ev->id, strlen(ev->id));
    mix(d, ev->data, ev->data_len);
    (void)sse_event_is_done(ev);
    d->n++;
}

static void run(const uint8_t *data, size_t size, size_t cap, size_t step, digest *d, int *mid,
                size_t *dropped) {
    sse_parser *p = sse_parser_new(cap);
    CHECK(p);
    int n = 0;
    if (!step) {
        n = sse_parser_feed(p, (const char *)data, size, on_event, d);
    } else {
        for (size_t off = 0; off < size; off += step) {
            size_t k = size - off < step ? size - off : step;
            n += sse_parser_feed(p, (const char *)data + off, k, on_event, d);
        }
    }
    CHECK(n >= 0 && (size_t)n == d->n);
    *mid = sse_parser_mid_event(p);
    *dropped = sse_parser_dropped(p);
    sse_parser_reset(p);
    CHECK(!sse_parser_mid_event(p));
    sse_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = 1 + (data[0] & 15);
    size_t cap = (data[0] & 16) ? 64 : 0; /* 0 = the default 1 MiB */
    data++, size--;
    digest a = {14695981039346656037ull, 0}, b = a;
    int mid_a, mid_b;
    size_t drop_a, drop_b;
    run(data, size, cap, 0, &a, &mid_a, &drop_a);
    run(data, size, cap, step, &b, &mid_b, &drop_b);
    CHECK(a.n == b.n && a.h == b.h);
    CHECK(mid_a == mid_b && drop_a == drop_b);
    return 0;
}
