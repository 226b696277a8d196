// openai_tools.test.mjs — the official `openai` npm client, serve and hub: forced tool calls and a
// full round trip (call, tool result back with role "tool", answer), streamed tool calls, and
// response_format json_schema / json_object. Written against OpenAI's semantics; depends on
// constrained decoding (a tiny model only produces well-formed calls and JSON when sampling is
// constrained).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import Ajv from "ajv";
import OpenAI from "openai";
import { SRC } from "../e2e/lib.mjs";
import { forEachTarget } from "./targets.mjs";

const SCHEMA_DIR = path.join(SRC, "tests", "data", "openai-schemas");
const ajv = new Ajv({ allErrors: true, strict: false });
for (const f of readdirSync(SCHEMA_DIR).filter((f) => f.endsWith(".json"))) {
  ajv.addSchema(JSON.parse(readFileSync(path.join(SCHEMA_DIR, f), "utf8")), f.replace(/\.json$/, ""));
}
function check(schema, body, what = schema) {
  const validate = typeof schema === "string" ? ajv.getSchema(schema) : ajv.compile(schema);
  if (!validate(body)) {
    assert.fail(`${what}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 2000)}`);
  }
}

const WEATHER_PARAMS = {
  type: "object",
  properties: {
    city: { type: "string", enum: ["Paris", "Rome", "Oslo"] },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
  },
  required: ["city", "unit"],
  additionalProperties: false,
};
const TOOLS = [
  { type: "function",
    function: { name: "get_weather", description: "Current weather in a city", parameters: WEATHER_PARAMS } },
  { type: "function",
    function: { name: "get_time", description: "Current time", parameters: { type: "object", properties: {} } } },
];
const ASK = [{ role: "user", content: "What is the weather in Paris?" }];

function suite(name, start) {
  describe(name, () => {
    let srv, client, model;
    before(async () => {
      let base;
      ({ srv, base, model } = await start());
      client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "sk-test", maxRetries: 0 });
    });
    after(async () => srv?.stop());

    test("tool_choice required gives message.tool_calls; the result sent back gets an answer", async () => {
      const r = await client.chat.completions.create({
        model, messages: ASK, tools: TOOLS, tool_choice: "required", temperature: 0, max_tokens: 256,
      });
      check("CreateChatCompletionResponse", r);
      const choice = r.choices[0];
      assert.equal(choice.finish_reason, "tool_calls");
      const calls = choice.message.tool_calls;
      assert.ok(calls?.length >= 1, "at least one call");
      for (const call of calls) {
        check("ChatCompletionMessageToolCall", call);
        assert.ok(["get_weather", "get_time"].includes(call.function.name));
        const args = JSON.parse(call.function.arguments);
        if (call.function.name === "get_weather") check(WEATHER_PARAMS, args, "arguments");
      }
      const ids = new Set(calls.map((c) => c.id));
      assert.equal(ids.size, calls.length, "call ids are distinct");

      const answer = await client.chat.completions.create({
        model, temperature: 0, max_tokens: 16, tools: TOOLS, tool_choice: "none",
        messages: [
          ...ASK,
          choice.message,
          ...calls.map((c) => ({ role: "tool", tool_call_id: c.id,
                                 content: JSON.stringify({ temperature: 21, sky: "clear" }) })),
        ],
      });
      check("CreateChatCompletionResponse", answer);
      assert.ok(["stop", "length"].includes(answer.choices[0].finish_reason));
      assert.equal(typeof answer.choices[0].message.content, "string");
      assert.ok(answer.choices[0].message.content.length > 0);
      assert.equal(answer.choices[0].message.tool_calls ?? undefined, undefined);
    });

    test("a named tool_choice calls exactly that function", async () => {
      const r = await client.chat.completions.create({
        model, messages: ASK, tools: TOOLS, temperature: 0, max_tokens: 256,
        tool_choice: { type: "function", function: { name: "get_weather" } },
      });
      const calls = r.choices[0].message.tool_calls;
      assert.ok(calls.length >= 1);
      for (const call of calls) {
        assert.equal(call.function.name, "get_weather");
        check(WEATHER_PARAMS, JSON.parse(call.function.arguments), "arguments");
      }
    });

    test("streamed forced call: delta.tool_calls chunks assemble into the same call", async () => {
      const opts = { model, messages: ASK, tools: TOOLS, temperature: 0, max_tokens: 256,
                     tool_choice: { type: "function", function: { name: "get_weather" } } };
      const whole = await client.chat.completions.create(opts);
      const stream = await client.chat.completions.create({ ...opts, stream: true });
      const byIndex = new Map();
      let finish = null;
      for await (const chunk of stream) {
        check("CreateChatCompletionStreamResponse", chunk, "chunk");
        const c = chunk.choices[0];
        if (!c) continue;
        finish = c.finish_reason ?? finish;
        for (const d of c.delta.tool_calls ?? []) {
          const acc = byIndex.get(d.index) ?? { id: "", name: "", arguments: "" };
          if (d.id) acc.id = d.id;
          if (d.function?.name) acc.name += d.function.name;
          if (d.function?.arguments) acc.arguments += d.function.arguments;
          byIndex.set(d.index, acc);
        }
      }
      assert.equal(finish, "tool_calls");
      const streamed = [...byIndex.keys()].sort().map((i) => byIndex.get(i));
      const expected = whole.choices[0].message.tool_calls;
      assert.equal(streamed.length, expected.length);
      streamed.forEach((s, i) => {
        assert.ok(s.id.length > 0);
        assert.equal(s.name, expected[i].function.name);
        assert.deepEqual(JSON.parse(s.arguments), JSON.parse(expected[i].function.arguments));
      });
    });

    test("response_format json_schema: the content parses and follows the schema", async () => {
      const schema = {
        type: "object",
        properties: { hero: { type: "string", enum: ["Lily", "Tom", "Ben"] }, happy: { type: "boolean" } },
        required: ["hero", "happy"],
        additionalProperties: false,
      };
      for (const seed of [1, 2, 3]) {
        const r = await client.chat.completions.create({
          model, messages: [{ role: "user", content: "Tell me about the hero as JSON." }],
          temperature: 1, seed, max_tokens: 48,
          response_format: { type: "json_schema", json_schema: { name: "hero", strict: true, schema } },
        });
        check("CreateChatCompletionResponse", r);
        assert.equal(r.choices[0].finish_reason, "stop");
        check(schema, JSON.parse(r.choices[0].message.content), `seed ${seed} content`);
      }
    });

    test("response_format json_object: the content is a JSON object", async () => {
      const r = await client.chat.completions.create({
        model, messages: [{ role: "user", content: "Answer in JSON." }], temperature: 0, max_tokens: 64,
        response_format: { type: "json_object" },
      });
      if (r.choices[0].finish_reason === "stop") {
        const v = JSON.parse(r.choices[0].message.content);
        assert.equal(typeof v, "object");
        assert.ok(v !== null && !Array.isArray(v));
      } else {
        assert.equal(r.choices[0].finish_reason, "length");
        assert.match(r.choices[0].message.content, /^\s*\{/);
      }
    });
  });
}

forEachTarget(suite);
