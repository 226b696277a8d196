#include "http/http_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *http_error_default_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* Replace every byte of s that does not start or continue a valid UTF-8 sequence with '?', in
 * place: messages quote request bytes ("near '...'") and get cut at a fixed size, and jansson
 * refuses to build a string that is not UTF-8 (the envelope would be NULL). */
static void make_utf8(char *s) {
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t k = c < 0x80             ? 0
                   : (c & 0xe0) == 0xc0 ? 1
                   : (c & 0xf0) == 0xe0 ? 2
                   : (c & 0xf8) == 0xf0 ? 3
                                        : 4;
        unsigned cp = k == 1 ? c & 0x1f : k == 2 ? c & 0x0f : c & 0x07;
        size_t j = 1;
        for (; k < 4 && j <= k && (p[j] & 0xc0) == 0x80; j++) cp = (cp << 6) | (p[j] & 0x3f);
        static const unsigned min[] = {0, 0x80, 0x800, 0x10000};
        if (k == 0) {
            p++;
        } else if (k < 4 && j == k + 1 && cp >= min[k] && cp <= 0x10ffff &&
                   !(cp >= 0xd800 && cp <= 0xdfff)) {
            p += k + 1;
        } else {
            *p++ = '?';
        }
    }
}

int http_error_set(http_error *e, int status, const char *type, const char *param, const char *code,
                   const char *fmt, ...) {
    e->status = status;
    e->retry_after_s = 0;
    snprintf(e->type, sizeof e->type, "%s", type ? type : http_error_default_type(status));
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    make_utf8(e->message);
    make_utf8(e->param);
    return -1;
}

json_t *http_error_envelope(const http_error *e) {
    return json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", e->message, "type",
                     e->type[0] ? e->type : http_error_default_type(e->status), "param",
                     e->param[0] ? json_string(e->param) : json_null(), "code",
                     e->code[0] ? json_string(e->code) : json_null());
}

int http_json_parse(const char *text, size_t len, int want_object, json_t **out, http_error *e) {
    *out = NULL;
    if (!text || len == 0)
        return http_error_set(e, 400, NULL, NULL, "invalid_json",
                              "request body is empty; expected a JSON object");
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!v)
        return http_error_set(e, 400, NULL, NULL, "invalid_json",
                              "invalid JSON at line %d, column %d: %s", je.line, je.column,
                              je.text);
    if (want_object && !json_is_object(v)) {
        json_decref(v);
        return http_error_set(e, 400, NULL, NULL, "invalid_json",
                              "request body must be a JSON object");
    }
    *out = v;
    return 0;
}

/* The member, or NULL when absent or null. */
static const json_t *member(const json_t *obj, const char *key) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

static int missing(const char *key, http_error *e) {
    return http_error_set(e, 400, NULL, key, "missing_required_parameter",
                          "missing required parameter '%s'", key);
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int wrong_type(const char *key, const json_t *v, const char *want, http_error *e) {
    return http_error_set(e, 400, NULL, key, "invalid_type", "'%s' must be %s, not %s", key, want,
                          json_type_name(v));
}

int http_json_get_number(const json_t *obj, const char *key, int required, double min, double max,
                         double def, double *out, http_error *e) {
    const json_t *v = member(obj, key);
    if (!v) {
        *out = def;
        return required ? missing(key, e) : 0;
    }
    if (!json_is_number(v)) return wrong_type(key, v, "a number", e);
    double d = json_number_value(v);
    if (!isfinite(d) || d < min || d > max)
        return http_error_set(e, 400, NULL, key, "invalid_value",
                              "'%s' must be a number in [%g, %g], got %g", key, min, max, d);
    *out = d;
    return 0;
}

int http_json_get_int(const json_t *obj, const char *key, int required, long long min,
                      long long max, long long def, long long *out, http_error *e) {
    const json_t *v = member(obj, key);
    if (!v) {
        *out = def;
        return required ? missing(key, e) : 0;
    }
    long long x;
    if (json_is_integer(v)) {
        x = (long long)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v); /* 256.0 is accepted as 256 */
    } else {
        return wrong_type(key, v, "an integer", e);
    }
    if (x < min || x > max)
        return http_error_set(e, 400, NULL, key, "invalid_value",
                              "'%s' must be an integer in [%lld, %lld], got %lld", key, min, max,
                              x);
    *out = x;
    return 0;
}

int http_json_get_bool(const json_t *obj, const char *key, int required, int def, int *out,
                       http_error *e) {
    const json_t *v = member(obj, key);
    if (!v) {
        *out = def;
        return required ? missing(key, e) : 0;
    }
    if (!json_is_boolean(v)) return wrong_type(key, v, "a boolean", e);
    *out = json_is_true(v);
    return 0;
}

int http_json_get_string(const json_t *obj, const char *key, int required, size_t max_len,
                         const char *def, const char **out, http_error *e) {
    const json_t *v = member(obj, key);
    if (!v) {
        *out = def;
        return required ? missing(key, e) : 0;
    }
    if (!json_is_string(v)) return wrong_type(key, v, "a string", e);
    if (max_len && json_string_length(v) > max_len)
        return http_error_set(e, 400, NULL, key, "invalid_value", "'%s' is longer than %zu bytes",
                              key, max_len);
    *out = json_string_value(v);
    return 0;
}

int http_json_get_array(const json_t *obj, const char *key, int required, const json_t **out,
                        http_error *e) {
    const json_t *v = member(obj, key);
    *out = NULL;
    if (!v) return required ? missing(key, e) : 0;
    if (!json_is_array(v)) return wrong_type(key, v, "an array", e);
    *out = v;
    return 0;
}

int http_json_get_object(const json_t *obj, const char *key, int required, const json_t **out,
                         http_error *e) {
    const json_t *v = member(obj, key);
    *out = NULL;
    if (!v) return required ? missing(key, e) : 0;
    if (!json_is_object(v)) return wrong_type(key, v, "an object", e);
    *out = v;
    return 0;
}

char *http_json_dump(const json_t *v) {
    /* 15 significant digits: timestamps print as 1795948137.4, not 1795948137.4000001 */
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
}
