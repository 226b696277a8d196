/* cmd_hub_guard.c — `modelhub hub exec-guard -- PROGRAM ARGS...` (internal).
 *
 * The hub starts external server commands (`cmd:` in hub.yaml) through this guard, because an
 * arbitrary command neither sets a parent-death signal nor watches its stdin. The guard does both
 * for it: it runs PROGRAM as its child in the same process group (the hub made the guard a group
 * leader) and, when the hub dies (parent-death signal or EOF on stdin) or asks it to stop
 * (SIGTERM), terminates the whole group: SIGTERM, then SIGKILL after a grace period. Its exit
 * status is PROGRAM's (or 128 + signal).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"

#define GRACE_S 5

static volatile sig_atomic_t stop_requested;
static pid_t hub_pid; /* our parent at start: when getppid() differs, the hub is gone */

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static int status_code(int st) {
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Terminate the group and wait for the child; returns its exit code. */
static int stop_group(pid_t child) {
    signal(SIGTERM, SIG_IGN); /* the group signal must not stop the guard itself */
    kill(0, SIGTERM);
    for (int i = 0; i < GRACE_S * 20; i++) {
        int st;
        pid_t r = waitpid(child, &st, WNOHANG);
        if (r == child) {
            /* the hub kills what is left of the group when the guard exits; without a hub the
             * guard does it, itself included */
            if (getppid() != hub_pid) kill(0, SIGKILL);
            return status_code(st);
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(child, SIGKILL);
    int st = 0;
    waitpid(child, &st, 0);
    if (getppid() != hub_pid) kill(0, SIGKILL);
    return status_code(st);
}

int cmd_hub_exec_guard(int argc, char **argv) {
    int first = 1;
    if (first < argc && strcmp(argv[first], "--") == 0) first++;
    if (first >= argc) {
        fprintf(stderr, "usage: modelhub hub exec-guard -- PROGRAM [ARGS...]\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    hub_pid = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != hub_pid || hub_pid == 1) return 1; /* the hub is already gone */
    pid_t child = fork();
    if (child < 0) {
        perror("modelhub hub exec-guard: fork");
        return 1;
    }
    if (child == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        execvp(argv[first], argv + first);
        fprintf(stderr, "modelhub hub exec-guard: cannot run %s: %s\n", argv[first],
                strerror(errno));
        _exit(127);
    }
    int stdin_open = 1;
    for (;;) {
        int st;
        pid_t r = waitpid(child, &st, WNOHANG);
        if (r == child) return status_code(st);
        if (stop_requested) return stop_group(child);
        struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
        int n = poll(&pfd, stdin_open ? 1 : 0, 100);
        if (n > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[256];
            ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
            if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
                /* the hub went away: take the command with us */
                return stop_group(child);
            }
        }
        if (n > 0 && (pfd.revents & POLLNVAL)) stdin_open = 0;
    }
}
