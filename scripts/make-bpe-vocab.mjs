#!/usr/bin/env node
// make-bpe-vocab.mjs — write a vocabulary-only GGUF (byte-level BPE, tokenizer.ggml.model = gpt2)
// from a Hugging Face tokenizer.json + tokenizer_config.json, with the keys llama.cpp's converter
// (convert_hf_to_gguf.py) writes for such a vocabulary, plus a tiny fake set of hyperparameters
// so that llama.cpp accepts the file as a model for `vocabOnly` loading.
//
// usage: node scripts/make-bpe-vocab.mjs --dir DIR --arch ARCH --pre PRE -o OUT.gguf
//            [--name NAME] [--bos TEXT] [--eos TEXT] [--pad TEXT] [--add-bos true|false]
//            [--ctx N] [--rope-base F] [--rms-eps F]
//
// DIR holds tokenizer.json and tokenizer_config.json. Token ids 0..max come from the model's
// vocab and the added tokens; ids nobody uses become "[PAD<i>]" of type UNUSED. Token types:
// added tokens that are special, or look special (<|...|>, <｜...｜>, <pad>, <mask>, <unused...>),
// are CONTROL; other added tokens USER_DEFINED; the rest NORMAL. Merges are written as
// "left right" strings (pairs in the newer list form are joined the same way; a space inside a
// part is written as U+0120). BOS/EOS/padding ids come from tokenizer_config.json's
// bos_token/eos_token/pad_token unless --bos/--eos/--pad name a token text;
// tokenizer.ggml.add_bos_token from --add-bos, else tokenizer_config.json's add_bos_token when
// present. The chat template is copied when tokenizer_config.json has one.
//
// The hyperparameters (ARCH.block_count = 1, embedding_length = 64, ...) describe no real model:
// the file has no tensors. They are there only because llama.cpp reads them before it loads a
// vocabulary.
import {readFileSync, writeFileSync} from "node:fs";
import {join} from "node:path";
import {parseArgs} from "node:util";

const {values: opt} = parseArgs({
    options: {
        dir: {type: "string"},
        arch: {type: "string"},
        pre: {type: "string"},
        out: {type: "string", short: "o"},
        name: {type: "string"},
        bos: {type: "string"},
        eos: {type: "string"},
        pad: {type: "string"},
        "add-bos": {type: "string"},
        ctx: {type: "string", default: "4096"},
        "rope-base": {type: "string", default: "10000"},
        "rms-eps": {type: "string", default: "1e-5"},
    },
});
if (!opt.dir || !opt.arch || !opt.pre || !opt.out) {
    process.stderr.write("usage: make-bpe-vocab.mjs --dir DIR --arch ARCH --pre PRE -o OUT.gguf " +
                         "[--name NAME] [--bos TEXT] [--eos TEXT] [--pad TEXT] [--add-bos BOOL]\n");
    process.exit(2);
}

const tokJson = JSON.parse(readFileSync(join(opt.dir, "tokenizer.json"), "utf8"));
const config = JSON.parse(readFileSync(join(opt.dir, "tokenizer_config.json"), "utf8"));
const model = tokJson.model;
if (model.type !== "BPE") throw new Error(`model type ${model.type}, not BPE`);

// ---- tokens and types ----
const TYPE_NORMAL = 1, TYPE_CONTROL = 3, TYPE_USER_DEFINED = 4, TYPE_UNUSED = 5;
const byId = new Map();
for (const [text, id] of Object.entries(model.vocab)) byId.set(id, {text, type: TYPE_NORMAL});
const looksSpecial = (s) => ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(s) ||
    (s.startsWith("<|") && s.endsWith("|>")) || (s.startsWith("<｜") && s.endsWith("｜>")) ||
    (s.startsWith("<unused") && s.endsWith(">"));
for (const added of tokJson.added_tokens) {
    const special = added.special || looksSpecial(added.content);
    const text = special ? added.content : added.content.replaceAll("\u2581", " ");
    byId.set(added.id, {text, type: special ? TYPE_CONTROL : TYPE_USER_DEFINED});
}
let nTokens = 0;
for (const id of byId.keys()) nTokens = Math.max(nTokens, id + 1);
const tokens = [], types = [];
for (let i = 0; i < nTokens; i++) {
    const t = byId.get(i) ?? {text: `[PAD${i}]`, type: TYPE_UNUSED};
    tokens.push(t.text);
    types.push(t.type);
}
const idOf = new Map(tokens.map((t, i) => [t, i]));
const tokenId = (what, text) => {
    const content = typeof text === "object" && text !== null ? text.content : text;
    if (content == null) return undefined;
    if (!idOf.has(content)) throw new Error(`${what} token ${JSON.stringify(content)} is not in the vocabulary`);
    return idOf.get(content);
};

// ---- merges ----
const merges = model.merges.map((m) => typeof m === "string" ? m
    : m.map((part) => part.replaceAll(" ", "\u0120")).join(" "));

// ---- GGUF writer (version 3, little-endian, no tensors) ----
const VT = {U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10};
const chunks = [];
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); chunks.push(b); };
const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); chunks.push(b); };
const str = (s) => { const b = Buffer.from(s, "utf8"); u64(b.length); chunks.push(b); };
const kvs = [];
const kv = (key, type, value, arrType) => kvs.push({key, type, value, arrType});

const arch = opt.arch;
kv("general.architecture", VT.STRING, arch);
kv("general.name", VT.STRING, opt.name ?? arch);
kv(`${arch}.block_count`, VT.U32, 1);
kv(`${arch}.context_length`, VT.U32, Number(opt.ctx));
kv(`${arch}.embedding_length`, VT.U32, 64);
kv(`${arch}.feed_forward_length`, VT.U32, 128);
kv(`${arch}.attention.head_count`, VT.U32, 1);
kv(`${arch}.attention.head_count_kv`, VT.U32, 1);
kv(`${arch}.rope.freq_base`, VT.F32, Number(opt["rope-base"]));
kv(`${arch}.attention.layer_norm_rms_epsilon`, VT.F32, Number(opt["rms-eps"]));
kv(`${arch}.vocab_size`, VT.U32, nTokens);
kv("tokenizer.ggml.model", VT.STRING, "gpt2");
kv("tokenizer.ggml.pre", VT.STRING, opt.pre);
kv("tokenizer.ggml.tokens", VT.ARRAY, tokens, VT.STRING);
kv("tokenizer.ggml.token_type", VT.ARRAY, types, VT.I32);
kv("tokenizer.ggml.merges", VT.ARRAY, merges, VT.STRING);
const bos = tokenId("bos", opt.bos ?? config.bos_token);
const eos = tokenId("eos", opt.eos ?? config.eos_token);
const pad = tokenId("pad", opt.pad ?? config.pad_token);
if (bos !== undefined) kv("tokenizer.ggml.bos_token_id", VT.U32, bos);
if (eos !== undefined) kv("tokenizer.ggml.eos_token_id", VT.U32, eos);
if (pad !== undefined) kv("tokenizer.ggml.padding_token_id", VT.U32, pad);
const addBos = opt["add-bos"] !== undefined ? opt["add-bos"] === "true" : config.add_bos_token;
if (addBos !== undefined) kv("tokenizer.ggml.add_bos_token", VT.BOOL, addBos);
if (typeof config.chat_template === "string")
    kv("tokenizer.chat_template", VT.STRING, config.chat_template);

chunks.push(Buffer.from("GGUF", "latin1"));
u32(3);
u64(0); // tensors
u64(kvs.length);
const value = (type, v) => {
    switch (type) {
    case VT.U32: u32(v); break;
    case VT.I32: { const b = Buffer.alloc(4); b.writeInt32LE(v); chunks.push(b); break; }
    case VT.F32: { const b = Buffer.alloc(4); b.writeFloatLE(v); chunks.push(b); break; }
    case VT.BOOL: chunks.push(Buffer.from([v ? 1 : 0])); break;
    case VT.STRING: str(v); break;
    default: throw new Error(`type ${type}`);
    }
};
for (const {key, type, value: v, arrType} of kvs) {
    str(key);
    u32(type);
    if (type === VT.ARRAY) {
        u32(arrType);
        u64(v.length);
        if (arrType === VT.I32) {
            const b = Buffer.alloc(4 * v.length);
            v.forEach((x, i) => b.writeInt32LE(x, 4 * i));
            chunks.push(b);
        } else {
            for (const x of v) value(arrType, x);
        }
    } else {
        value(type, v);
    }
}
writeFileSync(opt.out, Buffer.concat(chunks));
process.stderr.write(`${opt.out}: ${nTokens} tokens, ${merges.length} merges, bos ${bos}, eos ${eos}, ` +
                     `pad ${pad}, add_bos ${addBos}\n`);
