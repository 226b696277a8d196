#include "engine/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/common.h"

/* How long a worker spins for the next task before it sleeps (iterations of a pause loop,
 * roughly 50-100 microseconds: long enough to cover the gap between two matmuls). */
#define SPIN_ITERATIONS 20000

typedef struct worker {
    threadpool *tp;
    int ith;
    pthread_t thread;
} worker;

struct threadpool {
    int n_threads;
    worker *workers;          /* n_threads - 1 */
    pthread_mutex_t run_lock; /* serialises threadpool_run callers */

    threadpool_fn fn;
    void *arg;
    _Atomic unsigned generation; /* bumped once per task */
    _Atomic int n_done;          /* workers finished with the current task */
    _Atomic int stop;

    pthread_mutex_t sleep_lock;
    pthread_cond_t sleep_cond;
    _Atomic int n_sleeping;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p) {
    worker *w = p;
    threadpool *tp = w->tp;
    unsigned seen = 0; /* generation starts at 0 and workers exist before any task */
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
               !atomic_load(&tp->stop)) {
            if (++spins < SPIN_ITERATIONS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&tp->sleep_lock);
            atomic_fetch_add(&tp->n_sleeping, 1);
            while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->sleep_cond, &tp->sleep_lock);
            atomic_fetch_sub(&tp->n_sleeping, 1);
            pthread_mutex_unlock(&tp->sleep_lock);
            spins = 0;
        }
        if (atomic_load(&tp->stop)) return NULL;
        seen = gen;
        tp->fn(tp->arg, w->ith, tp->n_threads);
        atomic_fetch_add_explicit(&tp->n_done, 1, memory_order_release);
    }
}

int threadpool_default_size(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

threadpool *threadpool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->run_lock, NULL);
    pthread_mutex_init(&tp->sleep_lock, NULL);
    pthread_cond_init(&tp->sleep_cond, NULL);
    tp->workers = calloc((size_t)n_threads, sizeof *tp->workers);
    if (!tp->workers) {
        free(tp);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker *w = &tp->workers[i - 1];
        w->tp = tp;
        w->ith = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            tp->n_threads = i; /* keep the ones that started */
            break;
        }
    }
    return tp;
}

void threadpool_free(threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->sleep_lock);
    atomic_store(&tp->stop, 1);
    pthread_cond_broadcast(&tp->sleep_cond);
    pthread_mutex_unlock(&tp->sleep_lock);
    for (int i = 1; i < tp->n_threads; i++) pthread_join(tp->workers[i - 1].thread, NULL);
    pthread_mutex_destroy(&tp->run_lock);
    pthread_mutex_destroy(&tp->sleep_lock);
    pthread_cond_destroy(&tp->sleep_cond);
    free(tp->workers);
    free(tp);
}

int threadpool_size(const threadpool *tp) {
    return tp->n_threads;
}

void threadpool_run(threadpool *tp, threadpool_fn fn, void *arg) {
    if (tp->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&tp->run_lock);
    tp->fn = fn;
    tp->arg = arg;
    atomic_store(&tp->n_done, 0);
    atomic_fetch_add(&tp->generation, 1); /* seq_cst: pairs with n_sleeping below */
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->sleep_lock);
        pthread_cond_broadcast(&tp->sleep_cond);
        pthread_mutex_unlock(&tp->sleep_lock);
    }
    fn(arg, 0, tp->n_threads);
    while (atomic_load_explicit(&tp->n_done, memory_order_acquire) < tp->n_threads - 1) cpu_relax();
    pthread_mutex_unlock(&tp->run_lock);
}
