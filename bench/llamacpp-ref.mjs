#!/usr/bin/env node
// llamacpp-ref.mjs — llama.cpp's greedy (argmax) continuation of a prompt, as token ids: the
// reference our engine's output is checked against.
//
// usage: node bench/llamacpp-ref.mjs -m MODEL -p PROMPT [-n STEPS] [-t THREADS] [--no-bos]
//                                    [--ignore-eog] [--kv-f32] [--text] [--json]
//
// The prompt is tokenized by llama.cpp (with its dummy-prefix space for SentencePiece vocabs);
// BOS is prepended when the model asks for it (tokenizer.ggml.add_bos_token, default yes for
// SentencePiece) unless --no-bos. Generation stops after STEPS tokens (default 32) or at an
// end-of-generation token, which is not printed (--ignore-eog keeps going through it).
// Output, in the format of the reference/*.ids files:
//   prompt_ids: 1 403 407 261 378
//   generated_ids: 432 383 ...
// --text adds the decoded continuation; --json prints one object instead. --kv-f32: an F32 KV
// cache and no flash attention (modelhub's attention numerics) instead of llama.cpp's F16 cache.
import {resolve} from "node:path";
import {parseArgs} from "node:util";

function usage(code) {
    const text = "usage: llamacpp-ref.mjs -m MODEL -p PROMPT [-n STEPS] [-t THREADS] [--no-bos] " +
        "[--ignore-eog] [--kv-f32] [--text] [--json]\n";
    (code ? process.stderr : process.stdout).write(text);
    process.exit(code);
}

let opts;
try {
    opts = parseArgs({
        options: {
            model: {type: "string", short: "m"},
            prompt: {type: "string", short: "p"},
            steps: {type: "string", short: "n", default: "32"},
            threads: {type: "string", short: "t", default: "1"},
            "no-bos": {type: "boolean", default: false},
            "ignore-eog": {type: "boolean", default: false},
            "kv-f32": {type: "boolean", default: false},
            text: {type: "boolean", default: false},
            json: {type: "boolean", default: false},
            help: {type: "boolean", short: "h", default: false},
        },
    }).values;
} catch (e) {
    process.stderr.write(`llamacpp-ref: ${e.message}\n`);
    usage(2);
}
if (opts.help) usage(0);
if (!opts.model || opts.prompt === undefined) {
    process.stderr.write("llamacpp-ref: -m MODEL and -p PROMPT are required\n");
    usage(2);
}
const steps = Number(opts.steps), threads = Number(opts.threads);
if (!Number.isInteger(steps) || steps < 1 || !Number.isInteger(threads) || threads < 1) {
    process.stderr.write("llamacpp-ref: -n and -t want positive integers\n");
    process.exit(2);
}

const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error,
                              maxThreads: threads});
const model = await llama.loadModel({modelPath: resolve(opts.model), gpuLayers: 0});
const promptIds = [...model.tokenize(opts.prompt, false)];
if (!opts["no-bos"] && model.tokens.shouldPrependBosToken)
    promptIds.unshift(model.tokens.bos);
if (promptIds.length === 0) {
    process.stderr.write("llamacpp-ref: the prompt has no tokens (empty prompt with --no-bos?)\n");
    process.exit(2);
}
// --kv-f32: an F32 KV cache without flash attention, as modelhub's attention computes; the
// default F16 cache rounds every key and value (a numerics difference, not an error).
const kvOptions = opts["kv-f32"] ? {experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
                                    flashAttention: false} : {};
const context = await model.createContext({contextSize: promptIds.length + steps + 8,
                                           batchSize: Math.max(promptIds.length, 1),
                                           threads: {ideal: threads, min: threads}, sequences: 1,
                                           ...kvOptions});
const sequence = context.getSequence();
const generated = [];
for await (const token of sequence.evaluate(promptIds, {temperature: 0})) {
    if (!opts["ignore-eog"] && model.isEogToken(token)) break;
    generated.push(token);
    if (generated.length >= steps) break;
}
const text = model.detokenize(generated);
if (opts.json) {
    process.stdout.write(JSON.stringify({model: opts.model, prompt: opts.prompt, prompt_ids: promptIds,
                                         generated_ids: generated, text}) + "\n");
} else {
    process.stdout.write(`prompt_ids: ${promptIds.join(" ")}\ngenerated_ids: ${generated.join(" ")}\n`);
    if (opts.text) process.stdout.write(`text: ${JSON.stringify(text)}\n`);
}
await context.dispose();
await model.dispose();
await llama.dispose();
