/* common.h — small helpers every module may use: invariants, time, sizes. */
#ifndef MH_COMMON_H
#define MH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Crash loudly on a broken invariant (never on bad input: that is a returned error). */
#define MH_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#ifndef MODELHUB_VERSION
#define MODELHUB_VERSION "0.1.0" /* `modelhub --version`, Ollama's /api/version */
#endif

#define MH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MH_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define MH_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* Monotonic seconds, for durations. */
static inline double mh_now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wall-clock seconds since the epoch, for timestamps shown to users. */
static inline double mh_now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* malloc that aborts on failure: only for small bookkeeping whose absence is fatal anyway. */
void *mh_xmalloc(size_t n);
void *mh_xcalloc(size_t n, size_t size);
void *mh_xrealloc(void *p, size_t n);
char *mh_xstrdup(const char *s);

/* 64-byte aligned allocation for engine buffers; NULL on failure. Free with free(). */
void *mh_aligned_alloc(size_t n);

/* A growable byte buffer, always NUL-terminated after append. Zero it to start. */
typedef struct mh_buf {
    char *data;
    size_t len, cap;
} mh_buf;
void mh_buf_append(mh_buf *b, const void *data, size_t len);
void mh_buf_printf(mh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mh_buf_free(mh_buf *b);

/* write(2) all of buf, retrying after EINTR and short writes; gives up silently on an error
 * (for logs, where there is nobody to tell). */
void mh_write_all(int fd, const void *buf, size_t len);

/* Parse helpers for CLI numbers: 0 on success, -1 when `s` is not entirely a number in range. */
int mh_parse_long(const char *s, long min, long max, long *out);
int mh_parse_double(const char *s, double min, double max, double *out);
/* A byte count: digits with an optional K, M, G or T (powers of 1024, optionally followed by
 * "iB" or "B"), e.g. "512M", "4GiB", "1048576". 0 or -1 for anything else or an overflow. */
int mh_parse_size(const char *s, uint64_t *out);
/* Physical memory of the machine in bytes (0 when unknown). */
uint64_t mh_physical_memory(void);

#endif
