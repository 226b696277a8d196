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

typedef struct synth_params {
    const char *path; /* output file */
    const char *name; /* general.name */
    int n_embd;       /* model width */
    int n_layer;
    int n_head;
    int n_head_kv; /* 0 = n_head */
    int n_ff;      /* 0 = 8/3 * n_embd rounded up to a multiple of 32 */
    int n_ctx;     /* llama.context_length */
    int type;      /* enum ggml_type of the matrices (F32, F16; see synth_validate) */
    int tied;      /* 1: no output.weight, the engine reuses token_embd */
    uint64_t seed;
    float rope_freq_base;
    float rms_eps;
    const char *arch;   /* "llama" (default), "qwen2" (q/k/v biases, NeoX rope) or "qwen3"
                           (per-head q/k RMSNorm, NeoX rope) */
    int head_dim;       /* 0 = n_embd / n_head; else written as ARCH.attention.key_length */
    int sliding_window; /* 0 = none; else ARCH.attention.sliding_window */
    int rope_freqs;     /* 1: write rope_freqs.weight (Llama 3.1-style per-pair divisors) */
    const char *vocab_from;    /* GGUF whose tokenizer.* keys are copied; NULL = built-in vocab */
    const char *chat_template; /* tokenizer.chat_template text (not a path); NULL = none */
} synth_params;

/* The defaults: a tiny model (64 wide, 2 layers, 4 heads, F32, built-in vocab) that loads and
 * runs instantly. `path` is left NULL. */
void synth_params_default(synth_params *p);

/* Check the parameters without touching any file. Matrix types: F32, F16, or any other type the
 * kernels can quantize into (from_f32) whose block divides --dim and --ff. Returns 0, or -1 with
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
