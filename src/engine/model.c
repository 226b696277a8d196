/* model.c — llama-family forward pass over mmapped GGUF weights.
 *
 * Reads top to bottom: hyperparameters, weights (each pointer with its shape), the context (KV
 * cache and activation buffers, allocated once), the blocks (matmul jobs split over the thread
 * pool, attention, rope), the forward pass, embeddings.
 *
 * Shapes are written in GGUF order, fastest-varying first: a matrix [n_in, n_out] is n_out rows
 * of n_in elements, and y = W x means y[r] = dot(row r, x).
 */
#include "engine/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "engine/kernels.h"
#include "engine/matmul.h"
#include "util/common.h"

/* Below this much work attention runs on the calling thread: waking workers costs more. */
#define MIN_MACS_PER_DISPATCH 32768

/* ==== Weights ==== */

typedef mm_weight weight;

typedef struct layer {
    const float *attn_norm;    /* [n_embd] */
    weight wq;                 /* [n_embd, n_head * head_dim] */
    weight wk;                 /* [n_embd, n_head_kv * head_dim] */
    weight wv;                 /* [n_embd, n_head_kv * head_dim] */
    weight wo;                 /* [n_head * head_dim, n_embd] */
    const float *bq, *bk, *bv; /* [q_dim], [kv_dim], [kv_dim] projection biases (qwen2), or NULL */
    const float *q_norm;       /* [head_dim] per-head RMSNorm of q before rope (qwen3), or NULL */
    const float *k_norm;       /* [head_dim] the same for k */
    const float *ffn_norm;     /* [n_embd] */
    weight w_gate;             /* [n_embd, n_ff] */
    weight w_up;               /* [n_embd, n_ff] */
    weight w_down;             /* [n_ff, n_embd] */
} layer;

struct model {
    gguf *file;
    tokenizer *tok;
    model_hparams hp;
    weight tok_embd;          /* [n_embd, n_vocab] */
    const float *output_norm; /* [n_embd] */
    weight output;            /* [n_embd, n_vocab]; the token embedding when tied */
    layer *layers;            /* [n_layer] */
    const float *rope_freqs;  /* [n_rot / 2] per-pair divisors of the rope frequency (Llama 3.1
                                 long-context scaling, precomputed by the converter), or NULL */
    void **owned;             /* buffers we allocated (norms converted to f32) */
    int n_owned;
    uint64_t bytes_per_token, weight_bytes, n_params;
};

__attribute__((format(printf, 3, 4))) static int errf(char *err, size_t errlen, const char *fmt,
                                                      ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Read `<arch>.<suffix>` as a positive int (or keep *out when absent and not required). */
static int hp_int(const gguf *f, const char *arch, const char *suffix, int required, int *out,
                  char *err, size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    int rc = gguf_get_u32(f, key, &v);
    if (rc == -1) return required ? errf(err, errlen, "missing metadata key '%s'", key) : 0;
    if (rc < 0 || v == 0 || v > (1u << 30))
        return errf(err, errlen, "metadata key '%s' must be a positive integer", key);
    *out = (int)v;
    return 0;
}

static int hp_float(const gguf *f, const char *arch, const char *suffix, float *out, char *err,
                    size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_f32(f, key, out);
    if (rc == -2) return errf(err, errlen, "metadata key '%s' must be a number", key);
    if (rc == 0 && !(isfinite(*out) && *out > 0))
        return errf(err, errlen, "metadata key '%s' must be a positive number", key);
    return 0;
}

static int read_hparams(model *m, const char *path, char *err, size_t errlen) {
    const gguf *f = m->file;
    model_hparams *hp = &m->hp;
    gguf_str s;
    if (gguf_get_str(f, "general.architecture", &s) < 0)
        return errf(err, errlen, "missing metadata key 'general.architecture'");
    snprintf(hp->arch, sizeof hp->arch, "%.*s", (int)MH_MIN(s.len, 31), s.ptr);
    static const char *const supported[] = {"llama", "qwen2", "qwen3"};
    int known = 0;
    for (size_t i = 0; i < MH_ARRAY_LEN(supported); i++)
        known |= strcmp(hp->arch, supported[i]) == 0;
    if (!known)
        return errf(err, errlen, "unsupported architecture '%s' (supported: llama, qwen2, qwen3)",
                    hp->arch);
    if (gguf_get_str(f, "general.name", &s) == 0)
        snprintf(hp->name, sizeof hp->name, "%.*s", (int)MH_MIN(s.len, 127), s.ptr);
    else {
        const char *base = strrchr(path, '/');
        snprintf(hp->name, sizeof hp->name, "%s", base ? base + 1 : path);
    }
    const char *a = hp->arch;
    if (hp_int(f, a, "embedding_length", 1, &hp->n_embd, err, errlen) < 0 ||
        hp_int(f, a, "block_count", 1, &hp->n_layer, err, errlen) < 0 ||
        hp_int(f, a, "feed_forward_length", 1, &hp->n_ff, err, errlen) < 0 ||
        hp_int(f, a, "attention.head_count", 1, &hp->n_head, err, errlen) < 0)
        return -1;
    hp->n_head_kv = hp->n_head;
    hp->n_ctx_train = 2048;
    if (hp_int(f, a, "attention.head_count_kv", 0, &hp->n_head_kv, err, errlen) < 0 ||
        hp_int(f, a, "context_length", 0, &hp->n_ctx_train, err, errlen) < 0)
        return -1;
    if (hp->n_embd % hp->n_head != 0)
        return errf(err, errlen, "embedding_length %d is not a multiple of head_count %d",
                    hp->n_embd, hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    if (hp_int(f, a, "attention.key_length", 0, &hp->head_dim, err, errlen) < 0) return -1;
    hp->n_rot = hp->head_dim;
    if (hp_int(f, a, "rope.dimension_count", 0, &hp->n_rot, err, errlen) < 0) return -1;
    hp->rope_freq_base = 10000.0f;
    hp->rms_eps = 1e-5f;
    if (hp_float(f, a, "rope.freq_base", &hp->rope_freq_base, err, errlen) < 0 ||
        hp_float(f, a, "attention.layer_norm_rms_epsilon", &hp->rms_eps, err, errlen) < 0)
        return -1;
    if (hp_int(f, a, "attention.sliding_window", 0, &hp->sliding_window, err, errlen) < 0)
        return -1;
    /* Qwen rotates the two halves of a head (NeoX style); llama pairs adjacent dims */
    hp->rope_mode = strncmp(hp->arch, "qwen", 4) == 0 ? ROPE_NEOX : ROPE_NORMAL;
    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    gguf_str st;
    if (gguf_get_str(f, key, &st) == 0 && st.len == 6 && memcmp(st.ptr, "linear", 6) == 0) {
        float factor = 1.0f;
        if (hp_float(f, a, "rope.scaling.factor", &factor, err, errlen) < 0) return -1;
        hp->rope_freq_scale = 1.0f / factor;
    } else if (gguf_get_str(f, key, &st) == 0 && !(st.len == 4 && memcmp(st.ptr, "none", 4) == 0) &&
               !(st.len == 6 && memcmp(st.ptr, "llama3", 6) == 0)) {
        return errf(err, errlen,
                    "unsupported rope scaling '%.*s' (supported: none, linear, llama3)",
                    (int)MH_MIN(st.len, 32), st.ptr);
    }
    if (hp->n_layer > 4096) return errf(err, errlen, "block_count %d is too large", hp->n_layer);
    if (hp->n_head % hp->n_head_kv != 0)
        return errf(err, errlen, "head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                    hp->n_head_kv);
    if (hp->head_dim % 2 != 0 || hp->n_rot % 2 != 0 || hp->n_rot > hp->head_dim)
        return errf(err, errlen, "rope dimension %d does not fit head size %d", hp->n_rot,
                    hp->head_dim);
    return 0;
}

/* Repack a matrix for this CPU's matmul kernels (mm_weight_pack); the copy is the model's. */
static int pack_weight(model *m, weight *w, const char *name, char *err, size_t errlen) {
    if (mm_weight_pack(w) < 0) return errf(err, errlen, "out of memory repacking '%s'", name);
    if (w->packed) {
        m->owned = mh_xrealloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *m->owned);
        m->owned[m->n_owned++] = (void *)w->packed;
    }
    return 0;
}

static int get_weight(model *m, weight *w, const char *name, int n_in, int n_out, int required,
                      char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    if (!t) return required ? errf(err, errlen, "missing tensor '%s'", name) : 0;
    if (t->n_dims > 2 || t->ne[0] != (uint64_t)n_in || t->ne[1] != (uint64_t)n_out)
        return errf(err, errlen, "tensor '%s' has shape [%llu, %llu], expected [%d, %d]", name,
                    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], n_in, n_out);
    w->tt = kernels_traits((int)t->type);
    if (!w->tt)
        return errf(err, errlen, "tensor '%s' has type %s, which this engine does not support",
                    name, ggml_type_name(t->type));
    w->data = t->data;
    w->type = (int)t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = ggml_row_size(t->type, (uint64_t)n_in);
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n_in * (uint64_t)n_out;
    /* the token embedding is read by rows; it is packed only when it is also the output */
    return strcmp(name, "token_embd.weight") ? pack_weight(m, w, name, err, errlen) : 0;
}

/* A 1-D weight as f32: points into the mapping when stored as f32, else converted once. */
static int get_vector(model *m, const float **out, const char *name, int n, int required, char *err,
                      size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    *out = NULL;
    if (!t) return required ? errf(err, errlen, "missing tensor '%s'", name) : 0;
    if (t->n_dims != 1 || t->ne[0] != (uint64_t)n)
        return errf(err, errlen, "tensor '%s' has %u dims of %llu, expected [%d]", name, t->n_dims,
                    (unsigned long long)t->ne[0], n);
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n;
    if (t->type == GGML_TYPE_F32) {
        *out = t->data;
        return 0;
    }
    const type_traits *tt = kernels_traits((int)t->type);
    if (!tt)
        return errf(err, errlen, "tensor '%s' has type %s, which this engine does not support",
                    name, ggml_type_name(t->type));
    float *buf = mh_aligned_alloc((size_t)n * sizeof(float));
    if (!buf) return errf(err, errlen, "out of memory");
    tt->to_f32(t->data, buf, n);
    m->owned = mh_xrealloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *m->owned);
    m->owned[m->n_owned++] = buf;
    *out = buf;
    return 0;
}

static uint64_t weight_bytes(const weight *w) {
    return (uint64_t)w->row_bytes * (uint64_t)w->n_out;
}

static int load_weights(model *m, char *err, size_t errlen) {
    const model_hparams *hp = &m->hp;
    int q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    const gguf_tensor *te = gguf_find_tensor(m->file, "token_embd.weight");
    if (!te) return errf(err, errlen, "missing tensor 'token_embd.weight'");
    if (te->ne[1] == 0 || te->ne[1] > (1u << 24))
        return errf(err, errlen, "tensor 'token_embd.weight' has an implausible vocabulary size");
    m->hp.n_vocab = (int)te->ne[1];
    if (get_weight(m, &m->tok_embd, "token_embd.weight", hp->n_embd, hp->n_vocab, 1, err, errlen) <
            0 ||
        get_vector(m, &m->output_norm, "output_norm.weight", hp->n_embd, 1, err, errlen) < 0 ||
        get_weight(m, &m->output, "output.weight", hp->n_embd, hp->n_vocab, 0, err, errlen) < 0)
        return -1;
    if (!m->output.data) { /* tied embeddings */
        m->output = m->tok_embd;
        if (pack_weight(m, &m->output, "token_embd.weight", err, errlen) < 0) return -1;
    }
    if (get_vector(m, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 0, err, errlen) < 0)
        return -1;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return errf(err, errlen, "out of memory");
    m->bytes_per_token = weight_bytes(&m->output) + m->tok_embd.row_bytes;
    for (int l = 0; l < hp->n_layer; l++) {
        layer *L = &m->layers[l];
        char name[GGUF_MAX_NAME + 1];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
        int qwen2 = strcmp(hp->arch, "qwen2") == 0, qwen3 = strcmp(hp->arch, "qwen3") == 0;
        if (get_vector(m, &L->attn_norm, NAME("attn_norm.weight"), hp->n_embd, 1, err, errlen) <
                0 ||
            get_weight(m, &L->wq, NAME("attn_q.weight"), hp->n_embd, q_dim, 1, err, errlen) < 0 ||
            get_weight(m, &L->wk, NAME("attn_k.weight"), hp->n_embd, kv_dim, 1, err, errlen) < 0 ||
            get_weight(m, &L->wv, NAME("attn_v.weight"), hp->n_embd, kv_dim, 1, err, errlen) < 0 ||
            get_weight(m, &L->wo, NAME("attn_output.weight"), q_dim, hp->n_embd, 1, err, errlen) <
                0 ||
            get_vector(m, &L->bq, NAME("attn_q.bias"), q_dim, qwen2, err, errlen) < 0 ||
            get_vector(m, &L->bk, NAME("attn_k.bias"), kv_dim, qwen2, err, errlen) < 0 ||
            get_vector(m, &L->bv, NAME("attn_v.bias"), kv_dim, qwen2, err, errlen) < 0 ||
            get_vector(m, &L->q_norm, NAME("attn_q_norm.weight"), hp->head_dim, qwen3, err,
                       errlen) < 0 ||
            get_vector(m, &L->k_norm, NAME("attn_k_norm.weight"), hp->head_dim, qwen3, err,
                       errlen) < 0 ||
            get_vector(m, &L->ffn_norm, NAME("ffn_norm.weight"), hp->n_embd, 1, err, errlen) < 0 ||
            get_weight(m, &L->w_gate, NAME("ffn_gate.weight"), hp->n_embd, hp->n_ff, 1, err,
                       errlen) < 0 ||
            get_weight(m, &L->w_up, NAME("ffn_up.weight"), hp->n_embd, hp->n_ff, 1, err, errlen) <
                0 ||
            get_weight(m, &L->w_down, NAME("ffn_down.weight"), hp->n_ff, hp->n_embd, 1, err,
                       errlen) < 0)
            return -1;
#undef NAME
        m->bytes_per_token += weight_bytes(&L->wq) + weight_bytes(&L->wk) + weight_bytes(&L->wv) +
                              weight_bytes(&L->wo) + weight_bytes(&L->w_gate) +
                              weight_bytes(&L->w_up) + weight_bytes(&L->w_down);
    }
    return 0;
}

int model_load(const char *path, model **out, char *err, size_t errlen) {
    *out = NULL;
    kernels_init(0);
    model *m = calloc(1, sizeof *m);
    if (!m) return errf(err, errlen, "out of memory");
    if (gguf_open(path, &m->file, err, errlen) < 0 || read_hparams(m, path, err, errlen) < 0 ||
        load_weights(m, err, errlen) < 0 || tokenizer_load(m->file, &m->tok, err, errlen) < 0) {
        model_free(m);
        return -1;
    }
    if (tokenizer_n_vocab(m->tok) != m->hp.n_vocab) {
        errf(err, errlen, "tokenizer has %d tokens but token_embd.weight has %d rows",
             tokenizer_n_vocab(m->tok), m->hp.n_vocab);
        model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void model_free(model *m) {
    if (!m) return;
    tokenizer_free(m->tok);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    gguf_close(m->file);
    free(m);
}

const model_hparams *model_get_hparams(const model *m) {
    return &m->hp;
}
const tokenizer *model_get_tokenizer(const model *m) {
    return m->tok;
}
const gguf *model_get_gguf(const model *m) {
    return m->file;
}
uint64_t model_bytes_per_token(const model *m) {
    return m->bytes_per_token;
}
uint64_t model_weight_bytes(const model *m) {
    return m->weight_bytes;
}
uint64_t model_n_params(const model *m) {
    return m->n_params;
}

/* ==== Context ==== */

/* Rows one attention task handles at most (the q heads of one KV head for a few tokens). */
#define ATTN_MAX_ROWS 64

typedef struct attn_job {
    int seq;
    int kvh;    /* KV head */
    int t0, t1; /* tokens [t0, t1) of the forward batch, all of sequence `seq` */
} attn_job;

struct model_ctx {
    model *m;
    threadpool *tp;
    int n_ctx, n_seq, n_batch, kv_type;
    int n_threads;
    int q_dim, kv_dim;
    size_t kv_elt; /* bytes per cached element: 2 (F16) or 4 (F32) */
    mm_scratch *mm;
    const volatile int *abort_flag;

    uint8_t *k_cache;    /* (n_seq, n_layer, n_ctx, kv_dim) in kv_type, reserved lazily */
    uint8_t *v_cache;    /* (n_seq, n_layer, n_ctx, kv_dim) */
    size_t kv_map_bytes; /* of each of the two mappings */
    int *n_past;         /* (n_seq) */
    int *n_touched;      /* (n_seq) high-water mark of positions written */
    int *pool_n;         /* (n_seq) tokens pooled since position 0 */
    float *pool_sum;     /* (n_seq, n_embd) sums of final-norm hidden states */
    float *logits;       /* (n_seq, n_vocab) */

    /* one forward pass of up to n_batch tokens */
    int32_t *tok_id;        /* (n_batch) */
    int *tok_seq, *tok_pos; /* (n_batch) */
    int *tok_out;           /* (n_batch) enum model_output of each token (logits: last only) */
    float *x;               /* (n_batch, n_embd) residual stream */
    float *xn;              /* (n_batch, n_embd) normed input of a block */
    float *q;               /* (n_batch, q_dim) */
    float *k_cur, *v_cur;   /* (n_batch, kv_dim) this pass's keys and values */
    float *attn_out;        /* (n_batch, q_dim) */
    float *hb;              /* (n_batch, n_ff) gate, then silu(gate) * up */
    float *hb2;             /* (n_batch, n_ff) up */
    float *rope_cs;         /* (n_batch, n_rot) cos, sin interleaved per pair */
    float *inv_freq;        /* (n_rot / 2) */
    float *head_in;         /* (n_batch, n_embd) final-norm rows that want logits */
    float *head_out;        /* (min(n_seq, n_batch), n_vocab) their logits before the copy */
    float *attn_scratch;    /* (n_threads, attn_scratch_floats) */
    size_t attn_scratch_floats;
    attn_job *attn_jobs; /* (n_batch * n_head_kv) */
    uint64_t bytes;
};

uint64_t model_kv_bytes_per_pos(const model *m, int kv_type) {
    const model_hparams *hp = &m->hp;
    return 2ull * (uint64_t)hp->n_layer * (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim *
           (kv_type == MODEL_KV_F32 ? 4u : 2u);
}

const char *model_kv_type_name(int kv_type) {
    return kv_type == MODEL_KV_F32 ? "f32" : "f16";
}

int model_kv_type_parse(const char *name) {
    if (name && strcmp(name, "f16") == 0) return MODEL_KV_F16;
    if (name && strcmp(name, "f32") == 0) return MODEL_KV_F32;
    return -1;
}

/* Address space for a KV cache: pages are taken when first written, so a long context costs
 * only what it holds. */
static void *kv_reserve(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

model_ctx *model_ctx_new(model *m, const model_ctx_params *p, threadpool *tp, char *err,
                         size_t errlen) {
    const model_hparams *hp = &m->hp;
    int n_ctx = p->n_ctx > 0 ? p->n_ctx : hp->n_ctx_train;
    int n_seq = p->n_seq > 0 ? p->n_seq : 1;
    int n_batch = p->n_batch > 0 ? p->n_batch : MODEL_BATCH_DEFAULT;
    if (n_ctx > (1 << 24) || n_seq > 4096 || n_batch > MODEL_BATCH_MAX ||
        (p->kv_type != MODEL_KV_F16 && p->kv_type != MODEL_KV_F32))
        return errf(err, errlen,
                    "context parameters out of range (n_ctx %d, %d sequences, "
                    "batch %d, kv type %d)",
                    n_ctx, n_seq, n_batch, p->kv_type),
               NULL;
    model_ctx *c = calloc(1, sizeof *c);
    if (!c) return errf(err, errlen, "out of memory"), NULL;
    c->m = m;
    c->tp = tp;
    c->n_ctx = n_ctx;
    c->n_seq = n_seq;
    c->n_batch = n_batch;
    c->kv_type = p->kv_type;
    c->kv_elt = p->kv_type == MODEL_KV_F32 ? 4 : 2;
    c->n_threads = tp ? threadpool_size(tp) : 1;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    c->kv_map_bytes =
        (size_t)n_seq * (size_t)hp->n_layer * (size_t)n_ctx * (size_t)c->kv_dim * c->kv_elt;
    c->k_cache = kv_reserve(c->kv_map_bytes);
    c->v_cache = c->k_cache ? kv_reserve(c->kv_map_bytes) : NULL;
    if (!c->v_cache) {
        errf(err, errlen,
             "cannot reserve %zu MiB of address space for the KV cache of %d x %d "
             "positions",
             c->kv_map_bytes * 2 >> 20, n_seq, n_ctx);
        model_ctx_free(c);
        return NULL;
    }
    c->attn_scratch_floats =
        (ATTN_SCRATCH_FLOATS(ATTN_MAX_ROWS, hp->head_dim, n_ctx) + 15) & ~(size_t)15;
    int max_row = MH_MAX(MH_MAX(hp->n_embd, hp->n_ff), c->q_dim);
    size_t nb = (size_t)n_batch, f = sizeof(float);
    struct {
        void **p;
        size_t bytes;
    } bufs[] = {
        {(void **)&c->n_past, (size_t)n_seq * sizeof(int)},
        {(void **)&c->n_touched, (size_t)n_seq * sizeof(int)},
        {(void **)&c->pool_n, (size_t)n_seq * sizeof(int)},
        {(void **)&c->pool_sum, (size_t)n_seq * hp->n_embd * f},
        {(void **)&c->logits, (size_t)n_seq * hp->n_vocab * f},
        {(void **)&c->tok_id, nb * sizeof(int32_t)},
        {(void **)&c->tok_seq, nb * sizeof(int)},
        {(void **)&c->tok_pos, nb * sizeof(int)},
        {(void **)&c->tok_out, nb * sizeof(int)},
        {(void **)&c->x, nb * hp->n_embd * f},
        {(void **)&c->xn, nb * hp->n_embd * f},
        {(void **)&c->q, nb * c->q_dim * f},
        {(void **)&c->k_cur, nb * c->kv_dim * f},
        {(void **)&c->v_cur, nb * c->kv_dim * f},
        {(void **)&c->attn_out, nb * c->q_dim * f},
        {(void **)&c->hb, nb * hp->n_ff * f},
        {(void **)&c->hb2, nb * hp->n_ff * f},
        {(void **)&c->rope_cs, nb * hp->n_rot * f},
        {(void **)&c->inv_freq, (size_t)hp->n_rot / 2 * f + f},
        {(void **)&c->head_in, nb * hp->n_embd * f},
        {(void **)&c->head_out, (size_t)MH_MIN(n_seq, n_batch) * hp->n_vocab * f},
        {(void **)&c->attn_scratch, (size_t)c->n_threads * c->attn_scratch_floats * f},
        {(void **)&c->attn_jobs, nb * hp->n_head_kv * sizeof(attn_job)},
    };
    for (size_t i = 0; i < MH_ARRAY_LEN(bufs); i++) {
        *bufs[i].p = mh_aligned_alloc(bufs[i].bytes);
        if (!*bufs[i].p) {
            errf(err, errlen, "out of memory allocating %zu bytes for a context of %d tokens",
                 bufs[i].bytes, n_ctx);
            model_ctx_free(c);
            return NULL;
        }
        c->bytes += bufs[i].bytes;
    }
    memset(c->n_past, 0, (size_t)n_seq * sizeof(int));
    memset(c->n_touched, 0, (size_t)n_seq * sizeof(int));
    memset(c->pool_n, 0, (size_t)n_seq * sizeof(int));
    memset(c->logits, 0, (size_t)n_seq * hp->n_vocab * f);
    c->mm = mm_scratch_new(c->n_threads, max_row, n_batch);
    if (!c->mm) {
        errf(err, errlen, "out of memory for the matmul buffers");
        model_ctx_free(c);
        return NULL;
    }
    c->bytes += mm_scratch_bytes(c->mm);
    for (int i = 0; i < hp->n_rot / 2; i++)
        c->inv_freq[i] = (float)(pow(hp->rope_freq_base, -2.0 * i / hp->n_rot) *
                                 hp->rope_freq_scale / (m->rope_freqs ? m->rope_freqs[i] : 1.0f));
    return c;
}

void model_ctx_free(model_ctx *c) {
    if (!c) return;
    void *all[] = {c->n_past,   c->n_touched, c->pool_n,   c->pool_sum,  c->logits,      c->tok_id,
                   c->tok_seq,  c->tok_pos,   c->tok_out,  c->x,         c->xn,          c->q,
                   c->k_cur,    c->v_cur,     c->attn_out, c->hb,        c->hb2,         c->rope_cs,
                   c->inv_freq, c->head_in,   c->head_out, c->attn_jobs, c->attn_scratch};
    for (size_t i = 0; i < MH_ARRAY_LEN(all); i++) free(all[i]);
    if (c->k_cache) munmap(c->k_cache, c->kv_map_bytes);
    if (c->v_cache) munmap(c->v_cache, c->kv_map_bytes);
    mm_scratch_free(c->mm);
    free(c);
}

int model_ctx_n_ctx(const model_ctx *c) {
    return c->n_ctx;
}
int model_ctx_n_seq(const model_ctx *c) {
    return c->n_seq;
}
int model_ctx_n_batch(const model_ctx *c) {
    return c->n_batch;
}
int model_ctx_kv_type(const model_ctx *c) {
    return c->kv_type;
}
int model_ctx_n_past(const model_ctx *c, int seq) {
    MH_ASSERT(seq >= 0 && seq < c->n_seq);
    return c->n_past[seq];
}
uint64_t model_ctx_bytes(const model_ctx *c) {
    return c->bytes;
}
uint64_t model_ctx_kv_reserved(const model_ctx *c) {
    return 2ull * c->kv_map_bytes;
}
uint64_t model_ctx_kv_used(const model_ctx *c) {
    uint64_t used = 0, per_pos = model_kv_bytes_per_pos(c->m, c->kv_type);
    for (int s = 0; s < c->n_seq; s++) used += (uint64_t)c->n_touched[s] * per_pos;
    return used;
}
const float *model_ctx_logits(const model_ctx *c, int seq) {
    MH_ASSERT(seq >= 0 && seq < c->n_seq);
    return c->logits + (size_t)seq * c->m->hp.n_vocab;
}
void model_ctx_set_abort(model_ctx *c, const volatile int *flag) {
    c->abort_flag = flag;
}

void model_ctx_rewind(model_ctx *c, int seq, int n) {
    MH_ASSERT(seq >= 0 && seq < c->n_seq);
    if (n < 0) n = 0;
    if (n < c->n_past[seq]) c->n_past[seq] = n;
    if (c->n_past[seq] == 0) c->pool_n[seq] = 0;
}

/* Keys (or values) of sequence `seq`, layer l, position pos. */
static inline uint8_t *kv_at(const model_ctx *c, uint8_t *cache, int seq, int l, int pos) {
    size_t row = ((size_t)seq * c->m->hp.n_layer + (size_t)l) * (size_t)c->n_ctx + (size_t)pos;
    return cache + row * (size_t)c->kv_dim * c->kv_elt;
}

void model_ctx_clear(model_ctx *c, int seq) {
    model_ctx_rewind(c, seq, 0);
    size_t bytes = (size_t)c->m->hp.n_layer * (size_t)c->n_ctx * (size_t)c->kv_dim * c->kv_elt;
    uint8_t *caches[2] = {c->k_cache, c->v_cache};
    for (int i = 0; i < 2; i++) /* the sequence's region is contiguous in both caches */
        madvise(kv_at(c, caches[i], seq, 0, 0), bytes, MADV_DONTNEED);
    c->n_touched[seq] = 0;
}

void model_ctx_copy_prefix(model_ctx *c, int dst, int src, int n) {
    MH_ASSERT(dst >= 0 && dst < c->n_seq && src >= 0 && src < c->n_seq && dst != src);
    MH_ASSERT(n <= c->n_past[src] && n <= c->n_ctx);
    int from = c->n_past[dst];
    if (n <= from) return;
    size_t bytes = (size_t)(n - from) * (size_t)c->kv_dim * c->kv_elt;
    for (int l = 0; l < c->m->hp.n_layer; l++) {
        memcpy(kv_at(c, c->k_cache, dst, l, from), kv_at(c, c->k_cache, src, l, from), bytes);
        memcpy(kv_at(c, c->v_cache, dst, l, from), kv_at(c, c->v_cache, src, l, from), bytes);
    }
    c->n_past[dst] = n;
    if (n > c->n_touched[dst]) c->n_touched[dst] = n;
    c->pool_n[dst] = 0; /* what was copied was never pooled here: not an embedding's state */
}

/* ==== Matmul ==== */

static void matmul(model_ctx *c, const mm_job *jobs, int n_jobs, int B) {
    mm_run(c->n_threads > 1 ? c->tp : NULL, c->mm, jobs, n_jobs, B);
}

/* ==== Rope and attention ==== */

/* cos/sin of every rotated pair at each token's position. */
static void rope_prepare(model_ctx *c, int B) {
    int half = c->m->hp.n_rot / 2;
    for (int b = 0; b < B; b++) {
        float *cs = c->rope_cs + (size_t)b * c->m->hp.n_rot;
        for (int i = 0; i < half; i++) {
            double theta = (double)c->tok_pos[b] * (double)c->inv_freq[i];
            cs[2 * i] = (float)cos(theta);
            cs[2 * i + 1] = (float)sin(theta);
        }
    }
}

/* Rotate the first n_rot dims of each head of `v` (n_heads heads). */
static void rope_apply(const model_ctx *c, float *v, int n_heads, int b) {
    const model_hparams *hp = &c->m->hp;
    const float *cs = c->rope_cs + (size_t)b * hp->n_rot;
    int half = hp->n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * hp->head_dim;
        for (int i = 0; i < half; i++) {
            int i0 = hp->rope_mode == ROPE_NEOX ? i : 2 * i;
            int i1 = hp->rope_mode == ROPE_NEOX ? i + half : 2 * i + 1;
            float x0 = x[i0], x1 = x[i1], co = cs[2 * i], si = cs[2 * i + 1];
            x[i0] = x0 * co - x1 * si;
            x[i1] = x0 * si + x1 * co;
        }
    }
}

/* Split the pass's tokens into attention jobs: runs of consecutive tokens of one sequence, per
 * KV head, in pieces of at most ATTN_MAX_ROWS query rows (and small enough that every thread
 * gets several). Each row's result does not depend on the split (see attn_rows). */
static int plan_attention(model_ctx *c, int B) {
    const model_hparams *hp = &c->m->hp;
    int group = hp->n_head / hp->n_head_kv;
    int per_job = MH_MAX(1, ATTN_MAX_ROWS / group); /* tokens per job */
    /* aim for about 4 jobs per thread when the batch is big enough */
    int want = 4 * c->n_threads;
    int jobs_at_max = 0;
    for (int b0 = 0, b = 1; b <= B; b++)
        if (b == B || c->tok_seq[b] != c->tok_seq[b0]) {
            jobs_at_max += (b - b0 + per_job - 1) / per_job * hp->n_head_kv;
            b0 = b;
        }
    if (jobs_at_max < want) per_job = MH_MAX(1, per_job * jobs_at_max / want);
    int n = 0;
    for (int b0 = 0, b = 1; b <= B; b++) {
        if (b < B && c->tok_seq[b] == c->tok_seq[b0]) continue;
        for (int t0 = b0; t0 < b; t0 += per_job)
            for (int h = 0; h < hp->n_head_kv; h++)
                c->attn_jobs[n++] = (attn_job){c->tok_seq[b0], h, t0, MH_MIN(t0 + per_job, b)};
        b0 = b;
    }
    return n;
}

typedef struct attn_task {
    model_ctx *c;
    int layer;
    int n_jobs;
    _Atomic int next;
} attn_task;

static void attn_worker(void *arg, int ith, int nth) {
    (void)nth;
    attn_task *t = arg;
    model_ctx *c = t->c;
    const model_hparams *hp = &c->m->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    float *scratch = c->attn_scratch + (size_t)ith * c->attn_scratch_floats;
    const float *qr[ATTN_MAX_ROWS];
    float *orow[ATTN_MAX_ROWS];
    int start[ATTN_MAX_ROWS], end[ATTN_MAX_ROWS];
    for (;;) {
        int ji = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (ji >= t->n_jobs) break;
        const attn_job *j = &c->attn_jobs[ji];
        int nq = 0;
        for (int b = j->t0; b < j->t1; b++) {
            int pos = c->tok_pos[b];
            int lo = hp->sliding_window ? MH_MAX(0, pos - hp->sliding_window + 1) : 0;
            for (int g = 0; g < group; g++) {
                int h = j->kvh * group + g;
                qr[nq] = c->q + (size_t)b * c->q_dim + (size_t)h * hd;
                orow[nq] = c->attn_out + (size_t)b * c->q_dim + (size_t)h * hd;
                start[nq] = lo;
                end[nq] = pos + 1;
                nq++;
            }
        }
        size_t head_off = (size_t)j->kvh * hd * c->kv_elt;
        attn_rows_args a = {
            .nq = nq,
            .hd = hd,
            .q = qr,
            .out = orow,
            .start = start,
            .end = end,
            .k = kv_at(c, c->k_cache, j->seq, t->layer, 0) + head_off,
            .v = kv_at(c, c->v_cache, j->seq, t->layer, 0) + head_off,
            .kv_stride = (size_t)c->kv_dim,
            .kv_f16 = c->kv_type == MODEL_KV_F16,
            .scale = 1.0f / sqrtf((float)hd),
            .scratch = scratch,
        };
        attn_rows(&a);
    }
}

/* Write this pass's keys and values into each token's sequence at its position. */
static void kv_store(model_ctx *c, int l, int B) {
    const type_traits *f16 = kernels_traits(GGML_TYPE_F16);
    for (int b = 0; b < B; b++) {
        uint8_t *kd = kv_at(c, c->k_cache, c->tok_seq[b], l, c->tok_pos[b]);
        uint8_t *vd = kv_at(c, c->v_cache, c->tok_seq[b], l, c->tok_pos[b]);
        const float *ks = c->k_cur + (size_t)b * c->kv_dim, *vs = c->v_cur + (size_t)b * c->kv_dim;
        if (c->kv_type == MODEL_KV_F16) {
            f16->from_f32(ks, kd, c->kv_dim);
            f16->from_f32(vs, vd, c->kv_dim);
        } else {
            memcpy(kd, ks, (size_t)c->kv_dim * sizeof(float));
            memcpy(vd, vs, (size_t)c->kv_dim * sizeof(float));
        }
    }
}

/* ==== Forward ==== */

/* Run one pass of B <= n_batch tokens (tok_id, tok_seq, tok_pos filled). Leaves the final
 * residual stream of each token in c->x. */
static void forward_pass(model_ctx *c, int B) {
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    int D = hp->n_embd;

    for (int b = 0; b < B; b++)
        m->tok_embd.tt->to_f32((const uint8_t *)m->tok_embd.data +
                                   (size_t)c->tok_id[b] * m->tok_embd.row_bytes,
                               c->x + (size_t)b * D, D);
    rope_prepare(c, B);
    int n_attn = plan_attention(c, B);
    uint64_t attn_work = 0;
    for (int b = 0; b < B; b++) attn_work += (uint64_t)(c->tok_pos[b] + 1);
    attn_work *= (uint64_t)hp->n_head * hp->head_dim;

    for (int l = 0; l < hp->n_layer; l++) {
        const layer *L = &m->layers[l];
        for (int b = 0; b < B; b++)
            rmsnorm(c->xn + (size_t)b * D, c->x + (size_t)b * D, L->attn_norm, D, hp->rms_eps);
        mm_job qkv[3] = {
            {&L->wq, c->xn, c->q, c->q_dim, 0},
            {&L->wk, c->xn, c->k_cur, c->kv_dim, 0},
            {&L->wv, c->xn, c->v_cur, c->kv_dim, 0},
        };
        matmul(c, qkv, 3, B);
        for (int b = 0; b < B; b++) {
            float *q = c->q + (size_t)b * c->q_dim, *k = c->k_cur + (size_t)b * c->kv_dim;
            float *v = c->v_cur + (size_t)b * c->kv_dim;
            if (L->bq) {
                for (int i = 0; i < c->q_dim; i++) q[i] += L->bq[i];
                for (int i = 0; i < c->kv_dim; i++) k[i] += L->bk[i];
                for (int i = 0; i < c->kv_dim; i++) v[i] += L->bv[i];
            }
            if (L->q_norm) {
                for (int h = 0; h < hp->n_head; h++)
                    rmsnorm(q + (size_t)h * hp->head_dim, q + (size_t)h * hp->head_dim, L->q_norm,
                            hp->head_dim, hp->rms_eps);
                for (int h = 0; h < hp->n_head_kv; h++)
                    rmsnorm(k + (size_t)h * hp->head_dim, k + (size_t)h * hp->head_dim, L->k_norm,
                            hp->head_dim, hp->rms_eps);
            }
            rope_apply(c, q, hp->n_head, b);
            rope_apply(c, k, hp->n_head_kv, b);
        }
        kv_store(c, l, B);

        attn_task at = {.c = c, .layer = l, .n_jobs = n_attn};
        atomic_init(&at.next, 0);
        if (!c->tp || c->n_threads == 1 || attn_work < MIN_MACS_PER_DISPATCH)
            attn_worker(&at, 0, 1);
        else
            threadpool_run(c->tp, attn_worker, &at);

        mm_job o = {&L->wo, c->attn_out, c->x, D, 1};
        matmul(c, &o, 1, B);

        for (int b = 0; b < B; b++)
            rmsnorm(c->xn + (size_t)b * D, c->x + (size_t)b * D, L->ffn_norm, D, hp->rms_eps);
        mm_job gate_up[2] = {
            {&L->w_gate, c->xn, c->hb, hp->n_ff, 0},
            {&L->w_up, c->xn, c->hb2, hp->n_ff, 0},
        };
        matmul(c, gate_up, 2, B);
        size_t nf = (size_t)B * hp->n_ff;
        swiglu(c->hb, c->hb2, nf);
        mm_job down = {&L->w_down, c->hb, c->x, D, 1};
        matmul(c, &down, 1, B);
    }
}

/* After a pass: pool and output head for the tokens that asked. */
static void pass_outputs(model_ctx *c, int B) {
    const model_hparams *hp = &c->m->hp;
    int D = hp->n_embd, n_head = 0;
    int head_seq[MODEL_BATCH_MAX];
    for (int b = 0; b < B; b++) {
        if (c->tok_out[b] == MODEL_OUT_POOL) {
            int s = c->tok_seq[b];
            float *sum = c->pool_sum + (size_t)s * D;
            if (c->pool_n[s] == 0) memset(sum, 0, (size_t)D * sizeof(float));
            rmsnorm(c->head_in, c->x + (size_t)b * D, c->m->output_norm, D, hp->rms_eps);
            for (int i = 0; i < D; i++) sum[i] += c->head_in[i];
            c->pool_n[s]++;
        }
    }
    for (int b = 0; b < B; b++)
        if (c->tok_out[b] == MODEL_OUT_LOGITS) {
            rmsnorm(c->head_in + (size_t)n_head * D, c->x + (size_t)b * D, c->m->output_norm, D,
                    hp->rms_eps);
            head_seq[n_head++] = c->tok_seq[b];
        }
    if (n_head == 0) return;
    size_t V = (size_t)hp->n_vocab;
    /* one row: straight into its sequence's logits; several: one matmul, then copied */
    float *dst = n_head == 1 ? c->logits + (size_t)head_seq[0] * V : c->head_out;
    mm_job head = {&c->m->output, c->head_in, dst, hp->n_vocab, 0};
    matmul(c, &head, 1, n_head);
    if (n_head > 1)
        for (int i = 0; i < n_head; i++)
            memcpy(c->logits + (size_t)head_seq[i] * V, c->head_out + (size_t)i * V,
                   V * sizeof(float));
}

static int check_items(const model_ctx *c, const model_batch_item *items, int n_items) {
    if (n_items <= 0) return -1;
    for (int i = 0; i < n_items; i++) {
        const model_batch_item *it = &items[i];
        if (it->seq < 0 || it->seq >= c->n_seq || it->n <= 0 || !it->tokens ||
            it->n > c->n_ctx - c->n_past[it->seq] || it->output < MODEL_OUT_NONE ||
            it->output > MODEL_OUT_POOL)
            return -1;
        for (int k = 0; k < i; k++)
            if (items[k].seq == it->seq) return -1;
        for (int k = 0; k < it->n; k++)
            if (it->tokens[k] < 0 || it->tokens[k] >= c->m->hp.n_vocab) return -1;
    }
    return 0;
}

int model_ctx_decode(model_ctx *c, const model_batch_item *items, int n_items) {
    if (check_items(c, items, n_items) < 0) return -1;
    /* lay the items' tokens side by side, n_batch per pass; an item may span passes */
    int item = 0, done = 0; /* next token: items[item].tokens[done] */
    while (item < n_items) {
        if (c->abort_flag && *c->abort_flag) return -2;
        int B = 0;
        while (B < c->n_batch && item < n_items) {
            const model_batch_item *it = &items[item];
            int take = MH_MIN(c->n_batch - B, it->n - done);
            int pos0 = c->n_past[it->seq];
            for (int k = 0; k < take; k++) {
                c->tok_id[B] = it->tokens[done + k];
                c->tok_seq[B] = it->seq;
                c->tok_pos[B] = pos0 + k;
                int last = done + k == it->n - 1;
                c->tok_out[B] = it->output == MODEL_OUT_POOL             ? MODEL_OUT_POOL
                                : it->output == MODEL_OUT_LOGITS && last ? MODEL_OUT_LOGITS
                                                                         : MODEL_OUT_NONE;
                B++;
            }
            done += take;
            if (done == it->n) {
                item++;
                done = 0;
            }
        }
        forward_pass(c, B);
        pass_outputs(c, B);
        /* the pass's tokens are in the caches now */
        for (int b = 0; b < B; b++) {
            int s = c->tok_seq[b];
            if (c->tok_pos[b] + 1 > c->n_past[s]) c->n_past[s] = c->tok_pos[b] + 1;
            if (c->n_past[s] > c->n_touched[s]) c->n_touched[s] = c->n_past[s];
        }
    }
    return 0;
}

int model_ctx_eval(model_ctx *c, int seq, const int32_t *tokens, int n) {
    model_batch_item it = {seq, tokens, n, MODEL_OUT_LOGITS};
    return model_ctx_decode(c, &it, 1);
}

int model_ctx_pooled(const model_ctx *c, int seq, float *out) {
    MH_ASSERT(seq >= 0 && seq < c->n_seq);
    int n = c->pool_n[seq], D = c->m->hp.n_embd;
    if (n <= 0) return -1;
    const float *sum = c->pool_sum + (size_t)seq * D;
    double norm = 0;
    for (int i = 0; i < D; i++) {
        out[i] = sum[i] / (float)n;
        norm += (double)out[i] * out[i];
    }
    float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
    for (int i = 0; i < D; i++) out[i] *= inv;
    return 0;
}

int model_ctx_embed(model_ctx *c, int seq, const int32_t *tokens, int n, float *out) {
    if (seq < 0 || seq >= c->n_seq) return -1;
    model_ctx_rewind(c, seq, 0);
    model_batch_item it = {seq, tokens, n, MODEL_OUT_POOL};
    int rc = model_ctx_decode(c, &it, 1);
    if (rc == 0) rc = model_ctx_pooled(c, seq, out);
    model_ctx_rewind(c, seq, 0);
    return rc;
}
