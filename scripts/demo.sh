#!/usr/bin/env bash
# Set up, build, write a small demo model and start the hub on it, in the foreground
# (Ctrl-C stops it and its workers). Any GGUF you already have works too: add it to
# build/demo/hub.yaml (see README.md) or run ./build/modelhub run -m your.gguf -p "Hello".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target modelhub
demo=$PWD/build/demo
mkdir -p "$demo"
[ -f "$demo/demo.gguf" ] ||
    ./build/modelhub synth -o "$demo/demo.gguf" --dim 256 --layers 4 --heads 8 --ff 688 --seed 7
port=${MODELHUB_DEMO_PORT:-8080}
cat >"$demo/hub.yaml" <<YAML
# The demo hub: one synthetic model (random weights: its text is gibberish) that starts with the
# hub and unloads after 5 idle minutes.
port: $port
log_path: $demo/logs
state_dir: $demo/state
models:
  - name: demo
    model_path: $demo/demo.gguf
    default: true
    idle_unload: 300
YAML
echo "try: curl -s http://127.0.0.1:$port/v1/chat/completions -d '{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":32}'"
echo "     ./build/modelhub hub status --config $demo/hub.yaml      (dashboard: http://127.0.0.1:$port/hub)"
exec ./build/modelhub hub start --foreground --config "$demo/hub.yaml"
