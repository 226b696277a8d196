/* dialect.h — other APIs (Ollama, Anthropic Messages, OpenAI Responses) over the OpenAI core.
 *
 * One request model inside, thin translators at the edge. A dialect request is rewritten into
 * the OpenAI chat/completions/embeddings request that means the same thing (every field is
 * checked: one we cannot honour is a 400 naming it, never silently dropped); the OpenAI answer
 * (a whole JSON body, or a stream of chunk events) is rewritten into the dialect's bytes by a
 * dialect_out. serve runs the translated body through its normal call path with a dialect_out
 * on its output; the hub translates at its edge and forwards to the worker's OpenAI routes, so
 * any OpenAI-compatible worker speaks every dialect.
 *
 *     dialect_request dr;
 *     if (dialect_translate(DIALECT_ANTHROPIC_MESSAGES, body, &dr, &e) < 0) -> dialect_error_body
 *     dialect_out *d = dialect_out_new(DIALECT_ANTHROPIC_MESSAGES, dr.stream, dr.model);
 *     stream:  dialect_out_chunk(d, chunk, &buf) per OpenAI chunk, dialect_out_done(d, &buf)
 *     whole:   json_t *body = dialect_out_response(d, openai_body)
 *
 * Plain objects; every function may be called from any thread on its own objects.
 */
#ifndef MH_DIALECT_H
#define MH_DIALECT_H

#include <jansson.h>

#include "http/http_json.h"
#include "util/common.h"

typedef enum dialect_api {
    DIALECT_OLLAMA_CHAT,        /* POST /api/chat */
    DIALECT_OLLAMA_GENERATE,    /* POST /api/generate */
    DIALECT_OLLAMA_EMBED,       /* POST /api/embed */
    DIALECT_OLLAMA_EMBEDDINGS,  /* POST /api/embeddings (the older single-prompt form) */
    DIALECT_ANTHROPIC_MESSAGES, /* POST /v1/messages */
    DIALECT_OPENAI_RESPONSES,   /* POST /v1/responses */
} dialect_api;

/* A translated request. */
typedef struct dialect_request {
    json_t *body;      /* the OpenAI request; owned, free with json_decref */
    const char *path;  /* "/v1/chat/completions", "/v1/completions" or "/v1/embeddings" */
    const char *model; /* borrowed from body: the "model" member, NULL when absent */
    int stream;        /* the client asked for a stream (body then asks for one with usage) */
} dialect_request;

/* Translate the dialect request `in` (a JSON object, borrowed). 0 with out->body set, or -1 with
 * a 400 in `e` whose param names the dialect's field (e.g. "options.num_ctx"). */
int dialect_translate(dialect_api api, const json_t *in, dialect_request *out, http_error *e);

/* The error body the dialect's clients expect, for status e->status (new reference):
 * Ollama {"error": "..."}, Anthropic {"type":"error","error":{"type","message"}}, Responses the
 * OpenAI envelope. */
json_t *dialect_error_body(dialect_api api, const http_error *e);

/* Read an OpenAI error envelope (from an upstream answer with `status`) back into `e`.
 * Returns 0 when `body` held one, else -1 with a generic error for `status` in e. */
int dialect_error_parse(const json_t *body, int status, http_error *e);

/* ---- Answers ---- */

typedef struct dialect_out dialect_out;

/* A translator for one answer; `stream` as in dialect_request; `model` (copied; NULL = take it
 * from the answer) is the name the answer reports, the one the client asked for. Starts the
 * answer's clock (the Ollama durations). */
dialect_out *dialect_out_new(dialect_api api, int stream, const char *model);
void dialect_out_free(dialect_out *d);

/* Content-Type of the streamed answer: text/event-stream or application/x-ndjson. */
const char *dialect_out_stream_type(const dialect_out *d);

/* A whole (non-stream) OpenAI answer -> the dialect's body (new reference). An OpenAI error
 * envelope becomes the dialect's error body. */
json_t *dialect_out_response(dialect_out *d, const json_t *openai);

/* Note that the first generated text exists now (streams notice it themselves). Without it a
 * whole answer's Ollama durations count everything as prompt evaluation. Later calls do nothing. */
void dialect_out_first_text(dialect_out *d);

/* One OpenAI stream chunk (chat.completion.chunk, text_completion, a usage-only chunk, or an
 * error envelope): append the dialect's bytes (SSE events or NDJSON lines) to `out`. */
void dialect_out_chunk(dialect_out *d, const json_t *chunk, mh_buf *out);

/* The OpenAI stream's `[DONE]`: append the closing events. At most once; nothing after. */
void dialect_out_done(dialect_out *d, mh_buf *out);

/* The stream failed (an error before or instead of [DONE]): append the dialect's error event. */
void dialect_out_error(dialect_out *d, const http_error *e, mh_buf *out);

/* The dialect this translator writes. */
dialect_api dialect_out_api(const dialect_out *d);

/* A translator made with stream = 0 may also be fed a stream (chunks, then done or error): it
 * gathers instead of writing (the hub asks workers for a stream so that Ollama's durations split
 * at the first token). After that, the whole answer in the dialect, with its HTTP status in
 * *status (the error a chunk carried, or 502 when the stream did not end). New reference. */
json_t *dialect_out_whole(dialect_out *d, int *status);

/* 1 once done or error closed the stream. */
int dialect_out_closed(const dialect_out *d);

/* ---- Model lists (from lifecycle snapshot entries, see lc_model_entry) ---- */

/* Ollama's /api/tags (loaded_only = 0) or /api/ps (loaded_only = 1) body from an array of
 * lifecycle model entries (borrowed). New reference. */
json_t *dialect_ollama_models(const json_t *entries, int loaded_only);

/* Ollama's /api/show body for one entry. New reference. */
json_t *dialect_ollama_show(const json_t *entry);

/* Ollama's /api/version body. */
json_t *dialect_ollama_version(const char *version);

/* The name /api/show asks for ("model", or the older "name"): 0, or -1 with a 400 in e. */
int dialect_ollama_show_name(const json_t *in, const char **name, http_error *e);

#endif
