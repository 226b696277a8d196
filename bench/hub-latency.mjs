#!/usr/bin/env node
// hub-latency.mjs — what the hub adds to a request, and what a model swap costs.
//
// usage: MODELHUB_BIN=build/modelhub node bench/hub-latency.mjs [--models DIR] [--requests N]
//                                                                 [--swap-model FILE] [--swaps N]
//
// 1. Latency: a hub with one stories260K model; N small non-streamed completions (1 token) sent
//    one after another through the hub and N straight to its worker's port. Prints p50/p90/p99
//    of both and of the difference (the hub's share: parsing, routing, proxying on loopback).
// 2. Swap: two models made from the same file (default: a ~110M F16 synthetic model written with
//    `modelhub synth`) in a group with max_loaded: 1; requests alternate between them, so each
//    one unloads the other model and loads its own. Prints the time of those requests next to the
//    time of a request to a model that is already loaded.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import net from "node:net";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const BIN = process.env.MODELHUB_BIN || "build/modelhub";
const MODELS = opt("--models", process.env.MODELHUB_MODELS || "../shared/models");
const N = Number(opt("--requests", 300));
const SWAPS = Number(opt("--swaps", 6));
const dir = mkdtempSync(path.join(tmpdir(), "mh-bench-"));
let swapModel = opt("--swap-model", null);

const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

async function startHub(yaml) {
  const port = await freePort();
  const config = path.join(dir, `hub-${port}.yaml`);
  writeFileSync(config, `port: ${port}\nmodel_starting_port: ${port + 1}\nlog_path: ${dir}/logs\n` +
    `state_dir: ${dir}/state-${port}\n${yaml}`);
  const child = spawn(BIN, ["hub", "start", "--foreground", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => { out += d; if (out.includes("listening on")) resolve(); });
    child.on("exit", (c) => reject(new Error(`hub exited ${c}`)));
  });
  return { base: `http://127.0.0.1:${port}`, stop: async () => {
    await fetch(`http://127.0.0.1:${port}/hub/shutdown`, { method: "POST" }).catch(() => {});
    await new Promise((r) => child.on("exit", r));
  } };
}

async function post(base, body) {
  const t0 = process.hrtime.bigint();
  const r = await fetch(`${base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  await r.text();
  if (r.status !== 200) throw new Error(`status ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };
const fmt = (xs) => `p50 ${pct(xs, 50).toFixed(2)} ms  p90 ${pct(xs, 90).toFixed(2)} ms  p99 ${pct(xs, 99).toFixed(2)} ms`;

try {
  // 1. latency
  const stories = path.join(MODELS, "stories260K.gguf");
  const hub = await startHub(`models:\n  - name: tiny\n    model_path: ${stories}\n    default: true\n    jit_enabled: false\n`);
  const body = { model: "tiny", prompt: "Once", max_tokens: 1, temperature: 0 };
  for (let i = 0; i < 20; i++) await post(hub.base, body); // warm up
  const status = await (await fetch(`${hub.base}/hub/status`)).json();
  const worker = `http://127.0.0.1:${status.models[0].port}`;
  const viaHub = [], direct = [];
  for (let i = 0; i < N; i++) { // interleave so that noise hits both alike
    viaHub.push(await post(hub.base, body));
    direct.push(await post(worker, body));
  }
  const added = viaHub.map((v, i) => v - direct[i]);
  console.log(`latency, ${N} sequential 1-token completions on loopback`);
  console.log(`  via hub:   ${fmt(viaHub)}`);
  console.log(`  direct:    ${fmt(direct)}`);
  console.log(`  hub adds:  p50 ${(pct(viaHub, 50) - pct(direct, 50)).toFixed(2)} ms  p99 ${(pct(viaHub, 99) - pct(direct, 99)).toFixed(2)} ms (difference of percentiles)`);
  console.log(`             per-pair difference: ${fmt(added)}`);
  await hub.stop();

  // 2. swap
  if (!swapModel) {
    swapModel = path.join(dir, "swap-110m.gguf");
    execFileSync(BIN, ["synth", "-o", swapModel, "--dim", "768", "--layers", "12", "--heads", "12", "--ff", "2048",
      "--vocab-from", path.join(MODELS, "llama-2-tiny-random.gguf"), "--type", "f16", "--tied"], { stdio: "ignore" });
  }
  const hub2 = await startHub(`models:\n  - name: a\n    model_path: ${swapModel}\n    group: g\n    default: true\n` +
    `  - name: b\n    model_path: ${swapModel}\n    group: g\n    default: true\ngroups:\n  - name: g\n    max_loaded: 1\n`);
  const req = (m) => ({ model: m, prompt: "Once upon a time", max_tokens: 1, temperature: 0 });
  await post(hub2.base, req("a"));
  const warm = [], swap = [];
  for (let i = 0; i < SWAPS; i++) {
    warm.push(await post(hub2.base, req(i % 2 ? "b" : "a")));
    swap.push(await post(hub2.base, req(i % 2 ? "a" : "b")));
  }
  console.log(`swap in a max_loaded: 1 group (${path.basename(swapModel)}, ${SWAPS} switches, workers already running)`);
  console.log(`  request to the loaded model:          ${fmt(warm)}`);
  console.log(`  request that unloads one, loads other: ${fmt(swap)}`);
  await hub2.stop();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
