/* serve.c — `modelhub serve`: one model behind the OpenAI API, on the shared lifecycle core.
 *
 * Reads top to bottom: the local backend (load/unload on a loader thread), engine events handed
 * to the loop, request parsing, the three generation routes, models/health/control routes, the
 * cron, and serve_run() which wires it all on one event loop.
 *
 * A request ("call") goes: parse and validate the body (400s before anything is loaded) ->
 * lc_acquire (JIT load, shared by concurrent callers, bounded by --queue-timeout) -> format and
 * tokenize -> sched_submit (429 when the queue is full) -> engine events -> answer -> lc_release.
 */
#include "serve/serve.h"

#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "engine/chat.h"
#include "engine/grammar.h"
#include "engine/model.h"
#include "http/dialect.h"
#include "http/http_async.h"
#include "http/http_json.h"
#include "http/http_loop.h"
#include "http/http_req.h"
#include "http/http_server.h"
#include "http/http_stream.h"
#include "lifecycle/lifecycle.h"
#include "serve/scheduler.h"
#include "serve/tools.h"
#include "util/common.h"
#include "util/log.h"

#define CRON_INTERVAL_US 100000 /* 10 Hz */
#define KEEPALIVE_S      10.0
#define MAX_STOP_STRINGS 16
#define MAX_CHOICES      8 /* n: choices one request may ask for, each a job of its own */
#define MAX_EMBED_INPUTS 2048

typedef struct serve serve;
typedef struct call call;

/* ==== Messages from other threads to the loop ==== */

enum msg_kind { MSG_LOAD_DONE, MSG_UNLOAD_DONE, MSG_EVENT };

typedef struct msg {
    http_async_item link;
    enum msg_kind kind;
    call *c;        /* MSG_EVENT */
    int index;      /* MSG_EVENT: the choice the job computes */
    sched_event ev; /* MSG_EVENT: text/embedding/error point into the tail below */
    json_t *lp;     /* MSG_EVENT TEXT: its tokens in the chat shape (logprob_entries) */
    int status;     /* MSG_LOAD_DONE / MSG_UNLOAD_DONE */
    char error[1024];
    size_t extra_len;
    char extra[]; /* text or embedding bytes */
} msg;

struct serve {
    serve_config cfg;
    struct event_base *base;
    http_server *http;
    http_async *async;
    struct event *cron_ev, *sigterm_ev, *sigint_ev, *stdin_ev;
    lc_registry *reg;
    lc_model *lcm;
    char *name;      /* the model's API name (alias or file base name) */
    char *file_base; /* the file's base name, also accepted as the model name */

    /* local backend */
    threadpool *tp;
    model *m;
    sched *sch;
    chat_family family;
    pthread_t loader;
    int loader_running;
    model *loading_m; /* results handed over by the loader thread */
    sched *loading_sch;
    lc_done_fn op_done;
    void *op_arg;

    call *calls; /* every call in progress (keep-alive, shutdown) */
    int stopping;
    int exit_status;
};

struct call {
    serve *s;
    http_req *req; /* NULL once answered */
    enum { CALL_CHAT, CALL_COMPLETION, CALL_EMBEDDING } kind;
    call *prev, *next;
    char id[48];
    long created;
    double t_start;

    /* request */
    json_t *body;
    int stream, include_usage;
    sampler_params sp;
    int max_tokens;
    char *stop[MAX_STOP_STRINGS];
    int n_stop;
    char *prompt_text;    /* formatted prompt (chat) or the prompt (completion) */
    const json_t *inputs; /* embeddings: array of strings, borrowed from body */
    int base64;
    const char *user; /* "user" / "safety_identifier", borrowed from body: goes in the log line */
    int logprobs;     /* report token log-probabilities, with top_logprobs alternatives */
    int top_logprobs;
    tools_request tools; /* chat: the functions the model may call, and tool_choice */
    grammar *grammar;    /* response_format json_object / json_schema; NULL: free text */
    tools_style style;   /* how the model's template family writes them */
    int forced;          /* tool_choice required/named: the prompt opens the call */

    /* progress: one job per choice, all on the same prompt */
    lc_waiter *waiter;
    int acquired;
    int n_choices;
    int n_running; /* jobs submitted whose DONE has not arrived */
    struct choice {
        call *c; /* the engine events' argument: the call and which choice */
        int index;
        sched_job *job;
        mh_buf text;
        int finish;
        json_t *lp;         /* not streamed (or held back): token entries, chat shape */
        size_t text_offset; /* completions' logprobs.text_offset of the next token */
        size_t shown;       /* streamed with tools: bytes of text sent as content */
        int tool_calls;     /* the reply was read back as calls */
    } ch[MAX_CHOICES];
    int failed;  /* an error was answered; the other choices are being cancelled */
    int started; /* the stream's head and first chunk were sent */
    int n_prompt, n_gen, n_cached;
    int next_input; /* embeddings */
    json_t *emb_data;
    double last_write;
    dialect_out *dout; /* a dialect route (dialect.h) translates the output; NULL for OpenAI */
};

static serve *the_serve; /* for signal handlers registered through libevent only */

/* ==== Local backend ==== */

static void post(serve *s, msg *mm) {
    http_async_push(s->async, &mm->link);
}

/* The context of each slot: --ctx, else the model's training context, shrunk (to a multiple
 * of 256) so that every slot's KV cache fits the memory limit. Returns -1 with `err` set when
 * an explicit --ctx does not fit, or not even 256 positions do. */
static int plan_context(const serve_config *cfg, const model *m, int *n_ctx, char *err,
                        size_t errlen) {
    const model_hparams *hp = model_get_hparams(m);
    uint64_t per_pos = model_kv_bytes_per_pos(m, cfg->kv_type);
    uint64_t limit = cfg->kv_mem ? cfg->kv_mem : mh_physical_memory() / 4;
    if (limit == 0) limit = (uint64_t)4 << 30;
    uint64_t slots = (uint64_t)cfg->parallel;
    int want = cfg->n_ctx > 0 ? cfg->n_ctx : hp->n_ctx_train;
    uint64_t need = slots * (uint64_t)want * per_pos;
    if (need <= limit) {
        *n_ctx = want;
        return 0;
    }
    uint64_t fit = limit / (slots * per_pos) / 256 * 256;
    if (cfg->n_ctx > 0 || fit < 256) {
        snprintf(err, errlen,
                 "%d slot(s) of %d positions need %llu MiB of %s KV cache, over the limit of "
                 "%llu MiB (--kv-mem, or fewer/shorter slots)",
                 cfg->parallel, want, (unsigned long long)(need >> 20),
                 model_kv_type_name(cfg->kv_type), (unsigned long long)(limit >> 20));
        return -1;
    }
    log_info("context %d -> %llu positions per slot: %d slot(s) of %s KV cache within %llu MiB",
             want, (unsigned long long)fit, cfg->parallel, model_kv_type_name(cfg->kv_type),
             (unsigned long long)(limit >> 20));
    *n_ctx = (int)fit;
    return 0;
}

static void *loader_main(void *arg) {
    serve *s = arg;
    msg *mm = mh_xcalloc(1, sizeof *mm);
    mm->kind = MSG_LOAD_DONE;
    char err[512];
    model *m = NULL;
    if (model_load(s->cfg.model_path, &m, err, sizeof err) < 0) {
        snprintf(mm->error, sizeof mm->error, "%s: %s", s->cfg.model_path, err);
        mm->status = -1;
        post(s, mm);
        return NULL;
    }
    int n_ctx = 0;
    sched *sch = NULL;
    if (plan_context(&s->cfg, m, &n_ctx, err, sizeof err) == 0) {
        sched_config sc = {.n_slots = s->cfg.parallel,
                           .n_ctx = n_ctx,
                           .kv_type = s->cfg.kv_type,
                           .n_batch = s->cfg.n_batch,
                           .queue_size = s->cfg.queue_size,
                           .queue_timeout = s->cfg.queue_timeout,
                           .no_prompt_cache = s->cfg.no_prompt_cache};
        sch = sched_new(m, s->tp, &sc, err, sizeof err);
    }
    if (!sch) {
        snprintf(mm->error, sizeof mm->error, "%s", err);
        mm->status = -1;
        model_free(m);
        post(s, mm);
        return NULL;
    }
    s->loading_m = m;
    s->loading_sch = sch;
    post(s, mm);
    return NULL;
}

static void *unloader_main(void *arg) {
    serve *s = arg;
    sched_free(s->loading_sch);
    model_free(s->loading_m);
    s->loading_sch = NULL;
    s->loading_m = NULL;
    msg *mm = mh_xcalloc(1, sizeof *mm);
    mm->kind = MSG_UNLOAD_DONE;
    post(s, mm);
    return NULL;
}

static int local_load(void *impl, lc_done_fn done, void *arg) {
    serve *s = impl;
    if (s->loader_running) return -1;
    s->op_done = done;
    s->op_arg = arg;
    if (pthread_create(&s->loader, NULL, loader_main, s) != 0) return -1;
    s->loader_running = 1;
    log_info("loading %s", s->cfg.model_path);
    return 0;
}

static int local_unload(void *impl, lc_done_fn done, void *arg) {
    serve *s = impl;
    if (s->loader_running || !s->m) return -1;
    s->op_done = done;
    s->op_arg = arg;
    s->loading_m = s->m; /* handed to the unloader thread */
    s->loading_sch = s->sch;
    s->m = NULL;
    s->sch = NULL;
    if (pthread_create(&s->loader, NULL, unloader_main, s) != 0) {
        s->m = s->loading_m;
        s->sch = s->loading_sch;
        return -1;
    }
    s->loader_running = 1;
    return 0;
}

static void local_probe(void *impl, lc_probe *out) {
    serve *s = impl;
    out->pid = (int)getpid();
    out->port = http_server_port(s->http);
    if (s->m) out->memory_bytes = model_weight_bytes(s->m) + (s->sch ? sched_bytes(s->sch) : 0);
    if (s->sch) out->queued = sched_queued(s->sch);
}

static const lc_backend_ops local_ops = {
    .kind = "local",
    .owns_process = 0,
    .load = local_load,
    .unload = local_unload,
    .probe = local_probe,
};

static void on_load_done(serve *s, msg *mm) {
    pthread_join(s->loader, NULL);
    s->loader_running = 0;
    lc_done_fn done = s->op_done;
    s->op_done = NULL;
    if (mm->status == 0) {
        s->m = s->loading_m;
        s->sch = s->loading_sch;
        s->loading_m = NULL;
        s->loading_sch = NULL;
        const gguf *f = model_get_gguf(s->m);
        gguf_str tmpl = {0};
        char *text = NULL;
        if (gguf_get_str(f, "tokenizer.chat_template", &tmpl) == 0) {
            text = mh_xmalloc(tmpl.len + 1);
            memcpy(text, tmpl.ptr, tmpl.len);
            text[tmpl.len] = 0;
        }
        s->family = chat_detect(text);
        if (s->family == CHAT_UNKNOWN)
            log_warn("unrecognised chat template in %s: using the plain fallback format",
                     s->cfg.model_path);
        free(text);
        const model_hparams *hp = model_get_hparams(s->m);
        log_info("loaded %s (%s, %d layers, width %d, %d slot(s) of %d tokens, KV %s, chat "
                 "format %s)",
                 s->cfg.model_path, hp->arch, hp->n_layer, hp->n_embd, s->cfg.parallel,
                 sched_n_ctx(s->sch), model_kv_type_name(s->cfg.kv_type),
                 chat_family_name(s->family));
    } else {
        log_error("load failed: %s", mm->error);
    }
    if (done) done(s->op_arg, mm->status, mm->status ? mm->error : NULL);
}

static void on_unload_done(serve *s) {
    pthread_join(s->loader, NULL);
    s->loader_running = 0;
    log_info("unloaded %s", s->cfg.model_path);
    lc_done_fn done = s->op_done;
    s->op_done = NULL;
    if (done) done(s->op_arg, 0, NULL);
}

/* ==== Calls ==== */

static void call_free(call *c) {
    serve *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    for (int i = 0; i < c->n_stop; i++) free(c->stop[i]);
    free(c->prompt_text);
    grammar_free(c->grammar);
    json_decref(c->body);
    json_decref(c->emb_data);
    dialect_out_free(c->dout);
    for (int i = 0; i < MAX_CHOICES; i++) {
        mh_buf_free(&c->ch[i].text);
        json_decref(c->ch[i].lp);
    }
    free(c);
}

static void call_note(call *c) {
    if (c->req)
        http_req_set_note(c->req, "model=%s prompt_tokens=%d gen_tokens=%d%s%.64s", c->s->name,
                          c->n_prompt, c->n_gen, c->user ? " user=" : "", c->user ? c->user : "");
}

/* Answer with an error (terminal) and finish the call. */
static void call_fail(call *c, const http_error *e) {
    if (c->req && c->dout) {
        call_note(c);
        if (c->started) {
            mh_buf b = {0};
            dialect_out_error(c->dout, e, &b);
            http_stream_write(c->req, b.data, b.len);
            mh_buf_free(&b);
            http_stream_end(c->req);
        } else {
            if (e->status == 503) http_req_set_header(c->req, "Retry-After", "1");
            http_reply_json_take(c->req, e->status,
                                 dialect_error_body(dialect_out_api(c->dout), e));
        }
        c->req = NULL;
    }
    if (c->req) {
        call_note(c);
        if (c->started) { /* mid-stream: an error event, then [DONE] */
            json_t *env = http_error_envelope(e);
            http_stream_event_json(c->req, env);
            json_decref(env);
            http_stream_event(c->req, "[DONE]");
            http_stream_end(c->req);
        } else {
            if (e->status == 503) http_req_set_header(c->req, "Retry-After", "1");
            http_reply_error(c->req, e);
        }
        c->req = NULL;
    }
}

static void cancel_jobs(call *c) {
    for (int i = 0; i < c->n_choices; i++)
        if (c->ch[i].job) sched_cancel(c->ch[i].job);
}

static void call_finish(call *c) {
    for (int i = 0; i < c->n_choices; i++) {
        if (c->ch[i].job) sched_job_release(c->ch[i].job);
        c->ch[i].job = NULL;
    }
    if (c->acquired) lc_release(c->s->lcm, (uint64_t)c->n_gen);
    c->acquired = 0;
    if (c->req) { /* the client went away: terminal call only frees */
        if (c->started)
            http_stream_end(c->req);
        else
            http_reply_errorf(c->req, 499, NULL, NULL, NULL, "client closed the request");
        c->req = NULL;
    }
    call_free(c);
}

static call *call_new(serve *s, http_req *r, int kind) {
    call *c = mh_xcalloc(1, sizeof *c);
    c->s = s;
    c->req = r;
    c->kind = kind;
    c->n_choices = 1;
    for (int i = 0; i < MAX_CHOICES; i++) c->ch[i] = (struct choice){.c = c, .index = i};
    c->t_start = mh_now_mono();
    c->created = (long)mh_now_wall();
    static unsigned long counter;
    snprintf(c->id, sizeof c->id, "%s-%lx%04lx", kind == CALL_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long)c->created, ++counter & 0xffff);
    c->next = s->calls;
    if (s->calls) s->calls->prev = c;
    s->calls = c;
    return c;
}

/* ==== Responses ==== */

static const char *finish_name(int finish) {
    return finish == SCHED_FINISH_LENGTH ? "length" : "stop";
}

/* Calls are read out of this call's replies. */
static int reads_tools(const call *c) {
    return c->kind == CALL_CHAT && c->tools.choice != TOOLS_NONE;
}

static json_t *usage_json(const call *c) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", c->n_prompt, "completion_tokens",
                     c->n_gen, "total_tokens", c->n_prompt + c->n_gen, "prompt_tokens_details",
                     "cached_tokens", c->n_cached);
}

/* ==== Log-probabilities ====
 *
 * The engine's tokens arrive in the chat shape (choices[].logprobs.content entries: token,
 * logprob, bytes, top_logprobs); completions get them turned into the legacy shape (tokens,
 * token_logprobs, top_logprobs as {token: logprob} maps, text_offset). */

/* A token's text for "token": its bytes when they are valid UTF-8, else "bytes:\xNN..." as
 * OpenAI writes a token that is part of a character. */
static json_t *token_string(const char *piece, int n) {
    json_t *v = json_stringn(piece, (size_t)n);
    if (v) return v;
    mh_buf b = {0};
    mh_buf_append(&b, "bytes:", 6);
    for (int i = 0; i < n; i++) mh_buf_printf(&b, "\\x%02x", (unsigned char)piece[i]);
    v = json_stringn(b.data, b.len);
    mh_buf_free(&b);
    return v;
}

/* {token, logprob, bytes} of one token; the caller adds top_logprobs. */
static json_t *token_entry(const tokenizer *tok, sampler_logprob t) {
    char piece[512];
    int n = tokenizer_piece(tok, t.id, 1, piece, sizeof piece);
    if (n < 0 || n > (int)sizeof piece) n = 0;
    json_t *bytes = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)piece[i]));
    return json_pack("{s:o, s:f, s:o}", "token", token_string(piece, n), "logprob",
                     (double)t.logprob, "bytes", bytes);
}

/* Engine thread: the chat-shaped entries of a TEXT event's tokens. */
static json_t *logprob_entries(const tokenizer *tok, const sampler_token_lp *lp, int n) {
    json_t *out = json_array();
    for (int i = 0; i < n; i++) {
        json_t *e = token_entry(tok, lp[i].chosen);
        json_t *top = json_array();
        for (int k = 0; k < lp[i].n_top; k++)
            json_array_append_new(top, token_entry(tok, lp[i].top[k]));
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(out, e);
    }
    return out;
}

/* The logprobs object of a choice (or chunk) holding `entries` (borrowed): chat's {content,
 * refusal}, or the completions shape with text offsets counted from *offset. */
static json_t *logprobs_json(const call *c, const json_t *entries, size_t *offset) {
    if (c->kind == CALL_CHAT) return json_pack("{s:O, s:n}", "content", entries, "refusal");
    json_t *tokens = json_array(), *values = json_array(), *tops = json_array(),
           *offsets = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(entries, i, e) {
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(values, json_object_get(e, "logprob"));
        json_t *map = json_object();
        size_t k;
        const json_t *t;
        json_array_foreach(json_object_get(e, "top_logprobs"), k, t) json_object_set(
            map, json_string_value(json_object_get(t, "token")), json_object_get(t, "logprob"));
        json_array_append_new(tops, map);
        json_array_append_new(offsets, json_integer((json_int_t)*offset));
        *offset += json_array_size(json_object_get(e, "bytes"));
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", values,
                     "top_logprobs", tops, "text_offset", offsets);
}

/* One streamed chunk of choice `index`: delta text (NULL = none), role (first chunk), finish
 * (NULL = null), logprobs (NULL = null; taken). */
static json_t *chunk_json(const call *c, int index, const char *text, size_t len, int with_role,
                          const char *finish, json_t *logprobs) {
    json_t *choice;
    if (c->kind == CALL_CHAT) {
        json_t *delta = json_object();
        if (with_role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text) json_object_set_new(delta, "content", json_stringn(text, len));
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", index, "delta", delta, "logprobs",
                           logprobs ? logprobs : json_null(), "finish_reason",
                           finish ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", index, "text",
                           text ? json_stringn(text, len) : json_string(""), "logprobs",
                           logprobs ? logprobs : json_null(), "finish_reason",
                           finish ? json_string(finish) : json_null());
    }
    return json_pack("{s:s, s:s, s:i, s:s, s:[o]}", "id", c->id, "object",
                     c->kind == CALL_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (int)c->created, "model", c->s->name, "choices", choice);
}

static void stream_chunk(call *c, json_t *chunk) {
    if (c->req && !http_req_gone(c->req) && c->dout) {
        mh_buf b = {0};
        dialect_out_chunk(c->dout, chunk, &b);
        if (b.len) http_stream_write(c->req, b.data, b.len);
        mh_buf_free(&b);
    } else if (c->req && !http_req_gone(c->req)) {
        http_stream_event_json(c->req, chunk);
    }
    json_decref(chunk);
    c->last_write = mh_now_mono();
}

/* Terminal: the whole answer `body` (stolen), in the route's dialect. */
static void call_reply(call *c, json_t *body) {
    if (c->dout) {
        json_t *translated = dialect_out_response(c->dout, body);
        json_decref(body);
        body = translated;
    }
    http_reply_json_take(c->req, 200, body);
    c->req = NULL;
}

static void call_started(call *c) {
    if (!c->stream || c->started || !c->req || http_req_gone(c->req)) return;
    if (c->dout ? http_stream_start(c->req, 200, dialect_out_stream_type(c->dout)) < 0
                : http_stream_start_sse(c->req) < 0)
        return;
    c->started = 1;
    c->last_write = mh_now_mono();
    if (c->kind == CALL_CHAT) /* the role, once per choice */
        for (int i = 0; i < c->n_choices; i++)
            stream_chunk(c, chunk_json(c, i, "", 0, 1, NULL, NULL));
}

/* Text of choice `index`, with its tokens' logprob entries (NULL when not asked; borrowed). */
static void call_text(call *c, int index, const char *text, size_t len, json_t *lp) {
    struct choice *ch = &c->ch[index];
    if (c->stream && reads_tools(c)) { /* hold back what may be a call */
        mh_buf_append(&ch->text, text, len);
        if (lp) {
            if (!ch->lp) ch->lp = json_array();
            json_array_extend(ch->lp, lp);
        }
        int in_call = 0;
        size_t safe =
            c->forced ? 0 : tools_stream_safe(c->style, ch->text.data, ch->text.len, &in_call);
        if (safe <= ch->shown) return;
        if (!c->started) call_started(c);
        json_t *held = ch->lp;
        ch->lp = NULL;
        if (c->started)
            stream_chunk(c,
                         chunk_json(c, index, ch->text.data + ch->shown, safe - ch->shown, 0, NULL,
                                    held ? logprobs_json(c, held, &ch->text_offset) : NULL));
        json_decref(held);
        ch->shown = safe;
        return;
    }
    if (c->stream) {
        if (!c->started) call_started(c);
        if (c->started)
            stream_chunk(c, chunk_json(c, index, text, len, 0, NULL,
                                       lp ? logprobs_json(c, lp, &ch->text_offset) : NULL));
    } else {
        if (c->dout) dialect_out_first_text(c->dout); /* splits Ollama's durations */
        mh_buf_append(&ch->text, text, len);
        if (lp) {
            if (!ch->lp) ch->lp = json_array();
            json_array_extend(ch->lp, lp);
        }
    }
}

/* The reply of a choice read for calls: its content and calls (NULL when none). */
static json_t *read_calls(call *c, int index, mh_buf *content) {
    struct choice *ch = &c->ch[index];
    char prefix[64];
    snprintf(prefix, sizeof prefix, "call_%s_%d", c->id, index);
    json_t *calls = NULL;
    tools_parse_output(&c->tools, c->style, c->forced, ch->text.data ? ch->text.data : "",
                       ch->text.len, prefix, content, &calls);
    ch->tool_calls = calls != NULL;
    return calls;
}

/* Streamed with tools: the content held back, then the calls, as delta.tool_calls. */
static void stream_held(call *c, int index) {
    struct choice *ch = &c->ch[index];
    mh_buf content = {0};
    json_t *calls = read_calls(c, index, &content);
    const char *rest = calls ? content.data : ch->text.data;
    size_t rest_len = calls ? content.len : ch->text.len;
    json_t *held = ch->lp;
    ch->lp = NULL;
    if (rest_len > ch->shown || (held && !calls)) {
        stream_chunk(c, chunk_json(c, index, rest + ch->shown,
                                   rest_len > ch->shown ? rest_len - ch->shown : 0, 0, NULL,
                                   held ? logprobs_json(c, held, &ch->text_offset) : NULL));
        json_decref(held);
        held = NULL;
    }
    size_t k;
    json_t *call;
    json_array_foreach(calls, k, call) {
        json_t *chunk =
            chunk_json(c, index, NULL, 0, 0, NULL,
                       held && k == 0 ? logprobs_json(c, held, &ch->text_offset) : NULL);
        json_t *delta =
            json_object_get(json_array_get(json_object_get(chunk, "choices"), 0), "delta");
        json_object_set_new(call, "index", json_integer((json_int_t)k));
        json_object_set_new(delta, "tool_calls", json_pack("[O]", call));
        stream_chunk(c, chunk);
    }
    json_decref(held);
    json_decref(calls);
    mh_buf_free(&content);
}

/* Choice `index` ended: its finish chunk when streaming. */
static void choice_complete(call *c, int index, int finish) {
    c->ch[index].finish = finish;
    if (!c->stream || !c->req || http_req_gone(c->req)) return;
    if (!c->started) call_started(c);
    if (!c->started) return;
    if (reads_tools(c)) stream_held(c, index);
    stream_chunk(c, chunk_json(c, index, NULL, 0, 0,
                               c->ch[index].tool_calls ? "tool_calls" : finish_name(finish), NULL));
}

/* Every choice ended: the usage and [DONE], or the whole answer. */
static void call_complete(call *c) {
    if (!c->req || http_req_gone(c->req)) return;
    call_note(c);
    if (c->stream) {
        if (!c->started) call_started(c);
        if (c->include_usage) {
            json_t *u = json_pack(
                "{s:s, s:s, s:i, s:s, s:[], s:o}", "id", c->id, "object",
                c->kind == CALL_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                (int)c->created, "model", c->s->name, "choices", "usage", usage_json(c));
            stream_chunk(c, u);
        }
        if (c->dout) {
            mh_buf b = {0};
            dialect_out_done(c->dout, &b);
            http_stream_write(c->req, b.data, b.len);
            mh_buf_free(&b);
        } else {
            http_stream_event(c->req, "[DONE]");
        }
        http_stream_end(c->req);
        c->req = NULL;
        return;
    }
    json_t *choices = json_array();
    for (int i = 0; i < c->n_choices; i++) {
        const mh_buf *t = &c->ch[i].text;
        mh_buf read = {0};
        json_t *calls = reads_tools(c) ? read_calls(c, i, &read) : NULL;
        if (reads_tools(c)) t = &read;
        json_t *content =
            calls && t->len == 0 ? json_null() : json_stringn(t->data ? t->data : "", t->len);
        mh_buf_free(&read);
        const char *finish = calls ? "tool_calls" : finish_name(c->ch[i].finish);
        json_t *lp = json_null();
        if (c->logprobs) {
            json_t *entries = c->ch[i].lp ? json_incref(c->ch[i].lp) : json_array();
            size_t offset = 0;
            lp = logprobs_json(c, entries, &offset);
            json_decref(entries);
        }
        json_t *choice = c->kind == CALL_CHAT
                             ? json_pack("{s:i, s:{s:s, s:o, s:n}, s:o, s:s}", "index", i,
                                         "message", "role", "assistant", "content", content,
                                         "refusal", "logprobs", lp, "finish_reason", finish)
                             : json_pack("{s:i, s:o, s:o, s:s}", "index", i, "text", content,
                                         "logprobs", lp, "finish_reason", finish);
        if (calls) json_object_set_new(json_object_get(choice, "message"), "tool_calls", calls);
        json_array_append_new(choices, choice);
    }
    json_t *body =
        json_pack("{s:s, s:s, s:i, s:s, s:o, s:o}", "id", c->id, "object",
                  c->kind == CALL_CHAT ? "chat.completion" : "text_completion", "created",
                  (int)c->created, "model", c->s->name, "choices", choices, "usage", usage_json(c));
    call_reply(c, body);
}

/* ==== Embeddings ==== */

static void embed_next(call *c);

static void base64_encode(const unsigned char *in, size_t n, mh_buf *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n) v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        char q[4] = {tbl[(v >> 18) & 63], tbl[(v >> 12) & 63], i + 1 < n ? tbl[(v >> 6) & 63] : '=',
                     i + 2 < n ? tbl[v & 63] : '='};
        mh_buf_append(out, q, 4);
    }
}

static void embed_store(call *c, const float *v, int n) {
    json_t *vec;
    if (c->base64) {
        mh_buf b = {0};
        base64_encode((const unsigned char *)v, (size_t)n * sizeof(float), &b);
        vec = json_stringn(b.data, b.len);
        mh_buf_free(&b);
    } else {
        vec = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(vec, json_real(v[i]));
    }
    json_array_append_new(c->emb_data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index",
                                                 c->next_input - 1, "embedding", vec));
}

static void embed_reply(call *c) {
    if (!c->req || http_req_gone(c->req)) return;
    call_note(c);
    json_t *body =
        json_pack("{s:s, s:O, s:s, s:{s:i, s:i}}", "object", "list", "data", c->emb_data, "model",
                  c->s->name, "usage", "prompt_tokens", c->n_prompt, "total_tokens", c->n_prompt);
    call_reply(c, body);
}

/* ==== Engine events ==== */

static void on_engine_event(void *arg, const sched_event *ev) {
    struct choice *ch = arg;
    call *c = ch->c;
    size_t extra = 0;
    if (ev->type == SCHED_EV_TEXT) extra = ev->len;
    if (ev->type == SCHED_EV_DONE && ev->embedding) extra = (size_t)ev->n_embd * sizeof(float);
    msg *mm = mh_xcalloc(1, sizeof *mm + extra + 1);
    mm->kind = MSG_EVENT;
    mm->c = c;
    mm->index = ch->index;
    mm->ev = *ev;
    mm->extra_len = extra;
    if (ev->type == SCHED_EV_TEXT) memcpy(mm->extra, ev->text, ev->len);
    if (ev->type == SCHED_EV_DONE && ev->embedding) memcpy(mm->extra, ev->embedding, extra);
    if (ev->error) snprintf(mm->error, sizeof mm->error, "%s", ev->error);
    if (ev->type == SCHED_EV_TEXT && c->logprobs)
        mm->lp = logprob_entries(model_get_tokenizer(c->s->m), ev->lp, ev->n_lp);
    post(c->s, mm);
}

static void on_call_event(call *c, msg *mm) {
    const sched_event *ev = &mm->ev;
    if (ev->type == SCHED_EV_STARTED) {
        call_started(c);
        return;
    }
    int index = mm->index;
    if (ev->type == SCHED_EV_TEXT) {
        if (!c->failed) call_text(c, index, mm->extra, mm->extra_len, mm->lp);
        return;
    }
    /* DONE. The choices share one prompt: its tokens count once. */
    if (index == 0) {
        c->n_prompt += ev->n_prompt;
        c->n_cached += ev->n_cached;
    }
    c->n_gen += ev->n_gen;
    sched_job_release(c->ch[index].job);
    c->ch[index].job = NULL;
    c->n_running--;
    if (c->failed) {
        if (c->n_running == 0) call_finish(c);
        return;
    }
    http_error e;
    switch (ev->finish) {
    case SCHED_FINISH_STOP:
    case SCHED_FINISH_LENGTH:
        if (c->kind != CALL_EMBEDDING) {
            choice_complete(c, index, ev->finish);
            if (c->n_running > 0) return;
            call_complete(c);
        } else {
            embed_store(c, (const float *)(void *)mm->extra, (int)(mm->extra_len / sizeof(float)));
            if (c->next_input < (int)json_array_size(c->inputs) && c->req &&
                !http_req_gone(c->req)) {
                embed_next(c);
                return;
            }
            embed_reply(c);
        }
        break;
    case SCHED_FINISH_TIMEOUT:
        http_error_set(&e, 503, NULL, NULL, "queue_timeout",
                       "timed out after %.1f s waiting for a free slot", c->s->cfg.queue_timeout);
        call_fail(c, &e);
        break;
    case SCHED_FINISH_ERROR:
        http_error_set(&e, 500, NULL, NULL, NULL, "%s", mm->error[0] ? mm->error : "engine error");
        call_fail(c, &e);
        break;
    default: break; /* cancelled: the client is gone */
    }
    if (c->n_running > 0) { /* answered (or gone): the other choices stop, then the call ends */
        c->failed = 1;
        cancel_jobs(c);
        return;
    }
    call_finish(c);
}

/* ==== Starting the work once the model is ready ==== */

static int tokenize_prompt(call *c, const char *text, int32_t **out, int *n_out, http_error *e) {
    const tokenizer *tok = model_get_tokenizer(c->s->m);
    size_t len = strlen(text);
    int cap = (int)MH_MIN(len + 16, (size_t)1 << 24);
    int32_t *ids = mh_xmalloc((size_t)cap * sizeof *ids);
    int n = tokenizer_encode(tok, text, len, 1, c->kind == CALL_CHAT, ids, cap);
    if (n > cap) {
        ids = mh_xrealloc(ids, (size_t)n * sizeof *ids);
        n = tokenizer_encode(tok, text, len, 1, c->kind == CALL_CHAT, ids, n);
    }
    if (n <= 0) {
        free(ids);
        return http_error_set(e, 400, NULL, c->kind == CALL_CHAT ? "messages" : "prompt", NULL,
                              "the prompt is empty");
    }
    *out = ids;
    *n_out = n;
    return 0;
}

static int submit(call *c, const int32_t *ids, int n, int embedding, http_error *e) {
    serve *s = c->s;
    int n_ctx = sched_n_ctx(s->sch);
    const char *param = c->kind == CALL_CHAT        ? "messages"
                        : c->kind == CALL_EMBEDDING ? "input"
                                                    : "prompt";
    if (embedding ? n > n_ctx : n >= n_ctx)
        return http_error_set(e, 400, NULL, param, "context_length_exceeded",
                              "the prompt has %d tokens but the context holds %d", n, n_ctx);
    int n_vocab = model_get_hparams(s->m)->n_vocab;
    for (int i = 0; i < c->sp.n_bias; i++)
        if (c->sp.bias[i].id >= n_vocab)
            return http_error_set(e, 400, NULL, "logit_bias", NULL,
                                  "logit_bias names token %d; the vocabulary has %d tokens",
                                  (int)c->sp.bias[i].id, n_vocab);
    int n_jobs = embedding ? 1 : c->n_choices;
    for (int i = 0; i < n_jobs; i++) {
        sched_job_params p = {.prompt = ids,
                              .n_prompt = n,
                              .sampling = c->sp,
                              .max_tokens = c->max_tokens,
                              .stop = (const char *const *)c->stop,
                              .n_stop = c->n_stop,
                              .embedding = embedding,
                              .logprobs = c->logprobs,
                              .top_logprobs = c->top_logprobs,
                              .grammar = c->grammar,
                              .on_event = on_engine_event,
                              .arg = &c->ch[i]};
        p.sampling.seed += (uint64_t)i; /* each choice its own draws */
        int rc = sched_submit(s->sch, &p, &c->ch[i].job);
        if (rc < 0) {
            if (rc == SCHED_ERR_QUEUE_FULL)
                http_error_set(e, 429, NULL, NULL, "queue_full",
                               "the request queue is full (%d waiting); try again later",
                               s->cfg.queue_size);
            else
                http_error_set(e, 400, NULL, param, NULL, "invalid prompt");
            if (i == 0) return -1;
            /* some choices are queued already: answer now, end the call when they are gone */
            call_fail(c, e);
            c->failed = 1;
            cancel_jobs(c);
            return 1;
        }
        c->n_running++;
    }
    return 0;
}

static void embed_next(call *c) {
    const char *text = json_string_value(json_array_get(c->inputs, (size_t)c->next_input++));
    int32_t *ids = NULL;
    int n = 0;
    http_error e;
    if (tokenize_prompt(c, text, &ids, &n, &e) < 0 || submit(c, ids, n, 1, &e) < 0) {
        free(ids);
        call_fail(c, &e);
        call_finish(c);
        return;
    }
    free(ids);
}

static void on_client_gone(http_req *r, void *arg) {
    call *c = arg;
    (void)r;
    if (c->n_running > 0) {
        cancel_jobs(c); /* DONE follows and finishes the call */
        return;
    }
    if (c->waiter) { /* still waiting for the model: nothing else will finish it */
        lc_acquire_cancel(c->waiter);
        c->waiter = NULL;
        call_finish(c);
    }
}

static void on_acquired(void *arg, int status, const char *message) {
    call *c = arg;
    serve *s = c->s;
    c->waiter = NULL;
    http_error e;
    if (status != 0) {
        http_error_set(&e, lc_status_http(status), NULL, NULL,
                       status == LC_ERR_TIMEOUT ? "model_load_timeout" : "model_unavailable",
                       "model '%s' is not available: %s", s->name, message);
        call_fail(c, &e);
        call_finish(c);
        return;
    }
    c->acquired = 1;
    if (!c->req || http_req_gone(c->req)) {
        call_finish(c);
        return;
    }
    if (c->kind == CALL_EMBEDDING) {
        c->emb_data = json_array();
        embed_next(c);
        return;
    }
    if (c->kind == CALL_CHAT) {
        /* format the conversation now that the model (and its template) is known */
        c->style = tools_style_for(s->family);
        tools_prompt tp;
        tools_build_messages(json_object_get(c->body, "messages"), &c->tools, c->style, &tp);
        char err[256];
        int rc = chat_format(s->family, tp.msgs, tp.n, 1, &c->prompt_text, NULL, err, sizeof err);
        tools_prompt_free(&tp);
        if (rc == 0 && c->forced) { /* the reply is a call: open it, constrain the rest */
            const char *open = tools_forced_prefix(c->style);
            size_t len = strlen(c->prompt_text);
            c->prompt_text = mh_xrealloc(c->prompt_text, len + strlen(open) + 1);
            memcpy(c->prompt_text + len, open, strlen(open) + 1);
            json_t *schema = tools_call_schema(&c->tools, c->style);
            rc = grammar_from_schema(schema, &c->grammar, err, sizeof err);
            json_decref(schema);
        }
        if (rc < 0) {
            http_error_set(&e, 400, NULL, "messages", NULL, "%s", err);
            call_fail(c, &e);
            call_finish(c);
            return;
        }
        log_debug("chat prompt (%s format): %s", chat_family_name(s->family), c->prompt_text);
        for (const char *const *st = chat_stop_strings(s->family); *st; st++)
            if (c->n_stop < MAX_STOP_STRINGS) c->stop[c->n_stop++] = mh_xstrdup(*st);
    }
    int32_t *ids = NULL;
    int n = 0;
    if (tokenize_prompt(c, c->prompt_text, &ids, &n, &e) < 0 || submit(c, ids, n, 0, &e) < 0) {
        free(ids);
        call_fail(c, &e);
        call_finish(c);
        return;
    }
    free(ids);
}

/* ==== Parsing requests ==== */

/* The request's "model" must name this model (alias or file name) when present. A hub worker
 * takes whatever the hub routed to it (the hub resolved names and aliases already). */
static int check_model(serve *s, const json_t *body, http_error *e) {
    const char *name = NULL;
    if (http_json_get_string(body, "model", 0, 4096, NULL, &name, e) < 0) return -1;
    if (name && !s->cfg.worker && !lc_find(s->reg, name, 1))
        return http_error_set(e, 404, NULL, "model", "model_not_found",
                              "the model '%s' does not exist", name);
    return 0;
}

/* ==== Request fields ====
 *
 * Every field each route accepts. A field not listed is answered 400, as OpenAI answers an
 * unrecognized argument, so none is ever silently ignored. Fields marked APPLIED are parsed and
 * used by the code below; the others are checked here and accepted only with the value the
 * server honours (null counts as absent, as it does for OpenAI). */

enum { F_CHAT = 1 << CALL_CHAT, F_COMP = 1 << CALL_COMPLETION, F_EMB = 1 << CALL_EMBEDDING };
#define F_GEN (F_CHAT | F_COMP)
#define F_ALL (F_GEN | F_EMB)

enum field_rule {
    FIELD_APPLIED,     /* parsed and applied by the route's own code */
    FIELD_USER,        /* an end-user id: recorded in the request's log line */
    FIELD_FALSE,       /* a boolean only false is honoured for */
    FIELD_TIER,        /* service_tier: we have one tier, "auto" and "default" name it */
    FIELD_TEXT_ONLY,   /* modalities: only ["text"] */
    FIELD_BEST_OF,     /* best_of: only equal to n (no server-side ranking) */
    FIELD_EMPTY,       /* a string honoured only when empty (suffix) */
    FIELD_UNSUPPORTED, /* not implemented: any non-null value is a 400 with the reason */
};

static const struct request_field {
    const char *name;
    unsigned kinds;
    enum field_rule rule;
    const char *why; /* FIELD_UNSUPPORTED and the checked rules: what the 400 says */
} request_fields[] = {
    {"model", F_ALL, FIELD_APPLIED, NULL},
    {"messages", F_CHAT, FIELD_APPLIED, NULL},
    {"prompt", F_COMP, FIELD_APPLIED, NULL},
    {"echo", F_COMP, FIELD_APPLIED, NULL},
    {"input", F_EMB, FIELD_APPLIED, NULL},
    {"encoding_format", F_EMB, FIELD_APPLIED, NULL},
    {"stream", F_GEN, FIELD_APPLIED, NULL},
    {"stream_options", F_GEN, FIELD_APPLIED, NULL},
    {"temperature", F_GEN, FIELD_APPLIED, NULL},
    {"top_p", F_GEN, FIELD_APPLIED, NULL},
    {"top_k", F_GEN, FIELD_APPLIED, NULL},
    {"min_p", F_GEN, FIELD_APPLIED, NULL},
    {"repeat_penalty", F_GEN, FIELD_APPLIED, NULL},
    {"presence_penalty", F_GEN, FIELD_APPLIED, NULL},
    {"frequency_penalty", F_GEN, FIELD_APPLIED, NULL},
    {"logit_bias", F_GEN, FIELD_APPLIED, NULL},
    {"response_format", F_GEN, FIELD_APPLIED, NULL},
    {"seed", F_GEN, FIELD_APPLIED, NULL},
    {"max_tokens", F_GEN, FIELD_APPLIED, NULL},
    {"max_completion_tokens", F_GEN, FIELD_APPLIED, NULL},
    {"n", F_GEN, FIELD_APPLIED, NULL},
    {"stop", F_GEN, FIELD_APPLIED, NULL},
    {"logprobs", F_GEN, FIELD_APPLIED, NULL},
    {"top_logprobs", F_CHAT, FIELD_APPLIED, NULL},
    {"tools", F_CHAT, FIELD_APPLIED, NULL},
    {"tool_choice", F_CHAT, FIELD_APPLIED, NULL},
    {"parallel_tool_calls", F_CHAT, FIELD_APPLIED, NULL},
    {"user", F_ALL, FIELD_USER, NULL},
    {"safety_identifier", F_CHAT, FIELD_USER, NULL},
    {"store", F_CHAT, FIELD_FALSE, "stored completions are not supported"},
    {"service_tier", F_CHAT, FIELD_TIER, "only the 'auto' and 'default' tiers exist here"},
    {"modalities", F_CHAT, FIELD_TEXT_ONLY, "only [\"text\"] output is supported"},
    {"best_of", F_COMP, FIELD_BEST_OF, "best_of must equal n (candidates are not ranked)"},
    {"suffix", F_COMP, FIELD_EMPTY, "suffix (insertion) is not supported"},
    {"functions", F_CHAT, FIELD_UNSUPPORTED, "functions (deprecated) are not supported"},
    {"function_call", F_CHAT, FIELD_UNSUPPORTED, "function_call (deprecated) is not supported"},
    {"metadata", F_CHAT, FIELD_UNSUPPORTED, "metadata is for stored completions (not supported)"},
    {"audio", F_CHAT, FIELD_UNSUPPORTED, "audio output is not supported"},
    {"prediction", F_CHAT, FIELD_UNSUPPORTED, "predicted outputs are not supported"},
    {"reasoning_effort", F_CHAT, FIELD_UNSUPPORTED, "reasoning_effort is not supported"},
    {"verbosity", F_CHAT, FIELD_UNSUPPORTED, "verbosity is not supported"},
    {"web_search_options", F_CHAT, FIELD_UNSUPPORTED, "web search is not supported"},
    {"prompt_cache_key", F_CHAT, FIELD_UNSUPPORTED, "prompt_cache_key is not supported"},
    {"dimensions", F_EMB, FIELD_UNSUPPORTED, "dimensions is not supported (fixed width)"},
};

static int field_error(http_error *e, const char *name, const char *why) {
    return http_error_set(e, 400, NULL, name, NULL, "'%s': %s", name, why);
}

/* Checks every field of `body` against request_fields for a call of `kind`. */
static int check_fields(int kind, call *c, const json_t *body, http_error *e) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        const struct request_field *f = NULL;
        for (size_t i = 0; i < sizeof request_fields / sizeof *request_fields; i++)
            if (!strcmp(request_fields[i].name, key) && (request_fields[i].kinds & 1u << kind))
                f = &request_fields[i];
        if (!f)
            return http_error_set(e, 400, NULL, key, "unknown_parameter",
                                  "unrecognized request argument supplied: %.64s", key);
        if (json_is_null(v)) continue;
        switch (f->rule) {
        case FIELD_APPLIED: break;
        case FIELD_USER:
            if (!json_is_string(v) || json_string_length(v) > 256)
                return field_error(e, key, "must be a string of at most 256 characters");
            c->user = json_string_value(v);
            break;
        case FIELD_FALSE:
            if (!json_is_boolean(v)) return field_error(e, key, "must be a boolean");
            if (json_is_true(v)) return field_error(e, key, f->why);
            break;
        case FIELD_TIER:
            if (!json_is_string(v) ||
                (strcmp(json_string_value(v), "auto") && strcmp(json_string_value(v), "default")))
                return field_error(e, key, f->why);
            break;
        case FIELD_TEXT_ONLY:
            if (!json_is_array(v) || json_array_size(v) != 1 ||
                !json_is_string(json_array_get(v, 0)) ||
                strcmp(json_string_value(json_array_get(v, 0)), "text"))
                return field_error(e, key, f->why);
            break;
        case FIELD_BEST_OF: {
            const json_t *n = json_object_get(body, "n");
            json_int_t want = json_is_integer(n) ? json_integer_value(n) : 1;
            if (!json_is_integer(v) || json_integer_value(v) != want)
                return field_error(e, key, f->why);
            break;
        }
        case FIELD_EMPTY:
            if (!json_is_string(v) || json_string_length(v) > 0) return field_error(e, key, f->why);
            break;
        case FIELD_UNSUPPORTED: return field_error(e, key, f->why);
        }
    }
    return 0;
}

/* "logit_bias": {"TOKEN_ID": BIAS, ...}, ids as decimal strings, biases in [-100, 100]. Whether
 * each id is in the vocabulary is checked when the model is loaded (submit). */
static int parse_logit_bias(sampler_params *sp, const json_t *body, http_error *e) {
    const json_t *bias = NULL;
    if (http_json_get_object(body, "logit_bias", 0, &bias, e) < 0) return -1;
    sp->n_bias = 0;
    if (!bias) return 0;
    if (json_object_size(bias) > SAMPLER_MAX_BIAS)
        return http_error_set(e, 400, NULL, "logit_bias", NULL,
                              "'logit_bias' may list at most %d tokens (got %zu)", SAMPLER_MAX_BIAS,
                              json_object_size(bias));
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)bias, key, v) {
        char *end = NULL;
        errno = 0;
        long long id = strtoll(key, &end, 10);
        if (!key[0] || *end || errno || id < 0 || id > INT32_MAX)
            return http_error_set(e, 400, NULL, "logit_bias", NULL,
                                  "'logit_bias' keys must be token ids (got '%.64s')", key);
        if (!json_is_number(v) || json_number_value(v) < -100 || json_number_value(v) > 100)
            return http_error_set(e, 400, NULL, "logit_bias", NULL,
                                  "logit_bias['%.64s'] must be a number from -100 to 100", key);
        sp->bias[sp->n_bias++] = (sampler_bias){(int32_t)id, (float)json_number_value(v)};
    }
    return 0;
}

/* Chat: "logprobs": bool and "top_logprobs": 0-20 (only with logprobs). Completions:
 * "logprobs": 0-20, the number of alternatives (null or absent: none). */
static int parse_logprobs(call *c, const json_t *body, http_error *e) {
    long long top = 0;
    if (c->kind == CALL_CHAT) {
        if (http_json_get_bool(body, "logprobs", 0, 0, &c->logprobs, e) < 0 ||
            http_json_get_int(body, "top_logprobs", 0, 0, SAMPLER_MAX_TOP_LOGPROBS, 0, &top, e) < 0)
            return -1;
        const json_t *t = json_object_get(body, "top_logprobs");
        if (t && !json_is_null(t) && !c->logprobs)
            return http_error_set(e, 400, NULL, "top_logprobs", NULL,
                                  "'top_logprobs' requires 'logprobs' to be true");
    } else {
        const json_t *v = json_object_get(body, "logprobs");
        if (v && !json_is_null(v)) {
            if (http_json_get_int(body, "logprobs", 0, 0, SAMPLER_MAX_TOP_LOGPROBS, 0, &top, e) < 0)
                return -1;
            c->logprobs = 1;
        }
    }
    c->top_logprobs = (int)top;
    return 0;
}

static int parse_sampling(call *c, const json_t *body, http_error *e) {
    serve *s = c->s;
    double temp, top_p, min_p, rep;
    long long top_k, seed, max_tokens, max_completion, n;
    c->sp = sampler_defaults();
    if (http_json_get_number(body, "temperature", 0, 0, 2, c->sp.temperature, &temp, e) < 0 ||
        http_json_get_number(body, "top_p", 0, 0, 1, c->sp.top_p, &top_p, e) < 0 ||
        http_json_get_number(body, "min_p", 0, 0, 1, c->sp.min_p, &min_p, e) < 0 ||
        http_json_get_number(body, "repeat_penalty", 0, 0.01, 100, 1.0, &rep, e) < 0 ||
        http_json_get_int(body, "top_k", 0, 0, 1 << 24, c->sp.top_k, &top_k, e) < 0 ||
        http_json_get_int(body, "seed", 0, INT64_MIN, INT64_MAX, -1, &seed, e) < 0 ||
        http_json_get_int(body, "max_tokens", 0, 1, 1 << 24, 0, &max_tokens, e) < 0 ||
        http_json_get_int(body, "max_completion_tokens", 0, 1, 1 << 24, 0, &max_completion, e) <
            0 ||
        http_json_get_int(body, "n", 0, INT64_MIN, INT64_MAX, 1, &n, e) < 0 ||
        http_json_get_bool(body, "stream", 0, 0, &c->stream, e) < 0)
        return -1;
    double presence, frequency;
    if (http_json_get_number(body, "presence_penalty", 0, -2, 2, 0, &presence, e) < 0 ||
        http_json_get_number(body, "frequency_penalty", 0, -2, 2, 0, &frequency, e) < 0 ||
        parse_logit_bias(&c->sp, body, e) < 0)
        return -1;
    c->sp.presence_penalty = (float)presence;
    c->sp.frequency_penalty = (float)frequency;
    if (n < 1 || n > MAX_CHOICES)
        return http_error_set(e, 400, NULL, "n", NULL, "'n' must be from 1 to %d (got %lld)",
                              MAX_CHOICES, n);
    c->n_choices = (int)n;
    if (parse_logprobs(c, body, e) < 0) return -1;
    c->sp.temperature = (float)temp;
    c->sp.top_p = (float)top_p;
    c->sp.min_p = (float)min_p;
    c->sp.top_k = (int)top_k;
    c->sp.repeat_penalty = (float)rep;
    if (seed != -1) c->sp.seed = (uint64_t)seed;
    c->max_tokens = (int)(max_completion ? max_completion : max_tokens);
    const json_t *opts = NULL;
    if (http_json_get_object(body, "stream_options", 0, &opts, e) < 0) return -1;
    if (opts && http_json_get_bool(opts, "include_usage", 0, 0, &c->include_usage, e) < 0) {
        snprintf(e->param, sizeof e->param, "stream_options.include_usage");
        return -1;
    }
    const json_t *stop = json_object_get(body, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) {
            if (json_string_length(stop) > 0)
                c->stop[c->n_stop++] = mh_xstrdup(json_string_value(stop));
        } else if (json_is_array(stop)) {
            if (json_array_size(stop) > MAX_STOP_STRINGS - 4)
                return http_error_set(e, 400, NULL, "stop", NULL, "at most %d stop strings",
                                      MAX_STOP_STRINGS - 4);
            size_t i;
            const json_t *v;
            json_array_foreach(stop, i, v) {
                if (!json_is_string(v))
                    return http_error_set(e, 400, NULL, "stop", NULL,
                                          "'stop' must be a string or an array of strings");
                if (json_string_length(v) > 0)
                    c->stop[c->n_stop++] = mh_xstrdup(json_string_value(v));
            }
        } else {
            return http_error_set(e, 400, NULL, "stop", NULL,
                                  "'stop' must be a string or an array of strings");
        }
    }
    (void)s;
    return 0;
}

static int parse_messages(const json_t *body, http_error *e) {
    const json_t *msgs;
    if (http_json_get_array(body, "messages", 1, &msgs, e) < 0) return -1;
    if (json_array_size(msgs) == 0)
        return http_error_set(e, 400, NULL, "messages", NULL, "'messages' must not be empty");
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m))
            return http_error_set(e, 400, NULL, param, NULL, "%s must be an object", param);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
                      strcmp(role, "developer") && strcmp(role, "tool")))
            return http_error_set(e, 400, NULL, param, NULL,
                                  "%s.role must be one of system, developer, user, assistant, tool",
                                  param);
        if (tools_check_message(m, i, e) < 0) return -1;
        const json_t *content = json_object_get(m, "content");
        if (json_is_string(content) ||
            ((json_is_null(content) || !content) && !strcmp(role, "assistant")))
            continue;
        if (!json_is_array(content))
            return http_error_set(e, 400, NULL, param, NULL,
                                  "%s.content must be a string or an array of text parts", param);
        size_t k;
        const json_t *part;
        json_array_foreach(content, k, part) {
            const char *type = json_string_value(json_object_get(part, "type"));
            if (!type || strcmp(type, "text") != 0 ||
                !json_is_string(json_object_get(part, "text")))
                return http_error_set(e, 400, NULL, param, NULL,
                                      "%s.content[%zu]: only parts of type 'text' are supported",
                                      param, k);
        }
    }
    return 0;
}

/* tool_choice required or named: each allowed function's parameters must compile to a grammar
 * (the call is constrained to them once the template's style is known, on_acquired). */
static int check_forced_tools(call *c, http_error *e) {
    size_t i;
    const json_t *t;
    json_array_foreach(c->tools.tools, i, t) {
        const json_t *f = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(f, "name"));
        const json_t *params = json_object_get(f, "parameters");
        if (!json_is_object(params) || json_object_size(params) == 0) continue;
        if (c->tools.choice == TOOLS_NAMED && strcmp(name, c->tools.named)) continue;
        grammar *g = NULL;
        char err[256];
        if (grammar_from_schema(params, &g, err, sizeof err) < 0) {
            char param[64];
            snprintf(param, sizeof param, "tools[%zu].function.parameters", i);
            return http_error_set(e, 400, NULL, param, NULL,
                                  "'%s' cannot constrain a forced call: %s", param, err);
        }
        grammar_free(g);
    }
    return 0;
}

/* "response_format": {"type": "text"} (no constraint), {"type": "json_object"} (any JSON
 * object) or {"type": "json_schema", "json_schema": {"name", "schema", "strict",
 * "description"}}: compiled into c->grammar, which constrains sampling. */
static int parse_response_format(call *c, const json_t *body, http_error *e) {
    const json_t *rf = json_object_get(body, "response_format");
    if (!rf || json_is_null(rf)) return 0;
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf))
        return http_error_set(e, 400, NULL, "response_format", NULL,
                              "'response_format' must be an object");
    if (!type ||
        (strcmp(type, "text") && strcmp(type, "json_object") && strcmp(type, "json_schema")))
        return http_error_set(e, 400, NULL, "response_format.type", NULL,
                              "'response_format.type' must be 'text', 'json_object' or "
                              "'json_schema'");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)rf, key, v) {
        if (strcmp(key, "type") && (strcmp(key, "json_schema") || strcmp(type, "json_schema")))
            return http_error_set(e, 400, NULL, "response_format", "unknown_parameter",
                                  "'response_format' of type '%s' takes no '%.64s'", type, key);
    }
    if (!strcmp(type, "text")) return 0;
    if (c->kind == CALL_CHAT && c->tools.choice != TOOLS_NONE)
        return http_error_set(e, 400, NULL, "response_format", NULL,
                              "'response_format' %s together with tools is not supported", type);
    if (!strcmp(type, "json_object")) {
        c->grammar = grammar_any_object();
        return 0;
    }
    const json_t *js = json_object_get(rf, "json_schema");
    if (!json_is_object(js))
        return http_error_set(e, 400, NULL, "response_format.json_schema", NULL,
                              "'response_format.json_schema' must be an object with 'name' "
                              "and 'schema'");
    json_object_foreach((json_t *)js, key, v) {
        if (strcmp(key, "name") && strcmp(key, "schema") && strcmp(key, "strict") &&
            strcmp(key, "description"))
            return http_error_set(e, 400, NULL, "response_format.json_schema", "unknown_parameter",
                                  "'response_format.json_schema' takes no '%.64s'", key);
    }
    const char *name = json_string_value(json_object_get(js, "name"));
    size_t name_len = name ? strlen(name) : 0;
    int name_ok = name_len >= 1 && name_len <= 64;
    for (size_t i = 0; name_ok && i < name_len; i++)
        name_ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                  (name[i] >= '0' && name[i] <= '9') || name[i] == '_' || name[i] == '-';
    if (!name_ok)
        return http_error_set(e, 400, NULL, "response_format.json_schema.name", NULL,
                              "'response_format.json_schema.name' must be 1 to 64 letters, "
                              "digits, '_' or '-'");
    const json_t *strict = json_object_get(js, "strict");
    if (strict && !json_is_boolean(strict) && !json_is_null(strict))
        return http_error_set(e, 400, NULL, "response_format.json_schema.strict", NULL,
                              "'response_format.json_schema.strict' must be a boolean");
    const json_t *desc = json_object_get(js, "description");
    if (desc && !json_is_string(desc))
        return http_error_set(e, 400, NULL, "response_format.json_schema.description", NULL,
                              "'response_format.json_schema.description' must be a string");
    const json_t *schema = json_object_get(js, "schema");
    if (!schema) { /* no schema: any JSON object */
        c->grammar = grammar_any_object();
        return 0;
    }
    char err[256];
    if (grammar_from_schema(schema, &c->grammar, err, sizeof err) < 0)
        return http_error_set(e, 400, NULL, "response_format.json_schema.schema", NULL,
                              "'response_format.json_schema.schema': %s", err);
    return 0;
}

/* Everything begin_call checks in a request body before it waits for the model: the fields of
 * `kind` (c->kind) in c->body, written into c. 0, or -1 with the error in e. */
static int parse_call(call *c, http_error *e) {
    serve *s = c->s;
    json_t *body = c->body;
    int kind = c->kind;
    int rc = check_fields(kind, c, body, e);
    if (rc == 0) rc = check_model(s, body, e);
    if (rc == 0 && kind == CALL_CHAT) rc = parse_messages(body, e);
    if (rc == 0 && kind == CALL_CHAT) {
        rc = tools_parse_request(body, &c->tools, e);
        c->forced = c->tools.choice == TOOLS_REQUIRED || c->tools.choice == TOOLS_NAMED;
        if (rc == 0 && c->forced) rc = check_forced_tools(c, e);
    }
    if (rc == 0 && kind != CALL_EMBEDDING) rc = parse_response_format(c, body, e);
    if (rc == 0 && kind == CALL_COMPLETION) {
        const json_t *p = json_object_get(body, "prompt");
        int echo = 0;
        if (!p || json_is_null(p))
            rc =
                http_error_set(e, 400, NULL, "prompt", NULL, "missing required parameter 'prompt'");
        else if (!json_is_string(p))
            rc = http_error_set(e, 400, NULL, "prompt", NULL,
                                "'prompt' must be a string (arrays are not supported)");
        else if (http_json_get_bool(body, "echo", 0, 0, &echo, e) < 0)
            rc = -1;
        else if (echo)
            rc = http_error_set(e, 400, NULL, "echo", NULL, "echo is not supported");
        else
            c->prompt_text = mh_xstrdup(json_string_value(p));
    }
    if (rc == 0 && kind == CALL_EMBEDDING) {
        const json_t *in = json_object_get(body, "input");
        const char *fmt = NULL;
        if (http_json_get_string(body, "encoding_format", 0, 16, "float", &fmt, e) < 0)
            rc = -1;
        else if (strcmp(fmt, "float") && strcmp(fmt, "base64"))
            rc = http_error_set(e, 400, NULL, "encoding_format", NULL,
                                "'encoding_format' must be 'float' or 'base64'");
        c->base64 = rc == 0 && strcmp(fmt, "base64") == 0;
        if (rc == 0) {
            if (json_is_string(in)) {
                json_t *arr = json_array();
                json_array_append(arr, (json_t *)in);
                json_object_set_new(body, "input", arr);
                in = arr;
            }
            size_t i;
            const json_t *v;
            if (!json_is_array(in) || json_array_size(in) == 0 ||
                json_array_size(in) > MAX_EMBED_INPUTS)
                rc = http_error_set(e, 400, NULL, "input", NULL,
                                    "'input' must be a string or a non-empty array of at most "
                                    "%d strings",
                                    MAX_EMBED_INPUTS);
            else
                json_array_foreach(in, i, v) if (!json_is_string(v) || json_string_length(v) == 0) {
                    rc = http_error_set(e, 400, NULL, "input", NULL,
                                        "input[%zu] must be a non-empty string", i);
                    break;
                }
            c->inputs = in;
        }
    }
    if (rc == 0 && kind != CALL_EMBEDDING) rc = parse_sampling(c, body, e);
    return rc;
}

/* Start a call on the OpenAI request `body` (stolen); `dout` (stolen, NULL for the OpenAI
 * routes) translates its answer. */
static void start_call(serve *s, http_req *r, int kind, json_t *body, dialect_out *dout) {
    http_error e;
    call *c = call_new(s, r, kind);
    c->body = body;
    c->dout = dout;
    int rc = parse_call(c, &e);
    if (rc < 0) {
        call_fail(c, &e);
        call_finish(c);
        return;
    }
    http_req_on_close(r, on_client_gone, c);
    rc = lc_acquire(s->lcm, s->cfg.queue_timeout, on_acquired, c, &c->waiter);
    if (rc == LC_READY)
        on_acquired(c, 0, NULL);
    else if (rc < 0)
        on_acquired(c, rc, rc == LC_ERR_SHUTDOWN ? "the server is shutting down" : "unavailable");
}

/* Common start of the three generation routes: auth is done by the server. */
static void begin_call(serve *s, http_req *r, int kind) {
    http_error e;
    json_t *body;
    if (http_req_json(r, &body, &e) < 0) {
        http_reply_error(r, &e);
        return;
    }
    start_call(s, r, kind, body, NULL);
}

static void route_chat(http_req *r, void *arg) {
    begin_call(arg, r, CALL_CHAT);
}
static void route_completions(http_req *r, void *arg) {
    begin_call(arg, r, CALL_COMPLETION);
}
static void route_embeddings(http_req *r, void *arg) {
    begin_call(arg, r, CALL_EMBEDDING);
}

int serve_validate_request(serve_request_kind kind, const char *body, size_t len, http_error *e) {
    static const int kinds[] = {CALL_CHAT, CALL_COMPLETION, CALL_EMBEDDING};
    if ((unsigned)kind >= sizeof kinds / sizeof kinds[0])
        return http_error_set(e, 500, NULL, NULL, NULL, "unknown request kind %d", (int)kind);
    json_t *root;
    if (http_json_parse(body, len, 1, &root, e) < 0) return -1; /* as http_req_json does */
    serve s = {0};
    s.cfg.worker = 1; /* no registry: any "model" string passes, as in a hub worker */
    call *c = call_new(&s, NULL, kinds[kind]);
    c->body = root; /* owned by the call from here */
    int rc = parse_call(c, e);
    call_free(c);
    return rc < 0 ? -1 : 0;
}

/* ==== Models, health, control ==== */

static void route_models(http_req *r, void *arg) {
    serve *s = arg;
    json_t *entry = lc_model_entry(s->lcm);
    json_t *model =
        json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", s->name, "object", "model", "created",
                  (int)mh_now_wall(), "owned_by", "modelhub", "metadata", entry);
    http_reply_json_take(r, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model));
}

/* GET /v1/models/{id}: the model object, or 404 for any other name. */
static void route_model(http_req *r, void *arg) {
    serve *s = arg;
    const char *id = http_req_param(r, "id");
    if (!lc_find(s->reg, id, 1)) {
        http_reply_errorf(r, 404, NULL, "model", "model_not_found",
                          "the model '%.200s' does not exist", id);
        return;
    }
    http_reply_json_take(r, 200,
                         json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", s->name, "object", "model",
                                   "created", (int)mh_now_wall(), "owned_by", "modelhub",
                                   "metadata", lc_model_entry(s->lcm)));
}

/* ==== Other API dialects (translated by http/dialect.c onto the OpenAI routes) ==== */

static void dialect_call(serve *s, http_req *r, dialect_api api) {
    http_error e;
    json_t *in;
    dialect_request dr;
    if (http_req_json(r, &in, &e) < 0) {
        http_reply_json_take(r, e.status, dialect_error_body(api, &e));
        return;
    }
    int rc = dialect_translate(api, in, &dr, &e);
    json_decref(in);
    if (rc < 0) {
        http_reply_json_take(r, e.status, dialect_error_body(api, &e));
        return;
    }
    int kind = strcmp(dr.path, "/v1/chat/completions") == 0 ? CALL_CHAT
               : strcmp(dr.path, "/v1/completions") == 0    ? CALL_COMPLETION
                                                            : CALL_EMBEDDING;
    start_call(s, r, kind, dr.body, dialect_out_new(api, dr.stream, dr.model));
}

static void route_messages(http_req *r, void *arg) {
    dialect_call(arg, r, DIALECT_ANTHROPIC_MESSAGES);
}
static void route_responses(http_req *r, void *arg) {
    dialect_call(arg, r, DIALECT_OPENAI_RESPONSES);
}
static void route_ollama_chat(http_req *r, void *arg) {
    dialect_call(arg, r, DIALECT_OLLAMA_CHAT);
}
static void route_ollama_generate(http_req *r, void *arg) {
    dialect_call(arg, r, DIALECT_OLLAMA_GENERATE);
}
static void route_ollama_embed(http_req *r, void *arg) {
    dialect_call(arg, r, DIALECT_OLLAMA_EMBED);
}
static void route_ollama_embeddings(http_req *r, void *arg) {
    dialect_call(arg, r, DIALECT_OLLAMA_EMBEDDINGS);
}

static void ollama_list(serve *s, http_req *r, int loaded_only) {
    json_t *entries = json_pack("[o]", lc_model_entry(s->lcm));
    http_reply_json_take(r, 200, dialect_ollama_models(entries, loaded_only));
    json_decref(entries);
}
static void route_ollama_tags(http_req *r, void *arg) {
    ollama_list(arg, r, 0);
}
static void route_ollama_ps(http_req *r, void *arg) {
    ollama_list(arg, r, 1);
}
static void route_ollama_version(http_req *r, void *arg) {
    (void)arg;
    http_reply_json_take(r, 200, dialect_ollama_version(MODELHUB_VERSION));
}

static void route_ollama_show(http_req *r, void *arg) {
    serve *s = arg;
    http_error e;
    json_t *in = NULL;
    const char *name;
    if (http_req_json(r, &in, &e) < 0 || dialect_ollama_show_name(in, &name, &e) < 0) {
        json_decref(in);
        http_reply_json_take(r, e.status, dialect_error_body(DIALECT_OLLAMA_CHAT, &e));
        return;
    }
    if (!lc_find(s->reg, name, 1)) {
        http_error_set(&e, 404, NULL, "model", NULL, "model '%.200s' not found", name);
        json_decref(in);
        http_reply_json_take(r, 404, dialect_error_body(DIALECT_OLLAMA_CHAT, &e));
        return;
    }
    json_decref(in);
    json_t *entry = lc_model_entry(s->lcm);
    http_reply_json_take(r, 200, dialect_ollama_show(entry));
    json_decref(entry);
}

static void route_health(http_req *r, void *arg) {
    serve *s = arg;
    lc_mem_state mem = lc_model_mem(s->lcm);
    const char *ms = mem == LC_MEM_LOADED    ? "loaded"
                     : mem == LC_MEM_LOADING ? "loading"
                     : mem == LC_MEM_ERROR   ? "error"
                                             : "unloaded";
    double at = lc_model_unload_at(s->lcm);
    json_t *body = json_pack("{s:s, s:s, s:o}", "status", "ok", "model_status", ms, "unload_at",
                             at > 0 ? json_real(round(at * 1000) / 1000) : json_null());
    if (s->sch) { /* the slots: how long each context is and what its KV cache may take */
        int n_ctx = sched_n_ctx(s->sch);
        uint64_t per_pos = model_kv_bytes_per_pos(s->m, s->cfg.kv_type);
        json_object_set_new(
            body, "slots",
            json_pack("{s:i, s:i, s:i, s:i, s:s, s:I, s:I, s:I}", "total", s->cfg.parallel, "busy",
                      sched_active(s->sch), "queued", sched_queued(s->sch), "n_ctx", n_ctx,
                      "kv_type", model_kv_type_name(s->cfg.kv_type), "kv_bytes_per_slot",
                      (json_int_t)(per_pos * (uint64_t)n_ctx), "kv_bytes_reserved",
                      (json_int_t)sched_kv_reserved(s->sch), "memory_bytes",
                      (json_int_t)(model_weight_bytes(s->m) + sched_bytes(s->sch))));
    }
    http_reply_json_take(r, 200, body);
}

static int control_ok(serve *s, http_req *r) {
    const char *tok = http_req_header(r, "X-Control-Token");
    if (s->cfg.control_token && s->cfg.control_token[0] &&
        (!tok || !http_token_equal(tok, s->cfg.control_token))) {
        http_reply_errorf(r, 401, NULL, NULL, "invalid_control_token",
                          "missing or wrong X-Control-Token");
        return 0;
    }
    return 1;
}

typedef struct control_call {
    serve *s;
    http_req *req;
} control_call;

static void control_reply(serve *s, http_req *r, int status, const char *message) {
    if (status < 0 && status != LC_READY) {
        http_reply_errorf(r, lc_status_http(status), NULL, NULL, NULL, "%s",
                          message ? message : "failed");
        return;
    }
    http_reply_json_take(r, 200, lc_model_entry(s->lcm));
}

static void on_control_done(void *arg, int status, const char *message) {
    control_call *cc = arg;
    if (status == 0)
        control_reply(cc->s, cc->req, LC_READY, NULL);
    else
        control_reply(cc->s, cc->req, status < 0 ? status : LC_ERR_FAILED, message);
    free(cc);
}

static void control_op(serve *s, http_req *r, int load) {
    if (!control_ok(s, r)) return;
    control_call *cc = mh_xcalloc(1, sizeof *cc);
    cc->s = s;
    cc->req = r;
    int rc = load ? lc_load(s->lcm, on_control_done, cc)
                  : lc_unload(s->lcm, LC_REASON_MANUAL, on_control_done, cc);
    if (rc == LC_PENDING) return;
    free(cc);
    control_reply(s, r, rc, rc == LC_ERR_CONFLICT ? "the model has requests in flight" : NULL);
}

static void route_control_load(http_req *r, void *arg) {
    control_op(arg, r, 1);
}
static void route_control_unload(http_req *r, void *arg) {
    control_op(arg, r, 0);
}

static void route_control_status(http_req *r, void *arg) {
    serve *s = arg;
    if (!control_ok(s, r)) return;
    http_reply_json_take(r, 200, lc_model_entry(s->lcm));
}

static const http_route routes[] = {
    {"POST", "/v1/chat/completions", route_chat, HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/v1/completions", route_completions, HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/v1/embeddings", route_embeddings, HTTP_ROUTE_CORS},
    {"GET", "/v1/models", route_models, HTTP_ROUTE_CORS},
    {"GET", "/v1/models/{id}", route_model, HTTP_ROUTE_CORS},
    {"POST", "/v1/messages", route_messages, HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/v1/responses", route_responses, HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/api/chat", route_ollama_chat, HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/api/generate", route_ollama_generate, HTTP_ROUTE_STREAM | HTTP_ROUTE_CORS},
    {"POST", "/api/embed", route_ollama_embed, HTTP_ROUTE_CORS},
    {"POST", "/api/embeddings", route_ollama_embeddings, HTTP_ROUTE_CORS},
    {"POST", "/api/show", route_ollama_show, HTTP_ROUTE_CORS},
    {"GET", "/api/tags", route_ollama_tags, HTTP_ROUTE_CORS},
    {"GET", "/api/ps", route_ollama_ps, HTTP_ROUTE_CORS},
    {"GET", "/api/version", route_ollama_version, HTTP_ROUTE_CORS},
    {"GET", "/health", route_health, HTTP_ROUTE_PUBLIC},
    {"POST", "/control/load", route_control_load,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_LOOPBACK | HTTP_ROUTE_SAME_ORIGIN},
    {"POST", "/control/unload", route_control_unload,
     HTTP_ROUTE_PUBLIC | HTTP_ROUTE_LOOPBACK | HTTP_ROUTE_SAME_ORIGIN},
    {"GET", "/control/status", route_control_status, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_LOOPBACK},
};

/* ==== Loop plumbing ==== */

static void on_async(http_async_item *item, void *arg) {
    serve *s = arg;
    msg *mm = HTTP_ASYNC_ENTRY(item, msg, link);
    switch (mm->kind) {
    case MSG_LOAD_DONE: on_load_done(s, mm); break;
    case MSG_UNLOAD_DONE: on_unload_done(s); break;
    case MSG_EVENT: on_call_event(mm->c, mm); break;
    }
    json_decref(mm->lp);
    free(mm);
}

static void on_request_logged(const http_log_entry *e, void *arg) {
    (void)arg;
    log_info("%s %s %d %.1f ms%s%s%s", e->method, e->path, e->status, e->duration_s * 1e3,
             e->note ? " " : "", e->note ? e->note : "", e->client_gone ? " (client gone)" : "");
}

static void cron(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    serve *s = arg;
    lc_cron(s->reg);
    double now = mh_now_mono();
    for (call *c = s->calls; c; c = c->next)
        if (c->started && c->req && !http_req_gone(c->req) && now - c->last_write >= KEEPALIVE_S &&
            (!c->dout || strcmp(dialect_out_stream_type(c->dout), "text/event-stream") == 0)) {
            http_stream_comment(c->req, "keep-alive");
            c->last_write = now;
        }
}

static void on_stopped(void *arg, int status, const char *message) {
    (void)status, (void)message;
    serve *s = arg;
    event_base_loopexit(s->base, NULL);
}

static void begin_shutdown(serve *s, const char *why) {
    if (s->stopping) return;
    s->stopping = 1;
    log_info("shutting down (%s)", why);
    for (call *c = s->calls; c; c = c->next) cancel_jobs(c);
    if (lc_shutdown(s->reg, on_stopped, s) == LC_READY) event_base_loopexit(s->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    begin_shutdown(arg, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_stdin(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        event_del(((serve *)arg)->stdin_ev);
        begin_shutdown(arg, "the hub went away (stdin closed)");
    }
}

int serve_run(const serve_config *cfg_in) {
    serve *s = mh_xcalloc(1, sizeof *s);
    the_serve = s;
    s->cfg = *cfg_in;
    serve_config *cfg = &s->cfg;
    if (!cfg->host) cfg->host = "127.0.0.1";
    if (cfg->parallel < 1) cfg->parallel = 1;
    log_set_tag("serve");
    if (cfg->log_file && log_open_file(cfg->log_file) < 0) {
        fprintf(stderr, "modelhub serve: cannot open log file %s: %s\n", cfg->log_file,
                strerror(errno));
        free(s);
        return 1;
    }
    if (cfg->worker) {
        /* die with the hub; if it died before this took effect we were reparented already
         * (to init or a subreaper, whose pid need not be 1) */
        pid_t parent = getppid();
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent || parent == 1) {
            free(s);
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    const char *base = strrchr(cfg->model_path, '/');
    s->file_base = mh_xstrdup(base ? base + 1 : cfg->model_path);
    s->name = mh_xstrdup(cfg->alias ? cfg->alias : s->file_base);

    char err[512];
    int status = 1;
    s->base = http_loop_new(err, sizeof err);
    s->tp = threadpool_new(cfg->threads > 0 ? cfg->threads : threadpool_default_size());
    if (!s->base || !s->tp) {
        fprintf(stderr, "modelhub serve: %s\n", s->base ? "cannot start threads" : err);
        goto done;
    }
    s->async = http_async_new(s->base, on_async, s);
    http_server_config hc = {.host = cfg->host,
                             .port = cfg->port,
                             .api_key = cfg->api_key,
                             .allowed_hosts = cfg->allowed_hosts,
                             .cors_origins = cfg->cors_origins,
                             .routes = routes,
                             .nroutes = MH_ARRAY_LEN(routes),
                             .arg = s};
    s->http = http_server_new(s->base, &hc, err, sizeof err);
    if (!s->http) {
        fprintf(stderr, "modelhub serve: %s\n", err);
        goto done;
    }
    http_server_set_log_hook(s->http, on_request_logged, s);

    s->reg = lc_registry_new(NULL);
    lc_registry_set_info(s->reg, cfg->host, http_server_port(s->http));
    const char *aliases[] = {s->file_base, NULL};
    lc_model_config mc = {.name = s->name,
                          .aliases = strcmp(s->name, s->file_base) ? aliases : NULL,
                          .model_path = cfg->model_path,
                          .is_default = 1,
                          .idle_unload_s = cfg->idle_unload};
    s->lcm = lc_model_add(s->reg, &mc, &local_ops, s);

    s->cron_ev = event_new(s->base, -1, EV_PERSIST, cron, s);
    struct timeval tv = {0, CRON_INTERVAL_US};
    event_add(s->cron_ev, &tv);
    s->sigterm_ev = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sigint_ev = evsignal_new(s->base, SIGINT, on_signal, s);
    event_add(s->sigterm_ev, NULL);
    event_add(s->sigint_ev, NULL);
    if (cfg->worker) {
        s->stdin_ev = event_new(s->base, STDIN_FILENO, EV_READ | EV_PERSIST, on_stdin, s);
        event_add(s->stdin_ev, NULL);
    }

    printf("listening on %s:%d\n", cfg->host, http_server_port(s->http));
    fflush(stdout);
    log_info("serving %s as '%s' on http://%s:%d (%s, %d slot%s, idle unload %s)", cfg->model_path,
             s->name, cfg->host, http_server_port(s->http),
             cfg->jit ? "load on first request" : "loading now", cfg->parallel,
             cfg->parallel == 1 ? "" : "s", cfg->idle_unload > 0 ? "on" : "off");
    if (!cfg->jit) lc_load(s->lcm, NULL, NULL);

    event_base_dispatch(s->base);
    status = 0;

done:
    /* wait for a load or unload in progress; stopping the scheduler ends every job, whose last
     * events are then handled as usual before the calls still waiting are dropped */
    if (s->loader_running) pthread_join(s->loader, NULL);
    if (s->loading_sch) sched_free(s->loading_sch);
    if (s->loading_m) model_free(s->loading_m);
    if (s->sch) sched_free(s->sch);
    s->sch = NULL;
    if (s->async) http_async_free(s->async, on_async);
    if (s->m) model_free(s->m);
    while (s->calls) {
        call *c = s->calls;
        if (c->waiter) lc_acquire_cancel(c->waiter);
        c->waiter = NULL;
        call_finish(c);
    }
    if (s->http) http_server_free(s->http);
    lc_registry_free(s->reg);
    if (s->cron_ev) event_free(s->cron_ev);
    if (s->sigterm_ev) event_free(s->sigterm_ev);
    if (s->sigint_ev) event_free(s->sigint_ev);
    if (s->stdin_ev) event_free(s->stdin_ev);
    if (s->base) http_loop_free(s->base);
    threadpool_free(s->tp);
    free(s->name);
    free(s->file_base);
    free(s);
    the_serve = NULL;
    log_close_file();
    return status;
}
