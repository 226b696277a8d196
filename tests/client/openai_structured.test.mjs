// openai_structured.test.mjs — structured output through the official `openai` client:
// response_format json_schema by hand and from a zod schema (openai/helpers/zod), parsed by the
// SDK's own chat.completions.parse.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { BadRequestError } from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";
import { STORIES, startServe } from "../e2e/lib.mjs";

let s, client;
before(async () => {
  s = await startServe(["-m", STORIES, "--alias", "stories"]);
  client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(async () => s.stop());

const messages = [{ role: "user", content: "A pet, as JSON" }];

test("response_format json_schema by hand", async () => {
  const schema = {
    type: "object",
    properties: { name: { type: "string", maxLength: 20 }, legs: { type: "integer" }, kind: { enum: ["cat", "dog"] } },
    required: ["name", "legs", "kind"],
    additionalProperties: false,
  };
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: "stories", messages, temperature: 1, seed, max_tokens: 200,
      response_format: { type: "json_schema", json_schema: { name: "pet", schema, strict: true } },
    });
    const pet = JSON.parse(r.choices[0].message.content);
    assert.deepEqual(Object.keys(pet), ["name", "legs", "kind"]);
    assert.ok(Number.isInteger(pet.legs) && ["cat", "dog"].includes(pet.kind) && pet.name.length <= 20);
    assert.equal(r.choices[0].finish_reason, "stop");
  }
});

test("zodResponseFormat and chat.completions.parse", async () => {
  const Pet = z.object({
    name: z.string(),
    age: z.number().int(),
    kind: z.enum(["cat", "dog", "bird"]),
    tags: z.array(z.string()),
    owner: z.object({ first: z.string(), ok: z.boolean() }),
    nick: z.string().nullable(),
    score: z.union([z.number(), z.null()]),
  });
  for (const seed of [1, 2, 3, 4]) {
    const r = await client.chat.completions.parse({
      model: "stories", messages, temperature: 1, seed, max_tokens: 400,
      response_format: zodResponseFormat(Pet, "pet"),
    });
    const msg = r.choices[0].message;
    assert.ok(msg.parsed, msg.content);
    assert.deepEqual(Pet.parse(msg.parsed), msg.parsed);
  }
});

test("json_object through the SDK, streamed", async () => {
  const stream = await client.chat.completions.create({
    model: "stories", messages, temperature: 1, seed: 9, max_tokens: 100, stream: true,
    response_format: { type: "json_object" },
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  const doc = JSON.parse(text);
  assert.equal(typeof doc, "object");
  assert.ok(doc !== null && !Array.isArray(doc));
});

test("an unsupported schema keyword raises BadRequestError naming the schema", async () => {
  await assert.rejects(
    client.chat.completions.create({
      model: "stories", messages, max_tokens: 5,
      response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", pattern: "a" } } },
    }),
    (e) => e instanceof BadRequestError && e.param === "response_format.json_schema.schema" && /pattern/.test(e.message));
});
