// openai_hub.test.mjs — the official `openai` npm client through the hub (two models, a group).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { NotFoundError, AuthenticationError } from "openai";
import { STORIES, startHub } from "../e2e/lib.mjs";

let hub, client;
before(async () => {
  hub = await startHub(`api_keys: [sk-test]
models:
  - name: story-a
    model_path: ${STORIES}
    group: g
  - name: story-b
    model_path: ${STORIES}
    group: g
    aliases: [gpt-4o-mini]
groups:
  - name: g
    max_loaded: 1
`);
  client = new OpenAI({ baseURL: `${hub.base}/v1`, apiKey: "sk-test", maxRetries: 0 });
});
after(async () => hub.stop());

test("models.list shows every configured model with its lifecycle metadata", async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id).sort(), ["story-a", "story-b"]);
  assert.ok(page.data.every((m) => typeof m.metadata.memory_state === "string"));
});

test("chat, then chat streamed on the other model of the group (a switch)", async () => {
  const r = await client.chat.completions.create({
    model: "story-a", messages: [{ role: "user", content: "Once upon a time" }], temperature: 0, max_tokens: 12,
  });
  assert.equal(r.choices[0].message.role, "assistant");
  assert.ok(r.choices[0].message.content.length > 0);
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini", messages: [{ role: "user", content: "Once upon a time" }], temperature: 0, max_tokens: 12,
    stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.equal(text, r.choices[0].message.content, "same model file, same greedy answer");
  const s = await hub.status();
  assert.equal(s.models.find((m) => m.name === "story-a").last_unload_reason, "capacity");
});

test("completions and embeddings", async () => {
  const c = await client.completions.create({ model: "story-a", prompt: "Once upon a time", max_tokens: 8, temperature: 0 });
  assert.equal(c.choices[0].text, ", there was a little girl");
  const e = await client.embeddings.create({ model: "story-b", input: ["a", "b"] });
  assert.equal(e.data.length, 2);
  assert.equal(e.data[1].embedding.length, 64);
});

test("errors map to the SDK's classes", async () => {
  await assert.rejects(client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof NotFoundError);
  const noKey = new OpenAI({ baseURL: `${hub.base}/v1`, apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(noKey.models.list(), (e) => e instanceof AuthenticationError);
});
