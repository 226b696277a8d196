/* config.c — hub.yaml: read, check every key, fill a plain hub_config (see config.h).
 *
 * YAML approach: libyaml's event parser, not libcyaml. libcyaml maps a schema onto a struct in
 * one call, but it stops at the first problem, returns one error code and puts the line only in
 * a log message; it cannot list every error with its line, accept the seed's two spellings of
 * one setting (auto_unload_minutes / idle_unload), check one key against another, or bound the
 * expansion of aliases (it replays them in full). So this file turns libyaml events into a small
 * tree whose nodes keep their line, with caps on size, depth and alias expansion, then walks the
 * tree against the key tables below and collects every error. All YAML code stays in this file.
 *
 * Order of work: parse (one syntax error ends it: libyaml cannot resume) -> top-level scalars ->
 * groups -> models -> checks across models (names, aliases, ports, group capacity). Errors are
 * sorted by line before they are written out.
 */
#include "hub/config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "util/common.h"

#define MAX_DEPTH       32     /* nesting of YAML collections; a hub.yaml needs 4 */
#define MAX_NODES       100000 /* nodes the document expands to, aliases counted in full */
#define MAX_ERRORS      100    /* listed; the rest are counted */
#define MAX_NAME_LEN    64     /* model and group names */
#define MAX_ALIAS_LEN   128
#define MAX_SHOWN_CHARS 40 /* of a value quoted in a message */

/* ==== Errors ==== */

typedef struct cfg_error {
    int line; /* 0 = about the file as a whole */
    int seq;  /* order of discovery, to keep the sort stable */
    char *text;
} cfg_error;

typedef struct cfg_ctx {
    const char *file; /* as named in messages */
    char *base_dir;   /* relative paths are resolved against it; NULL = leave them relative */
    cfg_error *errors;
    int n_errors, cap_errors;
    int n_unlisted; /* errors past MAX_ERRORS */
} cfg_ctx;

static int cfg_room(const cfg_ctx *x) {
    return x->n_errors < MAX_ERRORS;
}

/* Record "key: message" (or "message" when key is NULL) at `line`. */
static void cfg_err(cfg_ctx *x, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void cfg_err(cfg_ctx *x, int line, const char *key, const char *fmt, ...) {
    if (!cfg_room(x)) {
        x->n_unlisted++;
        return;
    }
    mh_buf b = {0};
    if (key) mh_buf_printf(&b, "%s: ", key);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = mh_xmalloc(n > 0 ? (size_t)n + 1 : 1);
    msg[0] = 0;
    va_start(ap, fmt);
    if (n > 0) vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    mh_buf_printf(&b, "%s", msg);
    free(msg);
    for (int i = 0; i < x->n_errors; i++) /* a node reached twice through aliases: say it once */
        if (x->errors[i].line == line && strcmp(x->errors[i].text, b.data) == 0) {
            mh_buf_free(&b);
            return;
        }
    if (x->n_errors == x->cap_errors) {
        x->cap_errors = x->cap_errors ? x->cap_errors * 2 : 16;
        x->errors = mh_xrealloc(x->errors, (size_t)x->cap_errors * sizeof *x->errors);
    }
    x->errors[x->n_errors] = (cfg_error){line, x->n_errors, b.data};
    x->n_errors++;
}

static int error_cmp(const void *pa, const void *pb) {
    const cfg_error *a = pa, *b = pb;
    if (a->line != b->line) return a->line < b->line ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Write every error, sorted by line, one per line, into errbuf; cut at a line end. */
static void cfg_flush_errors(cfg_ctx *x, char *errbuf, size_t errlen) {
    qsort(x->errors, (size_t)x->n_errors, sizeof *x->errors, error_cmp);
    mh_buf all = {0};
    for (int i = 0; i < x->n_errors; i++) {
        if (x->errors[i].line > 0)
            mh_buf_printf(&all, "%s:%d: %s\n", x->file, x->errors[i].line, x->errors[i].text);
        else
            mh_buf_printf(&all, "%s: %s\n", x->file, x->errors[i].text);
    }
    if (x->n_unlisted) mh_buf_printf(&all, "%s: ... and %d more errors\n", x->file, x->n_unlisted);
    if (errbuf && errlen > 0) {
        size_t n = all.len;
        if (n >= errlen) { /* keep whole lines only, and say that some are missing */
            static const char more[] = "...\n";
            n = 0;
            for (size_t i = 0; i < all.len; i++)
                if (all.data[i] == '\n' && i + 1 + sizeof more <= errlen) n = i + 1;
            memcpy(errbuf, all.data, n);
            if (n + sizeof more <= errlen) {
                memcpy(errbuf + n, more, sizeof more - 1);
                n += sizeof more - 1;
            }
        } else {
            memcpy(errbuf, all.data, n);
        }
        errbuf[n] = 0;
    }
    mh_buf_free(&all);
}

static void cfg_ctx_free(cfg_ctx *x) {
    for (int i = 0; i < x->n_errors; i++) free(x->errors[i].text);
    free(x->errors);
    free(x->base_dir);
}

/* Quote user text for a message: printable ASCII as is, the rest as \xNN, cut after `max`
 * characters with "...". */
static const char *shown_max(const char *s, size_t len, char *out, size_t outlen, size_t max) {
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < outlen; i++) {
        if (i == max) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            out[o++] = (char)ch;
        } else {
            snprintf(out + o, outlen - o, "\\x%02x", ch);
            o += 4;
        }
    }
    out[o] = 0;
    return out;
}

/* Values and keys are cut short in messages; paths and URLs are shown (nearly) whole. */
static const char *shown(const char *s, size_t len, char *out, size_t outlen) {
    return shown_max(s, len, out, outlen, MAX_SHOWN_CHARS);
}
#define PATH_SHOWN_CHARS 2048

/* ==== A string-keyed hash table (anchors, duplicate keys, names, aliases, ports) ==== */

typedef struct strmap_entry {
    char *key; /* owned copy; NULL = free slot */
    size_t len;
    void *value;
} strmap_entry;

typedef struct strmap {
    strmap_entry *slots;
    size_t cap, n; /* cap is a power of two */
} strmap;

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static strmap_entry *strmap_slot(const strmap *m, const char *key, size_t len) {
    size_t i = (size_t)hash_bytes(key, len) & (m->cap - 1);
    while (m->slots[i].key && !(m->slots[i].len == len && memcmp(m->slots[i].key, key, len) == 0))
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

static void *strmap_get(const strmap *m, const char *key, size_t len) {
    if (!m->cap) return NULL;
    strmap_entry *e = strmap_slot(m, key, len);
    return e->key ? e->value : NULL;
}

/* Insert or replace. */
static void strmap_put(strmap *m, const char *key, size_t len, void *value) {
    if ((m->n + 1) * 2 > m->cap) {
        strmap old = *m;
        m->cap = old.cap ? old.cap * 2 : 16;
        m->slots = mh_xcalloc(m->cap, sizeof *m->slots);
        for (size_t i = 0; i < old.cap; i++)
            if (old.slots[i].key)
                *strmap_slot(m, old.slots[i].key, old.slots[i].len) = old.slots[i];
        free(old.slots);
    }
    strmap_entry *e = strmap_slot(m, key, len);
    if (!e->key) {
        e->key = mh_xmalloc(len + 1);
        memcpy(e->key, key, len);
        e->key[len] = 0;
        e->len = len;
        m->n++;
    }
    e->value = value;
}

static void strmap_free(strmap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key);
    free(m->slots);
    *m = (strmap){0};
}

/* ==== YAML -> node tree ==== */

enum ynode_kind { Y_SCALAR, Y_SEQ, Y_MAP };

typedef struct ynode {
    enum ynode_kind kind;
    int line;
    int plain;    /* scalar: unquoted and untagged, so null/bool/number resolution applies */
    int complete; /* its end event was seen (an alias to an open collection is a cycle) */
    char *text;   /* scalar: NUL-terminated copy (may hold NULs itself: see len) */
    size_t len;
    struct ynode **items; /* seq: the entries; map: key, value, key, value, ... */
    int n_items, cap_items;
    size_t weight; /* nodes it expands to, aliases counted in full (capped at MAX_NODES + 1) */
} ynode;

typedef struct ytree {
    ynode **nodes; /* every node, for freeing (aliases share nodes) */
    size_t n_nodes, cap_nodes;
    ynode *root; /* NULL: no document */
} ytree;

static void ytree_free(ytree *t) {
    for (size_t i = 0; i < t->n_nodes; i++) {
        free(t->nodes[i]->text);
        free(t->nodes[i]->items);
        free(t->nodes[i]);
    }
    free(t->nodes);
    *t = (ytree){0};
}

static ynode *ytree_new_node(ytree *t, enum ynode_kind kind, int line) {
    ynode *n = mh_xcalloc(1, sizeof *n);
    n->kind = kind;
    n->line = line;
    n->weight = 1;
    if (t->n_nodes == t->cap_nodes) {
        t->cap_nodes = t->cap_nodes ? t->cap_nodes * 2 : 64;
        t->nodes = mh_xrealloc(t->nodes, t->cap_nodes * sizeof *t->nodes);
    }
    t->nodes[t->n_nodes++] = n;
    return n;
}

/* Attach a finished node to the open collection on top of the stack (or make it the root).
 * -1 when the parent would expand past MAX_NODES. */
static int ytree_attach(cfg_ctx *x, ytree *t, ynode **stack, int depth, ynode *n, int line) {
    if (depth == 0) {
        t->root = n;
        return 0;
    }
    ynode *parent = stack[depth - 1];
    parent->weight += n->weight;
    if (parent->weight > MAX_NODES) {
        cfg_err(x, line, NULL,
                "the document expands to more than %d YAML nodes (aliases count in full); "
                "a hub.yaml needs far fewer",
                MAX_NODES);
        return -1;
    }
    if (parent->n_items == parent->cap_items) {
        parent->cap_items = parent->cap_items ? parent->cap_items * 2 : 8;
        parent->items = mh_xrealloc(parent->items, (size_t)parent->cap_items * sizeof(ynode *));
    }
    parent->items[parent->n_items++] = n;
    return 0;
}

/* The line of a byte offset (reader errors carry an offset, not a mark). */
static int line_of_offset(const char *text, size_t len, size_t offset) {
    int line = 1;
    for (size_t i = 0; i < offset && i < len; i++) line += text[i] == '\n';
    return line;
}

/* Whether line `line` (1-based) starts with a tab in its indentation. */
static int line_has_tab_indent(const char *text, size_t len, int line) {
    size_t i = 0;
    for (int l = 1; l < line && i < len; i++) l += text[i] == '\n';
    for (; i < len && (text[i] == ' ' || text[i] == '\t'); i++)
        if (text[i] == '\t') return 1;
    return 0;
}

static void report_syntax_error(cfg_ctx *x, const yaml_parser_t *p, const char *text, size_t len) {
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->error == YAML_READER_ERROR) {
        int line = line_of_offset(text, len, p->problem_offset);
        if (p->problem_value != -1)
            cfg_err(x, line, NULL, "YAML syntax error: %s (byte 0x%02x)", problem,
                    (unsigned)p->problem_value & 0xff);
        else
            cfg_err(x, line, NULL, "YAML syntax error: %s", problem);
        return;
    }
    if (p->error == YAML_MEMORY_ERROR) {
        cfg_err(x, 0, NULL, "YAML parser: out of memory");
        return;
    }
    int line = (int)p->problem_mark.line + 1, column = (int)p->problem_mark.column + 1;
    char context[160] = "";
    if (p->context) {
        int cline = (int)p->context_mark.line + 1;
        if (cline != line)
            snprintf(context, sizeof context, ", %s at line %d", p->context, cline);
        else
            snprintf(context, sizeof context, ", %s", p->context);
    }
    const char *hint = "";
    if (line_has_tab_indent(text, len, line) ||
        (p->context && p->context_mark.line + 1 != (size_t)line &&
         line_has_tab_indent(text, len, (int)p->context_mark.line + 1)))
        hint = " (a tab in the indentation: YAML indents with spaces only)";
    cfg_err(x, line, NULL, "YAML syntax error: %s (column %d%s)%s", problem, column, context, hint);
}

static int tag_is(const yaml_char_t *tag, const char *what) {
    return tag && strcmp((const char *)tag, what) == 0;
}

/* Build the tree of the one document in `text`. Returns 0 (t->root is NULL when there is no
 * document) or -1 after reporting the problem. */
static int ytree_build(cfg_ctx *x, const char *text, size_t len, ytree *t) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        cfg_err(x, 0, NULL, "YAML parser: out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    strmap anchors = {0};
    ynode *stack[MAX_DEPTH + 1];
    int depth = 0, n_docs = 0, rc = 0, done = 0;
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            report_syntax_error(x, &p, text, len);
            rc = -1;
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        ynode *n = NULL;
        const yaml_char_t *anchor = NULL, *tag = NULL;
        switch (ev.type) {
        case YAML_NO_EVENT:
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT: break;
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++n_docs > 1) {
                cfg_err(x, line, NULL, "a second YAML document: hub.yaml holds exactly one");
                rc = -1;
            }
            break;
        case YAML_ALIAS_EVENT: {
            const char *name = (const char *)ev.data.alias.anchor;
            n = strmap_get(&anchors, name, strlen(name));
            char buf[64];
            if (!n) {
                cfg_err(x, line, NULL, "alias '*%s' refers to no anchor defined before it",
                        shown(name, strlen(name), buf, sizeof buf));
                rc = -1;
            } else if (!n->complete) {
                cfg_err(x, line, NULL, "alias '*%s' refers to a collection that contains it",
                        shown(name, strlen(name), buf, sizeof buf));
                rc = -1;
            } else {
                rc = ytree_attach(x, t, stack, depth, n, line);
            }
            break;
        }
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            tag = ev.data.scalar.tag;
            if (tag && !tag_is(tag, "tag:yaml.org,2002:str") && !tag_is(tag, "!")) {
                char buf[64];
                cfg_err(x, line, NULL, "unsupported YAML tag '%s' (only !!str is accepted)",
                        shown((const char *)tag, strlen((const char *)tag), buf, sizeof buf));
                rc = -1;
                break;
            }
            n = ytree_new_node(t, Y_SCALAR, line);
            n->len = ev.data.scalar.length;
            n->text = mh_xmalloc(n->len + 1);
            memcpy(n->text, ev.data.scalar.value, n->len);
            n->text[n->len] = 0;
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag;
            n->complete = 1;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            int is_map = ev.type == YAML_MAPPING_START_EVENT;
            anchor = is_map ? ev.data.mapping_start.anchor : ev.data.sequence_start.anchor;
            tag = is_map ? ev.data.mapping_start.tag : ev.data.sequence_start.tag;
            if (tag && !tag_is(tag, is_map ? "tag:yaml.org,2002:map" : "tag:yaml.org,2002:seq")) {
                char buf[64];
                cfg_err(x, line, NULL, "unsupported YAML tag '%s'",
                        shown((const char *)tag, strlen((const char *)tag), buf, sizeof buf));
                rc = -1;
                break;
            }
            if (depth == MAX_DEPTH) {
                cfg_err(x, line, NULL, "YAML nested deeper than %d levels", MAX_DEPTH);
                rc = -1;
                break;
            }
            n = ytree_new_node(t, is_map ? Y_MAP : Y_SEQ, line);
            stack[depth++] = n;
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            MH_ASSERT(depth > 0); /* libyaml pairs start and end events */
            n = stack[--depth];
            n->complete = 1;
            break;
        }
        if (rc == 0 && n && t->n_nodes > MAX_NODES) {
            cfg_err(x, line, NULL, "the document has more than %d YAML nodes", MAX_NODES);
            rc = -1;
        }
        if (rc == 0 && n && anchor)
            strmap_put(&anchors, (const char *)anchor, strlen((const char *)anchor), n);
        /* scalars and closed collections join their parent now; aliases already did */
        if (rc == 0 && n && n->complete && ev.type != YAML_ALIAS_EVENT)
            rc = ytree_attach(x, t, stack, depth, n, line);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    strmap_free(&anchors);
    return rc;
}

/* ==== Scalars ==== */

static int scalar_is(const ynode *n, const char *s) {
    return n->kind == Y_SCALAR && n->len == strlen(s) && memcmp(n->text, s, n->len) == 0;
}

static int is_null(const ynode *n) {
    return n->kind == Y_SCALAR && n->plain &&
           (n->len == 0 || scalar_is(n, "~") || scalar_is(n, "null") || scalar_is(n, "Null") ||
            scalar_is(n, "NULL"));
}

/* 1 / 0 for a plain YAML 1.1 boolean (the seed was read with a YAML 1.1 parser), else -1. */
static int bool_value(const ynode *n) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No",
                                     "NO",    "off",   "Off",   "OFF"};
    if (n->kind != Y_SCALAR || !n->plain) return -1;
    for (size_t i = 0; i < MH_ARRAY_LEN(yes); i++) {
        if (scalar_is(n, yes[i])) return 1;
        if (scalar_is(n, no[i])) return 0;
    }
    return -1;
}

/* "a list", "null", "'abc'", "the string \"80\"" — what a node is, for "expected X, got Y". */
static const char *describe(const ynode *n, char *out, size_t outlen) {
    char buf[200];
    if (n->kind == Y_SEQ)
        snprintf(out, outlen, "a list");
    else if (n->kind == Y_MAP)
        snprintf(out, outlen, "a mapping");
    else if (is_null(n))
        snprintf(out, outlen, "null");
    else if (n->plain)
        snprintf(out, outlen, "'%s'", shown(n->text, n->len, buf, sizeof buf));
    else
        snprintf(out, outlen, "the string \"%s\"", shown(n->text, n->len, buf, sizeof buf));
    return out;
}

/* A decimal integer, all of it. */
static int parse_integer(const char *s, long long *out) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return -1;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* A finite decimal number ("30", "1.5", "1e3"), all of it: no hex, inf or nan. */
static int parse_number(const char *s, double *out) {
    if (!*s) return -1;
    for (const char *q = s; *q; q++)
        if (!strchr("0123456789+-.eE", *q)) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* A string value: any scalar but null and plain booleans (quote those), without NUL bytes. */
static int get_string(cfg_ctx *x, const ynode *v, const char *key, char **out) {
    char d[256];
    if (v->kind != Y_SCALAR || is_null(v) || bool_value(v) >= 0) {
        cfg_err(x, v->line, key, "expected a string, got %s%s", describe(v, d, sizeof d),
                bool_value(v) >= 0 ? " (quote it to make it a string)" : "");
        return -1;
    }
    if (memchr(v->text, 0, v->len)) {
        cfg_err(x, v->line, key, "contains a NUL character");
        return -1;
    }
    free(*out);
    *out = mh_xstrdup(v->text);
    return 0;
}

/* A non-empty string without control characters or spaces (hosts, keys). */
static int get_token(cfg_ctx *x, const ynode *v, const char *key, const char *what, char **out) {
    char *s = NULL;
    if (get_string(x, v, key, &s) < 0) return -1;
    if (!*s) {
        cfg_err(x, v->line, key, "%s is empty", what);
        free(s);
        return -1;
    }
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            char d[256];
            cfg_err(x, v->line, key, "%s %s contains a space or a control character", what,
                    describe(v, d, sizeof d));
            free(s);
            return -1;
        }
    free(*out);
    *out = s;
    return 0;
}

static int get_int(cfg_ctx *x, const ynode *v, const char *key, long long min, long long max,
                   int *out) {
    char d[256];
    long long n;
    if (v->kind != Y_SCALAR || !v->plain || is_null(v) || parse_integer(v->text, &n) < 0) {
        long long dummy;
        int quoted_number = v->kind == Y_SCALAR && !v->plain && parse_integer(v->text, &dummy) == 0;
        cfg_err(x, v->line, key, "expected an integer from %lld to %lld, got %s%s", min, max,
                describe(v, d, sizeof d), quoted_number ? " (write it without quotes)" : "");
        return -1;
    }
    if (n < min || n > max) {
        cfg_err(x, v->line, key, "must be from %lld to %lld, got %lld", min, max, n);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* A number of seconds (or minutes: the unit is the caller's) in [min, max]. */
static int get_seconds(cfg_ctx *x, const ynode *v, const char *key, double min, double max,
                       const char *unit, double *out) {
    char d[256];
    double n;
    if (v->kind != Y_SCALAR || !v->plain || is_null(v) || parse_number(v->text, &n) < 0) {
        double dummy;
        int quoted_number = v->kind == Y_SCALAR && !v->plain && parse_number(v->text, &dummy) == 0;
        cfg_err(x, v->line, key, "expected a number of %s, got %s%s", unit,
                describe(v, d, sizeof d), quoted_number ? " (write it without quotes)" : "");
        return -1;
    }
    if (n < min || n > max) {
        cfg_err(x, v->line, key, "must be from %g to %g %s, got %g", min, max, unit, n);
        return -1;
    }
    *out = n;
    return 0;
}

static int get_bool(cfg_ctx *x, const ynode *v, const char *key, int *out) {
    int b = bool_value(v);
    if (b < 0) {
        char d[256];
        cfg_err(x, v->line, key, "expected true or false, got %s", describe(v, d, sizeof d));
        return -1;
    }
    *out = b;
    return 0;
}

/* log_level: error|warn|info|debug, any case; "warning" is warn. Stored lower-case. */
static int get_log_level(cfg_ctx *x, const ynode *v, const char *key, char **out) {
    static const char *const levels[] = {"error", "warn", "info", "debug", "warning"};
    char *s = NULL;
    if (get_string(x, v, key, &s) < 0) return -1;
    for (size_t i = 0; i < MH_ARRAY_LEN(levels); i++)
        if (strcasecmp(s, levels[i]) == 0) {
            free(s);
            free(*out);
            *out = mh_xstrdup(i == 4 ? "warn" : levels[i]);
            return 0;
        }
    char d[256];
    cfg_err(x, v->line, key, "expected error, warn, info or debug, got %s",
            describe(v, d, sizeof d));
    free(s);
    return -1;
}

/* log_max_bytes: an integer, or a number with a unit as in dd: K/M/G and KiB/MiB/GiB are powers
 * of 1024, KB/MB/GB of 1000 (any case, optional space, B alone is bytes). 0 = never rotate. */
static int get_size(cfg_ctx *x, const ynode *v, const char *key, long long *out) {
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"", 1},
                 {"b", 1},
                 {"k", 1024.0},
                 {"kib", 1024.0},
                 {"kb", 1e3},
                 {"m", 1048576.0},
                 {"mib", 1048576.0},
                 {"mb", 1e6},
                 {"g", 1073741824.0},
                 {"gib", 1073741824.0},
                 {"gb", 1e9},
                 {"t", 1099511627776.0},
                 {"tib", 1099511627776.0},
                 {"tb", 1e12}};
    const double max = 1099511627776.0; /* 1 TiB */
    char d[256];
    if (v->kind == Y_SCALAR && !is_null(v) && !memchr(v->text, 0, v->len)) {
        const char *s = v->text;
        char *end;
        int digits = *s >= '0' && *s <= '9';
        errno = 0;
        double n = digits ? strtod(s, &end) : -1;
        if (digits && !errno && isfinite(n)) {
            while (*end == ' ') end++;
            for (size_t i = 0; i < MH_ARRAY_LEN(units); i++)
                if (strcasecmp(end, units[i].unit) == 0 && !strpbrk(s, "xX") &&
                    (units[i].mult > 1 || n == floor(n))) {
                    double bytes = n * units[i].mult;
                    if (bytes > max) {
                        cfg_err(x, v->line, key, "must be at most 1 TiB, got %s",
                                describe(v, d, sizeof d));
                        return -1;
                    }
                    *out = (long long)bytes;
                    return 0;
                }
        }
    }
    cfg_err(x, v->line, key, "expected a size such as 10485760, 512KB or 10MiB, got %s",
            describe(v, d, sizeof d));
    return -1;
}

/* ==== Mappings: merge keys, duplicates, unknown keys ==== */

typedef struct kv {
    const ynode *key, *value;
} kv;

typedef struct kvlist {
    kv *v;
    int n, cap;
    strmap index; /* key text -> kv index + 1 */
} kvlist;

static void kvlist_free(kvlist *l) {
    free(l->v);
    strmap_free(&l->index);
    *l = (kvlist){0};
}

static void kvlist_add(kvlist *l, const ynode *key, const ynode *value) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = mh_xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (kv){key, value};
    strmap_put(&l->index, key->text, key->len, (void *)(intptr_t)l->n);
}

static int is_merge_key(const ynode *k) {
    return k->kind == Y_SCALAR && k->plain && scalar_is(k, "<<");
}

/* The pairs of mapping `map` (path names it in messages), with YAML merge keys applied: its own
 * keys first, then those of each "<<" mapping that are not present yet, earlier ones winning.
 * Non-string keys and duplicate keys are reported and left out. */
static void map_pairs(cfg_ctx *x, const ynode *map, const char *path, kvlist *out,
                      int merge_depth) {
    for (int i = 0; i + 1 < map->n_items; i += 2) {
        const ynode *k = map->items[i], *v = map->items[i + 1];
        if (is_merge_key(k)) continue;
        if (k->kind != Y_SCALAR || is_null(k) || memchr(k->text, 0, k->len)) {
            char d[256];
            cfg_err(x, k->line, path, "keys must be strings, got %s", describe(k, d, sizeof d));
            continue;
        }
        intptr_t first = (intptr_t)strmap_get(&out->index, k->text, k->len);
        if (first) {
            if (merge_depth == 0) {
                char buf[64];
                cfg_err(x, k->line, path, "duplicate key '%s' (first at line %d)",
                        shown(k->text, k->len, buf, sizeof buf), out->v[first - 1].key->line);
            }
            continue;
        }
        kvlist_add(out, k, v);
    }
    for (int i = 0; i + 1 < map->n_items; i += 2) {
        const ynode *k = map->items[i], *v = map->items[i + 1];
        if (!is_merge_key(k)) continue;
        if (merge_depth >= MAX_DEPTH) {
            cfg_err(x, k->line, path, "merge keys ('<<') nested deeper than %d levels", MAX_DEPTH);
            return;
        }
        const ynode *const *sources = &v;
        int n_sources = 1;
        if (v->kind == Y_SEQ) sources = (const ynode *const *)v->items, n_sources = v->n_items;
        for (int s = 0; s < n_sources; s++) {
            if (sources[s]->kind != Y_MAP) {
                char d[256];
                cfg_err(x, sources[s]->line, path,
                        "'<<' merges a mapping or a list of mappings, got %s",
                        describe(sources[s], d, sizeof d));
                continue;
            }
            kvlist merged = {0};
            map_pairs(x, sources[s], path, &merged, merge_depth + 1);
            for (int j = 0; j < merged.n; j++)
                if (!strmap_get(&out->index, merged.v[j].key->text, merged.v[j].key->len))
                    kvlist_add(out, merged.v[j].key, merged.v[j].value);
            kvlist_free(&merged);
        }
    }
}

/* Edit distance, for "did you mean". Inputs are short (keys of at most 40 characters). */
static int edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    int prev[64], cur[64];
    if (la > 40 || lb > 40) return 99;
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            cur[j] = MH_MIN(sub, MH_MIN(prev[j] + 1, cur[j - 1] + 1));
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

/* Index of key `k` in `names`, or -1 after reporting it as unknown (with a suggestion). */
static int key_index(cfg_ctx *x, const ynode *k, const char *const *names, int n_names,
                     const char *path) {
    for (int i = 0; i < n_names; i++)
        if (scalar_is(k, names[i])) return i;
    if (!cfg_room(x)) {
        x->n_unlisted++;
        return -1;
    }
    int best = -1, best_d = 3;
    for (int i = 0; i < n_names; i++) {
        int d = edit_distance(k->text, k->len, names[i], strlen(names[i]));
        if (d < best_d) best = i, best_d = d;
    }
    char buf[64], full[320], hint[80] = "";
    shown(k->text, k->len, buf, sizeof buf);
    if (path)
        snprintf(full, sizeof full, "%s.%s", path, buf);
    else
        snprintf(full, sizeof full, "%s", buf);
    if (best >= 0) snprintf(hint, sizeof hint, " (did you mean '%s'?)", names[best]);
    cfg_err(x, k->line, full, "unknown key%s", hint);
    return -1;
}

/* ==== Names and paths ==== */

/* slug: [a-z0-9][a-z0-9._-]*, plus ':' and '/' for aliases. */
static int check_slug(cfg_ctx *x, int line, const char *key, const char *s, int is_alias,
                      const char *what) {
    size_t max = is_alias ? MAX_ALIAS_LEN : MAX_NAME_LEN;
    size_t len = strlen(s);
    char buf[64];
    const char *extra = is_alias ? "-_.:/" : "-_.";
    int ok =
        len > 0 && len <= max && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9'));
    for (size_t i = 0; ok && i < len; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || strchr(extra, s[i]);
    if (ok) return 0;
    if (len == 0)
        cfg_err(x, line, key, "%s is empty", what);
    else if (len > max)
        cfg_err(x, line, key, "%s '%s' is longer than %zu characters", what,
                shown(s, len, buf, sizeof buf), max);
    else
        cfg_err(x, line, key,
                "%s '%s' may hold only lower-case letters, digits and '%s', and must start with "
                "a letter or a digit",
                what, shown(s, len, buf, sizeof buf),
                is_alias ? "-', '_', '.', ':', '/" : "-', '_', '.");
    return -1;
}

static int is_env_name(const char *s, size_t len) {
    if (len == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* $HOME, or the password database's home; NULL when neither is known. */
static const char *home_dir(char *buf, size_t buflen) {
    const char *home = getenv("HOME");
    if (home && *home) return home;
    struct passwd pw, *res = NULL;
    if (getpwuid_r(getuid(), &pw, buf, buflen, &res) == 0 && res && res->pw_dir && *res->pw_dir)
        return res->pw_dir;
    return NULL;
}

static char *join_path(const char *dir, const char *rest) {
    mh_buf b = {0};
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    mh_buf_append(&b, dir, dl);
    if (!(dl == 1 && dir[0] == '/')) mh_buf_append(&b, "/", 1);
    mh_buf_printf(&b, "%s", rest);
    return b.data;
}

/* "~/x" -> $HOME/x; absolute as is; relative -> base_dir/x (leading "./" dropped). */
static char *resolve_path(const cfg_ctx *x, const char *p) {
    char pwbuf[1024];
    if (p[0] == '~' && (p[1] == '/' || p[1] == 0)) {
        const char *home = home_dir(pwbuf, sizeof pwbuf);
        if (home) return join_path(home, p[1] ? p + 2 : "");
    }
    if (p[0] == '/' || !x->base_dir) return mh_xstrdup(p);
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/') p++;
    }
    return join_path(x->base_dir, *p ? p : ".");
}

/* The folder of the config file, absolute when the current folder is known. */
static char *base_dir_of(const char *path) {
    const char *slash = path ? strrchr(path, '/') : NULL;
    char *dir;
    if (!slash) {
        dir = mh_xstrdup(".");
    } else {
        size_t n = (size_t)(slash - path);
        dir = mh_xmalloc(n + 2);
        memcpy(dir, path, n ? n : 1); /* "/hub.yaml" -> "/" */
        dir[n ? n : 1] = 0;
    }
    if (dir[0] == '/') return dir;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return dir;
    char *abs = strcmp(dir, ".") == 0 ? mh_xstrdup(cwd) : join_path(cwd, dir);
    free(dir);
    return abs;
}

/* $XDG_STATE_HOME/modelhub (when absolute), else ~/.local/state/modelhub. */
static char *default_state_dir(void) {
    const char *xdg = getenv("XDG_STATE_HOME");
    if (xdg && xdg[0] == '/') return join_path(xdg, "modelhub");
    char pwbuf[1024];
    const char *home = home_dir(pwbuf, sizeof pwbuf);
    if (home) return join_path(home, ".local/state/modelhub");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/modelhub-%u", (unsigned)getuid());
    return mh_xstrdup(tmp);
}

/* model_path must be a readable regular file; a GGUF one for the built-in worker. */
static void check_model_file(cfg_ctx *x, int line, const char *key, const char *path, int gguf) {
    char buf[4 * PATH_SHOWN_CHARS + 16];
    const char *p = shown_max(path, strlen(path), buf, sizeof buf, PATH_SHOWN_CHARS);
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            cfg_err(x, line, key, "'%s' does not exist", p);
        else
            cfg_err(x, line, key, "cannot access '%s': %s", p, strerror(errno));
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        cfg_err(x, line, key, "'%s' is not a regular file", p);
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        cfg_err(x, line, key, "cannot read '%s': %s", p, strerror(errno));
        return;
    }
    char magic[4];
    ssize_t got = gguf ? read(fd, magic, sizeof magic) : 0;
    close(fd);
    if (gguf && (got != 4 || memcmp(magic, "GGUF", 4) != 0))
        cfg_err(x, line, key, "'%s' is not a GGUF file", p);
}

/* upstream: http://host[:port][/path]; https is refused (the hub's proxy has no TLS). */
static int check_upstream(cfg_ctx *x, int line, const char *key, const char *url) {
    char buf[4 * PATH_SHOWN_CHARS + 16];
    const char *shown_url = shown_max(url, strlen(url), buf, sizeof buf, PATH_SHOWN_CHARS);
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            cfg_err(x, line, key, "URL '%s' contains a space or a control character", shown_url);
            return -1;
        }
    if (strncasecmp(url, "https://", 8) == 0) {
        cfg_err(x, line, key, "https is not supported (the hub's proxy speaks plain HTTP): '%s'",
                shown_url);
        return -1;
    }
    if (strncasecmp(url, "http://", 7) != 0) {
        cfg_err(x, line, key, "expected an http:// URL, got '%s'", shown_url);
        return -1;
    }
    const char *host = url + 7;
    size_t hostport_len = strcspn(host, "/?#"), host_len = hostport_len;
    const char *port = NULL;
    if (memchr(host, '@', hostport_len)) {
        cfg_err(x, line, key, "user:password@ in the URL is not supported: '%s'", shown_url);
        return -1;
    }
    if (hostport_len > 0 && host[0] == '[') { /* [v6-address]:port */
        const char *close = memchr(host, ']', hostport_len);
        if (!close || close == host + 1 || (close + 1 < host + hostport_len && close[1] != ':')) {
            cfg_err(x, line, key, "bad IPv6 address in '%s'", shown_url);
            return -1;
        }
        host_len = (size_t)(close + 1 - host);
    } else {
        const char *colon = memchr(host, ':', hostport_len);
        if (colon) host_len = (size_t)(colon - host);
    }
    if (host_len < hostport_len) port = host + host_len + 1;
    if (host_len == 0) {
        cfg_err(x, line, key, "the URL '%s' has no host", shown_url);
        return -1;
    }
    if (port) {
        size_t pl = (size_t)(host + hostport_len - port);
        long v = 0;
        int ok = pl > 0 && pl <= 5;
        for (size_t i = 0; ok && i < pl; i++) {
            ok = port[i] >= '0' && port[i] <= '9';
            v = v * 10 + (port[i] - '0');
        }
        if (!ok || v < 1 || v > 65535) {
            cfg_err(x, line, key, "bad port in '%s' (expected 1 to 65535)", shown_url);
            return -1;
        }
    }
    return 0;
}

/* cmd: only ${PORT} and ${MODEL_PATH} are expanded (by the daemon); others are errors. */
static void check_cmd(cfg_ctx *x, int line, const char *key, const char *cmd, int *uses_port,
                      int *uses_model_path) {
    *uses_port = *uses_model_path = 0;
    for (const char *p = cmd; (p = strstr(p, "${"));) {
        const char *end = strchr(p + 2, '}');
        char buf[64];
        if (!end) {
            cfg_err(x, line, key, "'${' without a closing '}'");
            return;
        }
        size_t n = (size_t)(end - p - 2);
        if (n == 4 && memcmp(p + 2, "PORT", 4) == 0)
            *uses_port = 1;
        else if (n == 10 && memcmp(p + 2, "MODEL_PATH", 10) == 0)
            *uses_model_path = 1;
        else
            cfg_err(x, line, key,
                    "unknown variable '${%s}' (only ${PORT} and ${MODEL_PATH} are expanded)",
                    shown(p + 2, n, buf, sizeof buf));
        p = end + 1;
    }
}

/* ==== Groups ==== */

enum { G_NAME, G_MAX_LOADED, G_N_KEYS };
static const char *const group_keys[G_N_KEYS] = {"name", "max_loaded"};

static void parse_group(cfg_ctx *x, const ynode *node, int i, hub_group_config *g) {
    char path[64], key[128];
    snprintf(path, sizeof path, "groups[%d]", i);
    g->line = node->line;
    if (node->kind != Y_MAP) {
        char d[256];
        cfg_err(x, node->line, path, "expected a mapping with name and max_loaded, got %s",
                describe(node, d, sizeof d));
        return;
    }
    kvlist pairs = {0};
    map_pairs(x, node, path, &pairs, 0);
    int seen[G_N_KEYS] = {0};
    for (int j = 0; j < pairs.n; j++) {
        int k = key_index(x, pairs.v[j].key, group_keys, G_N_KEYS, path);
        if (k < 0) continue;
        const ynode *v = pairs.v[j].value;
        seen[k] = 1;
        snprintf(key, sizeof key, "%s.%s", path, group_keys[k]);
        if (k == G_NAME) {
            if (get_string(x, v, key, &g->name) == 0 &&
                check_slug(x, v->line, key, g->name, 0, "group name") < 0) {
                free(g->name);
                g->name = NULL;
            }
        } else {
            get_int(x, v, key, 1, 1 << 20, &g->max_loaded);
        }
    }
    for (int k = 0; k < G_N_KEYS; k++)
        if (!seen[k]) {
            snprintf(key, sizeof key, "%s.%s", path, group_keys[k]);
            cfg_err(x, node->line, key, "required key is missing");
        }
    kvlist_free(&pairs);
}

/* ==== Models ==== */

enum {
    M_NAME,
    M_MODEL_PATH,
    M_DEFAULT,
    M_GROUP,
    M_PORT,
    M_JIT,
    M_AUTO_UNLOAD,
    M_IDLE_UNLOAD,
    M_CONTEXT,
    M_MAX_CONC,
    M_QUEUE_SIZE,
    M_QUEUE_TIMEOUT,
    M_LOG_LEVEL,
    M_ALIASES,
    M_THREADS,
    M_CMD,
    M_ENV,
    M_UPSTREAM,
    M_N_KEYS
};
static const char *const model_keys[M_N_KEYS] = {"name",
                                                 "model_path",
                                                 "default",
                                                 "group",
                                                 "port",
                                                 "jit_enabled",
                                                 "auto_unload_minutes",
                                                 "idle_unload",
                                                 "context_length",
                                                 "max_concurrency",
                                                 "queue_size",
                                                 "queue_timeout",
                                                 "log_level",
                                                 "aliases",
                                                 "threads",
                                                 "cmd",
                                                 "env",
                                                 "upstream"};

/* What the checks across models need to know about one model beyond hub_model_config. */
typedef struct model_lines {
    int key[M_N_KEYS]; /* line of each key given, 0 = absent */
    int *alias;        /* line of each alias */
} model_lines;

static void parse_aliases(cfg_ctx *x, const ynode *v, const char *key, hub_model_config *m,
                          model_lines *ml) {
    if (v->kind != Y_SEQ) {
        char d[256];
        cfg_err(x, v->line, key, "expected a list of names, got %s", describe(v, d, sizeof d));
        return;
    }
    m->aliases = mh_xcalloc((size_t)v->n_items + 1, sizeof *m->aliases);
    ml->alias = mh_xcalloc((size_t)v->n_items + 1, sizeof *ml->alias);
    for (int i = 0; i < v->n_items; i++) {
        char item[160];
        snprintf(item, sizeof item, "%s[%d]", key, i);
        char *s = NULL;
        if (get_string(x, v->items[i], item, &s) < 0) continue;
        if (check_slug(x, v->items[i]->line, item, s, 1, "alias") < 0) {
            free(s);
            continue;
        }
        ml->alias[m->n_aliases] = v->items[i]->line;
        m->aliases[m->n_aliases++] = s;
    }
}

static void add_env(hub_model_config *m, const char *name, size_t name_len, const char *value) {
    mh_buf b = {0};
    mh_buf_append(&b, name, name_len);
    mh_buf_printf(&b, "=%s", value);
    m->env[m->n_env++] = b.data;
}

/* env: a mapping NAME: value (any scalar; null is an error) or a list of "NAME=value". */
static void parse_env(cfg_ctx *x, const ynode *v, const char *key, hub_model_config *m) {
    char d[256], buf[64], item[192];
    strmap seen = {0};
    if (v->kind == Y_MAP) {
        kvlist pairs = {0};
        map_pairs(x, v, key, &pairs, 0);
        m->env = mh_xcalloc((size_t)pairs.n + 1, sizeof *m->env);
        for (int i = 0; i < pairs.n; i++) {
            const ynode *k = pairs.v[i].key, *val = pairs.v[i].value;
            snprintf(item, sizeof item, "%s.%s", key, shown(k->text, k->len, buf, sizeof buf));
            if (!is_env_name(k->text, k->len)) {
                cfg_err(x, k->line, item,
                        "not a valid environment variable name (letters, digits and '_', not "
                        "starting with a digit)");
                continue;
            }
            if (val->kind != Y_SCALAR || is_null(val) || memchr(val->text, 0, val->len)) {
                cfg_err(x, val->line, item, "expected a string value, got %s%s",
                        describe(val, d, sizeof d), is_null(val) ? " (write \"\" for empty)" : "");
                continue;
            }
            add_env(m, k->text, k->len, val->text);
        }
        kvlist_free(&pairs);
    } else if (v->kind == Y_SEQ) {
        m->env = mh_xcalloc((size_t)v->n_items + 1, sizeof *m->env);
        for (int i = 0; i < v->n_items; i++) {
            const ynode *it = v->items[i];
            snprintf(item, sizeof item, "%s[%d]", key, i);
            char *s = NULL;
            if (get_string(x, it, item, &s) < 0) continue;
            const char *eq = strchr(s, '=');
            size_t nl = eq ? (size_t)(eq - s) : 0;
            if (!eq || !is_env_name(s, nl)) {
                cfg_err(x, it->line, item,
                        "expected \"NAME=value\" with a valid variable name, "
                        "got %s",
                        describe(it, d, sizeof d));
            } else if (strmap_get(&seen, s, nl)) {
                cfg_err(x, it->line, item, "variable '%s' is set twice",
                        shown(s, nl, buf, sizeof buf));
            } else {
                strmap_put(&seen, s, nl, (void *)1);
                add_env(m, s, nl, eq + 1);
            }
            free(s);
        }
    } else {
        cfg_err(x, v->line, key,
                "expected a mapping of NAME: value or a list of \"NAME=value\", "
                "got %s",
                describe(v, d, sizeof d));
    }
    strmap_free(&seen);
}

static void parse_model(cfg_ctx *x, const hub_config *c, const ynode *node, int i,
                        hub_model_config *m, model_lines *ml) {
    char path[64], key[128];
    snprintf(path, sizeof path, "models[%d]", i);
    m->line = node->line;
    m->jit_enabled = 1;
    m->max_concurrency = 1;
    m->queue_size = 64;
    m->queue_timeout = c->queue_timeout;
    m->log_level = mh_xstrdup(c->log_level);
    if (node->kind != Y_MAP) {
        char d[256];
        cfg_err(x, node->line, path, "expected a mapping with at least a name, got %s",
                describe(node, d, sizeof d));
        return;
    }
    kvlist pairs = {0};
    map_pairs(x, node, path, &pairs, 0);
    const ynode *val[M_N_KEYS] = {0};
    char *raw_model_path = NULL;
    for (int j = 0; j < pairs.n; j++) {
        int k = key_index(x, pairs.v[j].key, model_keys, M_N_KEYS, path);
        if (k < 0) continue;
        const ynode *v = pairs.v[j].value;
        val[k] = v;
        ml->key[k] = pairs.v[j].key->line;
        snprintf(key, sizeof key, "%s.%s", path, model_keys[k]);
        double minutes = 0;
        switch (k) {
        case M_NAME:
            if (get_string(x, v, key, &m->name) == 0 &&
                check_slug(x, v->line, key, m->name, 0, "model name") < 0) {
                free(m->name);
                m->name = NULL;
            }
            break;
        case M_MODEL_PATH:
            if (get_string(x, v, key, &raw_model_path) == 0 && !*raw_model_path) {
                cfg_err(x, v->line, key, "is empty");
                free(raw_model_path);
                raw_model_path = NULL;
            }
            break;
        case M_DEFAULT: get_bool(x, v, key, &m->is_default); break;
        case M_GROUP: get_string(x, v, key, &m->group); break;
        case M_PORT: get_int(x, v, key, 1, 65535, &m->port); break;
        case M_JIT: get_bool(x, v, key, &m->jit_enabled); break;
        case M_AUTO_UNLOAD:
            if (get_seconds(x, v, key, 0, 1e9 / 60, "minutes", &minutes) == 0)
                m->idle_unload_s = minutes * 60;
            break;
        case M_IDLE_UNLOAD: get_seconds(x, v, key, 0, 1e9, "seconds", &m->idle_unload_s); break;
        case M_CONTEXT: get_int(x, v, key, 0, 1 << 20, &m->context_length); break;
        case M_MAX_CONC: get_int(x, v, key, 1, 256, &m->max_concurrency); break;
        case M_QUEUE_SIZE: get_int(x, v, key, 0, 1 << 20, &m->queue_size); break;
        case M_QUEUE_TIMEOUT: get_seconds(x, v, key, 0, 1e6, "seconds", &m->queue_timeout); break;
        case M_LOG_LEVEL: get_log_level(x, v, key, &m->log_level); break;
        case M_ALIASES: parse_aliases(x, v, key, m, ml); break;
        case M_THREADS: get_int(x, v, key, 0, 1024, &m->threads); break;
        case M_CMD:
            if (get_string(x, v, key, &m->cmd) == 0 && !m->cmd[strspn(m->cmd, " \t\r\n")]) {
                cfg_err(x, v->line, key, "is empty");
                free(m->cmd);
                m->cmd = NULL;
            }
            break;
        case M_ENV: parse_env(x, v, key, m); break;
        case M_UPSTREAM:
            if (get_string(x, v, key, &m->upstream) == 0 &&
                check_upstream(x, v->line, key, m->upstream) < 0) {
                free(m->upstream);
                m->upstream = NULL;
            }
            break;
        }
    }
    kvlist_free(&pairs);

    if (!val[M_NAME]) {
        snprintf(key, sizeof key, "%s.name", path);
        cfg_err(x, node->line, key, "required key is missing");
    }
    if (val[M_AUTO_UNLOAD] && val[M_IDLE_UNLOAD]) {
        int later = MH_MAX(ml->key[M_AUTO_UNLOAD], ml->key[M_IDLE_UNLOAD]);
        snprintf(key, sizeof key, "%s.%s", path,
                 later == ml->key[M_IDLE_UNLOAD] ? "idle_unload" : "auto_unload_minutes");
        cfg_err(x, later, key,
                "give either idle_unload (seconds) or auto_unload_minutes, not both");
    }

    /* The backend, and the keys that make no sense beside it. */
    if (val[M_UPSTREAM]) {
        m->backend = HUB_BACKEND_UPSTREAM;
        static const int not_with_upstream[] = {
            M_MODEL_PATH, M_CMD, M_PORT,        M_ENV,         M_THREADS, M_CONTEXT,
            M_DEFAULT,    M_JIT, M_IDLE_UNLOAD, M_AUTO_UNLOAD, M_GROUP,   M_LOG_LEVEL};
        for (size_t j = 0; j < MH_ARRAY_LEN(not_with_upstream); j++) {
            int k = not_with_upstream[j];
            if (!val[k]) continue;
            snprintf(key, sizeof key, "%s.%s", path, model_keys[k]);
            cfg_err(x, ml->key[k], key,
                    "not allowed with 'upstream' (the hub starts and loads nothing for it)");
        }
    } else if (val[M_CMD]) {
        m->backend = HUB_BACKEND_EXTERNAL;
        static const int not_with_cmd[] = {M_THREADS, M_CONTEXT};
        for (size_t j = 0; j < MH_ARRAY_LEN(not_with_cmd); j++) {
            int k = not_with_cmd[j];
            if (!val[k]) continue;
            snprintf(key, sizeof key, "%s.%s", path, model_keys[k]);
            cfg_err(x, ml->key[k], key, "not allowed with 'cmd' (pass it in the command itself)");
        }
        if (m->cmd) {
            int uses_port, uses_model_path;
            snprintf(key, sizeof key, "%s.cmd", path);
            check_cmd(x, val[M_CMD]->line, key, m->cmd, &uses_port, &uses_model_path);
            if (uses_model_path && !val[M_MODEL_PATH])
                cfg_err(x, val[M_CMD]->line, key, "uses ${MODEL_PATH} but model_path is not set");
            if (!uses_port && !val[M_PORT])
                cfg_err(x, val[M_CMD]->line, key,
                        "has no ${PORT}, so 'port' must say where the server listens");
        }
    } else {
        m->backend = HUB_BACKEND_WORKER;
        if (!val[M_MODEL_PATH]) {
            snprintf(key, sizeof key, "%s.model_path", path);
            cfg_err(x, node->line, key, "required key is missing (or give 'cmd' or 'upstream')");
        }
    }
    if (raw_model_path && m->backend != HUB_BACKEND_UPSTREAM) {
        m->model_path = resolve_path(x, raw_model_path);
        snprintf(key, sizeof key, "%s.model_path", path);
        check_model_file(x, val[M_MODEL_PATH]->line, key, m->model_path,
                         m->backend == HUB_BACKEND_WORKER);
    }
    free(raw_model_path);
}

/* Names, aliases and ports unique; groups defined; a group can hold what loads at start. */
static void check_models(cfg_ctx *x, hub_config *c, model_lines *ml) {
    strmap names = {0}, ports = {0};
    char key[160], buf[64], pkey[16];
    for (int i = 0; i < c->n_models; i++) {
        hub_model_config *m = &c->models[i];
        if (!m->name) continue;
        intptr_t first = (intptr_t)strmap_get(&names, m->name, strlen(m->name));
        if (first) {
            snprintf(key, sizeof key, "models[%d].name", i);
            cfg_err(x, ml[i].key[M_NAME], key, "duplicate model name '%s' (first at line %d)",
                    m->name, ml[first - 1].key[M_NAME]);
        } else {
            strmap_put(&names, m->name, strlen(m->name), (void *)(intptr_t)(i + 1));
        }
    }
    strmap aliases = {0}; /* alias -> model index + 1; lines from ml[].alias via a second map */
    strmap alias_line = {0};
    for (int i = 0; i < c->n_models; i++) {
        hub_model_config *m = &c->models[i];
        for (int a = 0; a < m->n_aliases; a++) {
            const char *s = m->aliases[a];
            size_t n = strlen(s);
            snprintf(key, sizeof key, "models[%d].aliases[%d]", i, a);
            int line = ml[i].alias[a];
            intptr_t owner = (intptr_t)strmap_get(&names, s, n);
            intptr_t other = (intptr_t)strmap_get(&aliases, s, n);
            if (owner && owner - 1 == i) {
                cfg_err(x, line, key, "alias '%s' is the model's own name", s);
            } else if (owner) {
                cfg_err(x, line, key, "alias '%s' is already the name of models[%d] (line %d)", s,
                        (int)owner - 1, ml[owner - 1].key[M_NAME]);
            } else if (other) {
                int oline = (int)(intptr_t)strmap_get(&alias_line, s, n);
                if (other - 1 == i)
                    cfg_err(x, line, key, "alias '%s' is listed twice (first at line %d)", s,
                            oline);
                else
                    cfg_err(x, line, key, "alias '%s' is already an alias of model '%s' (line %d)",
                            s, c->models[other - 1].name ? c->models[other - 1].name : "?", oline);
            } else {
                strmap_put(&aliases, s, n, (void *)(intptr_t)(i + 1));
                strmap_put(&alias_line, s, n, (void *)(intptr_t)line);
            }
        }
    }
    for (int i = 0; i < c->n_models; i++) {
        hub_model_config *m = &c->models[i];
        if (!m->port) continue;
        snprintf(key, sizeof key, "models[%d].port", i);
        int n = snprintf(pkey, sizeof pkey, "%d", m->port);
        intptr_t first = (intptr_t)strmap_get(&ports, pkey, (size_t)n);
        if (m->port == c->port)
            cfg_err(x, ml[i].key[M_PORT], key, "port %d is the hub's own port", m->port);
        else if (first)
            cfg_err(x, ml[i].key[M_PORT], key, "port %d is already used by model '%s' (line %d)",
                    m->port, c->models[first - 1].name ? c->models[first - 1].name : "?",
                    ml[first - 1].key[M_PORT]);
        else
            strmap_put(&ports, pkey, (size_t)n, (void *)(intptr_t)(i + 1));
    }
    /* groups: defined, and big enough for the members loaded at start */
    int *loaded_at_start = mh_xcalloc((size_t)c->n_groups + 1, sizeof *loaded_at_start);
    for (int i = 0; i < c->n_models; i++) {
        hub_model_config *m = &c->models[i];
        if (!m->group) continue;
        snprintf(key, sizeof key, "models[%d].group", i);
        int g = -1;
        for (int j = 0; j < c->n_groups && g < 0; j++)
            if (c->groups[j].name && strcmp(c->groups[j].name, m->group) == 0) g = j;
        if (g < 0) {
            cfg_err(x, ml[i].key[M_GROUP], key, "group '%s' is not defined",
                    shown(m->group, strlen(m->group), buf, sizeof buf));
            continue;
        }
        if (m->is_default && !m->jit_enabled && c->groups[g].max_loaded > 0 &&
            ++loaded_at_start[g] > c->groups[g].max_loaded)
            cfg_err(x, ml[i].key[M_GROUP], key,
                    "group '%s' holds %d loaded model%s, but this is default model number %d "
                    "with jit_enabled: false (they load at start)",
                    m->group, c->groups[g].max_loaded, c->groups[g].max_loaded == 1 ? "" : "s",
                    loaded_at_start[g]);
    }
    free(loaded_at_start);
    strmap_free(&names);
    strmap_free(&aliases);
    strmap_free(&alias_line);
    strmap_free(&ports);
}

/* ==== Top level ==== */

enum {
    T_HOST,
    T_PORT,
    T_MODEL_STARTING_PORT,
    T_LOG_PATH,
    T_LOG_LEVEL,
    T_STATUS_PAGE,
    T_API_KEYS,
    T_ADMIN_KEY,
    T_START_TIMEOUT,
    T_STOP_GRACE,
    T_LOG_MAX_BYTES,
    T_STATE_DIR,
    T_QUEUE_TIMEOUT,
    T_MODELS,
    T_GROUPS,
    T_ALLOWED_HOSTS,
    T_CORS_ORIGINS,
    T_HEALTH_INTERVAL,
    T_HEALTH_TIMEOUT,
    T_N_KEYS
};
static const char *const top_keys[T_N_KEYS] = {"host",
                                               "port",
                                               "model_starting_port",
                                               "log_path",
                                               "log_level",
                                               "enable_status_page",
                                               "api_keys",
                                               "admin_key",
                                               "start_timeout",
                                               "stop_grace",
                                               "log_max_bytes",
                                               "state_dir",
                                               "queue_timeout",
                                               "models",
                                               "groups",
                                               "allowed_hosts",
                                               "cors_origins",
                                               "health_check_interval",
                                               "health_check_timeout"};

/* A list of tokens (keys, host names, origins) into a NULL-terminated array. */
static void parse_token_list(cfg_ctx *x, const ynode *v, const char *name, const char *what,
                             char ***out, int *n) {
    if (v->kind != Y_SEQ) {
        char d[256];
        cfg_err(x, v->line, name, "expected a list of %ss, got %s", what, describe(v, d, sizeof d));
        return;
    }
    *out = mh_xcalloc((size_t)v->n_items + 1, sizeof **out);
    for (int i = 0; i < v->n_items; i++) {
        char key[48];
        snprintf(key, sizeof key, "%s[%d]", name, i);
        char *s = NULL;
        if (get_token(x, v->items[i], key, what, &s) == 0) (*out)[(*n)++] = s;
    }
}

static void parse_api_keys(cfg_ctx *x, const ynode *v, hub_config *c) {
    parse_token_list(x, v, "api_keys", "key", &c->api_keys, &c->n_api_keys);
}

static void parse_cors_origins(cfg_ctx *x, const ynode *v, hub_config *c) {
    parse_token_list(x, v, "cors_origins", "origin", &c->cors_origins, &c->n_cors_origins);
    for (int i = 0; i < c->n_cors_origins; i++) {
        const char *o = c->cors_origins[i];
        if (strncmp(o, "http://", 7) != 0 && strncmp(o, "https://", 8) != 0) {
            char key[48];
            snprintf(key, sizeof key, "cors_origins[%d]", i);
            cfg_err(x, v->items[i]->line, key,
                    "an origin is scheme://host[:port] (http or https), got '%s'", o);
        }
    }
}

static char *path_value(cfg_ctx *x, const ynode *v, const char *key) {
    char *raw = NULL;
    if (get_string(x, v, key, &raw) < 0) return NULL;
    if (!*raw) {
        cfg_err(x, v->line, key, "is empty");
        free(raw);
        return NULL;
    }
    char *abs = resolve_path(x, raw);
    free(raw);
    return abs;
}

static void parse_top(cfg_ctx *x, const ynode *root, hub_config *c) {
    kvlist pairs = {0};
    map_pairs(x, root, NULL, &pairs, 0);
    const ynode *val[T_N_KEYS] = {0};
    for (int j = 0; j < pairs.n; j++) {
        const ynode *k = pairs.v[j].key;
        if (k->len >= 2 && memcmp(k->text, "x-", 2) == 0) continue; /* extension: anchors */
        int i = key_index(x, k, top_keys, T_N_KEYS, NULL);
        if (i < 0) continue;
        val[i] = pairs.v[j].value;
    }
    for (int i = 0; i < T_N_KEYS; i++) {
        const ynode *v = val[i];
        const char *key = top_keys[i];
        if (!v) continue;
        switch (i) {
        case T_HOST: get_token(x, v, key, "the host", &c->host); break;
        case T_PORT: get_int(x, v, key, 1, 65535, &c->port); break;
        case T_MODEL_STARTING_PORT: get_int(x, v, key, 1, 65535, &c->model_starting_port); break;
        case T_LOG_PATH: c->log_path = path_value(x, v, key); break;
        case T_LOG_LEVEL: get_log_level(x, v, key, &c->log_level); break;
        case T_STATUS_PAGE: get_bool(x, v, key, &c->enable_status_page); break;
        case T_API_KEYS: parse_api_keys(x, v, c); break;
        case T_ALLOWED_HOSTS:
            parse_token_list(x, v, key, "host name", &c->allowed_hosts, &c->n_allowed_hosts);
            break;
        case T_CORS_ORIGINS: parse_cors_origins(x, v, c); break;
        case T_HEALTH_INTERVAL:
            get_seconds(x, v, key, 0, 86400, "seconds", &c->health_check_interval);
            break;
        case T_HEALTH_TIMEOUT:
            if (get_seconds(x, v, key, 0, 3600, "seconds", &c->health_check_timeout) == 0 &&
                c->health_check_timeout <= 0) {
                cfg_err(x, v->line, key, "must be more than 0 seconds");
                c->health_check_timeout = 5;
            }
            break;
        case T_ADMIN_KEY: get_token(x, v, key, "the key", &c->admin_key); break;
        case T_START_TIMEOUT:
            if (get_seconds(x, v, key, 0, 86400, "seconds", &c->start_timeout) == 0 &&
                c->start_timeout <= 0) {
                cfg_err(x, v->line, key, "must be more than 0 seconds");
                c->start_timeout = 60;
            }
            break;
        case T_STOP_GRACE: get_seconds(x, v, key, 0, 3600, "seconds", &c->stop_grace); break;
        case T_LOG_MAX_BYTES: get_size(x, v, key, &c->log_max_bytes); break;
        case T_STATE_DIR: c->state_dir = path_value(x, v, key); break;
        case T_QUEUE_TIMEOUT: get_seconds(x, v, key, 0, 1e6, "seconds", &c->queue_timeout); break;
        }
    }
    if (!c->state_dir) c->state_dir = default_state_dir();
    if (!c->log_path) c->log_path = join_path(c->state_dir, "logs");

    /* groups before models: a model's group must name one */
    const ynode *groups = val[T_GROUPS];
    if (groups && groups->kind != Y_SEQ) {
        char d[256];
        cfg_err(x, groups->line, "groups", "expected a list of groups, got %s%s",
                describe(groups, d, sizeof d),
                is_null(groups) ? " (write 'groups: []' for none)" : "");
    } else if (groups) {
        c->groups = mh_xcalloc((size_t)groups->n_items + 1, sizeof *c->groups);
        c->n_groups = groups->n_items;
        strmap seen = {0};
        for (int i = 0; i < groups->n_items; i++) {
            hub_group_config *g = &c->groups[i];
            parse_group(x, groups->items[i], i, g);
            if (!g->name) continue;
            intptr_t first = (intptr_t)strmap_get(&seen, g->name, strlen(g->name));
            if (first) {
                char key[64];
                snprintf(key, sizeof key, "groups[%d].name", i);
                cfg_err(x, groups->items[i]->line, key,
                        "duplicate group name '%s' (first at line %d)", g->name,
                        c->groups[first - 1].line);
                free(g->name);
                g->name = NULL;
            } else {
                strmap_put(&seen, g->name, strlen(g->name), (void *)(intptr_t)(i + 1));
            }
        }
        strmap_free(&seen);
    }

    const ynode *models = val[T_MODELS];
    if (!models) {
        cfg_err(x, root->line, "models", "required key is missing (write 'models: []' for none)");
    } else if (models->kind != Y_SEQ) {
        char d[256];
        cfg_err(x, models->line, "models", "expected a list of models, got %s%s",
                describe(models, d, sizeof d),
                is_null(models) ? " (write 'models: []' for none)" : "");
    } else {
        c->models = mh_xcalloc((size_t)models->n_items + 1, sizeof *c->models);
        c->n_models = models->n_items;
        model_lines *ml = mh_xcalloc((size_t)models->n_items + 1, sizeof *ml);
        for (int i = 0; i < models->n_items; i++)
            parse_model(x, c, models->items[i], i, &c->models[i], &ml[i]);
        check_models(x, c, ml);
        for (int i = 0; i < models->n_items; i++) free(ml[i].alias);
        free(ml);
    }
    kvlist_free(&pairs);
}

/* ==== Public API ==== */

static void free_strv(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static char *dup_or_null(const char *s) {
    return s ? mh_xstrdup(s) : NULL;
}

static char **dup_strv(char *const *v, int n) {
    char **out = mh_xcalloc((size_t)n + 1, sizeof *out);
    for (int i = 0; i < n; i++) out[i] = mh_xstrdup(v[i]);
    return out;
}

void hub_model_config_copy(hub_model_config *dst, const hub_model_config *src) {
    *dst = *src;
    dst->name = dup_or_null(src->name);
    dst->aliases = dup_strv(src->aliases, src->n_aliases);
    dst->model_path = dup_or_null(src->model_path);
    dst->group = dup_or_null(src->group);
    dst->log_level = dup_or_null(src->log_level);
    dst->cmd = dup_or_null(src->cmd);
    dst->env = dup_strv(src->env, src->n_env);
    dst->upstream = dup_or_null(src->upstream);
}

void hub_model_config_clear(hub_model_config *m) {
    free(m->name);
    free_strv(m->aliases, m->n_aliases);
    free(m->model_path);
    free(m->group);
    free(m->log_level);
    free(m->cmd);
    free_strv(m->env, m->n_env);
    free(m->upstream);
    memset(m, 0, sizeof *m);
}

void hub_config_free(hub_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n_models; i++) hub_model_config_clear(&c->models[i]);
    free(c->models);
    for (int i = 0; i < c->n_groups; i++) free(c->groups[i].name);
    free(c->groups);
    free(c->path);
    free(c->host);
    free(c->log_path);
    free(c->log_level);
    free_strv(c->api_keys, c->n_api_keys);
    free_strv(c->allowed_hosts, c->n_allowed_hosts);
    free_strv(c->cors_origins, c->n_cors_origins);
    free(c->admin_key);
    free(c->state_dir);
    free(c);
}

static hub_config *config_defaults(const char *path) {
    hub_config *c = mh_xcalloc(1, sizeof *c);
    c->path = mh_xstrdup(path);
    c->host = mh_xstrdup("127.0.0.1");
    c->port = 8080;
    c->model_starting_port = 47850;
    c->log_level = mh_xstrdup("info");
    c->enable_status_page = 1;
    c->start_timeout = 60;
    c->stop_grace = 10;
    c->health_check_interval = 10;
    c->health_check_timeout = 5;
    c->log_max_bytes = 10LL << 20;
    c->queue_timeout = 120;
    return c;
}

int hub_config_parse(const char *text, size_t len, const char *path, hub_config **out, char *errbuf,
                     size_t errlen) {
    cfg_ctx x = {.file = path ? path : "hub.yaml", .base_dir = base_dir_of(path)};
    hub_config *c = NULL;
    ytree t = {0};
    *out = NULL;
    if (errbuf && errlen) errbuf[0] = 0;
    if (len > HUB_CONFIG_MAX_BYTES) {
        cfg_err(&x, 0, NULL, "the file is too large (%zu bytes; the limit is %d)", len,
                HUB_CONFIG_MAX_BYTES);
    } else if (ytree_build(&x, text, len, &t) == 0) {
        if (!t.root || is_null(t.root)) {
            cfg_err(&x, 1, NULL, "the file is empty (expected a mapping with a 'models' list)");
        } else if (t.root->kind != Y_MAP) {
            char d[256];
            cfg_err(&x, t.root->line, NULL,
                    "the top level must be a mapping (host, port, models, ...), got %s",
                    describe(t.root, d, sizeof d));
        } else {
            c = config_defaults(x.file);
            parse_top(&x, t.root, c);
        }
    }
    ytree_free(&t);
    int rc = 0;
    if (x.n_errors || x.n_unlisted) {
        cfg_flush_errors(&x, errbuf, errlen);
        hub_config_free(c);
        rc = -1;
    } else {
        MH_ASSERT(c);
        *out = c;
    }
    cfg_ctx_free(&x);
    return rc;
}

int hub_config_load(const char *path, hub_config **out, char *errbuf, size_t errlen) {
    *out = NULL;
    if (errbuf && errlen) errbuf[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    const char *problem = NULL;
    char why[256];
    struct stat st;
    if (fd < 0) {
        snprintf(why, sizeof why, "cannot open: %s", strerror(errno));
        problem = why;
    } else if (fstat(fd, &st) < 0) {
        snprintf(why, sizeof why, "cannot stat: %s", strerror(errno));
        problem = why;
    } else if (!S_ISREG(st.st_mode)) {
        problem = S_ISDIR(st.st_mode) ? "is a directory, not a file" : "is not a regular file";
    } else if (st.st_size > HUB_CONFIG_MAX_BYTES) {
        snprintf(why, sizeof why, "the file is too large (%lld bytes; the limit is %d)",
                 (long long)st.st_size, HUB_CONFIG_MAX_BYTES);
        problem = why;
    }
    char *text = NULL;
    size_t n = 0;
    if (!problem) { /* read at most the limit + 1, in case the file grows meanwhile */
        text = mh_xmalloc(HUB_CONFIG_MAX_BYTES + 2);
        for (;;) {
            ssize_t got = read(fd, text + n, HUB_CONFIG_MAX_BYTES + 1 - n);
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) {
                snprintf(why, sizeof why, "cannot read: %s", strerror(errno));
                problem = why;
                break;
            }
            if (got == 0) break;
            n += (size_t)got;
            if (n > HUB_CONFIG_MAX_BYTES) break;
        }
    }
    if (fd >= 0) close(fd);
    if (problem) {
        if (errbuf && errlen) snprintf(errbuf, errlen, "%s: %s\n", path, problem);
        free(text);
        return -1;
    }
    int rc = hub_config_parse(text, n, path, out, errbuf, errlen);
    free(text);
    return rc;
}

const hub_model_config *hub_config_find_model(const hub_config *c, const char *name_or_alias) {
    for (int i = 0; i < c->n_models; i++) {
        const hub_model_config *m = &c->models[i];
        if (m->name && strcmp(m->name, name_or_alias) == 0) return m;
        for (int a = 0; a < m->n_aliases; a++)
            if (strcmp(m->aliases[a], name_or_alias) == 0) return m;
    }
    return NULL;
}

const hub_group_config *hub_config_find_group(const hub_config *c, const char *name) {
    for (int i = 0; i < c->n_groups; i++)
        if (c->groups[i].name && strcmp(c->groups[i].name, name) == 0) return &c->groups[i];
    return NULL;
}

static int str_eq(const char *a, const char *b) {
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static int strv_eq(char *const *a, int na, char *const *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (!str_eq(a[i], b[i])) return 0;
    return 1;
}

int hub_model_config_needs_restart(const hub_model_config *a, const hub_model_config *b) {
    return a->backend != b->backend || !str_eq(a->model_path, b->model_path) ||
           a->port != b->port || a->context_length != b->context_length ||
           a->max_concurrency != b->max_concurrency || a->queue_size != b->queue_size ||
           a->queue_timeout != b->queue_timeout || !str_eq(a->log_level, b->log_level) ||
           a->threads != b->threads || !str_eq(a->cmd, b->cmd) ||
           !strv_eq(a->env, a->n_env, b->env, b->n_env) || !str_eq(a->upstream, b->upstream);
}

int hub_model_config_equal(const hub_model_config *a, const hub_model_config *b) {
    return !hub_model_config_needs_restart(a, b) && str_eq(a->name, b->name) &&
           strv_eq(a->aliases, a->n_aliases, b->aliases, b->n_aliases) &&
           a->is_default == b->is_default && str_eq(a->group, b->group) &&
           a->jit_enabled == b->jit_enabled && a->idle_unload_s == b->idle_unload_s;
}

static int copy_out(char *out, size_t outlen, const char *s) {
    if (strlen(s) >= outlen) return -2;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

int hub_config_find(const char *explicit_path, char *out, size_t outlen) {
    if (!out || outlen == 0) return -2;
    if (explicit_path) return copy_out(out, outlen, explicit_path);
    const char *env = getenv("MODELHUB_CONFIG");
    if (env && *env) return copy_out(out, outlen, env);
    struct stat st;
    if (stat("hub.yaml", &st) == 0 && !S_ISDIR(st.st_mode))
        return copy_out(out, outlen, "hub.yaml");
    char *user;
    const char *xdg = getenv("XDG_CONFIG_HOME");
    char pwbuf[1024];
    const char *home = home_dir(pwbuf, sizeof pwbuf);
    if (xdg && xdg[0] == '/')
        user = join_path(xdg, "modelhub/hub.yaml");
    else if (home)
        user = join_path(home, ".config/modelhub/hub.yaml");
    else
        user = NULL;
    int rc;
    if (user && stat(user, &st) == 0 && !S_ISDIR(st.st_mode)) {
        rc = copy_out(out, outlen, user);
    } else {
        mh_buf looked = {0};
        mh_buf_printf(&looked, "./hub.yaml%s%s", user ? ", " : "", user ? user : "");
        rc = copy_out(out, outlen, looked.data) < 0 ? -2 : -1;
        mh_buf_free(&looked);
    }
    free(user);
    return rc;
}
