/* cmd_synth.c — `modelhub synth -o FILE [options]`: write a llama GGUF with random weights. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/gguf.h"
#include "engine/synth.h"
#include "util/common.h"

#define MAX_TEMPLATE_BYTES (1 << 20)

/* Read a whole text file into a NUL-terminated heap string. Returns NULL with `err` set. */
static char *read_text_file(const char *path, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return snprintf(err, errlen, "%s", strerror(errno)), NULL;
    char *text = mh_xmalloc(MAX_TEMPLATE_BYTES + 1);
    size_t n = fread(text, 1, MAX_TEMPLATE_BYTES + 1, fp);
    int failed = ferror(fp);
    fclose(fp);
    if (failed)
        snprintf(err, errlen, "read error");
    else if (n > MAX_TEMPLATE_BYTES)
        snprintf(err, errlen, "larger than %d bytes", MAX_TEMPLATE_BYTES);
    else if (memchr(text, 0, n))
        snprintf(err, errlen, "contains a NUL byte");
    else {
        text[n] = 0;
        return text;
    }
    free(text);
    return NULL;
}

int cmd_synth(int argc, char **argv) {
    synth_params p;
    synth_params_default(&p);
    const char *out = NULL, *type_name = "f32", *template_path = NULL;
    long dim = p.n_embd, layers = p.n_layer, heads = p.n_head, kv_heads = 0, ff = 0;
    long ctx = p.n_ctx, seed = (long)p.seed;
    double rope_base = p.rope_freq_base, rms_eps = p.rms_eps;
    int tied = 0, rope_freqs = 0;
    long head_dim = 0, sliding_window = 0;
    const arg_spec specs[] = {
        {"--arch", NULL, ARG_STRING, &p.arch, 0, 0, "ARCH",
         "llama, qwen2 (q/k/v biases) or qwen3 (q/k norms); both qwen use NeoX rope (llama)"},
        {"--head-dim", NULL, ARG_INT, &head_dim, 0, 1024, "N",
         "head size, written as key_length when set (default dim/heads)"},
        {"--sliding-window", NULL, ARG_INT, &sliding_window, 0, 1 << 24, "N",
         "attention.sliding_window (default none)"},
        {"--rope-freqs", NULL, ARG_FLAG, &rope_freqs, 0, 0, NULL,
         "write rope_freqs.weight (Llama 3.1-style rope scaling factors)"},
        {"--output", "-o", ARG_STRING, &out, 0, 0, "FILE", "the GGUF file to write (required)"},
        {"--dim", NULL, ARG_INT, &dim, 2, 65536, "D", "model width (default 64)"},
        {"--layers", NULL, ARG_INT, &layers, 1, 4096, "L", "number of blocks (default 2)"},
        {"--heads", NULL, ARG_INT, &heads, 1, 65536, "H", "attention heads (default 4)"},
        {"--kv-heads", NULL, ARG_INT, &kv_heads, 1, 65536, "K",
         "key/value heads, divides H (default H)"},
        {"--ff", NULL, ARG_INT, &ff, 1, 1 << 20, "F",
         "feed-forward width (default 8/3 D rounded up to 32)"},
        {"--ctx", NULL, ARG_INT, &ctx, 1, 1 << 24, "N", "llama.context_length (default 2048)"},
        {"--vocab-from", NULL, ARG_STRING, &p.vocab_from, 0, 0, "GGUF",
         "copy the tokenizer.* keys of this file (default: a built-in ~1000-token vocab)"},
        {"--type", NULL, ARG_STRING, &type_name, 0, 0, "TYPE",
         "matrix type: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, or q4_k_m "
         "(llama.cpp's Q4_K_M mix) (default f32)"},
        {"--tied", NULL, ARG_FLAG, &tied, 0, 0, NULL,
         "omit output.weight (the output reuses token_embd)"},
        {"--seed", NULL, ARG_INT, &seed, 0, 9007199254740991.0, "S", "PRNG seed (default 42)"},
        {"--chat-template", NULL, ARG_STRING, &template_path, 0, 0, "FILE",
         "store this file's text as tokenizer.chat_template"},
        {"--name", NULL, ARG_STRING, &p.name, 0, 0, "NAME", "general.name (default \"synth\")"},
        {"--rope-base", NULL, ARG_DOUBLE, &rope_base, 1e-3, 1e12, "B",
         "llama.rope.freq_base (default 10000)"},
        {"--rms-eps", NULL, ARG_DOUBLE, &rms_eps, 1e-12, 0.1, "E",
         "llama.attention.layer_norm_rms_epsilon (default 1e-5)"},
    };
    arg_command cmd = {
        "synth",
        "-o FILE [options]",
        "Write a llama GGUF v3 with seeded random weights (gibberish, but finite and "
        "prompt-dependent) that llama.cpp and modelhub both load.",
        specs,
        (int)MH_ARRAY_LEN(specs),
        NULL,
        0,
        0};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (!out) return args_error(&cmd, "an output file is required (-o FILE)");

    int type =
        strcasecmp(type_name, "q4_k_m") == 0 ? SYNTH_TYPE_Q4_K_M : ggml_type_from_name(type_name);
    if (type < 0)
        return args_error(&cmd, "unknown --type '%s' (see modelhub synth --help)", type_name);
    p.path = out;
    p.n_embd = (int)dim;
    p.n_layer = (int)layers;
    p.n_head = (int)heads;
    p.n_head_kv = (int)kv_heads;
    p.n_ff = (int)ff;
    p.n_ctx = (int)ctx;
    p.type = type;
    p.tied = tied;
    p.head_dim = (int)head_dim;
    p.sliding_window = (int)sliding_window;
    p.rope_freqs = rope_freqs;
    p.seed = (uint64_t)seed;
    p.rope_freq_base = (float)rope_base;
    p.rms_eps = (float)rms_eps;

    char err[512];
    if (synth_validate(&p, err, sizeof err) < 0) return args_error(&cmd, "%s", err);
    char *template_text = NULL;
    if (template_path) {
        template_text = read_text_file(template_path, err, sizeof err);
        if (!template_text) return args_error(&cmd, "--chat-template %s: %s", template_path, err);
        p.chat_template = template_text;
    }

    double t0 = mh_now_mono();
    rc = synth_write(&p, err, sizeof err);
    free(template_text);
    if (rc == -2) return args_error(&cmd, "%s", err);
    if (rc < 0) {
        fprintf(stderr, "modelhub synth: %s\n", err);
        return 1;
    }
    int kv = p.n_head_kv ? p.n_head_kv : p.n_head;
    fprintf(
        stderr,
        "modelhub synth: wrote %s (%s, dim %d, %d layers, %d/%d heads, ff %d, %s%s) in %.2f s\n",
        out, p.arch, p.n_embd, p.n_layer, p.n_head, kv, synth_n_ff(&p),
        type == SYNTH_TYPE_Q4_K_M ? "q4_k_m" : ggml_type_name((uint32_t)type), tied ? ", tied" : "",
        mh_now_mono() - t0);
    return 0;
}
