/* model.h — a llama-family GGUF model: load its weights (mmapped, zero-copy) and run the forward
 * pass for one sequence at a time per context.
 *
 * A `model` is immutable once loaded and shared by any number of contexts and threads. A
 * `model_ctx` is one sequence: its KV cache, its activation buffers (all allocated once, in
 * model_ctx_new) and its logits. One thread at a time per context. Matmuls are split over the
 * threadpool given to the context; several contexts may share a pool (calls are serialised).
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

/* A context of n_ctx positions (0 = the model's training context, capped at 4096).
 * Returns NULL with `err` set when memory cannot be had. */
model_ctx *model_ctx_new(model *m, int n_ctx, threadpool *tp, char *err, size_t errlen);
void model_ctx_free(model_ctx *c);
int model_ctx_n_ctx(const model_ctx *c);
/* Positions filled so far. */
int model_ctx_n_past(const model_ctx *c);
/* Forget positions >= n (n <= n_past): the next eval continues from n. 0 resets. */
void model_ctx_rewind(model_ctx *c, int n);
/* Bytes this context allocated (KV cache + buffers). */
uint64_t model_ctx_bytes(const model_ctx *c);
/* While *flag is non-zero, model_ctx_eval stops between batches and returns -2. NULL clears. */
void model_ctx_set_abort(model_ctx *c, const volatile int *flag);

/* Run `n` tokens at positions n_past.. and append them to the KV cache; the logits of the last
 * token are then in model_ctx_logits(). Long inputs are processed in batches of up to
 * model_ctx_batch_max() tokens as matrix-matrix work. Returns 0; -1 when the context would
 * overflow or a token id is out of range (nothing is evaluated); -2 when aborted (the tokens of
 * the batches already done stay in the cache). */
int model_ctx_eval(model_ctx *c, const int32_t *tokens, int n);
/* n_vocab floats owned by the context, valid until the next eval. */
const float *model_ctx_logits(const model_ctx *c);
int model_ctx_batch_max(const model_ctx *c);

/* Embedding of a token sequence: final-norm hidden states, mean-pooled, L2-normalised, written
 * to out[n_embd]. Uses (and resets) the context's cache. Returns 0, -1 on overflow. */
int model_ctx_embed(model_ctx *c, const int32_t *tokens, int n, float *out);

#endif
