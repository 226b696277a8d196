/* http_async.h — hand items from any thread to the loop thread.
 *
 * An engine thread produces tokens; only the loop thread may write them to a client. The producer
 * embeds an http_async_item in its own struct and pushes it; the loop thread is woken with
 * event_active() and calls the drain function once per item, in push order.
 *
 *     struct token_msg { http_async_item link; http_req *req; char text[64]; };
 *     // engine thread
 *     http_async_push(q, &msg->link);
 *     // loop thread, the drain function
 *     static void on_item(http_async_item *it, void *arg) {
 *         struct token_msg *m = HTTP_ASYNC_ENTRY(it, struct token_msg, link);
 *         ...; free(m);
 *     }
 *
 * No lost wake-ups: a push either finds the wake-up already pending (the loop has not yet taken
 * the list, so it will see this item too) or makes it pending. The base must come from
 * http_loop_new() (pthread locking on), otherwise event_active() from another thread is unsafe.
 */
#ifndef MH_HTTP_ASYNC_H
#define MH_HTTP_ASYNC_H

#include <stddef.h>

struct event_base;

typedef struct http_async http_async;

/* Intrusive link: embed it in the producer's struct. Owned by the queue from push until the drain
 * function receives it; the drain function owns it afterwards (and usually frees the container). */
typedef struct http_async_item {
    struct http_async_item *next;
} http_async_item;

/* Container of an embedded item: HTTP_ASYNC_ENTRY(it, struct token_msg, link). */
#define HTTP_ASYNC_ENTRY(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Called on the loop thread, once per item, in push order. */
typedef void (*http_async_fn)(http_async_item *item, void *arg);

/* Create a queue drained on `base` by `drain(item, arg)`. Loop thread. NULL on failure. */
http_async *http_async_new(struct event_base *base, http_async_fn drain, void *arg);

/* Queue `item` and wake the loop. Any thread; never blocks for long, never fails. The item must
 * not be pushed again until the drain function has received it. */
void http_async_push(http_async *q, http_async_item *item);

/* Number of items pushed but not yet drained (a snapshot). Any thread. */
size_t http_async_pending(http_async *q);

/* Free the queue. Loop thread, and only after every producer has stopped pushing (join them
 * first). Items still queued are passed to `leftover(item, arg)` when it is not NULL. */
void http_async_free(http_async *q, http_async_fn leftover);

#endif
