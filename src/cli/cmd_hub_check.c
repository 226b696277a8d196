/* cmd_hub_check.c — `modelhub hub check`: load and validate a hub.yaml, start nothing.
 *
 * Exit status: 0 valid ("FILE: ok (N models, M groups)" on stdout), 1 invalid or not found (every
 * error on stderr, one per line), 2 usage error. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "hub/config.h"
#include "util/common.h"

int cmd_hub_check(int argc, char **argv) {
    const char *config_path = NULL;
    const arg_spec specs[] = {
        {"--config", "-c", ARG_STRING, &config_path, 0, 0, "FILE",
         "the hub.yaml to check (default: found as below)"},
    };
    arg_command cmd = {"hub check",
                       "[--config FILE]",
                       "Validate a hub.yaml without starting anything: every error is listed\n"
                       "as FILE:LINE: KEY: PROBLEM. Exit 0 when valid, 1 when not.\n"
                       "Without --config: $MODELHUB_CONFIG, else ./hub.yaml, else\n"
                       "$XDG_CONFIG_HOME/modelhub/hub.yaml (~/.config/modelhub/hub.yaml).",
                       specs,
                       (int)MH_ARRAY_LEN(specs),
                       NULL,
                       0,
                       0};
    int rc = args_parse(&cmd, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;

    char path[4096];
    int found = hub_config_find(config_path, path, sizeof path);
    if (found == -2) {
        fprintf(stderr, "modelhub hub check: the config path is too long\n");
        return 1;
    }
    if (found < 0) {
        fprintf(stderr,
                "modelhub hub check: no hub.yaml found: no --config given, $MODELHUB_CONFIG is "
                "not set, and none of these exists: %s\n",
                path);
        return 1;
    }
    hub_config *c;
    char err[32768];
    if (hub_config_load(path, &c, err, sizeof err) < 0) {
        fputs(err, stderr);
        size_t n = strlen(err);
        if (n && err[n - 1] != '\n') fputc('\n', stderr);
        return 1;
    }
    printf("%s: ok (%d model%s, %d group%s)\n", path, c->n_models, c->n_models == 1 ? "" : "s",
           c->n_groups, c->n_groups == 1 ? "" : "s");
    hub_config_free(c);
    return 0;
}
