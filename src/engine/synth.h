/* synth.h — write a synthetic llama GGUF (v3) with random weights.
 *
 * The file has llama.cpp's key and tensor names, so llama.cpp and our engine both load it. The
 * weights come from a seeded PRNG (same parameters and seed -> same bytes), normal with
 * std 1/sqrt(fan_in) so activations keep their scale over many layers; norm weights are F32
 * near 1.0. Output is gibberish, but finite and different for different prompts.
 *
 * The tokenizer is either copied (every `tokenizer.*` key) from another GGUF or, by default, a
 * small built-in SentencePiece-style vocabulary: <unk> <s> </s>, the 256 byte tokens
 * <0x00>..<0xFF>, then single characters and a few hundred common English pieces ("▁the", ...)
 * with decreasing scores.
 */
#ifndef MH_SYNTH_H
#define MH_SYNTH_H

#include <stddef.h>
#include <stdint.h>

/* A pseudo matrix type: llama.cpp's Q4_K_M mix. Matrices are Q4_K except output.weight (and
 * token_embd when tied) in Q6_K, and attn_v / ffn_down in Q6_K on the layers llama.cpp's
 * use_more_bits() picks (the first and last eighth, and every third layer between), else Q4_K.
 * A matrix whose row length is not a multiple of 256 falls back as llama.cpp does: Q4_K ->
 * Q5_0, Q6_K -> Q8_0 (so a 576-wide SmolLM shape gets Q5_0/Q8_0 for its 576-long rows). */
#define SYNTH_TYPE_Q4_K_M 1000

typedef struct synth_params {
    const char *path; /* output file */
    const char *name; /* general.name */
    int n_embd;       /* model width */
    int n_layer;
    int n_head;
    int n_head_kv; /* 0 = n_head */
    int n_ff;      /* 0 = 8/3 * n_embd rounded up to a multiple of 32 */
    int n_ctx;     /* llama.context_length */
    int type;      /* enum ggml_type of the matrices (see synth_validate), or SYNTH_TYPE_Q4_K_M */
    int tied;      /* 1: no output.weight, the engine reuses token_embd */
    uint64_t seed;
    float rope_freq_base;
    float rms_eps;
    const char *arch;          /* "llama" (default), "qwen2" (q/k/v biases, NeoX rope) or "qwen3"
                                  (per-head q/k RMSNorm, NeoX rope) */
    int head_dim;              /* 0 = n_embd / n_head; else written as ARCH.attention.key_length */
    int sliding_window;        /* 0 = none; else ARCH.attention.sliding_window */
    int rope_freqs;            /* 1: write rope_freqs.weight (Llama 3.1-style per-pair divisors) */
    const char *vocab_from;    /* GGUF whose tokenizer.* keys are copied; NULL = built-in vocab */
    const char *chat_template; /* tokenizer.chat_template text (not a path); NULL = none */
} synth_params;

/* The defaults: a tiny model (64 wide, 2 layers, 4 heads, F32, built-in vocab) that loads and
 * runs instantly. `path` is left NULL. */
void synth_params_default(synth_params *p);

/* Check the parameters without touching any file. Matrix types: F32, F16, BF16, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K (any type the kernels quantize into), each only when its
 * block size divides every row length (--dim, --ff and heads * head dim), or SYNTH_TYPE_Q4_K_M
 * (row lengths multiples of 32). Returns 0, or -1 with
 * `err` naming the bad argument by its command-line name (e.g. "--dim 100 is not divisible by
 * --heads 3"). */
int synth_validate(const synth_params *p, char *err, size_t errlen);

/* The effective feed-forward width (n_ff, or its default when n_ff is 0). */
int synth_n_ff(const synth_params *p);

/* Write the model to p->path (through a temporary file renamed into place). Returns 0; -2 when
 * a parameter is invalid or --vocab-from cannot be used (nothing written); -1 when writing
 * fails. `err` holds the message either way. Peak memory is about the file size. */
int synth_write(const synth_params *p, char *err, size_t errlen);

/* Number of tokens in the built-in vocabulary. */
int synth_builtin_vocab_size(void);

#endif
