/* test_hub_proc.c — supervised children: exit codes, signals, grace period, logs and rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub/proc.h"
#include "util/common.h"

typedef struct result {
    int exited;
    int code;
    int lines;
    char last_line[256];
} result;

static void on_exit_cb(void *arg, int code) {
    result *r = arg;
    r->exited++;
    r->code = code;
}

static void on_line_cb(void *arg, const char *line, size_t len) {
    result *r = arg;
    r->lines++;
    snprintf(r->last_line, sizeof r->last_line, "%.*s", (int)len, line);
}

static struct event_base *base;
static char dir[256];

static int setup(void **state) {
    (void)state;
    base = event_base_new();
    snprintf(dir, sizeof dir, "/tmp/mh-proc-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    event_base_free(base);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run the loop until the child exited or `seconds` passed. */
static void run_until_exit(result *r, double seconds) {
    double end = mh_now_mono() + seconds;
    while (!r->exited && mh_now_mono() < end) {
        struct timeval tv = {0, 20000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static hub_proc *spawn(const char *script, result *r, const char *log, long long max) {
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    const char *env[] = {"MH_TEST_VAR=forty-two", NULL};
    hub_proc_opts o = {argv, env, log, max, on_exit_cb, on_line_cb, r};
    hub_proc *p;
    char err[256];
    assert_int_equal(hub_proc_spawn(base, &o, &p, err, sizeof err), 0);
    return p;
}

static void test_exit_code_and_log(void **state) {
    (void)state;
    char log[300];
    snprintf(log, sizeof log, "%s/a.log", dir);
    result r = {0};
    hub_proc *p = spawn("echo out; echo err >&2; echo $MH_TEST_VAR; exit 3", &r, log, 0);
    assert_true(hub_proc_pid(p) > 0);
    /* its own process group */
    assert_int_equal(getpgid(hub_proc_pid(p)), hub_proc_pid(p));
    run_until_exit(&r, 10);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.code, 3);
    assert_false(hub_proc_running(p));
    assert_int_equal(r.lines, 3);
    assert_string_equal(r.last_line, "forty-two");
    FILE *fp = fopen(log, "r");
    assert_non_null(fp);
    char buf[256] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "out\n"));
    assert_non_null(strstr(buf, "err\n"));
    hub_proc_free(p);
}

static void test_stop_sigterm(void **state) {
    (void)state;
    result r = {0};
    hub_proc *p = spawn("exec sleep 100", &r, NULL, 0);
    hub_proc_stop(p, 5);
    run_until_exit(&r, 10);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.code, -SIGTERM);
    hub_proc_free(p);
}

/* A child that ignores SIGTERM is killed after the grace period, with its whole group. */
static void test_stop_grace_sigkill(void **state) {
    (void)state;
    result r = {0};
    char pidfile[300], script[600];
    snprintf(pidfile, sizeof pidfile, "%s/grandchild.pid", dir);
    snprintf(script, sizeof script,
             "trap '' TERM; sleep 100 & echo $! > %s; echo ready; while :; do sleep 0.05; done",
             pidfile);
    hub_proc *p = spawn(script, &r, NULL, 0);
    double t0 = mh_now_mono();
    while (r.lines == 0 && mh_now_mono() - t0 < 10) {
        struct timeval tv = {0, 20000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    hub_proc_stop(p, 0.3);
    run_until_exit(&r, 10);
    double took = mh_now_mono() - t0;
    assert_int_equal(r.code, -SIGKILL);
    assert_true(took >= 0.3);
    FILE *fp = fopen(pidfile, "r");
    assert_non_null(fp);
    int gc = 0;
    assert_int_equal(fscanf(fp, "%d", &gc), 1);
    fclose(fp);
    /* the grandchild went with the group */
    for (int i = 0; i < 100 && kill(gc, 0) == 0; i++) usleep(20000);
    assert_int_not_equal(kill(gc, 0), 0);
    hub_proc_free(p);
}

static void test_log_rotation(void **state) {
    (void)state;
    char log[300], old[310];
    snprintf(log, sizeof log, "%s/r.log", dir);
    snprintf(old, sizeof old, "%s.1", log);
    result r = {0};
    hub_proc *p =
        spawn("i=0; while [ $i -lt 200 ]; do echo line-$i-xxxxxxxxxxxxxxxx; i=$((i+1)); done", &r,
              log, 1000);
    run_until_exit(&r, 10);
    assert_int_equal(r.lines, 200);
    struct stat st, st_old;
    assert_int_equal(stat(log, &st), 0);
    assert_int_equal(stat(old, &st_old), 0);
    assert_true(st.st_size <= 1000);
    assert_true(st_old.st_size <= 1000);
    hub_proc_free(p);
}

static void test_free_kills_running(void **state) {
    (void)state;
    result r = {0};
    hub_proc *p = spawn("exec sleep 100", &r, NULL, 0);
    pid_t pid = hub_proc_pid(p);
    hub_proc_free(p); /* kills and reaps: no zombie, no callback */
    assert_int_not_equal(kill(pid, 0), 0);
    assert_int_equal(r.exited, 0);
}

static void test_spawn_failure(void **state) {
    (void)state;
    const char *argv[] = {"/nonexistent/program", NULL};
    result r = {0};
    hub_proc_opts o = {argv, NULL, NULL, 0, on_exit_cb, NULL, &r};
    hub_proc *p = (hub_proc *)1;
    char err[256];
    assert_int_equal(hub_proc_spawn(base, &o, &p, err, sizeof err), -1);
    assert_null(p);
    assert_non_null(strstr(err, "/nonexistent/program"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_code_and_log),  cmocka_unit_test(test_stop_sigterm),
        cmocka_unit_test(test_stop_grace_sigkill), cmocka_unit_test(test_log_rotation),
        cmocka_unit_test(test_free_kills_running), cmocka_unit_test(test_spawn_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
