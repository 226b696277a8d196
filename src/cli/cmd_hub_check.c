/* cmd_hub_check.c — placeholder until the config module lands. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_hub_check(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "modelhub hub check: not implemented yet\n");
    return 1;
}
