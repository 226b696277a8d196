/* cmd_hub_ctl.c — the hub's control commands: `modelhub hub status|watch|reload|logs` and
 * `modelhub hub start-model|stop-model|load-model|unload-model NAME...`.
 *
 * Each one finds the running hub (hub_client.h), talks to its control API over blocking HTTP
 * (http_fetch.h) and renders the answer. Exit statuses: 0 success, 1 when the hub could not be
 * reached or an action failed, 2 for usage errors (args.h).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/hub_client.h"
#include "http/http_fetch.h"
#include "http/sse_parser.h"
#include "util/common.h"

#define CONFIG_HELP      "hub.yaml ($MODELHUB_CONFIG, ./hub.yaml, ~/.config/modelhub/hub.yaml)"
#define ACTION_TIMEOUT_S 300.0 /* a start waits for the worker's health, a stop for its exit */

/* ==== Talking to the hub ==== */

typedef struct ctl {
    const char *cmd; /* "hub status": the prefix of every message */
    hub_target t;
} ctl;

/* One answer of the hub. */
typedef struct ctl_reply {
    long status;        /* HTTP status; 0 when no hub answered */
    json_t *json;       /* the parsed body, NULL when it was not JSON */
    char message[2048]; /* status >= 400: the error envelope's message (or the body text) */
} ctl_reply;

static int ctl_open(ctl *c, const char *cmd, const char *config) {
    char err[4200];
    c->cmd = cmd;
    if (hub_target_resolve(config, &c->t, err, sizeof err) < 0) {
        /* either no hub and no config at all, or a config that does not validate: the hub is
         * found through it (its state_dir, host, port), so nothing was sent */
        if (strncmp(err, "no running hub", 14) == 0)
            fprintf(stderr, "modelhub %s: %s\n", cmd, err);
        else
            fprintf(stderr,
                    "modelhub %s: the configuration has errors (nothing was sent to the "
                    "hub):\n%s\n",
                    cmd, err);
        return -1;
    }
    return 0;
}

/* `why` is a transport error from http_fetch: "URL: reason". A failed connection means no hub;
 * anything else (a timeout, a reset) is a hub that did not answer in time. */
static void no_hub(const ctl *c, const char *why) {
    const char *sep = strstr(why, ": ");
    if (strncmp(why, c->t.base_url, strlen(c->t.base_url)) == 0 && sep) why = sep + 2;
    if (strstr(why, "onnect"))
        fprintf(stderr,
                "modelhub %s: no hub answers at %s (%s); start one with `modelhub hub start`\n",
                c->cmd, c->t.base_url, why);
    else
        fprintf(stderr, "modelhub %s: the hub at %s did not answer: %s\n", c->cmd, c->t.base_url,
                why);
}

/* The message of an OpenAI error envelope, else NULL. */
static const char *envelope_message(json_t *body) {
    return json_string_value(json_object_get(json_object_get(body, "error"), "message"));
}

/* Fill r->message for an error status (r->status, r->json; `body` the raw text), with a hint for
 * a missing or wrong admin key. */
static void reply_message(const ctl *c, ctl_reply *r, const char *body) {
    const char *msg = envelope_message(r->json);
    if (!msg) msg = body && *body ? body : "no message";
    if (r->status == 401)
        snprintf(r->message, sizeof r->message, "%s (HTTP 401; %s)", msg,
                 c->t.admin_key[0] ? "the admin key was refused: check $MODELHUB_ADMIN_KEY or the "
                                     "config's admin_key"
                                   : "set admin_key in the config or $MODELHUB_ADMIN_KEY");
    else
        snprintf(r->message, sizeof r->message, "%s", msg);
}

/* `method` `path` (e.g. "/hub/status") to the hub. Returns 0 with *r filled (any HTTP status),
 * or -1 when no hub answered (already reported on stderr). Free r->json with json_decref. */
static int ctl_call(const ctl *c, const char *method, const char *path, double timeout_s,
                    ctl_reply *r) {
    memset(r, 0, sizeof *r);
    char url[1536];
    snprintf(url, sizeof url, "%s%s", c->t.base_url, path);
    int post = strcmp(method, "POST") == 0;
    http_fetch_opts o = {.method = method,
                         .bearer = c->t.admin_key,
                         .body = post ? "{}" : NULL,
                         .body_len = post ? 2 : 0,
                         .timeout_ms = (long)(timeout_s * 1000)};
    http_fetch_result res;
    if (http_fetch(url, &o, &res) < 0) {
        no_hub(c, res.error);
        http_fetch_result_free(&res);
        return -1;
    }
    r->status = res.status;
    r->json = json_loadb(res.body, res.body_len, 0, NULL);
    if (r->status >= 400) reply_message(c, r, res.body);
    http_fetch_result_free(&res);
    return 0;
}

/* The message for a stream refused with `status` (http_fetch_stream put the body in `body`). */
static void stream_refused(const ctl *c, const char *what, long status, const char *body) {
    ctl_reply r = {.status = status, .json = json_loads(body, 0, NULL)};
    reply_message(c, &r, body);
    if (status == 401) /* the message says so already */
        fprintf(stderr, "modelhub %s: %s%s\n", c->cmd, what, r.message);
    else
        fprintf(stderr, "modelhub %s: %s%s (HTTP %ld)\n", c->cmd, what, r.message, status);
    json_decref(r.json);
}

/* Percent-encode a model name for a URL path segment. */
static void url_segment(const char *in, char *out, size_t outlen) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && n + 4 < outlen; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p)) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = 0;
}

/* ==== Formatting ==== */

static const char *jstr(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

static double jnum(json_t *o, const char *key) {
    return json_number_value(json_object_get(o, key));
}

/* 0 when the key is null or absent */
static long long jint(json_t *o, const char *key) {
    return (long long)json_integer_value(json_object_get(o, key));
}

/* "42s", "4m59s", "2h05m", "3d04h" */
static void fmt_duration(double s, char *out, size_t outlen) {
    long long t = s > 0 ? (long long)ceil(s) : 0;
    if (t < 60)
        snprintf(out, outlen, "%llds", t);
    else if (t < 3600)
        snprintf(out, outlen, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(out, outlen, "%lldh%02lldm", t / 3600, t % 3600 / 60);
    else
        snprintf(out, outlen, "%lldd%02lldh", t / 86400, t % 86400 / 3600);
}

static void fmt_bytes(long long b, char *out, size_t outlen) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    if (u == 0)
        snprintf(out, outlen, "%lld B", b);
    else
        snprintf(out, outlen, "%.1f %s", v, units[u]);
}

/* "running", "failed (exit 137)", "quarantined" */
static void fmt_process(json_t *m, char *out, size_t outlen) {
    const char *ps = jstr(m, "process_state");
    json_t *code = json_object_get(m, "exit_code");
    if (json_is_true(json_object_get(m, "quarantined")))
        snprintf(out, outlen, "quarantined");
    else if (ps && strcmp(ps, "failed") == 0 && json_is_integer(code))
        snprintf(out, outlen, "failed (exit %lld)", (long long)json_integer_value(code));
    else
        snprintf(out, outlen, "%s", ps ? ps : "?");
}

/* "loaded (9.3 MiB)", "unloaded (capacity)", "loading" */
static void fmt_memory(json_t *m, char *out, size_t outlen) {
    const char *ms = jstr(m, "memory_state");
    const char *reason = jstr(m, "last_unload_reason");
    long long bytes = jint(m, "memory_bytes");
    char size[32];
    if (!ms) ms = "?";
    if (strcmp(ms, "loaded") == 0 && bytes > 0) {
        fmt_bytes(bytes, size, sizeof size);
        snprintf(out, outlen, "loaded (%s)", size);
    } else if (strcmp(ms, "unloaded") == 0 && reason) {
        snprintf(out, outlen, "unloaded (%s)", reason);
    } else {
        snprintf(out, outlen, "%s", ms);
    }
}

static json_t *find_group(json_t *snap, const char *name) {
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(snap, "groups"), i, g) {
        const char *n = jstr(g, "name");
        if (n && strcmp(n, name) == 0) return g;
    }
    return NULL;
}

/* "a, b, c" */
static void print_names(json_t *arr) {
    size_t i;
    json_t *n;
    json_array_foreach(arr, i, n) {
        printf("%s%s", i ? ", " : "", json_string_value(n));
    }
}

/* ==== hub status ==== */

enum {
    COL_NAME,
    COL_PROCESS,
    COL_MEMORY,
    COL_UNLOAD,
    COL_GROUP,
    COL_FLIGHT,
    COL_PORT,
    COL_PID,
    N_COLS
};
static const char *const status_headers[N_COLS] = {"NAME",  "PROCESS",   "MEMORY", "UNLOAD IN",
                                                   "GROUP", "IN-FLIGHT", "PORT",   "PID"};

typedef struct status_row {
    char cell[N_COLS][160];
} status_row;

static void status_fill_row(json_t *snap, json_t *m, status_row *row) {
    char(*c)[160] = row->cell;
    snprintf(c[COL_NAME], sizeof c[0], "%s", jstr(m, "name") ? jstr(m, "name") : "?");
    fmt_process(m, c[COL_PROCESS], sizeof c[0]);
    fmt_memory(m, c[COL_MEMORY], sizeof c[0]);
    json_t *unload_at = json_object_get(m, "unload_at");
    if (json_is_number(unload_at))
        fmt_duration(json_number_value(unload_at) - jnum(snap, "timestamp"), c[COL_UNLOAD],
                     sizeof c[0]);
    else
        snprintf(c[COL_UNLOAD], sizeof c[0], "-");
    const char *group = jstr(m, "group");
    json_t *g = group ? find_group(snap, group) : NULL;
    if (!group)
        snprintf(c[COL_GROUP], sizeof c[0], "-");
    else if (g && json_is_integer(json_object_get(g, "max_loaded")))
        snprintf(c[COL_GROUP], sizeof c[0], "%s %lld/%lld", group, jint(g, "loaded"),
                 jint(g, "max_loaded"));
    else if (g)
        snprintf(c[COL_GROUP], sizeof c[0], "%s %lld", group, jint(g, "loaded"));
    else
        snprintf(c[COL_GROUP], sizeof c[0], "%s", group);
    long long queued = jint(m, "queued");
    if (queued > 0)
        snprintf(c[COL_FLIGHT], sizeof c[0], "%lld (+%lld queued)", jint(m, "in_flight"), queued);
    else
        snprintf(c[COL_FLIGHT], sizeof c[0], "%lld", jint(m, "in_flight"));
    if (jint(m, "port") > 0)
        snprintf(c[COL_PORT], sizeof c[0], "%lld", jint(m, "port"));
    else
        snprintf(c[COL_PORT], sizeof c[0], "-");
    if (jint(m, "pid") > 0)
        snprintf(c[COL_PID], sizeof c[0], "%lld", jint(m, "pid"));
    else
        snprintf(c[COL_PID], sizeof c[0], "-");
}

static void print_row(const char *const *cells, const int *width) {
    for (int k = 0; k < N_COLS; k++) {
        if (k == N_COLS - 1)
            printf("%s\n", cells[k]);
        else
            printf("%-*s  ", width[k], cells[k]);
    }
}

static void status_print_table(const ctl *c, json_t *snap) {
    json_t *models = json_object_get(snap, "models");
    size_t n = json_array_size(models);
    status_row *rows = mh_xcalloc(n ? n : 1, sizeof *rows);
    int width[N_COLS];
    for (int k = 0; k < N_COLS; k++) width[k] = (int)strlen(status_headers[k]);
    for (size_t i = 0; i < n; i++) {
        status_fill_row(snap, json_array_get(models, i), &rows[i]);
        for (int k = 0; k < N_COLS; k++) width[k] = MH_MAX(width[k], (int)strlen(rows[i].cell[k]));
    }
    if (n == 0) {
        printf("no models configured\n");
    } else {
        print_row(status_headers, width);
        for (size_t i = 0; i < n; i++) {
            const char *cells[N_COLS];
            for (int k = 0; k < N_COLS; k++) cells[k] = rows[i].cell[k];
            print_row(cells, width);
        }
    }
    free(rows);
    /* the models' errors, then the summary and the warnings */
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        const char *e = jstr(m, "error");
        const char *name = jstr(m, "name");
        if (e && *e) printf("%s: error: %s\n", name ? name : "?", e);
    }
    json_t *counts = json_object_get(snap, "counts");
    char up[32];
    fmt_duration(jnum(snap, "uptime_s"), up, sizeof up);
    const char *state = jstr(snap, "status");
    long long registered = jint(counts, "registered");
    printf("\n%lld model%s, %lld running, %lld loaded, %lld failed; up %s; %s%s\n", registered,
           registered == 1 ? "" : "s", jint(counts, "running"), jint(counts, "loaded"),
           jint(counts, "failed"), up, c->t.base_url,
           state && strcmp(state, "ok") != 0 ? " (shutting down)" : "");
    json_t *w;
    json_array_foreach(json_object_get(snap, "warnings"), i, w) {
        if (json_is_string(w)) printf("warning: %s\n", json_string_value(w));
    }
}

int cmd_hub_status(int argc, char **argv) {
    const char *config = NULL;
    int as_json = 0;
    const arg_spec specs[] = {
        {"--config", "-c", ARG_STRING, &config, 0, 0, "FILE", CONFIG_HELP},
        {"--json", NULL, ARG_FLAG, &as_json, 0, 0, NULL, "print the hub's snapshot as JSON"},
    };
    arg_command cmd = {.name = "hub status",
                       .synopsis = "[--json] [--config FILE]",
                       .summary =
                           "Show every model of the running hub: process and memory state, idle\n"
                           "unload countdown, group capacity, requests in flight.",
                       .specs = specs,
                       .n_specs = (int)MH_ARRAY_LEN(specs)};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    ctl c;
    if (ctl_open(&c, "hub status", config) < 0) return 1;
    ctl_reply r;
    if (ctl_call(&c, "GET", "/hub/status", 10, &r) < 0) return 1;
    if (r.status != 200 || !json_is_object(r.json)) {
        fprintf(stderr, "modelhub hub status: %s answered %ld: %s\n", c.t.base_url, r.status,
                r.status >= 400 ? r.message : "not a status snapshot");
        json_decref(r.json);
        return 1;
    }
    if (as_json) {
        json_dumpf(r.json, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        status_print_table(&c, r.json);
    }
    json_decref(r.json);
    return 0;
}

/* ==== hub watch ==== */

typedef struct watched_model {
    char *name;
    char process[48], memory[48];
    long long in_flight, queued;
} watched_model;

typedef struct watch_state {
    const ctl *c;
    int as_json;
    int connected; /* the first event arrived */
    sse_parser *parser;
    watched_model *models;
    int n_models;
} watch_state;

static watched_model *watched_find(watch_state *ws, const char *name, int create) {
    for (int i = 0; i < ws->n_models; i++)
        if (strcmp(ws->models[i].name, name) == 0) return &ws->models[i];
    if (!create) return NULL;
    ws->models = mh_xrealloc(ws->models, (size_t)(ws->n_models + 1) * sizeof *ws->models);
    watched_model *w = &ws->models[ws->n_models++];
    memset(w, 0, sizeof *w);
    w->name = mh_xstrdup(name);
    return w;
}

static void watched_remove(watch_state *ws, const char *name) {
    watched_model *w = watched_find(ws, name, 0);
    if (!w) return;
    free(w->name);
    *w = ws->models[--ws->n_models];
}

static void watched_update(watched_model *w, json_t *entry) {
    fmt_process(entry, w->process, sizeof w->process);
    fmt_memory(entry, w->memory, sizeof w->memory);
    w->in_flight = jint(entry, "in_flight");
    w->queued = jint(entry, "queued");
}

static void print_clock(double ts) {
    time_t t = (time_t)(ts > 0 ? ts : mh_now_wall());
    struct tm tm;
    localtime_r(&t, &tm);
    printf("%02d:%02d:%02d ", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "a memory loading -> loaded" from the stored state and the event's entry. */
static void watch_print_change(watch_state *ws, const char *type, const char *name, json_t *entry,
                               double ts) {
    watched_model *w = watched_find(ws, name, 1);
    watched_model now = {0};
    if (entry) watched_update(&now, entry);
    print_clock(ts);
    if (strcmp(type, "process") == 0) {
        printf("%s process %s -> %s", name, w->process[0] ? w->process : "?", now.process);
        const char *ps = jstr(entry, "process_state");
        if (jint(entry, "pid") > 0 && ps && strcmp(ps, "running") == 0)
            printf(" (pid %lld, port %lld)", jint(entry, "pid"), jint(entry, "port"));
        printf("\n");
    } else if (strcmp(type, "memory") == 0) {
        printf("%s memory %s -> %s\n", name, w->memory[0] ? w->memory : "?", now.memory);
    } else if (strcmp(type, "activity") == 0 || strcmp(type, "queued") == 0) {
        printf("%s in-flight %lld -> %lld, queued %lld -> %lld\n", name, w->in_flight,
               now.in_flight, w->queued, now.queued);
    } else if (strcmp(type, "added") == 0) {
        printf("%s added (%s, %s)\n", name, now.process, now.memory);
    } else if (strcmp(type, "removed") == 0) {
        printf("%s removed\n", name);
    } else if (strcmp(type, "quarantined") == 0) {
        printf("%s quarantined after %lld restarts (start it to try again)\n", name,
               jint(entry, "restarts"));
    } else if (strcmp(type, "config") == 0) {
        printf("%s configuration updated\n", name);
    } else {
        printf("%s %s\n", name, type);
    }
    if (strcmp(type, "removed") == 0)
        watched_remove(ws, name);
    else if (entry)
        watched_update(w, entry);
}

static void watch_on_event(const sse_event *ev, void *arg) {
    watch_state *ws = arg;
    ws->connected = 1;
    if (ws->as_json) {
        printf("%s\n", ev->data);
        fflush(stdout);
        return;
    }
    json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *type = jstr(j, "type");
    if (!type) {
        json_decref(j);
        return;
    }
    if (strcmp(type, "snapshot") == 0) {
        json_t *snap = json_object_get(j, "snapshot");
        json_t *models = json_object_get(snap, "models");
        print_clock(jnum(snap, "timestamp"));
        printf("watching %s: %zu models (Ctrl-C to stop)\n", ws->c->t.base_url,
               json_array_size(models));
        size_t i;
        json_t *m;
        json_array_foreach(models, i, m) {
            const char *name = jstr(m, "name");
            if (!name) continue;
            watched_model *w = watched_find(ws, name, 1);
            watched_update(w, m);
            print_clock(jnum(snap, "timestamp"));
            printf("%s process %s, memory %s\n", name, w->process, w->memory);
        }
    } else if (jstr(j, "name")) {
        json_t *entry = json_object_get(j, "model");
        watch_print_change(ws, type, jstr(j, "name"), json_is_object(entry) ? entry : NULL,
                           jnum(j, "timestamp"));
    }
    fflush(stdout);
    json_decref(j);
}

static int watch_on_chunk(const char *data, size_t len, void *arg) {
    watch_state *ws = arg;
    sse_parser_feed(ws->parser, data, len, watch_on_event, ws);
    return 0;
}

int cmd_hub_watch(int argc, char **argv) {
    const char *config = NULL;
    int as_json = 0;
    const arg_spec specs[] = {
        {"--config", "-c", ARG_STRING, &config, 0, 0, "FILE", CONFIG_HELP},
        {"--json", NULL, ARG_FLAG, &as_json, 0, 0, NULL,
         "print each event as the hub sends it (one JSON object a line)"},
    };
    arg_command cmd = {.name = "hub watch",
                       .synopsis = "[--json] [--config FILE]",
                       .summary =
                           "Follow the hub's state changes as they happen, one line each, until\n"
                           "interrupted or the hub shuts down.",
                       .specs = specs,
                       .n_specs = (int)MH_ARRAY_LEN(specs)};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    ctl c;
    if (ctl_open(&c, "hub watch", config) < 0) return 1;
    watch_state ws = {.c = &c, .as_json = as_json, .parser = sse_parser_new(0)};
    if (!ws.parser) {
        fprintf(stderr, "modelhub hub watch: out of memory\n");
        return 1;
    }
    char url[512], err[2048];
    long status = 0;
    snprintf(url, sizeof url, "%s/hub/events", c.t.base_url);
    rc = http_fetch_stream(url, c.t.admin_key, 0, 0, watch_on_chunk, &ws, &status, err, sizeof err);
    int exit_code = 0;
    if (rc < 0 && !ws.connected) {
        no_hub(&c, err);
        exit_code = 1;
    } else if (status >= 400) {
        stream_refused(&c, "", status, err);
        exit_code = 1;
    } else if (rc < 0) {
        fprintf(stderr, "modelhub hub watch: lost the connection to the hub: %s\n", err);
        exit_code = 1;
    } else {
        fprintf(stderr, "modelhub hub watch: the hub closed the stream (it shut down)\n");
    }
    for (int i = 0; i < ws.n_models; i++) free(ws.models[i].name);
    free(ws.models);
    sse_parser_free(ws.parser);
    return exit_code;
}

/* ==== hub reload ==== */

int cmd_hub_reload(int argc, char **argv) {
    const char *config = NULL;
    int as_json = 0;
    const arg_spec specs[] = {
        {"--config", "-c", ARG_STRING, &config, 0, 0, "FILE", CONFIG_HELP},
        {"--json", NULL, ARG_FLAG, &as_json, 0, 0, NULL, "print the hub's answer as JSON"},
    };
    arg_command cmd = {
        .name = "hub reload",
        .synopsis = "[--config FILE]",
        .summary = "Make the running hub re-read its hub.yaml and apply the difference: new\n"
                   "models are added, removed ones stopped, changed ones updated or restarted\n"
                   "once idle. A file with errors changes nothing; every error is listed.",
        .specs = specs,
        .n_specs = (int)MH_ARRAY_LEN(specs)};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    ctl c;
    if (ctl_open(&c, "hub reload", config) < 0) return 1;
    ctl_reply r;
    if (ctl_call(&c, "POST", "/hub/reload", 60, &r) < 0) return 1;
    if (r.status != 200 || !json_is_object(r.json)) {
        fprintf(stderr, "modelhub hub reload: %s\n",
                r.status >= 400 ? r.message : "unexpected answer from the hub");
        json_decref(r.json);
        return 1;
    }
    if (as_json) {
        json_dumpf(r.json, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(r.json);
        return 0;
    }
    static const char *const kinds[] = {"added",     "started", "stopped",
                                        "restarted", "updated", "unchanged"};
    int changes = 0;
    for (size_t k = 0; k < MH_ARRAY_LEN(kinds); k++)
        if (strcmp(kinds[k], "unchanged") != 0)
            changes += (int)json_array_size(json_object_get(r.json, kinds[k]));
    printf("reloaded %s: %s\n", c.t.config_path[0] ? c.t.config_path : "the configuration",
           changes ? "changes applied" : "no model changed");
    for (size_t k = 0; k < MH_ARRAY_LEN(kinds); k++) {
        json_t *names = json_object_get(r.json, kinds[k]);
        if (json_array_size(names) == 0) continue;
        printf("  %-10s", kinds[k]);
        print_names(names);
        printf("\n");
    }
    json_decref(r.json);
    return 0;
}

/* ==== hub start-model | stop-model | load-model | unload-model ==== */

/* Strip the hub's "ACTION NAME: " prefix from a control error (we already name the model). */
static const char *action_reason(const char *msg, const char *action, const char *name) {
    size_t la = strlen(action), ln = strlen(name);
    if (strncmp(msg, action, la) == 0 && msg[la] == ' ' && strncmp(msg + la + 1, name, ln) == 0 &&
        msg[la + 1 + ln] == ':' && msg[la + 2 + ln] == ' ')
        return msg + la + ln + 3;
    return msg;
}

/* One action on one model. 0 done, 1 refused or failed (reported), -1 no hub (reported). */
static int model_action(const ctl *c, const char *action, const char *name, int dry_run,
                        double timeout_s) {
    char seg[512], path[700];
    url_segment(name, seg, sizeof seg);
    ctl_reply r;
    json_t *evict = NULL;
    if (strcmp(action, "load") == 0) { /* what the load will evict, for the message */
        snprintf(path, sizeof path, "/hub/models/%s/load?dry_run=1", seg);
        if (ctl_call(c, "POST", path, timeout_s, &r) < 0) return -1;
        if (r.status == 200) evict = json_incref(json_object_get(r.json, "would_evict"));
        if (dry_run || r.status == 404 || r.status == 401) {
            int failed = r.status != 200;
            if (failed) {
                fprintf(stderr, "modelhub %s: %s: %s\n", c->cmd, name,
                        action_reason(r.message, action, name));
            } else if (json_array_size(evict) == 0) {
                printf("%s: would load without evicting anything\n", name);
            } else {
                printf("%s: would evict ", name);
                print_names(evict);
                printf("\n");
            }
            json_decref(evict);
            json_decref(r.json);
            return failed;
        }
        json_decref(r.json);
    }
    snprintf(path, sizeof path, "/hub/models/%s/%s", seg, action);
    if (ctl_call(c, "POST", path, timeout_s, &r) < 0) {
        json_decref(evict);
        return -1;
    }
    if (r.status != 200) {
        fprintf(stderr, "modelhub %s: %s: %s\n", c->cmd, name,
                r.status >= 400 ? action_reason(r.message, action, name)
                                : "unexpected answer from the hub");
        json_decref(evict);
        json_decref(r.json);
        return 1;
    }
    json_t *entry = json_object_get(r.json, "entry");
    char state[64];
    if (strcmp(action, "start") == 0 || strcmp(action, "stop") == 0) {
        fmt_process(entry, state, sizeof state);
        printf("%s: %s", name, state);
        if (jint(entry, "pid") > 0)
            printf(" (pid %lld, port %lld)", jint(entry, "pid"), jint(entry, "port"));
    } else {
        fmt_memory(entry, state, sizeof state);
        printf("%s: %s", name, state);
        if (json_array_size(evict) > 0) {
            printf(", evicted ");
            print_names(evict);
        }
    }
    printf("\n");
    json_decref(evict);
    json_decref(r.json);
    return 0;
}

static int model_command(const char *action, int argc, char **argv) {
    const char *config = NULL;
    int dry_run = 0;
    double timeout = ACTION_TIMEOUT_S;
    char name[32], synopsis[96], summary[256];
    snprintf(name, sizeof name, "hub %s-model", action);
    int is_load = strcmp(action, "load") == 0;
    snprintf(synopsis, sizeof synopsis, "%sNAME... [--config FILE]", is_load ? "[--dry-run] " : "");
    static const char *const what[][2] = {
        {"start", "Start the models' processes (a quarantined model is released)."},
        {"stop", "Stop the models' processes (their memory is freed with them)."},
        {"load", "Load the models into memory, starting their processes as needed. In a full\n"
                 "group the least recently used idle member is unloaded first."},
        {"unload", "Unload the models from memory; their processes keep running."},
    };
    for (size_t i = 0; i < MH_ARRAY_LEN(what); i++)
        if (strcmp(what[i][0], action) == 0)
            snprintf(summary, sizeof summary,
                     "%s\nOne request per model, in order; the exit "
                     "status is 1 when any of them failed.",
                     what[i][1]);
    arg_spec specs[] = {
        {"--config", "-c", ARG_STRING, &config, 0, 0, "FILE", CONFIG_HELP},
        {"--timeout", NULL, ARG_DOUBLE, &timeout, 1, 86400, "S",
         "seconds to wait for each model (300)"},
        {"--dry-run", "-n", ARG_FLAG, &dry_run, 0, 0, NULL,
         "only show which models the load would evict"},
    };
    const char **names = mh_xcalloc((size_t)argc + 1, sizeof *names);
    arg_command cmd = {.name = name,
                       .synopsis = synopsis,
                       .summary = summary,
                       .specs = specs,
                       .n_specs = is_load ? 3 : 2, /* --dry-run is for load only */
                       .positional = names,
                       .max_positional = argc};
    int rc = args_parse(&cmd, argc, argv);
    if (rc == 0 && cmd.n_positional == 0) rc = args_error(&cmd, "name at least one model");
    if (rc) {
        free(names);
        return rc == 1 ? 0 : rc;
    }
    ctl c;
    if (ctl_open(&c, name, config) < 0) {
        free(names);
        return 1;
    }
    int failed = 0;
    for (int i = 0; i < cmd.n_positional; i++) {
        int r = model_action(&c, action, names[i], dry_run, timeout);
        if (r < 0) { /* no hub: the rest would fail the same way */
            failed = 1;
            break;
        }
        failed |= r;
        fflush(stdout);
    }
    free(names);
    return failed ? 1 : 0;
}

int cmd_hub_start_model(int argc, char **argv) {
    return model_command("start", argc, argv);
}
int cmd_hub_stop_model(int argc, char **argv) {
    return model_command("stop", argc, argv);
}
int cmd_hub_load_model(int argc, char **argv) {
    return model_command("load", argc, argv);
}
int cmd_hub_unload_model(int argc, char **argv) {
    return model_command("unload", argc, argv);
}

/* ==== hub logs ==== */

typedef struct logs_state {
    sse_parser *parser;
    int got_any;
} logs_state;

static void print_lines(json_t *lines) {
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l) {
        if (json_is_string(l)) printf("%s\n", json_string_value(l));
    }
}

static void logs_on_event(const sse_event *ev, void *arg) {
    logs_state *ls = arg;
    ls->got_any = 1;
    json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *line = jstr(j, "line");
    if (line)
        printf("%s\n", line);
    else
        print_lines(json_object_get(j, "lines"));
    fflush(stdout);
    json_decref(j);
}

static int logs_on_chunk(const char *data, size_t len, void *arg) {
    logs_state *ls = arg;
    sse_parser_feed(ls->parser, data, len, logs_on_event, ls);
    return 0;
}

int cmd_hub_logs(int argc, char **argv) {
    const char *config = NULL;
    long tail = -1;
    int follow = 0;
    const char *names[1];
    const arg_spec specs[] = {
        {"--config", "-c", ARG_STRING, &config, 0, 0, "FILE", CONFIG_HELP},
        {"--tail", "-n", ARG_INT, &tail, 0, 1000, "N", "the last N lines (100)"},
        {"--follow", "-f", ARG_FLAG, &follow, 0, 0, NULL, "then print new lines as they come"},
    };
    arg_command cmd = {.name = "hub logs",
                       .synopsis = "NAME [--tail N] [--follow] [--config FILE]",
                       .summary = "Print the end of a model's log (its worker's output).",
                       .specs = specs,
                       .n_specs = (int)MH_ARRAY_LEN(specs),
                       .positional = names,
                       .max_positional = 1};
    int rc = args_parse(&cmd, argc, argv);
    if (rc == 0 && cmd.n_positional == 0) rc = args_error(&cmd, "name the model");
    if (rc) return rc == 1 ? 0 : rc;
    ctl c;
    if (ctl_open(&c, "hub logs", config) < 0) return 1;
    char seg[512], path[700];
    url_segment(names[0], seg, sizeof seg);
    int n = snprintf(path, sizeof path, "/hub/models/%s/logs?", seg);
    if (tail >= 0) n += snprintf(path + n, sizeof path - (size_t)n, "tail=%ld&", tail);
    if (follow) snprintf(path + n, sizeof path - (size_t)n, "follow=1");
    if (!follow) {
        ctl_reply r;
        if (ctl_call(&c, "GET", path, 30, &r) < 0) return 1;
        if (r.status != 200) {
            fprintf(stderr, "modelhub hub logs: %s: %s\n", names[0],
                    r.status >= 400 ? r.message : "unexpected answer from the hub");
            json_decref(r.json);
            return 1;
        }
        print_lines(json_object_get(r.json, "lines"));
        json_decref(r.json);
        return 0;
    }
    logs_state ls = {.parser = sse_parser_new(0)};
    if (!ls.parser) return 1;
    char url[1300], err[2048];
    long status = 0;
    snprintf(url, sizeof url, "%s%s", c.t.base_url, path);
    rc = http_fetch_stream(url, c.t.admin_key, 0, 0, logs_on_chunk, &ls, &status, err, sizeof err);
    sse_parser_free(ls.parser);
    if (rc < 0 && !ls.got_any) {
        no_hub(&c, err);
        return 1;
    }
    if (status >= 400) {
        char what[300];
        snprintf(what, sizeof what, "%s: ", names[0]);
        stream_refused(&c, what, status, err);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, "modelhub hub logs: lost the connection to the hub: %s\n", err);
        return 1;
    }
    return 0;
}
