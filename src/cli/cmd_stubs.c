/* cmd_stubs.c — subcommands that are not built yet say so plainly. */
#include <stdio.h>

#include "cli/commands.h"

static int not_yet(const char *name) {
    fprintf(stderr, "modelhub %s: not implemented yet\n", name);
    return 1;
}

int cmd_hub(int argc, char **argv) { (void)argc, (void)argv; return not_yet("hub"); }
