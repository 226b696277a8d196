/* sampler.h — choose the next token from logits.
 *
 * Order of application (documented, fixed):
 *   1. repetition penalty over the last `repeat_last_n` tokens (positive logits divided by the
 *      penalty, negative ones multiplied, once per distinct token, as llama.cpp does);
 *   1b. OpenAI's frequency and presence penalties over the tokens this sampler has chosen since
 *      its last reset (the completion so far, not the prompt): a token chosen c times loses
 *      c x frequency_penalty + (c > 0) x presence_penalty;
 *   1c. logit_bias: each listed token's bias is added to its logit; -100 or less bans the token
 *      (it is never chosen while any other token is possible);
 *   2. temperature 0 -> greedy argmax, done;
 *   3. top-k (k <= 0 means all tokens), keeping the k highest logits;
 *   4. softmax over the kept candidates, then top-p (smallest prefix whose mass reaches p,
 *      at least one token) and min-p (drop tokens below min_p x the best probability);
 *   5. temperature: probabilities recomputed from logits / T over the survivors;
 *   6. one draw from the seeded generator.
 * Filters use the untempered distribution, so temperature changes only how the survivors are
 * weighted, not which survive. With the same seed and inputs the draws are identical.
 */
#ifndef MH_SAMPLER_H
#define MH_SAMPLER_H

#include <stdint.h>

/* A bias on one token's logit (OpenAI's logit_bias). */
typedef struct sampler_bias {
    int32_t id;
    float bias;
} sampler_bias;

#define SAMPLER_MAX_BIAS 512

typedef struct sampler_params {
    float temperature;       /* 0 = greedy */
    int top_k;               /* <= 0: disabled */
    float top_p;             /* 1 = disabled */
    float min_p;             /* 0 = disabled */
    float repeat_penalty;    /* 1 = disabled */
    int repeat_last_n;       /* tokens of history the penalty looks at */
    float frequency_penalty; /* 0 = disabled; per time a token was chosen before */
    float presence_penalty;  /* 0 = disabled; once for a token chosen before */
    int n_bias;
    sampler_bias bias[SAMPLER_MAX_BIAS];
    uint64_t seed;
} sampler_params;

/* The defaults modelhub uses when a request sets nothing: temperature 0.8, top-k 40,
 * top-p 0.95, min-p 0.05, no repetition penalty, a seed from the clock. */
sampler_params sampler_defaults(void);

typedef struct sampler sampler;

/* Allocates its candidate buffers once for n_vocab tokens. NULL on out of memory. */
sampler *sampler_new(const sampler_params *p, int n_vocab);
void sampler_free(sampler *s);
/* Start over with new parameters (re-seeds, forgets the tokens chosen), keeping the buffers. */
void sampler_reset(sampler *s, const sampler_params *p);
/* Pick a token and count it as chosen (for the frequency and presence penalties). `logits` is not
 * modified. `history` holds the previous tokens, prompt included (may be NULL). */
int32_t sampler_sample(sampler *s, const float *logits, const int32_t *history, int n_history);
#define SAMPLER_MAX_TOP_LOGPROBS 20

typedef struct sampler_logprob {
    int32_t id;
    float logprob;
} sampler_logprob;

/* What one sampled token's distribution looked like: the chosen token's log-probability and the
 * n_top most likely tokens, most likely first (ties by lower id). */
typedef struct sampler_token_lp {
    sampler_logprob chosen;
    int n_top;
    sampler_logprob top[SAMPLER_MAX_TOP_LOGPROBS];
} sampler_token_lp;

/* sampler_sample, also filling *out (n_top clamped to 0..SAMPLER_MAX_TOP_LOGPROBS). Log
 * probabilities below -9999 are reported as -9999 (a banned token's is far below). */
int32_t sampler_sample_lp(sampler *s, const float *logits, const int32_t *history, int n_history,
                          int n_top, sampler_token_lp *out);
/* Index of the largest logit (the first one on ties). */
int32_t sampler_argmax(const float *logits, int n);

#endif
