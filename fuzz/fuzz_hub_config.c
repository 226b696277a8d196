/* fuzz_hub_config.c — libFuzzer target for the hub.yaml loader.
 *
 * Parses each input with hub_config_parse(). On failure the message must be non-empty, every line
 * must start with the file name, end in '\n' and hold no control character (one error per line,
 * user text escaped), and nothing may be handed out. On success the config must keep the header's
 * promises: names present and unique, lists NULL-terminated, env entries "KEY=VALUE", the backend
 * matching its keys, numbers in their ranges, every model found by name and alias, and each model
 * equal to itself. Memory errors are ASan's; broken promises abort(). A run must also stay fast:
 * libFuzzer's -timeout catches a slow path. See fuzz/README.md for how to run it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub/config.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

#define FILE_NAME "fuzz.yaml"

static char errbuf[1 << 16];

static void check_errors(void) {
    size_t len = strlen(errbuf);
    CHECK(len > 0);
    CHECK(errbuf[len - 1] == '\n');
    for (const char *line = errbuf; *line;) {
        const char *nl = strchr(line, '\n');
        CHECK(nl);
        CHECK(strncmp(line, FILE_NAME, strlen(FILE_NAME)) == 0 || strncmp(line, "...", 3) == 0);
        for (const char *p = line; p < nl; p++) CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
        line = nl + 1;
    }
}

static void check_strv(char *const *v, int n) {
    CHECK(n >= 0);
    if (n) CHECK(v);
    for (int i = 0; i < n; i++) CHECK(v[i]);
    if (v) CHECK(v[n] == NULL);
}

static void check_config(const hub_config *c) {
    CHECK(c->path && strcmp(c->path, FILE_NAME) == 0);
    CHECK(c->host && *c->host);
    CHECK(c->port >= 1 && c->port <= 65535);
    CHECK(c->model_starting_port >= 1 && c->model_starting_port <= 65535);
    CHECK(c->log_path && c->state_dir && c->log_level);
    CHECK(c->start_timeout > 0 && c->stop_grace >= 0 && c->queue_timeout >= 0);
    CHECK(c->log_max_bytes >= 0);
    check_strv(c->api_keys, c->n_api_keys);
    for (int i = 0; i < c->n_groups; i++) {
        CHECK(c->groups[i].name && c->groups[i].max_loaded >= 1);
        CHECK(hub_config_find_group(c, c->groups[i].name) == &c->groups[i]);
    }
    for (int i = 0; i < c->n_models; i++) {
        const hub_model_config *m = &c->models[i];
        CHECK(m->name && *m->name && strlen(m->name) <= 64);
        CHECK(hub_config_find_model(c, m->name) == m);
        check_strv(m->aliases, m->n_aliases);
        for (int a = 0; a < m->n_aliases; a++) CHECK(hub_config_find_model(c, m->aliases[a]) == m);
        check_strv(m->env, m->n_env);
        for (int e = 0; e < m->n_env; e++) CHECK(strchr(m->env[e], '=') > m->env[e]);
        CHECK(m->port >= 0 && m->port <= 65535 && m->port != c->port);
        CHECK(m->max_concurrency >= 1 && m->queue_size >= 0 && m->threads >= 0);
        CHECK(m->idle_unload_s >= 0 && m->queue_timeout >= 0 && m->log_level);
        if (m->group) CHECK(hub_config_find_group(c, m->group));
        switch (m->backend) {
        case HUB_BACKEND_WORKER: CHECK(m->model_path && !m->cmd && !m->upstream); break;
        case HUB_BACKEND_EXTERNAL: CHECK(m->cmd && !m->upstream); break;
        case HUB_BACKEND_UPSTREAM:
            CHECK(m->upstream && !m->cmd && !m->model_path && !m->port && !m->n_env);
            break;
        default: CHECK(0);
        }
        CHECK(hub_model_config_equal(m, m) && !hub_model_config_needs_restart(m, m));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hub_config *c = (hub_config *)1;
    errbuf[0] = 0;
    int rc = hub_config_parse((const char *)data, size, FILE_NAME, &c, errbuf, sizeof errbuf);
    if (rc == 0) {
        CHECK(c);
        CHECK(errbuf[0] == 0);
        check_config(c);
        hub_config_free(c);
    } else {
        CHECK(rc == -1);
        CHECK(c == NULL);
        check_errors();
    }
    return 0;
}
