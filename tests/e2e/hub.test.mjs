// hub.test.mjs — `modelhub hub` end to end: real daemon, real worker processes, stories260K.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, readFileSync } from "node:fs";
import path from "node:path";
import { spawn } from "node:child_process";
import {
  BIN, STORIES, startHub, getJson, postJson, postStream, waitFor, slowModel, sleep, alive,
  collectEvents, tempDir, freePort,
} from "./lib.mjs";

const greedy = (model, extra = {}) => ({ model, prompt: "Once upon a time", max_tokens: 8, temperature: 0, ...extra });
const reference8 = ", there was a little girl";

describe("routing, JIT and sharing one load", () => {
  let hub;
  after(async () => hub && hub.stop());

  test("JIT: stopped until the first request, which starts and loads it", async () => {
    hub = await startHub(`models:
  - name: tiny
    model_path: ${STORIES}
    aliases: [tiny-alias]
  - name: other
    model_path: ${STORIES}
`);
    const before = await hub.model("tiny");
    assert.equal(before.process_state, "stopped");
    assert.equal(before.memory_state, "unloaded");
    assert.equal(before.backend, "worker");
    const r = await postJson(`${hub.base}/v1/completions`, greedy("tiny"));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.choices[0].text, reference8);
    const afterReq = await hub.model("tiny");
    assert.equal(afterReq.process_state, "running");
    assert.equal(afterReq.memory_state, "loaded");
    assert.ok(afterReq.pid > 0 && alive(afterReq.pid));
    assert.equal(afterReq.requests_total, 1);
    assert.equal(afterReq.tokens_generated, 8);
    assert.equal((await hub.model("other")).process_state, "stopped");
  });

  test("an alias routes to its model; streams pass through chunk by chunk", async () => {
    const r = await postStream(`${hub.base}/v1/completions`, greedy("tiny-alias", { stream: true, max_tokens: 20 }));
    assert.equal(r.status, 200);
    assert.equal(r.events.at(-1), "[DONE]");
    const text = r.events.slice(0, -1).map((e) => e.choices[0].text).join("");
    assert.ok(text.startsWith(reference8));
    assert.ok(r.events.length > 15, "one SSE event per token, not one blob");
    const chat = await postJson(`${hub.base}/v1/chat/completions`, {
      model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 5,
    });
    assert.equal(chat.status, 200);
    assert.equal(chat.body.object, "chat.completion");
    const emb = await postJson(`${hub.base}/v1/embeddings`, { model: "tiny", input: "hello" });
    assert.equal(emb.status, 200);
    assert.equal(emb.body.data[0].embedding.length, 64);
  });

  test("20 concurrent first requests: one start, one load, 20 successes", async () => {
    const ev = collectEvents(hub.base);
    await waitFor(() => ev.events.length > 0, { what: "snapshot event" });
    const rs = await Promise.all(Array.from({ length: 20 }, () => postJson(`${hub.base}/v1/completions`, greedy("other"))));
    for (const r of rs) assert.equal(r.status, 200);
    for (const r of rs) assert.equal(r.body.choices[0].text, reference8);
    await ev.stop();
    const mine = ev.events.filter((e) => e.name === "other" && e.model);
    const starts = mine.filter((e) => e.type === "process" && e.model.process_state === "starting");
    const loads = mine.filter((e) => e.type === "memory" && e.model.memory_state === "loading");
    assert.equal(starts.length, 1);
    assert.equal(loads.length, 1);
    assert.equal((await hub.model("other")).requests_total, 20);
  });

  test("OpenAI errors: unknown model 404, bad JSON 400, missing model 400", async () => {
    const unknown = await postJson(`${hub.base}/v1/chat/completions`, { model: "gpt-17", messages: [] });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, "model_not_found");
    assert.doesNotMatch(unknown.body.error.message, /tiny|other/, "lists nothing");
    const bad = await postJson(`${hub.base}/v1/chat/completions`, "{oops");
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /line 1/);
    const missing = await postJson(`${hub.base}/v1/completions`, { prompt: "x" });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.param, "model");
    // the worker's own 400 passes through unchanged
    const wbad = await postJson(`${hub.base}/v1/completions`, greedy("tiny", { temperature: 9 }));
    assert.equal(wbad.status, 400);
    assert.equal(wbad.body.error.param, "temperature");
  });

  test("/v1/models lists every model with its snapshot entry; /health, /metrics", async () => {
    const m = await getJson(`${hub.base}/v1/models`);
    assert.equal(m.status, 200);
    assert.deepEqual(m.body.data.map((d) => d.id).sort(), ["other", "tiny"]);
    const tiny = m.body.data.find((d) => d.id === "tiny");
    assert.equal(tiny.metadata.memory_state, "loaded");
    assert.deepEqual(tiny.metadata.aliases, ["tiny-alias"]);
    const s = await hub.status();
    assert.equal(s.counts.registered, 2);
    assert.equal(s.counts.loaded, 2);
    assert.equal((await getJson(`${hub.base}/health`)).body.status, "ok");
    const metrics = await (await fetch(`${hub.base}/metrics`)).text();
    assert.match(metrics, /modelhub_model_requests_total\{model="other"\} 20/);
  });

  test("logs: tail and follow", async () => {
    const tail = await getJson(`${hub.base}/hub/models/tiny/logs?tail=5`);
    assert.equal(tail.status, 200);
    assert.ok(tail.body.lines.length > 0 && tail.body.lines.length <= 5);
    assert.ok(tail.body.lines.some((l) => /POST \/v1\//.test(l)), tail.body.lines.join("\n"));
    const file = readFileSync(path.join(hub.dir, "logs", "tiny.log"), "utf8");
    assert.match(file, /loaded .*stories260K/);
    // follow: a request makes a new line arrive
    const ctl = new AbortController();
    const lines = [];
    const following = (async () => {
      try {
        const r = await fetch(`${hub.base}/hub/models/tiny/logs?tail=1&follow=1`, { signal: ctl.signal });
        const dec = new TextDecoder();
        for await (const c of r.body) lines.push(dec.decode(c));
      } catch {}
    })();
    await sleep(200);
    await postJson(`${hub.base}/v1/completions`, greedy("tiny"));
    await waitFor(() => lines.join("").includes('"line"'), { what: "a followed log line" });
    ctl.abort();
    await following;
    assert.equal((await getJson(`${hub.base}/hub/models/nope/logs`)).status, 404);
  });
});

describe("idle unload and groups", () => {
  test("idle unload fires on time, with an exact unload_at, and reloads on demand", async () => {
    const hub = await startHub(`models:
  - name: idle
    model_path: ${STORIES}
    idle_unload: 2
`);
    try {
      assert.equal((await postJson(`${hub.base}/v1/completions`, greedy("idle"))).status, 200);
      const m = await hub.model("idle");
      assert.equal(m.memory_state, "loaded");
      assert.ok(Math.abs(m.unload_at - (m.last_activity_ts + 2)) < 0.002, JSON.stringify(m));
      await waitFor(async () => (await hub.model("idle")).memory_state === "unloaded", { timeoutMs: 20000, what: "idle unload" });
      const after = await hub.model("idle");
      assert.equal(after.last_unload_reason, "idle");
      assert.equal(after.process_state, "running", "idle unload frees memory, the process stays");
      assert.ok(Date.now() / 1000 >= m.unload_at - 0.05);
      assert.equal((await postJson(`${hub.base}/v1/completions`, greedy("idle"))).status, 200);
      assert.equal((await hub.model("idle")).memory_state, "loaded");
    } finally {
      await hub.stop();
    }
  });

  test("no idle unload during a long stream", async () => {
    const hub = await startHub(`models:
  - name: slow
    model_path: ${slowModel()}
    idle_unload: 1
`);
    try {
      // stream for 2.5 s (well past the 1 s idle timeout), checking the model stays loaded
      const ctl = new AbortController();
      let n = 0, checks = 0;
      const t0 = Date.now();
      await postStream(`${hub.base}/v1/completions`, { model: "slow", prompt: "Once", max_tokens: 4000, temperature: 0, stream: true }, {
        signal: ctl.signal,
        onEvent: async () => {
          if (++n % 10 !== 0) return;
          const m = await hub.model("slow");
          assert.equal(m.memory_state, "loaded");
          assert.equal(m.in_flight, 1);
          assert.equal(m.unload_at, null);
          checks++;
          if (Date.now() - t0 > 2500) ctl.abort();
        },
      }).catch((e) => { if (e.name !== "AbortError") throw e; });
      assert.ok(Date.now() - t0 >= 2500, "aborted by us, not finished early");
      assert.ok(checks >= 3);
      await waitFor(async () => (await hub.model("slow")).memory_state === "unloaded", { timeoutMs: 15000, what: "unload after" });
      assert.equal((await hub.model("slow")).last_unload_reason, "idle");
    } finally {
      await hub.stop();
    }
  });

  test("max_loaded 1, two models alternating: every request succeeds, each switch evicts the other", async () => {
    const hub = await startHub(`models:
  - name: a
    model_path: ${STORIES}
    group: g
  - name: b
    model_path: ${STORIES}
    group: g
groups:
  - name: g
    max_loaded: 1
`);
    try {
      const ev = collectEvents(hub.base);
      await waitFor(() => ev.events.length > 0);
      for (const name of ["a", "b", "a", "b"]) {
        const r = await postJson(`${hub.base}/v1/completions`, greedy(name));
        assert.equal(r.status, 200);
        assert.equal(r.body.choices[0].text, reference8);
        const s = await hub.status();
        assert.equal(s.groups[0].loaded, 1);
        assert.equal(s.models.find((m) => m.name === name).memory_state, "loaded");
      }
      await ev.stop();
      // memory transitions in order: each load of one comes after the unload of the other
      const seq = ev.events.filter((e) => e.type === "memory").map((e) => `${e.name}:${e.model.memory_state}`);
      const loads = seq.filter((x) => x.endsWith(":loaded"));
      assert.deepEqual(loads, ["a:loaded", "b:loaded", "a:loaded", "b:loaded"]);
      for (const [i, name] of ["b", "a", "b"].entries()) {
        const other = name === "a" ? "b" : "a";
        const unloadIdx = seq.findIndex((x, k) => x === `${other}:unloaded` && k > seq.indexOf(loads[i]));
        const loadIdx = seq.indexOf(`${name}:loaded`, seq.indexOf(loads[i]) + 1);
        assert.ok(unloadIdx >= 0 && unloadIdx < loadIdx, `switch ${i}: ${seq.join(" ")}`);
      }
      const a = await hub.model("a");
      assert.equal(a.last_unload_reason, "capacity");
    } finally {
      await hub.stop();
    }
  });

  test("a busy member is not evicted; explicit load into the busy full group answers 429", async () => {
    const hub = await startHub(`models:
  - name: slow
    model_path: ${slowModel()}
    group: g
  - name: b
    model_path: ${STORIES}
    group: g
groups:
  - name: g
    max_loaded: 1
`);
    try {
      let first;
      const ctl = new AbortController();
      const long = postStream(`${hub.base}/v1/completions`, { model: "slow", prompt: "Once", max_tokens: 4000, temperature: 0, stream: true },
        { signal: ctl.signal, onEvent: (e) => { first ??= e; } }).catch((e) => e);
      await waitFor(() => first, { what: "slow streaming" });
      const dry = await postJson(`${hub.base}/hub/models/b/load?dry_run=1`, {});
      assert.equal(dry.status, 429);
      const explicit = await postJson(`${hub.base}/hub/models/b/load`, {});
      assert.equal(explicit.status, 429);
      assert.match(explicit.body.error.message, /busy/);
      // an ordinary request waits for the busy member to drain, then evicts it
      const t0 = Date.now();
      const waiting = postJson(`${hub.base}/v1/completions`, greedy("b"));
      await sleep(500);
      assert.equal((await hub.model("slow")).memory_state, "loaded", "busy: not evicted");
      assert.equal((await hub.model("b")).memory_state, "unloaded");
      ctl.abort(); /* the busy member's client leaves: it drains, then it is evicted */
      await long;
      const r = await waiting;
      assert.equal(r.status, 200);
      assert.ok(Date.now() - t0 > 400);
      assert.equal((await hub.model("slow")).last_unload_reason, "capacity");
      const dry2 = await postJson(`${hub.base}/hub/models/slow/load?dry_run=1`, {});
      assert.equal(dry2.status, 200);
      assert.deepEqual(dry2.body.would_evict, ["b"]);
    } finally {
      await hub.stop();
    }
  });
});

describe("crashes and process hygiene", () => {
  test("kill -9 of a worker mid-stream: an error chunk, failed with the signal, the next request works", async () => {
    const hub = await startHub(`models:
  - name: slow
    model_path: ${slowModel()}
`);
    try {
      let pid;
      const r = await postStream(`${hub.base}/v1/completions`, { model: "slow", prompt: "Once", max_tokens: 400, stream: true },
        { onEvent: async (e, all) => {
          if (all.length === 3) {
            pid = (await hub.model("slow")).pid;
            process.kill(pid, "SIGKILL");
          }
        } });
      assert.equal(r.status, 200);
      const errorEvent = r.events.find((e) => e !== "[DONE]" && e.error);
      assert.ok(errorEvent, "an error event before the end");
      assert.match(errorEvent.error.message, /failed/);
      assert.equal(r.events.at(-1), "[DONE]");
      const m = await waitFor(async () => { const x = await hub.model("slow"); return x.process_state === "failed" && x; });
      assert.equal(m.exit_code, -9);
      assert.equal(m.memory_state, "unloaded");
      assert.equal(m.last_unload_reason, "crash");
      const next = await postJson(`${hub.base}/v1/completions`, { model: "slow", prompt: "Once", max_tokens: 3 });
      assert.equal(next.status, 200);
      const back = await hub.model("slow");
      assert.equal(back.process_state, "running");
      assert.equal(back.restarts, 1);
      assert.notEqual(back.pid, pid);
    } finally {
      await hub.stop();
    }
  });

  test("a worker that keeps crashing is quarantined until a manual start", async () => {
    const hub = await startHub(`start_timeout: 10
models:
  - name: crashy
    cmd: "sh -c 'echo starting; exit 3'"
    port: ${await freePort()}
`);
    try {
      const statuses = [];
      for (let i = 0; i < 6; i++) {
        const r = await postJson(`${hub.base}/v1/completions`, greedy("crashy"));
        statuses.push(r.status);
        if ((await hub.model("crashy")).quarantined) break;
      }
      assert.ok(statuses.every((s) => s === 503), statuses.join(","));
      const m = await hub.model("crashy");
      assert.equal(m.quarantined, true);
      assert.match(m.error, /exited with status 3/);
      assert.equal(m.exit_code, 3);
      const r = await postJson(`${hub.base}/v1/completions`, greedy("crashy"));
      assert.equal(r.status, 503);
      assert.match(r.body.error.message, /quarantined/);
      assert.ok(r.headers.get("retry-after"));
    } finally {
      await hub.stop();
    }
  });

  test("kill -9 of the hub: no worker left within 2 s", async () => {
    const hub = await startHub(`models:
  - name: a
    model_path: ${STORIES}
    default: true
  - name: b
    model_path: ${STORIES}
    default: true
    jit_enabled: false
  - name: ext
    cmd: "${BIN} serve -m ${STORIES} --port \${PORT} --alias ext"
    default: true
`);
    try {
      await waitFor(async () => (await hub.status()).models.every((m) => m.process_state === "running"), { what: "defaults running" });
      assert.equal((await hub.model("b")).memory_state, "loaded", "jit_enabled: false loads at start");
      const pids = await hub.workerPids();
      assert.equal(pids.length, 3);
      hub.child.kill("SIGKILL");
      await hub.exited;
      const t0 = Date.now();
      await waitFor(() => pids.every((p) => !alive(p)), { timeoutMs: 2000, intervalMs: 20, what: "workers gone" });
      assert.ok(Date.now() - t0 <= 2000);
    } finally {
      await hub.stop();
    }
  });

  test("shutdown: every worker stopped, then the daemon exits", async () => {
    const hub = await startHub(`models:
  - name: a
    model_path: ${STORIES}
    default: true
  - name: ext
    cmd: "${BIN} serve -m ${STORIES} --port \${PORT}"
    default: true
`);
    await waitFor(async () => (await hub.status()).models.every((m) => m.process_state === "running"));
    const pids = await hub.workerPids();
    const r = await postJson(`${hub.base}/hub/shutdown`, {});
    assert.equal(r.status, 200);
    const ex = await hub.exited;
    assert.equal(ex.code, 0);
    for (const p of pids) assert.equal(alive(p), false, `worker ${p} left behind`);
    await hub.stop();
  });
});

describe("external commands", () => {
  test("a cmd: model starts on demand, is proxied, and stops on idle", async () => {
    const hub = await startHub(`models:
  - name: ext
    cmd: "${BIN} serve -m ${STORIES} --port \${PORT} --alias ext"
    idle_unload: 1
`);
    try {
      assert.equal((await hub.model("ext")).process_state, "stopped");
      const r = await postJson(`${hub.base}/v1/completions`, greedy("ext"));
      assert.equal(r.status, 200);
      assert.equal(r.body.choices[0].text, reference8);
      const m = await hub.model("ext");
      assert.equal(m.backend, "external");
      assert.equal(m.process_state, "running");
      assert.equal(m.memory_state, "loaded");
      const pid = m.pid;
      await waitFor(async () => (await hub.model("ext")).process_state === "stopped", { timeoutMs: 15000, what: "stopped on idle" });
      assert.equal((await hub.model("ext")).last_unload_reason, "idle");
      await waitFor(() => !alive(pid), { what: "process gone" });
      assert.equal((await postJson(`${hub.base}/v1/completions`, greedy("ext"))).status, 200);
    } finally {
      await hub.stop();
    }
  });
});

describe("waiting", () => {
  test("a request that waits longer than queue_timeout for its model gets 503 and Retry-After", async () => {
    const hub = await startHub(`models:
  - name: late
    cmd: "sleep 4; exec ${BIN} serve -m ${STORIES} --port \${PORT} --alias late"
    queue_timeout: 1
`);
    try {
      const t0 = Date.now();
      const r = await postJson(`${hub.base}/v1/completions`, greedy("late"));
      const waited = (Date.now() - t0) / 1000;
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, "model_load_timeout");
      assert.ok(Number(r.headers.get("retry-after")) >= 1);
      assert.ok(waited >= 0.9 && waited < 3.5, `waited ${waited}s`);
      // the start goes on; a later request is served
      await waitFor(async () => (await hub.model("late")).memory_state === "loaded", { timeoutMs: 20000 });
      assert.equal((await postJson(`${hub.base}/v1/completions`, greedy("late"))).status, 200);
    } finally {
      await hub.stop();
    }
  });
});

describe("reload and security", () => {
  test("reload: added, removed and changed models get exactly those actions; a broken file changes nothing", async () => {
    const t = tempDir("mh-reload-");
    const model = (name, extra = "") => `  - name: ${name}\n    model_path: ${STORIES}\n    default: true\n${extra}`;
    const hub = await startHub(`models:\n${model("keep")}${model("change")}${model("gone")}`, { dir: t.dir });
    try {
      await waitFor(async () => (await hub.status()).models.every((m) => m.process_state === "running"));
      const keepPid = (await hub.model("keep")).pid;
      const changePid = (await hub.model("change")).pid;
      const gonePid = (await hub.model("gone")).pid;
      const base = readFileSync(hub.config, "utf8").split("models:")[0];
      writeFileSync(hub.config, `${base}models:\n${model("keep")}${model("change", "    context_length: 256\n")}${model("fresh")}`);
      const r = await postJson(`${hub.base}/hub/reload`, {});
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.started, ["fresh"]);
      assert.deepEqual(r.body.stopped, ["gone"]);
      assert.deepEqual(r.body.restarted, ["change"]);
      assert.deepEqual(r.body.unchanged, ["keep"]);
      await waitFor(async () => {
        const s = await hub.status();
        const names = s.models.map((m) => m.name).sort().join(",");
        const fresh = s.models.find((m) => m.name === "fresh");
        const change = s.models.find((m) => m.name === "change");
        return names === "change,fresh,keep" && fresh.process_state === "running" &&
          change.process_state === "running" && change.pid !== changePid;
      }, { what: "reload applied" });
      assert.equal((await hub.model("keep")).pid, keepPid, "unchanged model untouched");
      assert.equal(alive(gonePid), false);
      // a broken file: 400 with the errors, nothing changes
      const before = await hub.status();
      writeFileSync(hub.config, base + "models:\n  - name: BAD NAME\n    model_path: /nope\n");
      const bad = await postJson(`${hub.base}/hub/reload`, {});
      assert.equal(bad.status, 400);
      assert.match(bad.body.error.message, /hub\.yaml:\d+: models\[0\]\.name/);
      const afterBad = await hub.status();
      assert.deepEqual(afterBad.models.map((m) => [m.name, m.pid]), before.models.map((m) => [m.name, m.pid]));
    } finally {
      await hub.stop();
      t.cleanup();
    }
  });

  test("api_keys protect /v1, admin_key protects the control routes", async () => {
    const hub = await startHub(`api_keys: [k1, k2]
admin_key: adm
models:
  - name: a
    model_path: ${STORIES}
`);
    try {
      assert.equal((await postJson(`${hub.base}/v1/completions`, greedy("a"))).status, 401);
      assert.equal((await getJson(`${hub.base}/v1/models`)).status, 401);
      assert.equal((await postJson(`${hub.base}/v1/completions`, greedy("a"), { authorization: "Bearer nope" })).status, 401);
      assert.equal((await postJson(`${hub.base}/v1/completions`, greedy("a"), { authorization: "Bearer k2" })).status, 200);
      for (const url of ["/hub/models/a/unload", "/hub/reload", "/hub/shutdown"]) {
        const r = await postJson(`${hub.base}${url}`, {}, { authorization: "Bearer k1" });
        assert.equal(r.status, 401, url);
        assert.ok(r.body.error);
      }
      assert.equal((await getJson(`${hub.base}/hub/models/a/logs`)).status, 401);
      const ok = await postJson(`${hub.base}/hub/models/a/unload`, {}, { authorization: "Bearer adm" });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.entry.memory_state, "unloaded");
      assert.equal((await getJson(`${hub.base}/hub/status`)).status, 200, "read-only status is open");
      assert.equal((await hub.status()).admin_key_required, true);
    } finally {
      await hub.stop();
    }
  });

  test("control API: start, load, unload, stop with reasons", async () => {
    const hub = await startHub(`models:
  - name: a
    model_path: ${STORIES}
`);
    try {
      const start = await postJson(`${hub.base}/hub/models/a/start`, {});
      assert.equal(start.status, 200);
      assert.equal(start.body.entry.process_state, "running");
      assert.equal(start.body.entry.memory_state, "unloaded", "start is the process axis only");
      const load = await postJson(`${hub.base}/hub/models/a/load`, {});
      assert.equal(load.body.entry.memory_state, "loaded");
      const unload = await postJson(`${hub.base}/hub/models/a/unload`, {});
      assert.equal(unload.body.entry.memory_state, "unloaded");
      assert.equal(unload.body.entry.last_unload_reason, "manual");
      assert.equal(unload.body.entry.process_state, "running");
      const stop = await postJson(`${hub.base}/hub/models/a/stop`, {});
      assert.equal(stop.body.entry.process_state, "stopped");
      assert.equal((await postJson(`${hub.base}/hub/models/zz/load`, {})).status, 404);
      assert.equal((await postJson(`${hub.base}/hub/models/a/explode`, {})).status, 404);
    } finally {
      await hub.stop();
    }
  });
});
