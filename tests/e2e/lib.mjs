// lib.mjs — helpers for end-to-end tests: start the real modelhub binary on a loopback port,
// talk HTTP to it, read SSE streams, wait for conditions with generous slack, clean up.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, existsSync, readFileSync } from "node:fs";
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
      const r = await Promise.race([exited, grace(10000).then(() => null)]);
      if (!r) child.kill("SIGKILL");
      children.delete(child);
      assertClean("modelhub serve", stderr);
      return r;
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Like sleep, but its timer does not keep the test process alive (for races with an exit). */
const grace = (ms) => new Promise((r) => setTimeout(r, ms).unref());

/** The first sanitizer report (ASan, UBSan, LSan) in a process's output, or null. Tests run
 * under the ASan build fail on one instead of letting it scroll by unseen. */
export function sanitizerReport(text) {
  const m = text.match(/(==\d+==ERROR: (Address|Leak)Sanitizer[\s\S]{0,4000}|\S+:\d+:\d+: runtime error:[^\n]*)/);
  return m ? m[0] : null;
}

function assertClean(what, text) {
  const report = sanitizerReport(text);
  if (report) throw new Error(`${what} reported a sanitizer error:\n${report}`);
}

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

/** A free TCP port on 127.0.0.1 (bind to 0, read it, close). */
export async function freePort() {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A block of `n` consecutive free ports (for model_starting_port). */
export async function freePortRange(n = 20) {
  const net = await import("node:net");
  for (let attempt = 0; attempt < 50; attempt++) {
    const start = 20000 + Math.floor(Math.random() * 30000);
    let ok = true;
    for (let p = start; p < start + n && ok; p++) {
      ok = await new Promise((resolve) => {
        const srv = net.createServer();
        srv.once("error", () => resolve(false));
        srv.listen(p, "127.0.0.1", () => srv.close(() => resolve(true)));
      });
    }
    if (ok) return start;
  }
  throw new Error("no free port range");
}

/**
 * Start `modelhub hub start --foreground` on a config written from `body` (YAML text without
 * the top-level port/log/state keys, which this adds). Returns helpers to talk to it and stop it.
 */
export async function startHub(body, { env = {}, timeoutMs = 20000, dir } = {}) {
  const { writeFileSync } = await import("node:fs");
  const t = dir ? { dir, cleanup: () => {} } : tempDir("mh-hub-");
  const port = await freePort();
  const first = await freePortRange(40);
  const config = path.join(t.dir, "hub.yaml");
  const yaml = `port: ${port}\nmodel_starting_port: ${first}\nlog_path: ${t.dir}/logs\n` +
    `state_dir: ${t.dir}/state\nstop_grace: 5\n${body}`;
  writeFileSync(config, yaml);
  const child = spawn(BIN, ["hub", "start", "--foreground", "--config", config], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("hub did not start:\n" + stderr)), timeoutMs);
    child.stdout.on("data", (d) => {
      out += d;
      if (/listening on /.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`hub exited with ${code}:\n${stderr}`));
    });
  });
  const exited = new Promise((resolve) => child.on("exit", (code, sig) => resolve({ code, sig })));
  const base = `http://127.0.0.1:${port}`;
  const hub = {
    base, port, dir: t.dir, config, child, exited,
    stderr: () => stderr,
    async status() {
      return (await getJson(`${base}/hub/status`)).body;
    },
    async model(name) {
      return (await hub.status()).models.find((m) => m.name === name);
    },
    /** pids of every worker process the hub reports. */
    async workerPids() {
      return (await hub.status()).models.map((m) => m.pid).filter((p) => p);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const r = await Promise.race([exited, grace(20000).then(() => null)]);
      if (!r) child.kill("SIGKILL");
      children.delete(child);
      // the hub's own output, and its workers' (their logs)
      let logs = stderr;
      const { readdirSync, readFileSync } = await import("node:fs");
      try {
        for (const f of readdirSync(path.join(t.dir, "logs")))
          logs += readFileSync(path.join(t.dir, "logs", f), "utf8");
      } catch {}
      t.cleanup();
      assertClean("the hub or one of its workers", logs);
      return r;
    },
  };
  return hub;
}

/** Whether a process is still running. A zombie (exited, not yet reaped: orphans wait for the
 * machine's init to reap them, which in a container may be slow or never) counts as gone. */
export function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Collect /hub/events into an array until stop() is called. */
export function collectEvents(base, headers = {}) {
  const ctl = new AbortController();
  const events = [];
  const done = (async () => {
    try {
      const r = await fetch(`${base}/hub/events`, { headers, signal: ctl.signal });
      let buf = "";
      const dec = new TextDecoder();
      for await (const chunk of r.body) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) events.push(JSON.parse(data));
        }
      }
    } catch {}
  })();
  return { events, stop: async () => { ctl.abort(); await done; } };
}
