/* tokenizer.c — text <-> token ids for GGUF vocabularies. See tokenizer.h for the contract.
 *
 * Layout of this file:
 *   vocabulary   token table, piece -> id hash map, special ids, loading and validation
 *   BPE tables   merges as (left, right) symbol pairs -> rank, pre-tokenizer names
 *   partition    splitting the input on special/user-defined token texts
 *   SPM          SentencePiece-style bigram merging with byte fallback ("llama" vocabularies)
 *   BPE          byte-level BPE ("gpt2" vocabularies)
 *   encode       the driver: partition, then one backend call per text fragment
 *   pieces       id -> bytes, and the UTF-8-safe stream
 *
 * Behaviour follows llama.cpp, whose tokenizer is what runs GGUF files elsewhere, so ids match:
 *   - special tokens (control, unknown, user-defined) are cut out of the text first, longest
 *     text first; control and unknown only when parse_special, user-defined always;
 *   - SPM: each text fragment that starts the input or follows a special token gets the
 *     dummy-prefix space (when add_space_prefix), then spaces become U+2581; the fragment is
 *     split into UTF-8 characters (the length of a character is read from its first byte alone,
 *     so invalid input is split predictably), adjacent pairs that spell a vocabulary piece are
 *     merged best score first (ties: leftmost first); a final symbol that is not a piece is
 *     emitted byte by byte as <0xNN> tokens;
 *   - BPE: each fragment is read as code points (a byte that is not valid UTF-8 is U+FFFD), cut
 *     into words by the pre-tokenizer that `tokenizer.ggml.pre` names (unicode.h), and each word
 *     is spelled byte by byte in the GPT-2 byte-level alphabet; adjacent symbols whose pair is a
 *     merge are merged lowest rank first (ties: leftmost first). Llama 3 style vocabularies
 *     ("ignore_merges") take a word that is a whole token as that token without merging.
 */
#include "engine/tokenizer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/unicode.h"
#include "util/common.h"

/* GGUF token types (tokenizer.ggml.token_type). */
enum {
    TOKEN_TYPE_UNDEFINED = 0,
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
};

/* Per-token flags computed at load. */
enum {
    TOKEN_FLAG_EOG = 1,      /* generation stops here */
    TOKEN_FLAG_HAS_BYTE = 2, /* a byte token whose text parsed as <0xNN>: see token.byte */
};

enum tokenizer_backend {
    TOKENIZER_SPM, /* "llama" */
    TOKENIZER_BPE, /* "gpt2" */
};

/* Longest token text accepted; real vocabularies stay far below. */
#define TOKEN_MAX_LEN (1u << 20)
/* Longest input accepted by tokenizer_encode (the escaped text must fit in 32-bit offsets). */
#define ENCODE_MAX_LEN ((size_t)1 << 28)

typedef struct token {
    const char *text; /* into the gguf mapping, not NUL-terminated */
    uint32_t len;
    float score;
    uint8_t type;  /* TOKEN_TYPE_* */
    uint8_t flags; /* TOKEN_FLAG_* */
    uint8_t byte;  /* the byte of a byte token (TOKEN_FLAG_HAS_BYTE) */
} token;

/* A merge: symbols left and right become `result`; lower rank merges first. */
typedef struct bpe_merge {
    uint64_t pair; /* left << 32 | right */
    int32_t rank;  /* -1: empty slot */
    int32_t result;
} bpe_merge;

typedef struct trie_node {
    int32_t child;     /* first child, -1 */
    int32_t sibling;   /* next child of the same parent, -1 */
    int32_t rank;      /* the special token whose text ends here (index into special), -1 */
    int32_t rank_user; /* the same among user-defined tokens only (parse_special off) */
    uint8_t byte;
} trie_node;

struct tokenizer {
    enum tokenizer_backend backend;
    int n_vocab;
    token *tokens; /* (n_vocab) */

    /* piece text -> id: open addressing, linear probing, -1 = empty slot */
    int32_t *map; /* (map_mask + 1) */
    uint32_t map_mask;
    uint32_t max_token_len;
    size_t max_piece_len; /* longest tokenizer_piece() output, render_special on */

    /* ids of the tokens cut out of the text before merging, longest text first (their rank) */
    int32_t *special; /* (n_special) */
    int n_special;
    /* trie of their texts, to find every occurrence in one pass over the input */
    trie_node *trie; /* (n_trie) */
    int32_t n_trie;
    int32_t trie_root[256]; /* node of each first byte, -1 */

    int32_t byte_ids[256]; /* token for a raw byte: <0xNN>, else the one-byte piece, else -1 */

    int32_t bos, eos, unk, eot, eom; /* -1 when absent */
    int add_bos, add_eos, add_space_prefix;

    /* BPE only. Merging works on symbols: ids below n_vocab are tokens; a text that merges
     * produce or consume but that is no token gets an id from n_vocab up ("extra" symbols,
     * their texts in extra_text). */
    enum unicode_pretok pretok;
    int ignore_merges; /* a word that is a whole token is taken as it is */
    bpe_merge *merges; /* (merge_mask + 1) open addressing on (left, right) */
    uint32_t merge_mask;
    int32_t byte_symbol[256];  /* the symbol of each byte's byte-level character */
    uint8_t byte_text[256][2]; /* that character in UTF-8 */
    uint8_t byte_text_len[256];
    char *extra_text;    /* texts of the extra symbols, back to back */
    uint32_t *extra_off; /* (n_extra + 1) offsets into extra_text */
    int32_t n_extra;
};

/* ==== Vocabulary ==== */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static uint32_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, folded */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* Id of the token whose text is exactly s[0..n), or -1. */
static int32_t vocab_find(const tokenizer *t, const char *s, size_t n) {
    if (n > t->max_token_len) return -1;
    uint32_t i = hash_bytes(s, n) & t->map_mask;
    for (;;) {
        int32_t id = t->map[i];
        if (id < 0) return -1;
        const token *tok = &t->tokens[id];
        if (tok->len == n && memcmp(tok->text, s, n) == 0) return id;
        i = (i + 1) & t->map_mask;
    }
}

/* Insert every token; a text that occurs twice maps to its last id (as llama.cpp does). */
static int vocab_build_map(tokenizer *t) {
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2) cap *= 2;
    t->map = malloc(cap * sizeof *t->map);
    if (!t->map) return -1;
    memset(t->map, 0xff, cap * sizeof *t->map);
    t->map_mask = (uint32_t)(cap - 1);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const token *tok = &t->tokens[id];
        uint32_t i = hash_bytes(tok->text, tok->len) & t->map_mask;
        while (t->map[i] >= 0) {
            const token *o = &t->tokens[t->map[i]];
            if (o->len == tok->len && memcmp(o->text, tok->text, tok->len) == 0) break;
            i = (i + 1) & t->map_mask;
        }
        t->map[i] = id;
    }
    return 0;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "<0xNN>" -> NN, or -1. */
static int parse_byte_token(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* A special token id from `key`: absent -> `def` (when in range, else -1); -1 or 0xFFFFFFFF
 * (the converters' "unset") -> -1; anything else must be a valid id. */
static int load_special_id(const gguf *f, const char *key, int32_t def, int n_vocab, int32_t *out,
                           char *err, size_t errlen) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    if (rc == -1) {
        *out = def >= 0 && def < n_vocab ? def : -1;
        return 0;
    }
    if (rc < 0) return fail(err, errlen, "%s is not an integer", key);
    if (v == -1 || v == (int64_t)UINT32_MAX) {
        *out = -1;
        return 0;
    }
    if (v < 0 || v >= n_vocab)
        return fail(err, errlen, "%s = %lld is out of range (vocabulary has %d tokens)", key,
                    (long long)v, n_vocab);
    *out = (int32_t)v;
    return 0;
}

static int load_flag(const gguf *f, const char *key, int def, int *out, char *err, size_t errlen) {
    int rc = gguf_get_bool(f, key, out);
    if (rc == -1)
        *out = def;
    else if (rc < 0)
        return fail(err, errlen, "%s is not a bool", key);
    return 0;
}

static int is_numeric_type(uint32_t type) {
    return type <= GGUF_VT_FLOAT32 || type == GGUF_VT_BOOL ||
           (type >= GGUF_VT_UINT64 && type <= GGUF_VT_FLOAT64);
}

/* Tokens, scores and types, each checked. */
static int load_tokens(tokenizer *t, const gguf *f, char *err, size_t errlen) {
    const gguf_kv *tokens_kv, *scores_kv = NULL, *types_kv = NULL;
    int rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &tokens_kv);
    if (rc == -1) return fail(err, errlen, "missing key tokenizer.ggml.tokens");
    if (rc < 0) return fail(err, errlen, "tokenizer.ggml.tokens is not an array of strings");
    uint64_t n = tokens_kv->arr_n;
    if (n == 0) return fail(err, errlen, "tokenizer.ggml.tokens is empty");
    if (n >= INT32_MAX / 2) return fail(err, errlen, "tokenizer.ggml.tokens has too many tokens");

    int i_scores = gguf_find_key(f, "tokenizer.ggml.scores");
    if (i_scores >= 0) {
        scores_kv = gguf_kv_at(f, i_scores);
        if (scores_kv->type != GGUF_VT_ARRAY || !is_numeric_type(scores_kv->arr_type))
            return fail(err, errlen, "tokenizer.ggml.scores is not an array of numbers");
        if (scores_kv->arr_n != n)
            return fail(err, errlen, "tokenizer.ggml.scores has %llu entries for %llu tokens",
                        (unsigned long long)scores_kv->arr_n, (unsigned long long)n);
    }
    int i_types = gguf_find_key(f, "tokenizer.ggml.token_type");
    if (i_types >= 0) {
        types_kv = gguf_kv_at(f, i_types);
        uint32_t at = types_kv->arr_type;
        if (types_kv->type != GGUF_VT_ARRAY || !is_numeric_type(at) || at == GGUF_VT_FLOAT32 ||
            at == GGUF_VT_FLOAT64 || at == GGUF_VT_BOOL)
            return fail(err, errlen, "tokenizer.ggml.token_type is not an array of integers");
        if (types_kv->arr_n != n)
            return fail(err, errlen, "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                        (unsigned long long)types_kv->arr_n, (unsigned long long)n);
    }

    gguf_str *texts = malloc(n * sizeof *texts);
    t->tokens = calloc(n, sizeof *t->tokens);
    if (!texts || !t->tokens) {
        free(texts);
        return fail(err, errlen, "out of memory for %llu tokens", (unsigned long long)n);
    }
    gguf_arr_strings(tokens_kv, texts);
    t->n_vocab = (int)n;
    rc = 0;
    for (uint64_t i = 0; i < n; i++) {
        token *tok = &t->tokens[i];
        if (texts[i].len > TOKEN_MAX_LEN) {
            rc = fail(err, errlen, "token %llu is %llu bytes long", (unsigned long long)i,
                      (unsigned long long)texts[i].len);
            break;
        }
        tok->text = texts[i].ptr;
        tok->len = (uint32_t)texts[i].len;
        if (tok->len > t->max_token_len) t->max_token_len = tok->len;
        if (scores_kv) {
            double s = gguf_arr_num(scores_kv, i);
            if (isnan(s)) {
                unsigned long long at = i;
                rc = fail(err, errlen, "score of token %llu is not a number", at);
                break;
            }
            tok->score = (float)s;
        }
        tok->type = TOKEN_TYPE_NORMAL;
        if (types_kv) {
            double ty = gguf_arr_num(types_kv, i);
            if (ty < TOKEN_TYPE_UNDEFINED || ty > TOKEN_TYPE_BYTE) {
                rc = fail(err, errlen, "token %llu has type %g (valid: 0..6)",
                          (unsigned long long)i, ty);
                break;
            }
            tok->type = (uint8_t)ty;
        }
        if (tok->type == TOKEN_TYPE_BYTE) {
            int b = parse_byte_token(tok->text, tok->len);
            if (b >= 0) {
                tok->flags |= TOKEN_FLAG_HAS_BYTE;
                tok->byte = (uint8_t)b;
            }
        }
    }
    free(texts);
    return rc;
}

/* Texts that end a turn in the chat formats in use; llama.cpp stops on them too and treats
 * them as control tokens whatever their stored type. */
static const char *const eog_texts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<|end_of_text|>",
    "<|return|>",
    "<|call|>",
    "<end_of_utterance>",
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>", /* DeepSeek */
};

static void mark_eog(tokenizer *t, int32_t id) {
    if (id >= 0 && id < t->n_vocab) t->tokens[id].flags |= TOKEN_FLAG_EOG;
}

typedef struct special_entry {
    uint32_t len;
    int32_t id;
} special_entry;

static int special_cmp(const void *a, const void *b) {
    const special_entry *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Whether the partition step looks for this token's text (llama.cpp's special token cache). */
static int is_cut_out(const token *tok) {
    return (tok->type == TOKEN_TYPE_CONTROL || tok->type == TOKEN_TYPE_USER_DEFINED ||
            tok->type == TOKEN_TYPE_UNKNOWN) &&
           tok->len > 0;
}

/* Trie of the special texts. A text shared by two tokens keeps the first (lower) rank: that
 * one claims every occurrence before the other is looked for. Without parse_special only
 * user-defined tokens count, so their first rank is kept apart. */
static int build_trie(tokenizer *t) {
    size_t total = 0;
    for (int r = 0; r < t->n_special; r++) total += t->tokens[t->special[r]].len;
    if (total >= INT32_MAX) return -1;
    t->trie = malloc((total ? total : 1) * sizeof *t->trie);
    if (!t->trie) return -1;
    for (int r = 0; r < t->n_special; r++) {
        const token *tok = &t->tokens[t->special[r]];
        int32_t *link = &t->trie_root[(unsigned char)tok->text[0]];
        int32_t node = -1;
        for (uint32_t i = 0; i < tok->len; i++) {
            unsigned char c = (unsigned char)tok->text[i];
            if (i > 0) {
                link = &t->trie[node].child;
                while (*link >= 0 && t->trie[*link].byte != c) link = &t->trie[*link].sibling;
            }
            if (*link < 0) {
                t->trie[t->n_trie] = (trie_node){-1, -1, -1, -1, c};
                *link = t->n_trie++;
            }
            node = *link;
        }
        if (t->trie[node].rank < 0) t->trie[node].rank = r;
        if (t->trie[node].rank_user < 0 && tok->type == TOKEN_TYPE_USER_DEFINED)
            t->trie[node].rank_user = r;
    }
    return 0;
}

/* The tokens the partition step looks for, longest text first (ties by id, so it is stable). */
static int build_special_list(tokenizer *t) {
    for (int b = 0; b < 256; b++) t->trie_root[b] = -1;
    int n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (is_cut_out(&t->tokens[id])) n++;
    }
    if (n == 0) return 0;
    special_entry *e = malloc((size_t)n * sizeof *e);
    t->special = malloc((size_t)n * sizeof *t->special);
    if (!e || !t->special) {
        free(e);
        return -1;
    }
    int k = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (is_cut_out(&t->tokens[id])) e[k++] = (special_entry){t->tokens[id].len, id};
    }
    qsort(e, (size_t)n, sizeof *e, special_cmp);
    for (int i = 0; i < n; i++) t->special[i] = e[i].id;
    t->n_special = n;
    free(e);
    return build_trie(t);
}

/* ==== BPE tables ==== */

/* The pre-tokenizers llama.cpp knows by these names and that unicode.h implements, with
 * llama.cpp's per-name settings: take whole-token words as they are (ignore_merges) and
 * prepend BOS unless tokenizer.ggml.add_bos_token says otherwise. */
static const struct {
    const char *name;
    enum unicode_pretok kind;
    uint8_t ignore_merges, add_bos;
} pretok_names[] = {
    {"default", UNICODE_PRETOK_DEFAULT, 0, 0},
    {"llama-bpe", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"llama3", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"llama-v3", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"falcon3", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"falcon-h1", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"pixtral", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"midm-2.0", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"lfm2", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"jina-v5-nano", UNICODE_PRETOK_LLAMA3, 1, 1},
    {"dbrx", UNICODE_PRETOK_LLAMA3, 0, 0},
    {"smaug-bpe", UNICODE_PRETOK_LLAMA3, 0, 0},
    {"qwen2", UNICODE_PRETOK_QWEN2, 0, 0},
    {"deepseek-r1-qwen", UNICODE_PRETOK_QWEN2, 0, 0},
    {"kormo", UNICODE_PRETOK_QWEN2, 0, 0},
    {"f2llmv2", UNICODE_PRETOK_QWEN2, 0, 0},
    {"megrez", UNICODE_PRETOK_QWEN2, 0, 0},
    {"stablelm2", UNICODE_PRETOK_QWEN2, 0, 0},
    {"hunyuan", UNICODE_PRETOK_QWEN2, 0, 0},
    {"solar-open", UNICODE_PRETOK_QWEN2, 0, 0},
    {"gpt-2", UNICODE_PRETOK_GPT2, 0, 0},
    {"phi-2", UNICODE_PRETOK_GPT2, 0, 0},
    {"mpt", UNICODE_PRETOK_GPT2, 0, 0},
    {"olmo", UNICODE_PRETOK_GPT2, 0, 0},
    {"jais", UNICODE_PRETOK_GPT2, 0, 0},
    {"jina-es", UNICODE_PRETOK_GPT2, 0, 0},
    {"jina-de", UNICODE_PRETOK_GPT2, 0, 0},
    {"jina-v2-es", UNICODE_PRETOK_GPT2, 0, 0},
    {"jina-v2-de", UNICODE_PRETOK_GPT2, 0, 0},
    {"gigachat", UNICODE_PRETOK_GPT2, 0, 0},
    {"a.x-4.0", UNICODE_PRETOK_GPT2, 0, 0},
    {"mellum", UNICODE_PRETOK_GPT2, 0, 0},
    {"modern-bert", UNICODE_PRETOK_GPT2, 0, 0},
    {"trillion", UNICODE_PRETOK_GPT2, 0, 0},
    {"granite-docling", UNICODE_PRETOK_GPT2, 0, 0},
    {"exaone4", UNICODE_PRETOK_GPT2, 0, 0},
    {"starcoder", UNICODE_PRETOK_STARCODER, 0, 0},
    {"smollm", UNICODE_PRETOK_STARCODER, 0, 0},
    {"refact", UNICODE_PRETOK_STARCODER, 0, 0},
    {"command-r", UNICODE_PRETOK_STARCODER, 0, 0},
    {"codeshell", UNICODE_PRETOK_STARCODER, 0, 0},
    {"exaone", UNICODE_PRETOK_STARCODER, 0, 0},
    {"minerva-7b", UNICODE_PRETOK_STARCODER, 0, 0},
    {"mellum2", UNICODE_PRETOK_STARCODER, 0, 0},
    {"falcon", UNICODE_PRETOK_FALCON, 0, 0},
    {"deepseek-coder", UNICODE_PRETOK_DEEPSEEK_CODER, 0, 0},
};

/* tokenizer.ggml.pre -> pre-tokenizer; absent means "default", as in llama.cpp. */
static int bpe_load_pretok(tokenizer *t, const gguf *f, char *err, size_t errlen) {
    gguf_str pre = {"default", 7};
    int rc = gguf_get_str(f, "tokenizer.ggml.pre", &pre);
    if (rc == -2) return fail(err, errlen, "tokenizer.ggml.pre is not a string");
    for (size_t i = 0; i < MH_ARRAY_LEN(pretok_names); i++) {
        if (strlen(pretok_names[i].name) == pre.len &&
            memcmp(pretok_names[i].name, pre.ptr, pre.len) == 0) {
            t->pretok = pretok_names[i].kind;
            t->ignore_merges = pretok_names[i].ignore_merges;
            t->add_bos = pretok_names[i].add_bos;
            return 0;
        }
    }
    int shown = pre.len > 64 ? 64 : (int)pre.len;
    return fail(err, errlen, "pre-tokenizer '%.*s' (tokenizer.ggml.pre) is not supported", shown,
                pre.ptr);
}

static uint32_t hash_pair(uint64_t pair) {
    pair *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(pair >> 32 ^ pair);
}

/* Rank of merging symbols left and right (*result: the merged symbol), or -1. */
static int32_t bpe_find_merge(const tokenizer *t, int32_t left, int32_t right, int32_t *result) {
    uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = hash_pair(pair) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const bpe_merge *m = &t->merges[i];
        if (m->rank < 0) return -1;
        if (m->pair == pair) {
            *result = m->result;
            return m->rank;
        }
    }
}

/* Texts that are no token get extra symbol ids while the merges load. */
typedef struct extra_symbols {
    int32_t *map; /* (mask + 1) extra symbol index, -1 empty */
    uint32_t mask;
    size_t text_len, text_cap;
    int32_t cap;
} extra_symbols;

static const char *extra_symbol_text(const tokenizer *t, int32_t k, size_t *len) {
    *len = t->extra_off[k + 1] - t->extra_off[k];
    return t->extra_text + t->extra_off[k];
}

/* Symbol of the text s[0..n): its token id, else an extra symbol (made on first use).
 * -1 when out of memory. */
static int32_t bpe_symbol(tokenizer *t, extra_symbols *x, const char *s, size_t n) {
    int32_t id = vocab_find(t, s, n);
    if (id >= 0) return id;
    if (!x->map) {
        x->mask = 1023;
        x->map = malloc((x->mask + 1) * sizeof *x->map);
        t->extra_off = malloc(sizeof *t->extra_off);
        if (!x->map || !t->extra_off) return -1;
        memset(x->map, 0xff, (x->mask + 1) * sizeof *x->map);
        t->extra_off[0] = 0;
    }
    uint32_t i = hash_bytes(s, n) & x->mask;
    for (; x->map[i] >= 0; i = (i + 1) & x->mask) {
        size_t len;
        const char *text = extra_symbol_text(t, x->map[i], &len);
        if (len == n && memcmp(text, s, n) == 0) return t->n_vocab + x->map[i];
    }
    if (t->n_extra >= INT32_MAX / 2 - t->n_vocab || x->text_len + n >= UINT32_MAX) return -1;
    if (t->n_extra + 1 >= x->cap) {
        int32_t cap = x->cap ? x->cap * 2 : 64;
        uint32_t *off = realloc(t->extra_off, ((size_t)cap + 1) * sizeof *off);
        if (!off) return -1;
        t->extra_off = off;
        x->cap = cap;
    }
    if (x->text_len + n > x->text_cap) {
        size_t cap = x->text_cap ? x->text_cap : 256;
        while (cap < x->text_len + n) cap *= 2;
        char *text = realloc(t->extra_text, cap);
        if (!text) return -1;
        t->extra_text = text;
        x->text_cap = cap;
    }
    memcpy(t->extra_text + x->text_len, s, n);
    x->text_len += n;
    x->map[i] = t->n_extra;
    t->extra_off[++t->n_extra] = (uint32_t)x->text_len;
    if ((uint32_t)t->n_extra * 2 > x->mask) { /* grow the map: rehash every extra symbol */
        uint32_t mask = x->mask * 2 + 1;
        int32_t *map = malloc(((size_t)mask + 1) * sizeof *map);
        if (!map) return -1;
        memset(map, 0xff, ((size_t)mask + 1) * sizeof *map);
        for (int32_t k = 0; k < t->n_extra; k++) {
            size_t len;
            const char *text = extra_symbol_text(t, k, &len);
            uint32_t j = hash_bytes(text, len) & mask;
            while (map[j] >= 0) j = (j + 1) & mask;
            map[j] = k;
        }
        free(x->map);
        x->map = map;
        x->mask = mask;
    }
    return t->n_vocab + t->n_extra - 1;
}

/* tokenizer.ggml.merges: "left right" strings, rank = index. As in llama.cpp the text splits at
 * the first space after its first byte, and a pair listed twice keeps its first rank. */
static int bpe_load_merges(tokenizer *t, const gguf *f, char *err, size_t errlen) {
    const gguf_kv *kv;
    int rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_VT_STRING, &kv);
    if (rc == -1) return fail(err, errlen, "missing key tokenizer.ggml.merges");
    if (rc < 0) return fail(err, errlen, "tokenizer.ggml.merges is not an array of strings");
    uint64_t n = kv->arr_n;
    if (n >= INT32_MAX / 4) return fail(err, errlen, "tokenizer.ggml.merges has too many entries");
    size_t cap = 16;
    while (cap < n + n / 3 + 1) cap *= 2;
    gguf_str *texts = malloc((n ? n : 1) * sizeof *texts);
    t->merges = malloc(cap * sizeof *t->merges);
    extra_symbols x = {0};
    char *joined = NULL;
    size_t joined_cap = 0;
    rc = -1;
    if (!texts || !t->merges) goto done;
    for (size_t i = 0; i < cap; i++) t->merges[i] = (bpe_merge){0, -1, -1};
    t->merge_mask = (uint32_t)(cap - 1);
    gguf_arr_strings(kv, texts);

    for (uint64_t r = 0; r < n; r++) {
        const char *s = texts[r].ptr;
        size_t len = texts[r].len;
        const char *space = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!space) continue; /* llama.cpp reads it as the pair ("", ""), which never applies */
        size_t nl = (size_t)(space - s), nr = len - nl - 1;
        if (len > joined_cap) {
            joined_cap = len * 2;
            char *j = realloc(joined, joined_cap);
            if (!j) goto done;
            joined = j;
        }
        memcpy(joined, s, nl);
        memcpy(joined + nl, space + 1, nr);
        int32_t left = bpe_symbol(t, &x, s, nl), right = bpe_symbol(t, &x, space + 1, nr);
        int32_t result = bpe_symbol(t, &x, joined, nl + nr);
        if (left < 0 || right < 0 || result < 0) goto done;
        uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        uint32_t i = hash_pair(pair) & t->merge_mask;
        while (t->merges[i].rank >= 0 && t->merges[i].pair != pair) i = (i + 1) & t->merge_mask;
        if (t->merges[i].rank < 0) t->merges[i] = (bpe_merge){pair, (int32_t)r, result};
    }

    /* The byte-level alphabet: byte b is spelled by one character of 1 or 2 bytes. */
    for (int b = 0; b < 256; b++) {
        unsigned char u[4];
        size_t k = unicode_encode(unicode_byte_to_cp((uint8_t)b), u);
        memcpy(t->byte_text[b], u, k);
        t->byte_text_len[b] = (uint8_t)k;
        t->byte_symbol[b] = bpe_symbol(t, &x, (const char *)u, k);
        if (t->byte_symbol[b] < 0) goto done;
    }
    rc = 0;
done:
    free(x.map);
    free(texts);
    free(joined);
    if (rc < 0) fail(err, errlen, "out of memory for %llu merges", (unsigned long long)n);
    return rc;
}

/* ==== Loading ==== */

/* Texts of the fill-in-the-middle tokens llama.cpp also stops generation at (pad, repo, file
 * separator), treating them as control tokens. */
static const char *const eog_fim_texts[] = {
    "<|fim_pad|>",   "<fim-pad>",  "<fim_pad>", "<PAD>",      "[PAD]",        "<|fim_repo|>",
    "<|repo_name|>", "<fim-repo>", "<REPO>",    "<reponame>", "<|file_sep|>",
};

int tokenizer_load(const gguf *f, tokenizer **out, char *err, size_t errlen) {
    *out = NULL;
    gguf_str model;
    int rc = gguf_get_str(f, "tokenizer.ggml.model", &model);
    if (rc == -1) return fail(err, errlen, "missing key tokenizer.ggml.model");
    if (rc < 0) return fail(err, errlen, "tokenizer.ggml.model is not a string");
    enum tokenizer_backend backend;
    if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0) {
        backend = TOKENIZER_SPM;
    } else if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0) {
        backend = TOKENIZER_BPE;
    } else {
        int shown = model.len > 64 ? 64 : (int)model.len;
        return fail(err, errlen, "tokenizer model '%.*s' is not supported yet", shown, model.ptr);
    }

    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fail(err, errlen, "out of memory");
    t->backend = backend;
    if (load_tokens(t, f, err, errlen) < 0) goto failed;
    if (vocab_build_map(t) < 0) {
        fail(err, errlen, "out of memory for the vocabulary map");
        goto failed;
    }

    /* Defaults are the ones llama.cpp assumes: SentencePiece ids for "llama" vocabularies;
     * for "gpt2" BOS = EOS = 11 (when in range), no unknown token, no space prefix. */
    int spm = backend == TOKENIZER_SPM;
    if (!spm && (bpe_load_pretok(t, f, err, errlen) < 0 || bpe_load_merges(t, f, err, errlen) < 0))
        goto failed;
    const struct {
        const char *key;
        int32_t def;
        int32_t *out;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", spm ? 1 : 11, &t->bos},
        {"tokenizer.ggml.eos_token_id", spm ? 2 : 11, &t->eos},
        {"tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &t->unk},
        {"tokenizer.ggml.eot_token_id", -1, &t->eot},
        {"tokenizer.ggml.eom_token_id", -1, &t->eom},
    };
    for (size_t i = 0; i < MH_ARRAY_LEN(ids); i++)
        if (load_special_id(f, ids[i].key, ids[i].def, t->n_vocab, ids[i].out, err, errlen) < 0)
            goto failed;
    if (load_flag(f, "tokenizer.ggml.add_bos_token", spm ? 1 : t->add_bos, &t->add_bos, err,
                  errlen) < 0 ||
        load_flag(f, "tokenizer.ggml.add_eos_token", 0, &t->add_eos, err, errlen) < 0 ||
        load_flag(f, "tokenizer.ggml.add_space_prefix", spm, &t->add_space_prefix, err, errlen) < 0)
        goto failed;

    mark_eog(t, t->eos);
    mark_eog(t, t->eot);
    mark_eog(t, t->eom);
    for (size_t i = 0; i < MH_ARRAY_LEN(eog_texts) + MH_ARRAY_LEN(eog_fim_texts); i++) {
        const char *text =
            i < MH_ARRAY_LEN(eog_texts) ? eog_texts[i] : eog_fim_texts[i - MH_ARRAY_LEN(eog_texts)];
        int32_t id = vocab_find(t, text, strlen(text));
        if (id < 0) continue;
        mark_eog(t, id);
        t->tokens[id].type = TOKEN_TYPE_CONTROL;
    }

    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        char raw = (char)b;
        int32_t id = vocab_find(t, name, sizeof name);
        t->byte_ids[b] = id >= 0 ? id : vocab_find(t, &raw, 1);
    }

    if (build_special_list(t) < 0) {
        fail(err, errlen, "out of memory for the special token list");
        goto failed;
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        int n = tokenizer_piece(t, id, 1, NULL, 0);
        if (n > 0 && (size_t)n > t->max_piece_len) t->max_piece_len = (size_t)n;
    }
    *out = t;
    return 0;

failed:
    tokenizer_free(t);
    return -1;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->tokens);
    free(t->map);
    free(t->special);
    free(t->trie);
    free(t->merges);
    free(t->extra_text);
    free(t->extra_off);
    free(t);
}

int tokenizer_n_vocab(const tokenizer *t) {
    return t->n_vocab;
}
int32_t tokenizer_bos(const tokenizer *t) {
    return t->bos;
}
int32_t tokenizer_eos(const tokenizer *t) {
    return t->eos;
}
int tokenizer_adds_bos(const tokenizer *t) {
    return t->add_bos && t->bos >= 0;
}

int tokenizer_is_eog(const tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->tokens[id].flags & TOKEN_FLAG_EOG);
}

int tokenizer_is_control(const tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return 0;
    uint8_t ty = t->tokens[id].type;
    return ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_UNKNOWN;
}

int32_t tokenizer_find(const tokenizer *t, const char *text, size_t len) {
    return vocab_find(t, text, len);
}

size_t tokenizer_max_piece(const tokenizer *t) {
    return t->max_piece_len;
}

/* ==== Encoding: shared state ==== */

/* Where ids go: the caller's array up to `max`, while `n` counts them all. */
typedef struct id_sink {
    int32_t *out;
    int max;
    int n;
} id_sink;

static void sink_push(id_sink *s, int32_t id) {
    if (s->n < s->max) s->out[s->n] = id;
    s->n++;
}

typedef struct spm_symbol {
    int32_t prev, next; /* neighbours in the chain, -1 at the ends */
    uint32_t start, n;  /* bytes of the escaped text; n == 0 once merged into its left */
} spm_symbol;

typedef struct spm_bigram {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes of the merged piece: stale when the symbols changed since */
} spm_bigram;

/* BPE: one byte of the word in its byte-level spelling, merged or not. */
typedef struct bpe_symbol_slot {
    int32_t prev, next; /* neighbours in the chain, -1 at the ends */
    int32_t sym;        /* symbol id; -1 once merged into its left neighbour */
} bpe_symbol_slot;

typedef struct bpe_bigram {
    int32_t rank;
    int32_t left, right;         /* slots */
    int32_t left_sym, right_sym; /* their symbols when queued: stale when they changed since */
    int32_t result;
} bpe_bigram;

/* Buffers of one tokenizer_encode call, sized once for the whole input (SPM) or grown as
 * needed (BPE). */
typedef struct encode_work {
    char *text;       /* SPM: escaped fragment (3 * len + 3 bytes); BPE: the spelled word */
    spm_symbol *syms; /* one per character */
    size_t syms_cap;
    spm_bigram *heap; /* max-heap of candidate merges */
    size_t heap_n, heap_cap;

    uint32_t *cps;          /* BPE: the fragment's code points */
    unicode_splitter split; /* BPE: the pre-tokenizer's buffers */
    bpe_symbol_slot *slots; /* BPE: one per byte of the word */
    size_t slots_cap;
    bpe_bigram *bheap; /* BPE: min-heap of candidate merges */
    size_t bheap_n, bheap_cap;
    size_t text_cap; /* BPE: bytes of `text` */
} encode_work;

/* ==== Partition on special tokens ==== */

typedef struct fragment {
    size_t off, len;
    int32_t id; /* -1: text to tokenize; else a token cut out of the text */
} fragment;

typedef struct fragment_list {
    fragment *v;
    size_t n, cap;
} fragment_list;

static int frag_push(fragment_list *l, size_t off, size_t len, int32_t id) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        fragment *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (fragment){off, len, id};
    return 0;
}

typedef struct occurrence {
    size_t pos;
    int32_t rank;
} occurrence;

typedef struct occurrence_list {
    occurrence *v;
    size_t n, cap;
} occurrence_list;

static int occ_push(occurrence_list *l, size_t pos, int32_t rank) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        occurrence *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (occurrence){pos, rank};
    return 0;
}

static int occ_by_pos(const void *a, const void *b) {
    const occurrence *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Split `text` into fragments with llama.cpp's rule: for each candidate token in rank order
 * (longest text first), every non-overlapping occurrence inside a still-raw part of the text,
 * leftmost first, becomes that token. Longer texts thus win wherever they occur.
 *
 * Done in one pass instead of one per candidate: the trie lists every occurrence of every
 * candidate; sorted by (rank, position), an occurrence is taken when none of its bytes is taken
 * yet, which is exactly the leftmost-first scan of the raw parts in rank order. */
static int partition(const tokenizer *t, const char *text, size_t len, int parse_special,
                     fragment_list *out) {
    memset(out, 0, sizeof *out);
    occurrence_list occ = {0}, sorted = {0};
    size_t *count = NULL;
    uint8_t *taken = NULL;
    int rc = -1;
    for (size_t p = 0; p < len; p++) {
        int32_t node = t->trie_root[(unsigned char)text[p]];
        for (size_t q = p + 1; node >= 0; q++) {
            int32_t rank = parse_special ? t->trie[node].rank : t->trie[node].rank_user;
            if (rank >= 0 && occ_push(&occ, p, rank) < 0) goto done;
            if (q >= len) break;
            node = t->trie[node].child;
            while (node >= 0 && t->trie[node].byte != (unsigned char)text[q])
                node = t->trie[node].sibling;
        }
    }
    if (occ.n > 0) {
        /* counting sort by rank; stable, so positions stay ascending within a rank */
        count = calloc((size_t)t->n_special + 1, sizeof *count);
        sorted.v = malloc(occ.n * sizeof *sorted.v);
        taken = calloc(len, 1);
        if (!count || !sorted.v || !taken) goto done;
        for (size_t i = 0; i < occ.n; i++) count[occ.v[i].rank + 1]++;
        for (int r = 0; r < t->n_special; r++) count[r + 1] += count[r];
        for (size_t i = 0; i < occ.n; i++) sorted.v[count[occ.v[i].rank]++] = occ.v[i];
        size_t n_occ = occ.n;
        occ.n = 0; /* from here on: the occurrences taken */
        for (size_t i = 0; i < n_occ; i++) {
            size_t pos = sorted.v[i].pos, n = t->tokens[t->special[sorted.v[i].rank]].len;
            if (memchr(taken + pos, 1, n)) continue;
            memset(taken + pos, 1, n);
            occ.v[occ.n++] = sorted.v[i];
        }
        qsort(occ.v, occ.n, sizeof *occ.v, occ_by_pos);
    }
    size_t cursor = 0;
    for (size_t i = 0; i < occ.n; i++) {
        int32_t id = t->special[occ.v[i].rank];
        size_t pos = occ.v[i].pos;
        if (pos > cursor && frag_push(out, cursor, pos - cursor, -1) < 0) goto done;
        if (frag_push(out, pos, t->tokens[id].len, id) < 0) goto done;
        cursor = pos + t->tokens[id].len;
    }
    if (cursor < len && frag_push(out, cursor, len - cursor, -1) < 0) goto done;
    rc = 0;
done:
    if (rc < 0) {
        free(out->v);
        memset(out, 0, sizeof *out);
    }
    free(occ.v);
    free(sorted.v);
    free(count);
    free(taken);
    return rc;
}

/* ==== SPM: SentencePiece-style merging ==== */

/* Bytes of the UTF-8 character starting with `b`, judged by its high nibble only. */
static size_t utf8_len_from_lead(unsigned char b) {
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[b >> 4];
}

/* a outranks b: higher score, then further left. */
static int bigram_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(encode_work *w, spm_bigram b) {
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? w->heap_cap * 2 : 256;
        spm_bigram *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = b;
    return 0;
}

static spm_bigram heap_pop(encode_work *w) {
    spm_bigram top = w->heap[0];
    spm_bigram last = w->heap[--w->heap_n];
    size_t n = w->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bigram_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* Queue the merge of symbols left and right when their concatenation is a piece. */
static int spm_try_bigram(const tokenizer *t, encode_work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    const spm_symbol *l = &w->syms[left], *r = &w->syms[right];
    uint32_t size = l->n + r->n;
    int32_t id = vocab_find(t, w->text + l->start, size);
    if (id < 0) return 0;
    return heap_push(w, (spm_bigram){t->tokens[id].score, left, right, size});
}

/* A symbol that is not a piece comes out as its bytes (<0xNN>, or unk without byte tokens). */
static int spm_emit_symbol(const tokenizer *t, const char *s, size_t n, id_sink *out) {
    int32_t id = vocab_find(t, s, n);
    if (id >= 0) {
        sink_push(out, id);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        id = t->byte_ids[(unsigned char)s[i]];
        if (id < 0) id = t->unk;
        if (id < 0) return -1; /* no way to spell this byte */
        sink_push(out, id);
    }
    return 0;
}

/* Tokenize one escaped fragment w->text[0..len). */
static int spm_encode(const tokenizer *t, encode_work *w, size_t len, id_sink *out) {
    if (len == 0) return 0;
    /* Usually one symbol per input character, but invalid UTF-8 next to an escaped space can
     * split into more (a lead byte swallows part of U+2581): count first. */
    size_t count = 0;
    for (size_t off = 0; off < len; count++) off += utf8_len_from_lead((unsigned char)w->text[off]);
    if (count > w->syms_cap) {
        spm_symbol *syms = realloc(w->syms, count * sizeof *syms);
        if (!syms) return -1;
        w->syms = syms;
        w->syms_cap = count;
    }
    int32_t n_syms = 0;
    for (size_t off = 0; off < len;) {
        size_t n = utf8_len_from_lead((unsigned char)w->text[off]);
        if (n > len - off) n = len - off;
        w->syms[n_syms] =
            (spm_symbol){n_syms - 1, off + n == len ? -1 : n_syms + 1, (uint32_t)off, (uint32_t)n};
        n_syms++;
        off += n;
    }
    w->heap_n = 0;
    for (int32_t i = 1; i < n_syms; i++)
        if (spm_try_bigram(t, w, i - 1, i) < 0) return -1;

    while (w->heap_n > 0) {
        spm_bigram b = heap_pop(w);
        spm_symbol *l = &w->syms[b.left], *r = &w->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = b.left;
        if (spm_try_bigram(t, w, l->prev, b.left) < 0 || spm_try_bigram(t, w, b.left, l->next) < 0)
            return -1;
    }
    for (int32_t i = 0; i >= 0; i = w->syms[i].next)
        if (spm_emit_symbol(t, w->text + w->syms[i].start, w->syms[i].n, out) < 0) return -1;
    return 0;
}

/* Escape a fragment into w->text: optional dummy-prefix space, then ' ' -> U+2581. */
static size_t spm_escape(encode_work *w, const char *s, size_t n, int prefix) {
    static const char space[3] = {'\xe2', '\x96', '\x81'};
    size_t k = 0;
    if (prefix) {
        memcpy(w->text, space, 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(w->text + k, space, 3);
            k += 3;
        } else {
            w->text[k++] = s[i];
        }
    }
    return k;
}

/* ==== BPE: byte-level merging ==== */

/* a goes before b: lower rank, then further left. */
static int bpe_before(const bpe_bigram *a, const bpe_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int bpe_heap_push(encode_work *w, bpe_bigram b) {
    if (w->bheap_n == w->bheap_cap) {
        size_t cap = w->bheap_cap ? w->bheap_cap * 2 : 256;
        bpe_bigram *h = realloc(w->bheap, cap * sizeof *h);
        if (!h) return -1;
        w->bheap = h;
        w->bheap_cap = cap;
    }
    size_t i = w->bheap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpe_before(&b, &w->bheap[parent])) break;
        w->bheap[i] = w->bheap[parent];
        i = parent;
    }
    w->bheap[i] = b;
    return 0;
}

static bpe_bigram bpe_heap_pop(encode_work *w) {
    bpe_bigram top = w->bheap[0];
    bpe_bigram last = w->bheap[--w->bheap_n];
    size_t n = w->bheap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bpe_before(&w->bheap[c + 1], &w->bheap[c])) c++;
        if (!bpe_before(&w->bheap[c], &last)) break;
        w->bheap[i] = w->bheap[c];
        i = c;
    }
    if (n) w->bheap[i] = last;
    return top;
}

/* Queue the merge of slots left and right when their symbols form a merge. */
static int bpe_try_bigram(const tokenizer *t, encode_work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    int32_t ls = w->slots[left].sym, rs = w->slots[right].sym, result;
    int32_t rank = bpe_find_merge(t, ls, rs, &result);
    if (rank < 0) return 0;
    return bpe_heap_push(w, (bpe_bigram){rank, left, right, ls, rs, result});
}

/* Emit a finished symbol: its token, or for a text that is no token the tokens of its single
 * bytes that exist (llama.cpp's fallback; real vocabularies never get here). */
static void bpe_emit(const tokenizer *t, int32_t sym, id_sink *out) {
    if (sym < t->n_vocab) {
        sink_push(out, sym);
        return;
    }
    size_t len;
    const char *text = extra_symbol_text(t, sym - t->n_vocab, &len);
    for (size_t i = 0; i < len; i++) {
        int32_t id = vocab_find(t, text + i, 1);
        if (id >= 0) sink_push(out, id);
    }
}

/* One word: its UTF-8 bytes (of the code points cps[0..n)) in the byte-level alphabet, merged. */
static int bpe_encode_word(const tokenizer *t, encode_work *w, const uint32_t *cps, size_t n,
                           id_sink *out) {
    size_t n_bytes = 0;
    unsigned char u[4];
    for (size_t i = 0; i < n; i++) n_bytes += unicode_encode(cps[i], u);
    if (n_bytes > INT32_MAX) return -1;
    if (n_bytes > w->slots_cap || 2 * n_bytes > w->text_cap) {
        size_t cap = n_bytes * 2;
        bpe_symbol_slot *slots = realloc(w->slots, cap * sizeof *slots);
        if (slots) w->slots = slots;
        char *text = realloc(w->text, 2 * cap);
        if (text) w->text = text;
        if (!slots || !text) return -1;
        w->slots_cap = cap;
        w->text_cap = 2 * cap;
    }
    int32_t k = 0;
    size_t text_len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m = unicode_encode(cps[i], u);
        for (size_t j = 0; j < m; j++, k++) {
            w->slots[k] = (bpe_symbol_slot){k - 1, k + 1, t->byte_symbol[u[j]]};
            memcpy(w->text + text_len, t->byte_text[u[j]], t->byte_text_len[u[j]]);
            text_len += t->byte_text_len[u[j]];
        }
    }
    w->slots[k - 1].next = -1;

    if (t->ignore_merges) {
        int32_t id = vocab_find(t, w->text, text_len);
        if (id >= 0) {
            sink_push(out, id);
            return 0;
        }
    }
    w->bheap_n = 0;
    for (int32_t i = 1; i < k; i++)
        if (bpe_try_bigram(t, w, i - 1, i) < 0) return -1;
    while (w->bheap_n > 0) {
        bpe_bigram b = bpe_heap_pop(w);
        bpe_symbol_slot *l = &w->slots[b.left], *r = &w->slots[b.right];
        if (l->sym != b.left_sym || r->sym != b.right_sym) continue; /* stale */
        l->sym = b.result;
        r->sym = -1;
        l->next = r->next;
        if (r->next >= 0) w->slots[r->next].prev = b.left;
        if (bpe_try_bigram(t, w, l->prev, b.left) < 0 || bpe_try_bigram(t, w, b.left, l->next) < 0)
            return -1;
    }
    for (int32_t i = 0; i >= 0; i = w->slots[i].next) bpe_emit(t, w->slots[i].sym, out);
    return 0;
}

/* One text fragment: code points, the pre-tokenizer's words, each word merged. */
static int bpe_encode(const tokenizer *t, encode_work *w, const char *s, size_t len, id_sink *out) {
    size_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t used;
        w->cps[n] = unicode_decode((const unsigned char *)s + off, len - off, &used);
        off += used;
    }
    const unicode_span *words;
    long n_words = unicode_split(&w->split, t->pretok, w->cps, n, &words);
    if (n_words < 0) return -1;
    for (long i = 0; i < n_words; i++)
        if (bpe_encode_word(t, w, w->cps + words[i].start, words[i].len, out) < 0) return -1;
    return 0;
}

/* The backend step for one text fragment. `after_special`: it starts the input or follows a
 * token cut out by the partition. */
static int encode_fragment(const tokenizer *t, encode_work *w, const char *s, size_t n,
                           int after_special, id_sink *out) {
    switch (t->backend) {
    case TOKENIZER_SPM: {
        size_t len = spm_escape(w, s, n, t->add_space_prefix && after_special);
        return spm_encode(t, w, len, out);
    }
    case TOKENIZER_BPE: return bpe_encode(t, w, s, n, out);
    }
    return -1;
}

/* ==== Encode ==== */

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_special,
                     int parse_special, int32_t *out, int max) {
    if (len > ENCODE_MAX_LEN || (len && !text)) return -1;
    id_sink sink = {out, out ? max : 0, 0};
    if (add_special && t->add_bos && t->bos >= 0) sink_push(&sink, t->bos);

    int rc = 0;
    if (len > 0) {
        fragment_list frags;
        if (partition(t, text, len, parse_special, &frags) < 0) return -1;
        size_t longest = 0;
        for (size_t i = 0; i < frags.n; i++)
            if (frags.v[i].id < 0 && frags.v[i].len > longest) longest = frags.v[i].len;
        encode_work w = {0};
        if (t->backend == TOKENIZER_SPM) {
            w.text = malloc(3 * longest + 3);
            w.syms_cap = longest + 1;
            w.syms = malloc(w.syms_cap * sizeof *w.syms);
            if (!w.text || !w.syms) rc = -1;
        } else {
            w.cps = malloc((longest + 1) * sizeof *w.cps);
            if (!w.cps) rc = -1;
        }
        int after_special = 1;
        for (size_t i = 0; i < frags.n && rc == 0; i++) {
            const fragment *fr = &frags.v[i];
            if (fr->id >= 0) {
                sink_push(&sink, fr->id);
                after_special = 1;
            } else {
                rc = encode_fragment(t, &w, text + fr->off, fr->len, after_special, &sink);
                after_special = 0;
            }
        }
        free(w.text);
        free(w.syms);
        free(w.heap);
        free(w.cps);
        unicode_splitter_free(&w.split);
        free(w.slots);
        free(w.bheap);
        free(frags.v);
    }
    if (rc < 0) return -1;
    if (add_special && t->add_eos && t->eos >= 0) sink_push(&sink, t->eos);
    return sink.n;
}

/* ==== Pieces and the stream ==== */

static int copy_out(const char *s, size_t n, char *buf, size_t cap) {
    if (buf && cap) memcpy(buf, s, n < cap ? n : cap);
    return (int)n;
}

/* Copy with U+2581 turned back into ' '. */
static int copy_unescaped(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        char c;
        if (i + 2 < n && s[i] == '\xe2' && s[i + 1] == '\x96' && s[i + 2] == '\x81') {
            c = ' ';
            i += 3;
        } else {
            c = s[i++];
        }
        if (buf && k < cap) buf[k] = c;
        k++;
    }
    return (int)k;
}

/* Copy a byte-level BPE text as the bytes it spells. A character outside the byte-level
 * alphabet (only in odd vocabularies) is copied as it is. */
static int copy_byte_decoded(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t used;
        uint32_t cp = unicode_decode((const unsigned char *)s + i, n - i, &used);
        int b = unicode_cp_to_byte(cp);
        if (b >= 0) {
            if (buf && k < cap) buf[k] = (char)b;
            k++;
        } else {
            for (size_t j = 0; j < used; j++, k++)
                if (buf && k < cap) buf[k] = s[i + j];
        }
        i += used;
    }
    return (int)k;
}

int tokenizer_piece(const tokenizer *t, int32_t id, int render_special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    const token *tok = &t->tokens[id];
    switch (tok->type) {
    case TOKEN_TYPE_CONTROL:
    case TOKEN_TYPE_UNKNOWN:
        if (!render_special) return 0;
        return copy_out(tok->text, tok->len, buf, cap);
    case TOKEN_TYPE_USER_DEFINED: return copy_out(tok->text, tok->len, buf, cap);
    case TOKEN_TYPE_NORMAL:
        if (t->backend == TOKENIZER_BPE) return copy_byte_decoded(tok->text, tok->len, buf, cap);
        return copy_unescaped(tok->text, tok->len, buf, cap);
    case TOKEN_TYPE_BYTE:
        if (tok->flags & TOKEN_FLAG_HAS_BYTE)
            return copy_out((const char *)&tok->byte, 1, buf, cap);
        if (t->backend == TOKENIZER_BPE) return copy_byte_decoded(tok->text, tok->len, buf, cap);
        return copy_unescaped(tok->text, tok->len, buf, cap);
    default: return 0; /* unused and undefined tokens stand for nothing */
    }
}

static const char replacement_char[3] = {'\xef', '\xbf', '\xbd'}; /* U+FFFD */

/* Output cursor of the stream: never writes past cap. Once something does not fit (only with a
 * cap below tokenizer_stream_cap()), the rest is dropped too, so the output has no holes. */
typedef struct byte_out {
    char *buf;
    size_t cap, n;
    int full;
} byte_out;

static void out_bytes(byte_out *o, const void *p, size_t n) {
    if (o->full || o->n + n > o->cap) {
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->n, p, n);
    o->n += n;
}

/* Emit the valid UTF-8 prefix of in[0..n) with invalid bytes as U+FFFD (one per maximal
 * invalid subpart, as Unicode recommends); returns where an incomplete tail starts (== n
 * when there is none). */
static size_t utf8_sanitize(const unsigned char *in, size_t n, byte_out *o) {
    size_t i = 0;
    while (i < n) {
        unsigned char b = in[i];
        if (b < 0x80) {
            out_bytes(o, &in[i++], 1);
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (b >= 0xc2 && b <= 0xdf)
            need = 1;
        else if (b == 0xe0)
            need = 2, lo = 0xa0;
        else if (b == 0xed)
            need = 2, hi = 0x9f;
        else if (b >= 0xe1 && b <= 0xef)
            need = 2;
        else if (b == 0xf0)
            need = 3, lo = 0x90;
        else if (b == 0xf4)
            need = 3, hi = 0x8f;
        else if (b >= 0xf1 && b <= 0xf3)
            need = 3;
        else {
            out_bytes(o, replacement_char, 3);
            i++;
            continue;
        }
        size_t k = 1;
        for (; k <= need; k++) {
            if (i + k >= n) return i; /* incomplete so far: wait for more */
            unsigned char c = in[i + k];
            if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) break;
        }
        if (k <= need) {
            out_bytes(o, replacement_char, 3);
            i += k;
        } else {
            out_bytes(o, &in[i], need + 1);
            i += need + 1;
        }
    }
    return i;
}

size_t tokenizer_stream_cap(const tokenizer *t) {
    return 64 + 3 * t->max_piece_len;
}

size_t tokenizer_stream_push(tokenizer_stream *s, const tokenizer *t, int32_t id, char *out,
                             size_t cap) {
    if (s->n_pending < 0 || s->n_pending > 3) s->n_pending = 0; /* not from us: start over */
    int n = tokenizer_piece(t, id, 0, NULL, 0);
    if (n <= 0) return 0;
    unsigned char local[256];
    size_t total = (size_t)s->n_pending + (size_t)n;
    unsigned char *in = total <= sizeof local ? local : malloc(total);
    if (!in) return 0;
    memcpy(in, s->pending, (size_t)s->n_pending);
    tokenizer_piece(t, id, 0, (char *)in + s->n_pending, (size_t)n);

    byte_out o = {out, cap, 0, 0};
    size_t done = utf8_sanitize(in, total, &o);
    s->n_pending = (int)(total - done); /* at most 3: a valid, incomplete sequence */
    memcpy(s->pending, in + done, (size_t)s->n_pending);
    if (in != local) free(in);
    return o.n;
}

size_t tokenizer_stream_flush(tokenizer_stream *s, char *out, size_t cap) {
    size_t n = 0;
    if (s->n_pending > 0 && cap >= sizeof replacement_char) {
        memcpy(out, replacement_char, sizeof replacement_char);
        n = sizeof replacement_char;
    }
    s->n_pending = 0;
    return n;
}
