#!/usr/bin/env bash
# modelhub synth: files `inspect` lists with the right keys and shapes for several shapes and types,
# --vocab-from copies the tokenizer, bad arguments exit 2 with a message; the engine runs the files;
# modelhub bench --json on a synth model prints valid JSON with positive numbers.
set -u
bin=${MODELHUB_BIN:?} models=${MODELHUB_MODELS:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check NAME CONDITION...
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

# Value of metadata key $2 in the inspect output $1 (the last field of its line).
key() { awk -v k="$2" '$1 == k { print $NF }' "$1"; }
# The tensor line of $2 in inspect output $1 reads "<name> <type> [<shape>]".
has_tensor() { grep -Eq "^  $2 +$3 +\[$4\] " "$1"; }

# ---- shapes and types -------------------------------------------------------------------------
# name | synth arguments | dim layers heads kv ff type tied
cases=(
    "default||64 2 4 4 192 f32 0"
    "gqa-f16-tied|--dim 96 --layers 3 --heads 6 --kv-heads 2 --ff 160 --type f16 --tied|96 3 6 2 160 f16 1"
    "wide-f16|--dim 256 --layers 1 --heads 4 --type f16 --ctx 512 --name wide|256 1 4 4 704 f16 0"
    "mqa-f32|--dim 128 --layers 2 --heads 8 --kv-heads 1 --ff 64|128 2 8 1 64 f32 0"
)
for c in "${cases[@]}"; do
    IFS='|' read -r name args want <<<"$c"
    read -r dim layers heads kv ff type tied <<<"$want"
    f=$tmp/$name.gguf
    # shellcheck disable=SC2086
    "$bin" synth -o "$f" $args 2>"$tmp/err"
    check "$name: synth exits 0" test $? -eq 0
    "$bin" inspect "$f" >"$tmp/$name.txt" 2>&1
    check "$name: inspect reads it" test $? -eq 0
    i=$tmp/$name.txt
    check "$name: version 3" grep -q "^version: 3 " "$i"
    check "$name: architecture" test "$(key "$i" general.architecture)" = '"llama"'
    check "$name: embedding_length" test "$(key "$i" llama.embedding_length)" = "$dim"
    check "$name: block_count" test "$(key "$i" llama.block_count)" = "$layers"
    check "$name: head_count" test "$(key "$i" llama.attention.head_count)" = "$heads"
    check "$name: head_count_kv" test "$(key "$i" llama.attention.head_count_kv)" = "$kv"
    check "$name: feed_forward_length" test "$(key "$i" llama.feed_forward_length)" = "$ff"
    check "$name: rope dims" test "$(key "$i" llama.rope.dimension_count)" = "$((dim / heads))"
    for k in general.name general.file_type llama.context_length llama.rope.freq_base \
             llama.attention.layer_norm_rms_epsilon llama.vocab_size tokenizer.ggml.model \
             tokenizer.ggml.tokens tokenizer.ggml.scores tokenizer.ggml.token_type; do
        check "$name: has $k" grep -q "^  $k " "$i"
    done
    n_vocab=$(key "$i" llama.vocab_size)
    check "$name: vocab size matches tokens" grep -q "^  tokenizer.ggml.tokens .*\[string x $n_vocab\]" "$i"
    kv_dim=$((dim / heads * kv))
    check "$name: token_embd" has_tensor "$i" token_embd.weight "$type" "$dim, $n_vocab"
    check "$name: output_norm f32" has_tensor "$i" output_norm.weight f32 "$dim"
    if [ "$tied" = 1 ]; then
        check "$name: no output.weight" bash -c "! grep -q '^  output.weight ' '$i'"
        n_tensors=$((2 + 9 * layers))
    else
        check "$name: output.weight" has_tensor "$i" output.weight "$type" "$dim, $n_vocab"
        n_tensors=$((3 + 9 * layers))
    fi
    check "$name: $n_tensors tensors" grep -q "^tensors ($n_tensors):" "$i"
    for l in $(seq 0 $((layers - 1))); do
        check "$name: blk.$l shapes" bash -c "
            grep -Eq '^  blk.$l.attn_norm.weight +f32 +\[$dim\] ' '$i' &&
            grep -Eq '^  blk.$l.ffn_norm.weight +f32 +\[$dim\] ' '$i' &&
            grep -Eq '^  blk.$l.attn_q.weight +$type +\[$dim, $dim\] ' '$i' &&
            grep -Eq '^  blk.$l.attn_k.weight +$type +\[$dim, $kv_dim\] ' '$i' &&
            grep -Eq '^  blk.$l.attn_v.weight +$type +\[$dim, $kv_dim\] ' '$i' &&
            grep -Eq '^  blk.$l.attn_output.weight +$type +\[$dim, $dim\] ' '$i' &&
            grep -Eq '^  blk.$l.ffn_gate.weight +$type +\[$dim, $ff\] ' '$i' &&
            grep -Eq '^  blk.$l.ffn_up.weight +$type +\[$dim, $ff\] ' '$i' &&
            grep -Eq '^  blk.$l.ffn_down.weight +$type +\[$ff, $dim\] ' '$i'"
    done
    # The engine loads it and writes something for a prompt (greedy, 8 tokens).
    "$bin" run -m "$f" -p "Once upon a time" -n 8 --temp 0 -q -t 2 >"$tmp/out" 2>"$tmp/err"
    check "$name: modelhub run exits 0" test $? -eq 0
    check "$name: modelhub run prints text" test -s "$tmp/out"
done
check "wide: general.name" test "$(key "$tmp/wide-f16.txt" general.name)" = '"wide"'
check "wide: context_length" test "$(key "$tmp/wide-f16.txt" llama.context_length)" = 512
check "f16 file_type 1" test "$(key "$tmp/wide-f16.txt" general.file_type)" = 1
check "f32 file_type 0" test "$(key "$tmp/default.txt" general.file_type)" = 0

# Greedy output depends on the prompt (random weights, but not one token for everything).
"$bin" run -m "$tmp/default.gguf" -p "The little dog ran" -n 16 --temp 0 -q >"$tmp/a" 2>/dev/null
"$bin" run -m "$tmp/default.gguf" -p "Tom and Ben went home" -n 16 --temp 0 -q >"$tmp/b" 2>/dev/null
check "different prompts, different continuations" bash -c "! cmp -s '$tmp/a' '$tmp/b'"

# Same seed, same bytes; another seed, other weights.
"$bin" synth -o "$tmp/s1.gguf" --seed 5 2>/dev/null
"$bin" synth -o "$tmp/s2.gguf" --seed 5 2>/dev/null
"$bin" synth -o "$tmp/s3.gguf" --seed 6 2>/dev/null
check "same seed reproduces the file" cmp -s "$tmp/s1.gguf" "$tmp/s2.gguf"
check "another seed differs" bash -c "! cmp -s '$tmp/s1.gguf' '$tmp/s3.gguf'"

# ---- --vocab-from and --chat-template ----------------------------------------------------------
for src in stories260K llama-2-tiny-random; do
    "$bin" synth -o "$tmp/v-$src.gguf" --vocab-from "$models/$src.gguf" --type f16 2>"$tmp/err"
    check "vocab-from $src: exit 0" test $? -eq 0
    "$bin" inspect --full "$models/$src.gguf" | grep -a '^  tokenizer\.' >"$tmp/want"
    "$bin" inspect --full "$tmp/v-$src.gguf" | grep -a '^  tokenizer\.' >"$tmp/got"
    check "vocab-from $src: tokenizer keys present" test "$(wc -l <"$tmp/want")" -ge 5
    check "vocab-from $src: tokenizer keys identical" cmp -s "$tmp/want" "$tmp/got"
done
check "vocab-from: 32000-token embedding" \
    grep -Eq '^  token_embd.weight +f16 +\[64, 32000\] ' <("$bin" inspect "$tmp/v-llama-2-tiny-random.gguf")
check "vocab-from: vocab_size 32000" \
    test "$(key <("$bin" inspect "$tmp/v-llama-2-tiny-random.gguf") llama.vocab_size)" = 32000
printf '{%% for m in messages %%}<|{{ m.role }}|>{{ m.content }}\n{%% endfor %%}' >"$tmp/tmpl.jinja"
"$bin" synth -o "$tmp/t.gguf" --chat-template "$tmp/tmpl.jinja" 2>/dev/null
check "chat template stored" grep -q '^  tokenizer.chat_template .*<|{{ m.role }}|>{{ m.content }}\\n' \
    <("$bin" inspect --full "$tmp/t.gguf")

# ---- bad arguments: exit 2, a message naming the problem, the usage, no file -------------------
expect_usage() { # expect_usage NAME MESSAGE-REGEX ARGS...
    local name=$1 msg=$2; shift 2
    rm -f "$tmp/bad.gguf"
    "$bin" synth "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    check "$name: exit 2" test $rc -eq 2
    check "$name: message" grep -Eq "^modelhub synth: .*$msg" "$tmp/err"
    check "$name: usage shown" grep -q "usage: modelhub synth" "$tmp/err"
    check "$name: no file written" test ! -e "$tmp/bad.gguf"
}
o=(-o "$tmp/bad.gguf")
expect_usage "missing -o" "-o FILE"
expect_usage "dim not divisible by heads" "--dim 100 is not divisible by --heads 3" "${o[@]}" --dim 100 --heads 3
expect_usage "heads not divisible by kv" "--heads 4 is not divisible by --kv-heads 3" "${o[@]}" --kv-heads 3
expect_usage "odd head dim" "must be even" "${o[@]}" --dim 12 --heads 4
expect_usage "more heads than dim" "--heads" "${o[@]}" --dim 16 --heads 32
expect_usage "zero layers" "--layers" "${o[@]}" --layers 0
expect_usage "negative dim" "--dim" "${o[@]}" --dim -64
expect_usage "dim not a number" "--dim" "${o[@]}" --dim abc
expect_usage "unknown type" "unknown --type 'f8'" "${o[@]}" --type f8
expect_usage "unsupported type" "--type q2_k is not supported" "${o[@]}" --type q2_k
expect_usage "row length not a multiple of the block" "--type q4_k needs .*multiples of its block size 256" "${o[@]}" --type q4_k
expect_usage "missing vocab file" "--vocab-from .*no-such" "${o[@]}" --vocab-from "$tmp/no-such.gguf"
expect_usage "vocab file not GGUF" "--vocab-from" "${o[@]}" --vocab-from "$models/stories260K.gguf.inp"
expect_usage "missing template file" "--chat-template" "${o[@]}" --chat-template "$tmp/no-such.jinja"
expect_usage "unknown flag" "unknown option '--bogus'" "${o[@]}" --bogus
expect_usage "missing value" "needs a value" "${o[@]}" --seed
"$bin" synth --help >"$tmp/out" 2>&1
check "--help exits 0" test $? -eq 0
check "--help lists --vocab-from" grep -q -- "--vocab-from" "$tmp/out"

jqt() { jq -e "$@" >/dev/null; } # jq as a test: true when the filter's last output is true

# ---- bench --------------------------------------------------------------------------------------
"$bin" bench -m "$tmp/default.gguf" -t 2 -p 32 -n 8 -r 2 --memcpy-mib 32 --json >"$tmp/bench.json" 2>"$tmp/err"
check "bench --json exits 0" test $? -eq 0
check "bench prints one valid JSON object" jqt -s 'length == 1 and (.[0] | type) == "object"' "$tmp/bench.json"
for field in prefill_tok_s decode_tok_s prefill_s decode_s bytes_per_token decode_gbs memcpy_gbs \
             bandwidth_ratio n_params weight_bytes; do
    check "bench $field > 0" jqt ".$field | (type == \"number\") and . > 0" "$tmp/bench.json"
done
check "bench echoes its settings" \
    jqt '.threads == 2 and .prompt_tokens == 32 and .gen_tokens == 8 and .reps == 2' "$tmp/bench.json"
check "bench greedy ids" jqt '(.generated_ids | length) == 8 and all(.generated_ids[]; . >= 0)' "$tmp/bench.json"
check "bench bytes/token below weight bytes" jqt '.bytes_per_token <= .weight_bytes' "$tmp/bench.json"
"$bin" bench -m "$tmp/gqa-f16-tied.gguf" -t 1 -p 16 -n 4 -r 1 --memcpy-mib 0 >"$tmp/out" 2>&1
check "bench text report" grep -q "^decode .* tok/s" "$tmp/out"
"$bin" bench -t 1 >"$tmp/out" 2>&1
check "bench without -m: exit 2" test $? -eq 2
"$bin" bench -m "$tmp/default.gguf" -p 64 -n 8 --ctx 32 >"$tmp/out" 2>&1
check "bench ctx too small: exit 2" test $? -eq 2
"$bin" bench -m "$tmp/no-such.gguf" >"$tmp/out" 2>&1
check "bench missing model: exit 1" test $? -eq 1

if [ "$fails" -gt 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all checks passed"
