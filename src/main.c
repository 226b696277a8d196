/* main.c — dispatch `modelhub COMMAND ...` to its subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "util/common.h"

static const cli_command commands[] = {
    {"run", cmd_run, "generate text from a GGUF model"},
    {"serve", cmd_serve, "serve one model over an OpenAI-compatible HTTP API"},
    {"hub", cmd_hub, "run or control the multi-model hub daemon"},
    {"synth", cmd_synth, "write a synthetic llama GGUF model with random weights"},
    {"inspect", cmd_inspect, "print a GGUF file's metadata and tensor table"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"bench", cmd_bench, "measure prefill and decode speed"},
};

int main(int argc, char **argv) {
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        printf("modelhub %s\n", MODELHUB_VERSION);
        return 0;
    }
    return cli_dispatch("modelhub", commands, MH_ARRAY_LEN(commands), argc, argv);
}
