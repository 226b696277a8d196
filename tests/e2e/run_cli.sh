#!/usr/bin/env bash
# modelhub run: greedy output equals the reference generations; argument and file errors.
set -u
bin=${MODELHUB_BIN:?} models=${MODELHUB_MODELS:?}
ref=$models/reference
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check NAME CONDITION...
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

# Greedy continuation == reference text with the prompt removed (run.c printed the prompt).
for case in "stories260K once-upon-a-time.steps64 60" "llama-2-tiny-random once-upon-a-time.steps32 28"; do
    set -- $case
    "$bin" run -m "$models/$1.gguf" -p "Once upon a time" -n "$3" --temp 0 -q >"$tmp/out" 2>"$tmp/err"
    check "$1 exit 0" test $? -eq 0
    sed '1s/^Once upon a time//' "$ref/$1.$2.txt" >"$tmp/want"
    check "$1 greedy text equals reference" cmp -s "$tmp/out" "$tmp/want"
done

# Timings go to stderr, not stdout.
"$bin" run -m "$models/stories260K.gguf" -p "Once upon a time" -n 8 --temp 0 >"$tmp/out" 2>"$tmp/err"
check "timings on stderr" grep -q "generated: 8 tokens" "$tmp/err"
check "stdout has no timings" bash -c "! grep -q tokens/s '$tmp/out'"

# Same seed, same text; sampling differs from greedy somewhere across seeds.
"$bin" run -m "$models/stories260K.gguf" -p "Lily" -n 40 --seed 7 -q >"$tmp/a" 2>/dev/null
"$bin" run -m "$models/stories260K.gguf" -p "Lily" -n 40 --seed 7 -q >"$tmp/b" 2>/dev/null
"$bin" run -m "$models/stories260K.gguf" -p "Lily" -n 40 --seed 8 -q >"$tmp/c" 2>/dev/null
check "same seed reproduces" cmp -s "$tmp/a" "$tmp/b"
check "another seed differs" bash -c "! cmp -s '$tmp/a' '$tmp/c'"

# -n 0 prints only the final newline; threads do not change greedy output.
"$bin" run -m "$models/stories260K.gguf" -p "Once" -n 0 -q >"$tmp/out" 2>/dev/null
check "-n 0 generates nothing" test "$(cat "$tmp/out")" = ""
"$bin" run -m "$models/stories260K.gguf" -p "Once upon a time" -n 60 --temp 0 -q -t 1 >"$tmp/t1"
"$bin" run -m "$models/stories260K.gguf" -p "Once upon a time" -n 60 --temp 0 -q -t 2 >"$tmp/t2"
check "1 and 2 threads agree" cmp -s "$tmp/t1" "$tmp/t2"

# Prompt from a file.
printf 'Once upon a time' >"$tmp/prompt.txt"
"$bin" run -m "$models/stories260K.gguf" -f "$tmp/prompt.txt" -n 60 --temp 0 -q >"$tmp/out"
sed '1s/^Once upon a time//' "$ref/stories260K.once-upon-a-time.steps64.txt" >"$tmp/want"
check "prompt file" cmp -s "$tmp/out" "$tmp/want"

# Usage errors exit 2 with a message and the usage.
expect_usage() { # expect_usage NAME ARGS...
    local name=$1; shift
    "$bin" run "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    check "$name: exit 2" test $rc -eq 2
    check "$name: usage shown" grep -q "usage: modelhub run" "$tmp/err"
}
expect_usage "missing model" -p hi
expect_usage "unknown flag" -m "$models/stories260K.gguf" --bogus
expect_usage "missing value" -m
expect_usage "negative -n" -m "$models/stories260K.gguf" -n -5
expect_usage "temp not a number" -m "$models/stories260K.gguf" --temp abc
expect_usage "top-p out of range" -m "$models/stories260K.gguf" --top-p 1.5
expect_usage "threads out of range" -m "$models/stories260K.gguf" -t 100000

# Bad model files exit 1 and name the file and the problem.
"$bin" run -m "$tmp/missing.gguf" -p hi >/dev/null 2>"$tmp/err"
check "missing file: exit 1" test $? -eq 1
check "missing file: named" grep -q "missing.gguf: cannot open" "$tmp/err"
head -c 20000 "$models/stories260K.gguf" >"$tmp/trunc.gguf"
"$bin" run -m "$tmp/trunc.gguf" -p hi >/dev/null 2>"$tmp/err"
check "truncated: exit 1" test $? -eq 1
check "truncated: says extends past end" grep -q "trunc.gguf: .*extends past end of file" "$tmp/err"
"$bin" run -m "$models/ggml-vocab-falcon.gguf" -p hi >/dev/null 2>"$tmp/err"
check "unknown architecture named" grep -q "unsupported architecture 'falcon'" "$tmp/err"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
