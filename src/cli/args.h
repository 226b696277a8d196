/* args.h — table-driven command-line parsing shared by every subcommand.
 *
 * A command declares its options as a table; args_parse() fills the targets, validates numbers
 * against their ranges and reports the first problem. Any error (unknown flag, missing value,
 * number out of range) prints "modelhub CMD: <problem>" and the usage to stderr and returns 2,
 * the exit status for usage errors. --help prints the usage to stdout and returns 1.
 */
#ifndef MH_ARGS_H
#define MH_ARGS_H

#include <stddef.h>

enum arg_kind {
    ARG_FLAG,   /* int, set to 1 when present */
    ARG_STRING, /* const char *, points into argv */
    ARG_INT,    /* long, checked against [min, max] */
    ARG_DOUBLE, /* double, checked against [min, max] */
};

typedef struct arg_spec {
    const char *name;  /* "--threads" */
    const char *alias; /* "-t" or NULL */
    enum arg_kind kind;
    void *target; /* int* / const char ** / long* / double* */
    double min, max;
    const char *metavar; /* "N" */
    const char *help;
} arg_spec;

typedef struct arg_command {
    const char *name;     /* "run" */
    const char *synopsis; /* "-m FILE -p PROMPT [options]" */
    const char *summary;  /* one line */
    const arg_spec *specs;
    int n_specs;
    /* positional arguments are collected here when allowed (max_positional > 0) */
    const char **positional;
    int max_positional;
    int n_positional;
} arg_command;

/* Parse argv[1..argc) (argv[0] is the subcommand name). Returns 0 when all is well, 1 when
 * --help was printed, 2 after a usage error was printed. */
int args_parse(arg_command *cmd, int argc, char **argv);

/* Print the usage of `cmd` to `fp`. */
void args_usage(const arg_command *cmd, void *fp);

/* Report a usage error found after parsing (e.g. a missing required option): prints the message
 * and the usage, returns 2. */
int args_error(const arg_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A table of subcommands: `modelhub COMMAND` and `modelhub hub COMMAND` both dispatch with it. */
typedef struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary; /* NULL: an internal command, left out of the usage */
} cli_command;

/* Run the command named by argv[1] with (argc - 1, argv + 1). `prefix` is "modelhub" or
 * "modelhub hub". No command prints the usage to stderr and returns 2; -h/--help/help prints it
 * to stdout and returns 0; an unknown name says so, prints the usage and returns 2. */
int cli_dispatch(const char *prefix, const cli_command *table, size_t n, int argc, char **argv);

#endif
