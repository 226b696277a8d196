#include "cli/hub_client.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub/config.h"
#include "hub/hub.h"

void hub_default_state_dir(char *out, size_t outlen) {
    const char *xdg = getenv("XDG_STATE_HOME");
    if (xdg && *xdg)
        snprintf(out, outlen, "%s/modelhub", xdg);
    else
        snprintf(out, outlen, "%s/.local/state/modelhub", getenv("HOME") ? getenv("HOME") : ".");
}

static int read_runtime(hub_target *t) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", t->state_dir, HUB_RUNTIME_FILE);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return -1;
    int pid = (int)json_integer_value(json_object_get(j, "pid"));
    const char *host = json_string_value(json_object_get(j, "host"));
    int port = (int)json_integer_value(json_object_get(j, "port"));
    int ok = pid > 0 && host && port > 0 && kill(pid, 0) == 0;
    if (ok) {
        /* a wildcard bind is reached through loopback */
        if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) host = "127.0.0.1";
        snprintf(t->base_url, sizeof t->base_url, "http://%s:%d", host, port);
        t->pid = pid;
        t->from_runtime_file = 1;
        if (!t->config_path[0]) {
            const char *cfg = json_string_value(json_object_get(j, "config"));
            if (cfg) snprintf(t->config_path, sizeof t->config_path, "%s", cfg);
        }
    }
    json_decref(j);
    return ok ? 0 : -1;
}

int hub_target_resolve(const char *config_opt, hub_target *t, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    char found[4096];
    hub_config *cfg = NULL;
    char cerr[4096];
    int have_path = hub_config_find(config_opt, found, sizeof found) == 0;
    if (have_path) {
        snprintf(t->config_path, sizeof t->config_path, "%s", found);
        if (hub_config_load(found, &cfg, cerr, sizeof cerr) < 0) {
            snprintf(err, errlen, "%s", cerr);
            return -1;
        }
        snprintf(t->state_dir, sizeof t->state_dir, "%s", cfg->state_dir);
        if (cfg->admin_key) snprintf(t->admin_key, sizeof t->admin_key, "%s", cfg->admin_key);
    } else {
        hub_default_state_dir(t->state_dir, sizeof t->state_dir);
    }
    const char *env_key = getenv("MODELHUB_ADMIN_KEY");
    if (env_key && *env_key) snprintf(t->admin_key, sizeof t->admin_key, "%s", env_key);
    if (read_runtime(t) < 0) {
        if (!cfg) {
            snprintf(err, errlen,
                     "no running hub found (no runtime file in %s) and no config "
                     "(looked at %s)",
                     t->state_dir, found);
            return -1;
        }
        const char *host = cfg->host;
        if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) host = "127.0.0.1";
        snprintf(t->base_url, sizeof t->base_url, "http://%s:%d", host, cfg->port);
    }
    hub_config_free(cfg);
    return 0;
}
