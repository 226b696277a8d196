/* http_json.h — request JSON in, OpenAI error envelopes out (jansson).
 *
 * Every API error leaves modelhub as
 *     {"error": {"message": "...", "type": "...", "param": "temperature" | null, "code": ... |
 * null}} with a matching HTTP status. An http_error carries one such error from where it is
 * detected (a parser, a typed getter, the lifecycle) to where it is sent (http_reply_error()).
 *
 * The getters read one optional or required member of a request object and refuse wrong types and
 * out-of-range values with a 400 naming the member in `param`. JSON null counts as absent (clients
 * send `"stop": null` for "not set"). All functions are pure and may be called from any thread.
 */
#ifndef MH_HTTP_JSON_H
#define MH_HTTP_JSON_H

#include <stddef.h>

#include <jansson.h>

/* One API error. Plain data; fill it with http_error_set(). */
typedef struct http_error {
    int status;     /* HTTP status: 400, 401, 404, 413, 429, 500, 503, ... */
    char type[40];  /* "invalid_request_error", "authentication_error", "server_error", ... */
    char param[64]; /* offending request member, "" for none (sent as null) */
    char code[48];  /* machine-readable code, "" for none (sent as null) */
    char message[512];
    int retry_after_s; /* > 0: http_reply_error() adds `Retry-After: <n>` (429, 503) */
} http_error;

/* Fill `e` (retry_after_s = 0). `type` NULL picks the usual type for the status (4xx
 * invalid_request_error, 401 authentication_error, 404 not_found_error, 429 rate_limit_error,
 * 5xx server_error). `param` and `code` may be NULL. Returns -1 so callers can
 * `return http_error_set(...);`. */
int http_error_set(http_error *e, int status, const char *type, const char *param, const char *code,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The envelope {"error":{message,type,param,code}} as a new reference (NULL only on OOM). */
json_t *http_error_envelope(const http_error *e);

/* The usual error type for an HTTP status (see http_error_set). */
const char *http_error_default_type(int status);

/* Parse `len` bytes of JSON (NUL not required). On failure returns -1 and fills `e` with a 400
 * whose message names line and column, e.g. "invalid JSON at line 3, column 14: ...". With
 * `want_object`, anything but an object is a 400 too. On success *out is a new reference. */
int http_json_parse(const char *text, size_t len, int want_object, json_t **out, http_error *e);

/* Typed getters: 0 on success (a missing or null member leaves *out = def, or is a 400 "missing
 * required parameter" when `required`), -1 with a 400 in `e` naming `key` as param. Returned
 * strings and values are borrowed from `obj`. */
int http_json_get_number(const json_t *obj, const char *key, int required, double min, double max,
                         double def, double *out, http_error *e);
int http_json_get_int(const json_t *obj, const char *key, int required, long long min,
                      long long max, long long def, long long *out, http_error *e);
int http_json_get_bool(const json_t *obj, const char *key, int required, int def, int *out,
                       http_error *e);
/* Strings longer than `max_len` bytes (0 = no limit) are refused. */
int http_json_get_string(const json_t *obj, const char *key, int required, size_t max_len,
                         const char *def, const char **out, http_error *e);
int http_json_get_array(const json_t *obj, const char *key, int required, const json_t **out,
                        http_error *e);
int http_json_get_object(const json_t *obj, const char *key, int required, const json_t **out,
                         http_error *e);

/* Compact serialisation (no newlines), malloc'd; NULL on failure. */
char *http_json_dump(const json_t *v);

#endif
