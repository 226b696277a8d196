/* synth.c — synthetic llama GGUF files with random weights (see synth.h). */
#include "engine/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/kernels.h"
#include "util/common.h"

/* ==== Random numbers ==== */

/* xoshiro256** seeded through splitmix64: fast, good enough for weights, and the same on every
 * machine, so a seed names a file. */
typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Each tensor draws from its own stream, derived from the seed and its name: adding layers or
 * changing the vocabulary leaves the other tensors' values unchanged. */
static void rng_seed_for(rng *r, uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the name */
    for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    uint64_t state = seed ^ h;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&state);
}

/* Uniform in (0, 1]. */
static double rng_unit(rng *r) {
    return (double)((rng_next(r) >> 11) + 1) * 0x1.0p-53;
}

/* x[i] = mean + std * N(0, 1), by Box-Muller, two values per pair of uniforms. */
static void fill_normal(float *x, size_t n, float mean, float std, rng *r) {
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < n; i += 2) {
        double radius = sqrt(-2.0 * log(rng_unit(r)));
        double angle = two_pi * rng_unit(r);
        x[i] = mean + std * (float)(radius * cos(angle));
        if (i + 1 < n) x[i + 1] = mean + std * (float)(radius * sin(angle));
    }
}

/* ==== Built-in vocabulary ==== */

/* Common English words, most frequent first. Each becomes a "▁word" piece, preceded by the
 * prefixes the SentencePiece merge needs to reach it ("▁w", "▁wo", "▁wor"). */
static const char *const common_words[] = {
    "the",     "and",    "to",      "a",      "of",       "in",      "was",       "he",
    "she",     "it",     "that",    "is",     "for",      "on",      "you",       "with",
    "his",     "her",    "they",    "I",      "at",       "be",      "this",      "had",
    "not",     "are",    "but",     "from",   "or",       "have",    "an",        "by",
    "one",     "all",    "we",      "were",   "there",    "when",    "up",        "out",
    "said",    "what",   "so",      "can",    "day",      "their",   "if",        "do",
    "will",    "each",   "about",   "how",    "them",     "then",    "many",      "some",
    "would",   "like",   "him",     "into",   "time",     "has",     "look",      "two",
    "more",    "go",     "see",     "no",     "way",      "could",   "my",        "than",
    "first",   "been",   "who",     "its",    "now",      "people",  "long",      "down",
    "did",     "get",    "come",    "made",   "may",      "part",    "over",      "new",
    "after",   "little", "big",     "play",   "happy",    "friend",  "friends",   "mom",
    "dad",     "very",   "saw",     "wanted", "went",     "loved",   "named",     "upon",
    "once",    "girl",   "boy",     "ball",   "park",     "tree",    "sun",       "sky",
    "dog",     "cat",    "bird",    "fish",   "house",    "home",    "water",     "food",
    "good",    "bad",    "red",     "blue",   "green",    "yellow",  "small",     "old",
    "young",   "fun",    "toy",     "toys",   "car",      "box",     "book",      "school",
    "help",    "helped", "thank",   "sorry",  "yes",      "know",    "think",     "make",
    "found",   "find",   "took",    "take",   "gave",     "give",    "ran",       "run",
    "jump",    "walk",   "walked",  "looked", "asked",    "told",    "felt",      "feel",
    "sad",     "scared", "brave",   "kind",   "nice",     "pretty",  "beautiful", "together",
    "because", "again",  "always",  "never",  "every",    "other",   "something", "nothing",
    "away",    "back",   "just",    "only",   "also",     "well",    "much",      "very",
    "too",     "here",   "where",   "why",    "which",    "while",   "still",     "before",
    "under",   "around", "through", "inside", "outside",  "world",   "life",      "work",
    "hand",    "eyes",   "head",    "heart",  "night",    "morning", "door",      "room",
    "garden",  "flower", "flowers", "rain",   "snow",     "tall",    "fast",      "slow",
    "hot",     "cold",   "best",    "last",   "next",     "great",   "same",      "right",
    "left",    "high",   "open",    "close",  "start",    "stop",    "end",       "began",
    "learned", "smiled", "laughed", "cried",  "shouted",  "answer",  "ask",       "word",
    "words",   "story",  "name",    "place",  "thing",    "things",  "way",       "should",
    "must",    "let",    "put",     "keep",   "turn",     "came",    "got",       "say",
    "tell",    "show",   "try",     "tried",  "need",     "want",    "love",      "lived",
    "live",    "called", "man",     "woman",  "children", "mother",  "father",    "king",
    "queen",   "dragon", "magic",   "forest", "river",    "sea",     "cake",      "apple",
    "milk",    "The",    "Once",    "One",    "He",       "She",     "It",        "They",
    "Lily",    "Tom",    "Ben",     "Sue",    "Max",      "Mom",     "But",       "And",
    "Then",    "When",   "After",   "Every",  "Yes",      "No",      "We",        "You",
    "What",    "Hello",  "Thank",   "From",   "This",     "That",    "There",     "In",
    "On",      "At",
};

/* Word-internal pieces (no "▁"), each preceded by its own prefixes. */
static const char *const common_suffixes[] = {
    "s",   "ed",  "ing", "er",   "ly",   "es",  "en",   "re",   "on",   "an",
    "at",  "or",  "al",  "le",   "nd",   "st",  "tion", "ment", "ness", "ful",
    "est", "ous", "ive", "ent",  "ers",  "ies", "ay",   "ow",   "th",   "he",
    "in",  "ll",  "ck",  "ight", "ould", "ake", "ame",  "ook",  "all",  "ind",
};

static const char single_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\":;-()";

#define SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's space */

enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_BYTE = 6 };

/* Output-row scale of byte, control and unknown tokens (see synth_write). */
#define RARE_TOKEN_SCALE 0.25f

typedef struct vocab {
    char **pieces;
    float *scores;
    int32_t *types;
    int n, cap;
} vocab;

static int vocab_has(const vocab *v, const char *piece) {
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->pieces[i], piece) == 0) return 1;
    return 0;
}

static void vocab_add(vocab *v, const char *piece, int32_t type) {
    if (vocab_has(v, piece)) return;
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 1024;
        v->pieces = mh_xrealloc(v->pieces, (size_t)v->cap * sizeof *v->pieces);
        v->scores = mh_xrealloc(v->scores, (size_t)v->cap * sizeof *v->scores);
        v->types = mh_xrealloc(v->types, (size_t)v->cap * sizeof *v->types);
    }
    v->pieces[v->n] = mh_xstrdup(piece);
    v->types[v->n] = type;
    v->scores[v->n] = 0.0f;
    v->n++;
}

/* Add `head` + each prefix of `word` (1..len bytes), shortest first. */
static void vocab_add_with_prefixes(vocab *v, const char *head, const char *word) {
    char buf[64];
    size_t len = strlen(word);
    for (size_t k = 1; k <= len; k++) {
        snprintf(buf, sizeof buf, "%s%.*s", head, (int)k, word);
        vocab_add(v, buf, TOKEN_NORMAL);
    }
}

static void vocab_build(vocab *v) {
    memset(v, 0, sizeof *v);
    vocab_add(v, "<unk>", TOKEN_UNKNOWN);
    vocab_add(v, "<s>", TOKEN_CONTROL);
    vocab_add(v, "</s>", TOKEN_CONTROL);
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        vocab_add(v, buf, TOKEN_BYTE);
    }
    int first_normal = v->n;
    vocab_add(v, SPACE_MARK, TOKEN_NORMAL);
    for (const char *c = single_chars; *c; c++) {
        char buf[2] = {*c, 0};
        vocab_add(v, buf, TOKEN_NORMAL);
    }
    for (size_t i = 0; i < MH_ARRAY_LEN(common_suffixes); i++)
        vocab_add_with_prefixes(v, "", common_suffixes[i]);
    for (size_t i = 0; i < MH_ARRAY_LEN(common_words); i++)
        vocab_add_with_prefixes(v, SPACE_MARK, common_words[i]);
    /* Decreasing scores in order of addition: a piece's prefixes score above it, so the
     * highest-score-first merge walks up the chain to the whole word. */
    for (int i = first_normal; i < v->n; i++) v->scores[i] = -(float)(i - first_normal);
}

static void vocab_free(vocab *v) {
    for (int i = 0; i < v->n; i++) free(v->pieces[i]);
    free(v->pieces);
    free(v->scores);
    free(v->types);
}

int synth_builtin_vocab_size(void) {
    vocab v;
    vocab_build(&v);
    int n = v.n;
    vocab_free(&v);
    return n;
}

static void write_builtin_vocab(gguf_writer *w, const vocab *v) {
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->pieces,
                            (uint64_t)v->n);
    gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", v->scores, (uint64_t)v->n);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", v->types, (uint64_t)v->n);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", 0);
}

/* ==== Parameters ==== */

void synth_params_default(synth_params *p) {
    memset(p, 0, sizeof *p);
    p->name = "synth";
    p->arch = "llama";
    p->n_embd = 64;
    p->n_layer = 2;
    p->n_head = 4;
    p->n_head_kv = 0;
    p->n_ff = 0;
    p->n_ctx = 2048;
    p->type = GGML_TYPE_F32;
    p->seed = 42;
    p->rope_freq_base = 10000.0f;
    p->rms_eps = 1e-5f;
}

int synth_n_ff(const synth_params *p) {
    if (p->n_ff > 0) return p->n_ff;
    long ff = ((long)p->n_embd * 8 + 2) / 3;
    return (int)((ff + 31) / 32 * 32);
}

static int n_head_kv_of(const synth_params *p) {
    return p->n_head_kv > 0 ? p->n_head_kv : p->n_head;
}

#define QK_K_SYNTH 256 /* K-quant super-block */

/* llama.cpp's general.file_type for a matrix type (LLAMA_FTYPE_*), -1 when it has none. */
static int file_type_of(int type) {
    switch (type) {
    case GGML_TYPE_F32: return 0;
    case GGML_TYPE_F16: return 1;
    case GGML_TYPE_Q4_0: return 2;
    case GGML_TYPE_Q4_1: return 3;
    case GGML_TYPE_Q8_0: return 7;
    case GGML_TYPE_Q5_0: return 8;
    case GGML_TYPE_Q5_1: return 9;
    case GGML_TYPE_Q2_K: return 10;
    case GGML_TYPE_Q3_K: return 12;
    case GGML_TYPE_Q4_K: return 15;
    case GGML_TYPE_Q5_K: return 17;
    case GGML_TYPE_Q6_K: return 18;
    case GGML_TYPE_BF16: return 32;
    case SYNTH_TYPE_Q4_K_M: return 15;
    default: return -1;
    }
}

/* llama.cpp's use_more_bits(): layers whose attn_v and ffn_down Q4_K_M keeps in Q6_K. */
static int use_more_bits(int layer, int n_layer) {
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

/* The type of one matrix: p->type, or its type in the Q4_K_M mix (see synth.h). `role` is the
 * tensor name without "blk.N.", `ne0` its row length. */
static int matrix_type(const synth_params *p, const char *role, int layer, uint64_t ne0) {
    if (p->type != SYNTH_TYPE_Q4_K_M) return p->type;
    int type = GGML_TYPE_Q4_K;
    if (!strcmp(role, "output.weight") || (p->tied && !strcmp(role, "token_embd.weight")))
        type = GGML_TYPE_Q6_K;
    else if ((!strcmp(role, "attn_v.weight") || !strcmp(role, "ffn_down.weight")) &&
             use_more_bits(layer, p->n_layer))
        type = GGML_TYPE_Q6_K;
    if (ne0 % QK_K_SYNTH) type = type == GGML_TYPE_Q6_K ? GGML_TYPE_Q8_0 : GGML_TYPE_Q5_0;
    return type;
}

#define FAIL(...) return snprintf(err, errlen, __VA_ARGS__), -1

int synth_validate(const synth_params *p, char *err, size_t errlen) {
    if (!p->path || !*p->path) FAIL("an output file is required (-o FILE)");
    if (p->n_embd < 1 || p->n_embd > 65536) FAIL("--dim %d is out of range [1, 65536]", p->n_embd);
    if (p->n_layer < 1 || p->n_layer > 4096)
        FAIL("--layers %d is out of range [1, 4096]", p->n_layer);
    if (p->n_head < 1 || p->n_head > p->n_embd)
        FAIL("--heads %d is out of range [1, --dim %d]", p->n_head, p->n_embd);
    if (p->n_head_kv < 0 || p->n_head_kv > p->n_head)
        FAIL("--kv-heads %d is out of range [1, --heads %d]", p->n_head_kv, p->n_head);
    if (strcmp(p->arch, "llama") && strcmp(p->arch, "qwen2") && strcmp(p->arch, "qwen3"))
        FAIL("--arch %s is not one of llama, qwen2, qwen3", p->arch);
    if (p->head_dim < 0 || p->head_dim % 2 || p->head_dim > 1024)
        FAIL("--head-dim %d must be even and in [0, 1024]", p->head_dim);
    if (p->sliding_window < 0) FAIL("--sliding-window %d must be >= 0", p->sliding_window);
    if (!p->head_dim && p->n_embd % p->n_head)
        FAIL("--dim %d is not divisible by --heads %d", p->n_embd, p->n_head);
    int kv = n_head_kv_of(p);
    if (p->n_head % kv) FAIL("--heads %d is not divisible by --kv-heads %d", p->n_head, kv);
    int head_dim = p->head_dim ? p->head_dim : p->n_embd / p->n_head;
    if (head_dim % 2)
        FAIL("the head dimension (--dim %d / --heads %d = %d) must be even for RoPE", p->n_embd,
             p->n_head, head_dim);
    if (p->n_ff < 0 || p->n_ff > (1 << 20)) FAIL("--ff %d is out of range [1, 1048576]", p->n_ff);
    if (p->n_ctx < 1 || p->n_ctx > (1 << 24))
        FAIL("--ctx %d is out of range [1, 16777216]", p->n_ctx);
    if (!(p->rope_freq_base > 0.0f) || !isfinite(p->rope_freq_base))
        FAIL("--rope-base must be a positive number");
    if (!(p->rms_eps > 0.0f) || !(p->rms_eps < 1.0f)) FAIL("--rms-eps must be in (0, 1)");
    if (!p->name || !*p->name) FAIL("--name must not be empty");
    kernels_init(0);
    int hd = p->head_dim ? p->head_dim : p->n_embd / p->n_head;
    long q_dim = (long)hd * p->n_head;
    if (p->type == SYNTH_TYPE_Q4_K_M) {
        if (p->n_embd % 32 || synth_n_ff(p) % 32 || q_dim % 32)
            FAIL("--type q4_k_m needs --dim, --ff and heads * head dim to be multiples of 32 (got "
                 "%d, %d, %ld)",
                 p->n_embd, synth_n_ff(p), q_dim);
        return 0;
    }
    const type_traits *tt = kernels_traits(p->type);
    if (p->type < 0 || !tt || !tt->from_f32 || file_type_of(p->type) < 0)
        FAIL("--type %s is not supported for synthetic weights (use f32, f16, bf16, q4_0, q4_1, "
             "q5_0, q5_1, q8_0, q4_k, q5_k, q6_k or q4_k_m)",
             p->type >= 0 ? ggml_type_name((uint32_t)p->type) : "?");
    size_t blck = ggml_blck_size((uint32_t)p->type);
    if ((size_t)p->n_embd % blck || (size_t)synth_n_ff(p) % blck || (size_t)q_dim % blck)
        FAIL("--type %s needs --dim, --ff and heads * head dim to be multiples of its block size "
             "%zu (got %d, %d, %ld)",
             ggml_type_name((uint32_t)p->type), blck, p->n_embd, synth_n_ff(p), q_dim);
    return 0;
}

/* ==== Writing ==== */

typedef struct tensor_buf {
    float *values; /* the largest tensor's element count */
    void *packed;  /* the same, converted to the tensor type */
} tensor_buf;

/* Generate one tensor of shape [ne0, ne1] (n_dims 1: a vector, ne1 = 1) and add it to `w`. `type`
 * F32 or the matrix type; values are mean + std * N(0, 1), row r times row_scale[r] if given. */
static void add_random_tensor(gguf_writer *w, tensor_buf *buf, const synth_params *p,
                              const char *name, int type, uint32_t n_dims, uint64_t ne0,
                              uint64_t ne1, float mean, float std, const float *row_scale) {
    size_t n = (size_t)(ne0 * ne1);
    rng r;
    rng_seed_for(&r, p->seed, name);
    fill_normal(buf->values, n, mean, std, &r);
    if (row_scale)
        for (uint64_t row = 0; row < ne1; row++)
            for (uint64_t i = 0; i < ne0; i++) buf->values[row * ne0 + i] *= row_scale[row];
    const void *data = buf->values;
    if (type != GGML_TYPE_F32) {
        const type_traits *tt = kernels_traits(type);
        size_t row_bytes = ggml_row_size((uint32_t)type, ne0);
        for (uint64_t row = 0; row < ne1; row++)
            tt->from_f32(buf->values + row * ne0, (uint8_t *)buf->packed + row * row_bytes,
                         (int)ne0);
        data = buf->packed;
    }
    uint64_t ne[2] = {ne0, ne1};
    gguf_writer_add_tensor(w, name, (uint32_t)type, n_dims, ne, data);
}

/* Copy every tokenizer.* key of `src` (the chat template too, unless one was given). */
static int copy_tokenizer(gguf_writer *w, const gguf *src, int skip_template) {
    int copied = 0;
    for (int i = 0; i < gguf_n_kv(src); i++) {
        const gguf_kv *kv = gguf_kv_at(src, i);
        const char *prefix = "tokenizer.";
        if (kv->key.len < strlen(prefix) || memcmp(kv->key.ptr, prefix, strlen(prefix)) != 0)
            continue;
        const char *tmpl = "tokenizer.chat_template";
        if (skip_template && kv->key.len == strlen(tmpl) &&
            memcmp(kv->key.ptr, tmpl, kv->key.len) == 0)
            continue;
        gguf_writer_copy_kv(w, kv);
        copied++;
    }
    return copied;
}

int synth_write(const synth_params *p, char *err, size_t errlen) {
    if (synth_validate(p, err, errlen) < 0) return -2;

    gguf *src = NULL;
    uint64_t n_vocab;
    vocab builtin = {0};
    if (p->vocab_from) {
        char why[256];
        if (gguf_open(p->vocab_from, &src, why, sizeof why) < 0)
            return snprintf(err, errlen, "--vocab-from %s: %s", p->vocab_from, why), -2;
        const gguf_kv *tokens;
        gguf_str model_name;
        if (gguf_get_arr(src, "tokenizer.ggml.tokens", GGUF_VT_STRING, &tokens) < 0 ||
            gguf_get_str(src, "tokenizer.ggml.model", &model_name) < 0 || tokens->arr_n == 0 ||
            tokens->arr_n > INT32_MAX) {
            gguf_close(src);
            return snprintf(err, errlen,
                            "--vocab-from %s: no tokenizer (tokenizer.ggml.model and a "
                            "non-empty tokenizer.ggml.tokens are needed)",
                            p->vocab_from),
                   -2;
        }
        n_vocab = tokens->arr_n;
    } else {
        vocab_build(&builtin);
        n_vocab = (uint64_t)builtin.n;
    }

    /* Per-token scale of the output rows, from the token types (1 = normal). */
    float *row_scale = mh_xmalloc((size_t)n_vocab * sizeof *row_scale);
    for (uint64_t i = 0; i < n_vocab; i++) row_scale[i] = 1.0f;
    if (src) {
        const gguf_kv *types;
        if (gguf_get_arr(src, "tokenizer.ggml.token_type", GGUF_VT_INT32, &types) == 0 &&
            types->arr_n == n_vocab)
            for (uint64_t i = 0; i < n_vocab; i++)
                if (gguf_arr_num(types, i) != TOKEN_NORMAL) row_scale[i] = RARE_TOKEN_SCALE;
    } else {
        for (int i = 0; i < builtin.n; i++)
            if (builtin.types[i] != TOKEN_NORMAL) row_scale[i] = RARE_TOKEN_SCALE;
    }

    const uint64_t dim = (uint64_t)p->n_embd;
    const uint64_t head_dim = p->head_dim ? (uint64_t)p->head_dim : dim / (uint64_t)p->n_head;
    const uint64_t q_dim = head_dim * (uint64_t)p->n_head;
    const uint64_t kv_dim = head_dim * (uint64_t)n_head_kv_of(p);
    const char *a = p->arch;
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, a), key)
    const uint64_t ff = (uint64_t)synth_n_ff(p);
    const int type = p->type;

    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", a);
    gguf_writer_set_str(w, "general.name", p->name);
    gguf_writer_set_u32(w, "general.file_type", (uint32_t)file_type_of(type));
    if (type == SYNTH_TYPE_Q4_K_M || ggml_blck_size((uint32_t)type) > 1)
        gguf_writer_set_u32(w, "general.quantization_version", 2);
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)p->n_ctx);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)dim);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)p->n_layer);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)ff);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)p->n_head);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)n_head_kv_of(p));
    if (p->head_dim) {
        gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)head_dim);
        gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)head_dim);
    }
    gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)head_dim);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), p->rms_eps);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), p->rope_freq_base);
    gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)n_vocab);
    if (p->sliding_window)
        gguf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)p->sliding_window);
#undef KEY
    if (src) {
        copy_tokenizer(w, src, p->chat_template != NULL);
        gguf_close(src);
    } else {
        write_builtin_vocab(w, &builtin);
        vocab_free(&builtin);
    }
    if (p->chat_template) gguf_writer_set_str(w, "tokenizer.chat_template", p->chat_template);

    /* One scratch pair sized for the largest tensor: the embedding, or an FFN matrix. */
    uint64_t max_elems = MH_MAX(dim * n_vocab, MH_MAX(dim * ff, dim * q_dim));
    tensor_buf buf = {mh_aligned_alloc(max_elems * sizeof(float)),
                      mh_aligned_alloc(ggml_row_size(
                          type == SYNTH_TYPE_Q4_K_M ? GGML_TYPE_Q8_0 : (uint32_t)type, max_elems))};
    if (!buf.values || !buf.packed) {
        free(buf.values);
        free(buf.packed);
        free(row_scale);
        gguf_writer_free(w);
        return snprintf(err, errlen, "out of memory for a %llu-element tensor",
                        (unsigned long long)max_elems),
               -1;
    }

    /* Scales: a matrix with fan-in n gets std 1/sqrt(n), so each output element of a matmul with
     * an RMS-normalised input has variance ~1 and the residual stream grows only like
     * sqrt(layers). The embedding and output matrices get 1/sqrt(dim) too: logits have std ~1
     * and the embedding is small next to the blocks' outputs (rmsnorm rescales it anyway). */
    const float s_dim = 1.0f / sqrtf((float)dim);
    const float s_ff = 1.0f / sqrtf((float)ff);
    const float norm_jitter = 0.02f;
    /* Tied, the embedding row of the current token is also its output row, and the residual
     * stream carries it to the final norm: a self-bias that makes greedy decoding repeat one
     * token. Halving the embedding halves the bias (logits then have std ~0.5); measured on
     * 2-layer models it about doubles the distinct tokens of a 32-token greedy run. */
    const float tied_embd_scale = 0.5f;
#define MATRIX(role, ne0, ne1, std)                                                                \
    add_random_tensor(w, &buf, p, BLK(role), matrix_type(p, role, l, ne0), 2, ne0, ne1, 0.0f, std, \
                      NULL)
#define VECTOR(name, n, mean, std)                                                                 \
    add_random_tensor(w, &buf, p, name, GGML_TYPE_F32, 1, n, 1, mean, std, NULL)
#define NORM(name)                                                                                 \
    add_random_tensor(w, &buf, p, name, GGML_TYPE_F32, 1, dim, 1, 1.0f, norm_jitter, NULL)
    /* The rows of the output projection (token_embd when tied) are smaller for byte, control and
     * unknown tokens: their logits then rarely win, so greedy gibberish is made of words rather
     * than stray bytes, and EOS does not end a demo after two tokens. */
    add_random_tensor(w, &buf, p, "token_embd.weight", matrix_type(p, "token_embd.weight", -1, dim),
                      2, dim, n_vocab, 0.0f, p->tied ? s_dim * tied_embd_scale : s_dim,
                      p->tied ? row_scale : NULL);
    NORM("output_norm.weight");
    if (p->rope_freqs) /* Llama 3.1 style: low frequencies slowed down by factors up to 8 */
        add_random_tensor(w, &buf, p, "rope_freqs.weight", GGML_TYPE_F32, 1, head_dim / 2, 1, 3.0f,
                          0.5f, NULL);
    if (!p->tied)
        add_random_tensor(w, &buf, p, "output.weight", matrix_type(p, "output.weight", -1, dim), 2,
                          dim, n_vocab, 0.0f, s_dim, row_scale);
    for (int l = 0; l < p->n_layer; l++) {
        char name[GGUF_MAX_NAME + 1];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
        NORM(BLK("attn_norm.weight"));
        MATRIX("attn_q.weight", dim, q_dim, s_dim);
        MATRIX("attn_k.weight", dim, kv_dim, s_dim);
        MATRIX("attn_v.weight", dim, kv_dim, s_dim);
        MATRIX("attn_output.weight", q_dim, dim, 1.0f / sqrtf((float)q_dim));
        if (strcmp(a, "qwen2") == 0) {
            VECTOR(BLK("attn_q.bias"), q_dim, 0.0f, 0.1f);
            VECTOR(BLK("attn_k.bias"), kv_dim, 0.0f, 0.1f);
            VECTOR(BLK("attn_v.bias"), kv_dim, 0.0f, 0.1f);
        }
        if (strcmp(a, "qwen3") == 0) {
            VECTOR(BLK("attn_q_norm.weight"), head_dim, 1.0f, norm_jitter);
            VECTOR(BLK("attn_k_norm.weight"), head_dim, 1.0f, norm_jitter);
        }
        NORM(BLK("ffn_norm.weight"));
        MATRIX("ffn_gate.weight", dim, ff, s_dim);
        MATRIX("ffn_up.weight", dim, ff, s_dim);
        MATRIX("ffn_down.weight", ff, dim, s_ff);
#undef BLK
    }
#undef MATRIX
#undef VECTOR
#undef NORM
    free(buf.values);
    free(buf.packed);
    free(row_scale);

    int rc = gguf_writer_write(w, p->path, err, errlen);
    gguf_writer_free(w);
    return rc < 0 ? -1 : 0;
}
