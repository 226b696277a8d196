/* cmd_tokenize.c — `modelhub tokenize -m FILE (-p TEXT | -f FILE)`: the token ids of a text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

/* Read all of `path` ("-" for stdin) into a malloc'd buffer. Returns 0 or -1 (errno set). */
static int read_all(const char *path, char **out, size_t *len) {
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!fp) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, fp);
        if (n < cap) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            errno = ENOMEM;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = !buf || ferror(fp);
    if (fp != stdin) fclose(fp);
    if (failed) {
        if (!errno) errno = EIO;
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Bytes of the well-formed UTF-8 sequence at s[i..n), or 0 when there is none. */
static int utf8_seq_len(const unsigned char *s, int i, int n) {
    int need = s[i] >= 0xf0 && s[i] <= 0xf4 ? 3 : s[i] >= 0xe0 ? 2 : s[i] >= 0xc2 ? 1 : -1;
    if (need < 0 || s[i] > 0xf4 || i + need >= n) return 0;
    for (int k = 1; k <= need; k++)
        if ((s[i + k] & 0xc0) != 0x80) return 0;
    return need + 1;
}

/* A piece between quotes: quotes, backslashes, control bytes and bytes that are not part of a
 * UTF-8 sequence (byte tokens) escaped. */
static void print_piece(const char *s, int n) {
    const unsigned char *u = (const unsigned char *)s;
    putchar('\'');
    for (int i = 0; i < n; i++) {
        unsigned char c = u[i];
        int seq = c >= 0x80 ? utf8_seq_len(u, i, n) : 0;
        if (seq) {
            fwrite(s + i, 1, (size_t)seq, stdout);
            i += seq - 1;
        } else if (c >= 0x80)
            printf("\\x%02x", c);
        else if (c == '\'' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c == '\t')
            printf("\\t");
        else if (c == '\r')
            printf("\\r");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *file = NULL;
    int no_bos = 0, parse_special = 0, pieces = 0;
    const arg_spec specs[] = {
        {"--model", "-m", ARG_STRING, &model_path, 0, 0, "FILE", "GGUF file with the vocabulary"},
        {"--prompt", "-p", ARG_STRING, &prompt, 0, 0, "TEXT", "text to tokenize"},
        {"--file", "-f", ARG_STRING, &file, 0, 0, "FILE", "read the text from FILE ('-': stdin)"},
        {"--no-bos", NULL, ARG_FLAG, &no_bos, 0, 0, NULL,
         "do not add BOS/EOS even when the model asks for them"},
        {"--parse-special", NULL, ARG_FLAG, &parse_special, 0, 0, NULL,
         "text spelling a control token (e.g. </s>) becomes that token"},
        {"--pieces", NULL, ARG_FLAG, &pieces, 0, 0, NULL, "print one id and its piece per line"},
    };
    arg_command cmd = {
        .name = "tokenize",
        .synopsis = "-m FILE (-p TEXT | -f FILE) [options]",
        .summary = "Print the token ids of a text, space-separated on one line.",
        .specs = specs,
        .n_specs = (int)(sizeof specs / sizeof specs[0]),
    };
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model_path) return args_error(&cmd, "missing -m FILE");
    if (!prompt == !file) return args_error(&cmd, "give exactly one of -p TEXT and -f FILE");

    char *text = NULL;
    size_t len;
    if (file) {
        if (read_all(file, &text, &len) < 0) {
            fprintf(stderr, "modelhub tokenize: %s: %s\n", file, strerror(errno));
            return 1;
        }
    } else {
        len = strlen(prompt);
    }

    gguf *f = NULL;
    tokenizer *tok = NULL;
    int32_t *ids = NULL;
    char err[512];
    int status = 1;
    if (gguf_open(model_path, &f, err, sizeof err) < 0 ||
        tokenizer_load(f, &tok, err, sizeof err) < 0) {
        fprintf(stderr, "modelhub tokenize: %s: %s\n", model_path, err);
        goto done;
    }
    const char *src = file ? text : prompt;
    int n = tokenizer_encode(tok, src, len, !no_bos, parse_special, NULL, 0);
    if (n >= 0) {
        ids = malloc(((size_t)n + 1) * sizeof *ids);
        if (ids) n = tokenizer_encode(tok, src, len, !no_bos, parse_special, ids, n);
    }
    if (n < 0 || !ids) {
        fprintf(stderr, "modelhub tokenize: the text could not be tokenized\n");
        goto done;
    }
    if (pieces) {
        char *piece = malloc(tokenizer_max_piece(tok) + 1);
        if (!piece) goto done;
        for (int i = 0; i < n; i++) {
            int k = tokenizer_piece(tok, ids[i], 1, piece, tokenizer_max_piece(tok));
            printf("%6d ", ids[i]);
            print_piece(piece, k < 0 ? 0 : k);
            putchar('\n');
        }
        free(piece);
    } else {
        for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        putchar('\n');
    }
    status = 0;
done:
    free(ids);
    tokenizer_free(tok);
    gguf_close(f);
    free(text);
    return status;
}
