#!/usr/bin/env bash
# modelhub hub check: a valid file prints "FILE: ok (N models, M groups)" and exits 0; an invalid
# one lists every error as "FILE:LINE: KEY: message" on stderr and exits 1; a missing config names
# the places looked at and exits 1; usage errors exit 2. Discovery: --config, $MODELHUB_CONFIG,
# ./hub.yaml, $XDG_CONFIG_HOME/modelhub/hub.yaml, ~/.config/modelhub/hub.yaml.
# MODELHUB_WRAP, when set, prefixes every run (e.g. "valgrind -q --error-exitcode=99").
set -u
bin=${MODELHUB_BIN:?} models=${MODELHUB_MODELS:-${MODELHUB_SRC:?}/../shared/models}
wrap=${MODELHUB_WRAP:-}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
case $models in /*) ;; *) models=$PWD/$models ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check NAME CONDITION...
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
run() { # run ARGS... -> $rc, $tmp/out, $tmp/err (in the current folder)
    $wrap "$bin" hub check "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
has() { grep -qxF -- "$1" "$2"; }           # a whole line
has_part() { grep -qF -- "$1" "$2"; }
show() { echo "     stdout: $(head -c 400 "$tmp/out")"; echo "     stderr: $(head -c 800 "$tmp/err")"; }

# Clean environment: no config from the caller's machine may be found.
unset MODELHUB_CONFIG
export HOME=$tmp/home XDG_CONFIG_HOME=$tmp/xdg-config XDG_STATE_HOME=$tmp/state
mkdir -p "$HOME" "$tmp/work" "$tmp/conf/models"
cd "$tmp/work" || exit 1
ln -s "$models/stories260K.gguf" "$tmp/conf/models/stories.gguf"

cat >"$tmp/conf/good.yaml" <<'EOF'
# a hub with every kind of backend
port: 9090
log_max_bytes: 1MiB
api_keys: [k1]
groups:
  - name: small
    max_loaded: 1
models:
  - name: stories
    model_path: models/stories.gguf   # relative to this file's folder
    group: small
    default: true
    aliases: [st]
    auto_unload_minutes: 1
  - name: external
    cmd: "server --model ${MODEL_PATH} --port ${PORT}"
    model_path: models/stories.gguf
    env: {THREADS: 2}
  - name: remote
    upstream: http://127.0.0.1:9/v1
EOF

# ---- a valid file
run --config "$tmp/conf/good.yaml"
check "good: exit 0 (got $rc)" test "$rc" -eq 0
check "good: summary" has "$tmp/conf/good.yaml: ok (3 models, 1 group)" "$tmp/out"
check "good: stderr empty" test ! -s "$tmp/err"
[ "$rc" -eq 0 ] || show
run -c "$tmp/conf/good.yaml"
check "good via -c: exit 0" test "$rc" -eq 0
printf 'models: []\n' >"$tmp/conf/empty-models.yaml"
run --config "$tmp/conf/empty-models.yaml"
check "no models: ok (0 models, 0 groups)" has "$tmp/conf/empty-models.yaml: ok (0 models, 0 groups)" "$tmp/out"

# ---- an invalid file: every error, with file, line and key
cat >"$tmp/conf/bad.yaml" <<'EOF'
port: 99999
models:
  - name: Stories
    model_path: models/missing.gguf
    group: gpu
  - name: b
    cmd: "server ${HOST} --port ${PORT}"
    colour: blue
EOF
run --config "$tmp/conf/bad.yaml"
f=$tmp/conf/bad.yaml
check "bad: exit 1 (got $rc)" test "$rc" -eq 1
check "bad: stdout empty" test ! -s "$tmp/out"
check "bad: port" has "$f:1: port: must be from 1 to 65535, got 99999" "$tmp/err"
check "bad: slug" has_part "$f:3: models[0].name: model name 'Stories' may hold only lower-case" "$tmp/err"
check "bad: missing model" has_part "$f:4: models[0].model_path: '" "$tmp/err"
check "bad: missing model says so" has_part "missing.gguf' does not exist" "$tmp/err"
check "bad: undefined group" has "$f:5: models[0].group: group 'gpu' is not defined" "$tmp/err"
check "bad: cmd variable" has \
    "$f:7: models[1].cmd: unknown variable '\${HOST}' (only \${PORT} and \${MODEL_PATH} are expanded)" \
    "$tmp/err"
check "bad: unknown key" has "$f:8: models[1].colour: unknown key" "$tmp/err"
check "bad: six errors, one per line" test "$(wc -l <"$tmp/err")" -eq 6
[ "$rc" -eq 1 ] || show

# ---- malformed YAML: the line
printf 'models:\n  - name: a\n\tmodel_path: x\n' >"$tmp/conf/tab.yaml"
run --config "$tmp/conf/tab.yaml"
check "tab: exit 1" test "$rc" -eq 1
check "tab: line 3" has_part "$tmp/conf/tab.yaml:3: YAML syntax error:" "$tmp/err"
check "tab: says tab" has_part "a tab in the indentation" "$tmp/err"
printf 'models: []\nhost: "127.0.0.1\n' >"$tmp/conf/quote.yaml"
run --config "$tmp/conf/quote.yaml"
check "unclosed quote: exit 1" test "$rc" -eq 1
check "unclosed quote: the quote's line" has_part "while scanning a quoted scalar at line 2" "$tmp/err"
: >"$tmp/conf/empty.yaml"
run --config "$tmp/conf/empty.yaml"
check "empty file: exit 1" test "$rc" -eq 1
check "empty file: message" has \
    "$tmp/conf/empty.yaml:1: the file is empty (expected a mapping with a 'models' list)" "$tmp/err"
printf -- '- a\n' >"$tmp/conf/list.yaml"
run --config "$tmp/conf/list.yaml"
check "top-level list: exit 1" test "$rc" -eq 1
check "top-level list: message" has_part "list.yaml:1: the top level must be a mapping" "$tmp/err"
head -c 2000000 /dev/zero | tr '\0' '#' >"$tmp/conf/huge.yaml"
run --config "$tmp/conf/huge.yaml"
check "2 MB file: exit 1" test "$rc" -eq 1
check "2 MB file: too large" has \
    "$tmp/conf/huge.yaml: the file is too large (2000000 bytes; the limit is 1048576)" "$tmp/err"

# ---- the file itself
run --config "$tmp/conf/nope.yaml"
check "missing --config file: exit 1" test "$rc" -eq 1
check "missing --config file: message" has \
    "$tmp/conf/nope.yaml: cannot open: No such file or directory" "$tmp/err"
run --config "$tmp/conf"
check "directory: exit 1" test "$rc" -eq 1
check "directory: message" has "$tmp/conf: is a directory, not a file" "$tmp/err"

# ---- discovery
run
check "nothing found: exit 1 (got $rc)" test "$rc" -eq 1
check "nothing found: names the places" has \
    "modelhub hub check: no hub.yaml found: no --config given, \$MODELHUB_CONFIG is not set, and none of these exists: ./hub.yaml, $XDG_CONFIG_HOME/modelhub/hub.yaml" \
    "$tmp/err"
[ "$rc" -eq 1 ] || show
unset XDG_CONFIG_HOME
run
check "nothing found, no XDG_CONFIG_HOME: ~/.config" has_part \
    "none of these exists: ./hub.yaml, $HOME/.config/modelhub/hub.yaml" "$tmp/err"
mkdir -p "$HOME/.config/modelhub"
cp "$tmp/conf/empty-models.yaml" "$HOME/.config/modelhub/hub.yaml"
run
check "~/.config/modelhub/hub.yaml: found" has "$HOME/.config/modelhub/hub.yaml: ok (0 models, 0 groups)" "$tmp/out"
export XDG_CONFIG_HOME=$tmp/xdg-config
mkdir -p "$XDG_CONFIG_HOME/modelhub"
printf 'groups: [{name: g, max_loaded: 1}]\nmodels: []\n' >"$XDG_CONFIG_HOME/modelhub/hub.yaml"
run
check "XDG_CONFIG_HOME wins over ~/.config" has "$XDG_CONFIG_HOME/modelhub/hub.yaml: ok (0 models, 1 group)" "$tmp/out"
cat >hub.yaml <<EOF
models:
  - name: here
    model_path: $models/stories260K.gguf
EOF
run
check "./hub.yaml: exit 0 (got $rc)" test "$rc" -eq 0
check "./hub.yaml: found first" has "hub.yaml: ok (1 model, 0 groups)" "$tmp/out"
MODELHUB_CONFIG=$tmp/conf/good.yaml run
check "MODELHUB_CONFIG wins over ./hub.yaml" has "$tmp/conf/good.yaml: ok (3 models, 1 group)" "$tmp/out"
MODELHUB_CONFIG=$tmp/conf/bad.yaml run --config hub.yaml
check "--config wins over MODELHUB_CONFIG" has "hub.yaml: ok (1 model, 0 groups)" "$tmp/out"
MODELHUB_CONFIG=$tmp/conf/gone.yaml run
check "MODELHUB_CONFIG to a missing file: exit 1, no fallback" test "$rc" -eq 1
check "MODELHUB_CONFIG to a missing file: message" has \
    "$tmp/conf/gone.yaml: cannot open: No such file or directory" "$tmp/err"

# ---- usage
run --help
check "--help: exit 0" test "$rc" -eq 0
check "--help: usage line" has "usage: modelhub hub check [--config FILE]" "$tmp/out"
check "--help: names the search order" has_part "MODELHUB_CONFIG" "$tmp/out"
run --frobnicate
check "unknown option: exit 2 (got $rc)" test "$rc" -eq 2
check "unknown option: message" has_part "modelhub hub check: unknown option '--frobnicate'" "$tmp/err"
run --config
check "--config without a value: exit 2" test "$rc" -eq 2
$wrap "$bin" hub --help >"$tmp/out" 2>&1
check "hub --help lists check" has_part "check" "$tmp/out"

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all checks passed"
