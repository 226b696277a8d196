/* http_internal.h — structures shared by http_server.c, http_req.c and http_stream.c.
 * Private to src/http: nothing outside this folder may include it.
 */
#ifndef MH_HTTP_INTERNAL_H
#define MH_HTTP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "http/http_req.h"
#include "http/http_server.h"

#define HTTP_MAX_PARAMS 8

/* A route with its pattern split into segments. */
typedef struct route_entry {
    http_route route; /* method and pattern are our own copies */
    char **segs;      /* pattern segments; "{name}" kept with braces, (nsegs) */
    size_t nsegs;
    int wildcard; /* pattern ended in "{*}" (not counted in nsegs) */
} route_entry;

/* Guard state of a connection: where the next bytes from the client belong. */
enum guard_state {
    GUARD_HEAD,   /* a request head: held back until complete, then checked */
    GUARD_PASSED, /* head handed to libevent; body or pipelined data until the next dispatch */
    GUARD_OFF,    /* gave up (oversized head): libevent handles the rest of this connection */
};

/* Our state for one client connection, created with its bufferevent and freed by the
 * connection's close callback (libevent's evhttp_connection_free). */
typedef struct http_conn {
    http_server *srv;
    struct bufferevent *bev;
    struct evhttp_connection *evcon; /* known once attached (close callback installed) */
    struct event *attach_ev;         /* one-shot: attach right after accept */
    struct evbuffer_cb_entry *guard; /* our callback on the input buffer */
    struct evbuffer *stash;          /* head bytes held back from libevent */
    size_t scan_pos;                 /* stash offset of the first line not yet scanned */
    enum guard_state gstate;
    int in_guard;          /* our own buffer edits must not re-enter the guard */
    uint64_t discard_left; /* body bytes of a refused request still to throw away */
    size_t unparsed;       /* bytes of a rewritten head at the front of the input
                            * buffer that libevent has not consumed yet */
    int oversize_pending;  /* next dispatched request gets the 413 */
    uint64_t oversize_len;
    int oversize_close;   /* ... and the connection closes after it */
    int reject_status;    /* 400/501/505: the request line was refused, answer and close */
    char reject_what[64]; /* the refused method or version, for the message */
    int armed;            /* reading re-enabled to notice EOF (see http_req.h) */
    http_req *current;    /* request being handled, NULL between requests */
    struct http_conn *prev, *next;
} http_conn;

enum {
    REQ_STREAMING = 1u << 0, /* http_stream_start() called */
    REQ_GONE = 1u << 1,      /* client disconnected (or server freed) */
    REQ_DONE = 1u << 2,      /* terminal call made */
    REQ_IN_CB = 1u << 3,     /* inside the on_close callback */
    REQ_FREE_LATER = 1u << 4 /* terminal call made inside the callback: free after it */
};

struct http_req {
    http_server *srv; /* NULL once the server is freed */
    struct event_base *base;
    http_conn *conn;           /* NULL when gone or without a guard */
    struct evhttp_request *ev; /* NULL once libevent owns/freed it */
    int route_index;           /* -1: unmatched slot */
    unsigned flags;            /* REQ_* */
    int status;                /* status sent (or to be logged) */
    uint64_t bytes_out;
    double t_start; /* mh_now_mono() at dispatch */
    char method[12];
    char *raw_path; /* as received, without query */
    char *path;     /* decoded */
    char **segs;    /* decoded segments, (nsegs) */
    size_t nsegs;
    const char *param_names[HTTP_MAX_PARAMS]; /* point into the route's segments */
    const char *param_values[HTTP_MAX_PARAMS];
    size_t nparams;
    char *rest; /* value of "*" when the route is a wildcard */
    char *body; /* cached NUL-terminated body */
    size_t body_len;
    struct evkeyvalq query; /* parsed on first use */
    int query_state;        /* 0 not parsed, 1 parsed, -1 malformed */
    char peer[64];
    char *note; /* http_req_set_note() */
    http_close_fn on_close;
    void *on_close_arg;
    struct event *notify_ev;      /* runs on_close from the loop */
    struct evbuffer *chunk;       /* reused for stream writes */
    struct http_req *prev, *next; /* server's list of outstanding requests */
};

struct http_server {
    struct event_base *base;
    struct evhttp *http;
    int port;
    size_t max_body;
    size_t max_header;
    struct timeval timeout;
    char *api_key;
    int host_check;       /* the Host header is checked (loopback bind or allowed_hosts) */
    int any_host;         /* allowed_hosts has "*" */
    char *bound_host;     /* the address bound, lowercased */
    char **allowed_hosts; /* NULL-terminated, lowercased */
    char **cors_origins;  /* NULL-terminated */
    route_entry *routes;
    size_t nroutes;
    void *arg;
    http_route_stats *stats; /* nroutes + 1 */
    http_log_fn log_fn;
    void *log_arg;
    http_conn *conns;
    size_t nconns;
    http_req *reqs;
    int freeing;
};

/* http_req.c */
http_req *http_req_new_(http_server *srv, http_conn *conn, struct evhttp_request *ev);
/* Detach from the connection before handing the answer to libevent (libevent may free the
 * connection synchronously, and its close callback must not see this request). */
void http_req_release_conn_(http_req *r);
/* Bookkeeping after the terminal call: counters, log hook, free (or later, inside on_close). */
void http_req_finish_(http_req *r);
/* The client left (close callback or server shutdown): flag, count, schedule on_close. */
void http_req_mark_gone_(http_req *r);
const char *http_reason_phrase_(int status);

/* http_server.c */
void http_conn_arm_close_watch_(http_conn *c);
void http_conn_disarm_(http_conn *c);

#endif
