/* config.h — hub.yaml: load and fully validate the hub's configuration into plain data.
 *
 * hub_config_load() reads the file, checks every key and value and returns either a complete
 * hub_config (defaults filled in, relative paths resolved) or every problem it found, one per line:
 *
 *     hub.yaml:12: models[1].group: group 'gpu' is not defined
 *
 * (file as given, 1-based line, key path with 0-based list indexes, message). Nothing is started
 * and no global state is touched: the loader only reads the file, the environment (for the
 * default folders and $HOME) and stats each model_path. Safe to call from any thread.
 *
 * Keys (DESIGN.md, "Configuration"; seed keys are accepted unchanged):
 *
 * top level  host ("127.0.0.1"), port (8080), model_starting_port (47850), log_path (worker log
 *            folder; default <state_dir>/logs), log_level (error|warn|info|debug, any case,
 *            "warning" = warn; info), enable_status_page (true), api_keys (list; protect /v1/...),
 *            admin_key (protects /hub/...), start_timeout (s, > 0, 60), stop_grace (s, 10),
 *            log_max_bytes (10 MiB; an integer or "512KB", "10MiB", "1.5G": K/M/G and KiB/MiB/GiB
 *            are powers of 1024, KB/MB/GB of 1000; 0 = never rotate), state_dir ($XDG_STATE_HOME/
 *            modelhub or ~/.local/state/modelhub), queue_timeout (s, 120; the models' default),
 *            allowed_hosts (list of Host names accepted besides localhost, 127.x, [::1] and host;
 *            "*" = any), cors_origins (list of "scheme://host[:port]" a browser may call /v1
 *            from; none = CORS off), health_check_interval (s between health probes of a
 *            running worker or cmd server, 10, 0 = off), health_check_timeout (s, > 0, 5),
 *            models (list, required, may be []), groups (list). Top-level keys starting with "x-"
 *            are ignored (a place for YAML anchors, as in docker-compose).
 * per model  name (required slug: [a-z0-9][a-z0-9._-]*, at most 64 chars), model_path, default,
 *            group, port, jit_enabled (true), auto_unload_minutes (seed) or idle_unload (seconds),
 *            context_length, max_concurrency (1), queue_size (64), queue_timeout, log_level (the
 *            hub's), aliases (slug charset plus ':' and '/', at most 128 chars), threads, cmd, env
 *            (map or list of "KEY=VALUE"), upstream.
 * per group  name (slug), max_loaded (>= 1).
 *
 * Backends, chosen by the keys present:
 *   model_path only  -> HUB_BACKEND_WORKER: a `modelhub serve --worker` child. model_path must be
 *                       an existing readable regular file that starts with the GGUF magic.
 *   cmd              -> HUB_BACKEND_EXTERNAL: any OpenAI-compatible server command, run by the hub;
 *                       `${PORT}` and `${MODEL_PATH}` are left in place for the daemon to expand
 *                       (any other `${...}` is an error). model_path is optional (required when
 *                       cmd uses ${MODEL_PATH}; any readable regular file); without ${PORT} in
 *                       cmd, `port` is required.
 *                       threads and context_length are errors (they belong in cmd).
 *   upstream         -> HUB_BACKEND_UPSTREAM: a remote http:// server the hub only proxies to.
 *                       Nothing is started, loaded or unloaded, so every process or memory key is
 *                       an error beside it: model_path, cmd, port, env, threads, context_length,
 *                       default, jit_enabled, idle_unload, auto_unload_minutes, group, log_level.
 *                       (https:// is refused: the hub's proxy has no TLS.)
 *   none of the three is an error.
 *
 * Checks across models: names unique; aliases unique across all names and aliases; explicit ports
 * unique and not the hub's port; groups defined; a group's max_loaded at least the number of its
 * `default: true, jit_enabled: false` members (those load at start).
 *
 * Types: numbers and booleans unquoted (YAML 1.1 booleans: true/false/yes/no/on/off); a string key
 * refuses null and unquoted booleans. A YAML syntax error ends parsing, so only it is reported.
 *
 * Paths (model_path, log_path, state_dir): "~/..." is $HOME; relative paths are resolved against
 * the folder of the config file; stored absolute when the config path can be made absolute.
 *
 * Limits (adversarial input): files over HUB_CONFIG_MAX_BYTES are refused unread; nesting deeper
 * than 32 levels is refused; YAML anchors/aliases are accepted (also "<<" merge keys) but the
 * document they expand to may hold at most 100000 nodes ("billion laughs" is an error, not a hang);
 * at most 100 errors are listed, then "... and N more".
 */
#ifndef MH_HUB_CONFIG_H
#define MH_HUB_CONFIG_H

#include <stddef.h>

#define HUB_CONFIG_MAX_BYTES (1 << 20) /* larger files are refused */

typedef enum hub_backend_kind {
    HUB_BACKEND_WORKER = 0, /* model_path: a `modelhub serve --worker` child process */
    HUB_BACKEND_EXTERNAL,   /* cmd: an external OpenAI-compatible server the hub runs */
    HUB_BACKEND_UPSTREAM,   /* upstream: a remote URL; nothing to start */
} hub_backend_kind;

typedef struct hub_model_config {
    char *name;     /* unique slug */
    char **aliases; /* n_aliases entries + NULL; unique across all names and aliases */
    int n_aliases;
    hub_backend_kind backend; /* from the keys present, see above */
    char *model_path;         /* absolute when resolvable; NULL when not given (cmd / upstream) */
    int is_default;           /* `default`: start with the hub */
    char *group;              /* a defined group's name, or NULL */
    int port;                 /* 1..65535, or 0 = the daemon picks one from model_starting_port */
    int jit_enabled;          /* default 1; 0 with is_default: also load at start */
    double idle_unload_s;     /* idle_unload, or auto_unload_minutes * 60; 0 = never */
    int context_length;       /* 0 = the model's; 0..1<<20 */
    int max_concurrency;      /* serve --parallel; 1..256, default 1 */
    int queue_size;           /* 0..1<<20, default 64 */
    double queue_timeout;     /* seconds, 0..1e6; default: the top-level queue_timeout */
    char *log_level;          /* error|warn|info|debug; default: the top-level log_level */
    int threads;              /* 0 = all cores; 0..1024 */
    char *cmd;                /* external server command (HUB_BACKEND_EXTERNAL), else NULL */
    char **env;               /* n_env "KEY=VALUE" entries + NULL, in file order */
    int n_env;
    char *upstream; /* http://host[:port][/path] (HUB_BACKEND_UPSTREAM), else NULL */
    int line;       /* line of the model's entry in the file */
} hub_model_config;

typedef struct hub_group_config {
    char *name;     /* unique slug */
    int max_loaded; /* >= 1 */
    int line;
} hub_group_config;

typedef struct hub_config {
    char *path;              /* the file as given to hub_config_load */
    char *host;              /* "127.0.0.1" */
    int port;                /* 8080 */
    int model_starting_port; /* 47850 */
    char *log_path;          /* folder of the worker logs (not created by the loader) */
    char *log_level;         /* error|warn|info|debug */
    int enable_status_page;  /* 1 */
    char **api_keys;         /* n_api_keys entries + NULL; none = /v1/... is open */
    int n_api_keys;
    char *admin_key;      /* NULL = /hub/... control routes are open */
    char **allowed_hosts; /* n_allowed_hosts + NULL: Host names besides loopback and host */
    int n_allowed_hosts;
    char **cors_origins; /* n_cors_origins + NULL: origins a browser may call /v1 from */
    int n_cors_origins;
    double health_check_interval; /* seconds between probes of a running process; 10; 0 = off */
    double health_check_timeout;  /* seconds a probe may wait for an answer; 5 */
    double start_timeout;         /* seconds a worker may take to become healthy; 60 */
    double stop_grace;            /* seconds between SIGTERM and SIGKILL; 10 */
    long long log_max_bytes;      /* per-worker log size before rotation; 10 MiB; 0 = never */
    char *state_dir;              /* runtime files (not created by the loader) */
    double queue_timeout;         /* the models' default; 120 */
    hub_model_config *models;     /* in file order */
    int n_models;
    hub_group_config *groups; /* in file order */
    int n_groups;
} hub_config;

/* Load and validate `path`. On success returns 0 and *out (free with hub_config_free). On failure
 * returns -1, sets *out to NULL and writes every error, one per line ("file:line: key: message"),
 * into errbuf (always NUL-terminated when errlen > 0; cut at a line end when it is too small). */
int hub_config_load(const char *path, hub_config **out, char *errbuf, size_t errlen);

/* The same on text in memory (tests, fuzzing, reloads that already hold the text): `path` names
 * the file in messages and its folder resolves relative paths. `text` need not be NUL-terminated.
 */
int hub_config_parse(const char *text, size_t len, const char *path, hub_config **out, char *errbuf,
                     size_t errlen);

/* Free a config from hub_config_load/parse; NULL is fine. */
void hub_config_free(hub_config *c);

/* A deep copy of a model's config (free it with hub_model_config_clear), and the freeing of one. */
void hub_model_config_copy(hub_model_config *dst, const hub_model_config *src);
void hub_model_config_clear(hub_model_config *m);

/* The model called `name_or_alias` (a name or one of the aliases), or NULL. */
const hub_model_config *hub_config_find_model(const hub_config *c, const char *name_or_alias);

/* The group called `name`, or NULL. */
const hub_group_config *hub_config_find_group(const hub_config *c, const char *name);

/* Reload rules for two configs of the same model (same name).
 *
 * Need a restart of the worker (they shape its command line, environment or backend):
 *   backend, model_path, port, context_length, max_concurrency, queue_size, queue_timeout,
 *   log_level, threads, cmd, env (order included), upstream.
 * Live (the hub owns them; applied without touching the worker):
 *   aliases, group, is_default (only read at hub start), jit_enabled, idle_unload_s, line.
 *
 * hub_model_config_needs_restart: 1 when a restart-field differs. hub_model_config_equal: 1 when
 * every field but `line` is the same. Top level: host and port need a hub restart (the listener);
 * model_starting_port, log_path, log_max_bytes and state_dir apply to workers started afterwards;
 * everything else is live. */
int hub_model_config_needs_restart(const hub_model_config *a, const hub_model_config *b);
int hub_model_config_equal(const hub_model_config *a, const hub_model_config *b);

/* Find the config file: explicit_path (when not NULL, used as is, even if missing) ->
 * $MODELHUB_CONFIG (when set and not empty; also used as is) -> ./hub.yaml if it exists ->
 * $XDG_CONFIG_HOME/modelhub/hub.yaml (or ~/.config/modelhub/hub.yaml) if it exists.
 * ./hub.yaml comes back as "hub.yaml" (relative to the current folder, as users name it).
 * Returns 0 with the path in `out`; -1 when none was found, with `out` holding the places looked
 * at, separated by ", " (for the message); -2 when `out` is too small. */
int hub_config_find(const char *explicit_path, char *out, size_t outlen);

#endif
