/* cmd_hub.c — `modelhub hub SUBCOMMAND`: dispatch to the daemon and its control commands. */
#include "cli/args.h"
#include "cli/commands.h"
#include "util/common.h"

static const cli_command hub_commands[] = {
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

int cmd_hub(int argc, char **argv) {
    return cli_dispatch("modelhub hub", hub_commands, MH_ARRAY_LEN(hub_commands), argc, argv);
}
