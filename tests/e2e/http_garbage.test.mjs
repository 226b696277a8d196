// http_garbage.test.mjs — malformed HTTP and JSON thrown at serve and at the hub over raw sockets:
// every one gets an error or a closed connection, never a crash, and the server keeps serving.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { STORIES, startServe, startHub, postJson, getJson } from "./lib.mjs";

/** Send raw bytes, collect whatever comes back until the server closes or 3 s pass. */
function raw(port, bytes, { halfClose = true } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let out = "";
    const done = () => { sock.destroy(); resolve(out); };
    const timer = setTimeout(done, 3000);
    sock.on("data", (d) => (out += d.toString("latin1")));
    sock.on("close", () => { clearTimeout(timer); resolve(out); });
    sock.on("error", () => { clearTimeout(timer); resolve(out); });
    sock.write(bytes, () => { if (halfClose) sock.end(); });
  });
}

const garbage = [
  "\x00\x01\x02\x03garbage\r\n\r\n",
  "GET\r\n\r\n",
  "GET / HTTP/9.9\r\n\r\n",
  "BREW /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET /" + "a".repeat(100000) + " HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET /health HTTP/1.1\r\n" + "X-Big: " + "b".repeat(200000) + "\r\n\r\n",
  "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"messages\":",
  "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
  "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
  "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nxx\r\n",
  "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n",
  "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\x01",
  "GET /hub/models/%ZZ/logs HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET /hub/models/../../etc/passwd/logs HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET /hub/assets/..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
];

const badJson = [
  "", "null", "[]", "\"str\"", "{", "{\"model\":}", "{\"model\": 1}", "{\"model\": \"x\", \"messages\": {}}",
  "{\"messages\": [{\"role\": \"user\", \"content\": \"" + "\\ud800".repeat(100) + "\"}]}",
  "{\"messages\": [" + "[".repeat(5000) + "]}", "{\"a\": 1e999999}", "{\"prompt\": \"x\", \"max_tokens\": 1e300}",
  "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": [1, 2]}",
  "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"seed\": 1.5}",
];

async function hammer(base, port) {
  for (const g of garbage) {
    const reply = await raw(port, Buffer.from(g, "latin1"));
    assert.ok(reply === "" || /^HTTP\/1\.[01] [1-5]\d\d/.test(reply), `odd reply to ${JSON.stringify(g.slice(0, 60))}: ${reply.slice(0, 80)}`);
    assert.doesNotMatch(reply, /root:x:0:0/, "no path traversal");
  }
  // a client that connects and says nothing, and one that sends half a request and vanishes
  const idle = net.connect(port, "127.0.0.1");
  const half = net.connect(port, "127.0.0.1", () => half.write("POST /v1/completions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"pr"));
  for (const body of badJson) {
    for (const url of ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]) {
      const r = await postJson(base + url, body);
      assert.ok(r.status >= 400 && r.status < 500, `${url} ${JSON.stringify(body.slice(0, 60))} -> ${r.status}`);
      assert.ok(r.body.error && typeof r.body.error.message === "string", "OpenAI envelope");
    }
  }
  half.destroy();
  idle.destroy();
}

let serve, hub;
before(async () => {
  serve = await startServe(["-m", STORIES]);
  hub = await startHub(`models:\n  - name: tiny\n    model_path: ${STORIES}\n    default: true\n`);
});
after(async () => {
  await serve.stop();
  await hub.stop();
});

test("serve survives garbage and keeps serving", async () => {
  await hammer(serve.base, serve.port);
  const r = await postJson(`${serve.base}/v1/completions`, { prompt: "Once upon a time", max_tokens: 4, temperature: 0 });
  assert.equal(r.status, 200);
  assert.equal(serve.child.exitCode, null);
});

test("the hub survives garbage and keeps serving", async () => {
  await hammer(hub.base, hub.port);
  const r = await postJson(`${hub.base}/v1/completions`, { model: "tiny", prompt: "Once upon a time", max_tokens: 4, temperature: 0 });
  assert.equal(r.status, 200);
  assert.equal((await getJson(`${hub.base}/hub/status`)).body.status, "ok");
  assert.equal(hub.child.exitCode, null);
});
