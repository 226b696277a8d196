// security.test.mjs — attacks through the user's own browser, against the hub and serve: cross-site
// control POSTs (a text/plain "simple request"), DNS rebinding (a foreign Host header), CORS (off
// unless listed), the redacted /hub/status without the admin key, and the request-line answers
// found by the HTTP fuzzer (odd versions, unknown methods).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { STORIES, SRC, startHub, startServe, waitFor } from "./lib.mjs";

/** One request with exactly these headers (node:http lets us set Host, Origin, Sec-Fetch-*). */
function request(port, method, urlPath, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: urlPath, headers, agent: false }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        let json = null;
        try { json = JSON.parse(text); } catch {}
        resolve({ status: res.statusCode, headers: res.headers, text, body: json });
      });
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Raw bytes in, whatever comes back until the server closes. */
function raw(port, bytes) {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let out = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); resolve(out.toString("latin1")); }, 3000);
    sock.on("data", (d) => (out = Buffer.concat([out, d])));
    sock.on("close", () => { clearTimeout(timer); resolve(out.toString("latin1")); });
    sock.on("error", () => {});
    sock.write(bytes, () => sock.end());
  });
}

const crossSite = (port) => ({
  "content-type": "text/plain", // a "simple request": no preflight in a browser
  origin: "http://evil.example",
  "sec-fetch-site": "cross-site",
  host: `127.0.0.1:${port}`,
});

describe("hub", () => {
  let hub;
  before(async () => {
    hub = await startHub(`cors_origins: ["http://app.example:3000"]
allowed_hosts: [hub.internal]
models:
  - name: a
    model_path: ${STORIES}
    default: true
`);
    await waitFor(async () => (await hub.model("a")).process_state === "running", { what: "running" });
  });
  after(async () => { await hub.stop(); });

  test("a cross-site text/plain POST cannot stop, unload, reload or shut down (no admin_key set)", async () => {
    for (const [url, hdrs] of [
      ["/hub/models/a/stop", crossSite(hub.port)],
      ["/hub/models/a/unload", { ...crossSite(hub.port), "sec-fetch-site": undefined }], // Origin alone
      ["/hub/models/a/stop", { "content-type": "text/plain", "sec-fetch-site": "same-site", host: `127.0.0.1:${hub.port}` }],
      ["/hub/reload", crossSite(hub.port)],
      ["/hub/shutdown", crossSite(hub.port)],
    ]) {
      const h = Object.fromEntries(Object.entries(hdrs).filter(([, v]) => v !== undefined));
      const r = await request(hub.port, "POST", url, { headers: h, body: "{}" });
      assert.equal(r.status, 403, `${url}: ${r.text}`);
      assert.equal(r.body.error.code, "cross_site_request");
    }
    const m = await hub.model("a");
    assert.equal(m.process_state, "running", "still running");
    assert.equal(hub.child.exitCode, null, "hub still up");
    // the dashboard's own requests pass: same origin
    const own = await request(hub.port, "POST", "/hub/models/a/load", {
      headers: { "content-type": "application/json", origin: `http://127.0.0.1:${hub.port}`,
                 "sec-fetch-site": "same-origin", host: `127.0.0.1:${hub.port}` }, body: "{}" });
    assert.equal(own.status, 200, own.text);
  });

  test("DNS rebinding: a foreign Host header gets 403 on every route; loopback names and allowed_hosts pass", async () => {
    for (const [method, url] of [["GET", "/hub/status"], ["GET", "/v1/models"], ["GET", "/health"], ["POST", "/hub/models/a/stop"]]) {
      const r = await request(hub.port, method, url, { headers: { host: `evil.example:${hub.port}` }, body: method === "POST" ? "{}" : undefined });
      assert.equal(r.status, 403, `${url}: ${r.text}`);
      assert.equal(r.body.error.code, "invalid_host");
    }
    assert.equal((await hub.model("a")).process_state, "running");
    for (const host of [`localhost:${hub.port}`, `127.0.0.1:${hub.port}`, `[::1]:${hub.port}`, `hub.internal:${hub.port}`, "LOCALHOST"])
      assert.equal((await request(hub.port, "GET", "/health", { headers: { host } })).status, 200, host);
  });

  test("CORS: none by default, only listed origins get Access-Control-Allow-Origin and a preflight", async () => {
    const plain = await request(hub.port, "GET", "/v1/models", { headers: { host: `127.0.0.1:${hub.port}` } });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers["access-control-allow-origin"], undefined);
    const listed = await request(hub.port, "GET", "/v1/models", { headers: { host: `127.0.0.1:${hub.port}`, origin: "http://app.example:3000" } });
    assert.equal(listed.status, 200);
    assert.equal(listed.headers["access-control-allow-origin"], "http://app.example:3000");
    const other = await request(hub.port, "GET", "/v1/models", { headers: { host: `127.0.0.1:${hub.port}`, origin: "http://evil.example" } });
    assert.equal(other.status, 403);
    assert.equal(other.headers["access-control-allow-origin"], undefined);
    const pre = await request(hub.port, "OPTIONS", "/v1/chat/completions", {
      headers: { host: `127.0.0.1:${hub.port}`, origin: "http://app.example:3000", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization, content-type" } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers["access-control-allow-origin"], "http://app.example:3000");
    assert.match(pre.headers["access-control-allow-methods"], /POST/);
    assert.match(pre.headers["access-control-allow-headers"], /authorization/i);
    const badPre = await request(hub.port, "OPTIONS", "/v1/chat/completions", {
      headers: { host: `127.0.0.1:${hub.port}`, origin: "http://evil.example", "access-control-request-method": "POST" } });
    assert.equal(badPre.status, 403);
    assert.equal(badPre.headers["access-control-allow-origin"], undefined);
    // control routes never get CORS, listed origin or not
    const ctl = await request(hub.port, "POST", "/hub/models/a/stop", {
      headers: { host: `127.0.0.1:${hub.port}`, origin: "http://app.example:3000", "content-type": "text/plain" }, body: "{}" });
    assert.equal(ctl.status, 403);
    assert.equal((await hub.model("a")).process_state, "running");
  });

  test("a reload applies new allowed_hosts and cors_origins", async () => {
    const { readFileSync: rd, writeFileSync: wr } = await import("node:fs");
    const before = rd(hub.config, "utf8");
    const host = { host: `127.0.0.1:${hub.port}` };
    const reload = async () => {
      const r = await request(hub.port, "POST", "/hub/reload", { headers: { ...host, "content-type": "application/json" }, body: "{}" });
      assert.equal(r.status, 200, r.text);
    };
    try {
      assert.equal((await request(hub.port, "GET", "/health", { headers: { host: "other.internal" } })).status, 403);
      wr(hub.config, before.replace("allowed_hosts: [hub.internal]", "allowed_hosts: [other.internal]")
        .replace('cors_origins: ["http://app.example:3000"]', 'cors_origins: ["http://new.example"]'));
      await reload();
      assert.equal((await request(hub.port, "GET", "/health", { headers: { host: "other.internal" } })).status, 200);
      const old = await request(hub.port, "GET", "/health", { headers: { host: "hub.internal" } });
      assert.equal(old.status, 403, "the name taken out is refused");
      assert.equal(old.body.error.code, "invalid_host");
      const listed = await request(hub.port, "GET", "/v1/models", { headers: { ...host, origin: "http://new.example" } });
      assert.equal(listed.status, 200);
      assert.equal(listed.headers["access-control-allow-origin"], "http://new.example");
      const dropped = await request(hub.port, "GET", "/v1/models", { headers: { ...host, origin: "http://app.example:3000" } });
      assert.equal(dropped.status, 403);
    } finally {
      wr(hub.config, before);
      await reload();
    }
    assert.equal((await request(hub.port, "GET", "/health", { headers: { host: "hub.internal" } })).status, 200);
  });

  test("odd HTTP versions get 505 and unknown methods 501, in the JSON envelope, never libevent's echo", async () => {
    const dir = path.join(SRC, "fuzz", "corpus", "fuzz_http");
    const seeds = readdirSync(dir).filter((f) => f.startsWith("regress-"));
    assert.ok(seeds.length >= 5, "the fuzzer's findings are kept as seeds");
    for (const f of seeds) {
      const reply = await raw(hub.port, readFileSync(path.join(dir, f)));
      assert.ok(reply === "" || /^HTTP\/1\.[01] [1-5]\d\d /.test(reply), `${f}: ${reply.slice(0, 60)}`);
    }
    const v = await raw(hub.port, "GET /health HTTP/-1.1\r\nHost: localhost\r\n\r\n");
    assert.match(v, /^HTTP\/1\.1 505 /);
    assert.match(v, /"code":"http_version_not_supported"/);
    const v2 = await raw(hub.port, "GET /health HTTP/2.0\r\n\r\n");
    assert.match(v2, /^HTTP\/1\.1 505 /);
    for (const method of ["BREW", "TRACE", "CONNECT"]) {
      const m = await raw(hub.port, `${method} /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      assert.match(m, /^HTTP\/1\.1 501 /, method);
      assert.match(m, /"code":"method_not_supported"/, method);
    }
    const bad = await raw(hub.port, "GET\r\n\r\n");
    assert.match(bad, /^HTTP\/1\.1 400 /);
    assert.equal((await request(hub.port, "GET", "/health")).status, 200, "still serving");
  });
});

describe("hub with an admin key", () => {
  let hub;
  before(async () => {
    hub = await startHub(`admin_key: s3cret
models:
  - name: a
    model_path: ${STORIES}
  - name: ext
    cmd: "${process.execPath} --secret-flag \${PORT}"
    env: {TOKEN: hidden-value}
`);
  });
  after(async () => { await hub.stop(); });

  test("/hub/status without the key shows no paths, commands or env; with it, all of it", async () => {
    const anon = await request(hub.port, "GET", "/hub/status");
    assert.equal(anon.status, 200);
    assert.equal(anon.body.redacted, true);
    assert.doesNotMatch(anon.text, /stories260K|secret-flag|hidden-value|hub\.yaml/);
    assert.equal(anon.body.config_path, undefined);
    for (const m of anon.body.models) assert.equal(m.model_path, "(redacted)");
    const wrong = await request(hub.port, "GET", "/hub/status", { headers: { authorization: "Bearer s3cres" } });
    assert.doesNotMatch(wrong.text, /stories260K|secret-flag/);
    const full = await request(hub.port, "GET", "/hub/status", { headers: { authorization: "Bearer s3cret" } });
    assert.equal(full.body.redacted, undefined);
    assert.match(full.body.models.find((m) => m.name === "a").model_path, /stories260K\.gguf$/);
    assert.match(full.body.models.find((m) => m.name === "ext").model_path, /secret-flag/);
    assert.match(full.body.config_path, /hub\.yaml$/);
    const alt = await request(hub.port, "GET", "/hub/status", { headers: { "x-admin-key": "s3cret" } });
    assert.equal(alt.body.redacted, undefined);
    // /v1/models metadata and the events snapshot follow the same rule
    const models = await request(hub.port, "GET", "/v1/models");
    assert.doesNotMatch(models.text, /stories260K|secret-flag/);
  });

  test("the admin key is checked in full (prefixes, longer and shorter keys are refused)", async () => {
    for (const key of ["s", "s3cre", "s3cret!", "s3creT", "", "x3cret", "s3cret s3cret"]) {
      const r = await request(hub.port, "POST", "/hub/models/a/load", { headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" });
      assert.equal(r.status, 401, JSON.stringify(key));
    }
    const ok = await request(hub.port, "POST", "/hub/models/a/load", { headers: { authorization: "Bearer s3cret", "content-type": "application/json" }, body: "{}" });
    assert.equal(ok.status, 200, ok.text);
  });
});

describe("serve", () => {
  let serve;
  before(async () => { serve = await startServe(["-m", STORIES, "--jit", "--cors-origin", "http://app.example:3000"]); });
  after(async () => { await serve.stop(); });

  test("control routes refuse cross-site requests; Host is checked; CORS only for the listed origin", async () => {
    const r = await request(serve.port, "POST", "/control/load", { headers: crossSite(serve.port), body: "{}" });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.body.error.code, "cross_site_request");
    const st = await request(serve.port, "GET", "/health");
    assert.equal(st.body.model_status, "unloaded", "the cross-site load did not run");
    const rebind = await request(serve.port, "GET", "/v1/models", { headers: { host: `attacker.example:${serve.port}` } });
    assert.equal(rebind.status, 403);
    assert.equal(rebind.body.error.code, "invalid_host");
    const listed = await request(serve.port, "GET", "/v1/models", { headers: { origin: "http://app.example:3000" } });
    assert.equal(listed.headers["access-control-allow-origin"], "http://app.example:3000");
    const none = await request(serve.port, "GET", "/v1/models");
    assert.equal(none.headers["access-control-allow-origin"], undefined);
    const ok = await request(serve.port, "POST", "/control/load", { headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(ok.status, 200, ok.text);
  });
});

test("serve with no --cors-origin sends no CORS header even to a same-host origin, and refuses others", async () => {
  const s = await startServe(["-m", STORIES]);
  try {
    const r = await request(s.port, "GET", "/v1/models", { headers: { origin: "http://localhost:3000" } });
    assert.equal(r.status, 403);
    assert.equal(r.headers["access-control-allow-origin"], undefined);
    const pre = await request(s.port, "OPTIONS", "/v1/chat/completions", { headers: { origin: "http://localhost:3000", "access-control-request-method": "POST" } });
    assert.equal(pre.headers["access-control-allow-origin"], undefined);
  } finally {
    await s.stop();
  }
});
