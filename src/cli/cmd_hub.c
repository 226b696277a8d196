/* cmd_hub.c — `modelhub hub SUBCOMMAND`: dispatch to the daemon and its control commands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} hub_command;

static const hub_command hub_commands[] = {
    {"start", cmd_hub_start, "start the hub daemon (--foreground to stay attached)"},
    {"stop", cmd_hub_stop, "stop the hub and every worker"},
    {"check", cmd_hub_check, "validate a hub.yaml without starting anything"},
    {"status", cmd_hub_status, "show every model's state (--json for the snapshot)"},
    {"watch", cmd_hub_watch, "follow state changes as they happen"},
    {"reload", cmd_hub_reload, "re-read hub.yaml and apply the difference"},
    {"start-model", cmd_hub_start_model, "start models' processes"},
    {"stop-model", cmd_hub_stop_model, "stop models' processes"},
    {"load-model", cmd_hub_load_model, "load models into memory (--dry-run: show evictions)"},
    {"unload-model", cmd_hub_unload_model, "unload models from memory"},
    {"logs", cmd_hub_logs, "print a model's log (--follow for new lines)"},
    {"exec-guard", cmd_hub_exec_guard, NULL}, /* internal: runs `cmd:` servers */
};

static void usage(FILE *fp) {
    fprintf(fp, "usage: modelhub hub COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof hub_commands / sizeof hub_commands[0]; i++)
        if (hub_commands[i].summary)
            fprintf(fp, "  %-14s %s\n", hub_commands[i].name, hub_commands[i].summary);
    fprintf(fp, "\n'modelhub hub COMMAND --help' describes a command's options.\n");
}

int cmd_hub(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof hub_commands / sizeof hub_commands[0]; i++)
        if (strcmp(name, hub_commands[i].name) == 0) return hub_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "modelhub hub: unknown command '%s'\n\n", name);
    usage(stderr);
    return 2;
}
