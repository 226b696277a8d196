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

#include "engine/kernels.h"
#include "engine/matmul.h"
#include "util/common.h"

/* Tokens per forward batch: prefill runs as matrix-matrix work over this many tokens. */
#define BATCH_MAX 64
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

struct model_ctx {
    model *m;
    threadpool *tp;
    int n_ctx;
    int n_past;
    int n_threads;
    int q_dim, kv_dim;
    mm_scratch *mm;
    const volatile int *abort_flag;

    float *k_cache;  /* (n_layer, n_ctx, kv_dim) */
    float *v_cache;  /* (n_layer, n_ctx, kv_dim) */
    float *x;        /* (BATCH_MAX, n_embd) residual stream */
    float *xn;       /* (BATCH_MAX, n_embd) normed input of a block */
    float *q;        /* (BATCH_MAX, q_dim) */
    float *attn_out; /* (BATCH_MAX, q_dim) */
    float *hb;       /* (BATCH_MAX, n_ff) gate, then silu(gate) * up */
    float *hb2;      /* (BATCH_MAX, n_ff) up */
    float *att;      /* (n_threads, n_ctx) attention scores, one row per thread */
    float *rope_cs;  /* (BATCH_MAX, n_rot) cos, sin interleaved per pair */
    float *inv_freq; /* (n_rot / 2) */
    float *logits;   /* (n_vocab) */
    float *embd_sum; /* (n_embd) sum of final hidden states, for embeddings */
    uint64_t bytes;
};

model_ctx *model_ctx_new(model *m, int n_ctx, threadpool *tp, char *err, size_t errlen) {
    const model_hparams *hp = &m->hp;
    if (n_ctx <= 0) n_ctx = MH_MIN(hp->n_ctx_train, 4096);
    model_ctx *c = calloc(1, sizeof *c);
    if (!c) return errf(err, errlen, "out of memory"), NULL;
    c->m = m;
    c->tp = tp;
    c->n_ctx = n_ctx;
    c->n_threads = tp ? threadpool_size(tp) : 1;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    int max_row = MH_MAX(MH_MAX(hp->n_embd, hp->n_ff), c->q_dim);
    size_t kv = (size_t)hp->n_layer * (size_t)n_ctx * (size_t)c->kv_dim * sizeof(float);
    struct {
        float **p;
        size_t bytes;
    } bufs[] = {
        {&c->k_cache, kv},
        {&c->v_cache, kv},
        {&c->x, (size_t)BATCH_MAX * hp->n_embd * sizeof(float)},
        {&c->xn, (size_t)BATCH_MAX * hp->n_embd * sizeof(float)},
        {&c->q, (size_t)BATCH_MAX * c->q_dim * sizeof(float)},
        {&c->attn_out, (size_t)BATCH_MAX * c->q_dim * sizeof(float)},
        {&c->hb, (size_t)BATCH_MAX * hp->n_ff * sizeof(float)},
        {&c->hb2, (size_t)BATCH_MAX * hp->n_ff * sizeof(float)},
        {&c->att, (size_t)c->n_threads * n_ctx * sizeof(float)},
        {&c->rope_cs, (size_t)BATCH_MAX * hp->n_rot * sizeof(float)},
        {&c->inv_freq, (size_t)hp->n_rot / 2 * sizeof(float) + sizeof(float)},
        {&c->logits, (size_t)hp->n_vocab * sizeof(float)},
        {&c->embd_sum, (size_t)hp->n_embd * sizeof(float)},
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
    c->mm = mm_scratch_new(c->n_threads, max_row, BATCH_MAX);
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
    float *all[] = {c->k_cache, c->v_cache, c->x,       c->xn,       c->q,      c->attn_out, c->hb,
                    c->hb2,     c->att,     c->rope_cs, c->inv_freq, c->logits, c->embd_sum};
    for (size_t i = 0; i < MH_ARRAY_LEN(all); i++) free(all[i]);
    mm_scratch_free(c->mm);
    free(c);
}

int model_ctx_n_ctx(const model_ctx *c) {
    return c->n_ctx;
}
int model_ctx_n_past(const model_ctx *c) {
    return c->n_past;
}
uint64_t model_ctx_bytes(const model_ctx *c) {
    return c->bytes;
}
int model_ctx_batch_max(const model_ctx *c) {
    (void)c;
    return BATCH_MAX;
}
const float *model_ctx_logits(const model_ctx *c) {
    return c->logits;
}
void model_ctx_set_abort(model_ctx *c, const volatile int *flag) {
    c->abort_flag = flag;
}

void model_ctx_rewind(model_ctx *c, int n) {
    if (n < 0) n = 0;
    if (n < c->n_past) c->n_past = n;
}

/* ==== Matmul ==== */

static void matmul(model_ctx *c, const mm_job *jobs, int n_jobs, int B) {
    mm_run(c->n_threads > 1 ? c->tp : NULL, c->mm, jobs, n_jobs, B);
}

/* ==== Rope and attention ==== */

/* cos/sin of every rotated pair for the batch's positions. */
static void rope_prepare(model_ctx *c, int pos0, int B) {
    int half = c->m->hp.n_rot / 2;
    for (int b = 0; b < B; b++) {
        float *cs = c->rope_cs + (size_t)b * c->m->hp.n_rot;
        for (int i = 0; i < half; i++) {
            double theta = (double)(pos0 + b) * (double)c->inv_freq[i];
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

typedef struct attn_task {
    model_ctx *c;
    int layer;
    int pos0;
    int B;
} attn_task;

/* One (token, head) pair per step: scores against every cached position up to its own. */
static void attn_worker(void *arg, int ith, int nth) {
    const attn_task *t = arg;
    model_ctx *c = t->c;
    const model_hparams *hp = &c->m->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    float scale = 1.0f / sqrtf((float)hd);
    float *att = c->att + (size_t)ith * c->n_ctx;
    const float *kc = c->k_cache + (size_t)t->layer * c->n_ctx * c->kv_dim;
    const float *vc = c->v_cache + (size_t)t->layer * c->n_ctx * c->kv_dim;
    int n_tasks = t->B * hp->n_head;
    for (int task = ith; task < n_tasks; task += nth) {
        int b = task / hp->n_head, h = task % hp->n_head;
        int pos = t->pos0 + b;
        int start = hp->sliding_window ? MH_MAX(0, pos - hp->sliding_window + 1) : 0;
        const float *q = c->q + (size_t)b * c->q_dim + (size_t)h * hd;
        int kvh = h / group;
        size_t first = (size_t)start * c->kv_dim + (size_t)kvh * hd;
        attn_head(q, kc + first, vc + first, (size_t)c->kv_dim, pos - start + 1, hd, scale, att,
                  c->attn_out + (size_t)b * c->q_dim + (size_t)h * hd);
    }
}

/* ==== Forward ==== */

/* Run one batch of B <= BATCH_MAX tokens at positions n_past... Leaves the final residual
 * stream of each token in c->x. */
static void forward_batch(model_ctx *c, const int32_t *tokens, int B) {
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    int D = hp->n_embd, pos0 = c->n_past;

    for (int b = 0; b < B; b++)
        m->tok_embd.tt->to_f32((const uint8_t *)m->tok_embd.data +
                                   (size_t)tokens[b] * m->tok_embd.row_bytes,
                               c->x + (size_t)b * D, D);
    rope_prepare(c, pos0, B);

    for (int l = 0; l < hp->n_layer; l++) {
        const layer *L = &m->layers[l];
        float *kc = c->k_cache + ((size_t)l * c->n_ctx + pos0) * c->kv_dim;
        float *vc = c->v_cache + ((size_t)l * c->n_ctx + pos0) * c->kv_dim;

        for (int b = 0; b < B; b++)
            rmsnorm(c->xn + (size_t)b * D, c->x + (size_t)b * D, L->attn_norm, D, hp->rms_eps);
        mm_job qkv[3] = {
            {&L->wq, c->xn, c->q, c->q_dim, 0},
            {&L->wk, c->xn, kc, c->kv_dim, 0},
            {&L->wv, c->xn, vc, c->kv_dim, 0},
        };
        matmul(c, qkv, 3, B);
        for (int b = 0; b < B; b++) {
            float *q = c->q + (size_t)b * c->q_dim, *k = kc + (size_t)b * c->kv_dim;
            float *v = vc + (size_t)b * c->kv_dim;
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

        attn_task at = {c, l, pos0, B};
        uint64_t attn_work = (uint64_t)B * hp->n_head * (uint64_t)(pos0 + B) * hp->head_dim;
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
    c->n_past += B;
}

static int check_tokens(const model_ctx *c, const int32_t *tokens, int n) {
    if (n <= 0 || n > c->n_ctx - c->n_past) return -1;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.n_vocab) return -1;
    return 0;
}

int model_ctx_eval(model_ctx *c, const int32_t *tokens, int n) {
    if (check_tokens(c, tokens, n) < 0) return -1;
    const model_hparams *hp = &c->m->hp;
    int B = 0;
    for (int done = 0; done < n; done += B) {
        if (c->abort_flag && *c->abort_flag) return -2;
        B = MH_MIN(BATCH_MAX, n - done);
        forward_batch(c, tokens + done, B);
    }
    float *last = c->xn; /* final norm of the last token, then the output head */
    rmsnorm(last, c->x + (size_t)(B - 1) * hp->n_embd, c->m->output_norm, hp->n_embd, hp->rms_eps);
    mm_job head = {&c->m->output, last, c->logits, hp->n_vocab, 0};
    matmul(c, &head, 1, 1);
    return 0;
}

int model_ctx_embed(model_ctx *c, const int32_t *tokens, int n, float *out) {
    c->n_past = 0;
    if (check_tokens(c, tokens, n) < 0) return -1;
    const model_hparams *hp = &c->m->hp;
    int D = hp->n_embd;
    memset(c->embd_sum, 0, (size_t)D * sizeof(float));
    for (int done = 0; done < n;) {
        if (c->abort_flag && *c->abort_flag) return -2;
        int B = MH_MIN(BATCH_MAX, n - done);
        forward_batch(c, tokens + done, B);
        for (int b = 0; b < B; b++) {
            rmsnorm(c->xn, c->x + (size_t)b * D, c->m->output_norm, D, hp->rms_eps);
            for (int i = 0; i < D; i++) c->embd_sum[i] += c->xn[i];
        }
        done += B;
    }
    double norm = 0;
    for (int i = 0; i < D; i++) {
        out[i] = c->embd_sum[i] / (float)n;
        norm += (double)out[i] * out[i];
    }
    float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
    for (int i = 0; i < D; i++) out[i] *= inv;
    c->n_past = 0;
    return 0;
}
