/* test_hub_config.c — hub.yaml loading: every key and default, seed keys, path resolution, one bad
 * file per validation rule with its exact "file:line: key: message", malformed YAML, adversarial
 * input (size, depth, alias bombs), reload rules and config discovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub/config.h"
#include "test_util.h"
#include "util/common.h"

/* ==== Helpers ==== */

static char tmpdir[256]; /* one folder for the whole run, removed at the end */
static char stories[4096];

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    fclose(fp);
}

/* `text` with every "@STORIES@" replaced by the stories260K path and "@TMP@" by tmpdir. */
static char *expand(const char *text) {
    mh_buf b = {0};
    mh_buf_append(&b, "", 0);
    for (const char *p = text; *p;) {
        if (strncmp(p, "@STORIES@", 9) == 0)
            mh_buf_printf(&b, "%s", stories), p += 9;
        else if (strncmp(p, "@TMP@", 5) == 0)
            mh_buf_printf(&b, "%s", tmpdir), p += 5;
        else
            mh_buf_append(&b, p++, 1);
    }
    return b.data;
}

static char path_buf[1024];
static char errbuf[65536];

/* Write `text` (expanded) to tmpdir/NAME and load it. */
static int load_text(const char *name, const char *text, hub_config **out) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", tmpdir, name);
    char *t = expand(text);
    write_text(path_buf, t);
    free(t);
    return hub_config_load(path_buf, out, errbuf, sizeof errbuf);
}

static hub_config *load_ok(const char *text) {
    hub_config *c = NULL;
    int rc = load_text("hub.yaml", text, &c);
    if (rc != 0) fprintf(stderr, "unexpected errors:\n%s", errbuf);
    assert_int_equal(rc, 0);
    assert_non_null(c);
    return c;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Whether errbuf holds the line "<path>:<expected>" exactly. */
static int has_error_line(const char *expected) {
    char want[8192];
    snprintf(want, sizeof want, "%s:%s\n", path_buf, expected);
    for (const char *p = errbuf; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p + 1) : strlen(p);
        if (n == strlen(want) && memcmp(p, want, n) == 0) return 1;
        p += n;
    }
    return 0;
}

/* Load `text`: it must fail, and one of the errors must be exactly `expected` (after "file:"). */
static void expect_error(const char *text, const char *expected) {
    hub_config *c = (hub_config *)1;
    int rc = load_text("hub.yaml", text, &c);
    if (rc == 0 || !has_error_line(expected)) {
        fprintf(stderr, "YAML:\n%s\nwanted: %s:%s\ngot:\n%s", text, path_buf, expected, errbuf);
        if (rc == 0) hub_config_free(c);
        fail();
    }
    assert_null(c);
}

/* ==== Valid files ==== */

static const char full_yaml[] =
    "# every key, in a seed-style file\n"
    "host: 0.0.0.0\n"
    "port: 9100\n"
    "model_starting_port: 48000\n"
    "log_path: logs/here\n"
    "log_level: DEBUG\n"
    "enable_status_page: false\n"
    "api_keys: [key-one, \"key-two\"]\n"
    "admin_key: s3cret\n"
    "start_timeout: 45.5\n"
    "stop_grace: 3\n"
    "log_max_bytes: 512KB\n"
    "state_dir: /var/tmp/mh-state\n"
    "queue_timeout: 30\n"
    "groups:\n"
    "  - name: gpu\n"
    "    max_loaded: 2\n"
    "  - name: cpu.small\n"
    "    max_loaded: 1\n"
    "models:\n"
    "  - name: stories\n" /* line 21 */
    "    model_path: @STORIES@\n"
    "    default: true\n"
    "    group: gpu\n"
    "    port: 47001\n"
    "    jit_enabled: false\n"
    "    idle_unload: 90\n"
    "    context_length: 256\n"
    "    max_concurrency: 4\n"
    "    queue_size: 8\n"
    "    queue_timeout: 12.5\n"
    "    log_level: warning\n"
    "    aliases: [st, \"org/stories:260k\"]\n"
    "    threads: 2\n"
    "    env: {OMP_NUM_THREADS: 1, FLAG: \"yes\", EMPTY: \"\"}\n"
    "  - name: external_1\n" /* line 36 */
    "    cmd: \"llama-server -m ${MODEL_PATH} --port ${PORT} --ctx 2048\"\n"
    "    model_path: @STORIES@\n"
    "    group: cpu.small\n"
    "    auto_unload_minutes: 2.5\n"
    "    env:\n"
    "      - A=1\n"
    "      - B=x=y\n"
    "  - name: remote\n" /* line 44 */
    "    upstream: http://10.1.2.3:8000/v1\n"
    "    max_concurrency: 16\n";

static void test_full_file(void **state) {
    (void)state;
    hub_config *c = load_ok(full_yaml);
    assert_string_equal(c->path, path_buf);
    assert_string_equal(c->host, "0.0.0.0");
    assert_int_equal(c->port, 9100);
    assert_int_equal(c->model_starting_port, 48000);
    char want[4200];
    snprintf(want, sizeof want, "%s/logs/here", tmpdir);
    assert_string_equal(c->log_path, want);
    assert_string_equal(c->log_level, "debug");
    assert_int_equal(c->enable_status_page, 0);
    assert_int_equal(c->n_api_keys, 2);
    assert_string_equal(c->api_keys[0], "key-one");
    assert_string_equal(c->api_keys[1], "key-two");
    assert_null(c->api_keys[2]);
    assert_string_equal(c->admin_key, "s3cret");
    assert_true(c->start_timeout == 45.5);
    assert_true(c->stop_grace == 3);
    assert_int_equal(c->log_max_bytes, 512000);
    assert_string_equal(c->state_dir, "/var/tmp/mh-state");
    assert_true(c->queue_timeout == 30);

    assert_int_equal(c->n_groups, 2);
    assert_string_equal(c->groups[0].name, "gpu");
    assert_int_equal(c->groups[0].max_loaded, 2);
    assert_int_equal(c->groups[0].line, 16);
    assert_string_equal(c->groups[1].name, "cpu.small");
    assert_int_equal(c->groups[1].max_loaded, 1);

    assert_int_equal(c->n_models, 3);
    const hub_model_config *m = &c->models[0];
    assert_string_equal(m->name, "stories");
    assert_int_equal(m->line, 21);
    assert_int_equal(m->backend, HUB_BACKEND_WORKER);
    assert_string_equal(m->model_path, stories);
    assert_int_equal(m->is_default, 1);
    assert_string_equal(m->group, "gpu");
    assert_int_equal(m->port, 47001);
    assert_int_equal(m->jit_enabled, 0);
    assert_true(m->idle_unload_s == 90);
    assert_int_equal(m->context_length, 256);
    assert_int_equal(m->max_concurrency, 4);
    assert_int_equal(m->queue_size, 8);
    assert_true(m->queue_timeout == 12.5);
    assert_string_equal(m->log_level, "warn");
    assert_int_equal(m->n_aliases, 2);
    assert_string_equal(m->aliases[0], "st");
    assert_string_equal(m->aliases[1], "org/stories:260k");
    assert_null(m->aliases[2]);
    assert_int_equal(m->threads, 2);
    assert_int_equal(m->n_env, 3);
    assert_string_equal(m->env[0], "OMP_NUM_THREADS=1");
    assert_string_equal(m->env[1], "FLAG=yes");
    assert_string_equal(m->env[2], "EMPTY=");
    assert_null(m->env[3]);
    assert_null(m->cmd);
    assert_null(m->upstream);

    m = &c->models[1];
    assert_string_equal(m->name, "external_1");
    assert_int_equal(m->line, 36);
    assert_int_equal(m->backend, HUB_BACKEND_EXTERNAL);
    assert_string_equal(m->cmd, "llama-server -m ${MODEL_PATH} --port ${PORT} --ctx 2048");
    assert_string_equal(m->model_path, stories);
    assert_string_equal(m->group, "cpu.small");
    assert_true(m->idle_unload_s == 150); /* 2.5 minutes */
    assert_int_equal(m->n_env, 2);
    assert_string_equal(m->env[0], "A=1");
    assert_string_equal(m->env[1], "B=x=y");
    /* model defaults: from the top level where there is one */
    assert_int_equal(m->is_default, 0);
    assert_int_equal(m->port, 0);
    assert_int_equal(m->jit_enabled, 1);
    assert_int_equal(m->max_concurrency, 1);
    assert_int_equal(m->queue_size, 64);
    assert_true(m->queue_timeout == 30);
    assert_string_equal(m->log_level, "debug");
    assert_int_equal(m->n_aliases, 0);
    assert_int_equal(m->context_length, 0);
    assert_int_equal(m->threads, 0);

    m = &c->models[2];
    assert_int_equal(m->backend, HUB_BACKEND_UPSTREAM);
    assert_string_equal(m->upstream, "http://10.1.2.3:8000/v1");
    assert_int_equal(m->max_concurrency, 16);
    assert_null(m->model_path);
    assert_null(m->group);
    assert_int_equal(m->n_env, 0);

    assert_ptr_equal(hub_config_find_model(c, "stories"), &c->models[0]);
    assert_ptr_equal(hub_config_find_model(c, "org/stories:260k"), &c->models[0]);
    assert_ptr_equal(hub_config_find_model(c, "remote"), &c->models[2]);
    assert_null(hub_config_find_model(c, "nope"));
    assert_ptr_equal(hub_config_find_group(c, "cpu.small"), &c->groups[1]);
    assert_null(hub_config_find_group(c, "tpu"));
    hub_config_free(c);
}

static void test_defaults(void **state) {
    (void)state;
    setenv("XDG_STATE_HOME", "/xdg/state", 1);
    hub_config *c = load_ok("models: []\n");
    assert_string_equal(c->host, "127.0.0.1");
    assert_int_equal(c->port, 8080);
    assert_int_equal(c->model_starting_port, 47850);
    assert_string_equal(c->state_dir, "/xdg/state/modelhub");
    assert_string_equal(c->log_path, "/xdg/state/modelhub/logs");
    assert_string_equal(c->log_level, "info");
    assert_int_equal(c->enable_status_page, 1);
    assert_int_equal(c->n_api_keys, 0);
    assert_null(c->admin_key);
    assert_true(c->start_timeout == 60);
    assert_true(c->stop_grace == 10);
    assert_int_equal(c->log_max_bytes, 10 << 20);
    assert_true(c->queue_timeout == 120);
    assert_int_equal(c->n_models, 0);
    assert_int_equal(c->n_groups, 0);
    hub_config_free(c);

    /* no XDG_STATE_HOME (or a relative one, which the spec says to ignore): ~/.local/state */
    setenv("XDG_STATE_HOME", "relative/state", 1);
    setenv("HOME", "/home/someone", 1);
    c = load_ok("models: []\nstate_dir: ~/mh\n");
    assert_string_equal(c->state_dir, "/home/someone/mh");
    assert_string_equal(c->log_path, "/home/someone/mh/logs");
    hub_config_free(c);
    unsetenv("XDG_STATE_HOME");
    c = load_ok("models: []\n");
    assert_string_equal(c->state_dir, "/home/someone/.local/state/modelhub");
    hub_config_free(c);
}

/* The browser-side and health-check keys: lists of tokens, origins with a scheme, seconds. */
static void test_security_keys(void **state) {
    (void)state;
    hub_config *c = load_ok("models: []\n");
    assert_int_equal(c->n_allowed_hosts, 0);
    assert_int_equal(c->n_cors_origins, 0);
    assert_true(c->health_check_interval == 10);
    assert_true(c->health_check_timeout == 5);
    hub_config_free(c);
    c = load_ok("models: []\nallowed_hosts: [a.lan, \"*\"]\n"
                "cors_origins: [\"http://localhost:3000\", \"https://app.example\"]\n"
                "health_check_interval: 0.5\nhealth_check_timeout: 2\n");
    assert_int_equal(c->n_allowed_hosts, 2);
    assert_string_equal(c->allowed_hosts[0], "a.lan");
    assert_string_equal(c->allowed_hosts[1], "*");
    assert_null(c->allowed_hosts[2]);
    assert_int_equal(c->n_cors_origins, 2);
    assert_string_equal(c->cors_origins[1], "https://app.example");
    assert_null(c->cors_origins[2]);
    assert_true(c->health_check_interval == 0.5);
    assert_true(c->health_check_timeout == 2);
    hub_config_free(c);
    expect_error("models: []\ncors_origins: [localhost:3000]\n",
                 "2: cors_origins[0]: an origin is scheme://host[:port] (http or https), got "
                 "'localhost:3000'");
    expect_error("models: []\nallowed_hosts: a.lan\n",
                 "2: allowed_hosts: expected a list of host names, got 'a.lan'");
    expect_error("models: []\nhealth_check_timeout: 0\n",
                 "2: health_check_timeout: must be more than 0 seconds");
    expect_error("models: []\nhealth_check_interval: -1\n",
                 "2: health_check_interval: must be from 0 to 86400 seconds, got -1");
}

/* A file as the seed wrote them: minutes, YAML 1.1 booleans, no new keys. */
static void test_seed_keys(void **state) {
    (void)state;
    hub_config *c = load_ok("host: 127.0.0.1\n"
                            "port: 8080\n"
                            "model_starting_port: 47850\n"
                            "log_level: INFO\n"
                            "enable_status_page: yes\n"
                            "models:\n"
                            "  - name: tiny\n"
                            "    model_path: @STORIES@\n"
                            "    default: yes\n"
                            "    jit_enabled: off\n"
                            "    auto_unload_minutes: 5\n"
                            "    context_length: 512\n"
                            "    max_concurrency: 2\n"
                            "    queue_size: 10\n"
                            "    queue_timeout: 60\n"
                            "    log_level: error\n"
                            "groups: []\n");
    assert_string_equal(c->log_level, "info");
    assert_int_equal(c->enable_status_page, 1);
    assert_int_equal(c->models[0].is_default, 1);
    assert_int_equal(c->models[0].jit_enabled, 0);
    assert_true(c->models[0].idle_unload_s == 300);
    assert_string_equal(c->models[0].log_level, "error");
    assert_true(c->models[0].queue_timeout == 60);
    hub_config_free(c);
    /* auto_unload_minutes: 0 = never */
    c = load_ok("models:\n  - {name: a, model_path: @STORIES@, auto_unload_minutes: 0}\n");
    assert_true(c->models[0].idle_unload_s == 0);
    hub_config_free(c);
}

static void test_relative_paths(void **state) {
    (void)state;
    char sub[512], models_dir[600], link[700], want[800];
    snprintf(sub, sizeof sub, "%s/conf", tmpdir);
    snprintf(models_dir, sizeof models_dir, "%s/models", sub);
    mkdir(sub, 0755);
    mkdir(models_dir, 0755);
    snprintf(link, sizeof link, "%s/tiny.gguf", models_dir);
    unlink(link);
    assert_int_equal(symlink(stories, link), 0);
    const char *yaml = "log_path: ./logs\n"
                       "models:\n"
                       "  - {name: a, model_path: models/tiny.gguf}\n"
                       "  - {name: b, model_path: ./models/tiny.gguf}\n"
                       "  - {name: c, model_path: ~/tiny.gguf}\n";
    char file[700];
    snprintf(file, sizeof file, "%s/hub.yaml", sub);
    write_text(file, yaml);
    setenv("HOME", models_dir, 1);
    hub_config *c;
    int rc = hub_config_load(file, &c, errbuf, sizeof errbuf);
    if (rc) fprintf(stderr, "%s", errbuf);
    assert_int_equal(rc, 0);
    assert_string_equal(c->models[0].model_path, link);
    assert_string_equal(c->models[1].model_path, link);
    assert_string_equal(c->models[2].model_path, link);
    snprintf(want, sizeof want, "%s/logs", sub);
    assert_string_equal(c->log_path, want);
    hub_config_free(c);

    /* a relative config path: resolved from the current folder, stored absolute */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmpdir), 0);
    rc = hub_config_load("conf/hub.yaml", &c, errbuf, sizeof errbuf);
    assert_int_equal(rc, 0);
    assert_string_equal(c->path, "conf/hub.yaml");
    assert_string_equal(c->models[0].model_path, link);
    hub_config_free(c);
    /* a missing model is named by its resolved path */
    write_text("conf/bad.yaml", "models:\n  - {name: a, model_path: models/none.gguf}\n");
    rc = hub_config_load("conf/bad.yaml", &c, errbuf, sizeof errbuf);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(errbuf, "conf/bad.yaml:2: models[0].model_path: '"));
    assert_non_null(strstr(errbuf, "' does not exist\n"));
    assert_int_equal(chdir(cwd), 0);
}

/* Anchors, aliases and merge keys, with "x-" top-level keys to hold them. */
static void test_anchors_and_merge(void **state) {
    (void)state;
    hub_config *c = load_ok("x-defaults: &defaults\n"
                            "  model_path: @STORIES@\n"
                            "  queue_size: 3\n"
                            "  env: &env {A: \"1\"}\n"
                            "models:\n"
                            "  - <<: *defaults\n"
                            "    name: one\n"
                            "  - <<: *defaults\n"
                            "    name: two\n"
                            "    queue_size: 5\n"
                            "    env: *env\n");
    assert_int_equal(c->n_models, 2);
    assert_string_equal(c->models[0].model_path, stories);
    assert_int_equal(c->models[0].queue_size, 3);
    assert_int_equal(c->models[1].queue_size, 5);
    assert_string_equal(c->models[1].env[0], "A=1");
    hub_config_free(c);
    /* merge of a list of mappings: earlier ones win */
    c = load_ok("x-a: &a {queue_size: 1}\n"
                "x-b: &b {queue_size: 2, threads: 3}\n"
                "models:\n"
                "  - {<<: [*a, *b], name: m, model_path: @STORIES@}\n");
    assert_int_equal(c->models[0].queue_size, 1);
    assert_int_equal(c->models[0].threads, 3);
    hub_config_free(c);
}

static void test_value_forms(void **state) {
    (void)state;
    static const struct {
        const char *text;
        long long bytes;
    } sizes[] = {{"4096", 4096},           {"\"4096\"", 4096},   {"0", 0},
                 {"512KB", 512000},        {"512 KiB", 524288},  {"10MiB", 10485760},
                 {"10mb", 10000000},       {"1.5G", 1610612736}, {"2k", 2048},
                 {"\"3 GB\"", 3000000000}, {"100B", 100}};
    for (size_t i = 0; i < MH_ARRAY_LEN(sizes); i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "models: []\nlog_max_bytes: %s\n", sizes[i].text);
        hub_config *c = load_ok(yaml);
        if (c->log_max_bytes != sizes[i].bytes) fprintf(stderr, "size %s\n", sizes[i].text);
        assert_int_equal(c->log_max_bytes, sizes[i].bytes);
        hub_config_free(c);
    }
    static const char *const upstreams[] = {"http://example.com", "http://[::1]:8080/v1",
                                            "HTTP://h:1", "http://host/path?q=1"};
    for (size_t i = 0; i < MH_ARRAY_LEN(upstreams); i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "models:\n  - {name: r, upstream: \"%s\"}\n", upstreams[i]);
        hub_config *c = load_ok(yaml);
        assert_string_equal(c->models[0].upstream, upstreams[i]);
        hub_config_free(c);
    }
    /* a cmd with a fixed port; !!str; a numeric name; a flow-style file */
    hub_config *c =
        load_ok("{port: 8081, models: [{name: 7b, cmd: \"srv --port 9999\", port: 9999, "
                "aliases: [!!str 123]}]}\n");
    assert_string_equal(c->models[0].name, "7b");
    assert_string_equal(c->models[0].aliases[0], "123");
    assert_int_equal(c->models[0].port, 9999);
    assert_int_equal(c->models[0].backend, HUB_BACKEND_EXTERNAL);
    assert_null(c->models[0].model_path);
    hub_config_free(c);
    /* a name of 64 characters is fine */
    c = load_ok(
        "models:\n  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
        "    model_path: @STORIES@\n");
    hub_config_free(c);
}

/* ==== One bad file per rule ==== */

typedef struct bad_case {
    const char *yaml;
    const char *error; /* after "<file>:" */
} bad_case;

#define M1 "models:\n  - name: a\n    model_path: @STORIES@\n" /* one good model, lines 1-3 */

static const bad_case bad_cases[] = {
    /* unknown keys */
    {"models: []\nprot: 1\n", "2: prot: unknown key (did you mean 'port'?)"},
    {"models: []\nfrobnicate: 1\n", "2: frobnicate: unknown key"},
    {M1 "    modle_path: x\n", "4: models[0].modle_path: unknown key (did you mean 'model_path'?)"},
    {"models: []\ngroups:\n  - {name: g, max_loaded: 1, max_load: 2}\n",
     "3: groups[0].max_load: unknown key (did you mean 'max_loaded'?)"},
    /* wrong types */
    {"models: []\nport: \"9000\"\n",
     "2: port: expected an integer from 1 to 65535, got the string \"9000\" (write it without "
     "quotes)"},
    {"models: []\nport: [1]\n", "2: port: expected an integer from 1 to 65535, got a list"},
    {"models: []\nport: 80.5\n", "2: port: expected an integer from 1 to 65535, got '80.5'"},
    {"models: []\nhost: {a: 1}\n", "2: host: expected a string, got a mapping"},
    {"models: []\nhost:\n", "2: host: expected a string, got null"},
    {"models: []\nhost: a b\n", "2: host: the host 'a b' contains a space or a control character"},
    {"models: []\nenable_status_page: maybe\n",
     "2: enable_status_page: expected true or false, got 'maybe'"},
    {"models: []\nenable_status_page: \"true\"\n",
     "2: enable_status_page: expected true or false, got the string \"true\""},
    {"models: []\napi_keys: abc\n", "2: api_keys: expected a list of keys, got 'abc'"},
    {"models: []\napi_keys: [ok, \"\"]\n", "2: api_keys[1]: key is empty"},
    {"models: []\nadmin_key: yes\n",
     "2: admin_key: expected a string, got 'yes' (quote it to make it a string)"},
    {"models: {a: 1}\n", "1: models: expected a list of models, got a mapping"},
    {"models:\n", "1: models: expected a list of models, got null (write 'models: []' for none)"},
    {"models: []\ngroups: gpu\n", "2: groups: expected a list of groups, got 'gpu'"},
    {"models:\n  - just-a-name\n",
     "2: models[0]: expected a mapping with at least a name, got 'just-a-name'"},
    {"models: []\ngroups:\n  - gpu\n",
     "3: groups[0]: expected a mapping with name and max_loaded, got 'gpu'"},
    {"models:\n  - name: [a]\n    model_path: @STORIES@\n",
     "2: models[0].name: expected a string, got a list"},
    {M1 "    default: 1\n", "4: models[0].default: expected true or false, got '1'"},
    {M1 "    aliases: b\n", "4: models[0].aliases: expected a list of names, got 'b'"},
    {M1 "    aliases: [[b]]\n", "4: models[0].aliases[0]: expected a string, got a list"},
    {M1 "    env: A=1\n",
     "4: models[0].env: expected a mapping of NAME: value or a list of \"NAME=value\", got 'A=1'"},
    {M1 "    env: {A: [1]}\n", "4: models[0].env.A: expected a string value, got a list"},
    {M1 "    env: {A: }\n",
     "4: models[0].env.A: expected a string value, got null (write \"\" for empty)"},
    {M1 "    env: {1A: x}\n",
     "4: models[0].env.1A: not a valid environment variable name (letters, digits and '_', not "
     "starting with a digit)"},
    {M1 "    env: [A-B=1]\n",
     "4: models[0].env[0]: expected \"NAME=value\" with a valid variable name, got 'A-B=1'"},
    {M1 "    env: [A=1, B=2, A=3]\n", "4: models[0].env[2]: variable 'A' is set twice"},
    {M1 "    idle_unload: soon\n",
     "4: models[0].idle_unload: expected a number of seconds, got 'soon'"},
    {M1 "    idle_unload: .inf\n",
     "4: models[0].idle_unload: expected a number of seconds, got '.inf'"},
    {M1 "    queue_timeout: 0x10\n",
     "4: models[0].queue_timeout: expected a number of seconds, got '0x10'"},
    {"models: []\nlog_max_bytes: 10XB\n",
     "2: log_max_bytes: expected a size such as 10485760, 512KB or 10MiB, got '10XB'"},
    {"models: []\nlog_max_bytes: -1\n",
     "2: log_max_bytes: expected a size such as 10485760, 512KB or 10MiB, got '-1'"},
    {"models: []\nlog_max_bytes: 0x100\n",
     "2: log_max_bytes: expected a size such as 10485760, 512KB or 10MiB, got '0x100'"},
    {"models: []\nlog_max_bytes: 2TiB\n", "2: log_max_bytes: must be at most 1 TiB, got '2TiB'"},
    {"models: []\nlog_level: loud\n",
     "2: log_level: expected error, warn, info or debug, got 'loud'"},
    {M1 "    log_level: 3\n",
     "4: models[0].log_level: expected error, warn, info or debug, got '3'"},
    {"models:\n  - name: a\n    model_path: !!binary abc\n",
     "3: unsupported YAML tag 'tag:yaml.org,2002:binary' (only !!str is accepted)"},
    {"models: []\n? [a, b]\n: 1\n", "2: keys must be strings, got a list"},
    /* bad slugs */
    {"models:\n  - name: Big\n    model_path: @STORIES@\n",
     "2: models[0].name: model name 'Big' may hold only lower-case letters, digits and '-', '_', "
     "'.', and must start with a letter or a digit"},
    {"models:\n  - name: -a\n    model_path: @STORIES@\n",
     "2: models[0].name: model name '-a' may hold only lower-case letters, digits and '-', '_', "
     "'.', and must start with a letter or a digit"},
    {"models:\n  - name: a/b\n    model_path: @STORIES@\n",
     "2: models[0].name: model name 'a/b' may hold only lower-case letters, digits and '-', '_', "
     "'.', and must start with a letter or a digit"},
    {"models:\n  - name: \"\"\n    model_path: @STORIES@\n",
     "2: models[0].name: model name is empty"},
    {"models:\n  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
     "    model_path: @STORIES@\n",
     "2: models[0].name: model name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is longer than "
     "64 "
     "characters"},
    {"models: []\ngroups:\n  - {name: G, max_loaded: 1}\n",
     "3: groups[0].name: group name 'G' may hold only lower-case letters, digits and '-', '_', "
     "'.', and must start with a letter or a digit"},
    {M1 "    aliases: [\"Org/Model\"]\n",
     "4: models[0].aliases[0]: alias 'Org/Model' may hold only lower-case letters, digits and "
     "'-', '_', '.', ':', '/', and must start with a letter or a digit"},
    {M1 "    aliases: [\"a b\"]\n",
     "4: models[0].aliases[0]: alias 'a b' may hold only lower-case letters, digits and '-', "
     "'_', '.', ':', '/', and must start with a letter or a digit"},
    /* duplicates */
    {M1 "  - name: a\n    model_path: @STORIES@\n",
     "4: models[1].name: duplicate model name 'a' (first at line 2)"},
    {M1 "  - name: b\n    model_path: @STORIES@\n    aliases: [a]\n",
     "6: models[1].aliases[0]: alias 'a' is already the name of models[0] (line 2)"},
    {M1 "    aliases: [x]\n  - name: b\n    model_path: @STORIES@\n    aliases: [y, x]\n",
     "7: models[1].aliases[1]: alias 'x' is already an alias of model 'a' (line 4)"},
    {M1 "    aliases: [a]\n", "4: models[0].aliases[0]: alias 'a' is the model's own name"},
    {M1 "    aliases:\n      - x\n      - x\n",
     "6: models[0].aliases[1]: alias 'x' is listed twice (first at line 5)"},
    {M1 "    port: 47001\n  - name: b\n    model_path: @STORIES@\n    port: 47001\n",
     "7: models[1].port: port 47001 is already used by model 'a' (line 4)"},
    {"port: 9000\n" M1 "    port: 9000\n", "5: models[0].port: port 9000 is the hub's own port"},
    {M1 "    port: 8080\n", "4: models[0].port: port 8080 is the hub's own port"},
    {"models: []\ngroups:\n  - {name: g, max_loaded: 1}\n  - {name: g, max_loaded: 2}\n",
     "4: groups[1].name: duplicate group name 'g' (first at line 3)"},
    {M1 "    threads: 1\n    threads: 2\n",
     "5: models[0]: duplicate key 'threads' (first at line 4)"},
    {"models: []\nport: 1\nport: 2\n", "3: duplicate key 'port' (first at line 2)"},
    /* undefined group */
    {M1 "    group: gpu\n", "4: models[0].group: group 'gpu' is not defined"},
    {"groups:\n  - {name: cpu, max_loaded: 1}\n" M1 "    group: gpu\n",
     "6: models[0].group: group 'gpu' is not defined"},
    /* out of range */
    {"models: []\nport: 0\n", "2: port: must be from 1 to 65535, got 0"},
    {"models: []\nport: 70000\n", "2: port: must be from 1 to 65535, got 70000"},
    {"models: []\nmodel_starting_port: 0\n",
     "2: model_starting_port: must be from 1 to 65535, got 0"},
    {"models: []\nport: 99999999999999999999\n",
     "2: port: expected an integer from 1 to 65535, got '99999999999999999999'"},
    {M1 "    port: -1\n", "4: models[0].port: must be from 1 to 65535, got -1"},
    {M1 "    max_concurrency: 0\n", "4: models[0].max_concurrency: must be from 1 to 256, got 0"},
    {M1 "    max_concurrency: 257\n",
     "4: models[0].max_concurrency: must be from 1 to 256, got 257"},
    {M1 "    queue_size: -1\n", "4: models[0].queue_size: must be from 0 to 1048576, got -1"},
    {M1 "    context_length: -5\n",
     "4: models[0].context_length: must be from 0 to 1048576, got -5"},
    {M1 "    threads: 5000\n", "4: models[0].threads: must be from 0 to 1024, got 5000"},
    {M1 "    idle_unload: -5\n",
     "4: models[0].idle_unload: must be from 0 to 1e+09 seconds, got -5"},
    {M1 "    auto_unload_minutes: -1\n",
     "4: models[0].auto_unload_minutes: must be from 0 to 1.66667e+07 minutes, got -1"},
    {M1 "    queue_timeout: 2e6\n",
     "4: models[0].queue_timeout: must be from 0 to 1e+06 seconds, got 2e+06"},
    {"models: []\nstart_timeout: 0\n", "2: start_timeout: must be more than 0 seconds"},
    {"models: []\nstop_grace: -1\n", "2: stop_grace: must be from 0 to 3600 seconds, got -1"},
    {"models: []\nqueue_timeout: -1\n",
     "2: queue_timeout: must be from 0 to 1e+06 seconds, got -1"},
    {"models: []\ngroups:\n  - {name: g, max_loaded: 0}\n",
     "3: groups[0].max_loaded: must be from 1 to 1048576, got 0"},
    /* missing required keys */
    {"port: 8080\n", "1: models: required key is missing (write 'models: []' for none)"},
    {"models:\n  - model_path: @STORIES@\n", "2: models[0].name: required key is missing"},
    {"models:\n  - name: a\n", "2: models[0].model_path: required key is missing (or give 'cmd' or "
                               "'upstream')"},
    {"models: []\ngroups:\n  - name: g\n", "3: groups[0].max_loaded: required key is missing"},
    {"models: []\ngroups:\n  - max_loaded: 2\n", "3: groups[0].name: required key is missing"},
    /* model_path must be a readable GGUF file */
    {"models:\n  - name: a\n    model_path: /nonexistent/x.gguf\n",
     "3: models[0].model_path: '/nonexistent/x.gguf' does not exist"},
    {"models:\n  - name: a\n    model_path: /\n",
     "3: models[0].model_path: '/' is not a regular file"},
    {"models:\n  - name: a\n    model_path: /etc/hostname\n",
     "3: models[0].model_path: '/etc/hostname' is not a GGUF file"},
    {"models:\n  - name: a\n    model_path: \"\"\n", "3: models[0].model_path: is empty"},
    /* seed and new spelling of one setting */
    {M1 "    auto_unload_minutes: 5\n    idle_unload: 30\n",
     "5: models[0].idle_unload: give either idle_unload (seconds) or auto_unload_minutes, not "
     "both"},
    /* cmd */
    {"models:\n  - name: a\n    cmd: \"srv ${FOO} --port ${PORT}\"\n",
     "3: models[0].cmd: unknown variable '${FOO}' (only ${PORT} and ${MODEL_PATH} are expanded)"},
    {"models:\n  - name: a\n    cmd: \"srv --port ${PORT\"\n",
     "3: models[0].cmd: '${' without a closing '}'"},
    {"models:\n  - name: a\n    cmd: \"srv -m ${MODEL_PATH} --port ${PORT}\"\n",
     "3: models[0].cmd: uses ${MODEL_PATH} but model_path is not set"},
    {"models:\n  - name: a\n    cmd: srv\n",
     "3: models[0].cmd: has no ${PORT}, so 'port' must say where the server listens"},
    {"models:\n  - name: a\n    cmd: \"srv --port ${PORT}\"\n    threads: 2\n",
     "4: models[0].threads: not allowed with 'cmd' (pass it in the command itself)"},
    {"models:\n  - name: a\n    cmd: \"  \"\n", "3: models[0].cmd: is empty"},
    {"models:\n  - name: a\n    cmd: \"srv ${PORT}\"\n    model_path: /etc/hostname\n    x: 1\n",
     "5: models[0].x: unknown key"},
    /* upstream */
    {"models:\n  - name: r\n    upstream: https://api.example.com/v1\n",
     "3: models[0].upstream: https is not supported (the hub's proxy speaks plain HTTP): "
     "'https://api.example.com/v1'"},
    {"models:\n  - name: r\n    upstream: ftp://x\n",
     "3: models[0].upstream: expected an http:// URL, got 'ftp://x'"},
    {"models:\n  - name: r\n    upstream: http:///v1\n",
     "3: models[0].upstream: the URL 'http:///v1' has no host"},
    {"models:\n  - name: r\n    upstream: http://h:0/\n",
     "3: models[0].upstream: bad port in 'http://h:0/' (expected 1 to 65535)"},
    {"models:\n  - name: r\n    upstream: http://h:x/\n",
     "3: models[0].upstream: bad port in 'http://h:x/' (expected 1 to 65535)"},
    {"models:\n  - name: r\n    upstream: \"http://a b\"\n",
     "3: models[0].upstream: URL 'http://a b' contains a space or a control character"},
    {"models:\n  - name: r\n    upstream: http://u:p@h/\n",
     "3: models[0].upstream: user:password@ in the URL is not supported: 'http://u:p@h/'"},
    {"models:\n  - name: r\n    upstream: http://[::1/\n",
     "3: models[0].upstream: bad IPv6 address in 'http://[::1/'"},
    {"models:\n  - name: r\n    upstream: http://h/\n    model_path: @STORIES@\n",
     "4: models[0].model_path: not allowed with 'upstream' (the hub starts and loads nothing for "
     "it)"},
    {"models:\n  - name: r\n    upstream: http://h/\n    cmd: x\n",
     "4: models[0].cmd: not allowed with 'upstream' (the hub starts and loads nothing for it)"},
    {"models:\n  - name: r\n    upstream: http://h/\n    port: 9\n",
     "4: models[0].port: not allowed with 'upstream' (the hub starts and loads nothing for it)"},
    /* group capacity at start */
    {"groups:\n  - {name: g, max_loaded: 1}\n"
     "models:\n"
     "  - {name: a, model_path: @STORIES@, group: g, default: true, jit_enabled: false}\n"
     "  - {name: b, model_path: @STORIES@, group: g, default: true, jit_enabled: false}\n",
     "5: models[1].group: group 'g' holds 1 loaded model, but this is default model number 2 with "
     "jit_enabled: false (they load at start)"},
    /* the file as a whole */
    {"", "1: the file is empty (expected a mapping with a 'models' list)"},
    {"# only a comment\n\n", "1: the file is empty (expected a mapping with a 'models' list)"},
    {"---\n", "1: the file is empty (expected a mapping with a 'models' list)"},
    {"- a\n- b\n", "1: the top level must be a mapping (host, port, models, ...), got a list"},
    {"just text\n",
     "1: the top level must be a mapping (host, port, models, ...), got 'just text'"},
    {"models: []\n---\nmodels: []\n", "2: a second YAML document: hub.yaml holds exactly one"},
    /* malformed YAML: the line of the problem */
    {"models:\n  - name: a\n     model_path: x\n",
     "3: YAML syntax error: mapping values are not allowed in this context (column 16)"},
    {"port: 8080\nmodels:\n\t- name: a\n",
     "3: YAML syntax error: found character that cannot start any token (column 1, while "
     "scanning for the next token) (a tab in the indentation: YAML indents with spaces only)"},
    {"models: []\nhost: \"127.0.0.1\nport: 9\n",
     "4: YAML syntax error: found unexpected end of stream (column 1, while scanning a quoted "
     "scalar at line 2)"},
    {"models: [a, b\nport: 1\n",
     "2: YAML syntax error: did not find expected ',' or ']' (column 5, while parsing a flow "
     "sequence at line 1)"},
    {"models: []\nport: *nothing\n", "2: alias '*nothing' refers to no anchor defined before it"},
    {"models: []\nx-a: &a [1, *a]\n", "2: alias '*a' refers to a collection that contains it"},
    {"models: []\nport: 1\xff\n", "2: YAML syntax error: invalid leading UTF-8 octet (byte 0xff)"},
    {"models: []\nhost: \"a\\0b\"\n", "2: host: contains a NUL character"},
    {"models:\n  - <<: 5\n    name: a\n    model_path: @STORIES@\n",
     "2: models[0]: '<<' merges a mapping or a list of mappings, got '5'"},
};

static void test_bad_files(void **state) {
    (void)state;
    for (size_t i = 0; i < MH_ARRAY_LEN(bad_cases); i++)
        expect_error(bad_cases[i].yaml, bad_cases[i].error);
}

static void test_unreadable_model(void **state) {
    (void)state;
    if (geteuid() == 0) skip(); /* root reads anything */
    char p[600];
    snprintf(p, sizeof p, "%s/secret.gguf", tmpdir);
    write_text(p, "GGUF");
    chmod(p, 0);
    hub_config *c;
    assert_int_equal(load_text("hub.yaml", "models:\n  - {name: a, model_path: secret.gguf}\n", &c),
                     -1);
    assert_non_null(strstr(errbuf, "cannot read '"));
    assert_non_null(strstr(errbuf, "Permission denied"));
}

/* Many problems in one file: every one reported, sorted by line, one per line. */
static void test_all_errors_reported(void **state) {
    (void)state;
    hub_config *c;
    int rc = load_text("hub.yaml",
                       "port: 0\n"                                 /* 1 */
                       "log_level: loud\n"                         /* 2 */
                       "models:\n"                                 /* 3 */
                       "  - name: Bad Name\n"                      /* 4 */
                       "    model_path: /nonexistent.gguf\n"       /* 5 */
                       "    group: none\n"                         /* 6 */
                       "  - name: ok\n"                            /* 7 */
                       "    cmd: \"x ${WHAT}\"\n"                  /* 8 */
                       "    queue_size: lots\n"                    /* 9 */
                       "groups:\n"                                 /* 10 */
                       "  - {name: g, max_loaded: -1, extra: 1}\n" /* 11 */
                       "wat: 1\n",                                 /* 12 */
                       &c);
    assert_int_equal(rc, -1);
    assert_null(c);
    static const char *const want[] = {
        "1: port: must be from 1 to 65535, got 0",
        "2: log_level: expected error, warn, info or debug, got 'loud'",
        "4: models[0].name: model name 'Bad Name' may hold only lower-case letters, digits and "
        "'-', '_', '.', and must start with a letter or a digit",
        "5: models[0].model_path: '/nonexistent.gguf' does not exist",
        "6: models[0].group: group 'none' is not defined",
        "8: models[1].cmd: unknown variable '${WHAT}' (only ${PORT} and ${MODEL_PATH} are "
        "expanded)",
        "8: models[1].cmd: has no ${PORT}, so 'port' must say where the server listens",
        "9: models[1].queue_size: expected an integer from 0 to 1048576, got 'lots'",
        "11: groups[0].extra: unknown key",
        "11: groups[0].max_loaded: must be from 1 to 1048576, got -1",
        "12: wat: unknown key",
    };
    for (size_t i = 0; i < MH_ARRAY_LEN(want); i++) {
        if (!has_error_line(want[i])) fprintf(stderr, "missing %s in:\n%s", want[i], errbuf);
        assert_true(has_error_line(want[i]));
    }
    assert_int_equal(count_lines(errbuf), (int)MH_ARRAY_LEN(want));
    /* sorted by line */
    int last = 0;
    for (const char *p = errbuf; *p; p = strchr(p, '\n') + 1) {
        int line = atoi(p + strlen(path_buf) + 1);
        assert_true(line >= last);
        last = line;
    }
}

/* errbuf too small: whole lines only, then "...". */
static void test_small_errbuf(void **state) {
    (void)state;
    hub_config *c;
    char small[200];
    snprintf(path_buf, sizeof path_buf, "%s/hub.yaml", tmpdir);
    write_text(path_buf, "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\ng: 7\nh: 8\nmodels: []\n");
    assert_int_equal(hub_config_load(path_buf, &c, small, sizeof small), -1);
    size_t n = strlen(small);
    assert_true(n < sizeof small);
    assert_true(n > 4);
    assert_string_equal(small + n - 4, "...\n");
    assert_int_equal(hub_config_load(path_buf, &c, small, 1), -1);
    assert_string_equal(small, "");
    assert_int_equal(hub_config_load(path_buf, &c, NULL, 0), -1);
}

static void test_file_problems(void **state) {
    (void)state;
    hub_config *c;
    char want[2048];
    snprintf(path_buf, sizeof path_buf, "%s/none.yaml", tmpdir);
    assert_int_equal(hub_config_load(path_buf, &c, errbuf, sizeof errbuf), -1);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory\n", path_buf);
    assert_string_equal(errbuf, want);
    assert_null(c);
    assert_int_equal(hub_config_load(tmpdir, &c, errbuf, sizeof errbuf), -1);
    snprintf(want, sizeof want, "%s: is a directory, not a file\n", tmpdir);
    assert_string_equal(errbuf, want);
}

/* ==== Adversarial input ==== */

static void test_too_large(void **state) {
    (void)state;
    size_t n = 10u << 20;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++) big[i] = i % 32 == 31 ? '\n' : 'a';
    memcpy(big, "models: []\n#", 12);
    big[n] = 0;
    snprintf(path_buf, sizeof path_buf, "%s/big.yaml", tmpdir);
    write_text(path_buf, big);
    hub_config *c;
    double t0 = mh_now_mono();
    assert_int_equal(hub_config_load(path_buf, &c, errbuf, sizeof errbuf), -1);
    char want[2048];
    snprintf(want, sizeof want,
             "%s: the file is too large (10485760 bytes; the limit is 1048576)\n", path_buf);
    assert_string_equal(errbuf, want);
    assert_int_equal(hub_config_parse(big, n, "mem.yaml", &c, errbuf, sizeof errbuf), -1);
    assert_string_equal(errbuf, "mem.yaml: the file is too large (10485760 bytes; the limit is "
                                "1048576)\n");
    assert_true(mh_now_mono() - t0 < 1.0);
    free(big);
}

/* Big files are handled in linear time: 1 MiB of models is refused by the node cap, 10000
 * models (just under it) load, names and aliases checked through hash tables. */
static void test_large_but_allowed(void **state) {
    (void)state;
    mh_buf b = {0};
    mh_buf_printf(&b, "models:\n");
    for (int i = 0; b.len < HUB_CONFIG_MAX_BYTES - 200; i++)
        mh_buf_printf(&b, "  - {name: m%d, cmd: \"s ${PORT}\", aliases: [a%d]}\n", i, i);
    hub_config *c;
    double t0 = mh_now_mono();
    int rc = hub_config_parse(b.data, b.len, "big.yaml", &c, errbuf, sizeof errbuf);
    assert_true(mh_now_mono() - t0 < 5.0);
    assert_int_equal(rc, -1);
    assert_string_equal(errbuf, "big.yaml:12501: the document has more than 100000 YAML nodes\n");
    mh_buf_free(&b);

    mh_buf_printf(&b, "models:\n"); /* 1 + 10000 * 9 nodes */
    for (int i = 0; i < 10000; i++)
        mh_buf_printf(&b, "  - {name: m%d, cmd: \"s ${PORT}\", aliases: [a%d]}\n", i, i);
    t0 = mh_now_mono();
    rc = hub_config_parse(b.data, b.len, "big.yaml", &c, errbuf, sizeof errbuf);
    assert_true(mh_now_mono() - t0 < 5.0);
    assert_int_equal(rc, 0);
    assert_int_equal(c->n_models, 10000);
    assert_string_equal(c->models[9999].aliases[0], "a9999");
    hub_config_free(c);
    /* many models, each with many errors: capped list, then a count */
    mh_buf_free(&b);
    mh_buf_printf(&b, "models:\n");
    for (int i = 0; i < 2000; i++) mh_buf_printf(&b, "  - {name: X%d, colour: 1}\n", i);
    t0 = mh_now_mono();
    rc = hub_config_parse(b.data, b.len, "many.yaml", &c, errbuf, sizeof errbuf);
    assert_int_equal(rc, -1);
    assert_true(mh_now_mono() - t0 < 5.0);
    assert_int_equal(count_lines(errbuf), 101);
    assert_non_null(strstr(errbuf, "many.yaml: ... and 5900 more errors\n"));
    mh_buf_free(&b);
}

static void test_deep_nesting(void **state) {
    (void)state;
    size_t depth = 100000;
    char *text = malloc(2 * depth + 64);
    size_t n = 0;
    n += (size_t)sprintf(text, "models: []\nx: ");
    for (size_t i = 0; i < depth; i++) text[n++] = '[';
    for (size_t i = 0; i < depth; i++) text[n++] = ']';
    text[n++] = '\n';
    hub_config *c;
    double t0 = mh_now_mono();
    assert_int_equal(hub_config_parse(text, n, "deep.yaml", &c, errbuf, sizeof errbuf), -1);
    assert_true(mh_now_mono() - t0 < 2.0);
    assert_string_equal(errbuf, "deep.yaml:2: YAML nested deeper than 32 levels\n");
    /* block-style nesting too */
    mh_buf b = {0};
    mh_buf_printf(&b, "models: []\n");
    for (int i = 0; i < 40; i++) mh_buf_printf(&b, "%*sk%d:\n", 2 * i, "", i);
    assert_int_equal(hub_config_parse(b.data, b.len, "deep.yaml", &c, errbuf, sizeof errbuf), -1);
    assert_string_equal(errbuf, "deep.yaml:34: YAML nested deeper than 32 levels\n");
    mh_buf_free(&b);
    free(text);
}

static void test_billion_laughs(void **state) {
    (void)state;
    const char *bomb = "models: []\n"
                       "x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                       "x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "x-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "x-f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "x-g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                       "x-h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                       "x-i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    hub_config *c;
    double t0 = mh_now_mono();
    assert_int_equal(hub_config_parse(bomb, strlen(bomb), "bomb.yaml", &c, errbuf, sizeof errbuf),
                     -1);
    assert_true(mh_now_mono() - t0 < 1.0);
    assert_string_equal(errbuf, "bomb.yaml:6: the document expands to more than 100000 YAML nodes "
                                "(aliases count in full); a hub.yaml needs far fewer\n");
    /* the same through merge keys, in a place the validator walks */
    const char *merge_bomb = "x-a: &a {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1}\n"
                             "x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                             "x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                             "x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                             "x-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                             "models:\n  - {<<: *e}\n";
    assert_int_equal(
        hub_config_parse(merge_bomb, strlen(merge_bomb), "bomb.yaml", &c, errbuf, sizeof errbuf),
        -1);
    assert_non_null(strstr(errbuf, "YAML nodes"));
}

/* ==== Reload rules ==== */

static void test_restart_rules(void **state) {
    (void)state;
    const char *base = "groups: [{name: g, max_loaded: 1}, {name: h, max_loaded: 1}]\n"
                       "models:\n  - name: a\n    model_path: @STORIES@\n";
    static const struct {
        const char *extra; /* appended to model a */
        int restart, equal;
    } cases[] = {
        {"", 0, 1},
        {"    aliases: [b]\n", 0, 0},
        {"    group: h\n", 0, 0},
        {"    default: true\n", 0, 0},
        {"    jit_enabled: false\n", 0, 0},
        {"    idle_unload: 30\n", 0, 0},
        {"    auto_unload_minutes: 0\n", 0, 1}, /* same value, other spelling */
        {"    port: 47002\n", 1, 0},
        {"    context_length: 128\n", 1, 0},
        {"    max_concurrency: 2\n", 1, 0},
        {"    queue_size: 1\n", 1, 0},
        {"    queue_timeout: 1\n", 1, 0},
        {"    log_level: debug\n", 1, 0},
        {"    threads: 3\n", 1, 0},
        {"    env: [A=1]\n", 1, 0},
        {"    cmd: \"x ${PORT} ${MODEL_PATH}\"\n", 1, 0},
    };
    char text[1024];
    hub_config *a = load_ok(base);
    for (size_t i = 0; i < MH_ARRAY_LEN(cases); i++) {
        snprintf(text, sizeof text, "%s%s", base, cases[i].extra);
        hub_config *b = load_ok(text);
        if (hub_model_config_needs_restart(&a->models[0], &b->models[0]) != cases[i].restart ||
            hub_model_config_equal(&a->models[0], &b->models[0]) != cases[i].equal)
            fprintf(stderr, "case %s", cases[i].extra);
        assert_int_equal(hub_model_config_needs_restart(&a->models[0], &b->models[0]),
                         cases[i].restart);
        assert_int_equal(hub_model_config_needs_restart(&b->models[0], &a->models[0]),
                         cases[i].restart);
        assert_int_equal(hub_model_config_equal(&a->models[0], &b->models[0]), cases[i].equal);
        hub_config_free(b);
    }
    /* env order matters (a later entry wins in an environment) */
    hub_config *e1 = load_ok("models:\n  - {name: a, cmd: \"x ${PORT}\", env: [A=1, B=2]}\n");
    hub_config *e2 = load_ok("models:\n  - {name: a, cmd: \"x ${PORT}\", env: {B: 2, A: 1}}\n");
    assert_int_equal(hub_model_config_needs_restart(&e1->models[0], &e2->models[0]), 1);
    hub_config_free(e1);
    hub_config_free(e2);
    hub_config_free(a);
}

/* ==== Finding the file ==== */

static void test_find(void **state) {
    (void)state;
    char out[4096], cwd[4096], dir[600], want[800];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(dir, sizeof dir, "%s/find", tmpdir);
    mkdir(dir, 0755);
    assert_int_equal(chdir(dir), 0);
    unlink("hub.yaml");
    unsetenv("MODELHUB_CONFIG");
    setenv("XDG_CONFIG_HOME", dir, 1);

    assert_int_equal(hub_config_find("given.yaml", out, sizeof out), 0); /* as is, even missing */
    assert_string_equal(out, "given.yaml");
    assert_int_equal(hub_config_find("given.yaml", out, 5), -2);

    snprintf(want, sizeof want, "./hub.yaml, %s/modelhub/hub.yaml", dir);
    assert_int_equal(hub_config_find(NULL, out, sizeof out), -1);
    assert_string_equal(out, want);

    snprintf(want, sizeof want, "%s/modelhub", dir);
    mkdir(want, 0755);
    snprintf(want, sizeof want, "%s/modelhub/hub.yaml", dir);
    write_text(want, "models: []\n");
    assert_int_equal(hub_config_find(NULL, out, sizeof out), 0);
    assert_string_equal(out, want);

    unsetenv("XDG_CONFIG_HOME");
    setenv("HOME", dir, 1);
    snprintf(want, sizeof want, "./hub.yaml, %s/.config/modelhub/hub.yaml", dir);
    assert_int_equal(hub_config_find(NULL, out, sizeof out), -1);
    assert_string_equal(out, want);

    write_text("hub.yaml", "models: []\n");
    assert_int_equal(hub_config_find(NULL, out, sizeof out), 0);
    assert_string_equal(out, "hub.yaml");

    setenv("MODELHUB_CONFIG", "/from/env.yaml", 1);
    assert_int_equal(hub_config_find(NULL, out, sizeof out), 0);
    assert_string_equal(out, "/from/env.yaml");
    assert_int_equal(hub_config_find("explicit.yaml", out, sizeof out), 0);
    assert_string_equal(out, "explicit.yaml");
    setenv("MODELHUB_CONFIG", "", 1); /* empty = not set */
    assert_int_equal(hub_config_find(NULL, out, sizeof out), 0);
    assert_string_equal(out, "hub.yaml");
    unsetenv("MODELHUB_CONFIG");
    assert_int_equal(chdir(cwd), 0);
}

/* ==== Setup ==== */

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_hub_config.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(stories, sizeof stories, "%s", test_model_path("stories260K.gguf"));
    if (access(stories, R_OK) != 0) {
        fprintf(stderr, "missing %s\n", stories);
        return -1;
    }
    if (stories[0] != '/') { /* messages and resolved paths are absolute */
        char *abs = realpath(stories, NULL);
        if (!abs) return -1;
        snprintf(stories, sizeof stories, "%s", abs);
        free(abs);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_seed_keys),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_anchors_and_merge),
        cmocka_unit_test(test_value_forms),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_unreadable_model),
        cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_small_errbuf),
        cmocka_unit_test(test_file_problems),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_large_but_allowed),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_restart_rules),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_security_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
