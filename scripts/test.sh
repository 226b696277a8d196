#!/usr/bin/env bash
# Set up, build and run the whole test suite. MODELHUB_ASAN=1 builds with ASan+UBSan
# into build-asan/. Extra arguments go to ctest (e.g. -R gguf).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
build=build
opts=()
if [ "${MODELHUB_ASAN:-0}" = 1 ]; then build=build-asan; opts+=(-DMODELHUB_ASAN=ON); fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${opts[@]+"${opts[@]}"}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
