/* proc.c — see proc.h. */
#include "hub/proc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/common.h"
#include "util/log.h"

extern char **environ;

#define LINE_MAX_BYTES 8192 /* a longer line is cut into pieces of this size */

struct hub_proc {
    struct event_base *base;
    hub_proc_opts o;
    char *log_path;
    pid_t pid;
    int pidfd;
    int out_fd;   /* read end of the child's stdout+stderr */
    int stdin_fd; /* write end of the child's stdin, held open until the end */
    int log_fd;
    long long log_size;
    struct event *exit_ev, *out_ev, *kill_ev;
    char line[LINE_MAX_BYTES];
    size_t line_len;
    int running;
};

static int pidfd_open_(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* ==== Output ==== */

static void log_rotate(hub_proc *p) {
    if (!p->log_path || p->log_fd < 0) return;
    char old[4096];
    snprintf(old, sizeof old, "%s.1", p->log_path);
    close(p->log_fd);
    rename(p->log_path, old);
    p->log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    p->log_size = 0;
}

static void emit_line(hub_proc *p) {
    if (p->log_fd >= 0) {
        if (p->o.log_max_bytes > 0 && p->log_size + (long long)p->line_len + 1 > p->o.log_max_bytes)
            log_rotate(p);
        if (p->log_fd >= 0) {
            p->line[p->line_len] = '\n';
            mh_write_all(p->log_fd, p->line, p->line_len + 1);
            p->log_size += (long long)p->line_len + 1;
        }
    }
    if (p->o.on_line) p->o.on_line(p->o.arg, p->line, p->line_len);
    p->line_len = 0;
}

static void on_output(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    hub_proc *p = arg;
    char buf[16384];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
        if (p->line_len) emit_line(p);
        event_del(p->out_ev);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            emit_line(p);
            continue;
        }
        p->line[p->line_len++] = buf[i];
        if (p->line_len == LINE_MAX_BYTES - 1) emit_line(p);
    }
}

/* ==== Exit ==== */

/* Drain what the child wrote before it died, so its last words reach the log first. */
static void drain_output(hub_proc *p) {
    if (p->out_fd < 0) return;
    for (int i = 0; i < 64; i++) {
        struct timeval tv = {0, 0};
        fd_set set;
        FD_ZERO(&set);
        FD_SET(p->out_fd, &set);
        if (select(p->out_fd + 1, &set, NULL, NULL, &tv) <= 0) break;
        char probe;
        if (recv(p->out_fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) == 0) break;
        on_output(p->out_fd, EV_READ, p);
    }
}

static int reap(hub_proc *p, int options) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc = p->pidfd >= 0 ? waitid(P_PIDFD, (id_t)p->pidfd, &info, WEXITED | options)
                           : waitid(P_PID, (id_t)p->pid, &info, WEXITED | options);
    if (rc < 0 || info.si_pid == 0) return 0;
    p->running = 0;
    return info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
}

static void on_exit_ready(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    hub_proc *p = arg;
    if (!p->running) return;
    int code = reap(p, WNOHANG);
    if (p->running) return; /* spurious */
    event_del(p->exit_ev);
    if (p->kill_ev) event_del(p->kill_ev);
    drain_output(p);
    /* the group may still hold children of a shell command: they go with it */
    kill(-p->pid, SIGKILL);
    if (p->o.on_exit) p->o.on_exit(p->o.arg, code);
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    hub_proc *p = arg;
    if (!p->running) return;
    log_warn("pid %d did not stop in time: SIGKILL", (int)p->pid);
    kill(-p->pid, SIGKILL);
}

/* ==== Spawn ==== */

static char **build_env(const char *const *extra) {
    size_t n_env = 0, n_extra = 0;
    while (environ[n_env]) n_env++;
    while (extra && extra[n_extra]) n_extra++;
    char **env = mh_xcalloc(n_env + n_extra + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        /* an extra entry replaces ours of the same name */
        const char *eq = strchr(environ[i], '=');
        size_t name_len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < n_extra && !replaced; j++)
            replaced = strncmp(extra[j], environ[i], name_len) == 0 && extra[j][name_len] == '=';
        if (!replaced) env[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++) env[k++] = (char *)extra[j];
    env[k] = NULL;
    return env;
}

int hub_proc_spawn(struct event_base *base, const hub_proc_opts *o, hub_proc **out, char *err,
                   size_t errlen) {
    *out = NULL;
    int out_pipe[2] = {-1, -1}, in_pipe[2] = {-1, -1};
    if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(in_pipe, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            if (out_pipe[i] >= 0) close(out_pipe[i]);
            if (in_pipe[i] >= 0) close(in_pipe[i]);
        }
        return -1;
    }
    hub_proc *p = mh_xcalloc(1, sizeof *p);
    p->base = base;
    p->o = *o;
    p->log_fd = -1;
    p->pidfd = -1;
    if (o->log_path) {
        p->log_path = mh_xstrdup(o->log_path);
        p->log_fd = open(o->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (p->log_fd < 0) log_warn("cannot open log %s: %s", o->log_path, strerror(errno));
        struct stat st;
        if (p->log_fd >= 0 && fstat(p->log_fd, &st) == 0) p->log_size = st.st_size;
    }

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_pipe[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDERR_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t empty, defaults;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    int sigs[] = {SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGCHLD, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < MH_ARRAY_LEN(sigs); i++) sigaddset(&defaults, sigs[i]);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    char **env = build_env(o->env);
    pid_t pid;
    int rc = posix_spawnp(&pid, o->argv[0], &fa, &attr, (char *const *)o->argv, env);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out_pipe[1]);
    close(in_pipe[0]);
    if (rc != 0) {
        snprintf(err, errlen, "cannot run %s: %s", o->argv[0], strerror(rc));
        close(out_pipe[0]);
        close(in_pipe[1]);
        if (p->log_fd >= 0) close(p->log_fd);
        free(p->log_path);
        free(p);
        return -1;
    }
    p->pid = pid;
    p->running = 1;
    p->out_fd = out_pipe[0];
    p->stdin_fd = in_pipe[1];
    p->pidfd = pidfd_open_(pid);
    if (p->pidfd < 0 && errno != ENOSYS) {
        snprintf(err, errlen, "pidfd_open: %s", strerror(errno));
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(p->out_fd);
        close(p->stdin_fd);
        if (p->log_fd >= 0) close(p->log_fd);
        free(p->log_path);
        free(p);
        return -1;
    }
    fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
    p->out_ev = event_new(base, p->out_fd, EV_READ | EV_PERSIST, on_output, p);
    if (p->pidfd >= 0) {
        p->exit_ev = event_new(base, p->pidfd, EV_READ | EV_PERSIST, on_exit_ready, p);
        event_add(p->exit_ev, NULL);
    } else {
        /* no pidfd (a kernel before 5.3, or valgrind): look for the exit every 50 ms */
        p->exit_ev = event_new(base, -1, EV_PERSIST, on_exit_ready, p);
        event_add(p->exit_ev, &(struct timeval){0, 50000});
    }
    event_add(p->out_ev, NULL);
    *out = p;
    return 0;
}

pid_t hub_proc_pid(const hub_proc *p) {
    return p->pid;
}
int hub_proc_running(const hub_proc *p) {
    return p->running;
}

void hub_proc_stop(hub_proc *p, double grace_s) {
    if (!p->running) return;
    kill(-p->pid, SIGTERM);
    if (!p->kill_ev) p->kill_ev = event_new(p->base, -1, 0, on_kill_timer, p);
    struct timeval tv = {(time_t)grace_s, (suseconds_t)((grace_s - (double)(time_t)grace_s) * 1e6)};
    event_add(p->kill_ev, &tv);
}

void hub_proc_kill(hub_proc *p) {
    if (p->running) kill(-p->pid, SIGKILL);
}

void hub_proc_free(hub_proc *p) {
    if (!p) return;
    if (p->running) {
        kill(-p->pid, SIGKILL);
        reap(p, 0);
    }
    if (p->exit_ev) event_free(p->exit_ev);
    if (p->out_ev) event_free(p->out_ev);
    if (p->kill_ev) event_free(p->kill_ev);
    if (p->pidfd >= 0) close(p->pidfd);
    if (p->out_fd >= 0) close(p->out_fd);
    if (p->stdin_fd >= 0) close(p->stdin_fd);
    if (p->log_fd >= 0) close(p->log_fd);
    free(p->log_path);
    free(p);
}
