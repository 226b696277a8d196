#!/usr/bin/env bash
# modelhub inspect: good files list their tensors; truncated, changed, missing, empty files and
# directories exit 1 with "modelhub inspect: FILE: problem" on stderr; usage errors exit 2.
# MODELHUB_WRAP, when set, prefixes every run (e.g. "valgrind -q --error-exitcode=99").
set -u
bin=${MODELHUB_BIN:?} models=${MODELHUB_MODELS:-${MODELHUB_SRC:?}/../shared/models}
wrap=${MODELHUB_WRAP:-}
n_random=${INSPECT_RANDOM_CHANGES:-100}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check NAME CONDITION...
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
inspect() { # inspect ARGS... -> $rc, $tmp/out, $tmp/err
    $wrap "$bin" inspect "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
has() { grep -qF -- "$1" "$2"; }
has_re() { grep -qE -- "$1" "$2"; }
short_file_re='truncated|past end|more than the file can hold|file too small'

# expect_bad NAME FILE PATTERN: exit 1, nothing on stdout, "modelhub inspect: FILE: " + PATTERN.
expect_bad() {
    local name=$1 file=$2 pattern=$3
    inspect "$file"
    check "$name: exit 1 (got $rc)" test "$rc" -eq 1
    check "$name: stdout empty" test ! -s "$tmp/out"
    check "$name: stderr names the file" has "modelhub inspect: $file: " "$tmp/err"
    if ! has_re "$pattern" "$tmp/err"; then
        echo "     stderr: $(head -c 300 "$tmp/err")"
        check "$name: stderr matches /$pattern/" false
    fi
}

# poke FILE OFFSET HEX...: overwrite bytes in place.
poke() {
    local file=$1 off=$2; shift 2
    local bytes=""
    for h in "$@"; do bytes+="\\x$h"; done
    printf "$bytes" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}

stories=$models/stories260K.gguf
tiny=$models/llama-2-tiny-random.gguf
stories_size=$(stat -c %s "$stories")

# ---- good files
inspect "$stories"
check "stories: exit 0" test "$rc" -eq 0
check "stories: lists token_embd.weight" has_re '^ +token_embd\.weight +f32 +\[64, 512\]' "$tmp/out"
check "stories: 48 tensors" has "tensors (48):" "$tmp/out"
check "stories: header line" has "version: 3  alignment: 32  size: 1185376  data offset: 14176" \
    "$tmp/out"
check "stories: embedding_length 64" has_re 'llama\.embedding_length +u32 +64$' "$tmp/out"
check "stories: nothing on stderr" test ! -s "$tmp/err"
inspect "$tiny" --full
check "tiny --full: exit 0" test "$rc" -eq 0
check "tiny: f16 token_embd.weight" has_re '^ +token_embd\.weight +f16 +\[8, 32000\]' "$tmp/out"
check "tiny --full: whole vocabulary" has "[string x 32000]" "$tmp/out"
check "tiny --full: no elision" test "$(grep -c ', \.\.\.$' "$tmp/out")" -eq 0
inspect "$models/ggml-vocab-gpt-2.gguf"
check "vocab: exit 0" test "$rc" -eq 0
check "vocab: no tensors" has "tensors (0):" "$tmp/out"
cp "$stories" "$tmp/with space.gguf"
inspect -- "$tmp/with space.gguf"
check "name with a space: exit 0" test "$rc" -eq 0

# ---- not a file, or nothing in it
expect_bad "missing file" "$tmp/nope.gguf" 'cannot open: No such file or directory'
expect_bad "directory" "$tmp" 'not a regular file'
: >"$tmp/empty.gguf"
expect_bad "empty file" "$tmp/empty.gguf" 'file too small \(0 bytes\)'
printf 'not a model at all, just some text\n' >"$tmp/text.gguf"
expect_bad "text file" "$tmp/text.gguf" 'not a GGUF file \(bad magic\)'
if [ "$(id -u)" != 0 ]; then # root reads anything
    cp "$stories" "$tmp/unreadable.gguf" && chmod 000 "$tmp/unreadable.gguf"
    expect_bad "unreadable file" "$tmp/unreadable.gguf" 'cannot open: Permission denied'
fi

# ---- truncated copies: the header at many points, the data section, one byte short
for n in 3 4 8 23 24 25 31 32 100 1000 5000 14000 14175 14176 14177 100000 $((stories_size - 1)); do
    head -c "$n" "$stories" >"$tmp/cut-$n.gguf"
    expect_bad "cut to $n bytes" "$tmp/cut-$n.gguf" "$short_file_re"
    if [ "$n" -ge 14176 ]; then
        check "cut to $n: names the tensor" \
            has_re "tensor '[a-z0-9_.]+' extends past end of file" "$tmp/err"
    fi
done
head -c 724416 "$tiny" >"$tmp/tiny-header.gguf"
expect_bad "tiny: header only" "$tmp/tiny-header.gguf" "tensor 'token_embd.weight' extends past end"
head -c 400000 "$tiny" >"$tmp/tiny-cut.gguf"
expect_bad "tiny: cut in the vocabulary" "$tmp/tiny-cut.gguf" \
    "truncated file: string value of key 'tokenizer.ggml.tokens'"

# ---- changed copies, each aimed at one field
changed() { # changed NAME PATTERN OFFSET HEX...
    local name=$1 pattern=$2 file="$tmp/changed.gguf"; shift 2
    cp "$stories" "$file"
    poke "$file" "$@"
    expect_bad "$name" "$file" "$pattern"
}
changed "magic" 'bad magic' 0 47 47 55 58
changed "version 1" 'GGUF version 1 is not supported' 4 01
changed "version 4" 'unsupported GGUF version 4' 4 04
changed "huge tensor count" 'tensor count [0-9]+ is more than the file can hold' 15 7f
changed "huge metadata count" 'metadata count [0-9]+ is more than the file can hold' 23 01
changed "key length" 'key of metadata entry 0 at offset 24 has length' 31 40
changed "value type" "key 'tokenizer.ggml.tokens' has unknown value type 77" 53 4d
changed "array element type" "key 'tokenizer.ggml.tokens' is an array of arrays" 57 09
changed "array count" "array 'tokenizer.ggml.tokens' claims [0-9]+ strings" 68 01

# ---- names with control characters are shown escaped, never sent raw to the terminal
le() { # le N VALUE: VALUE as N little-endian bytes, written as printf escapes
    local out="" i
    for ((i = 0; i < $1; i++)); do out+=$(printf '\\x%02x' $((($2 >> (8 * i)) & 255))); done
    printf '%s' "$out"
}
key='evil\x1b[31mkey' name='w\x1b]0;pwned\x07' # 12 and 11 bytes
printf "GGUF$(le 4 3)$(le 8 1)$(le 8 1)$(le 8 12)$key$(le 4 4)$(le 4 7)" >"$tmp/escape.gguf"
printf "$(le 8 11)$name$(le 4 1)$(le 8 8)$(le 4 0)$(le 8 0)" >>"$tmp/escape.gguf"
size=$(stat -c %s "$tmp/escape.gguf")
head -c $(((32 - size % 32) % 32 + 32)) /dev/zero >>"$tmp/escape.gguf"
inspect "$tmp/escape.gguf"
check "escaped names: exit 0" test "$rc" -eq 0
check "escaped names: key shown escaped" has 'evil\x1b[31mkey' "$tmp/out"
check "escaped names: tensor name shown escaped" has 'w\x1b]0;pwned\x07' "$tmp/out"
check "escaped names: no raw ESC or BEL" test "$(tr -cd '\033\007' <"$tmp/out" | wc -c)" -eq 0
printf "GGUF$(le 4 3)$(le 8 0)$(le 8 1)$(le 8 12)$key$(le 4 99)$(le 8 0)" >"$tmp/escape-bad.gguf"
expect_bad "escaped key in a message" "$tmp/escape-bad.gguf" \
    "key 'evil.x1b.31mkey' has unknown value type 99"
check "escaped message: no raw ESC" test "$(tr -cd '\033' <"$tmp/err" | wc -c)" -eq 0

# ---- random changes in the header: exit 0 or 1, never a crash, never a message-less failure
RANDOM=4242
crashes=0 silent=0 rejected=0 parsed=0
for ((i = 0; i < n_random; i++)); do
    cp "$stories" "$tmp/random.gguf"
    for ((k = 0; k <= RANDOM % 3; k++)); do
        printf -v hex '%02x' $((RANDOM % 256)) # not $(...): a subshell reseeds RANDOM
        poke "$tmp/random.gguf" $(((RANDOM * 32768 + RANDOM) % 14176)) "$hex"
    done
    inspect "$tmp/random.gguf"
    case $rc in
    0) parsed=$((parsed + 1)) ;;
    1)
        rejected=$((rejected + 1))
        grep -qE "^modelhub inspect: $tmp/random.gguf: .+" "$tmp/err" || {
            silent=$((silent + 1))
            echo "     change $i: stderr '$(head -c 300 "$tmp/err")'"
        }
        ;;
    *)
        crashes=$((crashes + 1))
        echo "     exit $rc: $(head -c 300 "$tmp/err")"
        ;;
    esac
done
echo "     $n_random random header changes: $parsed parsed, $rejected rejected"
check "random changes: no crash" test "$crashes" -eq 0
check "random changes: every rejection has a message" test "$silent" -eq 0
check "random changes: some rejected" test "$rejected" -gt 0

# ---- usage errors: exit 2 with the usage on stderr
expect_usage() { # expect_usage NAME PATTERN ARGS...
    local name=$1 pattern=$2; shift 2
    inspect "$@"
    check "$name: exit 2 (got $rc)" test "$rc" -eq 2
    check "$name: usage shown" has "usage: modelhub inspect FILE" "$tmp/err"
    check "$name: says why" has "$pattern" "$tmp/err"
}
expect_usage "no argument" "expected one GGUF file"
expect_usage "unknown flag" "unknown option '--bogus'" "$stories" --bogus
expect_usage "unknown flag first" "unknown option '-x'" -x "$stories"
expect_usage "two files" "unexpected argument" "$stories" "$tiny"
expect_usage "flag with a value" "takes no value" --full=yes "$stories"
inspect --help
check "--help: exit 0" test "$rc" -eq 0
check "--help: usage on stdout" has "usage: modelhub inspect FILE" "$tmp/out"

if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all checks passed"
