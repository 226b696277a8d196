// dashboard.test.mjs — the hub dashboard (GET /hub) in a real headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core) against real hubs on loopback ports.
//
// Screenshots go to $MODELHUB_BUILD: dashboard.png (desktop), dashboard-375.png (phone width) and
// dashboard-group-switches.png (three models in one max_loaded: 1 group after two switches).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { BIN, STORIES, getJson, postJson, postStream, slowModel, sleep, tempDir, waitFor } from "./lib.mjs";

const CHROMIUM = "/usr/bin/chromium";
const OUT_DIR = process.env.MODELHUB_BUILD || tmpdir();
const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// ---- hubs and browsers this file starts (all of them are cleaned up, even on failure) ----

const dashChildren = new Set();
process.on("exit", () => {
  for (const pid of dashChildren) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

async function dashFreePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Start `modelhub hub start --foreground` with `body` (YAML: models, groups, ...) appended to
 * the listener/log/state keys. stop() ends the hub and then makes sure no worker it had survives. */
async function startDashHub(body) {
  const t = tempDir("mh-dash-");
  const port = await dashFreePort();
  const first = 20000 + Math.floor(Math.random() * 30000);
  const config = path.join(t.dir, "hub.yaml");
  writeFileSync(config, `port: ${port}\nmodel_starting_port: ${first}\nlog_path: ${t.dir}/logs\n` +
    `state_dir: ${t.dir}/state\nstop_grace: 5\n${body}`);
  const child = spawn(BIN, ["hub", "start", "--foreground", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  dashChildren.add(child.pid);
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on("exit", (code, sig) => resolve({ code, sig })));
  try {
    await new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error("the hub did not start:\n" + stderr)), 20000);
      child.stdout.on("data", (d) => {
        out += d;
        if (/listening on /.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the hub exited with ${code}:\n${stderr}`));
      });
    });
  } catch (e) {
    child.kill("SIGKILL");
    t.cleanup();
    throw e;
  }
  const base = `http://127.0.0.1:${port}`;
  const workers = new Set();
  const hub = {
    base,
    config,
    stderr: () => stderr,
    async status() {
      const s = (await getJson(`${base}/hub/status`)).body;
      for (const m of s.models || []) if (m.pid) workers.add(m.pid);
      return s;
    },
    async model(name) {
      return (await hub.status()).models.find((m) => m.name === name);
    },
    async stop() {
      try {
        await hub.status();
      } catch {}
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      let timer;
      const r = await Promise.race([exited, new Promise((res) => (timer = setTimeout(res, 20000, null)))]);
      clearTimeout(timer);
      if (!r) child.kill("SIGKILL");
      await exited;
      dashChildren.delete(child.pid);
      // workers die with the hub; anything left after a few seconds is a bug, but not our litter
      const left = () => [...workers].filter((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
      const end = Date.now() + 8000;
      while (left().length && Date.now() < end) await sleep(100);
      const survivors = left();
      for (const pid of survivors) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      t.cleanup();
      return { exit: r, survivors };
    },
  };
  return hub;
}

async function launchDashBrowser() {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: the dashboard test needs Debian's chromium ` +
      "(apt-get install chromium; scripts/setup.sh installs it)");
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    throw new Error(`playwright-core is not installed (run npm ci at the repository root): ${e.message}`);
  }
  const profile = mkdtempSync(path.join(tmpdir(), "mh-chromium-"));
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 860 },
      colorScheme: "light",
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  return {
    ctx,
    async close() {
      try {
        await ctx.close();
      } finally {
        rmSync(profile, { recursive: true, force: true });
      }
    },
  };
}

/** A page whose console errors and uncaught exceptions are collected. `allowed(msg)` filters
 * the errors a test provokes on purpose (Chromium logs every 4xx answer to fetch). */
async function dashPage(ctx) {
  const page = await ctx.newPage();
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push({ text: m.text(), url: m.location().url || "" });
  });
  page.on("pageerror", (e) => errors.push({ text: `uncaught: ${e.message}`, url: "" }));
  page.setDefaultTimeout(15000);
  return {
    page,
    errors,
    assertClean(allowed = () => false, what = "") {
      const bad = errors.filter((e) => !allowed(e));
      assert.deepEqual(bad, [], `console errors${what ? " " + what : ""}:\n${JSON.stringify(bad, null, 1)}`);
      errors.length = 0;
    },
  };
}

const row = (page, name) => page.locator(`[data-model="${name}"]`);
const waitRow = (page, name, attrs, timeout = 15000) =>
  page.waitForSelector(
    `[data-model="${name}"]` + Object.entries(attrs).map(([k, v]) => `[data-${k}="${v}"]`).join(""),
    { timeout },
  );
const resourceError = (re) => (e) => /Failed to load resource/.test(e.text) && re.test(e.url);

test("Debian's chromium and playwright-core are installed (the browser tests need both)", async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh installs it)`);
  await import("playwright-core").catch((e) => assert.fail(`playwright-core is missing (npm ci): ${e.message}`));
});

// ---- the main hub: two stories260K models and a slow one sharing a max_loaded: 1 group ----

describe("dashboard", () => {
  let hub, browser, p, page;

  before(async () => {
    browser = await launchDashBrowser();
    hub = await startDashHub(`models:
  - name: alpha
    model_path: ${STORIES}
    aliases: [first]
    idle_unload: 600
  - name: beta
    model_path: ${STORIES}
    group: pair
  - name: slow
    model_path: ${slowModel()}
    group: pair
groups:
  - name: pair
    max_loaded: 1
`);
    p = await dashPage(browser.ctx);
    page = p.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (hub) {
      const r = await hub.stop();
      assert.deepEqual(r.survivors, [], "workers outlived the hub");
    }
  });

  test("the page loads, renders every model and goes live with no console errors", async () => {
    const t0 = Date.now();
    const resp = await page.goto(`${hub.base}/hub`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()["content-type"], /text\/html/);
    await page.waitForSelector("#conn.conn-live");
    for (const n of ["alpha", "beta", "slow"]) await waitRow(page, n, { process: "stopped", memory: "unloaded" });
    assert.equal(await page.locator(".model").count(), 3);
    assert.match(await row(page, "alpha").innerText(), /first/, "aliases shown");
    assert.match(await row(page, "beta").innerText(), /group pair · 0\/1 loaded/);
    assert.equal((await page.textContent("#hub-pill")).trim(), "ok");
    assert.match(await page.textContent("#stat-running"), /0\s*\/\s*3/);
    assert.equal(await page.inputValue("#base-url"), `${hub.base}/v1`);
    // stopped models offer Start and Load, not Stop or Unload
    assert.equal(await row(page, "alpha").getByRole("button", { name: "Start alpha" }).isEnabled(), true);
    assert.equal(await row(page, "alpha").getByRole("button", { name: "Load alpha" }).isEnabled(), true);
    assert.equal(await row(page, "alpha").getByRole("button", { name: /^(Stop|Unload) alpha/ }).count(), 0);
    // keyboard: Tab reaches the first row's buttons
    let reached = false;
    for (let i = 0; i < 30 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") === "Load alpha");
    }
    assert.ok(reached, "the Load button is reachable with Tab");
    await sleep(300); // late errors (assets, favicon) would show up by now
    p.assertClean();
    console.log(`# page live in ${Date.now() - t0} ms`);
  });

  test("Load turns the row loaded through the event stream, without reloading the page", async () => {
    await page.evaluate(() => (window.__mhNoReload = 1));
    const load = row(page, "alpha").getByRole("button", { name: "Load alpha" });
    await load.click();
    await waitRow(page, "alpha", { process: "running", memory: "loaded" });
    assert.equal(await page.evaluate(() => window.__mhNoReload), 1, "the page was not reloaded");
    assert.equal(await page.getAttribute("#conn", "class"), "conn conn-live", "updates came from the live stream");
    const text = await row(page, "alpha").innerText();
    assert.match(text, /pid \d+ · port \d+/);
    assert.match(text, /idle unload in (9|10):\d\d/, "countdown to unload_at");
    assert.match(text, /footprint [\d.]+ (KiB|MiB)/);
    await page.waitForSelector(".toast[data-kind=ok] >> text=alpha: loaded");
    // a change made elsewhere (API) shows up too: only the stream can carry it (no polling while live)
    assert.equal((await postJson(`${hub.base}/hub/models/beta/start`, {})).status, 200);
    await waitRow(page, "beta", { process: "running", memory: "unloaded" });
    assert.match(await page.textContent("#stat-running"), /2\s*\/\s*3/);
    assert.match(await page.textContent("#stat-loaded"), /1\s*\/\s*3/);
    p.assertClean();
  });

  test("Unload then Stop, each reflected live; buttons follow the state", async () => {
    await row(page, "alpha").getByRole("button", { name: "Unload alpha" }).click();
    await waitRow(page, "alpha", { process: "running", memory: "unloaded" });
    await page.waitForSelector('[data-model="alpha"] [data-field="unload-reason"]:text("manual")');
    await row(page, "alpha").getByRole("button", { name: "Stop alpha" }).click();
    await waitRow(page, "alpha", { process: "stopped", memory: "unloaded" });
    assert.equal(await row(page, "alpha").getByRole("button", { name: "Start alpha" }).count(), 1);
    const m = await hub.model("alpha");
    assert.equal(m.process_state, "stopped");
    assert.equal(m.last_unload_reason, "manual");
    p.assertClean();
  });

  test("a load that fails (full group, its member busy) shows the hub's error in a toast", async () => {
    // make `slow` loaded and busy with a long stream: it fills the pair group (max_loaded 1)
    const ctl = new AbortController();
    let firstChunk = null;
    const stream = postStream(`${hub.base}/v1/completions`,
      { model: "slow", prompt: "Once", max_tokens: 4000, temperature: 0, stream: true },
      { signal: ctl.signal, onEvent: (ev) => { firstChunk ??= ev; } }).catch((e) => e);
    try {
      await waitFor(() => firstChunk, { timeoutMs: 30000, what: "the first chunk of the slow stream" });
      await page.waitForSelector('[data-model="slow"] [data-field="in-flight"]:text("1 in flight")');
      await waitRow(page, "slow", { memory: "loaded" });
      // busy: its own Stop/Unload are disabled
      assert.equal(await row(page, "slow").getByRole("button", { name: "Unload slow" }).isDisabled(), true);
      await row(page, "beta").getByRole("button", { name: "Load beta" }).click();
      const toast = page.locator(".toast[data-kind=error]").filter({ hasText: "Load beta failed" });
      await toast.waitFor();
      const shown = await toast.innerText();
      const direct = await postJson(`${hub.base}/hub/models/beta/load`, {});
      assert.equal(direct.status, 429);
      assert.match(shown, /429/);
      assert.ok(shown.includes(direct.body.error.message), `toast shows the message in full:\n${shown}`);
      // the button is usable again once the action is answered; the row did not change
      assert.equal(await row(page, "beta").getByRole("button", { name: "Load beta" }).isEnabled(), true);
      await waitRow(page, "beta", { memory: "unloaded" });
      await page.screenshot({ path: path.join(OUT_DIR, "dashboard.png"), fullPage: true });
    } finally {
      ctl.abort();
      await stream;
    }
    await page.waitForSelector('[data-model="slow"] [data-field="in-flight"]:text("0 in flight")', { timeout: 20000 });
    await page.locator(".toast .toast-close").evaluateAll((bs) => bs.forEach((b) => b.click()));
    p.assertClean(resourceError(/\/hub\/models\/beta\/load$/), "besides the 429 of the failed load");
  });

  test("the log panel shows the last lines and follows new output", async () => {
    await row(page, "alpha").getByRole("button", { name: "Logs of alpha" }).click();
    const logs = row(page, "alpha").locator(".logs-body");
    await page.waitForSelector('[data-model="alpha"] .logs-state.live');
    await waitFor(async () => /serve:/.test(await logs.innerText()), { what: "earlier log lines" });
    const r = await postJson(`${hub.base}/v1/chat/completions`,
      { model: "alpha", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 });
    assert.equal(r.status, 200);
    await waitFor(async () => /chat\/completions/.test(await logs.innerText()), { what: "a new line followed live" });
    await row(page, "alpha").getByRole("button", { name: "Close" }).click();
    assert.equal(await row(page, "alpha").locator(".logs").isHidden(), true);
    p.assertClean();
  });

  test("when the event stream drops, the page says so and polls /hub/status every 5 s", async () => {
    const q = await dashPage(browser.ctx);
    try {
      await q.page.route("**/hub/events", (route) => route.abort());
      await q.page.goto(`${hub.base}/hub`);
      await q.page.waitForSelector("[data-banner=polling]");
      assert.match(await q.page.textContent("#conn"), /polling every 5 s/);
      await waitRow(q.page, "alpha", { memory: "loaded" });
      const t0 = Date.now();
      assert.equal((await postJson(`${hub.base}/hub/models/alpha/unload`, {})).status, 200);
      await waitRow(q.page, "alpha", { memory: "unloaded" }, 9000);
      assert.ok(Date.now() - t0 < 9000);
      // the stream comes back by itself
      await q.page.unroute("**/hub/events");
      await q.page.waitForSelector("#conn.conn-live", { timeout: 12000 });
      assert.equal(await q.page.locator("[data-banner=polling]").count(), 0);
      q.assertClean(resourceError(/\/hub\/events$/), "besides the blocked event stream");
    } finally {
      await q.page.close();
    }
  });

  test("375 px wide: no horizontal scrolling, every button inside the screen", async () => {
    await page.setViewportSize({ width: 375, height: 812 });
    await sleep(200);
    const { scrollW, clientW } = await page.evaluate(() => ({
      scrollW: document.documentElement.scrollWidth,
      clientW: document.documentElement.clientWidth,
    }));
    assert.ok(scrollW <= clientW, `page is ${scrollW}px wide in a ${clientW}px viewport`);
    for (const b of await page.locator("button:visible").all()) {
      const box = await b.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 375.5, `${await b.innerText()} at ${JSON.stringify(box)}`);
    }
    await page.screenshot({ path: path.join(OUT_DIR, "dashboard-375.png"), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 860 });
    p.assertClean();
  });
});

// ---- admin key, and three models in one max_loaded: 1 group after two switches ----

describe("dashboard with an admin key and a max_loaded: 1 group of three", () => {
  const KEY = "dash-test-key";
  let hub, browser, p, page;

  before(async () => {
    browser = await launchDashBrowser();
    hub = await startDashHub(`admin_key: ${KEY}
models:
  - name: one
    model_path: ${STORIES}
    group: trio
  - name: two
    model_path: ${STORIES}
    group: trio
  - name: three
    model_path: ${STORIES}
    group: trio
groups:
  - name: trio
    max_loaded: 1
`);
    p = await dashPage(browser.ctx);
    page = p.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (hub) {
      const r = await hub.stop();
      assert.deepEqual(r.survivors, [], "workers outlived the hub");
    }
  });

  test("asks for the key once, shows a 401 clearly, then sends the key with each action", async () => {
    await page.goto(`${hub.base}/hub`);
    await page.waitForSelector("#key-dialog[open]");
    await page.fill("#key-input", "wrong-key");
    await page.press("#key-input", "Enter");
    await page.waitForSelector("#key-dialog:not([open])", { state: "attached" });
    await row(page, "one").getByRole("button", { name: "Load one" }).click();
    const toast = page.locator(".toast[data-kind=error]").filter({ hasText: "401" });
    await toast.waitFor();
    assert.match(await toast.innerText(), /admin key was refused/);
    assert.match(await page.textContent("#key-btn"), /rejected/);
    await waitRow(page, "one", { memory: "unloaded", process: "stopped" });
    await toast.getByRole("button", { name: "Change admin key" }).click();
    await page.waitForSelector("#key-dialog[open]");
    await page.fill("#key-input", KEY);
    await page.press("#key-input", "Enter");
    await row(page, "one").getByRole("button", { name: "Load one" }).click();
    await waitRow(page, "one", { memory: "loaded" });
    assert.match(await page.textContent("#key-btn"), /✓/);
    // a reload keeps the key (this tab's sessionStorage) and does not ask again
    await page.reload();
    await page.waitForSelector("#conn.conn-live");
    await sleep(300);
    assert.equal(await page.locator("#key-dialog[open]").count(), 0);
    await page.locator(".toast .toast-close").evaluateAll((bs) => bs.forEach((b) => b.click()));
    p.assertClean(resourceError(/\/hub\/models\/one\/load$/), "besides the refused load");
  });

  test("two switches in the group: the page shows who was evicted and why", async () => {
    await waitRow(page, "one", { memory: "loaded" });
    await row(page, "two").getByRole("button", { name: "Load two" }).click(); // switch 1
    await waitRow(page, "two", { memory: "loaded" });
    await waitRow(page, "one", { memory: "unloaded" });
    await row(page, "three").getByRole("button", { name: "Load three" }).click(); // switch 2
    await waitRow(page, "three", { memory: "loaded" });
    await waitRow(page, "two", { memory: "unloaded" });
    for (const n of ["one", "two"]) {
      await page.waitForSelector(`[data-model="${n}"] [data-field="unload-reason"]:text("group capacity")`);
      assert.equal(await row(page, n).getByRole("button", { name: `Load ${n}` }).isEnabled(), true);
    }
    assert.equal(await row(page, "three").locator("[data-field=unload-reason]").count(), 0);
    assert.match(await page.locator(".group-chip").innerText(), /trio · 1\/1 loaded/);
    for (const n of ["one", "two", "three"])
      assert.match(await row(page, n).innerText(), /group trio · 1\/1 loaded/);
    assert.match(await page.textContent("#stat-loaded"), /1\s*\/\s*3/);
    assert.match(await page.textContent("#stat-running"), /3\s*\/\s*3/);
    const s = await hub.status();
    assert.deepEqual(s.models.map((m) => [m.name, m.memory_state, m.last_unload_reason]),
      [["one", "unloaded", "capacity"], ["two", "unloaded", "capacity"], ["three", "loaded", null]]);
    await sleep(1200); // let the toasts of the switches settle out of the picture's way
    await page.locator(".toast .toast-close").evaluateAll((bs) => bs.forEach((b) => b.click()));
    await page.screenshot({ path: path.join(OUT_DIR, "dashboard-group-switches.png"), fullPage: true });
    p.assertClean();
  });

  test("Reload shows the diff, or the config errors in full", async () => {
    const good = readFileSync(hub.config, "utf8");
    writeFileSync(hub.config, good + "bogus_key: 1\n");
    await page.getByRole("button", { name: "Reload config" }).click();
    const bad = page.locator(".toast[data-kind=error]").filter({ hasText: "Reload failed" });
    await bad.waitFor();
    assert.match(await bad.innerText(), /400[\s\S]*hub\.yaml:\d+: bogus_key/);
    await bad.getByRole("button", { name: "Dismiss" }).click();
    writeFileSync(hub.config, good);
    await page.getByRole("button", { name: "Reload config" }).click();
    const ok = page.locator(".toast[data-kind=ok]").filter({ hasText: "Configuration reloaded" });
    await ok.waitFor();
    assert.match(await ok.innerText(), /unchanged: one, two, three/);
    p.assertClean(resourceError(/\/hub\/reload$/), "besides the refused reload");
  });

  test("Shut down asks first, then the page says the hub is gone", async () => {
    await page.getByRole("button", { name: "Shut down" }).click();
    await page.waitForSelector("#shutdown-dialog[open]");
    assert.match(await page.textContent("#shutdown-text"), /\d+ running workers? will be stopped/);
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.waitForSelector("#shutdown-dialog:not([open])", { state: "attached" });
    assert.equal((await hub.status()).status, "ok", "Cancel shuts nothing down");
    await page.getByRole("button", { name: "Shut down" }).click();
    await page.locator("#shutdown-dialog").getByRole("button", { name: "Shut down" }).click();
    await page.waitForSelector("[data-banner=offline]:has-text('shut down from this page')", { timeout: 20000 });
    assert.equal((await page.textContent("#hub-pill")).trim(), "shut down");
    assert.equal(await page.getByRole("button", { name: "Load one" }).isDisabled(), true);
    p.assertClean((e) => /ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE/.test(e.text) &&
      /\/hub\/(status|events)$/.test(e.url), "besides the hub being gone");
  });
});

describe("dashboard disabled", () => {
  test("enable_status_page: false answers 404 for the page and its assets", async () => {
    const hub = await startDashHub("enable_status_page: false\nmodels: []\n");
    try {
      for (const p of ["/hub", "/hub/assets/dashboard.js", "/hub/assets/dashboard.css"]) {
        const r = await getJson(`${hub.base}${p}`);
        assert.equal(r.status, 404, p);
        assert.ok(r.body.error, `${p}: an error envelope`);
      }
      assert.equal((await getJson(`${hub.base}/hub/status`)).status, 200);
    } finally {
      await hub.stop();
    }
  });
});
