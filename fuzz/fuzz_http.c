/* fuzz_http.c — libFuzzer target for the HTTP front: raw bytes into the server's request path.
 *
 * LLVMFuzzerInitialize starts an http_server (src/http/http_server.c on evhttp) on an ephemeral
 * loopback port with serve's route table (same methods, patterns and flags), an API key and a
 * 4 KiB body cap. The generation routes run serve_validate_request() on the body and answer its
 * error, or 200 when the body would be queued; the others answer 200. No model is involved: this
 * exercises request parsing, routing, auth, body limits and the error envelopes.
 *
 * Each input is written to a fresh connection, the write side is shut, and the loop runs until
 * the server closes it (or 2 s pass). Whatever comes back must be an HTTP/1.0 or 1.1 response
 * with a status from 100 to 599. Violations abort(). FUZZ_HTTP_VERBOSE=1 prints the replies.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/http_loop.h"
#include "http/http_req.h"
#include "http/http_server.h"
#include "serve/serve.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

static struct event_base *base;
static http_server *server;
static int port;

static void route_generate(http_req *r, void *arg) {
    size_t len;
    const char *body = http_req_body(r, &len);
    http_error e;
    if (serve_validate_request((serve_request_kind)(intptr_t)arg, body, len, &e) < 0) {
        http_reply_error(r, &e);
        return;
    }
    http_reply(r, 200, "application/json", "{}", 2);
}

static void route_ok(http_req *r, void *arg) {
    (void)arg;
    (void)http_req_query(r, "x");
    (void)http_req_header(r, "X-Control-Token");
    http_reply(r, 200, "application/json", "{}", 2);
}

/* serve.c's table; handlers get the request kind through arg (one server, so one arg: the route
 * picks the kind by its pattern instead). */
static void route_chat(http_req *r, void *arg) {
    (void)arg;
    route_generate(r, (void *)(intptr_t)SERVE_REQ_CHAT);
}
static void route_completions(http_req *r, void *arg) {
    (void)arg;
    route_generate(r, (void *)(intptr_t)SERVE_REQ_COMPLETION);
}
static void route_embeddings(http_req *r, void *arg) {
    (void)arg;
    route_generate(r, (void *)(intptr_t)SERVE_REQ_EMBEDDING);
}

static const http_route routes[] = {
    {"POST", "/v1/chat/completions", route_chat, HTTP_ROUTE_STREAM},
    {"POST", "/v1/completions", route_completions, HTTP_ROUTE_STREAM},
    {"POST", "/v1/embeddings", route_embeddings, 0},
    {"GET", "/v1/models", route_ok, 0},
    {"GET", "/health", route_ok, HTTP_ROUTE_PUBLIC},
    {"POST", "/control/load", route_ok, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_LOOPBACK},
    {"POST", "/control/unload", route_ok, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_LOOPBACK},
    {"GET", "/control/status", route_ok, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_LOOPBACK},
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    signal(SIGPIPE, SIG_IGN);
    char err[256];
    base = http_loop_new(err, sizeof err);
    CHECK(base);
    http_server_config hc = {.host = "127.0.0.1",
                             .port = 0,
                             .max_body_bytes = 4096,
                             .max_header_bytes = 4096,
                             .timeout_s = 2,
                             .api_key = "k",
                             .routes = routes,
                             .nroutes = sizeof routes / sizeof routes[0]};
    server = http_server_new(base, &hc, err, sizeof err);
    if (!server) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        exit(1);
    }
    port = http_server_port(server);
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The first response in out[0..n) starts "HTTP/1.0 NNN " or "HTTP/1.1 NNN " with NNN in
 * 100..599 (bodies may hold anything). The server answers odd versions itself (505), so
 * libevent's echo of the request's digits ("HTTP/-1.1 501") is a failure. */
static void check_reply(const char *out, size_t n) {
    if (n == 0) return; /* closed without an answer */
    CHECK(n >= 13 && memcmp(out, "HTTP/1.", 7) == 0 && (out[7] == '0' || out[7] == '1') &&
          out[8] == ' ' && out[12] == ' ');
    int status = (out[9] - '0') * 100 + (out[10] - '0') * 10 + (out[11] - '0');
    CHECK(status >= 100 && status <= 599);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    CHECK(rc == 0 || errno == EINPROGRESS);
    static char out[1 << 16];
    size_t n_out = 0, sent = 0;
    int shut = 0;
    double t0 = now();
    for (;;) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (sent < size) {
            ssize_t k = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (k > 0)
                sent += (size_t)k;
            else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)
                sent = size;
        }
        if (sent == size && !shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        char buf[4096];
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k == 0) break;
        if (k > 0) {
            size_t take = (size_t)k < sizeof out - n_out ? (size_t)k : sizeof out - n_out;
            memcpy(out + n_out, buf, take);
            n_out += take;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN) {
            break; /* reset by the server */
        }
        if (now() - t0 > 2.5) break;
        if (k < 0) event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    close(fd);
    /* let the server see the close and free the connection */
    for (int i = 0; i < 4; i++) event_base_loop(base, EVLOOP_NONBLOCK);
    if (getenv("FUZZ_HTTP_VERBOSE")) fprintf(stderr, "%.*s\n", (int)n_out, out);
    check_reply(out, n_out);
    return 0;
}
