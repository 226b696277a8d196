/* cmd_inspect.c — `modelhub inspect FILE`: metadata and tensor table of a GGUF file. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/gguf.h"

static void print_scalar(uint32_t type, const uint8_t *p) {
    switch (type) {
    case GGUF_VT_UINT8: printf("%u", *p); break;
    case GGUF_VT_INT8: printf("%d", (int8_t)*p); break;
    case GGUF_VT_BOOL: printf("%s", *p ? "true" : "false"); break;
    case GGUF_VT_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        printf("%u", v);
        break;
    }
    case GGUF_VT_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        printf("%d", v);
        break;
    }
    case GGUF_VT_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        printf("%u", v);
        break;
    }
    case GGUF_VT_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        printf("%d", v);
        break;
    }
    case GGUF_VT_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        printf("%llu", (unsigned long long)v);
        break;
    }
    case GGUF_VT_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        printf("%lld", (long long)v);
        break;
    }
    case GGUF_VT_FLOAT32: {
        float v;
        memcpy(&v, p, 4);
        printf("%g", v);
        break;
    }
    case GGUF_VT_FLOAT64: {
        double v;
        memcpy(&v, p, 8);
        printf("%g", v);
        break;
    }
    default: printf("?"); break;
    }
}

/* Print a string with control characters escaped, at most `max` bytes. */
static void print_string(const char *s, uint64_t len, uint64_t max) {
    putchar('"');
    for (uint64_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    if (len > max) printf("...");
    putchar('"');
}

/* Print a name that comes from the file (a key, a tensor name, a message quoting one) with control
 * characters escaped, so that a crafted file cannot send terminal escape sequences; pad with
 * spaces to `width` columns. */
static void print_name(FILE *fp, const char *s, uint64_t len, int width) {
    int n = 0;
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            n += fprintf(fp, "\\x%02x", c);
        } else {
            fputc(c, fp);
            n++;
        }
    }
    for (; n < width; n++) fputc(' ', fp);
}

static void print_kv(const gguf_kv *kv, int full) {
    /* A key's length comes from the file: cap what is shown (at most 256 bytes). */
    printf("  ");
    print_name(stdout, kv->key.ptr, kv->key.len < 256 ? kv->key.len : 256, 40);
    putchar(' ');
    if (kv->type == GGUF_VT_STRING) {
        uint64_t len;
        memcpy(&len, kv->val, 8);
        printf("string  ");
        print_string((const char *)kv->val + 8, len, full ? len : 120);
    } else if (kv->type == GGUF_VT_ARRAY) {
        printf("[%s x %llu] ", gguf_value_type_name(kv->arr_type), (unsigned long long)kv->arr_n);
        uint64_t show = full ? kv->arr_n : (kv->arr_n < 8 ? kv->arr_n : 8);
        const uint8_t *p = kv->val;
        for (uint64_t i = 0; i < show; i++) {
            if (i) printf(", ");
            if (kv->arr_type == GGUF_VT_STRING) {
                uint64_t len;
                memcpy(&len, p, 8);
                print_string((const char *)p + 8, len, 40);
                p += 8 + len;
            } else {
                printf("%g", gguf_arr_num(kv, i));
            }
        }
        if (show < kv->arr_n) printf(", ...");
    } else {
        printf("%-7s ", gguf_value_type_name(kv->type));
        print_scalar(kv->type, kv->val);
    }
    putchar('\n');
}

int cmd_inspect(int argc, char **argv) {
    int full = 0;
    const arg_spec specs[] = {
        {"--full", NULL, ARG_FLAG, &full, 0, 0, NULL, "print whole strings and arrays"},
    };
    const char *pos[1];
    arg_command cmd = {"inspect",
                       "FILE [--full]",
                       "Print a GGUF file's metadata and tensor table.",
                       specs,
                       1,
                       pos,
                       1,
                       0};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (cmd.n_positional != 1) return args_error(&cmd, "expected one GGUF file");
    const char *path = pos[0];
    gguf *f;
    char err[512];
    if (gguf_open(path, &f, err, sizeof err) < 0) {
        fprintf(stderr, "modelhub inspect: %s: ", path);
        print_name(stderr, err, strlen(err), 0);
        fputc('\n', stderr);
        return 1;
    }
    printf("file: %s\nversion: %u  alignment: %u  size: %llu  data offset: %llu\n", path,
           gguf_version(f), gguf_alignment(f), (unsigned long long)gguf_file_size(f),
           (unsigned long long)gguf_data_offset(f));
    printf("metadata (%d):\n", gguf_n_kv(f));
    for (int i = 0; i < gguf_n_kv(f); i++) print_kv(gguf_kv_at(f, i), full);
    printf("tensors (%d):\n", gguf_n_tensors(f));
    uint64_t total = 0;
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[96];
        int n = 0;
        for (uint32_t d = 0; d < t->n_dims; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%llu", d ? ", " : "",
                          (unsigned long long)t->ne[d]);
        printf("  ");
        print_name(stdout, t->name, strlen(t->name), 32);
        printf(" %-6s [%s]  offset %llu  %llu bytes\n", ggml_type_name(t->type), shape,
               (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        total += t->nbytes;
    }
    printf("tensor bytes: %llu\n", (unsigned long long)total);
    gguf_close(f);
    return 0;
}
