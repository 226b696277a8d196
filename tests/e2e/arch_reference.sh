#!/usr/bin/env bash
# Every architecture case of tests/data/arch/cases.txt: a synthetic model whose greedy 32 tokens
# must equal llama.cpp's (the committed .ids, made by tests/data/arch/make-refs.sh).
set -u
bin=${MODELHUB_BIN:?} models=${MODELHUB_MODELS:?} src=${MODELHUB_SRC:?}
data=$src/tests/data/arch
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 n=0
while IFS='|' read -r name args; do
    case "$name" in '#'*|'') continue ;; esac
    name=$(echo "$name" | xargs)
    n=$((n + 1))
    # shellcheck disable=SC2086
    if ! "$bin" synth -o "$tmp/$name.gguf" --vocab-from "$models/stories260K.gguf" $args 2>"$tmp/err"; then
        echo "FAIL $name: synth failed: $(cat "$tmp/err")"
        fails=$((fails + 1))
        continue
    fi
    "$bin" run -m "$tmp/$name.gguf" -p "Once upon a time" -n 32 --temp 0 -q --ids >"$tmp/$name.ids"
    if cmp -s "$tmp/$name.ids" "$data/$name.ids"; then
        echo "ok   $name"
    else
        echo "FAIL $name"
        diff "$data/$name.ids" "$tmp/$name.ids"
        fails=$((fails + 1))
    fi
done <"$data/cases.txt"
echo "$n cases, $fails failure(s)"
[ "$n" -ge 9 ] && [ "$fails" -eq 0 ]
