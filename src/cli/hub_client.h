/* hub_client.h — how CLI commands find and talk to a running hub.
 *
 * The hub is found through its runtime file (STATE_DIR/hub.json: pid, host, port) when that names
 * a live process, else through the config's host and port. The config comes from --config,
 * $MODELHUB_CONFIG, ./hub.yaml or $XDG_CONFIG_HOME/modelhub/hub.yaml (hub_config_find); when none
 * exists the default state dir is still searched for a runtime file. The admin key comes from the
 * config (or $MODELHUB_ADMIN_KEY, which wins).
 */
#ifndef MH_HUB_CLIENT_H
#define MH_HUB_CLIENT_H

#include <sys/types.h>

typedef struct hub_target {
    char base_url[256];     /* http://HOST:PORT */
    char admin_key[256];    /* "" when none */
    char config_path[4096]; /* "" when no config was found */
    char state_dir[4096];
    pid_t pid;             /* from the runtime file, 0 when unknown */
    int from_runtime_file; /* 1 when the runtime file named a live process */
} hub_target;

/* Resolve the hub for `config_opt` (may be NULL). Returns 0, or -1 with a message in err when
 * neither a runtime file nor a config tells where the hub is. */
int hub_target_resolve(const char *config_opt, hub_target *t, char *err, size_t errlen);

/* Default state dir ($XDG_STATE_HOME/modelhub or ~/.local/state/modelhub). */
void hub_default_state_dir(char *out, size_t outlen);

#endif
