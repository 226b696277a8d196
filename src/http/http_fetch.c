#include "http/http_fetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_CONNECT_MS 5000L
#define DEFAULT_MAX_BODY   ((size_t)64 << 20)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ready;

static void curl_init_once(void) {
    curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

typedef struct sink {
    char *buf;
    size_t len, cap, max;
    int overflow;
} sink;

static size_t sink_write(char *data, size_t size, size_t nmemb, void *arg) {
    sink *s = arg;
    size_t n = size * nmemb;
    if (s->len + n > s->max) {
        s->overflow = 1;
        return 0; /* aborts the transfer */
    }
    if (s->len + n + 1 > s->cap) {
        size_t ncap = s->cap ? s->cap : 4096;
        while (ncap < s->len + n + 1) ncap *= 2;
        char *nb = realloc(s->buf, ncap);
        if (!nb) return 0;
        s->buf = nb;
        s->cap = ncap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = 0;
    return n;
}

static struct curl_slist *auth_headers(struct curl_slist *h, const char *bearer) {
    if (bearer && *bearer) {
        char line[1024];
        snprintf(line, sizeof line, "Authorization: Bearer %s", bearer);
        h = curl_slist_append(h, line);
    }
    return h;
}

void http_fetch_result_free(http_fetch_result *res) {
    free(res->body);
    res->body = NULL;
    res->body_len = 0;
}

int http_fetch(const char *url, const http_fetch_opts *o, http_fetch_result *res) {
    static const http_fetch_opts defaults = {0};
    if (!o) o = &defaults;
    memset(res, 0, sizeof *res);
    pthread_once(&curl_once, curl_init_once);
    CURL *h = curl_ready ? curl_easy_init() : NULL;
    if (!h) {
        snprintf(res->error, sizeof res->error, "libcurl initialisation failed");
        return -1;
    }
    sink s = {.max = o->max_body ? o->max_body : DEFAULT_MAX_BODY};
    struct curl_slist *hdrs = auth_headers(NULL, o->bearer);
    char ctype[160];
    if (o->body) {
        snprintf(ctype, sizeof ctype, "Content-Type: %s",
                 o->content_type ? o->content_type : "application/json");
        hdrs = curl_slist_append(hdrs, ctype);
        hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, o->body);
    }
    const char *method = o->method ? o->method : (o->body ? "POST" : "GET");
    if (strcmp(method, "GET") == 0 && !o->body)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (!o->body && strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    int ret = 0;
    if (rc != CURLE_OK) {
        snprintf(res->error, sizeof res->error, "%s: %s", url,
                 s.overflow  ? "response body too large"
                 : errbuf[0] ? errbuf
                             : curl_easy_strerror(rc));
        ret = -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
    char *ct = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(res->content_type, sizeof res->content_type, "%s", ct);
    res->body = s.buf ? s.buf : calloc(1, 1);
    res->body_len = s.len;
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return ret;
}

typedef struct stream_ctx {
    CURL *h;
    http_fetch_chunk_fn fn;
    void *arg;
    int stopped;
    long status;
    char *err;
    size_t errlen, errused;
} stream_ctx;

static size_t stream_write(char *data, size_t size, size_t nmemb, void *arg) {
    stream_ctx *c = arg;
    size_t n = size * nmemb;
    if (c->status == 0) curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->status >= 400) { /* keep the error body for the message */
        size_t room = c->errlen > c->errused + 1 ? c->errlen - c->errused - 1 : 0;
        size_t k = n < room ? n : room;
        memcpy(c->err + c->errused, data, k);
        c->errused += k;
        c->err[c->errused] = 0;
        return n;
    }
    if (c->fn(data, n, c->arg) != 0) {
        c->stopped = 1;
        return 0; /* makes curl abort with CURLE_WRITE_ERROR */
    }
    return n;
}

int http_fetch_stream(const char *url, const char *bearer, long connect_timeout_ms,
                      long idle_timeout_ms, http_fetch_chunk_fn fn, void *arg, long *status,
                      char *err, size_t errlen) {
    if (status) *status = 0;
    if (errlen) err[0] = 0;
    pthread_once(&curl_once, curl_init_once);
    CURL *h = curl_ready ? curl_easy_init() : NULL;
    if (!h) {
        snprintf(err, errlen, "libcurl initialisation failed");
        return -1;
    }
    stream_ctx c = {.h = h, .fn = fn, .arg = arg, .err = err, .errlen = errlen};
    struct curl_slist *hdrs = auth_headers(NULL, bearer);
    hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     connect_timeout_ms > 0 ? connect_timeout_ms : DEFAULT_CONNECT_MS);
    if (idle_timeout_ms > 0) { /* "less than 1 byte/s for N s" is curl's idle timeout */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (idle_timeout_ms + 999) / 1000);
    }
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 16384L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c.status);
    if (status) *status = c.status;
    int ret = 0;
    if (rc != CURLE_OK && !c.stopped) {
        snprintf(err, errlen, "%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        ret = -1;
    } else if (c.status >= 400 && c.errused == 0) {
        snprintf(err, errlen, "%s: HTTP %ld", url, c.status);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return ret;
}
