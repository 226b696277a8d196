/* grammar.c — see grammar.h.
 *
 * Layout: elements live in one flat array; an alternative is a run of elements ending in
 * EL_END; a rule lists where its alternatives start. A stack holds positions in that array, the
 * top last: the element the parse waits for, then where to continue in each enclosing rule.
 * After every move a stack is "expanded" until its top is a byte set (or it is empty, which
 * means the whole grammar matched). A reference whose continuation is the end of its
 * alternative pushes nothing to return to (tail call), so repetitions written as
 * `R := x R | end` run in constant stack height.
 */
#include "engine/grammar.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"

enum { EL_END, EL_BYTES, EL_REF };

typedef struct element {
    uint8_t type;
    int32_t ref;     /* EL_REF: rule index */
    uint32_t set[8]; /* EL_BYTES: bit c set when byte c is allowed */
} element;

typedef struct rule {
    int32_t *alts; /* start of each alternative in grammar.el */
    int n_alts, cap;
} rule;

struct grammar {
    atomic_int refs;
    element *el;
    int n_el, cap_el;
    rule *rules;
    int n_rules, cap_rules;
    int root;
    int32_t *rest; /* (n_el) fewest bytes from each position to the end of its alternative */
};

/* Bounds that keep a compiled grammar and a parse small. */
#define MAX_ELEMENTS   (1 << 21)
#define MAX_RULES      (1 << 18)
#define MAX_STACKS     32 /* parses followed at once; more are dropped (the rest stay valid) */
#define MAX_HEIGHT     64 /* positions in one stack */
#define GENERIC_DEPTH  6  /* nesting of free-form values (json_object, schemas without a type) */
#define INT_DIGITS     15
#define FRAC_DIGITS    6
#define MAX_LENGTH_CAP 4096 /* largest maxLength accepted */

/* ==== Building ==== */

/* An alternative under construction. */
typedef struct seq {
    element *el;
    int n, cap;
} seq;

static void seq_push(seq *s, element e) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->el = mh_xrealloc(s->el, (size_t)s->cap * sizeof *s->el);
    }
    s->el[s->n++] = e;
}

static element bytes_range(int lo, int hi) {
    element e = {.type = EL_BYTES};
    for (int c = lo; c <= hi; c++) e.set[c >> 5] |= 1u << (c & 31);
    return e;
}

static void seq_range(seq *s, int lo, int hi) {
    seq_push(s, bytes_range(lo, hi));
}

static void seq_lit(seq *s, const char *text, size_t len) {
    for (size_t i = 0; i < len; i++) seq_range(s, (unsigned char)text[i], (unsigned char)text[i]);
}

static void seq_ref(seq *s, int r) {
    seq_push(s, (element){.type = EL_REF, .ref = r});
}

static int new_rule(grammar *g) {
    if (g->n_rules == g->cap_rules) {
        g->cap_rules = g->cap_rules ? g->cap_rules * 2 : 64;
        g->rules = mh_xrealloc(g->rules, (size_t)g->cap_rules * sizeof *g->rules);
    }
    g->rules[g->n_rules] = (rule){0};
    return g->n_rules++;
}

/* Append s as an alternative of rule r and empty s. */
static void add_alt(grammar *g, int r, seq *s) {
    if (g->n_el + s->n + 1 > g->cap_el) {
        while (g->n_el + s->n + 1 > g->cap_el) g->cap_el = g->cap_el ? g->cap_el * 2 : 1024;
        g->el = mh_xrealloc(g->el, (size_t)g->cap_el * sizeof *g->el);
    }
    rule *ru = &g->rules[r];
    if (ru->n_alts == ru->cap) {
        ru->cap = ru->cap ? ru->cap * 2 : 4;
        ru->alts = mh_xrealloc(ru->alts, (size_t)ru->cap * sizeof *ru->alts);
    }
    ru->alts[ru->n_alts++] = g->n_el;
    if (s->n) memcpy(g->el + g->n_el, s->el, (size_t)s->n * sizeof *s->el);
    g->n_el += s->n;
    g->el[g->n_el++] = (element){.type = EL_END};
    s->n = 0;
}

static grammar *grammar_alloc(void) {
    grammar *g = mh_xcalloc(1, sizeof *g);
    atomic_init(&g->refs, 1);
    return g;
}

grammar *grammar_retain(grammar *g) {
    if (g) atomic_fetch_add(&g->refs, 1);
    return g;
}

void grammar_free(grammar *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (int i = 0; i < g->n_rules; i++) free(g->rules[i].alts);
    free(g->rules);
    free(g->el);
    free(g->rest);
    free(g);
}

/* ==== JSON pieces ==== */

typedef struct compiler {
    grammar *g;
    seq s; /* scratch for the alternative being built (rules are built bottom-up) */
    const json_t *root;
    char *err;
    size_t errlen;
    char path[256];
    int failed;
    int r_sp, r_char, r_uint, r_frac, r_bool, r_null;
    int r_int[2], r_num[2]; /* [nonneg] */
    int r_value[GENERIC_DEPTH + 1];
    struct string_rule_key {
        int min, max, rule;
    } strings[16];
    int n_strings;
} compiler;

static int fail(compiler *c, const char *fmt, const char *what) {
    if (!c->failed) {
        char msg[192];
        snprintf(msg, sizeof msg, fmt, what);
        if (c->path[0])
            snprintf(c->err, c->errlen, "%s at %s", msg, c->path);
        else
            snprintf(c->err, c->errlen, "%s (at the top level)", msg);
    }
    c->failed = 1;
    return -1;
}

/* A rule whose alternatives are the given literals. */
static int literal_rule(compiler *c, const char *const *lits, int n) {
    int r = new_rule(c->g);
    for (int i = 0; i < n; i++) {
        seq_lit(&c->s, lits[i], strlen(lits[i]));
        add_alt(c->g, r, &c->s);
    }
    return r;
}

/* Optional single space. */
static int sp_rule(compiler *c) {
    if (c->r_sp >= 0) return c->r_sp;
    c->r_sp = literal_rule(c, (const char *const[]){"", " "}, 2);
    return c->r_sp;
}

/* One character of a string's contents, as valid UTF-8 or a short escape. */
static int char_rule(compiler *c) {
    if (c->r_char >= 0) return c->r_char;
    grammar *g = c->g;
    int r = c->r_char = new_rule(g);
    element plain = bytes_range(0x20, 0x7f);
    plain.set['"' >> 5] &= ~(1u << ('"' & 31));
    plain.set['\\' >> 5] &= ~(1u << ('\\' & 31));
    seq_push(&c->s, plain);
    add_alt(g, r, &c->s);
    element esc = {.type = EL_BYTES};
    for (const char *p = "\"\\/bfnrt"; *p; p++) esc.set[*p >> 5] |= 1u << (*p & 31);
    seq_range(&c->s, '\\', '\\');
    seq_push(&c->s, esc);
    add_alt(g, r, &c->s);
    /* UTF-8 without overlong forms and surrogates */
    static const int utf8[][4][2] = {
        {{0xc2, 0xdf}, {0x80, 0xbf}},
        {{0xe0, 0xe0}, {0xa0, 0xbf}, {0x80, 0xbf}},
        {{0xe1, 0xec}, {0x80, 0xbf}, {0x80, 0xbf}},
        {{0xed, 0xed}, {0x80, 0x9f}, {0x80, 0xbf}},
        {{0xee, 0xef}, {0x80, 0xbf}, {0x80, 0xbf}},
        {{0xf0, 0xf0}, {0x90, 0xbf}, {0x80, 0xbf}, {0x80, 0xbf}},
        {{0xf1, 0xf3}, {0x80, 0xbf}, {0x80, 0xbf}, {0x80, 0xbf}},
        {{0xf4, 0xf4}, {0x80, 0x8f}, {0x80, 0xbf}, {0x80, 0xbf}},
    };
    for (size_t i = 0; i < MH_ARRAY_LEN(utf8); i++) {
        for (int k = 0; k < 4 && utf8[i][k][0]; k++) seq_range(&c->s, utf8[i][k][0], utf8[i][k][1]);
        add_alt(g, r, &c->s);
    }
    return r;
}

/* A string of min..max characters: T_i (i characters written) := '"' (when i >= min) | char
 * T_(i+1); T_max := '"'. */
static int string_rule(compiler *c, int min, int max) {
    for (int i = 0; i < c->n_strings; i++)
        if (c->strings[i].min == min && c->strings[i].max == max) return c->strings[i].rule;
    grammar *g = c->g;
    int ch = char_rule(c);
    int next = new_rule(g);
    seq_lit(&c->s, "\"", 1);
    add_alt(g, next, &c->s);
    for (int i = max - 1; i >= 0; i--) {
        int r = new_rule(g);
        if (i >= min) {
            seq_lit(&c->s, "\"", 1);
            add_alt(g, r, &c->s);
        }
        seq_ref(&c->s, ch);
        seq_ref(&c->s, next);
        add_alt(g, r, &c->s);
        next = r;
    }
    int r = new_rule(g);
    seq_lit(&c->s, "\"", 1);
    seq_ref(&c->s, next);
    add_alt(g, r, &c->s);
    if (c->n_strings < (int)MH_ARRAY_LEN(c->strings))
        c->strings[c->n_strings++] = (struct string_rule_key){min, max, r};
    return r;
}

/* Up to n more digits: D_k := "" | [0-9] D_(k+1). */
static int digits_rule(compiler *c, int n) {
    grammar *g = c->g;
    int next = -1;
    for (int i = 0; i < n; i++) {
        int r = new_rule(g);
        add_alt(g, r, &c->s); /* nothing more */
        seq_range(&c->s, '0', '9');
        if (next >= 0) seq_ref(&c->s, next);
        add_alt(g, r, &c->s);
        next = r;
    }
    return next;
}

/* An integer of at most INT_DIGITS digits; nonneg: without a minus sign. */
static int int_rule(compiler *c, int nonneg) {
    if (c->r_int[nonneg] >= 0) return c->r_int[nonneg];
    grammar *g = c->g;
    if (c->r_uint < 0) {
        int more = digits_rule(c, INT_DIGITS - 1);
        c->r_uint = new_rule(g);
        seq_lit(&c->s, "0", 1);
        add_alt(g, c->r_uint, &c->s);
        seq_range(&c->s, '1', '9');
        seq_ref(&c->s, more);
        add_alt(g, c->r_uint, &c->s);
    }
    int r = c->r_int[nonneg] = new_rule(g);
    seq_ref(&c->s, c->r_uint);
    add_alt(g, r, &c->s);
    if (!nonneg) {
        seq_lit(&c->s, "-", 1);
        seq_ref(&c->s, c->r_uint);
        add_alt(g, r, &c->s);
    }
    return r;
}

/* An integer, then optionally '.' and at most FRAC_DIGITS digits. */
static int num_rule(compiler *c, int nonneg) {
    if (c->r_num[nonneg] >= 0) return c->r_num[nonneg];
    grammar *g = c->g;
    int in = int_rule(c, nonneg);
    if (c->r_frac < 0) {
        int more = digits_rule(c, FRAC_DIGITS - 1);
        c->r_frac = new_rule(g);
        add_alt(g, c->r_frac, &c->s);
        seq_lit(&c->s, ".", 1);
        seq_range(&c->s, '0', '9');
        seq_ref(&c->s, more);
        add_alt(g, c->r_frac, &c->s);
    }
    int r = c->r_num[nonneg] = new_rule(g);
    seq_ref(&c->s, in);
    seq_ref(&c->s, c->r_frac);
    add_alt(g, r, &c->s);
    return r;
}

static int bool_rule(compiler *c) {
    if (c->r_bool < 0) c->r_bool = literal_rule(c, (const char *const[]){"true", "false"}, 2);
    return c->r_bool;
}

static int null_rule(compiler *c) {
    if (c->r_null < 0) c->r_null = literal_rule(c, (const char *const[]){"null"}, 1);
    return c->r_null;
}

/* T := close | ',' sp item T — the rest of an object's members or an array's items. */
static int list_tail_rule(compiler *c, const char *close, int item) {
    grammar *g = c->g;
    int sp = sp_rule(c);
    int t = new_rule(g);
    seq_lit(&c->s, close, 1);
    add_alt(g, t, &c->s);
    seq_lit(&c->s, ",", 1);
    seq_ref(&c->s, sp);
    seq_ref(&c->s, item);
    seq_ref(&c->s, t);
    add_alt(g, t, &c->s);
    return t;
}

/* Any JSON value nested at most GENERIC_DEPTH - depth more levels. */
static int value_rule(compiler *c, int depth) {
    if (depth > GENERIC_DEPTH) depth = GENERIC_DEPTH;
    if (c->r_value[depth] >= 0) return c->r_value[depth];
    grammar *g = c->g;
    int str = string_rule(c, 0, GRAMMAR_MAX_STRING);
    int num = num_rule(c, 0), bo = bool_rule(c), nu = null_rule(c), sp = sp_rule(c);
    int r = new_rule(g);
    if (depth < GENERIC_DEPTH) {
        int inner = value_rule(c, depth + 1);
        /* object: '{' ( '}' | member M ), M := '}' | ',' sp member M */
        int member = new_rule(g);
        seq_ref(&c->s, str);
        seq_lit(&c->s, ":", 1);
        seq_ref(&c->s, sp);
        seq_ref(&c->s, inner);
        add_alt(g, member, &c->s);
        int more = list_tail_rule(c, "}", member);
        seq_lit(&c->s, "{}", 2);
        add_alt(g, r, &c->s);
        seq_lit(&c->s, "{", 1);
        seq_ref(&c->s, member);
        seq_ref(&c->s, more);
        add_alt(g, r, &c->s);
        /* array: '[' ( ']' | value A ), A := ']' | ',' sp value A */
        int amore = list_tail_rule(c, "]", inner);
        seq_lit(&c->s, "[]", 2);
        add_alt(g, r, &c->s);
        seq_lit(&c->s, "[", 1);
        seq_ref(&c->s, inner);
        seq_ref(&c->s, amore);
        add_alt(g, r, &c->s);
    } else {
        seq_lit(&c->s, "{}", 2);
        add_alt(g, r, &c->s);
        seq_lit(&c->s, "[]", 2);
        add_alt(g, r, &c->s);
    }
    int leaves[] = {str, num, bo, nu};
    for (size_t i = 0; i < MH_ARRAY_LEN(leaves); i++) {
        seq_ref(&c->s, leaves[i]);
        add_alt(g, r, &c->s);
    }
    c->r_value[depth] = r;
    return r;
}

/* Any object: the object alternatives of the free-form value at that depth. */
static int any_object_rule(compiler *c, int depth) {
    grammar *g = c->g;
    int vr = value_rule(c, depth);
    int n_obj = MH_MIN(depth, GENERIC_DEPTH) < GENERIC_DEPTH ? 2 : 1;
    int r = new_rule(g);
    for (int k = 0; k < n_obj; k++) {
        for (int p = g->rules[vr].alts[k]; g->el[p].type != EL_END; p++) seq_push(&c->s, g->el[p]);
        add_alt(g, r, &c->s);
    }
    return r;
}

/* ==== Schemas ==== */

static int compile_schema(compiler *c, const json_t *sch, int depth);

/* Descend into `key` (and an optional index) for error paths; returns the old length. */
static size_t path_push(compiler *c, const char *key, long index) {
    size_t n = strlen(c->path);
    if (index >= 0)
        snprintf(c->path + n, sizeof c->path - n, "%s%s[%ld]", n ? "." : "", key, index);
    else
        snprintf(c->path + n, sizeof c->path - n, "%s%s", n ? "." : "", key);
    return n;
}

static int compile_at(compiler *c, const json_t *sch, int depth, const char *key, long index) {
    size_t n = path_push(c, key, index);
    int r = compile_schema(c, sch, depth);
    if (r >= 0) c->path[n] = '\0';
    return r;
}

/* A literal JSON value (enum, const) as its compact text. */
static int add_literal_alt(compiler *c, int r, const json_t *v) {
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text) return fail(c, "%s", "a value that cannot be written as JSON");
    seq_lit(&c->s, text, strlen(text));
    free(text);
    add_alt(c->g, r, &c->s);
    return 0;
}

static int get_count(compiler *c, const json_t *sch, const char *key, long max, long dflt,
                     long *out) {
    const json_t *v = json_object_get(sch, key);
    *out = dflt;
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
        char what[96];
        snprintf(what, sizeof what, "'%s' must be an integer from 0 to %ld", key, max);
        return fail(c, "%s", what);
    }
    *out = (long)json_integer_value(v);
    return 0;
}

static int compile_object(compiler *c, const json_t *sch, int depth) {
    grammar *g = c->g;
    const json_t *props = json_object_get(sch, "properties");
    const json_t *req = json_object_get(sch, "required");
    const json_t *addl = json_object_get(sch, "additionalProperties");
    if (props && !json_is_object(props)) return fail(c, "%s", "'properties' must be an object");
    if (req && !json_is_array(req)) return fail(c, "%s", "'required' must be an array of names");
    if (addl && !json_is_boolean(addl))
        return fail(c, "%s", "unsupported keyword 'additionalProperties' with a schema value");
    size_t i;
    const json_t *name;
    json_array_foreach(req, i, name) {
        if (!json_is_string(name)) return fail(c, "%s", "'required' must be an array of names");
        if (!props || !json_object_get(props, json_string_value(name)))
            return fail(c, "'required' names '%.64s', which 'properties' does not declare",
                        json_string_value(name));
    }
    size_t n = props ? json_object_size(props) : 0;
    if (n == 0) {
        /* no declared properties: any object when others are allowed, else only {} */
        if (addl && json_is_false(addl)) return literal_rule(c, (const char *const[]){"{}"}, 1);
        return any_object_rule(c, depth / 2);
    }
    /* kv[k]: "name":sp value, in declaration order */
    int *kv = mh_xcalloc(n, sizeof *kv);
    uint8_t *required = mh_xcalloc(n, 1);
    int sp = sp_rule(c);
    const char *key;
    const json_t *sub;
    size_t k = 0;
    json_object_foreach((json_t *)props, key, sub) {
        size_t old = path_push(c, "properties", -1);
        int vr = compile_at(c, sub, depth + 1, key, -1);
        if (vr < 0) {
            free(kv);
            free(required);
            return -1;
        }
        c->path[old] = '\0';
        json_t *js = json_string(key);
        char *text = json_dumps(js, JSON_ENCODE_ANY);
        json_decref(js);
        int r = kv[k] = new_rule(g);
        seq_lit(&c->s, text, strlen(text));
        free(text);
        seq_lit(&c->s, ":", 1);
        seq_ref(&c->s, sp);
        seq_ref(&c->s, vr);
        add_alt(g, r, &c->s);
        json_array_foreach(req, i, name) required[k] |= !strcmp(json_string_value(name), key);
        k++;
    }
    /* first[k] / later[k]: members from k on, with nothing / something written before */
    int first_next = -1, later_next = -1;
    {
        int close = literal_rule(c, (const char *const[]){"}"}, 1);
        first_next = later_next = close;
    }
    for (long m = (long)n - 1; m >= 0; m--) {
        int first = new_rule(g), later = new_rule(g);
        if (!required[m]) {
            seq_ref(&c->s, first_next);
            add_alt(g, first, &c->s);
            seq_ref(&c->s, later_next);
            add_alt(g, later, &c->s);
        }
        seq_ref(&c->s, kv[m]);
        seq_ref(&c->s, later_next);
        add_alt(g, first, &c->s);
        seq_lit(&c->s, ",", 1);
        seq_ref(&c->s, sp);
        seq_ref(&c->s, kv[m]);
        seq_ref(&c->s, later_next);
        add_alt(g, later, &c->s);
        first_next = first;
        later_next = later;
    }
    free(kv);
    free(required);
    int r = new_rule(g);
    seq_lit(&c->s, "{", 1);
    seq_ref(&c->s, first_next);
    add_alt(g, r, &c->s);
    return r;
}

static int compile_array(compiler *c, const json_t *sch, int depth) {
    grammar *g = c->g;
    long min, max;
    if (get_count(c, sch, "minItems", GRAMMAR_MAX_ITEMS, 0, &min) < 0 ||
        get_count(c, sch, "maxItems", GRAMMAR_MAX_ITEMS, -1, &max) < 0)
        return -1;
    if (max >= 0 && max < min) return fail(c, "%s", "'maxItems' is below 'minItems'");
    const json_t *items = json_object_get(sch, "items");
    int elem;
    if (items) {
        if (!json_is_object(items) && !json_is_true(items))
            return fail(c, "%s", "'items' must be a schema object (tuples are not supported)");
        elem = compile_at(c, items, depth + 1, "items", -1);
        if (elem < 0) return -1;
    } else {
        elem = value_rule(c, depth / 2);
    }
    int sp = sp_rule(c);
    /* R_i (i items written) := ']' (when i >= min) | ',' sp elem R_(i+1); unbounded: one
     * R := ']' | ',' sp elem R once past min */
    int next;
    long top = max >= 0 ? max : min;
    if (max >= 0) {
        next = literal_rule(c, (const char *const[]){"]"}, 1);
    } else {
        next = list_tail_rule(c, "]", elem);
    }
    for (long i = top - 1; i >= 1; i--) {
        int r = new_rule(g);
        if (i >= min) {
            seq_lit(&c->s, "]", 1);
            add_alt(g, r, &c->s);
        }
        seq_lit(&c->s, ",", 1);
        seq_ref(&c->s, sp);
        seq_ref(&c->s, elem);
        seq_ref(&c->s, next);
        add_alt(g, r, &c->s);
        next = r;
    }
    int r = new_rule(g);
    if (min == 0) {
        seq_lit(&c->s, "[]", 2);
        add_alt(g, r, &c->s);
    }
    if (top != 0 || max < 0) {
        seq_lit(&c->s, "[", 1);
        seq_ref(&c->s, elem);
        seq_ref(&c->s, next);
        add_alt(g, r, &c->s);
    }
    return r;
}

static int compile_string(compiler *c, const json_t *sch) {
    long min, max;
    if (get_count(c, sch, "minLength", MAX_LENGTH_CAP, 0, &min) < 0 ||
        get_count(c, sch, "maxLength", MAX_LENGTH_CAP, -1, &max) < 0)
        return -1;
    if (max < 0) max = MH_MAX(min, GRAMMAR_MAX_STRING);
    if (max < min) return fail(c, "%s", "'maxLength' is below 'minLength'");
    return string_rule(c, (int)min, (int)max);
}

/* minimum / maximum: only the bounds the number grammar can keep. Its numbers have at most
 * INT_DIGITS digits before the point, so bounds beyond that (such as the safe-integer range
 * schema generators write) hold anyway; minimum 0 drops the minus sign. */
static int number_bounds(compiler *c, const json_t *sch, int *nonneg) {
    const json_t *min = json_object_get(sch, "minimum"), *max = json_object_get(sch, "maximum");
    const double reach = 1e15; /* 10^INT_DIGITS */
    if (min &&
        (!json_is_number(min) || (json_number_value(min) > -reach && json_number_value(min) != 0)))
        return fail(c, "%s", "unsupported keyword 'minimum' (only 0 or at most -1e15)");
    if (max && (!json_is_number(max) || json_number_value(max) < reach))
        return fail(c, "%s", "unsupported keyword 'maximum' (only at least 1e15)");
    *nonneg = min && json_number_value(min) == 0;
    return 0;
}

static int compile_type(compiler *c, const json_t *sch, const char *type, int depth) {
    if (!strcmp(type, "object")) return compile_object(c, sch, depth);
    if (!strcmp(type, "array")) return compile_array(c, sch, depth);
    if (!strcmp(type, "string")) return compile_string(c, sch);
    if (!strcmp(type, "number") || !strcmp(type, "integer")) {
        int nonneg = 0;
        if (number_bounds(c, sch, &nonneg) < 0) return -1;
        return !strcmp(type, "number") ? num_rule(c, nonneg) : int_rule(c, nonneg);
    }
    if (!strcmp(type, "boolean")) return bool_rule(c);
    if (!strcmp(type, "null")) return null_rule(c);
    return fail(c,
                "'type' must name a JSON type (object, array, string, number, integer, "
                "boolean, null), not '%.32s'",
                type);
}

/* Keywords read here, and annotations that change nothing. */
static const char *const known_keywords[] = {
    "type",        "properties", "required",    "additionalProperties",
    "items",       "minItems",   "maxItems",    "minLength",
    "maxLength",   "enum",       "const",       "anyOf",
    "$ref",        "$defs",      "definitions", "title",
    "description", "default",    "examples",    "$schema",
    "$id",         "$comment",   "deprecated",  "readOnly",
    "writeOnly",   "strict",     "minimum",     "maximum",
};

/* "#/$defs/name" or "#/definitions/name" in the root schema. */
static const json_t *resolve_ref(compiler *c, const json_t *ref) {
    const char *s = json_string_value(ref);
    if (!s) return NULL;
    const char *name = NULL, *section = NULL;
    if (!strncmp(s, "#/$defs/", 8)) section = "$defs", name = s + 8;
    if (!strncmp(s, "#/definitions/", 14)) section = "definitions", name = s + 14;
    if (!name || strchr(name, '/') || strchr(name, '~')) return NULL;
    return json_object_get(json_object_get(c->root, section), name);
}

static int compile_schema(compiler *c, const json_t *sch, int depth) {
    if (c->failed) return -1;
    if (depth > GRAMMAR_MAX_DEPTH) {
        char what[16];
        snprintf(what, sizeof what, "%d", GRAMMAR_MAX_DEPTH);
        return fail(c, "the schema nests deeper than %s levels", what);
    }
    if (c->g->n_el > MAX_ELEMENTS || c->g->n_rules > MAX_RULES)
        return fail(c, "%s", "the schema is too large");
    if (json_is_true(sch)) return value_rule(c, depth / 2);
    if (!json_is_object(sch)) return fail(c, "%s", "a schema must be an object");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)sch, key, v) {
        int known = 0;
        for (size_t i = 0; i < MH_ARRAY_LEN(known_keywords); i++)
            known |= !strcmp(known_keywords[i], key);
        if (!known) return fail(c, "unsupported keyword '%.64s'", key);
    }
    const json_t *ref = json_object_get(sch, "$ref");
    if (ref) {
        const json_t *target = resolve_ref(c, ref);
        if (!target)
            return fail(c, "%s",
                        "unsupported keyword '$ref' (only \"#/$defs/name\" in the same schema)");
        return compile_at(c, target, depth + 1, "$ref", -1);
    }
    const json_t *en = json_object_get(sch, "enum");
    const json_t *cn = json_object_get(sch, "const");
    if (en || cn) {
        if (en && (!json_is_array(en) || json_array_size(en) == 0))
            return fail(c, "%s", "'enum' must be a non-empty array");
        int r = new_rule(c->g);
        if (cn) return add_literal_alt(c, r, cn) < 0 ? -1 : r;
        size_t i;
        json_array_foreach(en, i, v) if (add_literal_alt(c, r, v) < 0) return -1;
        return r;
    }
    const json_t *any = json_object_get(sch, "anyOf");
    const json_t *type = json_object_get(sch, "type");
    if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0)
            return fail(c, "%s", "'anyOf' must be a non-empty array of schemas");
        if (type) return fail(c, "%s", "'anyOf' beside 'type' is not supported");
        size_t n = json_array_size(any);
        int *alts = mh_xcalloc(n, sizeof *alts);
        for (size_t i = 0; i < n; i++)
            if ((alts[i] = compile_at(c, json_array_get(any, i), depth + 1, "anyOf", (long)i)) <
                0) {
                free(alts);
                return -1;
            }
        int r = new_rule(c->g);
        for (size_t i = 0; i < n; i++) {
            seq_ref(&c->s, alts[i]);
            add_alt(c->g, r, &c->s);
        }
        free(alts);
        return r;
    }
    if (json_is_string(type)) return compile_type(c, sch, json_string_value(type), depth);
    if (json_is_array(type)) {
        size_t n = json_array_size(type);
        if (n == 0) return fail(c, "%s", "'type' must not be an empty array");
        int *alts = mh_xcalloc(n, sizeof *alts);
        for (size_t i = 0; i < n; i++) {
            const char *t = json_string_value(json_array_get(type, i));
            alts[i] = t ? compile_type(c, sch, t, depth)
                        : fail(c, "%s", "'type' must be a string or an array of strings");
            if (alts[i] < 0) {
                free(alts);
                return -1;
            }
        }
        int r = new_rule(c->g);
        for (size_t i = 0; i < n; i++) {
            seq_ref(&c->s, alts[i]);
            add_alt(c->g, r, &c->s);
        }
        free(alts);
        return r;
    }
    if (type) return fail(c, "%s", "'type' must be a string or an array of strings");
    /* no type: take it from the keywords, else any value */
    if (json_object_get(sch, "properties") || json_object_get(sch, "required") ||
        json_object_get(sch, "additionalProperties"))
        return compile_object(c, sch, depth);
    if (json_object_get(sch, "items") || json_object_get(sch, "minItems") ||
        json_object_get(sch, "maxItems"))
        return compile_array(c, sch, depth);
    if (json_object_get(sch, "minLength") || json_object_get(sch, "maxLength"))
        return compile_string(c, sch);
    return value_rule(c, depth / 2);
}

static void compiler_init(compiler *c, grammar *g, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->g = g;
    c->err = err;
    c->errlen = errlen;
    c->r_sp = c->r_char = c->r_uint = c->r_frac = c->r_bool = c->r_null = -1;
    c->r_int[0] = c->r_int[1] = c->r_num[0] = c->r_num[1] = -1;
    for (int i = 0; i <= GENERIC_DEPTH; i++) c->r_value[i] = -1;
}

#define FAR 0x3fffffff /* no finite completion known (yet) */

/* rest[]: the fewest bytes that complete each position's alternative, by fixpoint over the
 * rules' shortest lengths (every rule the compiler makes has a finite one). */
static void finish_grammar(grammar *g) {
    int32_t *shortest = malloc((size_t)g->n_rules * sizeof *shortest);
    g->rest = malloc((size_t)MH_MAX(g->n_el, 1) * sizeof *g->rest);
    MH_ASSERT(shortest && g->rest);
    for (int r = 0; r < g->n_rules; r++) shortest[r] = FAR;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int r = 0; r < g->n_rules; r++)
            for (int a = 0; a < g->rules[r].n_alts; a++) {
                long len = 0;
                for (int p = g->rules[r].alts[a]; g->el[p].type != EL_END && len < FAR; p++)
                    len += g->el[p].type == EL_BYTES ? 1 : shortest[g->el[p].ref];
                if (len < shortest[r]) shortest[r] = (int32_t)len, changed = 1;
            }
    }
    for (int p = g->n_el - 1; p >= 0; p--) {
        const element *e = &g->el[p];
        long v = e->type == EL_END
                     ? 0
                     : (e->type == EL_BYTES ? 1 : shortest[e->ref]) + (long)g->rest[p + 1];
        g->rest[p] = (int32_t)MH_MIN(v, FAR);
    }
    free(shortest);
}

int grammar_from_schema(const json_t *schema, grammar **out, char *err, size_t errlen) {
    *out = NULL;
    grammar *g = grammar_alloc();
    compiler c;
    compiler_init(&c, g, err, errlen);
    c.root = schema;
    if (!json_is_object(schema)) {
        fail(&c, "%s", "a schema must be an object");
        g->root = -1;
    } else {
        g->root = compile_schema(&c, schema, 0);
    }
    free(c.s.el);
    if (g->root < 0 || c.failed) {
        grammar_free(g);
        return -1;
    }
    finish_grammar(g);
    *out = g;
    return 0;
}

grammar *grammar_any_object(void) {
    grammar *g = grammar_alloc();
    compiler c;
    char err[8];
    compiler_init(&c, g, err, sizeof err);
    int r = any_object_rule(&c, 0);
    g->root = r;
    free(c.s.el);
    finish_grammar(g);
    return g;
}

/* ==== Parsing ==== */

typedef struct stackset stackset;
static int mask_within(grammar_state *st, int budget, uint8_t *allow);

typedef struct stackset {
    int n;
    uint8_t h[MAX_STACKS];
    int32_t pos[MAX_STACKS][MAX_HEIGHT];
} stackset;

static void set_add(stackset *out, const int32_t *stk, int h) {
    for (int i = 0; i < out->n; i++)
        if (out->h[i] == h && !memcmp(out->pos[i], stk, (size_t)h * sizeof *stk)) return;
    if (out->n == MAX_STACKS) return;
    out->h[out->n] = (uint8_t)h;
    memcpy(out->pos[out->n], stk, (size_t)h * sizeof *stk);
    out->n++;
}

static void set_copy(stackset *dst, const stackset *src) {
    dst->n = src->n;
    for (int i = 0; i < src->n; i++) {
        dst->h[i] = src->h[i];
        memcpy(dst->pos[i], src->pos[i], (size_t)src->h[i] * sizeof(int32_t));
    }
}

/* Move the stack on until its top is a byte set, adding every result to out. */
static void expand(const grammar *g, const int32_t *stk, int h, stackset *out, int guard) {
    if (guard > 2 * MAX_HEIGHT) return;
    for (;;) {
        if (h == 0) {
            set_add(out, stk, 0);
            return;
        }
        int32_t p = stk[h - 1];
        const element *e = &g->el[p];
        if (e->type == EL_END) {
            h--;
            continue;
        }
        if (e->type == EL_BYTES) {
            set_add(out, stk, h);
            return;
        }
        int32_t tmp[MAX_HEIGHT];
        int nh = h - 1;
        memcpy(tmp, stk, (size_t)nh * sizeof *tmp);
        if (g->el[p + 1].type != EL_END) tmp[nh++] = p + 1;
        if (nh >= MAX_HEIGHT) return;
        const rule *r = &g->rules[e->ref];
        for (int a = 0; a < r->n_alts; a++) {
            tmp[nh] = r->alts[a];
            expand(g, tmp, nh + 1, out, guard + 1);
        }
        return;
    }
}

static int set_accepting(const stackset *s) {
    for (int i = 0; i < s->n; i++)
        if (s->h[i] == 0) return 1;
    return 0;
}

/* Fewest bytes that complete any of the parses. */
static long set_rest(const grammar *g, const stackset *s) {
    long best = FAR;
    for (int i = 0; i < s->n; i++) {
        long sum = 0;
        for (int k = 0; k < s->h[i]; k++) sum += g->rest[s->pos[i][k]];
        best = MH_MIN(best, sum);
    }
    return best;
}

static void step(const grammar *g, const stackset *in, unsigned char byte, stackset *out) {
    out->n = 0;
    for (int i = 0; i < in->n; i++) {
        int h = in->h[i];
        if (h == 0) continue;
        int32_t p = in->pos[i][h - 1];
        if (!(g->el[p].set[byte >> 5] >> (byte & 31) & 1)) continue;
        int32_t tmp[MAX_HEIGHT];
        memcpy(tmp, in->pos[i], (size_t)h * sizeof *tmp);
        tmp[h - 1] = p + 1;
        expand(g, tmp, h, out, 0);
    }
}

struct grammar_vocab {
    int n_vocab;
    char *bytes;     /* every token's bytes, back to back */
    uint32_t *off;   /* (n_vocab) where token id's bytes start */
    uint16_t *len;   /* (n_vocab) their length; 0 for tokens never allowed */
    uint8_t *eog;    /* (n_vocab) end-of-generation tokens */
    int32_t *sorted; /* (n_sorted) tokens with bytes, sorted by their bytes */
    uint16_t *lcp;   /* (n_sorted) bytes shared with the previous sorted token */
    int n_sorted;
    int max_len;
};

static int cmp_tokens(const void *a, const void *b, void *arg) {
    const grammar_vocab *v = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int n = MH_MIN(v->len[x], v->len[y]);
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], (size_t)n);
    if (c) return c;
    if (v->len[x] != v->len[y]) return v->len[x] < v->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

grammar_vocab *grammar_vocab_new(const tokenizer *t) {
    grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    int n = v->n_vocab = tokenizer_n_vocab(t);
    v->off = calloc((size_t)n, sizeof *v->off);
    v->len = calloc((size_t)n, sizeof *v->len);
    v->eog = calloc((size_t)n, 1);
    v->sorted = malloc((size_t)n * sizeof *v->sorted);
    v->lcp = calloc((size_t)n, sizeof *v->lcp);
    size_t total = 0;
    for (int id = 0; id < n; id++) {
        int l = tokenizer_piece(t, id, 0, NULL, 0);
        if (l > 0 && l < 65535 && !tokenizer_is_eog(t, id)) total += (size_t)l;
    }
    v->bytes = malloc(total + 1);
    if (!v->off || !v->len || !v->eog || !v->sorted || !v->lcp || !v->bytes) {
        grammar_vocab_free(v);
        return NULL;
    }
    size_t at = 0;
    for (int id = 0; id < n; id++) {
        if (tokenizer_is_eog(t, id)) {
            v->eog[id] = 1;
            continue;
        }
        int l = tokenizer_piece(t, id, 0, NULL, 0);
        if (l <= 0 || l >= 65535) continue;
        tokenizer_piece(t, id, 0, v->bytes + at, (size_t)l);
        v->off[id] = (uint32_t)at;
        v->len[id] = (uint16_t)l;
        at += (size_t)l;
        v->sorted[v->n_sorted++] = id;
        v->max_len = MH_MAX(v->max_len, l);
    }
    qsort_r(v->sorted, (size_t)v->n_sorted, sizeof *v->sorted, cmp_tokens, v);
    for (int i = 1; i < v->n_sorted; i++) {
        int32_t a = v->sorted[i - 1], b = v->sorted[i];
        int k = 0, m = MH_MIN(v->len[a], v->len[b]);
        while (k < m && v->bytes[v->off[a] + k] == v->bytes[v->off[b] + k]) k++;
        v->lcp[i] = (uint16_t)k;
    }
    return v;
}

void grammar_vocab_free(grammar_vocab *v) {
    if (!v) return;
    free(v->bytes);
    free(v->off);
    free(v->len);
    free(v->eog);
    free(v->sorted);
    free(v->lcp);
    free(v);
}

struct grammar_state {
    grammar *g;
    const grammar_vocab *v;
    stackset cur;
    stackset tmp;
    stackset *levels; /* (max_len + 1) states along the token being tried */
    int n_levels;
};

void grammar_state_reset(grammar_state *st) {
    const grammar *g = st->g;
    st->cur.n = 0;
    const rule *r = &g->rules[g->root];
    for (int a = 0; a < r->n_alts; a++) {
        int32_t start = r->alts[a];
        expand(g, &start, 1, &st->cur, 0);
    }
}

grammar_state *grammar_state_new(grammar *g, const grammar_vocab *v) {
    grammar_state *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->g = grammar_retain(g);
    st->v = v;
    st->n_levels = MH_MAX(v ? v->max_len + 1 : 0, 1);
    st->levels = malloc((size_t)st->n_levels * sizeof *st->levels);
    if (!st->levels) {
        grammar_state_free(st);
        return NULL;
    }
    grammar_state_reset(st);
    return st;
}

void grammar_state_free(grammar_state *st) {
    if (!st) return;
    grammar_free(st->g);
    free(st->levels);
    free(st);
}

int grammar_state_feed(grammar_state *st, const char *bytes, size_t len) {
    if (len == 0) return 0;
    stackset *a = &st->tmp;
    step(st->g, &st->cur, (unsigned char)bytes[0], a);
    if (a->n == 0) return -1;
    for (size_t i = 1; i < len; i++) {
        /* ping-pong between tmp and the first level buffer */
        stackset *b = &st->levels[0];
        step(st->g, a, (unsigned char)bytes[i], b);
        if (b->n == 0) return -1;
        set_copy(a, b);
    }
    set_copy(&st->cur, a);
    return 0;
}

int grammar_state_accepting(const grammar_state *st) {
    return set_accepting(&st->cur);
}

int grammar_state_continuable(const grammar_state *st) {
    for (int i = 0; i < st->cur.n; i++)
        if (st->cur.h[i] > 0) return 1;
    return 0;
}

int grammar_state_rest(const grammar_state *st) {
    return (int)set_rest(st->g, &st->cur);
}

int grammar_state_mask(grammar_state *st, int budget, uint8_t *allow) {
    int n = mask_within(st, budget, allow);
    return n > 0 || budget < 0 ? n : mask_within(st, -1, allow);
}

static int mask_within(grammar_state *st, int budget, uint8_t *allow) {
    const grammar_vocab *v = st->v;
    memset(allow, 0, (size_t)v->n_vocab);
    int n_allowed = 0;
    if (grammar_state_accepting(st))
        for (int id = 0; id < v->n_vocab; id++)
            if (v->eog[id]) allow[id] = 1, n_allowed++;
    if (!grammar_state_continuable(st)) return n_allowed;
    set_copy(&st->levels[0], &st->cur);
    int good = 0;     /* levels[0..good] hold the states along the last token tried */
    int fail_at = -1; /* byte index at which that token was refused, or -1 */
    for (int i = 0; i < v->n_sorted; i++) {
        int32_t id = v->sorted[i];
        int len = v->len[id];
        int shared = i > 0 ? v->lcp[i] : 0;
        if (fail_at >= 0 && shared > fail_at) continue; /* same refused prefix */
        const unsigned char *b = (const unsigned char *)v->bytes + v->off[id];
        int k = MH_MIN(shared, good);
        fail_at = -1;
        for (; k < len; k++) {
            step(st->g, &st->levels[k], b[k], &st->levels[k + 1]);
            if (st->levels[k + 1].n == 0) {
                fail_at = k;
                break;
            }
        }
        good = k;
        if (fail_at < 0 && (budget < 0 || set_rest(st->g, &st->levels[len]) <= budget))
            allow[id] = 1, n_allowed++;
    }
    return n_allowed;
}

int grammar_state_accept_token(grammar_state *st, int32_t id) {
    const grammar_vocab *v = st->v;
    if (id < 0 || id >= v->n_vocab) return -1;
    if (v->eog[id]) return grammar_state_accepting(st) ? 0 : -1;
    if (v->len[id] == 0) return -1;
    return grammar_state_feed(st, v->bytes + v->off[id], v->len[id]);
}
