/* proc.h — one supervised child process of the hub.
 *
 * The child runs in its own process group, with an empty signal mask and default dispositions.
 * Its stdout and stderr go through one pipe that the hub reads on its loop and appends to a log
 * file (rotated to FILE.1 past a size), line by line, so followers can tail it live. Its stdin is
 * a pipe whose write end only the hub holds: when the hub dies for any reason the child reads
 * EOF (modelhub workers exit on it; they also set a parent-death signal).
 *
 * Exit is noticed through a pidfd watched by the loop (no SIGCHLD handler; where pidfds are
 * missing — kernels before 5.3, valgrind — a 50 ms timer polls waitid instead): on_exit runs once,
 * from the loop, with the exit status (>= 0) or -signal.
 *
 * Threads: loop thread only.
 */
#ifndef MH_HUB_PROC_H
#define MH_HUB_PROC_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;

typedef struct hub_proc hub_proc;

typedef struct hub_proc_opts {
    const char *const *argv; /* argv[0] is the program (a path, or looked up in PATH) */
    const char *const *env;  /* extra "KEY=VALUE" entries on top of our environment, NULL-ended */
    const char *log_path;    /* file the output is appended to (folder must exist), NULL = none */
    long long log_max_bytes; /* rotate to log_path.1 past this size (0 = never) */
    /* the process has exited; the hub_proc stays valid until hub_proc_free */
    void (*on_exit)(void *arg, int exit_code);
    /* one line of output (without the newline), as it is logged; may be NULL */
    void (*on_line)(void *arg, const char *line, size_t len);
    void *arg;
} hub_proc_opts;

/* Start the child. 0 on success; -1 with `err` set (no callback will run). */
int hub_proc_spawn(struct event_base *base, const hub_proc_opts *o, hub_proc **out, char *err,
                   size_t errlen);

pid_t hub_proc_pid(const hub_proc *p);
int hub_proc_running(const hub_proc *p);

/* Ask the group to stop: SIGTERM now, SIGKILL after grace_s. on_exit follows. */
void hub_proc_stop(hub_proc *p, double grace_s);

/* SIGKILL to the group now (a stopped or hung process cannot honour SIGTERM). on_exit follows. */
void hub_proc_kill(hub_proc *p);

/* Forget the child: a running one is killed (SIGKILL to its group) and reaped before this
 * returns; on_exit does not run. */
void hub_proc_free(hub_proc *p);

#endif
