/* cmd_run.c — `modelhub run`: stream a prompt's continuation to stdout, timings to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "util/common.h"

static char *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = mh_xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, fp)) > 0) {
        n += got;
        if (cap - n < 2) buf = mh_xrealloc(buf, cap *= 2);
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL;
    long n_gen = 128, threads = 0, n_ctx = 0, top_k = 40, seed = -1, repeat_last_n = 64;
    double temp = 0.8, top_p = 0.95, min_p = 0.05, repeat_penalty = 1.0;
    int no_bos = 0, quiet = 0, ids = 0;
    const char *kv_type = "f16";
    const arg_spec specs[] = {
        {"--model", "-m", ARG_STRING, &model_path, 0, 0, "FILE", "GGUF model file (required)"},
        {"--prompt", "-p", ARG_STRING, &prompt, 0, 0, "TEXT", "prompt text"},
        {"--file", "-f", ARG_STRING, &prompt_file, 0, 0, "FILE", "read the prompt from a file"},
        {"--n-predict", "-n", ARG_INT, &n_gen, 0, 1 << 20, "N", "tokens to generate (128)"},
        {"--temp", NULL, ARG_DOUBLE, &temp, 0, 100, "T", "temperature, 0 = greedy (0.8)"},
        {"--top-k", NULL, ARG_INT, &top_k, 0, 1 << 24, "K", "top-k, 0 = off (40)"},
        {"--top-p", NULL, ARG_DOUBLE, &top_p, 0, 1, "P", "top-p, 1 = off (0.95)"},
        {"--min-p", NULL, ARG_DOUBLE, &min_p, 0, 1, "P", "min-p, 0 = off (0.05)"},
        {"--repeat-penalty", NULL, ARG_DOUBLE, &repeat_penalty, 0.01, 100, "R",
         "repetition penalty, 1 = off (1)"},
        {"--repeat-last-n", NULL, ARG_INT, &repeat_last_n, 0, 1 << 20, "N",
         "tokens the penalty looks back (64)"},
        {"--seed", NULL, ARG_INT, &seed, -1, 9.3e18, "S",
         "sampling seed, -1 = from the clock (-1)"},
        {"--threads", "-t", ARG_INT, &threads, 0, 1024, "N", "threads, 0 = all cores (0)"},
        {"--ctx", "-c", ARG_INT, &n_ctx, 0, 1 << 20, "N", "context length, 0 = the model's (0)"},
        {"--kv-type", NULL, ARG_STRING, &kv_type, 0, 0, "T", "KV cache type, f16 or f32 (f16)"},
        {"--no-bos", NULL, ARG_FLAG, &no_bos, 0, 0, NULL, "do not prepend the BOS token"},
        {"--quiet", "-q", ARG_FLAG, &quiet, 0, 0, NULL, "no timings on stderr"},
        {"--ids", NULL, ARG_FLAG, &ids, 0, 0, NULL,
         "print token ids (prompt_ids: / generated_ids: lines) instead of text"},
    };
    arg_command cmd = {"run",
                       "-m FILE [-p PROMPT | -f FILE] [options]",
                       "Generate the continuation of a prompt and stream it to stdout.\n"
                       "Sampling: repetition penalty, then top-k, top-p, min-p, temperature.",
                       specs,
                       (int)MH_ARRAY_LEN(specs),
                       NULL,
                       0,
                       0};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model_path) return args_error(&cmd, "missing --model FILE");
    if (prompt && prompt_file) return args_error(&cmd, "give either --prompt or --file, not both");
    int kv = model_kv_type_parse(kv_type);
    if (kv < 0) return args_error(&cmd, "--kv-type must be f16 or f32, not '%s'", kv_type);

    char *file_text = NULL;
    size_t prompt_len = prompt ? strlen(prompt) : 0;
    if (prompt_file) {
        file_text = read_file(prompt_file, &prompt_len);
        if (!file_text) {
            fprintf(stderr, "modelhub run: cannot read prompt file %s\n", prompt_file);
            return 1;
        }
        prompt = file_text;
    }
    if (!prompt) prompt = "";

    char err[512];
    double t_load = mh_now_mono();
    model *m;
    if (model_load(model_path, &m, err, sizeof err) < 0) {
        fprintf(stderr, "modelhub run: %s: %s\n", model_path, err);
        free(file_text);
        return 1;
    }
    t_load = mh_now_mono() - t_load;
    const model_hparams *hp = model_get_hparams(m);
    const tokenizer *tok = model_get_tokenizer(m);
    threadpool *tp = threadpool_new(threads > 0 ? (int)threads : threadpool_default_size());
    model_ctx *ctx = tp ? model_ctx_new(m, &(model_ctx_params){.n_ctx = (int)n_ctx, .kv_type = kv},
                                        tp, err, sizeof err)
                        : NULL;
    int32_t *tokens = NULL;
    sampler *smp = NULL;
    int status = 1;
    if (!ctx) {
        fprintf(stderr, "modelhub run: %s\n", tp ? err : "cannot start threads");
        goto done;
    }
    int cap = model_ctx_n_ctx(ctx);
    tokens = mh_xmalloc((size_t)cap * sizeof *tokens);
    int n_prompt = tokenizer_encode(tok, prompt, prompt_len, !no_bos, 1, tokens, cap);
    if (n_prompt < 0 || n_prompt > cap) {
        fprintf(stderr, "modelhub run: the prompt has %d tokens, more than the context of %d\n",
                n_prompt, cap);
        goto done;
    }
    if (n_prompt == 0) { /* a model without BOS and an empty prompt: nothing to continue */
        fprintf(stderr, "modelhub run: the prompt is empty and the model has no BOS token\n");
        goto done;
    }
    sampler_params sp = sampler_defaults();
    sp.temperature = (float)temp;
    sp.top_k = (int)top_k;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.repeat_penalty = (float)repeat_penalty;
    sp.repeat_last_n = (int)repeat_last_n;
    if (seed >= 0) sp.seed = (uint64_t)seed;
    smp = sampler_new(&sp, hp->n_vocab);
    if (!smp) {
        fprintf(stderr, "modelhub run: out of memory\n");
        goto done;
    }

    double t0 = mh_now_mono();
    if (model_ctx_eval(ctx, 0, tokens, n_prompt) < 0) {
        fprintf(stderr, "modelhub run: evaluating the prompt failed\n");
        goto done;
    }
    double t_prompt = mh_now_mono() - t0;
    int n_tokens = n_prompt, n_done = 0;
    tokenizer_stream ts = {0};
    char piece[1024];
    if (ids) {
        printf("prompt_ids:");
        for (int i = 0; i < n_prompt; i++) printf(" %d", tokens[i]);
        printf("\ngenerated_ids:");
    }
    t0 = mh_now_mono();
    while (n_done < n_gen) {
        int32_t next = sampler_sample(smp, model_ctx_logits(ctx, 0), tokens, n_tokens);
        if (tokenizer_is_eog(tok, next)) break;
        n_done++;
        if (ids) {
            printf(" %d", next);
        } else {
            size_t len = tokenizer_stream_push(&ts, tok, next, piece, sizeof piece);
            fwrite(piece, 1, len, stdout);
        }
        fflush(stdout);
        if (n_tokens >= cap) {
            fprintf(stderr, "\nmodelhub run: context full (%d tokens)\n", cap);
            break;
        }
        tokens[n_tokens++] = next;
        if (n_done >= n_gen) break;
        if (model_ctx_eval(ctx, 0, &next, 1) < 0) break;
    }
    size_t len = ids ? 0 : tokenizer_stream_flush(&ts, piece, sizeof piece);
    fwrite(piece, 1, len, stdout);
    putchar('\n');
    fflush(stdout);
    double t_gen = mh_now_mono() - t0;
    if (!quiet)
        fprintf(stderr,
                "\nmodel: %s (%s, %d layers, width %d), loaded in %.0f ms, %d threads\n"
                "prompt: %d tokens in %.1f ms (%.1f tokens/s)\n"
                "generated: %d tokens in %.1f ms (%.1f tokens/s)\n",
                hp->name, hp->arch, hp->n_layer, hp->n_embd, t_load * 1e3, threadpool_size(tp),
                n_prompt, t_prompt * 1e3, n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), n_done,
                t_gen * 1e3, n_done > 0 ? n_done / (t_gen > 0 ? t_gen : 1e-9) : 0.0);
    status = 0;
done:
    sampler_free(smp);
    free(tokens);
    model_ctx_free(ctx);
    threadpool_free(tp);
    model_free(m);
    free(file_text);
    return status;
}
