/* http_loop.h — the one event loop that serve and hub run all their I/O on.
 *
 * Engine threads wake the loop with event_active() (see http_async.h); libevent only allows that
 * when evthread_use_pthreads() ran before the base was created. http_loop_new() guarantees the
 * order, so every base in this program comes from here.
 */
#ifndef MH_HTTP_LOOP_H
#define MH_HTTP_LOOP_H

#include <stddef.h>

struct event_base;

/* Turn on libevent's pthread locking (once per process, thread-safe) and create a base that other
 * threads may wake. The first call also sets SIGPIPE to SIG_IGN for the process (a write to a
 * client that left must fail, not kill us). NULL with a message in `err` on failure. Free with
 * http_loop_free(). */
struct event_base *http_loop_new(char *err, size_t errlen);

/* Free a base from http_loop_new(). Every event, server and client on it must be freed first. */
void http_loop_free(struct event_base *base);

#endif
