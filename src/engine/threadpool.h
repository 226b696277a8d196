/* threadpool.h — a pool of worker threads that stay alive between calls.
 *
 * threadpool_run(pool, fn, arg) runs fn(arg, ith, nth) on all nth threads (the caller is
 * thread 0) and returns when every one has finished. Workers spin briefly after a task so the
 * next one (the next matmul of the same token) starts without a wake-up, then sleep on a
 * condition variable so an idle server costs no CPU. Calls from several threads are serialised.
 */
#ifndef MH_THREADPOOL_H
#define MH_THREADPOOL_H

typedef struct threadpool threadpool;

typedef void (*threadpool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (1 = no workers, everything runs on the caller). NULL on failure. */
threadpool *threadpool_new(int n_threads);
void threadpool_free(threadpool *tp);
int threadpool_size(const threadpool *tp);
void threadpool_run(threadpool *tp, threadpool_fn fn, void *arg);

/* Number of CPUs this process may run on (at least 1). */
int threadpool_default_size(void);

#endif
