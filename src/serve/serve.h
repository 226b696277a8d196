/* serve.h — the single-model OpenAI-compatible server (`modelhub serve`).
 *
 * One event loop thread does all HTTP; one engine thread (the scheduler) generates. The model's
 * lifecycle (JIT load, idle unload, the snapshot) runs through src/lifecycle/ with the local
 * backend: loading maps the file and allocates the slots' KV caches on a loader thread;
 * unloading frees both.
 */
#ifndef MH_SERVE_H
#define MH_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "http/http_json.h"

typedef struct serve_config {
    const char *model_path;
    const char *host;  /* default 127.0.0.1 */
    int port;          /* 0 = ephemeral (printed on stdout as "listening on HOST:PORT") */
    const char *alias; /* the model's name in the API; default: the file's base name */
    int n_ctx;         /* per slot; 0 = the model's training context, shrunk to fit kv_mem */
    int kv_type;       /* enum model_kv_type */
    uint64_t kv_mem;   /* bytes the KV caches of all slots may take; 0 = a quarter of RAM */
    int n_batch;       /* tokens per engine step (0 = the engine's default) */
    int threads;       /* 0 = all cores */
    int parallel;      /* slots */
    int queue_size;
    double queue_timeout;      /* seconds; waits for a load or a slot longer than this get 503 */
    int jit;                   /* load on the first request instead of at start */
    double idle_unload;        /* seconds after the last response; 0 = never */
    const char *api_key;       /* protects the /v1 routes when set */
    const char *control_token; /* required in X-Control-Token by the /control routes */
    const char *log_file;
    int log_level;
    int worker;          /* run as a hub worker: exit when the parent dies or stdin closes */
    int no_prompt_cache; /* never reuse a slot's cached prefix (for measurements) */
    /* NULL-terminated, may be NULL (http_server.h, "Browser-side protections") */
    const char *const *cors_origins;  /* origins allowed to call the /v1 routes from a browser */
    const char *const *allowed_hosts; /* Host names accepted besides loopback and the bind */
} serve_config;

/* Run until SIGTERM/SIGINT (or the parent's death in worker mode). Returns the exit status. */
int serve_run(const serve_config *cfg);

/* The request bodies serve_validate_request() knows. */
typedef enum serve_request_kind {
    SERVE_REQ_CHAT,       /* POST /v1/chat/completions */
    SERVE_REQ_COMPLETION, /* POST /v1/completions */
    SERVE_REQ_EMBEDDING   /* POST /v1/embeddings */
} serve_request_kind;

/* Check `len` bytes of a request body exactly as the route does before it waits for the model
 * (JSON parse, then every field), without a server or a model: "model" is not looked up (as in
 * a hub worker). 0 when the route would go on to queue the request; -1 with the error it would
 * answer in `e`. For tests and fuzzing; thread-safe apart from call ids' counter. */
int serve_validate_request(serve_request_kind kind, const char *body, size_t len, http_error *e);

#endif
