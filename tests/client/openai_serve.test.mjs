// openai_serve.test.mjs — the official `openai` npm client against `modelhub serve`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { NotFoundError, BadRequestError } from "openai";
import { STORIES, startServe } from "../e2e/lib.mjs";

let s, client;
before(async () => {
  s = await startServe(["-m", STORIES, "--alias", "stories"]);
  client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(async () => s.stop());

test("models.list", async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id);
  assert.deepEqual(ids, ["stories"]);
  assert.equal(page.data[0].object, "model");
});

test("chat.completions.create", async () => {
  const r = await client.chat.completions.create({
    model: "stories", messages: [{ role: "user", content: "Once upon a time" }], temperature: 0, max_tokens: 20,
  });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test("chat.completions.create streamed", async () => {
  const plain = await client.chat.completions.create({
    model: "stories", messages: [{ role: "user", content: "Lily" }], temperature: 0, max_tokens: 20,
  });
  const stream = await client.chat.completions.create({
    model: "stories", messages: [{ role: "user", content: "Lily" }], temperature: 0, max_tokens: 20,
    stream: true, stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    text += c.delta.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.ok(chunks > 5);
  assert.equal(text, plain.choices[0].message.content);
  assert.equal(finish, plain.choices[0].finish_reason);
  // same counts; the second identical prompt comes mostly from the slot's cache
  assert.equal(usage.prompt_tokens, plain.usage.prompt_tokens);
  assert.equal(usage.completion_tokens, plain.usage.completion_tokens);
  assert.ok(usage.prompt_tokens_details.cached_tokens > plain.usage.prompt_tokens_details.cached_tokens);
});

test("completions.create", async () => {
  const r = await client.completions.create({ model: "stories", prompt: "Once upon a time", max_tokens: 8, temperature: 0 });
  assert.equal(r.choices[0].text, ", there was a little girl"); // 8 tokens: "g" "ir" "l" are three
});

test("embeddings.create (the SDK asks for base64 and decodes it)", async () => {
  const r = await client.embeddings.create({ model: "stories", input: ["hello", "world"] });
  assert.equal(r.data.length, 2);
  assert.equal(r.data[0].embedding.length, 64);
  const norm = Math.hypot(...r.data[0].embedding);
  assert.ok(Math.abs(norm - 1) < 1e-4);
  const f = await client.embeddings.create({ model: "stories", input: "hello", encoding_format: "float" });
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(f.data[0].embedding[i] - r.data[0].embedding[i]) < 1e-6);
});

test("an unknown model raises NotFoundError; a bad field BadRequestError", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof NotFoundError && e.status === 404 && /no-such-model/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: "stories", messages: [{ role: "user", content: "x" }], temperature: 9 }),
    (e) => e instanceof BadRequestError && e.param === "temperature");
});
