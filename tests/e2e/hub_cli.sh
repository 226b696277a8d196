#!/usr/bin/env bash
# The hub's control CLI against a real daemonised hub: hub start, status (table and --json),
# load-model/start-model/unload-model/stop-model (eviction in a max_loaded 1 group, unknown names,
# partial failures), logs, watch, reload (a new model; a broken file changes nothing), usage errors,
# hub stop leaves no process behind; with admin_key: the config's key works, a wrong
# $MODELHUB_ADMIN_KEY is refused with 401.
set -u
bin=${MODELHUB_BIN:?} models=${MODELHUB_MODELS:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mh-hub-cli.XXXXXX")
cfg=$tmp/hub.yaml
watch_pids=()

# Every process of this test has $tmp in its command line (the hub's --config, the workers' model
# path, which is a link in $tmp): whatever is left at the end is killed by pid.
leftovers() { pgrep -f -- "$tmp" || true; }
cleanup() {
    for p in "${watch_pids[@]}"; do kill "$p" 2>/dev/null; done
    env -u MODELHUB_ADMIN_KEY "$bin" hub stop --config "$cfg" --timeout 20 >/dev/null 2>&1
    for p in $(leftovers); do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fails=0
check() { # check NAME CONDITION...
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
show() { sed 's/^/    | /' "$@"; } # context for a failure
free_port() {
    node -e 'const s = require("net").createServer();
             s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}
# mh ARGS...: run modelhub with stdout in $tmp/out, stderr in $tmp/err; $rc gets the exit status.
mh() { "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
# A field of model $1 in a fresh `hub status --json` ($2 a jq path below the model).
field() {
    "$bin" hub status --json --config "$cfg" |
        jq -r --arg n "$1" ".models[] | select(.name == \$n) | $2"
}
# jq -e without the printed value
jq_ok() { jq -e "$@" >/dev/null; }
# The table row of model $1 in a fresh `hub status`.
row() { "$bin" hub status --config "$cfg" | awk -v n="$1" '$1 == n'; }

hub_port=$(free_port) worker_port=$(free_port)
ln -s "$models/stories260K.gguf" "$tmp/stories260K.gguf"
write_config() { # write_config [EXTRA TOP-LEVEL YAML] [EXTRA MODEL YAML]
    cat >"$cfg" <<EOF
host: 127.0.0.1
port: $hub_port
model_starting_port: $worker_port
log_path: $tmp/logs
state_dir: $tmp/state
stop_grace: 5
$1
models:
  - name: a
    model_path: $tmp/stories260K.gguf
    group: small
    idle_unload: 300
  - name: b
    model_path: $tmp/stories260K.gguf
    group: small
$2
groups:
  - name: small
    max_loaded: 1
EOF
}
write_config "" ""

# ---- no hub yet -------------------------------------------------------------------------------
mh hub status --config "$cfg"
check "status without a hub: exit 1" test $rc -eq 1
check "status without a hub: says so" grep -q "no hub answers" "$tmp/err"

# ---- start ------------------------------------------------------------------------------------
mh hub start --config "$cfg"
check "hub start: exit 0" test $rc -eq 0
check "hub start: prints the API URL" grep -q "http://127.0.0.1:$hub_port/v1" "$tmp/out"
check "hub start: prints the dashboard URL" grep -q "http://127.0.0.1:$hub_port/hub" "$tmp/out"
[ $rc -eq 0 ] || { show "$tmp/out" "$tmp/err"; exit 1; }

# ---- status -----------------------------------------------------------------------------------
mh hub status --config "$cfg"
check "status: exit 0" test $rc -eq 0
check "status: header" grep -Eq "^NAME +PROCESS +MEMORY +UNLOAD IN +GROUP +IN-FLIGHT +PORT +PID$" "$tmp/out"
check "status: row a" grep -Eq "^a +stopped +unloaded +- +small 0/1 +0 +- +-$" "$tmp/out"
check "status: row b" grep -Eq "^b +stopped +unloaded +- +small 0/1 +0 +- +-$" "$tmp/out"
check "status: summary" \
    grep -q "^2 models, 0 running, 0 loaded, 0 failed; up .*; http://127.0.0.1:$hub_port" "$tmp/out"
# columns line up: every row has "small" where the header has GROUP
col=$(awk 'NR == 1 { print index($0, "GROUP") }' "$tmp/out")
misaligned=$(awk -v c="$col" 'NR > 1 && NR <= 3 && substr($0, c, 5) != "small"' "$tmp/out")
check "status: columns aligned" test -z "$misaligned"
[ $fails -eq 0 ] || show "$tmp/out" "$tmp/err"
mh hub status --json --config "$cfg"
check "status --json: exit 0" test $rc -eq 0
check "status --json: the snapshot" \
    jq_ok '.status == "ok" and (.models | length) == 2 and .groups[0].max_loaded == 1' "$tmp/out"

# ---- load-model: eviction, unknown names ------------------------------------------------------
mh hub load-model a --config "$cfg"
check "load-model a: exit 0" test $rc -eq 0
check "load-model a: says loaded" grep -q "^a: loaded" "$tmp/out"
check "status: a loaded" test "$(field a .memory_state)" = loaded
check "status: a running with a pid" test "$(field a .pid)" -gt 0
want='^a +running +loaded \([0-9.]+ [KM]iB\) +[45]m[0-9]{2}s +small 1/1 +0 +[0-9]+ +[0-9]+$'
check "status table: a loaded, unload countdown, group 1/1" grep -Eq "$want" <(row a)
mh hub load-model --dry-run b --config "$cfg"
check "load-model --dry-run b: exit 0" test $rc -eq 0
check "load-model --dry-run b: would evict a" grep -q "^b: would evict a$" "$tmp/out"
check "dry run changed nothing" test "$(field a .memory_state)/$(field b .memory_state)" = loaded/unloaded
mh hub load-model b --config "$cfg"
check "load-model b: exit 0" test $rc -eq 0
check "load-model b: says it evicted a" grep -q "^b: loaded .*evicted a" "$tmp/out"
check "status: b loaded, a unloaded for capacity" \
    test "$(field b .memory_state) $(field a .memory_state) $(field a .last_unload_reason)" = \
    "loaded unloaded capacity"
check "status table: a unloaded (capacity)" grep -q "unloaded (capacity)" <(row a)
mh hub load-model nosuch --config "$cfg"
check "load-model nosuch: non-zero exit" test $rc -ne 0
check "load-model nosuch: names the model" grep -q "nosuch: the model 'nosuch' does not exist" "$tmp/err"

# ---- start/stop/unload; one failure among several names ----------------------------------------
mh hub stop-model a --config "$cfg"
check "stop-model a: exit 0" test $rc -eq 0
check "stop-model a: says stopped" grep -q "^a: stopped$" "$tmp/out"
check "status: a stopped" test "$(field a .process_state)" = stopped
mh hub start-model a nosuch --config "$cfg"
check "start-model a nosuch: non-zero exit" test $rc -ne 0
check "start-model a nosuch: a started" grep -q "^a: running (pid [0-9]*, port [0-9]*)$" "$tmp/out"
check "start-model a nosuch: nosuch named" grep -q "nosuch" "$tmp/err"
check "status: a running" test "$(field a .process_state)" = running
mh hub unload-model b --config "$cfg"
check "unload-model b: exit 0" test $rc -eq 0
check "unload-model b: says unloaded" grep -q "^b: unloaded" "$tmp/out"
check "status: b unloaded (manual)" \
    test "$(field b .memory_state) $(field b .last_unload_reason)" = "unloaded manual"
mh hub stop-model a b --config "$cfg"
check "stop-model a b: exit 0" test $rc -eq 0
check "stop-model a b: one line each" test "$(grep -c ': stopped$' "$tmp/out")" -eq 2
check "status: both stopped" test "$(field a .process_state) $(field b .process_state)" = "stopped stopped"

# ---- logs -------------------------------------------------------------------------------------
mh hub logs a --tail 5 --config "$cfg"
check "logs a --tail 5: exit 0" test $rc -eq 0
check "logs a --tail 5: 1 to 5 lines" test "$(wc -l <"$tmp/out")" -ge 1 -a "$(wc -l <"$tmp/out")" -le 5
check "logs a: the worker's output" grep -q "serve" "$tmp/out"
"$bin" hub logs b --tail 0 --follow --config "$cfg" >"$tmp/follow.out" 2>&1 &
follow_pid=$!
watch_pids+=($follow_pid)
sleep 0.5
mh hub load-model b --config "$cfg"
for _ in $(seq 100); do grep -q "loaded" "$tmp/follow.out" && break; sleep 0.1; done
check "logs --follow: new lines as they come" grep -q "serve: loaded" "$tmp/follow.out"
kill "$follow_pid" 2>/dev/null
wait "$follow_pid" 2>/dev/null
mh hub stop-model b --config "$cfg"
mh hub logs nosuch --config "$cfg"
check "logs nosuch: exit 1 naming it" test $rc -eq 1 -a -n "$(grep nosuch "$tmp/err")"

# ---- watch ------------------------------------------------------------------------------------
"$bin" hub watch --config "$cfg" >"$tmp/watch.out" 2>"$tmp/watch.err" &
watch_pid=$!
watch_pids+=($watch_pid)
"$bin" hub watch --json --config "$cfg" >"$tmp/watchj.out" 2>&1 &
watchj_pid=$!
watch_pids+=($watchj_pid)
for _ in $(seq 100); do grep -q "watching" "$tmp/watch.out" 2>/dev/null && break; sleep 0.1; done
mh hub load-model a --config "$cfg"
for _ in $(seq 100); do grep -q "a memory loading -> loaded" "$tmp/watch.out" && break; sleep 0.1; done
check "watch: the snapshot first" \
    grep -Eq "^[0-9]{2}:[0-9]{2}:[0-9]{2} watching http://127.0.0.1:$hub_port: 2 models" "$tmp/watch.out"
check "watch: process transition" \
    grep -Eq "^[0-9:]{8} a process (stopped|starting) -> (starting|running)" "$tmp/watch.out"
check "watch: memory transition" grep -Eq "^[0-9:]{8} a memory loading -> loaded" "$tmp/watch.out"
check "watch --json: one JSON object a line" jq_ok -s \
    'length >= 3 and .[0].type == "snapshot" and (map(select(.type == "memory")) | length) >= 2' \
    "$tmp/watchj.out"
kill "$watchj_pid" 2>/dev/null
wait "$watchj_pid" 2>/dev/null
[ $fails -eq 0 ] || show "$tmp/watch.out" "$tmp/watch.err"

# ---- reload -----------------------------------------------------------------------------------
write_config "" "  - name: c
    model_path: $tmp/stories260K.gguf"
mh hub reload --config "$cfg"
check "reload: exit 0" test $rc -eq 0
check "reload: c added" grep -Eq "^  added +c$" "$tmp/out"
check "reload: a, b unchanged" grep -Eq "^  unchanged +a, b$" "$tmp/out"
check "status: c listed" test "$(field c .name)" = c
cp "$cfg" "$tmp/good.yaml"
write_config "" "  - name: c
    model_path: $tmp/stories260K.gguf
  - name: d
    model_path: $tmp/missing.gguf
    group: nosuchgroup
    colour: blue"
# The CLI reads the config to find the hub: a broken file is reported before anything is sent.
mh hub reload --config "$cfg"
check "broken reload: exit 1" test $rc -eq 1
check "broken reload: nothing sent" grep -q "nothing was sent" "$tmp/err"
check "broken reload: the errors, file:line" \
    grep -q "hub.yaml:[0-9]*: models\\[3\\].colour: unknown key" "$tmp/err"
# Found through a good copy (same state_dir), the hub re-reads its broken file and refuses it.
mh hub reload --config "$tmp/good.yaml"
check "broken reload by the hub: exit 1" test $rc -eq 1
check "broken reload by the hub: nothing changed" grep -q "nothing changed" "$tmp/err"
check "broken reload by the hub: the undefined group" grep -q "nosuchgroup" "$tmp/err"
check "broken reload by the hub: the unknown key" grep -q "colour" "$tmp/err"
check "broken reload by the hub: the missing file" grep -q "missing.gguf" "$tmp/err"
[ $fails -eq 0 ] || show "$tmp/err"
cp "$tmp/good.yaml" "$cfg"
names=$("$bin" hub status --json --config "$cfg" | jq -c '[.models[].name]')
check "broken reload: models unchanged" test "$names" = '["a","b","c"]'
check "broken reload: a still loaded" test "$(field a .memory_state)" = loaded

# ---- usage errors -----------------------------------------------------------------------------
for c in status watch reload logs start-model stop-model load-model unload-model; do
    mh hub "$c" --help
    check "hub $c --help: exit 0" test $rc -eq 0
    check "hub $c --help: usage" grep -q "usage: modelhub hub $c" "$tmp/out"
    mh hub "$c" --bogus --config "$cfg"
    check "hub $c --bogus: exit 2" test $rc -eq 2
    check "hub $c --bogus: usage" grep -q "usage: modelhub hub $c" "$tmp/err"
done
for c in logs start-model stop-model load-model unload-model; do
    mh hub "$c" --config "$cfg"
    check "hub $c without NAME: exit 2" test $rc -eq 2
done

# ---- stop: the watcher ends with 0, no process left -------------------------------------------
pids=$("$bin" hub status --json --config "$cfg" | jq -r '[.pid, (.models[].pid | select(. != null))] | join(" ")')
mh hub stop --config "$cfg"
check "hub stop: exit 0" test $rc -eq 0
watch_rc=124
for _ in $(seq 100); do
    if ! kill -0 "$watch_pid" 2>/dev/null; then wait "$watch_pid"; watch_rc=$?; break; fi
    sleep 0.1
done
check "watch: exit 0 when the hub shut down" test $watch_rc -eq 0
check "watch: says the hub closed the stream" grep -q "closed the stream" "$tmp/watch.err"
[ $watch_rc -eq 0 ] || { echo "watch rc $watch_rc"; show "$tmp/watch.out" "$tmp/watch.err"; }
alive=""
for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
check "hub stop: the hub and its workers are gone ($pids)" test -z "$alive"
check "hub stop: no process of this test left" test -z "$(leftovers)"
mh hub watch --config "$cfg"
check "watch without a hub: exit 1" test $rc -eq 1

# ---- admin key --------------------------------------------------------------------------------
write_config "admin_key: s3cret-admin" ""
mh hub start --config "$cfg"
check "hub start with admin_key: exit 0" test $rc -eq 0
mh hub load-model a --config "$cfg"
check "admin: load-model with the config's key" test $rc -eq 0
# (the leftover checks are not vacuous: the hub and the worker are found by the temp dir)
worker=$(field a .pid)
check "pgrep finds the hub and the worker" \
    test -n "$(leftovers | grep -x "$worker")" -a "$(leftovers | wc -l)" -ge 2
MODELHUB_ADMIN_KEY=wrong mh hub load-model b --config "$cfg"
check "admin: wrong key refused" test $rc -ne 0
check "admin: the 401 message" grep -q "b: .*admin key.*401" "$tmp/err"
check "admin: b not loaded" test "$(field b .memory_state)" = unloaded
MODELHUB_ADMIN_KEY=wrong mh hub reload --config "$cfg"
check "admin: reload with a wrong key refused" test $rc -ne 0
check "admin: reload: the 401 message" grep -q 401 "$tmp/err"
MODELHUB_ADMIN_KEY=wrong mh hub logs a --config "$cfg"
check "admin: logs with a wrong key refused" test $rc -ne 0
check "admin: logs: the 401 message" grep -q 401 "$tmp/err"
MODELHUB_ADMIN_KEY=s3cret-admin mh hub unload-model a --config "$cfg"
check "admin: the right key in the environment works" test $rc -eq 0
mh hub status --config "$cfg"
check "admin: status is public" test $rc -eq 0
mh hub stop --config "$cfg"
check "admin: hub stop with the config's key" test $rc -eq 0
for _ in $(seq 50); do [ -z "$(leftovers)" ] && break; sleep 0.1; done
check "admin: no process of this test left" test -z "$(leftovers)"

echo "$fails failure(s)"
[ $fails -eq 0 ]
