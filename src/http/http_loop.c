#include "http/http_loop.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/thread.h>

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_rc = -1;

static void threads_init(void) {
    threads_rc = evthread_use_pthreads();
    /* libevent writes with writev(), which raises SIGPIPE when the client has gone: that would
     * kill the process instead of failing the write. Children started with posix_spawn reset
     * it (POSIX_SPAWN_SETSIGDEF with SIGPIPE, see DESIGN). */
    signal(SIGPIPE, SIG_IGN);
}

struct event_base *http_loop_new(char *err, size_t errlen) {
    pthread_once(&threads_once, threads_init);
    if (threads_rc != 0) {
        snprintf(err, errlen, "libevent: evthread_use_pthreads failed");
        return NULL;
    }
    struct event_base *base = event_base_new();
    if (!base) snprintf(err, errlen, "libevent: event_base_new failed");
    return base;
}

void http_loop_free(struct event_base *base) {
    if (base) event_base_free(base);
}
