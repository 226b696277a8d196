// modelhub dashboard: renders GET /hub/status, stays live through GET /hub/events (SSE), falls
// back to polling /hub/status every 5 s while the stream is down, drives the control routes and
// follows worker logs. No dependencies, no build step.
"use strict";

(() => {
  // The page is served at <root>/hub; everything else hangs off the same root.
  const ROOT = location.pathname.replace(/\/hub\/?$/, "");
  const url = (p) => ROOT + p;
  const POLL_MS = 5000;
  const STREAM_SILENCE_MS = 40000; // the hub sends a keep-alive every 15 s
  const LOG_TAIL = 200;
  const LOG_KEEP = 2000;
  const KEY_STORE = "modelhub.adminKey";
  const ASKED_STORE = "modelhub.adminKeyAsked";

  const $ = (sel, root = document) => root.querySelector(sel);

  // ---------------------------------------------------------------- state

  const st = {
    meta: null, // the last snapshot minus models (host, port, groups, warnings, ...)
    models: new Map(), // name -> snapshot entry, in the hub's order
    skew: 0, // hub clock - local clock, seconds
    uptimeBase: null, // {uptime, at}: hub uptime at a local time (ms)
    conn: "connecting", // connecting | live | polling | offline
    connReason: "",
    lastUpdate: 0,
    offlineSince: 0,
    shutDownByUs: false,
    pending: new Map(), // model name -> action in flight from this page
    hubBusy: null, // "reload" | "shutdown"
    keyRejected: false,
    rows: new Map(), // name -> row controller
  };

  const hubNow = () => Date.now() / 1000 + st.skew;
  const noteClock = (ts) => {
    if (typeof ts === "number" && ts > 0) st.skew = ts - Date.now() / 1000;
  };

  // ---------------------------------------------------------------- formatting

  function fmtDuration(s) {
    if (s == null || !isFinite(s)) return "–";
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
    if (m > 0) return `${m}m ${String(sec).padStart(2, "0")}s`;
    return `${sec}s`;
  }
  function fmtCountdown(s) {
    s = Math.max(0, Math.ceil(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h > 0) return `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
    return `${m}:${String(sec).padStart(2, "0")}`;
  }
  function fmtAgo(ts) {
    if (!ts) return null;
    const d = hubNow() - ts;
    if (d < 2) return "just now";
    return `${fmtDuration(d)} ago`;
  }
  function fmtBytes(n) {
    if (!n || n <= 0) return null;
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  }
  const fmtInt = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
  const fmtTime = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "");
  const plural = (n, one, many) => `${fmtInt(n)} ${n === 1 ? one : many || one + "s"}`;

  function el(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  // Replace the children of `node` with lines (arrays of strings/nodes), skipping empty ones.
  function setLines(node, lines) {
    const divs = lines.filter(Boolean).map((l) => el("div", {}, ...(Array.isArray(l) ? l : [l])));
    node.replaceChildren(...divs);
  }
  const span = (cls, text) => el("span", { class: cls, text });

  // ---------------------------------------------------------------- HTTP

  const adminKey = () => sessionStorage.getItem(KEY_STORE) || "";

  function authHeaders() {
    const k = adminKey();
    return k ? { Authorization: `Bearer ${k}` } : {};
  }

  // An error envelope ({"error":{message,type,param,code}}) or anything else, as one readable text.
  function describeError(status, body, raw) {
    const e = body && typeof body === "object" && body.error;
    if (e && typeof e === "object") {
      const tags = [e.type, e.code].filter(Boolean).join(", ");
      return {
        status,
        title: `${status}${tags ? ` · ${tags}` : ""}`,
        message: String(e.message || "(no message)"),
        param: e.param || null,
      };
    }
    return { status, title: String(status), message: raw ? String(raw).slice(0, 4000) : "(empty answer)" };
  }

  async function call(method, path, { body } = {}) {
    let r;
    try {
      r = await fetch(url(path), {
        method,
        headers: { ...authHeaders(), ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        cache: "no-store",
      });
    } catch (err) {
      return { ok: false, status: 0, error: { status: 0, title: "network error", message: `The hub did not answer: ${err.message}` } };
    }
    const raw = await r.text().catch(() => "");
    let json = null;
    try {
      json = raw ? JSON.parse(raw) : null;
    } catch {
      json = null;
    }
    if (r.ok) return { ok: true, status: r.status, body: json };
    return { ok: false, status: r.status, body: json, error: describeError(r.status, json, raw) };
  }

  // Read an SSE response from fetch (so headers such as the admin key can be sent).
  // onEvent gets each parsed data payload; onBytes is called for every chunk (keep-alives too).
  async function readSSE(path, { signal, onEvent, onBytes }) {
    const r = await fetch(url(path), {
      headers: { ...authHeaders(), Accept: "text/event-stream" },
      signal,
      cache: "no-store",
    });
    if (!r.ok || !(r.headers.get("content-type") || "").includes("text/event-stream")) {
      const raw = await r.text().catch(() => "");
      let json = null;
      try {
        json = JSON.parse(raw);
      } catch {
        json = null;
      }
      const e = new Error(describeError(r.status, json, raw).message);
      e.http = describeError(r.status, json, raw);
      throw e;
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      if (onBytes) onBytes();
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block
          .split("\n")
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5))
          .join("\n");
        if (!data) continue;
        let ev;
        try {
          ev = JSON.parse(data);
        } catch {
          continue;
        }
        onEvent(ev);
      }
    }
  }

  // ---------------------------------------------------------------- live updates

  let streamCtl = null;
  let streamWatchdog = null;
  let reconnectTimer = null;
  let reconnectDelay = 2000;
  let pollTimer = null;
  let lastBytes = 0;

  function connectEvents() {
    clearTimeout(reconnectTimer);
    if (streamCtl) streamCtl.abort();
    const ctl = new AbortController();
    streamCtl = ctl;
    lastBytes = Date.now();
    clearInterval(streamWatchdog);
    streamWatchdog = setInterval(() => {
      if (Date.now() - lastBytes > STREAM_SILENCE_MS) ctl.abort(new Error("the event stream went silent"));
    }, 5000);
    readSSE("/hub/events", {
      signal: ctl.signal,
      onBytes: () => (lastBytes = Date.now()),
      onEvent: (ev) => {
        if (ctl !== streamCtl) return;
        if (ev.type === "snapshot") {
          applySnapshot(ev.snapshot);
          reconnectDelay = 2000;
          setConn("live");
          stopPolling();
        } else {
          applyEvent(ev);
        }
      },
    })
      .then(() => streamLost(ctl, "the event stream ended"))
      .catch((err) => streamLost(ctl, err && err.name === "AbortError" ? "the event stream went silent" : err.message || String(err)));
  }

  function streamLost(ctl, reason) {
    if (ctl !== streamCtl) return; // replaced on purpose
    streamCtl = null;
    clearInterval(streamWatchdog);
    if (st.conn !== "offline") setConn("polling", reason);
    startPolling();
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connectEvents, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, POLL_MS); // a local hub: retry at the polling pace
  }

  function startPolling() {
    if (pollTimer) return;
    poll();
    pollTimer = setInterval(poll, POLL_MS);
  }
  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
  }

  async function poll() {
    const r = await call("GET", "/hub/status");
    if (r.ok && r.body) {
      applySnapshot(r.body);
      if (st.conn === "offline") setConn("polling", "the hub was unreachable");
      // the hub is back: try the stream now rather than at the next back-off step
      if (!streamCtl && st.offlineSince) {
        st.offlineSince = 0;
        reconnectDelay = 2000;
        connectEvents();
      }
      st.offlineSince = 0;
    } else if (!r.ok && r.status === 0) {
      if (!st.offlineSince) st.offlineSince = Date.now();
      setConn("offline", r.error.message);
    } else {
      setConn("polling", r.error ? `${r.error.title}: ${r.error.message}` : "unexpected answer");
    }
  }

  function setConn(conn, reason = "") {
    st.conn = conn;
    st.connReason = reason;
    renderConn();
    renderBanners();
    scheduleRender(); // the buttons depend on whether the hub answers
  }

  let refreshTimer = null;
  function refreshSoon() {
    // groups (caps) and the model order come only with a snapshot
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      const r = await call("GET", "/hub/status");
      if (r.ok && r.body) applySnapshot(r.body);
    }, 150);
  }

  function applySnapshot(s) {
    if (!s || !Array.isArray(s.models)) return;
    noteClock(s.timestamp);
    st.meta = { ...s, models: undefined };
    st.uptimeBase = { uptime: s.uptime_s, at: Date.now() };
    st.lastUpdate = Date.now();
    st.models = new Map(s.models.map((m) => [m.name, m]));
    if (s.status === "ok") st.shutDownByUs = false;
    render();
    maybeAskKey();
  }

  function applyEvent(ev) {
    if (!ev || !ev.type || !ev.name) return;
    noteClock(ev.timestamp);
    st.lastUpdate = Date.now();
    if (ev.type === "removed") {
      st.models.delete(ev.name);
      refreshSoon();
    } else if (ev.model) {
      const had = st.models.has(ev.name);
      st.models.set(ev.name, ev.model);
      if (!had || ev.type === "added" || ev.type === "config") refreshSoon();
    }
    scheduleRender();
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  // ---------------------------------------------------------------- rendering: header

  function counts() {
    const c = { registered: st.models.size, running: 0, loaded: 0, failed: 0 };
    for (const m of st.models.values()) {
      if (m.process_state === "running") c.running++;
      if (m.memory_state === "loaded") c.loaded++;
      if (m.process_state === "failed" || m.memory_state === "error") c.failed++;
    }
    return c;
  }

  // groups with their cap (from the last snapshot) and the loaded count (from the live models)
  function groups() {
    const out = new Map();
    for (const g of (st.meta && st.meta.groups) || [])
      out.set(g.name, { name: g.name, max: g.max_loaded, loaded: 0, members: 0 });
    for (const m of st.models.values()) {
      if (!m.group) continue;
      if (!out.has(m.group)) out.set(m.group, { name: m.group, max: null, loaded: 0, members: 0 });
      const g = out.get(m.group);
      g.members++;
      if (m.memory_state === "loaded") g.loaded++;
    }
    return out;
  }

  function renderHeader() {
    const c = counts();
    const of = (n) => [span("", String(n)), span("of", ` / ${c.registered}`)];
    $("#stat-running").replaceChildren(...of(c.running));
    $("#stat-loaded").replaceChildren(...of(c.loaded));
    $("#stat-failed").replaceChildren(...of(c.failed));
    $("#stat-failed").classList.toggle("bad", c.failed > 0);

    const pill = $("#hub-pill");
    let text = "connecting", cls = "pill-neutral";
    if (st.conn === "offline") {
      text = st.shutDownByUs ? "shut down" : "unreachable";
      cls = st.shutDownByUs ? "pill-neutral" : "pill-bad";
    } else if (st.meta) {
      text = st.meta.status || "unknown";
      cls = text === "ok" ? (c.failed > 0 ? "pill-warn" : "pill-ok") : "pill-warn";
      if (text === "ok" && c.failed > 0) text = "ok · degraded";
    }
    pill.textContent = text;
    pill.className = `pill ${cls}`;

    const keyBtn = $("#key-btn");
    const need = !!(st.meta && st.meta.admin_key_required);
    keyBtn.hidden = !need;
    keyBtn.textContent = !adminKey() ? "Enter admin key" : st.keyRejected ? "Admin key rejected" : "Admin key ✓";
    keyBtn.classList.toggle("btn-danger", need && (!adminKey() || st.keyRejected));

    const reload = $("#reload-btn");
    reload.disabled = st.hubBusy != null || st.conn === "offline";
    setBusy(reload, st.hubBusy === "reload", "Reload config", "Reloading…");
    const shut = $("#shutdown-btn");
    shut.disabled = st.hubBusy != null || st.conn === "offline";
    setBusy(shut, st.hubBusy === "shutdown", "Shut down", "Shutting down…");

    const g = groups();
    const chips = [...g.values()].map((x) => {
      const full = x.max != null && x.loaded >= x.max;
      return el(
        "span",
        { class: `group-chip${full ? " full" : ""}`, title: `${plural(x.members, "member")}; at most ${x.max ?? "any number"} loaded at once` },
        "group ",
        el("strong", { text: x.name }),
        ` · ${x.loaded}/${x.max ?? "∞"} loaded`,
      );
    });
    $("#groups").replaceChildren(...chips);

    const base = `${location.origin}${ROOT}/v1`;
    const input = $("#base-url");
    if (input.value !== base) input.value = base;

    document.title = st.meta ? `modelhub · ${c.loaded} loaded · ${c.running} running` : "modelhub";
    renderTicking();
  }

  function renderConn() {
    const conn = $("#conn");
    const labels = {
      connecting: "connecting…",
      live: "live",
      polling: "polling every 5 s",
      offline: "retrying every 5 s",
    };
    conn.textContent = labels[st.conn];
    conn.className = `conn conn-${st.conn}`;
    document.body.classList.toggle("stale", st.conn === "offline");
    conn.title = st.conn === "live" ? "Updates arrive as they happen (event stream)" : st.connReason || "";
    renderHeader();
  }

  function renderBanners() {
    const out = [];
    if (st.conn === "polling") {
      out.push(
        el("div", { class: "banner banner-warn", role: "status", "data-banner": "polling" },
          `Live updates are interrupted (${st.connReason || "the event stream dropped"}). ` +
          "Refreshing from /hub/status every 5 s and reconnecting in the background."),
      );
    } else if (st.conn === "offline") {
      const since = st.offlineSince ? ` since ${new Date(st.offlineSince).toLocaleTimeString()}` : "";
      out.push(
        el("div", { class: `banner ${st.shutDownByUs ? "banner-info" : "banner-bad"}`, role: "status", "data-banner": "offline" },
          st.shutDownByUs
            ? "The hub was shut down from this page. Start it again from the command line; this page reconnects by itself."
            : `The hub is not answering${since}. What you see is the last known state; retrying every 5 s.`),
      );
    }
    for (const w of (st.meta && st.meta.warnings) || [])
      out.push(el("div", { class: "banner banner-warn", "data-banner": "warning" }, `Warning: ${w}`));
    $("#banners").replaceChildren(...out);
  }

  // the parts that move with the clock: uptime, countdowns, "ago"
  function renderTicking() {
    if (st.uptimeBase && st.conn !== "offline")
      $("#stat-uptime").textContent = fmtDuration(st.uptimeBase.uptime + (Date.now() - st.uptimeBase.at) / 1000);
    for (const row of st.rows.values()) row.tick();
    const foot = $("#foot");
    if (st.meta) {
      const bits = [
        st.lastUpdate ? `updated ${new Date(st.lastUpdate).toLocaleTimeString()}` : null,
        st.meta.config_path ? `config ${st.meta.config_path}` : null,
        st.meta.pid ? `hub pid ${st.meta.pid}` : null,
        `listening on ${st.meta.host}:${st.meta.port}`,
      ].filter(Boolean);
      const text = bits.join("   ·   ");
      if (foot.textContent !== text) foot.textContent = text;
    }
  }

  function setBusy(btn, busy, idle, working) {
    btn.textContent = busy ? working : idle;
    if (busy) btn.setAttribute("aria-busy", "true");
    else btn.removeAttribute("aria-busy");
  }

  // ---------------------------------------------------------------- rendering: models

  const PROC_CLASS = { running: "badge-ok", starting: "badge-moving", stopping: "badge-moving", stopped: "badge-idle", failed: "badge-bad" };
  const MEM_CLASS = { loaded: "badge-ok", loading: "badge-moving", unloading: "badge-moving", unloaded: "badge-idle", error: "badge-bad" };
  const REASON_TEXT = {
    idle: "idle timeout",
    capacity: "group capacity",
    manual: "manual",
    crash: "crash",
    reload: "config reload",
    shutdown: "hub shutdown",
  };

  function makeRow(name) {
    const frag = $("#model-tpl").content.cloneNode(true);
    const root = frag.querySelector(".model");
    root.dataset.model = name;
    const q = (s) => root.querySelector(s);
    const r = {
      root,
      name,
      nameEl: q(".name"),
      defTag: q(".tag-default"),
      aliases: q(".aliases"),
      backend: q(".backend"),
      group: q(".group"),
      path: q(".path"),
      procBadge: q(".proc-badge"),
      procDetail: q(".proc-detail"),
      memBadge: q(".mem-badge"),
      memDetail: q(".mem-detail"),
      trafficNow: q(".traffic-now"),
      trafficDetail: q(".traffic-detail"),
      procBtn: q(".act-proc"),
      memBtn: q(".act-mem"),
      logsBtn: q(".act-logs"),
      err: q(".model-error"),
      logs: null,
      m: null,
    };
    r.nameEl.textContent = name;
    const logsId = `logs-${name.replace(/[^a-z0-9_-]/gi, "_")}`;
    q(".logs").id = logsId;
    r.logsBtn.setAttribute("aria-controls", logsId);
    r.logsBtn.setAttribute("aria-label", `Logs of ${name}`);
    r.procBtn.addEventListener("click", () => act(name, r.procBtn.dataset.action));
    r.memBtn.addEventListener("click", () => act(name, r.memBtn.dataset.action));
    r.logsBtn.addEventListener("click", () => (r.logs ? r.logs.close() : openLogs(r)));
    r.update = (m) => updateRow(r, m);
    r.tick = () => tickRow(r);
    return r;
  }

  function render() {
    renderHeader();
    renderBanners();
    const list = $("#model-list");
    const seen = new Set();
    let prev = null;
    for (const [name, m] of st.models) {
      seen.add(name);
      let r = st.rows.get(name);
      if (!r) {
        r = makeRow(name);
        st.rows.set(name, r);
      }
      // keep the hub's order without moving rows that are already in place (focus stays put)
      const want = prev ? prev.nextSibling : list.firstChild;
      if (want !== r.root) list.insertBefore(r.root, want);
      prev = r.root;
      r.update(m);
    }
    for (const [name, r] of st.rows)
      if (!seen.has(name)) {
        if (r.logs) r.logs.close();
        r.root.remove();
        st.rows.delete(name);
      }
    $("#empty").hidden = !(st.meta && st.models.size === 0);
  }

  function updateRow(r, m) {
    const old = r.m;
    r.m = m;
    const root = r.root;
    root.dataset.process = m.process_state;
    root.dataset.memory = m.memory_state;
    root.classList.toggle("is-failed", m.process_state === "failed" || m.memory_state === "error");
    if (old && (old.process_state !== m.process_state || old.memory_state !== m.memory_state)) {
      root.classList.add("flash");
      clearTimeout(r.flashTimer);
      r.flashTimer = setTimeout(() => root.classList.remove("flash"), 900);
    }

    r.defTag.hidden = !m.default;
    r.defTag.title = "starts with the hub";
    r.aliases.replaceChildren(...(m.aliases || []).map((a) => el("span", { class: "alias", title: "alias", text: a })));
    r.backend.textContent = m.backend || "";
    r.backend.title = {
      worker: "a modelhub worker process",
      external: "an external OpenAI-compatible server the hub runs",
      upstream: "a remote server the hub proxies to",
    }[m.backend] || "";
    if (m.group) {
      const g = groups().get(m.group);
      const full = g && g.max != null && g.loaded >= g.max;
      r.group.hidden = false;
      r.group.replaceChildren(
        `group ${m.group} · `,
        span("count", `${g ? g.loaded : "?"}/${g && g.max != null ? g.max : "∞"}`),
        " loaded",
      );
      r.group.title = full ? "the group is at its cap: loading another member unloads the least recently used idle one" : "";
    } else {
      r.group.hidden = true;
    }
    r.path.hidden = !m.model_path;
    r.path.textContent = m.model_path || "";
    r.path.title = m.model_path || "";

    r.procBadge.textContent = m.quarantined ? `${m.process_state} · quarantined` : m.process_state;
    r.procBadge.className = `badge proc-badge ${m.quarantined ? "badge-bad" : PROC_CLASS[m.process_state] || "badge-idle"}`;
    r.memBadge.textContent = m.memory_state;
    r.memBadge.className = `badge mem-badge ${MEM_CLASS[m.memory_state] || "badge-idle"}`;

    const busy = m.in_flight > 0, queued = m.queued > 0;
    r.trafficNow.replaceChildren(
      el("span", { class: busy ? "busy" : "", "data-field": "in-flight" }, `${fmtInt(m.in_flight)} in flight`),
      " · ",
      el("span", { class: queued ? "queued" : "", "data-field": "queued" }, `${fmtInt(m.queued)} queued`),
    );

    r.err.hidden = !m.error;
    r.err.textContent = m.error ? `Error: ${m.error}` : "";

    updateButtons(r);
    tickRow(r);
  }

  // Per-row text that depends on the clock.
  function tickRow(r) {
    const m = r.m;
    if (!m) return;
    const now = hubNow();
    // process
    const proc = [];
    if (m.process_state === "running" || m.process_state === "starting" || m.process_state === "stopping") {
      const ids = [m.pid ? `pid ${m.pid}` : null, m.port ? `port ${m.port}` : null].filter(Boolean).join(" · ");
      if (ids) proc.push(span("em mono", ids));
      if (m.started_at) proc.push(`up ${fmtDuration(now - m.started_at)}`);
    } else if (m.process_state === "failed" || m.exit_code != null) {
      if (m.exit_code != null) proc.push(span(m.process_state === "failed" ? "bad" : "", `exit code ${m.exit_code}`));
    }
    if (m.restarts > 0) proc.push(span("warn", plural(m.restarts, "restart")));
    if (m.quarantined) proc.push(span("bad", "quarantined: start it by hand"));
    if (m.backend === "upstream") proc.push("remote, no process");
    setLines(r.procDetail, proc);

    // memory
    const mem = [];
    if (m.memory_state === "loaded") {
      if (m.unload_at) {
        const left = m.unload_at - now;
        mem.push([
          left > 0 ? "idle unload in " : "idle unload ",
          el("span", { class: "countdown", "data-field": "countdown", title: `at ${fmtTime(m.unload_at)}` }, left > 0 ? fmtCountdown(left) : "due now"),
        ]);
      } else if (m.idle_unload_s && m.in_flight > 0) {
        mem.push(`idle timer (${fmtDuration(m.idle_unload_s)}) waits while busy`);
      } else if (!m.idle_unload_s) {
        mem.push("stays loaded (no idle unload)");
      }
      if (m.loaded_at) mem.push(`loaded ${fmtAgo(m.loaded_at)}`);
    }
    const bytes = fmtBytes(m.memory_bytes);
    if (bytes) mem.push(["footprint ", span("em", bytes)]);
    if (m.last_unload_reason)
      mem.push(["last unload: ", el("span", { class: m.last_unload_reason === "crash" ? "bad" : "", "data-field": "unload-reason" }, REASON_TEXT[m.last_unload_reason] || m.last_unload_reason)]);
    setLines(r.memDetail, mem);

    // traffic totals
    const tr = [`${plural(m.requests_total, "request")} · ${plural(m.tokens_generated, "token")}`];
    if (m.last_activity_ts) tr.push(`last active ${fmtAgo(m.last_activity_ts)}`);
    setLines(r.trafficDetail, tr);
  }

  function updateButtons(r) {
    const m = r.m;
    const pending = st.pending.get(r.name);
    const off = st.conn === "offline";
    const ps = m.process_state, ms = m.memory_state;
    const busy = m.in_flight > 0;

    // process axis: Start when it is down, Stop when it is up (not for remote upstreams)
    const pb = r.procBtn;
    if (m.backend === "upstream") {
      pb.hidden = true;
    } else {
      pb.hidden = false;
      const up = ps === "running" || ps === "starting" || ps === "stopping";
      const action = up ? "stop" : "start";
      pb.dataset.action = action;
      let label = up ? "Stop" : "Start", title = "";
      let disabled = off || pending === "start" || pending === "stop";
      if (ps === "stopping" || pending === "stop") label = "Stopping…";
      else if (pending === "start") label = "Starting…";
      if (ps === "stopping") disabled = true;
      if (up && busy && !pending) {
        disabled = true;
        title = `${plural(m.in_flight, "request")} in flight: stop when it is idle`;
      }
      if (!up && m.quarantined) title = "quarantined after repeated crashes: Start clears it";
      pb.disabled = disabled;
      pb.title = title;
      pb.textContent = label;
      pb.setAttribute("aria-label", `${label.replace("…", "")} ${r.name}`);
      if (label.endsWith("…")) pb.setAttribute("aria-busy", "true");
      else pb.removeAttribute("aria-busy");
    }

    // memory axis: Load when unloaded, Unload when loaded
    const mb = r.memBtn;
    const inMem = ms === "loaded" || ms === "loading" || ms === "unloading";
    mb.dataset.action = inMem ? "unload" : "load";
    let label = inMem ? "Unload" : "Load", title = "";
    let disabled = off || pending === "load" || pending === "unload";
    if (ms === "loading" || pending === "load") label = "Loading…";
    else if (ms === "unloading" || pending === "unload") label = "Unloading…";
    if (ms === "loading" || ms === "unloading") disabled = true;
    if (ms === "loaded" && busy && !pending) {
      disabled = true;
      title = `${plural(m.in_flight, "request")} in flight: unload when it is idle`;
    }
    if (!inMem && ps === "stopping") disabled = true;
    if (!inMem && m.quarantined) {
      disabled = true;
      title = "quarantined after repeated crashes: Start it first";
    }
    mb.disabled = disabled;
    mb.title = title;
    mb.textContent = label;
    mb.setAttribute("aria-label", `${label.replace("…", "")} ${r.name}`);
    if (label.endsWith("…")) mb.setAttribute("aria-busy", "true");
    else mb.removeAttribute("aria-busy");
  }

  // ---------------------------------------------------------------- actions

  const ACTION_DONE = {
    start: (m) => `started (pid ${m.pid ?? "?"}, port ${m.port ?? "?"})`,
    stop: () => "stopped",
    load: (m) => `loaded${fmtBytes(m.memory_bytes) ? ` (${fmtBytes(m.memory_bytes)})` : ""}`,
    unload: () => "unloaded",
  };

  async function act(name, action) {
    if (!action || st.pending.has(name)) return;
    st.pending.set(name, action);
    const r0 = st.rows.get(name);
    if (r0) updateButtons(r0);
    const res = await call("POST", `/hub/models/${encodeURIComponent(name)}/${action}`);
    st.pending.delete(name);
    if (res.ok) {
      const entry = res.body && res.body.entry;
      // while live, the event stream already carries the change; otherwise show it now
      if (st.conn !== "live" && entry && entry.name) st.models.set(entry.name, entry);
      if (adminKey()) st.keyRejected = false;
      toast({ kind: "ok", title: `${name}: ${ACTION_DONE[action] ? ACTION_DONE[action](entry || {}) : action + " done"}` });
    } else {
      failToast(`${cap(action)} ${name} failed`, res);
    }
    scheduleRender();
    // the moment a button comes back it should be where the keyboard is, if it was there
    const r = st.rows.get(name);
    if (r) updateButtons(r);
  }
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

  function failToast(title, res) {
    const e = res.error || { title: String(res.status), message: "failed" };
    if (res.status === 401) {
      st.keyRejected = true;
      renderHeader();
      toast({
        kind: "error",
        title: `${title}: 401 unauthorized`,
        body: `${adminKey() ? "The admin key was refused." : "This hub needs its admin key."}\n${e.message}`,
        actions: [{ label: adminKey() ? "Change admin key" : "Enter admin key", run: () => openKeyDialog() }],
      });
      return;
    }
    toast({ kind: "error", title: `${title} (${e.title})`, body: e.message + (e.param ? `\nparam: ${e.param}` : "") });
  }

  async function reloadConfig() {
    if (st.hubBusy) return;
    st.hubBusy = "reload";
    renderHeader();
    const res = await call("POST", "/hub/reload");
    st.hubBusy = null;
    renderHeader();
    if (!res.ok) {
      failToast("Reload failed", res);
      return;
    }
    const b = res.body || {};
    const parts = ["added", "started", "updated", "restarted", "stopped", "unchanged"]
      .filter((k) => Array.isArray(b[k]) && b[k].length)
      .map((k) => `${k}: ${b[k].join(", ")}`);
    toast({ kind: "ok", title: "Configuration reloaded", body: parts.join("\n") || "nothing changed" });
    refreshSoon();
  }

  async function shutdown() {
    closeDialog($("#shutdown-dialog"));
    if (st.hubBusy) return;
    st.hubBusy = "shutdown";
    renderHeader();
    const res = await call("POST", "/hub/shutdown");
    st.hubBusy = null;
    if (!res.ok) {
      renderHeader();
      failToast("Shutdown failed", res);
      return;
    }
    st.shutDownByUs = true;
    renderHeader();
    toast({ kind: "ok", title: "The hub is shutting down", body: "Workers are being stopped; the page will lose its connection." });
  }

  // ---------------------------------------------------------------- logs

  function openLogs(r) {
    const section = r.root.querySelector(".logs");
    const body = section.querySelector(".logs-body");
    const stateEl = section.querySelector(".logs-state");
    const retry = section.querySelector(".logs-retry");
    section.querySelector(".logs-title").textContent = `Logs · ${r.name}`;
    section.hidden = false;
    r.logsBtn.setAttribute("aria-expanded", "true");
    let ctl = null;
    let count = 0;

    const atBottom = () => body.scrollHeight - body.scrollTop - body.clientHeight < 24;
    const lineEl = (text) => {
      const lvl = /\b(error|fatal)\b/i.test(text) ? "ln-error" : /\bwarn(ing)?\b/i.test(text) ? "ln-warn" : /\bdebug\b/.test(text) ? "ln-debug" : "";
      return el("div", { class: lvl, text });
    };
    const add = (lines) => {
      const stick = atBottom();
      const none = body.querySelector(".none");
      if (none) none.remove();
      body.append(...lines.map(lineEl));
      count += lines.length;
      while (body.childElementCount > LOG_KEEP) body.firstChild.remove();
      if (stick) body.scrollTop = body.scrollHeight;
    };
    const setState = (text, cls = "") => {
      stateEl.textContent = text;
      stateEl.className = `logs-state ${cls}`;
    };

    const connect = () => {
      if (ctl) ctl.abort();
      const my = new AbortController();
      ctl = my;
      retry.hidden = true;
      setState("connecting…");
      body.replaceChildren();
      count = 0;
      readSSE(`/hub/models/${encodeURIComponent(r.name)}/logs?tail=${LOG_TAIL}&follow=1`, {
        signal: my.signal,
        onEvent: (ev) => {
          if (my !== ctl) return;
          if (Array.isArray(ev.lines)) {
            add(ev.lines);
            body.scrollTop = body.scrollHeight;
            if (!ev.lines.length) body.append(el("div", { class: "none", text: "No output yet." }));
            setState(`following · last ${LOG_TAIL} lines`, "live");
          } else if (typeof ev.line === "string") {
            add([ev.line]);
          }
        },
      })
        .then(() => {
          if (my !== ctl) return;
          setState("stream ended", "bad");
          retry.hidden = false;
        })
        .catch((err) => {
          if (my !== ctl || err.name === "AbortError") return;
          if (err.http && err.http.status === 401) {
            st.keyRejected = true;
            renderHeader();
            setState("401: the logs need the admin key", "bad");
          } else {
            setState(err.http ? `${err.http.title}: ${err.http.message}` : `disconnected: ${err.message}`, "bad");
          }
          retry.hidden = false;
        });
    };

    const onRetry = () => connect();
    const onClose = () => r.logs && r.logs.close();
    retry.addEventListener("click", onRetry);
    section.querySelector(".logs-close").addEventListener("click", onClose);
    r.logs = {
      close() {
        if (ctl) ctl.abort();
        ctl = null;
        retry.removeEventListener("click", onRetry);
        section.querySelector(".logs-close").removeEventListener("click", onClose);
        section.hidden = true;
        r.logsBtn.setAttribute("aria-expanded", "false");
        r.logs = null;
        if (section.contains(document.activeElement)) r.logsBtn.focus();
      },
      reconnect: connect,
    };
    connect();
  }

  // ---------------------------------------------------------------- toasts

  function toast({ kind = "info", title, body, actions = [], timeoutMs }) {
    const box = $("#toasts");
    const t = el("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", "data-kind": kind });
    const close = () => t.remove();
    t.append(
      el("div", { class: "toast-title", text: title }),
      el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", title: "Dismiss", onclick: close }, "×"),
    );
    if (body) t.append(el("div", { class: "toast-body", text: body }));
    if (actions.length)
      t.append(el("div", { class: "toast-actions" }, ...actions.map((a) => el("button", { type: "button", class: "btn btn-small", onclick: () => { close(); a.run(); } }, a.label))));
    box.append(t);
    while (box.childElementCount > 6) box.firstChild.remove();
    // errors stay until dismissed: they are the part operators need to read in full
    const ms = timeoutMs ?? (kind === "error" ? 0 : 5000);
    if (ms > 0) {
      let timer = setTimeout(close, ms);
      t.addEventListener("mouseenter", () => clearTimeout(timer));
      t.addEventListener("mouseleave", () => (timer = setTimeout(close, 2000)));
      t.addEventListener("focusin", () => clearTimeout(timer));
    }
    return t;
  }

  // ---------------------------------------------------------------- admin key

  function openDialog(d) {
    if (!d.open) d.showModal();
  }
  function closeDialog(d) {
    if (d.open) d.close();
  }

  function openKeyDialog() {
    const d = $("#key-dialog");
    const input = $("#key-input");
    input.value = adminKey();
    const note = $("#key-note");
    note.hidden = !st.keyRejected;
    note.textContent = st.keyRejected ? "The hub refused the current key (401)." : "";
    $("#key-forget").hidden = !adminKey();
    openDialog(d);
    input.focus();
  }

  function maybeAskKey() {
    if (!st.meta || !st.meta.admin_key_required || adminKey()) return;
    if (sessionStorage.getItem(ASKED_STORE)) return;
    sessionStorage.setItem(ASKED_STORE, "1");
    openKeyDialog();
  }

  function saveKey(value) {
    value = value.trim();
    if (value) sessionStorage.setItem(KEY_STORE, value);
    else sessionStorage.removeItem(KEY_STORE);
    st.keyRejected = false;
    for (const r of st.rows.values()) if (r.logs) r.logs.reconnect();
    renderHeader();
  }

  // ---------------------------------------------------------------- wiring

  function copyBaseUrl() {
    const input = $("#base-url");
    const done = () => toast({ kind: "ok", title: "Copied the base URL", body: input.value, timeoutMs: 2500 });
    const fallback = () => {
      input.focus();
      input.select();
      let ok = false;
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
      if (ok) done();
      else toast({ kind: "info", title: "Select the URL and copy it", body: "The browser did not allow copying from this page.", timeoutMs: 4000 });
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(input.value).then(done, fallback);
    else fallback();
  }

  function init() {
    $("#reload-btn").addEventListener("click", reloadConfig);
    $("#shutdown-btn").addEventListener("click", () => {
      const n = [...st.models.values()].filter((m) => m.process_state !== "stopped" && m.process_state !== "failed").length;
      $("#shutdown-text").textContent =
        `${n ? `${plural(n, "running worker")} will be stopped` : "No worker is running"}, and the endpoint ` +
        `${st.meta ? `${st.meta.host}:${st.meta.port} ` : ""}stops answering. It has to be started again from the command line.`;
      openDialog($("#shutdown-dialog"));
    });
    $("#shutdown-cancel").addEventListener("click", () => closeDialog($("#shutdown-dialog")));
    $("#shutdown-confirm").addEventListener("click", shutdown);
    $("#copy-btn").addEventListener("click", copyBaseUrl);
    $("#base-url").addEventListener("click", (e) => e.target.select());
    $("#key-btn").addEventListener("click", openKeyDialog);
    $("#key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      saveKey($("#key-input").value);
      closeDialog($("#key-dialog"));
      toast({ kind: "ok", title: adminKey() ? "Admin key saved for this tab" : "Admin key cleared", timeoutMs: 2500 });
    });
    $("#key-cancel").addEventListener("click", () => closeDialog($("#key-dialog")));
    $("#key-forget").addEventListener("click", () => {
      saveKey("");
      closeDialog($("#key-dialog"));
    });

    setInterval(renderTicking, 1000);
    renderHeader();
    connectEvents();
    // first paint should not wait for the stream if it is slow to open
    setTimeout(() => {
      if (!st.meta) poll();
    }, 1500);
  }

  init();
})();
