#!/usr/bin/env bash
# Regenerate the reference ids of every case in cases.txt with llama.cpp (node-llama-cpp, see
# bench/README.md): synthesise the model, then llama.cpp's greedy 32 tokens after
# "Once upon a time". Run from the repo root with the binary and the models folder:
#   MODELHUB_BIN=build/modelhub MODELHUB_MODELS=../shared/models tests/data/arch/make-refs.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin=${MODELHUB_BIN:?} models=${MODELHUB_MODELS:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -v '^#' "$here/cases.txt" | while IFS='|' read -r name args; do
    name=$(echo "$name" | xargs)
    # shellcheck disable=SC2086
    "$bin" synth -o "$tmp/$name.gguf" --vocab-from "$models/stories260K.gguf" $args 2>/dev/null
    node "$root/bench/llamacpp-ref.mjs" -m "$tmp/$name.gguf" -p "Once upon a time" -n 32 \
        >"$here/$name.ids"
    echo "$name: $(tail -1 "$here/$name.ids" | wc -w) ids"
done
