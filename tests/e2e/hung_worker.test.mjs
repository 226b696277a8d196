// hung_worker.test.mjs — a worker that stops answering (SIGSTOP, or a cmd: server that accepts and
// never replies) is noticed by the hub's health probe, marked failed/unresponsive, killed, and
// restarted on the next request; a client waiting on it gets 503 + Retry-After, not a hang. A
// worker busy generating keeps answering its probe and is left alone.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { STORIES, startHub, postJson, waitFor, alive, slowModel, tempDir, sleep } from "./lib.mjs";

const probe = "health_check_interval: 0.5\nhealth_check_timeout: 1\n";
// the idle interval far away: with a client waiting, probes come every timeout/4 regardless
const waitingProbe = "health_check_interval: 600\nhealth_check_timeout: 1\n";
const prompt = (model, max_tokens = 8) => ({ model, prompt: "Once upon a time", max_tokens, temperature: 0 });

/** Wait for failed/unresponsive; returns [entry, seconds it took]. */
async function waitUnresponsive(hub, name, t0) {
  const m = await waitFor(async () => {
    const e = await hub.model(name);
    return e.process_state === "failed" && e.failure_reason === "unresponsive" ? e : null;
  }, { timeoutMs: 20000, intervalMs: 50, what: "failed/unresponsive" });
  return [m, (Date.now() - t0) / 1000];
}

describe("hung workers", () => {
  test("SIGSTOP of an idle worker: failed/unresponsive, killed, restarted by the next request", async () => {
    const hub = await startHub(`${probe}models:\n  - name: a\n    model_path: ${STORIES}\n    default: true\n`);
    try {
      await waitFor(async () => (await hub.model("a")).process_state === "running", { what: "running" });
      const pid = (await hub.model("a")).pid;
      const t0 = Date.now();
      process.kill(pid, "SIGSTOP");
      const [m, took] = await waitUnresponsive(hub, "a", t0);
      console.log(`# idle: SIGSTOP -> failed/unresponsive in ${took.toFixed(2)} s`);
      assert.ok(took < 1 + 0.5 + 3, `noticed in ${took}s`);
      assert.match(m.error, /unresponsive/);
      assert.equal(m.exit_code, -9, "SIGKILL");
      await waitFor(() => !alive(pid), { what: "hung process killed" });
      const r = await postJson(`${hub.base}/v1/completions`, prompt("a"));
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const after = await hub.model("a");
      assert.equal(after.process_state, "running");
      assert.notEqual(after.pid, pid);
      assert.equal(after.failure_reason, null);
    } finally {
      await hub.stop();
    }
  });

  test("SIGSTOP mid-request: the waiting client gets 503 with Retry-After within the probe timeout", async () => {
    const hub = await startHub(`${waitingProbe}models:\n  - name: slow\n    model_path: ${slowModel()}\n    default: true\n`);
    try {
      await waitFor(async () => (await hub.model("slow")).process_state === "running", { what: "running" });
      const pid = (await hub.model("slow")).pid;
      const pending = postJson(`${hub.base}/v1/completions`, prompt("slow", 4000));
      await waitFor(async () => (await hub.model("slow")).in_flight === 1, { what: "in flight" });
      const t0 = Date.now();
      process.kill(pid, "SIGSTOP");
      const r = await pending;
      const took = (Date.now() - t0) / 1000;
      console.log(`# mid-request: SIGSTOP -> client's 503 in ${took.toFixed(2)} s`);
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.body.error.code, "worker_unavailable");
      assert.ok(Number(r.headers.get("retry-after")) >= 1);
      assert.ok(took < 1.25 + 3, `answered after ${took}s`);
      const [m] = await waitUnresponsive(hub, "slow", t0);
      assert.equal(m.in_flight, 0);
      assert.equal((await postJson(`${hub.base}/v1/completions`, prompt("slow", 2))).status, 200);
    } finally {
      await hub.stop();
    }
  });

  test("a request to a worker that hung while idle gets 503 within the probe timeout, not after the interval", async () => {
    const hub = await startHub(`${waitingProbe}models:\n  - name: a\n    model_path: ${STORIES}\n    default: true\n`);
    try {
      await waitFor(async () => (await hub.model("a")).process_state === "running", { what: "running" });
      const pid = (await hub.model("a")).pid;
      process.kill(pid, "SIGSTOP");
      await sleep(300); // hung well before the request comes
      const t0 = Date.now();
      const r = await postJson(`${hub.base}/v1/completions`, prompt("a"));
      const took = (Date.now() - t0) / 1000;
      console.log(`# idle hang, then a request: client's 503 in ${took.toFixed(2)} s (interval 600 s, timeout 1 s)`);
      assert.equal(r.status, 503, JSON.stringify(r.body));
      // the first request loads the model: the probe kills the hung worker during that load
      assert.equal(r.body.error.code, "model_unavailable");
      assert.match(r.body.error.message, /stopped answering its health probe/);
      assert.ok(Number(r.headers.get("retry-after")) >= 1);
      assert.ok(took < 1 + 3, `answered after ${took}s`);
      const [m] = await waitUnresponsive(hub, "a", t0);
      assert.equal(m.exit_code, -9, "SIGKILL");
      await waitFor(() => !alive(pid), { what: "hung process killed" });
      assert.equal((await postJson(`${hub.base}/v1/completions`, prompt("a"))).status, 200);
    } finally {
      await hub.stop();
    }
  });

  test("a cmd: server that accepts and never replies is killed as unresponsive", async () => {
    const t = tempDir("mh-hang-");
    const script = path.join(t.dir, "hang.mjs");
    // answers like a tiny OpenAI server until a prompt says "hang"; then it never replies again
    writeFileSync(script, `import http from "node:http";
let hung = false;
http.createServer((req, res) => {
  let body = "";
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    if (body.includes("hang")) hung = true;
    if (hung) return;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ object: "text_completion", choices: [{ index: 0, text: "ok", finish_reason: "stop" }] }));
  });
}).listen(Number(process.argv[2]), "127.0.0.1");
`);
    const hub = await startHub(`${waitingProbe}models:\n  - name: ext\n    cmd: "${process.execPath} ${script} \${PORT}"\n`, { dir: t.dir });
    try {
      const ok = await postJson(`${hub.base}/v1/completions`, { model: "ext", prompt: "hi" });
      assert.equal(ok.status, 200, JSON.stringify(ok.body) + hub.stderr());
      const pid = (await hub.model("ext")).pid;
      const t0 = Date.now();
      const r = await postJson(`${hub.base}/v1/completions`, { model: "ext", prompt: "hang" });
      const took = (Date.now() - t0) / 1000;
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.ok(r.headers.get("retry-after"));
      console.log(`# cmd: server that never replies -> client's 503 in ${took.toFixed(2)} s`);
      assert.ok(took < 1.25 + 3, `answered after ${took}s`);
      await waitUnresponsive(hub, "ext", t0);
      await waitFor(() => !alive(pid), { what: "hung server killed" });
      // restarted (a fresh, answering process) by the next request
      assert.equal((await postJson(`${hub.base}/v1/completions`, { model: "ext", prompt: "hi" })).status, 200);
    } finally {
      await hub.stop();
      t.cleanup();
    }
  });

  test("a worker busy generating answers its probe and is not killed", async () => {
    const hub = await startHub(`health_check_interval: 0.3\nhealth_check_timeout: 2\nmodels:\n  - name: slow\n    model_path: ${slowModel()}\n    default: true\n`);
    try {
      await waitFor(async () => (await hub.model("slow")).process_state === "running", { what: "running" });
      const pid = (await hub.model("slow")).pid;
      const t0 = Date.now();
      const r = await postJson(`${hub.base}/v1/completions`, prompt("slow", 150));
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const busy = (Date.now() - t0) / 1000;
      console.log(`# busy worker: ${busy.toFixed(1)} s of generation under 0.3 s probes`);
      const m = await hub.model("slow");
      assert.equal(m.pid, pid);
      assert.equal(m.restarts, 0);
      assert.equal(m.failure_reason, null);
      assert.equal(m.process_state, "running");
    } finally {
      await hub.stop();
    }
  });
});
