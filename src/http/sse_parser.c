#include "http/sse_parser.h"

#include <stdlib.h>
#include <string.h>

#include "util/common.h"

struct sse_parser {
    size_t max_bytes; /* cap on line + data of one event */
    char *line;       /* current line without its terminator, (line_cap) */
    size_t line_len, line_cap;
    size_t line_seen; /* bytes of the current line seen, stored or not (overflow stores none) */
    char *data;       /* joined data lines of the current event, NUL-terminated, (data_cap) */
    size_t data_len, data_cap;
    int have_data; /* at least one data: line seen (data may still be "") */
    char event[64];
    char id[128];
    int after_cr;  /* the previous byte was a CR: a following LF belongs to the same break */
    int mid_event; /* some line of the current event has been seen */
    int overflow;  /* current event exceeded max_bytes: skip it up to the blank line */
    size_t dropped;
};

sse_parser *sse_parser_new(size_t max_event_bytes) {
    sse_parser *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->max_bytes = max_event_bytes ? max_event_bytes : (size_t)1 << 20;
    p->line_cap = 256;
    p->data_cap = 256;
    p->line = malloc(p->line_cap);
    p->data = malloc(p->data_cap);
    if (!p->line || !p->data) {
        sse_parser_free(p);
        return NULL;
    }
    p->data[0] = 0;
    return p;
}

void sse_parser_free(sse_parser *p) {
    if (!p) return;
    free(p->line);
    free(p->data);
    free(p);
}

static void reset_event(sse_parser *p) {
    p->data_len = 0;
    p->data[0] = 0;
    p->have_data = 0;
    p->event[0] = 0;
    p->id[0] = 0;
    p->mid_event = 0;
    p->overflow = 0;
}

void sse_parser_reset(sse_parser *p) {
    reset_event(p);
    p->line_len = 0;
    p->line_seen = 0;
    p->after_cr = 0;
}

int sse_parser_mid_event(const sse_parser *p) {
    return p->mid_event || p->line_seen > 0;
}

size_t sse_parser_dropped(const sse_parser *p) {
    return p->dropped;
}

int sse_event_is_done(const sse_event *ev) {
    return ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0;
}

/* Grow `*buf` to hold `need` bytes; 0 or -1 when that would pass the event cap. */
static int reserve(sse_parser *p, char **buf, size_t *cap, size_t need) {
    if (need > p->max_bytes + 1) return -1;
    if (need <= *cap) return 0;
    size_t ncap = *cap;
    while (ncap < need) ncap *= 2;
    if (ncap > p->max_bytes + 1) ncap = p->max_bytes + 1;
    char *nb = realloc(*buf, ncap);
    if (!nb) return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

static void set_field(char *dst, size_t cap, const char *val, size_t len) {
    if (len >= cap) len = cap - 1;
    memcpy(dst, val, len);
    dst[len] = 0;
}

/* A complete line (without terminator). Returns 1 when it dispatched an event. */
static int process_line(sse_parser *p, sse_event_fn fn, void *arg) {
    const char *l = p->line;
    size_t n = p->line_len;
    size_t seen = p->line_seen;
    p->line_len = 0;
    p->line_seen = 0;
    if (seen == 0) { /* blank line: dispatch */
        int dispatched = 0;
        if (p->overflow) {
            p->dropped++;
        } else if (p->have_data) {
            sse_event ev = {p->event, p->id, p->data, p->data_len};
            if (fn) fn(&ev, arg);
            dispatched = 1;
        }
        reset_event(p);
        return dispatched;
    }
    p->mid_event = 1;
    if (p->overflow || l[0] == ':') return 0; /* skipped event, or a comment */
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    const char *val = colon ? colon + 1 : l + n;
    size_t val_len = colon ? n - name_len - 1 : 0;
    if (val_len > 0 && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (name_len == 4 && memcmp(l, "data", 4) == 0) {
        size_t need = p->data_len + (p->have_data ? 1 : 0) + val_len + 1;
        if (reserve(p, &p->data, &p->data_cap, need) < 0) {
            p->overflow = 1;
            return 0;
        }
        if (p->have_data) p->data[p->data_len++] = '\n';
        memcpy(p->data + p->data_len, val, val_len);
        p->data_len += val_len;
        p->data[p->data_len] = 0;
        p->have_data = 1;
    } else if (name_len == 5 && memcmp(l, "event", 5) == 0) {
        set_field(p->event, sizeof p->event, val, val_len);
    } else if (name_len == 2 && memcmp(l, "id", 2) == 0) {
        set_field(p->id, sizeof p->id, val, val_len);
    }
    return 0;
}

int sse_parser_feed(sse_parser *p, const char *buf, size_t len, sse_event_fn fn, void *arg) {
    int events = 0;
    size_t i = 0;
    while (i < len) {
        char c = buf[i];
        if (p->after_cr) {
            p->after_cr = 0;
            if (c == '\n') { /* second half of a CRLF */
                i++;
                continue;
            }
        }
        if (c == '\r' || c == '\n') {
            p->after_cr = (c == '\r');
            events += process_line(p, fn, arg);
            i++;
            continue;
        }
        /* Copy the run of ordinary bytes up to the next line break in one go. */
        size_t j = i;
        while (j < len && buf[j] != '\r' && buf[j] != '\n') j++;
        size_t run = j - i;
        p->line_seen += run;
        if (p->overflow) {
            /* skipping: keep no bytes, but remember we are inside a line */
            p->mid_event = 1;
        } else if (reserve(p, &p->line, &p->line_cap, p->line_len + run + 1) < 0) {
            p->overflow = 1;
            p->mid_event = 1;
            p->line_len = 0;
        } else {
            memcpy(p->line + p->line_len, buf + i, run);
            p->line_len += run;
        }
        i = j;
    }
    return events;
}
