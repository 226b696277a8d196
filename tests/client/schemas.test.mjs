// schemas.test.mjs — every kind of response of `modelhub serve` and of the hub, validated with ajv
// against the JSON Schema files in tests/data/openai-schemas (hand-written from OpenAI's OpenAPI
// spec). A failure names the schema, the JSON path and the offending response.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import Ajv from "ajv";
import { SRC, getJson, postJson, postStream } from "../e2e/lib.mjs";
import { forEachTarget } from "./targets.mjs";

const SCHEMA_DIR = path.join(SRC, "tests", "data", "openai-schemas");
const ajv = new Ajv({ allErrors: true, strict: true });
for (const f of readdirSync(SCHEMA_DIR).filter((f) => f.endsWith(".json"))) {
  ajv.addSchema(JSON.parse(readFileSync(path.join(SCHEMA_DIR, f), "utf8")), f.replace(/\.json$/, ""));
}

function check(schema, body, what = schema) {
  const validate = ajv.getSchema(schema);
  assert.ok(validate, `no schema ${schema}`);
  if (!validate(body)) {
    assert.fail(`${what} does not match ${schema}:\n${ajv.errorsText(validate.errors, { separator: "\n" })}\n` +
      `response: ${JSON.stringify(body).slice(0, 2000)}`);
  }
}

const PROMPT = [{ role: "user", content: "Once upon a time" }];

/** The same checks against any OpenAI-compatible base URL that serves `model`. */
function suite(name, start) {
  describe(name, () => {
    let srv, base, model;
    before(async () => ({ srv, base, model } = await start()));
    after(async () => srv?.stop());

    test("chat, not streamed", async () => {
      const r = await postJson(`${base}/v1/chat/completions`,
        { model, messages: PROMPT, max_tokens: 8, temperature: 0 });
      assert.equal(r.status, 200);
      check("CreateChatCompletionResponse", r.body);
    });

    test("chat with logprobs, top_logprobs 3, n 2", async () => {
      const r = await postJson(`${base}/v1/chat/completions`,
        { model, messages: PROMPT, max_tokens: 8, temperature: 0.8, seed: 1, n: 2,
          logprobs: true, top_logprobs: 3 });
      assert.equal(r.status, 200);
      check("CreateChatCompletionResponse", r.body);
      assert.equal(r.body.choices.length, 2);
      for (const c of r.body.choices) {
        assert.ok(c.logprobs.content.length > 0);
        for (const t of c.logprobs.content) assert.equal(t.top_logprobs.length, 3);
      }
    });

    test("chat streamed, every chunk, with include_usage", async () => {
      const r = await postStream(`${base}/v1/chat/completions`,
        { model, messages: PROMPT, max_tokens: 8, temperature: 0, stream: true,
          stream_options: { include_usage: true } });
      assert.equal(r.status, 200);
      assert.equal(r.events.at(-1), "[DONE]");
      const chunks = r.events.slice(0, -1);
      chunks.forEach((c, i) => check("CreateChatCompletionStreamResponse", c, `chunk ${i}`));
      const last = chunks.at(-1);
      assert.deepEqual(last.choices, [], "the usage chunk has no choices");
      assert.ok(last.usage.total_tokens > 0);
      for (const c of chunks.slice(0, -1)) assert.equal(c.usage ?? null, null);
    });

    test("chat streamed with logprobs and n 2", async () => {
      const r = await postStream(`${base}/v1/chat/completions`,
        { model, messages: PROMPT, max_tokens: 6, temperature: 0.8, seed: 2, n: 2, stream: true,
          logprobs: true, top_logprobs: 2 });
      assert.equal(r.status, 200);
      const chunks = r.events.slice(0, -1);
      chunks.forEach((c, i) => check("CreateChatCompletionStreamResponse", c, `chunk ${i}`));
      assert.ok(chunks.some((c) => c.choices[0]?.logprobs?.content?.length > 0));
    });

    test("legacy completions with logprobs 2, not streamed", async () => {
      const r = await postJson(`${base}/v1/completions`,
        { model, prompt: "Once upon a time", max_tokens: 8, temperature: 0, logprobs: 2 });
      assert.equal(r.status, 200);
      check("CreateCompletionResponse", r.body);
      const lp = r.body.choices[0].logprobs;
      assert.equal(lp.tokens.length, lp.token_logprobs.length);
      assert.equal(lp.tokens.length, lp.text_offset.length);
      assert.equal(lp.tokens.join(""), r.body.choices[0].text);
    });

    test("legacy completions streamed, with and without logprobs", async () => {
      for (const extra of [{}, { logprobs: 2 }]) {
        const r = await postStream(`${base}/v1/completions`,
          { model, prompt: "Once upon a time", max_tokens: 8, temperature: 0, stream: true, ...extra });
        assert.equal(r.status, 200);
        assert.equal(r.events.at(-1), "[DONE]");
        const chunks = r.events.slice(0, -1);
        chunks.forEach((c, i) => check("CreateCompletionStreamResponse", c, `event ${i}`));
        const ended = chunks.filter((c) => c.choices.some((ch) => ch.finish_reason !== null));
        assert.ok(ended.length >= 1, "one event carries the finish_reason");
        ended.forEach((c, i) => check("CreateCompletionResponse", c, `final event ${i}`));
      }
    });

    test("embeddings (float)", async () => {
      const r = await postJson(`${base}/v1/embeddings`,
        { model, input: ["a cat", "a dog"], encoding_format: "float" });
      assert.equal(r.status, 200);
      check("CreateEmbeddingResponse", r.body);
      assert.equal(r.body.data.length, 2);
    });

    test("/v1/models", async () => {
      const r = await getJson(`${base}/v1/models`);
      assert.equal(r.status, 200);
      check("ListModelsResponse", r.body);
      assert.ok(r.body.data.some((m) => m.id === model));
    });

    test("errors: a bad field (400) and an unknown model (404)", async () => {
      const bad = await postJson(`${base}/v1/chat/completions`,
        { model, messages: PROMPT, temperature: "hot" });
      assert.equal(bad.status, 400);
      check("ErrorResponse", bad.body, "400 body");
      const missing = await postJson(`${base}/v1/chat/completions`,
        { model: "no-such-model", messages: PROMPT });
      assert.equal(missing.status, 404);
      check("ErrorResponse", missing.body, "404 body");
      const badJson = await postJson(`${base}/v1/completions`, "{not json");
      assert.equal(badJson.status, 400);
      check("ErrorResponse", badJson.body, "bad JSON body");
    });
  });
}

forEachTarget(suite, { key: false });
