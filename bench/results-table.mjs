#!/usr/bin/env node
// results-table.mjs — run bench/vs-llamacpp several times per model and print the medians as the
// markdown table of bench/RESULTS.md. The machine is shared and noisy, so every figure is a
// median over runs (each run itself reports medians over its reps), with the range beside it.
//
// usage: node bench/results-table.mjs [-r RUNS] [-t THREADS] [--modelhub BIN] MODEL...
//
// Per model: parameters, MB read per decoded token, prefill and decode tok/s of both engines,
// the ratio ours / llama.cpp (median of the per-run ratios: both engines run back to back, so a
// ratio is less exposed to load changes than either figure), decode weight traffic as a share
// of the measured read-only bandwidth and of the memcpy bandwidth (read + write), and in how
// many runs the 32 greedy ids of both engines were identical.
import {spawnSync} from "node:child_process";
import {dirname, basename, join} from "node:path";
import {fileURLToPath} from "node:url";
import {parseArgs} from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const {values: opts, positionals: models} = parseArgs({
    allowPositionals: true,
    options: {
        runs: {type: "string", short: "r", default: "5"},
        threads: {type: "string", short: "t", default: "2"},
        modelhub: {type: "string"},
    },
});
if (models.length === 0) {
    process.stderr.write("usage: results-table.mjs [-r RUNS] [-t THREADS] [--modelhub BIN] MODEL...\n");
    process.exit(2);
}

const median = (v) => {
    const s = [...v].sort((a, b) => a - b), m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (v, d) => `${median(v).toFixed(d)} (${Math.min(...v).toFixed(d)}–${Math.max(...v).toFixed(d)})`;

const rows = [];
for (const model of models) {
    const runs = [];
    for (let i = 0; i < Number(opts.runs); i++) {
        const args = [join(here, "vs-llamacpp"), "-m", model, "-t", opts.threads, "--json"];
        if (opts.modelhub) args.push("--modelhub", opts.modelhub);
        const r = spawnSync(process.execPath, args, {encoding: "utf8", maxBuffer: 64 << 20});
        if (r.status !== 0) {
            process.stderr.write(`results-table: vs-llamacpp failed on ${model}: ${r.stderr}\n`);
            process.exit(1);
        }
        runs.push(JSON.parse(r.stdout));
        process.stderr.write(`${basename(model)} run ${i + 1}: prefill ${runs.at(-1).prefill_ratio.toFixed(2)}x, ` +
                             `decode ${runs.at(-1).decode_ratio.toFixed(2)}x\n`);
    }
    const ours = runs.map((r) => r.modelhub), theirs = runs.map((r) => r.llamacpp);
    rows.push([
        basename(model, ".gguf"),
        (ours[0].n_params / 1e6).toFixed(0) + "M",
        (ours[0].bytes_per_token / 1e6).toFixed(1),
        fmt(ours.map((o) => o.prefill_tok_s), 0),
        fmt(theirs.map((t) => t.prefill_tok_s), 0),
        median(runs.map((r) => r.prefill_ratio)).toFixed(2),
        fmt(ours.map((o) => o.decode_tok_s), 1),
        fmt(theirs.map((t) => t.decode_tok_s), 1),
        median(runs.map((r) => r.decode_ratio)).toFixed(2),
        `${(100 * median(ours.map((o) => o.decode_gbs / o.read_gbs))).toFixed(0)}% of ` +
            `${median(ours.map((o) => o.read_gbs)).toFixed(1)} GB/s`,
        `${(100 * median(ours.map((o) => o.bandwidth_ratio))).toFixed(0)}% of ` +
            `${median(ours.map((o) => o.memcpy_gbs)).toFixed(1)} GB/s`,
        `${runs.filter((r) => r.greedy_ids_match).length}/${runs.length}`,
    ]);
}
const head = ["model", "params", "MB/token", "prefill ours", "prefill llama.cpp", "ratio",
              "decode ours", "decode llama.cpp", "ratio", "decode vs read bw", "decode vs memcpy bw",
              "ids equal"];
console.log(`| ${head.join(" | ")} |`);
console.log(`|${head.map((h, i) => (i < 2 ? "---" : "---:")).join("|")}|`);
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
