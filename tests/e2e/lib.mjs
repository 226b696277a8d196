// lib.mjs — helpers for end-to-end tests: start the real modelhub binary on a loopback port,
// talk HTTP to it, read SSE streams, wait for conditions with generous slack, clean up.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export const BIN = process.env.MODELHUB_BIN;
export const MODELS =
  process.env.MODELHUB_MODELS || path.join(process.env.MODELHUB_SRC || ".", "..", "shared", "models");
export const STORIES = path.join(MODELS, "stories260K.gguf");
export const SRC = process.env.MODELHUB_SRC || ".";

if (!BIN || !existsSync(BIN)) throw new Error("MODELHUB_BIN must name the modelhub binary");

const children = new Set();
process.on("exit", () => {
  for (const c of children) {
    try {
      process.kill(c.pid, "SIGKILL");
    } catch {}
  }
});

export function tempDir(prefix = "mh-e2e-") {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Run modelhub synchronously; returns stdout (throws on a non-zero exit). */
export function modelhub(args, opts = {}) {
  return execFileSync(BIN, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...opts });
}

/** Start `modelhub serve ARGS --port 0` and wait for its "listening on HOST:PORT" line. */
export async function startServe(args, { env = {}, timeoutMs = 20000 } = {}) {
  const child = spawn(BIN, ["serve", "--port", "0", ...args], {
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const port = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("serve did not start:\n" + stderr)), timeoutMs);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on [^:]+:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}:\n${stderr}`));
    });
  });
  const exited = new Promise((resolve) => child.on("exit", (code, sig) => resolve({ code, sig })));
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    child,
    stderr: () => stderr,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const r = await Promise.race([exited, sleep(10000).then(() => null)]);
      if (!r) child.kill("SIGKILL");
      children.delete(child);
      return r;
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value or `timeoutMs` passes; returns the value. */
export async function waitFor(fn, { timeoutMs = 20000, intervalMs = 50, what = "condition" } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

export async function getJson(url, opts = {}) {
  const r = await fetch(url, opts);
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, headers: r.headers, body };
}

export function postJson(url, obj, headers = {}) {
  return getJson(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof obj === "string" ? obj : JSON.stringify(obj),
  });
}

/** POST and read an SSE stream; returns {status, events: [parsed JSON or "[DONE]"], raw}. */
export async function postStream(url, obj, { headers = {}, signal, onEvent } = {}) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(obj),
    signal,
  });
  if (!r.headers.get("content-type")?.includes("text/event-stream")) {
    return { status: r.status, events: [], raw: await r.text(), headers: r.headers };
  }
  const events = [];
  let raw = "";
  let buf = "";
  const decoder = new TextDecoder();
  for await (const chunk of r.body) {
    const text = decoder.decode(chunk, { stream: true });
    raw += text;
    buf += text;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6))
        .join("\n");
      if (!data) continue;
      const ev = data === "[DONE]" ? "[DONE]" : JSON.parse(data);
      events.push(ev);
      if (onEvent) await onEvent(ev, events);
    }
  }
  return { status: r.status, events, raw, headers: r.headers };
}

/** Write a synthetic model with `modelhub synth` (cached per argument list in the build dir). */
export function synth(name, args) {
  const dir = process.env.MODELHUB_BUILD || tmpdir();
  const file = path.join(dir, `test-${name}.gguf`);
  if (!existsSync(file)) modelhub(["synth", "-o", file, ...args]);
  return file;
}

/** A synthetic model slow enough (tens of ms per token) for tests that need a busy slot. */
export function slowModel() {
  return synth("slow", ["--dim", "512", "--layers", "8", "--heads", "8", "--ff", "1408",
                        "--vocab-from", STORIES, "--seed", "3"]);
}
