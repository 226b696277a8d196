// quant_models.test.mjs — the models people actually have, in synthetic form: a Qwen-like model
// with a real Qwen 3 BPE vocabulary and ChatML template in a Q4_K_M mix, and a Llama-3-like one
// in Q8_0, served by `modelhub serve` and through the hub like any other model.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { SRC, startServe, startHub, postJson, postStream, getJson, synth, modelhub } from "./lib.mjs";

const data = path.join(SRC, "tests", "data");
let qwen, llama;

before(() => {
  qwen = synth("qwen-q4km", ["--arch", "qwen2", "--dim", "256", "--layers", "2", "--heads", "4",
    "--kv-heads", "2", "--ff", "768", "--type", "q4_k_m", "--vocab-from", path.join(data, "ggml-vocab-qwen3.gguf"),
    "--chat-template", path.join(data, "chat_templates", "chatml.jinja"), "--seed", "5"]);
  llama = synth("llama3-q8", ["--arch", "llama", "--dim", "256", "--layers", "2", "--heads", "4",
    "--kv-heads", "2", "--ff", "768", "--type", "q8_0", "--rope-freqs", "--vocab-from",
    path.join(data, "ggml-vocab-llama3.gguf"), "--chat-template", path.join(data, "chat_templates", "llama3.jinja"),
    "--seed", "6"]);
});

describe("serve", () => {
  test("a Q4_K_M qwen2 model with a BPE vocab: chat, streamed chat, completion, embeddings", async () => {
    const info = modelhub(["inspect", qwen]);
    assert.match(info, /q4_k/);
    assert.match(info, /q6_k/);
    const s = await startServe(["-m", qwen, "--alias", "qwen"]);
    try {
      const messages = [{ role: "user", content: "Hello there" }];
      const r = await postJson(`${s.base}/v1/chat/completions`, { messages, max_tokens: 16, temperature: 0 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.usage.completion_tokens > 0, true);
      // ChatML: the special tokens are single tokens of the vocab, so the prompt is short
      assert.ok(r.body.usage.prompt_tokens < 30, `prompt of ${r.body.usage.prompt_tokens} tokens`);
      assert.match(s.stderr(), /chat format chatml/);
      const st = await postStream(`${s.base}/v1/chat/completions`, { messages, max_tokens: 16, temperature: 0, stream: true });
      const text = st.events.slice(1, -2).map((e) => e.choices[0].delta.content ?? "").join("");
      assert.equal(text, r.body.choices[0].message.content);
      const c = await postJson(`${s.base}/v1/completions`, { prompt: "The capital of France is", max_tokens: 8 });
      assert.equal(c.status, 200);
      const e = await postJson(`${s.base}/v1/embeddings`, { input: "hello" });
      assert.equal(e.body.data[0].embedding.length, 256);
    } finally {
      await s.stop();
    }
  });
});

describe("hub", () => {
  let hub;
  after(async () => hub && hub.stop());

  test("Q4_K_M and Q8_0 models in one max_loaded: 1 group", async () => {
    hub = await startHub(`models:
  - name: qwen
    model_path: ${qwen}
    group: g
  - name: llama
    model_path: ${llama}
    group: g
groups:
  - name: g
    max_loaded: 1
`);
    for (const model of ["qwen", "llama", "qwen"]) {
      const r = await postJson(`${hub.base}/v1/chat/completions`, {
        model, messages: [{ role: "user", content: "Hi" }], max_tokens: 8, temperature: 0,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal((await hub.model(model)).memory_state, "loaded");
    }
    const s = await hub.status();
    assert.equal(s.groups[0].loaded, 1);
    assert.equal((await hub.model("llama")).last_unload_reason, "capacity");
    const models = await getJson(`${hub.base}/v1/models`);
    assert.deepEqual(models.body.data.map((m) => m.id).sort(), ["llama", "qwen"]);
  });
});
