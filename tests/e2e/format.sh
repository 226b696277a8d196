#!/usr/bin/env bash
# Every C file of the project is formatted as .clang-format says (STYLE.md: CI checks it).
set -u
src=${MODELHUB_SRC:?}
cd "$src" || exit 1
command -v clang-format >/dev/null || { echo "clang-format is not installed (scripts/setup.sh installs it)"; exit 1; }
files=$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'fuzz/*.c' 2>/dev/null)
[ -n "$files" ] || files=$(find src tests fuzz -name '*.[ch]')
bad=0
for f in $files; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (clang-format -i $f)"
        bad=$((bad + 1))
    fi
done
echo "$(echo "$files" | wc -w) files checked, $bad not formatted"
[ "$bad" -eq 0 ]
