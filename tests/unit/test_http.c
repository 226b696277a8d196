/* test_http.c — src/http over real sockets on 127.0.0.1 (ephemeral ports).
 *
 * The loop runs in the test's main thread (loop_until); clients run either on the same loop
 * (http_client) or in helper threads (libcurl, raw sockets, http_fetch) so that blocking calls
 * never stall the server. Checked: routing (exact, {name}, {*}, 404, 405, HEAD), JSON replies and
 * OpenAI error envelopes (status, param, Retry-After), auth, 413 for a 9 MiB body in the envelope
 * with the server still serving (also over one kept-alive connection, with the head arriving
 * byte by byte, with Expect: 100-continue, and chunked), malformed JSON -> line:column, SSE from
 * another thread through http_async (order, [DONE]), http_async under four producer threads,
 * client disconnects (mid-stream and while pending) firing on_close with the server still
 * serving, the proxy pattern (a second server upstream, forwarded chunk by chunk: the downstream
 * sees the first event before the upstream sends the last), upstream refused / closed before a
 * response / dying mid-stream / silent (distinct errors), cancelling, the pool, http_fetch, the
 * log hook and counters, and freeing a server with requests outstanding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "http/http_async.h"
#include "http/http_client.h"
#include "http/http_fetch.h"
#include "http/http_json.h"
#include "http/http_loop.h"
#include "http/http_req.h"
#include "http/http_server.h"
#include "http/http_stream.h"
#include "http/sse_parser.h"
#include "util/common.h"

/* ==== Loop and thread helpers ==== */

static struct event_base *base;
static struct event *tick_ev; /* keeps the loop waking up so loop_until can check its flag */

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
}

static int setup(void **state) {
    (void)state;
    char err[128];
    base = http_loop_new(err, sizeof err);
    assert_non_null(base);
    tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 5000};
    event_add(tick_ev, &tv);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    event_free(tick_ev);
    /* Let deferred frees run, then nothing may be left on the base. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    http_loop_free(base);
    base = NULL;
    return 0;
}

/* Run the loop until *flag becomes non-zero; fail after `seconds`. */
static void loop_until(atomic_int *flag, double seconds, const char *what) {
    double end = mh_now_mono() + seconds;
    while (!atomic_load(flag)) {
        if (mh_now_mono() > end) fail_msg("timed out waiting for %s", what);
        event_base_loop(base, EVLOOP_ONCE);
    }
}

/* Run the loop for `seconds` regardless. */
static void loop_for(double seconds) {
    double end = mh_now_mono() + seconds;
    while (mh_now_mono() < end) event_base_loop(base, EVLOOP_ONCE);
}

typedef struct job {
    void *(*fn)(void *);
    void *arg;
    pthread_t th;
    atomic_int done;
} job;

static void *job_main(void *p) {
    job *j = p;
    j->fn(j->arg);
    atomic_store(&j->done, 1);
    return NULL;
}

static void job_start(job *j, void *(*fn)(void *), void *arg) {
    j->fn = fn;
    j->arg = arg;
    atomic_store(&j->done, 0);
    assert_int_equal(pthread_create(&j->th, NULL, job_main, j), 0);
}

/* Drive the loop until the job's thread has finished, then join it. */
static void job_finish(job *j, double seconds, const char *what) {
    loop_until(&j->done, seconds, what);
    pthread_join(j->th, NULL);
}

/* ==== libcurl client (helper threads) ==== */

typedef struct creq {
    const char *method;
    char url[256];
    const char *body;
    size_t body_len;
    const char *headers[4];
    int chunked_upload; /* send the body with Transfer-Encoding: chunked */
    /* results */
    long status;
    char *resp;
    size_t resp_len;
    char resp_headers[4096];
    CURLcode rc;
} creq;

static size_t creq_body(char *d, size_t size, size_t n, void *arg) {
    creq *c = arg;
    size_t len = size * n;
    c->resp = realloc(c->resp, c->resp_len + len + 1);
    memcpy(c->resp + c->resp_len, d, len);
    c->resp_len += len;
    c->resp[c->resp_len] = 0;
    return len;
}

static size_t creq_header(char *d, size_t size, size_t n, void *arg) {
    creq *c = arg;
    size_t len = size * n;
    size_t used = strlen(c->resp_headers);
    if (used + len < sizeof c->resp_headers) {
        memcpy(c->resp_headers + used, d, len);
        c->resp_headers[used + len] = 0;
    }
    return len;
}

typedef struct upload {
    const char *data;
    size_t len, off;
} upload;

static size_t creq_read(char *buf, size_t size, size_t n, void *arg) {
    upload *u = arg;
    size_t k = MH_MIN(size * n, u->len - u->off);
    memcpy(buf, u->data + u->off, k);
    u->off += k;
    return k;
}

static void *creq_run(void *arg) {
    creq *c = arg;
    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL;
    for (int i = 0; i < 4 && c->headers[i]; i++) hl = curl_slist_append(hl, c->headers[i]);
    upload up = {c->body, c->body_len, 0};
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    if (c->chunked_upload) {
        hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, creq_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &up);
    } else if (c->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    }
    if (c->method && strcmp(c->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (c->method)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, creq_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, creq_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    c->rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return NULL;
}

static void creq_init(creq *c, const char *method, int port, const char *path) {
    memset(c, 0, sizeof *c);
    c->method = method;
    snprintf(c->url, sizeof c->url, "http://127.0.0.1:%d%s", port, path);
}

/* Perform `c` from a thread while this thread runs the loop. */
static void creq_do(creq *c) {
    job j;
    job_start(&j, creq_run, c);
    job_finish(&j, 30, c->url);
}

static void creq_free(creq *c) {
    free(c->resp);
    c->resp = NULL;
}

/* The error object of an OpenAI envelope in c->resp (new reference), failing when malformed. */
static json_t *envelope_of(const creq *c, const char **type, const char **param,
                           const char **code) {
    json_error_t je;
    json_t *v = c->resp ? json_loads(c->resp, 0, &je) : NULL;
    if (!v) fail_msg("not JSON: %s", c->resp ? c->resp : "(no body)");
    json_t *e = json_object_get(v, "error");
    if (!json_is_object(e) || !json_is_string(json_object_get(e, "message")) ||
        !json_is_string(json_object_get(e, "type")) || !json_object_get(e, "param") ||
        !json_object_get(e, "code"))
        fail_msg("not an OpenAI error envelope: %s", c->resp);
    *type = json_string_value(json_object_get(e, "type"));
    *param = json_string_value(json_object_get(e, "param")); /* NULL when null */
    *code = json_string_value(json_object_get(e, "code"));
    return v;
}

/* ==== Raw socket helpers (helper threads) ==== */

static int tcp_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        c += k;
        n -= (size_t)k;
    }
}

/* Read until `needle` appears in what was read (or EOF/timeout); returns bytes read into buf. */
static size_t recv_until(int fd, char *buf, size_t cap, const char *needle) {
    size_t n = 0;
    buf[0] = 0;
    while (n + 1 < cap) {
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
        buf[n] = 0;
        if (needle && strstr(buf, needle)) break;
    }
    return n;
}

/* Count occurrences of needle in hay. */
static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* ==== A test server ==== */

typedef struct tserver {
    http_server *srv;
    int port;
    int log_count;
    int last_status;
    char last_route[64];
    char last_note[64];
    int last_gone;
} tserver;

static void tlog(const http_log_entry *e, void *arg) {
    tserver *t = arg;
    t->log_count++;
    t->last_status = e->status;
    t->last_gone = e->client_gone;
    snprintf(t->last_route, sizeof t->last_route, "%s", e->route ? e->route : "");
    snprintf(t->last_note, sizeof t->last_note, "%s", e->note ? e->note : "");
}

static void tserver_start(tserver *t, const http_route *routes, size_t n, void *arg,
                          const char *api_key, size_t max_body) {
    memset(t, 0, sizeof *t);
    char err[256];
    http_server_config cfg = {.host = "127.0.0.1",
                              .port = 0,
                              .routes = routes,
                              .nroutes = n,
                              .arg = arg,
                              .api_key = api_key,
                              .max_body_bytes = max_body};
    t->srv = http_server_new(base, &cfg, err, sizeof err);
    if (!t->srv) fail_msg("server: %s", err);
    t->port = http_server_port(t->srv);
    assert_true(t->port > 0);
    http_server_set_log_hook(t->srv, tlog, t);
}

static void tserver_stop(tserver *t) {
    http_server_free(t->srv);
    t->srv = NULL;
}

/* ---- plain handlers ---- */

static void h_models(http_req *r, void *arg) {
    (void)arg;
    json_t *v = json_pack("{s:s, s:[{s:s}]}", "object", "list", "data", "id", "m1");
    http_req_set_note(r, "models=%d", 1);
    http_reply_json_take(r, 200, v);
}

static void h_start(http_req *r, void *arg) {
    (void)arg;
    json_t *v = json_pack("{s:s, s:s, s:i}", "name", http_req_param(r, "name"), "path",
                          http_req_path(r), "segments", (int)http_req_nsegments(r));
    http_reply_json_take(r, 200, v);
}

static void h_files(http_req *r, void *arg) {
    (void)arg;
    const char *rest = http_req_param(r, "*");
    const char *q = http_req_query(r, "tail");
    char buf[256];
    snprintf(buf, sizeof buf, "rest=[%s] tail=[%s]", rest ? rest : "(null)", q ? q : "(null)");
    http_reply(r, 200, "text/plain", buf, strlen(buf));
}

static void h_delete(http_req *r, void *arg) {
    (void)arg;
    http_reply(r, 204, NULL, NULL, 0);
}

/* Validates an OpenAI-like body with the typed getters. */
static void h_chat(http_req *r, void *arg) {
    (void)arg;
    http_error e;
    json_t *body;
    if (http_req_json(r, &body, &e) < 0) {
        http_reply_error(r, &e);
        return;
    }
    double temp;
    const json_t *msgs;
    if (http_json_get_array(body, "messages", 1, &msgs, &e) < 0 ||
        http_json_get_number(body, "temperature", 0, 0, 2, 1, &temp, &e) < 0) {
        json_decref(body);
        http_reply_error(r, &e);
        return;
    }
    size_t len;
    http_req_body(r, &len);
    json_t *v = json_pack("{s:f, s:i, s:I}", "temperature", temp, "messages",
                          (int)json_array_size(msgs), "body_len", (json_int_t)len);
    json_decref(body);
    http_reply_json_take(r, 200, v);
}

static void h_busy(http_req *r, void *arg) {
    (void)arg;
    http_error e;
    http_error_set(&e, 503, NULL, NULL, "model_loading", "model %s is loading", "m1");
    e.retry_after_s = 7;
    http_reply_error(r, &e);
}

/* Echoes the body length and a checksum (for the guard: bodies must pass through intact). */
static void h_echo(http_req *r, void *arg) {
    (void)arg;
    size_t len;
    const char *b = http_req_body(r, &len);
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++) sum = sum * 31 + (unsigned char)b[i];
    char out[64];
    snprintf(out, sizeof out, "len=%zu sum=%u", len, sum);
    http_reply(r, 200, "text/plain", out, strlen(out));
}

static const http_route basic_routes[] = {
    {"GET", "/v1/models", h_models, HTTP_ROUTE_PUBLIC},
    {"POST", "/v1/chat/completions", h_chat, 0},
    {"POST", "/hub/models/{name}/start", h_start, 0},
    {"GET", "/hub/files/{*}", h_files, 0},
    {"DELETE", "/hub/files/{*}", h_delete, 0},
    {"GET", "/busy", h_busy, 0},
    {"POST", "/echo", h_echo, 0},
    {"GET", "/local", h_models, HTTP_ROUTE_LOOPBACK},
};

/* ==== Tests: routing, replies, errors ==== */

static void test_routing(void **state) {
    (void)state;
    tserver t;
    tserver_start(&t, basic_routes, MH_ARRAY_LEN(basic_routes), NULL, NULL, 0);
    creq c;
    const char *type, *param, *code;

    creq_init(&c, NULL, t.port, "/v1/models");
    creq_do(&c);
    assert_int_equal(c.status, 200);
    assert_non_null(strstr(c.resp_headers, "Content-Type: application/json"));
    json_t *v = json_loads(c.resp, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(v, "object")), "list");
    json_decref(v);
    assert_string_equal(t.last_route, "/v1/models");
    assert_string_equal(t.last_note, "models=1");
    creq_free(&c);

    creq_init(&c, "POST", t.port, "/hub/models/a%20b/start");
    c.body = "";
    creq_do(&c);
    assert_int_equal(c.status, 200);
    v = json_loads(c.resp, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "a b");
    assert_string_equal(json_string_value(json_object_get(v, "path")), "/hub/models/a b/start");
    assert_int_equal(json_integer_value(json_object_get(v, "segments")), 4);
    json_decref(v);
    creq_free(&c);

    creq_init(&c, NULL, t.port, "/hub/files/logs/a.txt?tail=5&x=y%21");
    creq_do(&c);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.resp, "rest=[logs/a.txt] tail=[5]");
    creq_free(&c);

    creq_init(&c, NULL, t.port, "/hub/files");
    creq_do(&c);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.resp, "rest=[] tail=[(null)]");
    creq_free(&c);

    /* {name} matches exactly one segment */
    creq_init(&c, "POST", t.port, "/hub/models/a/b/start");
    c.body = "";
    creq_do(&c);
    assert_int_equal(c.status, 404);
    json_decref(envelope_of(&c, &type, &param, &code));
    creq_free(&c);

    creq_init(&c, NULL, t.port, "/nope");
    creq_do(&c);
    assert_int_equal(c.status, 404);
    v = envelope_of(&c, &type, &param, &code);
    assert_string_equal(type, "not_found_error");
    assert_null(param);
    assert_string_equal(code, "unknown_url");
    assert_string_equal(t.last_route, "");
    json_decref(v);
    creq_free(&c);

    creq_init(&c, "PUT", t.port, "/hub/files/x");
    creq_do(&c);
    assert_int_equal(c.status, 405);
    v = envelope_of(&c, &type, &param, &code);
    assert_string_equal(code, "method_not_allowed");
    assert_non_null(strstr(c.resp_headers, "Allow: GET, DELETE"));
    json_decref(v);
    creq_free(&c);

    creq_init(&c, "DELETE", t.port, "/hub/files/x");
    creq_do(&c);
    assert_int_equal(c.status, 204);
    creq_free(&c);

    creq_init(&c, "HEAD", t.port, "/v1/models");
    creq_do(&c);
    assert_int_equal(c.status, 200);
    assert_int_equal(c.resp_len, 0);
    creq_free(&c);

    creq_init(&c, NULL, t.port, "/local");
    creq_do(&c);
    assert_int_equal(c.status, 200); /* we are on loopback */
    creq_free(&c);

    /* A path segment that decodes to a NUL byte is refused, not truncated. */
    creq_init(&c, NULL, t.port, "/v1/models%00x");
    creq_do(&c);
    assert_int_equal(c.status, 400);
    creq_free(&c);

    http_route_stats st;
    http_server_stats_get(t.srv, 0, &st);
    assert_string_equal(st.pattern, "/v1/models");
    assert_int_equal(st.requests, 2); /* GET and HEAD */
    assert_int_equal(st.status_2xx, 2);
    assert_int_equal(st.in_flight, 0);
    http_server_stats_get(t.srv, MH_ARRAY_LEN(basic_routes), &st);
    assert_int_equal(st.requests, 4); /* 404, 404, 405, 400 */
    assert_int_equal(st.status_4xx, 4);
    tserver_stop(&t);
}

static void test_errors_and_json(void **state) {
    (void)state;
    tserver t;
    tserver_start(&t, basic_routes, MH_ARRAY_LEN(basic_routes), NULL, NULL, 0);
    creq c;
    const char *type, *param, *code;
    json_t *v;

    creq_init(&c, NULL, t.port, "/busy");
    creq_do(&c);
    assert_int_equal(c.status, 503);
    assert_non_null(strstr(c.resp_headers, "Retry-After: 7"));
    v = envelope_of(&c, &type, &param, &code);
    assert_string_equal(type, "server_error");
    assert_string_equal(code, "model_loading");
    json_decref(v);
    assert_int_equal(t.last_status, 503);
    creq_free(&c);

    creq_init(&c, "POST", t.port, "/v1/chat/completions");
    c.body = "{\"messages\": [], \"temperature\": 2.5}";
    c.body_len = strlen(c.body);
    creq_do(&c);
    assert_int_equal(c.status, 400);
    v = envelope_of(&c, &type, &param, &code);
    assert_string_equal(type, "invalid_request_error");
    assert_string_equal(param, "temperature");
    json_decref(v);
    creq_free(&c);

    creq_init(&c, "POST", t.port, "/v1/chat/completions");
    c.body = "{\"temperature\": 1}";
    c.body_len = strlen(c.body);
    creq_do(&c);
    assert_int_equal(c.status, 400);
    v = envelope_of(&c, &type, &param, &code);
    assert_string_equal(param, "messages");
    json_decref(v);
    creq_free(&c);

    creq_init(&c, "POST", t.port, "/v1/chat/completions");
    c.body = "{\n  \"messages\": [\n    {\"role\": \"user\",}\n  ]\n}";
    c.body_len = strlen(c.body);
    creq_do(&c);
    assert_int_equal(c.status, 400);
    v = envelope_of(&c, &type, &param, &code);
    const char *msg = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
    if (!strstr(msg, "line 3, column")) fail_msg("message without line:column: %s", msg);
    json_decref(v);
    creq_free(&c);

    creq_init(&c, "POST", t.port, "/v1/chat/completions");
    c.body = "{\"messages\": [1, 2], \"temperature\": 0.5}";
    c.body_len = strlen(c.body);
    creq_do(&c);
    assert_int_equal(c.status, 200);
    v = json_loads(c.resp, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(v, "messages")), 2);
    assert_true(json_real_value(json_object_get(v, "temperature")) == 0.5);
    json_decref(v);
    creq_free(&c);
    tserver_stop(&t);
}

/* Token comparison: equal only when equal, whatever the lengths; no prefix accepted. */
static void test_token_equal(void **state) {
    (void)state;
    assert_true(http_token_equal("sekret", "sekret"));
    assert_false(http_token_equal("sekre", "sekret"));
    assert_false(http_token_equal("sekrett", "sekret"));
    assert_false(http_token_equal("", "sekret"));
    assert_false(http_token_equal("sekretsekret", "sekret"));
    assert_false(http_token_equal("Sekret", "sekret"));
    assert_false(http_token_equal("sekreT", "sekret"));
    assert_false(http_token_equal("sek", "seksek")); /* cyclic reading must not match */
    assert_true(http_token_equal("", ""));
}

static void test_auth(void **state) {
    (void)state;
    tserver t;
    tserver_start(&t, basic_routes, MH_ARRAY_LEN(basic_routes), NULL, "sekret", 0);
    creq c;
    const char *type, *param, *code;

    creq_init(&c, NULL, t.port, "/busy");
    creq_do(&c);
    assert_int_equal(c.status, 401);
    json_t *v = envelope_of(&c, &type, &param, &code);
    assert_string_equal(type, "authentication_error");
    assert_string_equal(code, "invalid_api_key");
    json_decref(v);
    creq_free(&c);

    creq_init(&c, NULL, t.port, "/busy");
    c.headers[0] = "Authorization: Bearer sekreT";
    creq_do(&c);
    assert_int_equal(c.status, 401);
    creq_free(&c);

    creq_init(&c, NULL, t.port, "/busy");
    c.headers[0] = "Authorization: Bearer sekret";
    creq_do(&c);
    assert_int_equal(c.status, 503); /* through to the handler */
    creq_free(&c);

    creq_init(&c, NULL, t.port, "/v1/models"); /* public */
    creq_do(&c);
    assert_int_equal(c.status, 200);
    creq_free(&c);
    tserver_stop(&t);
}

/* ==== Tests: body limit (413) ==== */

static void test_413_curl(void **state) {
    (void)state;
    tserver t;
    tserver_start(&t, basic_routes, MH_ARRAY_LEN(basic_routes), NULL, NULL, 0); /* 8 MiB */
    size_t big = (size_t)9 << 20;
    char *body = malloc(big);
    memset(body, 'a', big);
    creq c;
    const char *type, *param, *code;

    /* With curl's default Expect: 100-continue for large bodies, then without it. */
    for (int expect = 1; expect >= 0; expect--) {
        creq_init(&c, "POST", t.port, "/echo");
        c.body = body;
        c.body_len = big;
        if (!expect) c.headers[0] = "Expect:";
        creq_do(&c);
        assert_int_equal(c.status, 413);
        json_t *v = envelope_of(&c, &type, &param, &code);
        assert_string_equal(type, "invalid_request_error");
        assert_string_equal(code, "request_too_large");
        json_decref(v);
        assert_int_equal(t.last_status, 413);
        creq_free(&c);

        /* still serving */
        creq_init(&c, "POST", t.port, "/echo");
        c.body = body;
        c.body_len = 1 << 20;
        creq_do(&c);
        assert_int_equal(c.status, 200);
        assert_non_null(strstr(c.resp, "len=1048576"));
        creq_free(&c);
    }

    /* Chunked upload over the limit: libevent's own 413 (documented), and still serving. */
    creq_init(&c, "POST", t.port, "/echo");
    c.body = body;
    c.body_len = big;
    c.chunked_upload = 1;
    creq_do(&c);
    assert_int_equal(c.status, 413);
    creq_free(&c);
    creq_init(&c, NULL, t.port, "/v1/models");
    creq_do(&c);
    assert_int_equal(c.status, 200);
    creq_free(&c);
    free(body);
    tserver_stop(&t);
}

typedef struct raw_413 {
    int port;
    int step; /* bytes per send for the heads, 0 = all at once */
    char out[16384];
    size_t out_len;
} raw_413;

/* One kept-alive connection: an oversized POST (full body sent), then a normal request. */
static void *raw_413_run(void *arg) {
    raw_413 *a = arg;
    int fd = tcp_connect(a->port);
    size_t body_len = (size_t)2 << 20; /* server limit is 1 MiB in this test */
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      body_len);
    const char *next = "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello";
    if (a->step)
        for (int i = 0; i < hl; i += a->step) {
            send_all(fd, head + i, (size_t)MH_MIN(a->step, hl - i));
            usleep(2000);
        }
    else
        send_all(fd, head, (size_t)hl);
    char *body = malloc(body_len);
    memset(body, 'z', body_len);
    send_all(fd, body, body_len);
    free(body);
    if (a->step)
        for (size_t i = 0; i < strlen(next); i += (size_t)a->step) {
            send_all(fd, next + i, MH_MIN((size_t)a->step, strlen(next) - i));
            usleep(2000);
        }
    else
        send_all(fd, next, strlen(next));
    a->out_len = recv_until(fd, a->out, sizeof a->out, "len=5 ");
    close(fd);
    return NULL;
}

static void test_413_keepalive_raw(void **state) {
    (void)state;
    tserver t;
    tserver_start(&t, basic_routes, MH_ARRAY_LEN(basic_routes), NULL, NULL, 1 << 20);
    for (int step = 0; step <= 1; step++) {
        raw_413 a = {.port = t.port, .step = step ? 3 : 0};
        job j;
        job_start(&j, raw_413_run, &a);
        job_finish(&j, 30, "raw 413");
        if (!strstr(a.out, "HTTP/1.1 413 Payload Too Large") ||
            !strstr(a.out, "\"code\":\"request_too_large\"") || !strstr(a.out, "len=5 sum="))
            fail_msg("step %d: unexpected answer: %s", step, a.out);
        /* The 413 comes first, then the echo of "hello" on the same connection. */
        assert_true(strstr(a.out, "413") < strstr(a.out, "len=5"));
        assert_int_equal(count_of(a.out, "HTTP/1.1 "), 2);
    }
    tserver_stop(&t);
}

typedef struct raw_simple {
    int port;
    const char *send;
    size_t send_len;
    int step;          /* bytes per send, 0 = all at once */
    const char *send2; /* sent 50 ms after `send`, when set */
    const char *until;
    char out[8192];
    int eof; /* the server closed the connection after answering */
} raw_simple;

static void *raw_simple_run(void *arg) {
    raw_simple *a = arg;
    int fd = tcp_connect(a->port);
    if (a->step)
        for (size_t i = 0; i < a->send_len; i += (size_t)a->step) {
            send_all(fd, a->send + i, MH_MIN((size_t)a->step, a->send_len - i));
            usleep(1000);
        }
    else
        send_all(fd, a->send, a->send_len);
    if (a->send2) {
        usleep(50000);
        send_all(fd, a->send2, strlen(a->send2));
    }
    recv_until(fd, a->out, sizeof a->out, a->until);
    char x;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    a->eof = recv(fd, &x, 1, 0) == 0;
    close(fd);
    return NULL;
}

static void test_413_expect_and_pipelining(void **state) {
    (void)state;
    tserver t;
    tserver_start(&t, basic_routes, MH_ARRAY_LEN(basic_routes), NULL, NULL, 1 << 20);
    job j;
    /* Expect: 100-continue with an oversized length: 413 at once, no body sent, closed. */
    raw_simple a = {.port = t.port,
                    .send = "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                            "Content-Length: 99999999\r\n\r\n",
                    .until = "}}"};
    a.send_len = strlen(a.send);
    job_start(&j, raw_simple_run, &a);
    job_finish(&j, 30, "expect");
    if (!strstr(a.out, "HTTP/1.1 413") || strstr(a.out, "100 Continue"))
        fail_msg("expect: %s", a.out);
    assert_non_null(strstr(a.out, "Connection: close"));
    assert_int_equal(a.eof, 1);

    /* Three pipelined requests in one write, the middle one oversized with its body. */
    size_t blen = (1 << 20) + 10;
    size_t cap = blen + 1024;
    char *buf = malloc(cap);
    int n = snprintf(buf, cap,
                     "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc"
                     "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n",
                     blen);
    memset(buf + n, 'q', blen);
    n += (int)blen;
    n += snprintf(buf + n, cap - (size_t)n, "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    raw_simple b = {.port = t.port, .send = buf, .send_len = (size_t)n, .until = "\"m1\"}]}"};
    job_start(&j, raw_simple_run, &b);
    job_finish(&j, 30, "pipelined");
    const char *p1 = strstr(b.out, "len=3 ");
    const char *p2 = strstr(b.out, "request_too_large");
    const char *p3 = strstr(b.out, "\"object\":\"list\"");
    if (!p1 || !p2 || !p3 || !(p1 < p2 && p2 < p3)) fail_msg("pipelined: %s", b.out);
    assert_int_equal(b.eof, 0); /* kept alive */
    free(buf);

    /* A small body whose head trickles in byte by byte passes through intact. */
    const char *slow =
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n\r\nhello world";
    raw_simple c = {
        .port = t.port, .send = slow, .send_len = strlen(slow), .step = 1, .until = "sum="};
    job_start(&j, raw_simple_run, &c);
    job_finish(&j, 30, "byte by byte");
    uint32_t sum = 0;
    for (const char *s = "hello world"; *s; s++) sum = sum * 31 + (unsigned char)*s;
    char want[64];
    snprintf(want, sizeof want, "len=11 sum=%u", sum);
    loop_for(0.05);
    if (!strstr(c.out, want)) fail_msg("byte by byte: %s (want %s)", c.out, want);
    tserver_stop(&t);
}

/* ==== Tests: SSE through http_async ==== */

typedef struct sse_msg {
    http_async_item link;
    http_req *req;
    int index; /* -1: the end */
} sse_msg;

typedef struct sse_ctx {
    http_async *q;
    pthread_t producer;
    int producer_started;
    int n_events;
    http_req *req;
    atomic_int closed;
    atomic_int stop; /* producer: stop early */
    atomic_int ended;
} sse_ctx;

static void *sse_producer(void *arg) {
    sse_ctx *c = arg;
    for (int i = 0; i < c->n_events && !atomic_load(&c->stop); i++) {
        sse_msg *m = calloc(1, sizeof *m);
        m->req = c->req;
        m->index = i;
        http_async_push(c->q, &m->link);
        if (i % 7 == 0) usleep(200);
    }
    sse_msg *m = calloc(1, sizeof *m);
    m->req = c->req;
    m->index = -1;
    http_async_push(c->q, &m->link);
    return NULL;
}

static void sse_drain(http_async_item *it, void *arg) {
    sse_ctx *c = arg;
    sse_msg *m = HTTP_ASYNC_ENTRY(it, sse_msg, link);
    if (m->index >= 0) {
        char data[64];
        snprintf(data, sizeof data, "{\"i\":%d}", m->index);
        http_stream_event(m->req, data);
    } else {
        http_stream_event(m->req, "[DONE]");
        http_stream_end(m->req);
        c->req = NULL;
        atomic_store(&c->ended, 1);
    }
    free(m);
}

static void sse_on_close(http_req *r, void *arg) {
    (void)r;
    sse_ctx *c = arg;
    atomic_store(&c->closed, 1);
    atomic_store(&c->stop, 1); /* "cancel generation" */
}

static void h_sse(http_req *r, void *arg) {
    sse_ctx *c = arg;
    c->req = r;
    http_req_on_close(r, sse_on_close, c);
    assert_int_equal(http_stream_start_sse(r), 0);
    c->producer_started = 1;
    pthread_create(&c->producer, NULL, sse_producer, c);
}

static const http_route sse_routes[] = {
    {"GET", "/sse", h_sse, HTTP_ROUTE_STREAM},
    {"GET", "/v1/models", h_models, 0},
};

static void test_sse_from_thread(void **state) {
    (void)state;
    sse_ctx ctx = {.n_events = 300};
    ctx.q = http_async_new(base, sse_drain, &ctx);
    tserver t;
    tserver_start(&t, sse_routes, MH_ARRAY_LEN(sse_routes), &ctx, NULL, 0);
    creq c;
    creq_init(&c, NULL, t.port, "/sse");
    creq_do(&c);
    pthread_join(ctx.producer, NULL);
    assert_int_equal(c.status, 200);
    assert_non_null(strstr(c.resp_headers, "Content-Type: text/event-stream"));
    assert_non_null(strstr(c.resp_headers, "Cache-Control: no-cache"));
    /* Parse what arrived: every index in order, then [DONE], nothing after. */
    const char *p = c.resp;
    for (int i = 0; i < ctx.n_events; i++) {
        char want[64];
        snprintf(want, sizeof want, "data: {\"i\":%d}\n\n", i);
        if (strncmp(p, want, strlen(want)) != 0) fail_msg("event %d: got %.40s", i, p);
        p += strlen(want);
    }
    assert_string_equal(p, "data: [DONE]\n\n");
    assert_int_equal(atomic_load(&ctx.closed), 0);
    loop_for(0.05);
    assert_int_equal(atomic_load(&ctx.closed), 0); /* on_close never fires after the end */
    assert_int_equal(t.last_status, 200);
    assert_int_equal(t.last_gone, 0);
    creq_free(&c);
    tserver_stop(&t);
    http_async_free(ctx.q, NULL);
}

/* ---- http_async on its own: many producers, nothing lost, per-producer order kept ---- */

typedef struct count_msg {
    http_async_item link;
    int producer, seq;
} count_msg;

typedef struct count_ctx {
    http_async *q;
    int last_seq[4];
    int received;
    int out_of_order;
    atomic_int all;
} count_ctx;

#define N_PER_PRODUCER 20000

static void count_drain(http_async_item *it, void *arg) {
    count_ctx *c = arg;
    count_msg *m = HTTP_ASYNC_ENTRY(it, count_msg, link);
    if (m->seq != c->last_seq[m->producer] + 1) c->out_of_order++;
    c->last_seq[m->producer] = m->seq;
    if (++c->received == 4 * N_PER_PRODUCER) atomic_store(&c->all, 1);
    free(m);
}

typedef struct producer_arg {
    count_ctx *c;
    int id;
} producer_arg;

static void *count_producer(void *arg) {
    producer_arg *p = arg;
    for (int i = 0; i < N_PER_PRODUCER; i++) {
        count_msg *m = malloc(sizeof *m);
        m->producer = p->id;
        m->seq = i;
        http_async_push(p->c->q, &m->link);
    }
    return NULL;
}

static void leftover_free(http_async_item *it, void *arg) {
    (void)arg;
    free(HTTP_ASYNC_ENTRY(it, count_msg, link));
}

static void test_async_many_producers(void **state) {
    (void)state;
    count_ctx c = {.last_seq = {-1, -1, -1, -1}};
    c.q = http_async_new(base, count_drain, &c);
    /* The tick timer would mask a lost wake-up: remove it for this test. */
    event_del(tick_ev);
    pthread_t th[4];
    producer_arg pa[4];
    for (int i = 0; i < 4; i++) {
        pa[i] = (producer_arg){&c, i};
        pthread_create(&th[i], NULL, count_producer, &pa[i]);
    }
    double end = mh_now_mono() + 30;
    while (!atomic_load(&c.all) && mh_now_mono() < end) {
        struct timeval tv = {1, 0};
        event_base_loopexit(base, &tv); /* a lost wake-up shows up as a stall, not a hang */
        event_base_loop(base, EVLOOP_ONCE);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    assert_int_equal(c.received, 4 * N_PER_PRODUCER);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(http_async_pending(c.q), 0);
    struct timeval tv = {0, 5000};
    event_add(tick_ev, &tv);
    /* Items left in the queue go to the leftover function on free. */
    count_msg *m = malloc(sizeof *m);
    http_async_push(c.q, &m->link);
    assert_int_equal(http_async_pending(c.q), 1);
    http_async_free(c.q, leftover_free);
}

/* ==== Tests: client going away ==== */

typedef struct raw_sse_client {
    int port;
    const char *path;
    char out[4096];
} raw_sse_client;

/* Read the head and the first event, then disconnect. */
static void *raw_sse_client_run(void *arg) {
    raw_sse_client *a = arg;
    int fd = tcp_connect(a->port);
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", a->path);
    send_all(fd, req, strlen(req));
    recv_until(fd, a->out, sizeof a->out, "\n\n\r\n"); /* end of the first event's chunk */
    close(fd);
    return NULL;
}

typedef struct slow_ctx {
    http_req *req;
    atomic_int closed;
    double closed_after;
    int start_stream; /* 0: keep the request pending, never answer until closed */
} slow_ctx;

static void slow_on_close(http_req *r, void *arg) {
    slow_ctx *c = arg;
    assert_true(http_req_gone(r));
    c->closed_after = http_req_age(r);
    /* Writes are no-ops now; the terminal call is still needed and allowed in here. */
    if (c->start_stream) {
        assert_int_equal(http_stream_event(r, "x"), -1);
        http_stream_end(r);
    } else {
        assert_int_equal(http_reply_errorf(r, 500, NULL, NULL, NULL, "too late"), -1);
    }
    c->req = NULL;
    atomic_store(&c->closed, 1);
}

/* Sends one event, then nothing: only the re-armed read can notice the client leaving. */
static void h_slow(http_req *r, void *arg) {
    slow_ctx *c = arg;
    c->req = r;
    http_req_on_close(r, slow_on_close, c);
    if (c->start_stream) {
        http_stream_start_sse(r);
        http_stream_event(r, "{\"first\":true}");
    }
}

static const http_route slow_routes[] = {
    {"GET", "/slow", h_slow, 0},
    {"GET", "/v1/models", h_models, 0},
};

static void test_client_disconnect(void **state) {
    (void)state;
    for (int mode = 1; mode >= 0; mode--) {
        slow_ctx ctx = {.start_stream = mode};
        tserver t;
        tserver_start(&t, slow_routes, MH_ARRAY_LEN(slow_routes), &ctx, NULL, 0);
        raw_sse_client a = {.port = t.port, .path = "/slow"};
        job j;
        if (mode) {
            job_start(&j, raw_sse_client_run, &a);
        } else {
            /* pending request: send it, wait until dispatched, disconnect */
            int fd = tcp_connect(t.port);
            send_all(fd, "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 40);
            double end = mh_now_mono() + 5;
            while (!ctx.req && mh_now_mono() < end) event_base_loop(base, EVLOOP_ONCE);
            assert_non_null(ctx.req);
            close(fd);
        }
        loop_until(&ctx.closed, 5, "on_close");
        if (mode) {
            pthread_join(j.th, NULL);
            assert_non_null(strstr(a.out, "data: {\"first\":true}"));
        }
        assert_true(ctx.closed_after < 2.0);
        http_route_stats st;
        http_server_stats_get(t.srv, 0, &st);
        assert_int_equal(st.client_gone, 1);
        assert_int_equal(st.in_flight, 0);
        assert_int_equal(t.last_gone, 1);
        /* still serving */
        creq c;
        creq_init(&c, NULL, t.port, "/v1/models");
        creq_do(&c);
        assert_int_equal(c.status, 200);
        creq_free(&c);
        loop_for(0.05);
        assert_int_equal(http_server_connections(t.srv), 0);
        tserver_stop(&t);
    }
}

/* A stream whose client leaves while the producer thread keeps pushing: the owner ends it
 * after on_close; events pushed meanwhile are harmless no-ops. */
static void test_disconnect_during_thread_stream(void **state) {
    (void)state;
    sse_ctx ctx = {.n_events = 1000000};
    ctx.q = http_async_new(base, sse_drain, &ctx);
    tserver t;
    tserver_start(&t, sse_routes, MH_ARRAY_LEN(sse_routes), &ctx, NULL, 0);
    raw_sse_client a = {.port = t.port, .path = "/sse"};
    job j;
    job_start(&j, raw_sse_client_run, &a);
    loop_until(&ctx.closed, 10, "on_close of the thread stream");
    loop_until(&ctx.ended, 10, "the producer to stop");
    pthread_join(j.th, NULL);
    pthread_join(ctx.producer, NULL);
    loop_for(0.02);
    http_route_stats st;
    http_server_stats_get(t.srv, 0, &st);
    assert_int_equal(st.client_gone, 1);
    assert_int_equal(st.in_flight, 0);
    tserver_stop(&t);
    http_async_free(ctx.q, NULL);
}

/* Freeing the server with a request still owned by its handler: on_close runs, the owner's
 * terminal call then only frees. */
static void test_server_free_with_pending(void **state) {
    (void)state;
    slow_ctx ctx = {.start_stream = 1};
    tserver t;
    tserver_start(&t, slow_routes, MH_ARRAY_LEN(slow_routes), &ctx, NULL, 0);
    int fd = tcp_connect(t.port);
    send_all(fd, "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 40);
    double end = mh_now_mono() + 5;
    while (!ctx.req && mh_now_mono() < end) event_base_loop(base, EVLOOP_ONCE);
    assert_non_null(ctx.req);
    tserver_stop(&t);
    loop_until(&ctx.closed, 5, "on_close after server free");
    char buf[512];
    recv_until(fd, buf, sizeof buf, NULL); /* the server side is closed: EOF */
    close(fd);
}

/* ==== Tests: the async client and the proxy pattern ==== */

/* Upstream: an SSE route that sends event 0 at once and the rest only after the test says the
 * downstream client has seen event 0 (so buffering anywhere in between would stall the test). */
typedef struct up_ctx {
    http_req *req;
    struct event *timer;
    atomic_int *release; /* set by the downstream client when it saw event 0 */
    int next;
    int total;
    atomic_int closed;
    int requests;
} up_ctx;

static void up_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    up_ctx *u = arg;
    if (!u->req) return;
    if (!atomic_load(u->release)) return;
    char data[64];
    snprintf(data, sizeof data, "{\"n\":%d}", u->next++);
    http_stream_event(u->req, data);
    if (u->next == u->total) {
        http_stream_event(u->req, "[DONE]");
        http_stream_end(u->req);
        u->req = NULL;
        event_del(u->timer);
    }
}

static void up_on_close(http_req *r, void *arg) {
    up_ctx *u = arg;
    http_stream_end(r);
    u->req = NULL;
    event_del(u->timer);
    atomic_store(&u->closed, 1);
}

static void h_up_stream(http_req *r, void *arg) {
    up_ctx *u = arg;
    u->requests++;
    u->req = r;
    u->next = 0;
    http_req_on_close(r, up_on_close, u);
    http_stream_start_sse(r);
    http_stream_event(r, "{\"n\":0}");
    u->next = 1;
    struct timeval tv = {0, 2000};
    event_add(u->timer, &tv);
}

static void h_up_json(http_req *r, void *arg) {
    up_ctx *u = arg;
    u->requests++;
    const char *auth = http_req_header(r, "X-Test");
    size_t len;
    http_req_body(r, &len);
    json_t *v = json_pack("{s:s, s:i, s:s}", "hello", "world", "body_len", (int)len, "x_test",
                          auth ? auth : "");
    http_reply_json_take(r, 201, v);
}

static const http_route up_routes[] = {
    {"GET", "/stream", h_up_stream, 0},
    {"POST", "/json", h_up_json, 0},
    {"GET", "/json", h_up_json, 0},
};

/* Downstream proxy: forwards /proxy to upstream /stream chunk by chunk. */
typedef struct proxy_ctx {
    http_client *client;
    http_req *down;
    http_client_req *up;
    sse_parser *parser;
    int saw_done;
    int saw_ctype_header;
    int chunks;
    int up_error;
    atomic_int finished;
} proxy_ctx;

static void px_sse(const sse_event *ev, void *arg) {
    proxy_ctx *p = arg;
    if (sse_event_is_done(ev)) p->saw_done = 1;
}

static void px_count_header(const char *name, const char *value, void *arg) {
    proxy_ctx *p = arg;
    if (strcasecmp(name, "Content-Type") == 0 && strcmp(value, "text/event-stream") == 0)
        p->saw_ctype_header = 1;
}

static void px_head(http_client_req *cr, int status, void *arg) {
    proxy_ctx *p = arg;
    assert_true(http_client_req_each_header(cr, px_count_header, p) >= 3);
    const char *ct = http_client_req_header(cr, "Content-Type");
    http_stream_start(p->down, status, ct ? ct : "application/octet-stream");
}

static void px_chunk(http_client_req *cr, const char *data, size_t len, void *arg) {
    (void)cr;
    proxy_ctx *p = arg;
    p->chunks++;
    sse_parser_feed(p->parser, data, len, px_sse, p);
    http_stream_write(p->down, data, len); /* unchanged, at once */
}

static void px_done(http_client_req *cr, const http_client_result *res, void *arg) {
    (void)cr;
    proxy_ctx *p = arg;
    p->up = NULL;
    p->up_error = res->error;
    if (p->down) {
        if (res->error && http_stream_started(p->down))
            http_stream_event(p->down, "{\"error\":{\"message\":\"upstream failed\"}}");
        if (http_stream_started(p->down) || http_req_gone(p->down))
            http_stream_end(p->down);
        else
            http_reply_errorf(p->down, 502, NULL, NULL, "upstream", "%s", res->message);
        p->down = NULL;
    }
    atomic_store(&p->finished, 1);
}

static void px_down_closed(http_req *r, void *arg) {
    (void)r;
    proxy_ctx *p = arg;
    if (p->up) http_client_cancel(p->up); /* px_done ends the downstream */
}

static void h_proxy(http_req *r, void *arg) {
    proxy_ctx *p = arg;
    p->down = r;
    http_req_on_close(r, px_down_closed, p);
    http_client_request_opts o = {.method = "GET", .path = "/stream", .timeout_ms = 5000};
    http_client_callbacks cb = {px_head, px_chunk, px_done};
    if (http_client_request(p->client, &o, &cb, p, &p->up) < 0)
        http_reply_errorf(r, 500, NULL, NULL, NULL, "cannot start");
}

static const http_route proxy_routes[] = {
    {"GET", "/proxy", h_proxy, HTTP_ROUTE_STREAM},
};

typedef struct stream_reader {
    int port;
    atomic_int *release;
    char out[8192];
    int saw_first_before_release;
    int disconnect_after_first;
} stream_reader;

static void *stream_reader_run(void *arg) {
    stream_reader *s = arg;
    int fd = tcp_connect(s->port);
    const char *req = "GET /proxy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    send_all(fd, req, strlen(req));
    size_t n = 0;
    for (;;) {
        ssize_t k = recv(fd, s->out + n, sizeof s->out - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
        s->out[n] = 0;
        if (!atomic_load(s->release) && strstr(s->out, "data: {\"n\":0}")) {
            s->saw_first_before_release = 1;
            if (s->disconnect_after_first) break;
            atomic_store(s->release, 1);
        }
        if (strstr(s->out, "0\r\n\r\n")) break; /* end of the chunked body */
    }
    close(fd);
    return NULL;
}

static void test_proxy_chunk_by_chunk(void **state) {
    (void)state;
    atomic_int release = 0;
    up_ctx u = {.release = &release, .total = 5};
    u.timer = event_new(base, -1, EV_PERSIST, up_tick, &u);
    tserver up, down;
    tserver_start(&up, up_routes, MH_ARRAY_LEN(up_routes), &u, NULL, 0);
    proxy_ctx p = {0};
    p.parser = sse_parser_new(0);
    p.client = http_client_new(base, "127.0.0.1", up.port, 2, 5000);
    tserver_start(&down, proxy_routes, MH_ARRAY_LEN(proxy_routes), &p, NULL, 0);

    stream_reader s = {.port = down.port, .release = &release};
    job j;
    job_start(&j, stream_reader_run, &s);
    job_finish(&j, 20, "proxied stream");
    loop_until(&p.finished, 5, "proxy done");
    assert_int_equal(s.saw_first_before_release, 1);
    assert_int_equal(p.up_error, 0);
    assert_int_equal(p.saw_done, 1);
    assert_int_equal(p.saw_ctype_header, 1);
    assert_true(p.chunks >= 2);
    for (int i = 0; i < 5; i++) {
        char want[32];
        snprintf(want, sizeof want, "data: {\"n\":%d}", i);
        if (!strstr(s.out, want)) fail_msg("missing %s in %s", want, s.out);
    }
    assert_non_null(strstr(s.out, "data: [DONE]"));
    assert_non_null(strstr(s.out, "Content-Type: text/event-stream"));
    assert_int_equal(http_client_pending(p.client), 0);

    /* Downstream client leaves after the first event: upstream request cancelled, and the
     * upstream server sees its client (the proxy) go away. */
    atomic_store(&release, 0);
    atomic_store(&p.finished, 0);
    stream_reader s2 = {.port = down.port, .release = &release, .disconnect_after_first = 1};
    job_start(&j, stream_reader_run, &s2);
    job_finish(&j, 20, "reader that leaves");
    loop_until(&p.finished, 5, "proxy cancelled");
    assert_int_equal(p.up_error, HTTP_CLIENT_ECANCELED);
    loop_until(&u.closed, 5, "upstream sees the proxy leave");
    loop_for(0.05);
    assert_int_equal(http_server_connections(down.srv), 0);

    http_client_free(p.client);
    tserver_stop(&down);
    tserver_stop(&up);
    event_free(u.timer);
    sse_parser_free(p.parser);
}

/* ---- fake upstreams on raw sockets: refused, closed, died mid-stream, silent ---- */

typedef struct fake_up {
    int listen_fd;
    int port;
    int mode; /* 0: close at once, 1: head + one event then close, 2: never answer,
               * 3: head then silence */
    atomic_int stop;
} fake_up;

static void *fake_up_run(void *arg) {
    fake_up *f = arg;
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    char buf[4096];
    recv_until(fd, buf, sizeof buf, "\r\n\r\n");
    if (f->mode == 1) {
        const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"
                           "d\r\ndata: {\"a\":1}\n\n\r\n";
        send_all(fd, resp, strlen(resp));
        usleep(50000);
    } else if (f->mode == 3) {
        const char *resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        send_all(fd, resp, strlen(resp));
    }
    if (f->mode >= 2)
        while (!atomic_load(&f->stop)) usleep(10000);
    close(fd);
    return NULL;
}

static void fake_up_listen(fake_up *f) {
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    listen(f->listen_fd, 4);
    socklen_t sl = sizeof a;
    getsockname(f->listen_fd, (struct sockaddr *)&a, &sl);
    f->port = ntohs(a.sin_port);
}

typedef struct result_box {
    http_client_result res;
    char message[200];
    char body[512];
    int heads;
    int chunks;
    atomic_int done;
    int done_calls;
} result_box;

static void rb_head(http_client_req *cr, int status, void *arg) {
    (void)cr;
    (void)status;
    ((result_box *)arg)->heads++;
}

static void rb_chunk(http_client_req *cr, const char *d, size_t n, void *arg) {
    (void)cr;
    (void)d;
    (void)n;
    ((result_box *)arg)->chunks++;
}

static void rb_done(http_client_req *cr, const http_client_result *res, void *arg) {
    (void)cr;
    result_box *b = arg;
    b->res = *res;
    snprintf(b->message, sizeof b->message, "%s", res->message);
    snprintf(b->body, sizeof b->body, "%s", res->body ? res->body : "");
    b->res.message = b->message;
    b->res.body = NULL;
    b->done_calls++;
    atomic_store(&b->done, 1);
}

static void run_fake(int mode, int timeout_ms, result_box *b) {
    fake_up f = {.mode = mode};
    fake_up_listen(&f);
    pthread_t th;
    pthread_create(&th, NULL, fake_up_run, &f);
    http_client *c = http_client_new(base, "127.0.0.1", f.port, 1, timeout_ms);
    http_client_request_opts o = {.method = "GET", .path = "/x"};
    http_client_callbacks cb = {rb_head, rb_chunk, rb_done};
    assert_int_equal(http_client_request(c, &o, &cb, b, NULL), 0);
    loop_until(&b->done, 10, "fake upstream result");
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    close(f.listen_fd);
    loop_for(0.01);
    http_client_free(c);
    assert_int_equal(b->done_calls, 1);
}

static void test_client_errors(void **state) {
    (void)state;
    /* refused: a port that was just free */
    fake_up f = {0};
    fake_up_listen(&f);
    int dead_port = f.port;
    close(f.listen_fd);
    result_box b = {0};
    http_client *c = http_client_new(base, "127.0.0.1", dead_port, 1, 2000);
    http_client_request_opts o = {.method = "GET", .path = "/x"};
    http_client_callbacks cb = {rb_head, rb_chunk, rb_done};
    assert_int_equal(http_client_request(c, &o, &cb, &b, NULL), 0);
    assert_int_equal(b.done_calls, 0); /* never inside the call */
    loop_until(&b.done, 5, "refused");
    assert_int_equal(b.res.error, HTTP_CLIENT_ECONNECT);
    assert_int_equal(b.res.head_received, 0);
    assert_int_equal(b.heads, 0);
    assert_non_null(strstr(b.message, "could not connect"));
    /* bad arguments: error returned, no callback */
    http_client_request_opts bad = {.method = "BREW", .path = "/x"};
    assert_int_equal(http_client_request(c, &bad, &cb, &b, NULL), HTTP_CLIENT_EINVAL);
    bad.method = "GET";
    bad.path = "x";
    assert_int_equal(http_client_request(c, &bad, &cb, &b, NULL), HTTP_CLIENT_EINVAL);
    loop_for(0.02);
    assert_int_equal(b.done_calls, 1);
    http_client_free(c);

    result_box b0 = {0};
    run_fake(0, 2000, &b0);
    assert_int_equal(b0.res.error, HTTP_CLIENT_ENORESPONSE);
    assert_int_equal(b0.heads, 0);

    result_box b1 = {0};
    run_fake(1, 2000, &b1);
    assert_int_equal(b1.res.error, HTTP_CLIENT_EPARTIAL);
    assert_int_equal(b1.res.head_received, 1);
    assert_int_equal(b1.res.status, 200);
    assert_int_equal(b1.heads, 1);
    assert_true(b1.chunks >= 1);
    assert_int_equal(b1.res.body_bytes, 13);

    double t0 = mh_now_mono();
    result_box b2 = {0};
    run_fake(2, 300, &b2);
    assert_int_equal(b2.res.error, HTTP_CLIENT_ETIMEDOUT);
    assert_int_equal(b2.res.head_received, 0);
    double dt = mh_now_mono() - t0;
    assert_true(dt > 0.25 && dt < 3.0);

    result_box b3 = {0};
    run_fake(3, 300, &b3);
    assert_int_equal(b3.res.error, HTTP_CLIENT_ETIMEDOUT);
    assert_int_equal(b3.res.head_received, 1);
}

static void test_client_pool_and_buffered(void **state) {
    (void)state;
    atomic_int release = 1;
    up_ctx u = {.release = &release, .total = 3};
    u.timer = event_new(base, -1, EV_PERSIST, up_tick, &u);
    tserver up;
    tserver_start(&up, up_routes, MH_ARRAY_LEN(up_routes), &u, NULL, 0);
    http_client *c = http_client_new(base, "127.0.0.1", up.port, 2, 5000);

    /* Sequential requests reuse one kept-alive connection. */
    for (int i = 0; i < 5; i++) {
        result_box b = {0};
        http_header h[] = {{"X-Test", "yes"}, {"Content-Type", "application/json"}};
        http_client_request_opts o = {.method = "POST",
                                      .path = "/json",
                                      .headers = h,
                                      .nheaders = 2,
                                      .body = "{\"a\":1}",
                                      .body_len = 7};
        http_client_callbacks cb = {NULL, NULL, rb_done};
        assert_int_equal(http_client_request(c, &o, &cb, &b, NULL), 0);
        loop_until(&b.done, 5, "buffered request");
        assert_int_equal(b.res.error, 0);
        assert_int_equal(b.res.status, 201);
        json_t *v = json_loads(b.body, 0, NULL);
        assert_non_null(v);
        assert_int_equal(json_integer_value(json_object_get(v, "body_len")), 7);
        assert_string_equal(json_string_value(json_object_get(v, "x_test")), "yes");
        json_decref(v);
    }
    loop_for(0.02);
    assert_int_equal(http_client_connections(c), 1);
    assert_int_equal(http_server_connections(up.srv), 1);

    /* Ten at once with two connections: all succeed, never more than two connections. */
    result_box bs[10];
    memset(bs, 0, sizeof bs);
    for (int i = 0; i < 10; i++) {
        http_client_request_opts o = {.method = "GET", .path = "/json"};
        http_client_callbacks cb = {NULL, NULL, rb_done};
        assert_int_equal(http_client_request(c, &o, &cb, &bs[i], NULL), 0);
    }
    assert_int_equal(http_client_pending(c), 10);
    double end = mh_now_mono() + 10;
    for (;;) {
        int all = 1;
        for (int i = 0; i < 10; i++) all &= atomic_load(&bs[i].done);
        if (all || mh_now_mono() > end) break;
        assert_true(http_client_connections(c) <= 2);
        event_base_loop(base, EVLOOP_ONCE);
    }
    for (int i = 0; i < 10; i++) {
        assert_int_equal(bs[i].res.error, 0);
        assert_int_equal(bs[i].res.status, 201);
    }
    assert_int_equal(http_client_pending(c), 0);

    /* Cancel while queued and while running: one on_done each, with ECANCELED. */
    result_box q1 = {0}, q2 = {0}, q3 = {0};
    http_client_req *r1, *r2, *r3;
    http_client_request_opts so = {.method = "GET", .path = "/stream"};
    http_client_callbacks scb = {rb_head, rb_chunk, rb_done};
    atomic_store(&release, 0); /* the upstream stream stays open */
    assert_int_equal(http_client_request(c, &so, &scb, &q1, &r1), 0);
    assert_int_equal(http_client_request(c, &so, &scb, &q2, &r2), 0);
    assert_int_equal(http_client_request(c, &so, &scb, &q3, &r3), 0); /* queued: 2 conns */
    http_client_cancel(r3);
    loop_until(&q3.done, 5, "queued cancel");
    assert_int_equal(q3.res.error, HTTP_CLIENT_ECANCELED);
    end = mh_now_mono() + 5;
    while ((q1.heads == 0 || q2.heads == 0) && mh_now_mono() < end)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(q1.heads, 1);
    http_client_cancel(r1);
    http_client_cancel(r1); /* twice is harmless */
    loop_until(&q1.done, 5, "running cancel");
    assert_int_equal(q1.res.error, HTTP_CLIENT_ECANCELED);
    assert_int_equal(q1.done_calls, 1);
    /* r2 is still running: freeing the client cancels it */
    http_client_free(c);
    assert_int_equal(q2.done_calls, 1);
    assert_int_equal(q2.res.error, HTTP_CLIENT_ECANCELED);
    loop_for(0.1);
    tserver_stop(&up);
    event_free(u.timer);
}

/* Freeing the client from inside one of its callbacks: the other request still gets its
 * on_done (ECANCELED), from the loop, and nothing is used after being freed. */
typedef struct free_in_cb {
    http_client *c;
    result_box a;
} free_in_cb;

static void fic_done(http_client_req *cr, const http_client_result *res, void *arg) {
    free_in_cb *f = arg;
    rb_done(cr, res, &f->a);
    http_client_free(f->c);
    /* a new request on a client being freed is refused, not run */
    http_client_request_opts o = {.method = "GET", .path = "/json"};
    http_client_callbacks cb = {NULL, NULL, rb_done};
    assert_int_equal(http_client_request(f->c, &o, &cb, &f->a, NULL), HTTP_CLIENT_EINVAL);
}

static void test_client_free_inside_callback(void **state) {
    (void)state;
    atomic_int release = 0;
    up_ctx u = {.release = &release, .total = 3};
    u.timer = event_new(base, -1, EV_PERSIST, up_tick, &u);
    tserver up;
    tserver_start(&up, up_routes, MH_ARRAY_LEN(up_routes), &u, NULL, 0);
    free_in_cb f = {0};
    f.c = http_client_new(base, "127.0.0.1", up.port, 2, 5000);
    result_box b = {0};
    http_client_request_opts so = {.method = "GET", .path = "/stream"};
    http_client_callbacks scb = {rb_head, rb_chunk, rb_done};
    assert_int_equal(http_client_request(f.c, &so, &scb, &b, NULL), 0);
    double end = mh_now_mono() + 5;
    while (b.heads == 0 && mh_now_mono() < end) event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(b.heads, 1);
    http_client_request_opts jo = {.method = "GET", .path = "/json"};
    http_client_callbacks jcb = {NULL, NULL, fic_done};
    assert_int_equal(http_client_request(f.c, &jo, &jcb, &f, NULL), 0);
    loop_until(&f.a.done, 5, "request whose on_done frees the client");
    assert_int_equal(f.a.res.status, 201);
    loop_until(&b.done, 5, "the other request cancelled");
    assert_int_equal(b.res.error, HTTP_CLIENT_ECANCELED);
    assert_int_equal(b.done_calls, 1);
    loop_until(&u.closed, 5, "upstream sees the stream's connection closed");
    loop_for(0.05);
    tserver_stop(&up);
    event_free(u.timer);
}

/* Deadline: the whole request including queueing. */
static void test_client_deadline(void **state) {
    (void)state;
    fake_up f = {.mode = 2};
    fake_up_listen(&f);
    pthread_t th;
    pthread_create(&th, NULL, fake_up_run, &f);
    http_client *c = http_client_new(base, "127.0.0.1", f.port, 1, 10000);
    result_box b = {0};
    http_client_request_opts o = {.method = "GET", .path = "/x", .deadline_ms = 200};
    http_client_callbacks cb = {NULL, NULL, rb_done};
    double t0 = mh_now_mono();
    assert_int_equal(http_client_request(c, &o, &cb, &b, NULL), 0);
    loop_until(&b.done, 5, "deadline");
    double dt = mh_now_mono() - t0;
    assert_int_equal(b.res.error, HTTP_CLIENT_ETIMEDOUT);
    assert_true(dt > 0.15 && dt < 2.0);
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    close(f.listen_fd);
    http_client_free(c);
}

/* ==== Tests: server construction, pipelining behind a stream ==== */

static void h_any(http_req *r, void *arg) {
    (void)arg;
    http_reply(r, 200, "text/plain", http_req_method(r), strlen(http_req_method(r)));
}

static void test_server_config_errors(void **state) {
    (void)state;
    char err[256];
    http_route bad[] = {{"GET", "/a/{*}/b", h_any, 0}};
    http_server_config cfg = {.routes = bad, .nroutes = 1};
    assert_null(http_server_new(base, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "{*}"));
    http_route bad2[] = {{"GET", "no-slash", h_any, 0}};
    cfg.routes = bad2;
    assert_null(http_server_new(base, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "no-slash"));

    http_route any[] = {{"*", "/any", h_any, 0}};
    tserver t;
    tserver_start(&t, any, 1, NULL, NULL, 0);
    http_server_config same = {.port = t.port, .routes = any, .nroutes = 1};
    assert_null(http_server_new(base, &same, err, sizeof err));
    assert_non_null(strstr(err, "cannot listen"));
    creq c;
    creq_init(&c, "PATCH", t.port, "/any");
    creq_do(&c);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.resp, "PATCH");
    creq_free(&c);
    tserver_stop(&t);
}

/* A request pipelined behind a stream (whose connection reads again to notice EOF) is served
 * once the stream ends, from the same connection. */
typedef struct pipe_ctx {
    http_req *req;
    struct event *end_timer;
} pipe_ctx;

static void pipe_end(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    pipe_ctx *p = arg;
    http_stream_event(p->req, "[DONE]");
    http_stream_end(p->req);
    p->req = NULL;
}

static void h_pipe_stream(http_req *r, void *arg) {
    pipe_ctx *p = arg;
    p->req = r;
    http_stream_start_sse(r);
    http_stream_event(r, "{\"x\":1}");
    struct timeval tv = {0, 200000};
    event_add(p->end_timer, &tv);
}

static const http_route pipe_routes[] = {
    {"GET", "/stream", h_pipe_stream, 0},
    {"GET", "/v1/models", h_models, 0},
};

static void test_pipelined_behind_stream(void **state) {
    (void)state;
    pipe_ctx p = {0};
    p.end_timer = evtimer_new(base, pipe_end, &p);
    tserver t;
    tserver_start(&t, pipe_routes, MH_ARRAY_LEN(pipe_routes), &p, NULL, 0);
    raw_simple a = {.port = t.port,
                    .send = "GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                            "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                    .until = "\"m1\"}]}"};
    a.send_len = strlen(a.send);
    job j;
    job_start(&j, raw_simple_run, &a);
    job_finish(&j, 20, "pipelined behind a stream");
    const char *d = strstr(a.out, "data: [DONE]");
    const char *m = strstr(a.out, "\"object\":\"list\"");
    if (!d || !m || d > m) fail_msg("pipelined behind stream: %s", a.out);
    assert_int_equal(a.eof, 0);

    /* The same with the second request arriving while the stream is open (read re-enabled). */
    raw_simple b = {.port = t.port,
                    .send = "GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                    .send2 = "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                    .until = "\"m1\"}]}"};
    b.send_len = strlen(b.send);
    job_start(&j, raw_simple_run, &b);
    job_finish(&j, 20, "request sent during a stream");
    d = strstr(b.out, "data: [DONE]");
    m = strstr(b.out, "\"object\":\"list\"");
    if (!d || !m || d > m) fail_msg("sent during stream: %s", b.out);
    assert_int_equal(b.eof, 0);
    tserver_stop(&t);
    event_free(p.end_timer);
}

/* Server timeouts: an idle kept-alive connection is closed after timeout_s, but a stream that is
 * silent for longer than that (a long prefill) is not cut. */
static void test_server_timeouts(void **state) {
    (void)state;
    pipe_ctx p = {0};
    p.end_timer = evtimer_new(base, pipe_end, &p);
    char err[256];
    http_server_config cfg = {
        .routes = pipe_routes, .nroutes = MH_ARRAY_LEN(pipe_routes), .arg = &p, .timeout_s = 1};
    http_server *srv = http_server_new(base, &cfg, err, sizeof err);
    assert_non_null(srv);
    int port = http_server_port(srv);

    raw_simple idle = {.port = port, .send = "", .until = NULL};
    job j;
    double t0 = mh_now_mono();
    job_start(&j, raw_simple_run, &idle); /* sends nothing, reads until EOF */
    job_finish(&j, 10, "idle connection");
    double dt = mh_now_mono() - t0;
    assert_true(dt > 0.8 && dt < 3.0);
    assert_int_equal(idle.out[0], 0);

    /* The stream's end comes 2.5 s after its first event: longer than the 1 s timeout. */
    struct timeval later = {2, 500000};
    raw_simple st = {.port = port,
                     .send = "GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                     .until = "0\r\n\r\n"};
    st.send_len = strlen(st.send);
    job_start(&j, raw_simple_run, &st);
    double end = mh_now_mono() + 5;
    while (!p.req && mh_now_mono() < end) event_base_loop(base, EVLOOP_ONCE);
    assert_non_null(p.req);
    event_del(p.end_timer);
    event_add(p.end_timer, &later);
    job_finish(&j, 10, "slow stream");
    if (!strstr(st.out, "data: {\"x\":1}") || !strstr(st.out, "data: [DONE]"))
        fail_msg("slow stream cut: %s", st.out);
    http_server_free(srv);
    event_free(p.end_timer);
}

/* ==== Tests: http_fetch (libcurl, from a thread) ==== */

typedef struct fetch_job {
    int port;
    int rc_get, rc_post, rc_refused, rc_stream, rc_stream_stop;
    http_fetch_result get, post, refused, unauthorized;
    long stream_status;
    char stream_data[8192];
    size_t stream_len;
    int stop_after;
    int stream_calls;
    char err[256];
} fetch_job;

static int fetch_chunk(const char *d, size_t n, void *arg) {
    fetch_job *f = arg;
    f->stream_calls++;
    size_t k = MH_MIN(n, sizeof f->stream_data - f->stream_len - 1);
    memcpy(f->stream_data + f->stream_len, d, k);
    f->stream_len += k;
    f->stream_data[f->stream_len] = 0;
    return f->stop_after && strstr(f->stream_data, "{\"i\":3}") ? 1 : 0;
}

static void *fetch_run(void *arg) {
    fetch_job *f = arg;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/models", f->port);
    http_fetch_opts o = {.bearer = "k", .timeout_ms = 5000};
    f->rc_get = http_fetch(url, &o, &f->get);
    http_fetch_opts nob = {.timeout_ms = 5000};
    http_fetch(url, &nob, &f->unauthorized);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", f->port);
    http_fetch_opts po = {.bearer = "k", .body = "abc", .body_len = 3, .timeout_ms = 5000};
    f->rc_post = http_fetch(url, &po, &f->post);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/models", 1); /* nothing listens on 1 */
    f->rc_refused = http_fetch(url, &o, &f->refused);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sse", f->port);
    f->rc_stream = http_fetch_stream(url, "k", 2000, 5000, fetch_chunk, f, &f->stream_status,
                                     f->err, sizeof f->err);
    return NULL;
}

static void *fetch_stop_run(void *arg) {
    fetch_job *f = arg;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sse", f->port);
    f->stop_after = 1;
    f->rc_stream_stop = http_fetch_stream(url, "k", 2000, 5000, fetch_chunk, f, &f->stream_status,
                                          f->err, sizeof f->err);
    return NULL;
}

static const http_route fetch_routes[] = {
    {"GET", "/v1/models", h_models, 0},
    {"POST", "/echo", h_echo, 0},
    {"GET", "/sse", h_sse, 0},
};

static void test_fetch(void **state) {
    (void)state;
    sse_ctx ctx = {.n_events = 20};
    ctx.q = http_async_new(base, sse_drain, &ctx);
    tserver t;
    tserver_start(&t, fetch_routes, MH_ARRAY_LEN(fetch_routes), &ctx, "k", 0);
    fetch_job f = {.port = t.port};
    job j;
    job_start(&j, fetch_run, &f);
    job_finish(&j, 30, "fetch");
    pthread_join(ctx.producer, NULL);
    assert_int_equal(f.rc_get, 0);
    assert_int_equal(f.get.status, 200);
    assert_non_null(strstr(f.get.body, "\"m1\""));
    assert_string_equal(f.get.content_type, "application/json");
    assert_int_equal(f.unauthorized.status, 401);
    assert_int_equal(f.rc_post, 0);
    assert_int_equal(f.post.status, 200);
    assert_non_null(strstr(f.post.body, "len=3 "));
    assert_int_equal(f.rc_refused, -1);
    assert_int_equal(f.refused.status, 0);
    assert_true(f.refused.error[0] != 0);
    assert_int_equal(f.rc_stream, 0);
    assert_int_equal(f.stream_status, 200);
    assert_non_null(strstr(f.stream_data, "data: {\"i\":19}\n\ndata: [DONE]\n\n"));
    http_fetch_result_free(&f.get);
    http_fetch_result_free(&f.unauthorized);
    http_fetch_result_free(&f.post);
    http_fetch_result_free(&f.refused);

    /* Stopping a stream from the callback: returns 0, the server sees the client leave. */
    ctx.n_events = 1000000;
    atomic_store(&ctx.closed, 0);
    atomic_store(&ctx.stop, 0);
    atomic_store(&ctx.ended, 0);
    fetch_job g = {.port = t.port};
    job_start(&j, fetch_stop_run, &g);
    job_finish(&j, 30, "fetch stream stop");
    assert_int_equal(g.rc_stream_stop, 0);
    assert_non_null(strstr(g.stream_data, "{\"i\":3}"));
    loop_until(&ctx.ended, 10, "stream ended after the fetch stopped");
    pthread_join(ctx.producer, NULL);
    assert_int_equal(atomic_load(&ctx.closed), 1);
    tserver_stop(&t);
    http_async_free(ctx.q, NULL);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_and_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_curl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_keepalive_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_expect_and_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_from_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_many_producers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_during_thread_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_free_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_chunk_by_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_pool_and_buffered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_behind_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch, setup, teardown),
        cmocka_unit_test(test_token_equal),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
