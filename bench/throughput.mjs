#!/usr/bin/env node
// throughput.mjs — aggregate decode throughput and per-token latency with concurrent clients.
//
// usage: MODELHUB_BIN=build/modelhub node bench/throughput.mjs -m MODEL.gguf
//            [--clients 1,2,4,8] [--parallel 8] [--tokens 64] [--requests 3] [--threads 2]
//            [--prompt-tokens 32] [--batch-size N] [--json]
//
// Starts `modelhub serve --parallel P` on a loopback port, then for each client count C runs C
// clients at once, each sending REQUESTS streamed /v1/completions one after another (distinct
// prompts of about PROMPT_TOKENS tokens, greedy, max_tokens TOKENS). Reported per C:
//   aggregate tok/s   completion tokens of all requests / wall time of the round
//   per-client tok/s  the mean over requests of tokens / (last chunk - first chunk)
//   tpot p50 / p99    time between consecutive streamed tokens, over every gap of every request
//   ttft p50          time from sending a request to its first token
// and the ratios of the aggregate to the one-client figure and of the p50 gap to the lone
// client's. Token counts come from the final usage chunk.
import { spawn } from "node:child_process";

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const BIN = process.env.MODELHUB_BIN || "build/modelhub";
const MODEL = opt("-m", null);
const CLIENTS = opt("--clients", "1,2,4,8").split(",").map(Number);
const PARALLEL = Number(opt("--parallel", "8"));
const TOKENS = Number(opt("--tokens", "64"));
const REQUESTS = Number(opt("--requests", "3"));
const THREADS = opt("--threads", "2");
const PROMPT_TOKENS = Number(opt("--prompt-tokens", "32"));
const BATCH = opt("--batch-size", null);
const JSON_OUT = args.includes("--json");
if (!MODEL) { console.error("usage: throughput.mjs -m MODEL.gguf [--clients 1,2,4,8]"); process.exit(2); }

const words = ["the", "little", "dog", "ran", "to", "park", "and", "saw", "a", "big", "red", "ball",
  "under", "tree", "while", "girl", "sang", "song", "about", "sun", "sky", "river", "boat", "cat"];
let promptCounter = 0;
function prompt() { // distinct prompts: no request reuses another's cached prefix
  const n = ++promptCounter;
  const out = [`Story ${n}:`];
  for (let i = 0; i < PROMPT_TOKENS - 3; i++) out.push(words[(n * 7 + i * 13 + ((n * i) % 5)) % words.length]);
  return out.join(" ");
}

async function startServe() {
  const extra = BATCH ? ["--batch-size", BATCH] : [];
  const child = spawn(BIN, ["serve", "-m", MODEL, "--host", "127.0.0.1", "--port", "0", "--threads", THREADS,
    "--parallel", String(PARALLEL), "--ctx", "2048", ...extra], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => { out += d; const m = out.match(/listening on [^:]+:(\d+)/); if (m) resolve(Number(m[1])); });
    child.on("exit", (c) => reject(new Error(`serve exited ${c}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  for (;;) {
    const h = await (await fetch(`${base}/health`)).json();
    if (h.model_status === "loaded") break;
    if (h.model_status === "error") throw new Error("the model failed to load");
    await new Promise((r) => setTimeout(r, 50));
  }
  return { base, stop: () => new Promise((r) => { child.on("exit", r); child.kill("SIGTERM"); }) };
}

async function one(base) {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: prompt(), max_tokens: TOKENS, temperature: 0, stream: true,
      stream_options: { include_usage: true } }),
  });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  const times = [];
  let usage = null, buf = "";
  const dec = new TextDecoder();
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const ev = JSON.parse(line.slice(6));
      if (ev.usage) usage = ev.usage;
      if (ev.choices?.[0]?.text) times.push(performance.now());
    }
  }
  const gaps = [];
  for (let k = 1; k < times.length; k++) gaps.push(times[k] - times[k - 1]);
  const span = times.length > 1 ? (times[times.length - 1] - times[0]) / 1000 : 0;
  return { tokens: usage ? usage.completion_tokens : times.length, ttft: times.length ? times[0] - t0 : null,
    gaps, rate: span > 0 ? (times.length - 1) / span : null };
}

const pct = (v, p) => { if (!v.length) return null; const s = [...v].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };

const s = await startServe();
const rows = [];
try {
  await one(s.base); // warm-up: page faults, first allocations
  for (const c of CLIENTS) {
    const t0 = performance.now();
    const results = (await Promise.all(Array.from({ length: c }, async () => {
      const out = [];
      for (let k = 0; k < REQUESTS; k++) out.push(await one(s.base));
      return out;
    }))).flat();
    const wall = (performance.now() - t0) / 1000;
    const tokens = results.reduce((a, r) => a + r.tokens, 0);
    const gaps = results.flatMap((r) => r.gaps);
    const rates = results.map((r) => r.rate).filter((x) => x);
    rows.push({ clients: c, requests: results.length, tokens, wall_s: wall, aggregate_tok_s: tokens / wall,
      per_client_tok_s: rates.reduce((a, b) => a + b, 0) / rates.length,
      tpot_p50_ms: pct(gaps, 50), tpot_p99_ms: pct(gaps, 99), ttft_p50_ms: pct(results.map((r) => r.ttft), 50) });
  }
} finally {
  await s.stop();
}
const base = rows.find((r) => r.clients === 1) || rows[0];
for (const r of rows) {
  r.aggregate_vs_one = r.aggregate_tok_s / base.aggregate_tok_s;
  r.tpot_vs_one = r.tpot_p50_ms / base.tpot_p50_ms;
}
if (JSON_OUT) {
  console.log(JSON.stringify({ model: MODEL, parallel: PARALLEL, threads: Number(THREADS), tokens: TOKENS, rows }));
} else {
  console.log(`${MODEL}: serve --parallel ${PARALLEL} --threads ${THREADS}, ${REQUESTS} x ${TOKENS}-token streamed completions per client`);
  console.log("clients  aggregate tok/s  x one  per-client tok/s  tpot p50 ms  p99 ms  x one  ttft p50 ms");
  for (const r of rows)
    console.log(`${String(r.clients).padStart(7)}  ${r.aggregate_tok_s.toFixed(1).padStart(15)}  ${r.aggregate_vs_one.toFixed(2).padStart(5)}  ` +
      `${r.per_client_tok_s.toFixed(1).padStart(16)}  ${r.tpot_p50_ms.toFixed(2).padStart(11)}  ${r.tpot_p99_ms.toFixed(2).padStart(6)}  ` +
      `${r.tpot_vs_one.toFixed(2).padStart(5)}  ${r.ttft_p50_ms.toFixed(1).padStart(11)}`);
}
