/* commands.h — the subcommands of the modelhub binary. Each returns the process exit status. */
#ifndef MH_COMMANDS_H
#define MH_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_hub(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* `modelhub hub check`: validate a hub.yaml without starting anything (cmd_hub_check.c). */
int cmd_hub_check(int argc, char **argv);
/* `modelhub hub start` and `stop` (cmd_hub_daemon.c). */
int cmd_hub_start(int argc, char **argv);
int cmd_hub_stop(int argc, char **argv);
/* The control commands of a running hub (cmd_hub_ctl.c). */
int cmd_hub_status(int argc, char **argv);
int cmd_hub_watch(int argc, char **argv);
int cmd_hub_reload(int argc, char **argv);
int cmd_hub_start_model(int argc, char **argv);
int cmd_hub_stop_model(int argc, char **argv);
int cmd_hub_load_model(int argc, char **argv);
int cmd_hub_unload_model(int argc, char **argv);
int cmd_hub_logs(int argc, char **argv);
/* `modelhub hub exec-guard -- CMD...`: run an external server command for the hub. */
int cmd_hub_exec_guard(int argc, char **argv);

#endif
