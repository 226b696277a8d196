#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/common.h"

typedef struct candidate {
    float logit;
    float p;
    int32_t id;
} candidate;

struct sampler {
    sampler_params p;
    int n_vocab;
    uint64_t rng;
    candidate *cand; /* (n_vocab) */
    float *logits;   /* (n_vocab) working copy after penalties */
    uint8_t *seen;   /* (n_vocab) tokens already penalised this step */
    uint32_t *count; /* (n_vocab) times each token was chosen since the reset */
    int32_t *chosen; /* the distinct tokens chosen since the reset, n_chosen of them */
    int n_chosen;
};

sampler_params sampler_defaults(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec,
    };
}

void sampler_reset(sampler *s, const sampler_params *p) {
    s->p = *p;
    if (s->p.n_bias < 0) s->p.n_bias = 0;
    if (s->p.n_bias > SAMPLER_MAX_BIAS) s->p.n_bias = SAMPLER_MAX_BIAS;
    if (s->count)
        for (int i = 0; i < s->n_chosen; i++) s->count[s->chosen[i]] = 0;
    s->n_chosen = 0;
    /* splitmix64 of the seed so that small seeds give well-mixed states */
    uint64_t z = p->seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
}

sampler *sampler_new(const sampler_params *p, int n_vocab) {
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_vocab = n_vocab;
    sampler_reset(s, p);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->logits = malloc((size_t)n_vocab * sizeof *s->logits);
    s->seen = calloc((size_t)n_vocab, 1);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->chosen = malloc((size_t)n_vocab * sizeof *s->chosen);
    if (!s->cand || !s->logits || !s->seen || !s->count || !s->chosen) {
        sampler_free(s);
        return NULL;
    }
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->logits);
    free(s->seen);
    free(s->count);
    free(s->chosen);
    free(s);
}

/* xorshift64*: uniform float in [0, 1). */
static float rng_uniform(sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    uint64_t r = s->rng * 0x2545f4914f6cdd1dull;
    return (float)(r >> 40) / (float)(1ull << 24);
}

/* The first index of the largest logit (NaN never wins). The maximum comes from eight running
 * maxima the compiler can keep in vector registers; a second pass finds where it first occurs.
 * One dependent compare per element made this a visible share of a batched step over a 49k vocab.
 */
int32_t sampler_argmax(const float *logits, int n) {
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = logits[i + j] > m[j] ? logits[i + j] : m[j];
    for (; i < n; i++) m[0] = logits[i] > m[0] ? logits[i] : m[0];
    float best = m[0];
    for (int j = 1; j < 8; j++) best = m[j] > best ? m[j] : best;
    for (i = 0; i < n; i++)
        if (logits[i] == best) return i;
    return 0; /* every logit NaN or -inf */
}

static int cmp_candidate(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Partially order cand[0..n) so the k largest come first, sorted. Quickselect then sort. */
static void select_top(candidate *c, int n, int k) {
    if (k < n) {
        int lo = 0, hi = n - 1;
        while (lo < hi) {
            candidate pivot = c[(lo + hi) / 2];
            int i = lo, j = hi;
            while (i <= j) {
                while (cmp_candidate(&c[i], &pivot) < 0) i++;
                while (cmp_candidate(&c[j], &pivot) > 0) j--;
                if (i <= j) {
                    candidate t = c[i];
                    c[i] = c[j];
                    c[j] = t;
                    i++;
                    j--;
                }
            }
            if (k - 1 <= j)
                hi = j;
            else if (k - 1 >= i)
                lo = i;
            else
                break;
        }
    }
    qsort(c, (size_t)(k < n ? k : n), sizeof *c, cmp_candidate);
}

/* The logits after the repetition, frequency and presence penalties and the biases: `logits`
 * itself when none applies, else the sampler's working copy. */
static const float *penalised(sampler *s, const float *logits, const int32_t *history,
                              int n_history) {
    const sampler_params *p = &s->p;
    int repeat = p->repeat_penalty != 1.0f && history && n_history > 0;
    int counted = (p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f) && s->n_chosen > 0;
    if (!repeat && !counted && p->n_bias == 0) return logits;
    memcpy(s->logits, logits, (size_t)s->n_vocab * sizeof(float));
    if (repeat) {
        int from = n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        for (int i = from; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= s->n_vocab || s->seen[t]) continue;
            s->seen[t] = 1;
            float v = s->logits[t];
            s->logits[t] = v > 0 ? v / p->repeat_penalty : v * p->repeat_penalty;
        }
        for (int i = from; i < n_history; i++)
            if (history[i] >= 0 && history[i] < s->n_vocab) s->seen[history[i]] = 0;
    }
    if (counted)
        for (int i = 0; i < s->n_chosen; i++) {
            int32_t t = s->chosen[i];
            s->logits[t] -= (float)s->count[t] * p->frequency_penalty + p->presence_penalty;
        }
    for (int i = 0; i < p->n_bias; i++) {
        int32_t t = p->bias[i].id;
        if (t < 0 || t >= s->n_vocab) continue;
        /* -100 bans, as OpenAI documents: far enough below every real logit that no filter or
         * draw can pick it, finite so that an all-banned vocabulary still yields a token. */
        s->logits[t] = p->bias[i].bias <= -100.0f ? -1e30f : s->logits[t] + p->bias[i].bias;
    }
    return s->logits;
}

/* A token drawn from the penalised logits `l`. */
static int32_t pick(sampler *s, const float *l) {
    const sampler_params *p = &s->p;
    if (p->temperature <= 0.0f) return sampler_argmax(l, s->n_vocab);

    /* Candidates: tokens whose logit is within 30 of the best carry all the probability mass a
     * float can hold (e^-30 < 1e-13); dropping the rest first keeps the sort small. */
    float max = l[sampler_argmax(l, s->n_vocab)];
    int n = 0;
    for (int i = 0; i < s->n_vocab; i++)
        if (l[i] >= max - 30.0f) s->cand[n++] = (candidate){l[i], 0, i};
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    select_top(s->cand, n, k);
    n = k;

    double sum = 0;
    for (int i = 0; i < n; i++) sum += s->cand[i].p = expf(s->cand[i].logit - max);
    for (int i = 0; i < n; i++) s->cand[i].p = (float)(s->cand[i].p / sum);
    if (p->top_p < 1.0f) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += s->cand[i].p;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        float floor_p = s->cand[0].p * p->min_p;
        int keep = 1;
        while (keep < n && s->cand[keep].p >= floor_p) keep++;
        n = keep;
    }
    sum = 0;
    for (int i = 0; i < n; i++)
        sum += s->cand[i].p = expf((s->cand[i].logit - max) / p->temperature);
    double r = rng_uniform(s) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->cand[i].p;
        if (r < acc) return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}

#define LOGPROB_FLOOR (-9999.0f)

static float clamp_lp(double v) {
    return v < LOGPROB_FLOOR || v != v ? LOGPROB_FLOOR : (float)v;
}

/* Log-softmax facts of `l` for token t: its log-probability and the n_top best. */
static void log_probs(const sampler *s, const float *l, int32_t t, int n_top,
                      sampler_token_lp *out) {
    int n = s->n_vocab;
    float max = l[sampler_argmax(l, n)];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)l[i] - max);
    double lse = max + log(sum);
    out->chosen = (sampler_logprob){t, clamp_lp((double)l[t] - lse)};
    if (n_top < 0) n_top = 0;
    if (n_top > SAMPLER_MAX_TOP_LOGPROBS) n_top = SAMPLER_MAX_TOP_LOGPROBS;
    if (n_top > n) n_top = n;
    /* insertion into a short sorted list: one compare per token once the list is full */
    sampler_logprob *top = out->top;
    int k = 0;
    for (int i = 0; i < n && n_top > 0; i++) {
        float v = l[i];
        if (k == n_top && !(v > top[k - 1].logprob)) continue;
        int j = k < n_top ? k++ : k - 1;
        while (j > 0 && v > top[j - 1].logprob) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = (sampler_logprob){i, v};
    }
    for (int i = 0; i < k; i++) top[i].logprob = clamp_lp((double)top[i].logprob - lse);
    out->n_top = k;
}

int32_t sampler_sample_lp(sampler *s, const float *logits, const int32_t *history, int n_history,
                          int n_top, sampler_token_lp *out) {
    const float *l = penalised(s, logits, history, n_history);
    int32_t t = pick(s, l);
    if (out && t >= 0 && t < s->n_vocab) log_probs(s, l, t, n_top, out);
    if (t >= 0 && t < s->n_vocab && s->count[t]++ == 0) s->chosen[s->n_chosen++] = t;
    return t;
}

int32_t sampler_sample(sampler *s, const float *logits, const int32_t *history, int n_history) {
    return sampler_sample_lp(s, logits, history, n_history, 0, NULL);
}
