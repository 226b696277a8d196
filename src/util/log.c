#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/common.h"

int log_level_current = LOG_INFO;

static int log_fd = -1;
static char log_tag[32];

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_open_file(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    log_close_file();
    log_fd = fd;
    return 0;
}

void log_close_file(void) {
    if (log_fd >= 0) close(log_fd);
    log_fd = -1;
}

int log_parse_level(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    if (strcmp(name, "warning") == 0) return LOG_WARN;
    return -1;
}

void log_set_tag(const char *tag) {
    snprintf(log_tag, sizeof log_tag, "%s", tag ? tag : "");
}

void log_write(int level, const char *fmt, ...) {
    char line[4096];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03d %-5s %s%s", (int)(tv.tv_usec / 1000),
                  level_names[level < 0   ? 0
                              : level > 3 ? 3
                                          : level],
                  log_tag, log_tag[0] ? ": " : "");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    n += m;
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    mh_write_all(STDERR_FILENO, line, (size_t)n);
    if (log_fd >= 0) mh_write_all(log_fd, line, (size_t)n);
}
