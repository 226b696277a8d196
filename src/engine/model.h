/* model.h — a llama-family GGUF model: load its weights (mmapped, zero-copy) and run the forward
 * pass over batches that mix tokens of several sequences.
 *
 * A `model` is immutable once loaded and shared by any number of contexts and threads. A
 * `model_ctx` holds n_seq independent sequences (a serving slot each): a KV cache per sequence,
 * the logits of each, and one set of activation buffers for batches of up to n_batch tokens (all
 * allocated once, in model_ctx_new). One forward pass reads every weight once for all the
 * tokens of the batch, whichever sequences they belong to. One thread at a time per context.
 * Matmuls are split over the threadpool given to the context; several contexts may share a pool
 * (calls are serialised).
 */
#ifndef MH_MODEL_H
#define MH_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"
#include "engine/threadpool.h"
#include "engine/tokenizer.h"

enum rope_mode { ROPE_NORMAL = 0, ROPE_NEOX = 2 };

typedef struct model_hparams {
    char arch[32];  /* general.architecture */
    char name[128]; /* general.name, or the file's base name */
    int n_vocab;
    int n_embd; /* model width */
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim; /* n_embd / n_head unless the file says otherwise */
    int n_ff;
    int n_ctx_train;
    int n_rot;     /* rope dimension count (<= head_dim) */
    int rope_mode; /* enum rope_mode */
    float rope_freq_base;
    float rope_freq_scale; /* 1 / linear rope scaling factor (1 = none) */
    float rms_eps;
    int sliding_window; /* 0 = none */
} model_hparams;

typedef struct model model;
typedef struct model_ctx model_ctx;

/* Map `path` and set up its weights and tokenizer. Returns 0, or -1 with `err` describing the
 * problem (unknown architecture, missing tensor, unsupported tensor type, bad shape, ...). */
int model_load(const char *path, model **out, char *err, size_t errlen);
void model_free(model *m);

const model_hparams *model_get_hparams(const model *m);
const tokenizer *model_get_tokenizer(const model *m);
const gguf *model_get_gguf(const model *m);
/* Bytes of the weights one decode step reads (every matrix once, the token embedding row only). */
uint64_t model_bytes_per_token(const model *m);
/* Bytes of all tensor data. */
uint64_t model_weight_bytes(const model *m);
uint64_t model_n_params(const model *m);

enum model_kv_type { MODEL_KV_F16 = 0, MODEL_KV_F32 = 1 };

typedef struct model_ctx_params {
    int n_ctx;   /* positions per sequence; 0 = the model's training context */
    int n_seq;   /* sequences; 0 = 1 */
    int kv_type; /* enum model_kv_type (0: F16, as llama.cpp) */
    int n_batch; /* tokens per forward pass; 0 = MODEL_BATCH_DEFAULT */
} model_ctx_params;
#define MODEL_BATCH_DEFAULT 64
#define MODEL_BATCH_MAX     512

/* KV cache bytes one position of one sequence takes (keys and values of every layer). */
uint64_t model_kv_bytes_per_pos(const model *m, int kv_type);
const char *model_kv_type_name(int kv_type);
/* "f16" or "f32" -> enum model_kv_type; -1 for anything else. */
int model_kv_type_parse(const char *name);

/* A context for p->n_seq sequences of p->n_ctx positions each. The KV caches are reserved as
 * address space and take memory as positions fill (a sequence's high-water mark stays
 * resident until model_ctx_clear). NULL with `err` set when memory cannot be had or a
 * parameter is out of range. */
model_ctx *model_ctx_new(model *m, const model_ctx_params *p, threadpool *tp, char *err,
                         size_t errlen);
void model_ctx_free(model_ctx *c);
int model_ctx_n_ctx(const model_ctx *c);
int model_ctx_n_seq(const model_ctx *c);
int model_ctx_n_batch(const model_ctx *c);
int model_ctx_kv_type(const model_ctx *c);
/* Positions of sequence `seq` filled so far. */
int model_ctx_n_past(const model_ctx *c, int seq);
/* Forget positions >= n (n <= n_past) of a sequence: the next eval continues from n. */
void model_ctx_rewind(model_ctx *c, int seq, int n);
/* Fill positions [n_past(dst), n) of sequence dst with the keys and values of sequence src at
 * the same positions (n <= n_past(src)): the caller knows both sequences hold the same tokens
 * there, so dst continues from n as if it had evaluated them. Not for embeddings (pooling
 * starts over). */
void model_ctx_copy_prefix(model_ctx *c, int dst, int src, int n);
/* Rewind to 0 and hand the sequence's KV pages back to the system. */
void model_ctx_clear(model_ctx *c, int seq);
/* Bytes of the activation buffers and scratch (allocated at creation). */
uint64_t model_ctx_bytes(const model_ctx *c);
/* KV cache bytes reserved for all sequences, and those touched so far (resident). */
uint64_t model_ctx_kv_reserved(const model_ctx *c);
uint64_t model_ctx_kv_used(const model_ctx *c);
/* While *flag is non-zero, model_ctx_decode stops between forward passes and returns -2. */
void model_ctx_set_abort(model_ctx *c, const volatile int *flag);

enum model_output {
    MODEL_OUT_NONE = 0,   /* only fill the cache */
    MODEL_OUT_LOGITS = 1, /* logits of the item's last token, see model_ctx_logits */
    MODEL_OUT_POOL = 2,   /* add each token's final-norm hidden state to the sequence's pool */
};

/* Tokens to append to one sequence, at positions n_past.. */
typedef struct model_batch_item {
    int seq;
    const int32_t *tokens;
    int n;
    int output; /* enum model_output */
} model_batch_item;

/* Evaluate the items (each a different sequence) together: their tokens are laid side by side
 * in forward passes of up to n_batch tokens, so the weights are read once per pass for all of
 * them. Each token attends only to its own sequence. Returns 0; -1 when an item is invalid (a
 * sequence out of range or listed twice, n < 1, a context that would overflow, a token id out
 * of range: nothing is evaluated); -2 when aborted (the tokens of the passes already done stay
 * in the caches, n_past says how far each sequence got). */
int model_ctx_decode(model_ctx *c, const model_batch_item *items, int n_items);
/* One sequence: model_ctx_decode of one item wanting logits. */
int model_ctx_eval(model_ctx *c, int seq, const int32_t *tokens, int n);
/* n_vocab floats: the logits after the last token of `seq` evaluated with MODEL_OUT_LOGITS,
 * valid until that sequence's next evaluation or rewind. */
const float *model_ctx_logits(const model_ctx *c, int seq);

/* Embedding of the tokens pooled into `seq` since it was last at position 0: mean of the
 * final-norm hidden states, L2-normalised, written to out[n_embd]. Returns 0, -1 if none. */
int model_ctx_pooled(const model_ctx *c, int seq, float *out);
/* Rewind `seq` to 0, evaluate the tokens with MODEL_OUT_POOL and write their embedding. */
int model_ctx_embed(model_ctx *c, int seq, const int32_t *tokens, int n, float *out);

#endif
