#!/usr/bin/env node
// llamacpp-vocab-ids.mjs — llama.cpp's token ids for test strings, in the format of llama.cpp's
// test-tokenizer-0 vectors (`ggml-vocab-*.gguf.out`): one line per string, each id preceded by a
// space, no BOS/EOS (add_special = false).
//
// usage: node scripts/llamacpp-vocab-ids.mjs -m VOCAB.gguf -i STRINGS.inp [-o OUT] [--special]
//
// STRINGS.inp holds strings each followed by "\n__ggml_vocab_test__\n" (the .inp format).
// --special tokenizes with parse_special = true (text spelling a control token becomes it);
// without it parse_special = false, as in llama.cpp's own vectors.
// llama.cpp comes from node-llama-cpp in bench/node_modules (see bench/README.md), loaded with
// vocabOnly: the GGUF needs no tensors.
import {readFileSync, writeFileSync} from "node:fs";
import {dirname, join, resolve} from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import {parseArgs} from "node:util";

const {values: opt} = parseArgs({
    options: {
        model: {type: "string", short: "m"},
        input: {type: "string", short: "i"},
        out: {type: "string", short: "o"},
        special: {type: "boolean", default: false},
    },
});
if (!opt.model || !opt.input) {
    process.stderr.write("usage: llamacpp-vocab-ids.mjs -m VOCAB.gguf -i STRINGS.inp [-o OUT] [--special]\n");
    process.exit(2);
}

const SEP = "\n__ggml_vocab_test__\n";
const raw = readFileSync(opt.input);
const text = raw.toString("utf8");
if (!Buffer.from(text, "utf8").equals(raw)) {
    // JavaScript strings cannot carry invalid UTF-8 to llama.cpp unchanged.
    process.stderr.write(`${opt.input}: not valid UTF-8\n`);
    process.exit(1);
}
const parts = text.split(SEP);
if (parts.pop() !== "") {
    process.stderr.write(`${opt.input}: the last string is not followed by the separator\n`);
    process.exit(1);
}

const here = dirname(fileURLToPath(import.meta.url));
const lib = join(here, "..", "bench", "node_modules", "node-llama-cpp", "dist", "index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(lib).href);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: resolve(opt.model), vocabOnly: true});
const lines = parts.map((s) => [...model.tokenize(s, opt.special)].map((id) => ` ${id}`).join(""));
const out = lines.join("\n") + "\n";
if (opt.out) writeFileSync(opt.out, out);
else process.stdout.write(out);
await model.dispose();
await llama.dispose();
