#include "http/http_async.h"

#include <pthread.h>

#include <event2/event.h>

#include "util/common.h"

struct http_async {
    struct event *wake; /* activated by push; runs async_drain_cb on the loop thread */
    http_async_fn drain;
    void *arg;
    pthread_mutex_t lock;  /* guards the fields below */
    http_async_item *head; /* FIFO of pushed items */
    http_async_item *tail;
    size_t count;
    int wake_pending; /* event_active() issued and the list not yet taken by the loop */
};

static void async_drain_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    http_async *q = arg;
    pthread_mutex_lock(&q->lock);
    http_async_item *it = q->head;
    q->head = q->tail = NULL;
    q->count = 0;
    q->wake_pending = 0; /* a push from now on wakes us again */
    pthread_mutex_unlock(&q->lock);
    while (it) {
        http_async_item *next = it->next; /* the drain function may free `it` */
        it->next = NULL;
        q->drain(it, q->arg);
        it = next;
    }
}

http_async *http_async_new(struct event_base *base, http_async_fn drain, void *arg) {
    http_async *q = mh_xcalloc(1, sizeof *q);
    q->drain = drain;
    q->arg = arg;
    if (pthread_mutex_init(&q->lock, NULL) != 0) {
        free(q);
        return NULL;
    }
    q->wake = event_new(base, -1, 0, async_drain_cb, q);
    if (!q->wake) {
        pthread_mutex_destroy(&q->lock);
        free(q);
        return NULL;
    }
    return q;
}

void http_async_push(http_async *q, http_async_item *item) {
    item->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = item;
    else
        q->head = item;
    q->tail = item;
    q->count++;
    int need_wake = !q->wake_pending;
    q->wake_pending = 1;
    pthread_mutex_unlock(&q->lock);
    /* Outside the lock: event_active takes the base lock, and the loop thread takes ours inside
     * its callback; never hold both in opposite orders. */
    if (need_wake) event_active(q->wake, EV_READ, 0);
}

size_t http_async_pending(http_async *q) {
    pthread_mutex_lock(&q->lock);
    size_t n = q->count;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void http_async_free(http_async *q, http_async_fn leftover) {
    if (!q) return;
    event_free(q->wake); /* also removes a pending activation */
    http_async_item *it = q->head;
    while (it) {
        http_async_item *next = it->next;
        it->next = NULL;
        if (leftover) leftover(it, q->arg);
        it = next;
    }
    pthread_mutex_destroy(&q->lock);
    free(q);
}
