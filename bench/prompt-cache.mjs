#!/usr/bin/env node
// prompt-cache.mjs — time to first token of each turn of a chat, with and without the prompt cache.
//
// usage: MODELHUB_BIN=build/modelhub node bench/prompt-cache.mjs -m MODEL.gguf [--turns 5]
//                                                               [--answer-tokens 64] [--threads N]
//
// A chat of TURNS user messages; each turn sends the whole history (earlier questions and the
// model's own answers) as OpenAI clients do, streamed, and the time to the first content chunk is
// measured. With the cache a turn evaluates only what is new since the previous turn; without it
// (serve --no-prompt-cache) the whole history again.
import { spawn } from "node:child_process";

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const BIN = process.env.MODELHUB_BIN || "build/modelhub";
const MODEL = opt("-m", null);
const TURNS = Number(opt("--turns", 5));
const ANSWER = Number(opt("--answer-tokens", 64));
const THREADS = opt("--threads", "2");
if (!MODEL) { console.error("usage: prompt-cache.mjs -m MODEL.gguf [--turns N]"); process.exit(2); }

const questions = [
  "Tell me a story about a little girl and her dog.",
  "What happened when they went to the park?",
  "Did they meet anyone there? Describe the new friend.",
  "How did the day end for the three of them?",
  "What did the girl dream about that night?",
  "And the next morning?",
];

async function serve(extra) {
  const child = spawn(BIN, ["serve", "-m", MODEL, "--port", "0", "--threads", THREADS, "--ctx", "4096", ...extra],
    { stdio: ["ignore", "pipe", "ignore"] });
  const port = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => { out += d; const m = out.match(/listening on [^:]+:(\d+)/); if (m) resolve(Number(m[1])); });
    child.on("exit", (c) => reject(new Error(`serve exited ${c}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  for (;;) { // wait for the load
    const h = await (await fetch(`${base}/health`)).json();
    if (h.model_status === "loaded") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { base, stop: () => new Promise((r) => { child.on("exit", r); child.kill("SIGTERM"); }) };
}

async function chat(extra) {
  const s = await serve(extra);
  const messages = [];
  const rows = [];
  try {
    for (let t = 0; t < TURNS; t++) {
      messages.push({ role: "user", content: questions[t % questions.length] });
      const t0 = performance.now();
      const r = await fetch(`${s.base}/v1/chat/completions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages, max_tokens: ANSWER, temperature: 0, stream: true, stream_options: { include_usage: true } }),
      });
      let ttft = null, text = "", usage = null, buf = "";
      const dec = new TextDecoder();
      for await (const chunk of r.body) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const line = buf.slice(0, i); buf = buf.slice(i + 2);
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          const ev = JSON.parse(line.slice(6));
          if (ev.usage) usage = ev.usage;
          const c = ev.choices?.[0]?.delta?.content;
          if (c) { if (ttft === null) ttft = performance.now() - t0; text += c; }
        }
      }
      messages.push({ role: "assistant", content: text });
      rows.push({ turn: t + 1, ttft, prompt: usage.prompt_tokens, cached: usage.prompt_tokens_details?.cached_tokens ?? 0 });
    }
  } finally {
    await s.stop();
  }
  return rows;
}

const withCache = await chat([]);
const without = await chat(["--no-prompt-cache"]);
console.log(`model ${MODEL}, ${TURNS} turns, answers of up to ${ANSWER} tokens, ${THREADS} threads`);
console.log("turn  prompt tokens  cached  TTFT with cache  TTFT without  ratio");
for (let i = 0; i < withCache.length; i++) {
  const a = withCache[i], b = without[i];
  console.log(`${String(a.turn).padStart(4)}  ${String(a.prompt).padStart(13)}  ${String(a.cached).padStart(6)}  ` +
    `${a.ttft.toFixed(1).padStart(12)} ms  ${b.ttft.toFixed(1).padStart(9)} ms  ${(b.ttft / a.ttft).toFixed(1).padStart(5)}x`);
}
