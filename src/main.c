/* main.c — dispatch `modelhub COMMAND ...` to its subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

#ifndef MODELHUB_VERSION
#define MODELHUB_VERSION "0.1.0"
#endif

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", cmd_run, "generate text from a GGUF model"},
    {"serve", cmd_serve, "serve one model over an OpenAI-compatible HTTP API"},
    {"hub", cmd_hub, "run or control the multi-model hub daemon"},
    {"synth", cmd_synth, "write a synthetic llama GGUF model with random weights"},
    {"inspect", cmd_inspect, "print a GGUF file's metadata and tensor table"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"bench", cmd_bench, "measure prefill and decode speed"},
};

static void usage(FILE *fp) {
    fprintf(fp, "usage: modelhub COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\n'modelhub COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("modelhub %s\n", MODELHUB_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "modelhub: unknown command '%s'\n\n", name);
    usage(stderr);
    return 2;
}
