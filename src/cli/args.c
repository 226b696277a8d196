#include "cli/args.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/common.h"

void args_usage(const arg_command *cmd, void *fp_) {
    FILE *fp = fp_;
    fprintf(fp, "usage: modelhub %s %s\n", cmd->name, cmd->synopsis);
    if (cmd->summary) fprintf(fp, "\n%s\n", cmd->summary);
    if (cmd->n_specs) fprintf(fp, "\noptions:\n");
    for (int i = 0; i < cmd->n_specs; i++) {
        const arg_spec *s = &cmd->specs[i];
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s%s", s->alias ? s->alias : "", s->alias ? ", " : "",
                 s->name, s->kind == ARG_FLAG ? "" : " ",
                 s->kind == ARG_FLAG ? "" : (s->metavar ? s->metavar : "VALUE"));
        fprintf(fp, "  %-28s %s\n", left, s->help ? s->help : "");
    }
    fprintf(fp, "  %-28s %s\n", "-h, --help", "show this help");
}

int args_error(const arg_command *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "modelhub %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n");
    args_usage(cmd, stderr);
    return 2;
}

static const arg_spec *find_spec(const arg_command *cmd, const char *name, size_t len) {
    for (int i = 0; i < cmd->n_specs; i++) {
        const arg_spec *s = &cmd->specs[i];
        if ((strlen(s->name) == len && strncmp(s->name, name, len) == 0) ||
            (s->alias && strlen(s->alias) == len && strncmp(s->alias, name, len) == 0))
            return s;
    }
    return NULL;
}

int args_parse(arg_command *cmd, int argc, char **argv) {
    cmd->n_positional = 0;
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (only_positional || a[0] != '-' || a[1] == 0) {
            if (cmd->n_positional >= cmd->max_positional)
                return args_error(cmd, "unexpected argument '%s'", a);
            cmd->positional[cmd->n_positional++] = a;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            args_usage(cmd, stdout);
            return 1;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
        const arg_spec *s = find_spec(cmd, a, len);
        if (!s) return args_error(cmd, "unknown option '%.*s'", (int)len, a);
        const char *val = NULL;
        if (s->kind == ARG_FLAG) {
            if (eq && a[1] == '-') return args_error(cmd, "option '%s' takes no value", s->name);
            *(int *)s->target = 1;
            continue;
        }
        if (eq && a[1] == '-') {
            val = eq + 1;
        } else {
            if (i + 1 >= argc) return args_error(cmd, "option '%s' needs a value", s->name);
            val = argv[++i];
        }
        switch (s->kind) {
        case ARG_STRING: *(const char **)s->target = val; break;
        case ARG_INT: {
            long v;
            long lo = s->min <= (double)LONG_MIN ? LONG_MIN : (long)s->min;
            long hi = s->max >= (double)LONG_MAX ? LONG_MAX : (long)s->max;
            if (mh_parse_long(val, lo, hi, &v) < 0)
                return args_error(cmd, "option '%s' wants an integer in [%ld, %ld], got '%s'",
                                  s->name, lo, hi, val);
            *(long *)s->target = v;
            break;
        }
        case ARG_DOUBLE: {
            double v;
            if (mh_parse_double(val, s->min, s->max, &v) < 0)
                return args_error(cmd, "option '%s' wants a number in [%g, %g], got '%s'", s->name,
                                  s->min, s->max, val);
            *(double *)s->target = v;
            break;
        }
        case ARG_FLAG: break;
        }
    }
    return 0;
}

static void commands_usage(FILE *fp, const char *prefix, const cli_command *table, size_t n) {
    fprintf(fp, "usage: %s COMMAND [options]\n\ncommands:\n", prefix);
    for (size_t i = 0; i < n; i++)
        if (table[i].summary) fprintf(fp, "  %-14s %s\n", table[i].name, table[i].summary);
    fprintf(fp, "\n'%s COMMAND --help' describes a command's options.\n", prefix);
}

int cli_dispatch(const char *prefix, const cli_command *table, size_t n, int argc, char **argv) {
    if (argc < 2) {
        commands_usage(stderr, prefix, table, n);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        commands_usage(stdout, prefix, table, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, table[i].name) == 0) return table[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n\n", prefix, name);
    commands_usage(stderr, prefix, table, n);
    return 2;
}
