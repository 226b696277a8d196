/* cmd_hub_daemon.c — `modelhub hub start [--foreground]` and `modelhub hub stop`. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/hub_client.h"
#include "http/http_fetch.h"
#include "hub/config.h"
#include "hub/hub.h"
#include "util/common.h"

static void print_urls(const char *host, int port, pid_t pid, const char *log) {
    if (strcmp(host, "0.0.0.0") == 0) host = "127.0.0.1";
    printf("modelhub hub is running (pid %d)\n", (int)pid);
    printf("  OpenAI API: http://%s:%d/v1\n", host, port);
    printf("  dashboard:  http://%s:%d/hub\n", host, port);
    if (log) printf("  log:        %s\n", log);
}

/* Print the last lines of a file to stderr (why a daemon did not start). */
static void print_tail(const char *path, int lines) {
    FILE *fp = fopen(path, "r");
    if (!fp) return;
    char *ring[64] = {0};
    int n = 0;
    char buf[1024];
    while (fgets(buf, sizeof buf, fp)) {
        free(ring[n % lines]);
        ring[n % lines] = mh_xstrdup(buf);
        n++;
    }
    fclose(fp);
    for (int i = n > lines ? n - lines : 0; i < n; i++) {
        fputs(ring[i % lines], stderr);
        free(ring[i % lines]);
        ring[i % lines] = NULL;
    }
}

int cmd_hub_start(int argc, char **argv) {
    const char *config = NULL;
    int foreground = 0;
    const arg_spec specs[] = {
        {"--config", "-c", ARG_STRING, &config, 0, 0, "FILE",
         "hub.yaml ($MODELHUB_CONFIG, ./hub.yaml, ~/.config/modelhub/hub.yaml)"},
        {"--foreground", "-f", ARG_FLAG, &foreground, 0, 0, NULL,
         "stay in the foreground, logging to stderr"},
    };
    arg_command cmd = {"hub start",
                       "[--config FILE] [--foreground]",
                       "Start the hub daemon: the models marked `default` start with it; the\n"
                       "others start on their first request.",
                       specs,
                       (int)MH_ARRAY_LEN(specs),
                       NULL,
                       0,
                       0};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    char path[4096];
    if (hub_config_find(config, path, sizeof path) < 0) {
        fprintf(stderr, "modelhub hub start: no hub.yaml found (looked at %s)\n", path);
        return 1;
    }
    char err[16384];
    hub_config *cfg;
    if (hub_config_load(path, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "modelhub hub start: invalid configuration:\n%s\n", err);
        return 1;
    }
    /* one hub per state dir */
    hub_target t;
    char terr[512];
    if (hub_target_resolve(path, &t, terr, sizeof terr) == 0 && t.from_runtime_file) {
        fprintf(stderr, "modelhub hub start: a hub is already running (pid %d, %s)\n", (int)t.pid,
                t.base_url);
        hub_config_free(cfg);
        return 1;
    }
    if (foreground) {
        hub_config_free(cfg);
        return hub_run(path, -1);
    }
    char log_file[4200];
    mkdir(cfg->log_path, 0755);
    snprintf(log_file, sizeof log_file, "%s/hub.log", cfg->log_path);
    int pipefd[2];
    if (pipe(pipefd) < 0) {
        perror("modelhub hub start: pipe");
        hub_config_free(cfg);
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("modelhub hub start: fork");
        hub_config_free(cfg);
        return 1;
    }
    if (pid == 0) { /* the daemon */
        close(pipefd[0]);
        setsid();
        int devnull = open("/dev/null", O_RDWR);
        int logfd = open(log_file, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        if (logfd >= 0) {
            dup2(logfd, STDOUT_FILENO);
            dup2(logfd, STDERR_FILENO);
        }
        if (devnull > 2) close(devnull);
        if (logfd > 2) close(logfd);
        fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
        hub_config_free(cfg);
        _exit(hub_run(path, pipefd[1]));
    }
    close(pipefd[1]);
    /* wait for "PORT\n" (ready) or EOF (it failed) */
    char line[32] = {0};
    size_t got = 0;
    struct pollfd pfd = {pipefd[0], POLLIN, 0};
    double deadline = mh_now_mono() + 60;
    while (got < sizeof line - 1 && mh_now_mono() < deadline) {
        if (poll(&pfd, 1, 200) <= 0) continue;
        ssize_t n = read(pipefd[0], line + got, sizeof line - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
        if (memchr(line, '\n', got)) break;
    }
    close(pipefd[0]);
    int port = atoi(line);
    if (port <= 0) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == 0) kill(pid, SIGTERM);
        fprintf(stderr, "modelhub hub start: the hub did not start; the end of %s:\n", log_file);
        print_tail(log_file, 10);
        hub_config_free(cfg);
        return 1;
    }
    print_urls(cfg->host, port, pid, log_file);
    hub_config_free(cfg);
    return 0;
}

int cmd_hub_stop(int argc, char **argv) {
    const char *config = NULL;
    double timeout = 60;
    const arg_spec specs[] = {
        {"--config", "-c", ARG_STRING, &config, 0, 0, "FILE", "hub.yaml of the hub to stop"},
        {"--timeout", NULL, ARG_DOUBLE, &timeout, 0, 3600, "S",
         "seconds to wait for it to exit (60)"},
    };
    arg_command cmd = {"hub stop",
                       "[--config FILE]",
                       "Stop the hub: every worker is stopped, then the daemon exits.",
                       specs,
                       (int)MH_ARRAY_LEN(specs),
                       NULL,
                       0,
                       0};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    hub_target t;
    char err[4096];
    if (hub_target_resolve(config, &t, err, sizeof err) < 0) {
        fprintf(stderr, "modelhub hub stop: %s\n", err);
        return 1;
    }
    char url[512];
    snprintf(url, sizeof url, "%s/hub/shutdown", t.base_url);
    http_fetch_opts o = {.method = "POST", .bearer = t.admin_key, .body = "{}", .body_len = 2};
    http_fetch_result res;
    if (http_fetch(url, &o, &res) < 0) {
        fprintf(stderr, "modelhub hub stop: no hub answers at %s: %s\n", t.base_url, res.error);
        http_fetch_result_free(&res);
        return 1;
    }
    long status = res.status;
    if (status != 200) {
        fprintf(stderr, "modelhub hub stop: %s answered %ld: %s\n", t.base_url, status, res.body);
        http_fetch_result_free(&res);
        return 1;
    }
    http_fetch_result_free(&res);
    if (t.pid > 0) {
        double deadline = mh_now_mono() + timeout;
        while (kill(t.pid, 0) == 0 && mh_now_mono() < deadline) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (kill(t.pid, 0) == 0) {
            fprintf(stderr, "modelhub hub stop: pid %d is still running after %.0f s\n", (int)t.pid,
                    timeout);
            return 1;
        }
    }
    printf("modelhub hub stopped\n");
    return 0;
}
