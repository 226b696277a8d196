// load.test.mjs — bounded load on the hub: a group thrashed by many clients, and hundreds of idle
// streams that come and go. Loopback only; each part stops by itself (a fixed time or count).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { readdirSync, readFileSync } from "node:fs";
import { STORIES, startHub, getJson, postJson, postStream, waitFor, sleep, collectEvents } from "./lib.mjs";

const reference8 = ", there was a little girl";
const THRASH_SECONDS = Number(process.env.MODELHUB_THRASH_SECONDS || 30);

/** Memory states that hold a model's weights (or are about to). */
const resident = (state) => state === "loading" || state === "loaded" || state === "unloading";

describe("thrash: 3 models, max_loaded 1, 16 clients", () => {
  test(`${THRASH_SECONDS} s of mixed streamed and plain requests: none lost or cut, cap never exceeded`, async () => {
    const hub = await startHub(`models:
  - name: a
    model_path: ${STORIES}
    group: g
  - name: b
    model_path: ${STORIES}
    group: g
  - name: c
    model_path: ${STORIES}
    group: g
groups:
  - name: g
    max_loaded: 1
`);
    try {
      const ev = collectEvents(hub.base);
      await waitFor(() => ev.events.length > 0, { what: "the first snapshot event" });
      const deadline = Date.now() + THRASH_SECONDS * 1000;
      const outcome = { ok: 0, streamed: 0, failures: [] };
      let samples = 0, maxResident = 0, maxGroupLoaded = 0;
      const sampler = (async () => {
        while (Date.now() < deadline) {
          const s = await hub.status();
          samples++;
          maxResident = Math.max(maxResident, s.models.filter((m) => resident(m.memory_state)).length);
          maxGroupLoaded = Math.max(maxGroupLoaded, s.groups[0].loaded);
          await sleep(50);
        }
      })();
      const client = async (id) => {
        let seed = id * 7919 + 1;
        for (let k = 0; Date.now() < deadline; k++) {
          seed = (seed * 1103515245 + 12345) % 2147483648;
          const model = ["a", "b", "c"][seed % 3];
          const body = { model, prompt: "Once upon a time", max_tokens: 8, temperature: 0 };
          const stream = (id + k) % 2 === 0;
          try {
            if (stream) {
              const r = await postStream(`${hub.base}/v1/completions`, { ...body, stream: true });
              const text = r.events.filter((e) => e !== "[DONE]").map((e) => e.choices?.[0]?.text ?? "").join("");
              if (r.status !== 200 || r.events.at(-1) !== "[DONE]" || text !== reference8)
                outcome.failures.push(`${model} streamed: ${r.status} ${JSON.stringify(r.events.slice(-2))} ${r.raw ?? ""}`);
              else outcome.streamed++, outcome.ok++;
            } else {
              const r = await postJson(`${hub.base}/v1/completions`, body);
              if (r.status !== 200 || r.body.choices?.[0]?.text !== reference8)
                outcome.failures.push(`${model}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
              else outcome.ok++;
            }
          } catch (e) {
            outcome.failures.push(`${model}: ${e}`);
          }
        }
      };
      await Promise.all(Array.from({ length: 16 }, (_, i) => client(i)));
      await sampler;
      await ev.stop();
      // The exact check: replay every memory transition in order and count resident models.
      const state = {};
      let maxReplayed = 0;
      for (const e of ev.events) {
        if (e.type !== "memory" || !e.model) continue;
        state[e.name] = e.model.memory_state;
        maxReplayed = Math.max(maxReplayed, Object.values(state).filter(resident).length);
      }
      const loads = ev.events.filter((e) => e.type === "memory" && e.model?.memory_state === "loaded").length;
      console.log(`thrash: ${outcome.ok} requests ok (${outcome.streamed} streamed), ` +
        `${outcome.failures.length} failed, ${loads} loads, ${samples} status samples`);
      assert.deepEqual(outcome.failures.slice(0, 5), [], `${outcome.failures.length} requests failed`);
      assert.ok(outcome.ok >= 16, `only ${outcome.ok} requests completed`);
      assert.ok(loads >= 3, `the group switched models (${loads} loads)`);
      assert.ok(samples >= 10, `status sampled ${samples} times`);
      assert.ok(maxResident <= 1, `sampled: ${maxResident} models resident at once`);
      assert.ok(maxGroupLoaded <= 1, `sampled: the group reported ${maxGroupLoaded} loaded`);
      assert.ok(maxReplayed <= 1, `events: ${maxReplayed} models resident at once`);
      const s = await hub.status();
      const served = s.models.reduce((n, m) => n + m.requests_total, 0);
      assert.equal(served, outcome.ok, "the hub counted every request once");
    } finally {
      await hub.stop();
    }
  });
});

/** The hub's open descriptors and resident set, from /proc. */
function usage(pid) {
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rss };
}

/** Open 400 /hub/events subscribers (idle streams) and 100 sockets that never send a byte, check
 * the hub holds them and still serves, close them all; returns the usage at the peak and after. */
async function holdAndRelease(hub, pid, base) {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const streams = [];
  const opened = await Promise.all(Array.from({ length: 400 }, () => new Promise((resolve, reject) => {
    const req = http.get(`${hub.base}/hub/events`, { agent }, (res) => {
      res.once("data", () => resolve(res)); // the snapshot: the stream is live
    });
    req.on("error", reject);
    streams.push(req);
  })));
  assert.equal(opened.length, 400);
  const silent = await Promise.all(Array.from({ length: 100 }, () => new Promise((resolve, reject) => {
    const sock = net.connect(hub.port, "127.0.0.1", () => resolve(sock));
    sock.on("error", reject);
  })));
  const peak = await waitFor(() => {
    const u = usage(pid);
    return u.fds >= base.fds + 500 ? u : null;
  }, { what: "the hub to hold 500 more descriptors" });
  // it still serves while holding them
  const r = await postJson(`${hub.base}/v1/completions`, { model: "a", prompt: "Once", max_tokens: 2 });
  assert.equal(r.status, 200);
  for (const req of streams) req.destroy();
  for (const sock of silent) sock.destroy();
  const after = await waitFor(() => {
    const u = usage(pid);
    return u.fds <= base.fds ? u : null;
  }, { what: `descriptors back to ${base.fds}` });
  return { peak, after };
}

describe("500 idle connections", () => {
  test("event streams and silent sockets come and go: descriptors and memory return to baseline", async () => {
    const hub = await startHub(`models:
  - name: a
    model_path: ${STORIES}
`);
    try {
      const pid = hub.child.pid;
      // warm up: a worker, a completion and one event stream, so lazily made state exists
      assert.equal((await postJson(`${hub.base}/v1/completions`, { model: "a", prompt: "Once", max_tokens: 2 })).status, 200);
      const warm = collectEvents(hub.base);
      await waitFor(() => warm.events.length > 0);
      await warm.stop();
      await sleep(200);
      const base = usage(pid);
      const rounds = [];
      for (let round = 0; round < Number(process.env.MODELHUB_IDLE_ROUNDS || 2); round++) rounds.push(await holdAndRelease(hub, pid, base));
      for (const [i, { peak, after }] of rounds.entries())
        console.log(`idle round ${i + 1}: baseline ${base.fds} fds ${(base.rss / 1048576).toFixed(1)} MiB, ` +
          `peak ${peak.fds} fds ${(peak.rss / 1048576).toFixed(1)} MiB, ` +
          `after ${after.fds} fds ${(after.rss / 1048576).toFixed(1)} MiB`);
      for (const { after } of rounds) assert.equal(after.fds, base.fds);
      // freed memory may stay in the allocator's arenas; what must not stay is per-connection growth.
      // Under AddressSanitizer freed memory sits in its quarantine, so RSS says nothing there:
      // LeakSanitizer's report at the hub's exit (checked by hub.stop) is the leak check instead.
      if (process.env.MODELHUB_SANITIZED !== "1") {
      assert.ok(rounds[0].after.rss <= base.rss + 8 * 1048576,
        `RSS ${rounds[0].after.rss} vs baseline ${base.rss}: more than 8 MiB kept after 500 connections closed`);
      assert.ok(rounds[1].after.rss <= rounds[0].after.rss + 2 * 1048576,
        `RSS grew from ${rounds[0].after.rss} to ${rounds[1].after.rss} in a second round: a leak per connection`);
      }
      const h = await getJson(`${hub.base}/hub/status`);
      assert.equal(h.status, 200);
    } finally {
      await hub.stop();
    }
  });
});
