#!/usr/bin/env bash
# Set up, build, write a small demo model and generate text from it with modelhub's own engine.
# Any llama GGUF you already have works too: ./build/modelhub run -m your.gguf -p "Hello"
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target modelhub
demo=build/demo.gguf
[ -f "$demo" ] || ./build/modelhub synth -o "$demo" --dim 256 --layers 4 --heads 8 --ff 688 --seed 7
./build/modelhub run -m "$demo" -p "Once upon a time" -n 48 --seed 1
