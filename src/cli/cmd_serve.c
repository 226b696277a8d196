/* cmd_serve.c — `modelhub serve`: parse the options into a serve_config and run it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/model.h"
#include "serve/serve.h"
#include "util/common.h"
#include "util/log.h"

/* "a,b,,c" -> {"a", "b", "c", NULL}; NULL for NULL. */
static char **split_list(const char *s) {
    if (!s) return NULL;
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    char **out = mh_xcalloc(n + 1, sizeof *out);
    size_t k = 0;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len) {
            out[k] = mh_xmalloc(len + 1);
            memcpy(out[k], s, len);
            out[k++][len] = 0;
        }
        s += len + (end != NULL);
    }
    return out;
}

static void free_list(char **v) {
    for (char **p = v; p && *p; p++) free(*p);
    free(v);
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1", *alias = NULL, *api_key = NULL;
    const char *log_file = NULL, *log_level = "info";
    const char *kv_type = "f16", *kv_mem = NULL, *cors = NULL, *hosts = NULL;
    long port = 8080, n_ctx = 0, threads = 0, parallel = 1, queue_size = 64, n_batch = 0;
    double queue_timeout = 120, idle_unload = 0;
    int jit = 0, worker = 0, no_prompt_cache = 0;
    const arg_spec specs[] = {
        {"--model", "-m", ARG_STRING, &model_path, 0, 0, "FILE", "GGUF model file (required)"},
        {"--host", NULL, ARG_STRING, &host, 0, 0, "ADDR", "address to bind (127.0.0.1)"},
        {"--port", NULL, ARG_INT, &port, 0, 65535, "N", "port, 0 = any free one (8080)"},
        {"--alias", NULL, ARG_STRING, &alias, 0, 0, "NAME",
         "the model's name in the API (the file's name)"},
        {"--ctx", "-c", ARG_INT, &n_ctx, 0, 1 << 20, "N",
         "context of each slot, 0 = the model's (shrunk to fit --kv-mem) (0)"},
        {"--kv-type", NULL, ARG_STRING, &kv_type, 0, 0, "T", "KV cache type, f16 or f32 (f16)"},
        {"--kv-mem", NULL, ARG_STRING, &kv_mem, 0, 0, "SIZE",
         "memory the KV caches of all slots may take, e.g. 4G (a quarter of RAM)"},
        {"--batch-size", "-b", ARG_INT, &n_batch, 1, MODEL_BATCH_MAX, "N",
         "tokens per engine step: every stream's next token plus prompt chunks (64)"},
        {"--threads", "-t", ARG_INT, &threads, 0, 1024, "N", "threads, 0 = all cores (0)"},
        {"--parallel", NULL, ARG_INT, &parallel, 1, 256, "N", "requests generated at once (1)"},
        {"--queue-size", NULL, ARG_INT, &queue_size, 0, 1 << 20, "N",
         "requests that may wait for a slot; more get 429 (64)"},
        {"--queue-timeout", NULL, ARG_DOUBLE, &queue_timeout, 0, 1e6, "S",
         "seconds a request may wait for the model or a slot; then 503 (120)"},
        {"--jit", NULL, ARG_FLAG, &jit, 0, 0, NULL, "load the model on the first request"},
        {"--idle-unload", NULL, ARG_DOUBLE, &idle_unload, 0, 1e9, "S",
         "unload S seconds after the last response, 0 = never (0)"},
        {"--api-key", NULL, ARG_STRING, &api_key, 0, 0, "KEY",
         "require 'Authorization: Bearer KEY' on /v1/*"},
        {"--cors-origin", NULL, ARG_STRING, &cors, 0, 0, "LIST",
         "origins (comma-separated, e.g. http://localhost:3000) a browser may call /v1/* from; "
         "CORS is off without it"},
        {"--allowed-host", NULL, ARG_STRING, &hosts, 0, 0, "LIST",
         "host names (comma-separated) accepted in the Host header besides localhost and the "
         "bound address; '*' = any"},
        {"--log-file", NULL, ARG_STRING, &log_file, 0, 0, "FILE", "also append logs to FILE"},
        {"--log-level", NULL, ARG_STRING, &log_level, 0, 0, "LEVEL",
         "error, warn, info or debug (info)"},
        {"--worker", NULL, ARG_FLAG, &worker, 0, 0, NULL,
         "run as a hub worker: exit when the parent dies or stdin closes"},
        {"--no-prompt-cache", NULL, ARG_FLAG, &no_prompt_cache, 0, 0, NULL,
         "evaluate every prompt in full (by default a slot reuses the prefix it already holds)"},
    };
    arg_command cmd = {"serve",
                       "-m FILE [options]",
                       "Serve one model over an OpenAI-compatible HTTP API.\n"
                       "The hub's control token, when any, comes from $MODELHUB_CONTROL_TOKEN.",
                       specs,
                       (int)MH_ARRAY_LEN(specs),
                       NULL,
                       0,
                       0};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model_path) return args_error(&cmd, "missing --model FILE");
    int level = log_parse_level(log_level);
    if (level < 0) return args_error(&cmd, "unknown log level '%s'", log_level);
    log_level_current = level;
    int kv = model_kv_type_parse(kv_type);
    if (kv < 0) return args_error(&cmd, "--kv-type must be f16 or f32, not '%s'", kv_type);
    uint64_t kv_bytes = 0;
    if (kv_mem && (mh_parse_size(kv_mem, &kv_bytes) < 0 || kv_bytes == 0))
        return args_error(&cmd, "--kv-mem must be a size such as 512M or 4G, not '%s'", kv_mem);
    char **cors_list = split_list(cors), **host_list = split_list(hosts);
    serve_config cfg = {
        .model_path = model_path,
        .host = host,
        .port = (int)port,
        .alias = alias,
        .n_ctx = (int)n_ctx,
        .kv_type = kv,
        .kv_mem = kv_bytes,
        .n_batch = (int)n_batch,
        .threads = (int)threads,
        .parallel = (int)parallel,
        .queue_size = (int)queue_size,
        .queue_timeout = queue_timeout,
        .jit = jit,
        .idle_unload = idle_unload,
        .api_key = api_key,
        .control_token = getenv("MODELHUB_CONTROL_TOKEN"),
        .log_file = log_file,
        .log_level = level,
        .worker = worker,
        .no_prompt_cache = no_prompt_cache,
        .cors_origins = (const char *const *)cors_list,
        .allowed_hosts = (const char *const *)host_list,
    };
    rc = serve_run(&cfg);
    free_list(cors_list);
    free_list(host_list);
    return rc;
}
