/* hub.h — the hub daemon: many models behind one OpenAI-compatible endpoint.
 *
 * One event loop runs everything: the HTTP server (OpenAI routes proxied to the models' workers,
 * the control API, events, logs, metrics, the dashboard), the supervised worker processes and
 * one cron at 10 Hz that drives the shared lifecycle core (idle unloads, deadlines, restarts).
 * The hub alone owns activity, idle unload and group capacity: its workers run without timers.
 */
#ifndef MH_HUB_H
#define MH_HUB_H

/* Run the daemon on `config_path` until it is shut down (POST /hub/shutdown, SIGTERM, SIGINT).
 * When ready_fd >= 0, "PORT\n" is written to it once the hub listens and the default models
 * were asked to start, then it is closed (how `hub start` knows a daemonised hub is up).
 * Returns the exit status: 0 after a clean shutdown, 1 when it could not start. */
int hub_run(const char *config_path, int ready_fd);

/* Runtime file: the running hub writes {pid, host, port, config, started_at} as JSON to
 * STATE_DIR/hub.json and removes it on exit. The CLI finds the daemon through it. */
#define HUB_RUNTIME_FILE "hub.json"

#endif
