// dialects.test.mjs — the Ollama, Anthropic and OpenAI Responses dialects with their real npm
// clients (ollama, @anthropic-ai/sdk, openai), against `modelhub serve` and through the hub.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { Ollama } from "ollama";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { BIN, STORIES, startServe, startHub } from "../e2e/lib.mjs";

const PROMPT = "Once upon a time";
const WEATHER_TOOLS = [{
  name: "get_weather", description: "Current weather in a city",
  input_schema: { type: "object", properties: { city: { type: "string", enum: ["Paris", "Rome", "Oslo"] },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] } }, required: ["city", "unit"], additionalProperties: false },
}];

function suite(label, start) {
  describe(label, () => {
    let t, ollama, anthropic, openai;
    before(async () => {
      t = await start();
      const auth = t.key ? { Authorization: `Bearer ${t.key}` } : {};
      ollama = new Ollama({ host: t.base, headers: auth });
      anthropic = new Anthropic({ baseURL: t.base, apiKey: null, authToken: t.key ?? "unused", maxRetries: 0 });
      openai = new OpenAI({ baseURL: `${t.base}/v1`, apiKey: t.key ?? "unused", maxRetries: 0 });
      t.fetch = (p, init = {}) =>
        fetch(t.base + p, { ...init, headers: { "Content-Type": "application/json", ...auth, ...(init.headers ?? {}) } });
    });
    after(async () => t.stop());

    test("ollama list, ps, show, version", async () => {
      const tags = await ollama.list();
      assert.ok(tags.models.some((m) => m.name === t.model), JSON.stringify(tags));
      assert.equal(tags.models[0].details.format, "gguf");
      await ollama.generate({ model: t.model, prompt: PROMPT, stream: false, options: { num_predict: 1 } });
      const ps = await ollama.ps();
      assert.ok(ps.models.some((m) => m.name === t.model && m.size > 0), JSON.stringify(ps));
      const show = await ollama.show({ model: t.model });
      assert.equal(show.details.format, "gguf");
      const v = await ollama.version();
      assert.match(v.version, /^\d+\.\d+\.\d+/);
    });

    test("ollama chat, whole and streamed, agree at temperature 0", async () => {
      const options = { temperature: 0, num_predict: 12, seed: 7, top_k: 40, top_p: 0.9, repeat_penalty: 1.0 };
      const messages = [{ role: "user", content: PROMPT }];
      const r = await ollama.chat({ model: t.model, messages, options, stream: false });
      assert.equal(r.done, true);
      assert.equal(r.message.role, "assistant");
      assert.ok(r.message.content.length > 0);
      assert.equal(r.done_reason, "length");
      assert.equal(r.eval_count, 12);
      assert.ok(r.prompt_eval_count > 0);
      assert.ok(r.total_duration > 0 && Number.isInteger(r.total_duration));
      assert.ok(r.prompt_eval_duration > 0 && r.eval_duration > 0, "split at the first token");
      assert.ok(r.prompt_eval_duration + r.eval_duration <= r.total_duration);
      let text = "", last;
      for await (const part of await ollama.chat({ model: t.model, messages, options, stream: true })) {
        text += part.message.content;
        last = part;
      }
      assert.equal(text, r.message.content);
      assert.equal(last.done, true);
      assert.equal(last.eval_count, 12);
      assert.ok(last.eval_duration >= 0 && last.prompt_eval_duration > 0);
    });

    test("ollama generate (templated and raw) with stop", async () => {
      const g = await ollama.generate({ model: t.model, prompt: PROMPT, system: "You tell stories.", stream: false,
        options: { temperature: 0, num_predict: 10 } });
      assert.ok(g.response.length > 0);
      let raw = "";
      for await (const part of await ollama.generate({ model: t.model, prompt: PROMPT, raw: true, stream: true,
        options: { temperature: 0, num_predict: 8 } }))
        raw += part.response;
      assert.equal(raw, ", there was a little girl", "the same greedy text as /v1/completions");
      const stopped = await ollama.generate({ model: t.model, prompt: PROMPT, raw: true, stream: false,
        options: { temperature: 0, num_predict: 8, stop: ["little"] } });
      assert.equal(stopped.response, ", there was a ");
      assert.equal(stopped.done_reason, "stop");
    });

    test("structured output: Ollama format and Responses text.format", async () => {
      const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };
      const r = await ollama.chat({ model: t.model, messages: [{ role: "user", content: PROMPT }], stream: false,
        format: schema, options: { temperature: 0, num_predict: 60 } });
      assert.equal(typeof JSON.parse(r.message.content).a, "number");
      const resp = await openai.responses.create({ model: t.model, input: PROMPT, temperature: 0,
        text: { format: { type: "json_schema", name: "x", schema } } });
      assert.equal(typeof JSON.parse(resp.output_text).a, "number");
      await assert.rejects(ollama.chat({ model: t.model, messages: [{ role: "user", content: "x" }], stream: false,
        format: "yaml" }), (e) => e.status_code === 400 && /format/.test(e.error));
    });

    test("ollama embed", async () => {
      const e = await ollama.embed({ model: t.model, input: ["a", "b"] });
      assert.equal(e.embeddings.length, 2);
      assert.equal(e.embeddings[0].length, 64);
      const one = await ollama.embeddings({ model: t.model, prompt: "a" });
      assert.deepEqual(one.embedding, e.embeddings[0]);
    });

    test("ollama errors: unknown option, unknown model, malformed JSON", async () => {
      await assert.rejects(ollama.chat({ model: t.model, messages: [{ role: "user", content: "x" }], stream: false,
        options: { num_ctx: 512 } }), (e) => e.status_code === 400 && /options\.num_ctx/.test(e.error));
      await assert.rejects(ollama.chat({ model: "nope", messages: [{ role: "user", content: "x" }], stream: false }),
        (e) => e.status_code === 404 && /nope/.test(e.error));
      const bad = await t.fetch("/api/chat", { method: "POST", body: "{bad" });
      assert.equal(bad.status, 400);
      assert.match((await bad.json()).error, /invalid JSON/);
    });

    test("anthropic messages.create and messages.stream", async () => {
      const params = { model: t.model, max_tokens: 12, temperature: 0, system: "You tell stories.",
        messages: [{ role: "user", content: [{ type: "text", text: PROMPT }] }] };
      const m = await anthropic.messages.create(params);
      assert.equal(m.type, "message");
      assert.equal(m.role, "assistant");
      assert.equal(m.content[0].type, "text");
      assert.ok(m.content[0].text.length > 0);
      assert.equal(m.stop_reason, "max_tokens");
      assert.equal(m.usage.output_tokens, 12);
      assert.ok(m.usage.input_tokens > 0);
      const stream = anthropic.messages.stream(params);
      const seen = [];
      stream.on("streamEvent", (ev) => seen.push(ev.type));
      const final = await stream.finalMessage();
      assert.equal(final.content[0].text, m.content[0].text);
      assert.equal(final.stop_reason, "max_tokens");
      assert.equal(final.usage.output_tokens, 12);
      assert.equal(final.usage.input_tokens, m.usage.input_tokens);
      assert.deepEqual([...new Set(seen)], ["message_start", "content_block_start", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]);
      const short = await anthropic.messages.create({ ...params, max_tokens: 200, stop_sequences: ["."] });
      assert.equal(short.stop_reason, "end_turn");
    });

    test("anthropic errors: missing max_tokens, unknown model, unsupported field", async () => {
      await assert.rejects(anthropic.messages.create({ model: t.model, messages: [{ role: "user", content: "x" }] }),
        (e) => e instanceof Anthropic.BadRequestError && /max_tokens/.test(e.error.error.message) &&
          e.error.type === "error" && e.error.error.type === "invalid_request_error");
      await assert.rejects(anthropic.messages.create({ model: "nope", max_tokens: 4,
        messages: [{ role: "user", content: "x" }] }), (e) => e instanceof Anthropic.NotFoundError);
      await assert.rejects(anthropic.messages.create({ model: t.model, max_tokens: 4,
        tools: [{ type: "web_search_20250305", name: "web_search" }], messages: [{ role: "user", content: "x" }] }),
        (e) => e instanceof Anthropic.BadRequestError && /tools\[0\]\.type/.test(e.error.error.message));
    });

    test("anthropic tools: a forced tool_use, streamed the same, then its tool_result gets an answer", async () => {
      const req = { model: t.model, max_tokens: 200, temperature: 0, tools: WEATHER_TOOLS,
                    tool_choice: { type: "tool", name: "get_weather" }, messages: [{ role: "user", content: "Weather in Rome?" }] };
      const r = await anthropic.messages.create(req);
      assert.equal(r.stop_reason, "tool_use", JSON.stringify(r));
      const use = r.content.find((b) => b.type === "tool_use");
      assert.ok(use, JSON.stringify(r.content));
      assert.equal(use.name, "get_weather");
      assert.ok(["Paris", "Rome", "Oslo"].includes(use.input.city), JSON.stringify(use.input));
      assert.ok(["celsius", "fahrenheit"].includes(use.input.unit), JSON.stringify(use.input));
      const stream = anthropic.messages.stream(req);
      const final = await stream.finalMessage();
      const suse = final.content.find((b) => b.type === "tool_use");
      assert.equal(final.stop_reason, "tool_use");
      assert.deepEqual(suse.input, use.input, "streamed input_json_delta assembles into the same input");
      const next = await anthropic.messages.create({ model: t.model, max_tokens: 8, temperature: 0, tools: WEATHER_TOOLS,
        messages: [...req.messages, { role: "assistant", content: r.content },
                   { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "18 degrees" }] }] });
      assert.equal(next.type, "message");
      assert.ok(["end_turn", "max_tokens", "tool_use"].includes(next.stop_reason));
    });

    test("responses tools: a forced function_call, streamed the same, then its output gets an answer", async () => {
      const tools = WEATHER_TOOLS.map((w) => ({ type: "function", name: w.name, description: w.description,
                                                parameters: w.input_schema, strict: true }));
      const req = { model: t.model, input: "Weather in Rome?", tools, temperature: 0, max_output_tokens: 200,
                    tool_choice: { type: "function", name: "get_weather" }, parallel_tool_calls: false };
      const r = await openai.responses.create(req);
      const call = r.output.find((o) => o.type === "function_call");
      assert.ok(call, JSON.stringify(r.output));
      assert.equal(call.name, "get_weather");
      assert.equal(call.status, "completed");
      const args = JSON.parse(call.arguments);
      assert.ok(["Paris", "Rome", "Oslo"].includes(args.city), call.arguments);
      const stream = await openai.responses.create({ ...req, stream: true });
      let deltas = "", doneItem, completed;
      for await (const ev of stream) {
        if (ev.type === "response.function_call_arguments.delta") deltas += ev.delta;
        if (ev.type === "response.output_item.done" && ev.item.type === "function_call") doneItem = ev.item;
        if (ev.type === "response.completed") completed = ev.response;
      }
      assert.equal(deltas, call.arguments);
      assert.equal(doneItem.arguments, call.arguments);
      assert.ok(completed.output.some((o) => o.type === "function_call" && o.arguments === call.arguments));
      const next = await openai.responses.create({ model: t.model, tools, max_output_tokens: 8, temperature: 0,
        input: [{ role: "user", content: "Weather in Rome?" }, call,
                { type: "function_call_output", call_id: call.call_id, output: "18 degrees" }] });
      assert.equal(next.object, "response");
    });

    test("ollama tools: calls read back as message.tool_calls; a tool message is accepted", async () => {
      const tools = WEATHER_TOOLS.map((w) => ({ type: "function", function: { name: w.name, description: w.description, parameters: w.input_schema } }));
      const messages = [{ role: "user", content: "Weather in Rome?" }];
      const r = await ollama.chat({ model: t.model, messages, tools, stream: false, options: { temperature: 0, num_predict: 24 } });
      assert.equal(r.done, true);
      for (const c of r.message.tool_calls ?? []) assert.equal(typeof c.function.arguments, "object");
      // streamed: NDJSON lines through the SDK, one done line last, any calls with object arguments
      const parts = [];
      for await (const p of await ollama.chat({ model: t.model, messages, tools, stream: true, options: { temperature: 0, num_predict: 24 } })) parts.push(p);
      assert.equal(parts.at(-1).done, true);
      assert.equal(parts.filter((p) => p.done).length, 1);
      for (const p of parts) for (const c of p.message?.tool_calls ?? []) assert.equal(typeof c.function.arguments, "object");
      const next = await ollama.chat({ model: t.model, stream: false, tools, options: { num_predict: 4 },
        messages: [...messages, { role: "assistant", content: "", tool_calls: [{ function: { name: "get_weather", arguments: { city: "Rome", unit: "celsius" } } }] },
                   { role: "tool", content: "18 degrees", tool_name: "get_weather" }] });
      assert.equal(next.done, true);
      assert.ok(next.eval_count > 0);
      await assert.rejects(ollama.chat({ model: t.model, stream: false, messages: [{ role: "tool", content: "x" }] }),
        (e) => /open call/.test(e.message));
    });

    test("openai responses.create, whole and streamed; raw fetch", async () => {
      const r = await openai.responses.create({ model: t.model, input: PROMPT, instructions: "You tell stories.",
        max_output_tokens: 10, temperature: 0 });
      assert.equal(r.object, "response");
      assert.equal(r.status, "incomplete");
      assert.equal(r.incomplete_details.reason, "max_output_tokens");
      assert.equal(r.output[0].type, "message");
      assert.equal(r.output[0].content[0].type, "output_text");
      assert.ok(r.output_text.length > 0);
      assert.equal(r.usage.output_tokens, 10);
      const stream = await openai.responses.create({ model: t.model, input: [{ role: "user", content: PROMPT }],
        instructions: "You tell stories.", max_output_tokens: 10, temperature: 0, stream: true });
      const types = [];
      let text = "", done;
      for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === "response.output_text.delta") text += ev.delta;
        if (ev.type === "response.output_text.done") done = ev.text;
      }
      assert.equal(text, r.output_text);
      assert.equal(done, text);
      assert.equal(types[0], "response.created");
      assert.equal(types.at(-1), "response.incomplete");
      const raw = await t.fetch("/v1/responses", { method: "POST",
        body: JSON.stringify({ model: t.model, input: PROMPT, max_output_tokens: 200, temperature: 0 }) });
      const body = await raw.json();
      assert.equal(raw.status, 200);
      assert.ok(["completed", "incomplete"].includes(body.status));
      assert.equal(body.output[0].role, "assistant");
      const bad = await t.fetch("/v1/responses", { method: "POST",
        body: JSON.stringify({ model: t.model, input: PROMPT, previous_response_id: "resp_1" }) });
      assert.equal(bad.status, 400);
      assert.equal((await bad.json()).error.param, "previous_response_id");
    });

    test("GET /v1/models/{id}", async () => {
      const m = await openai.models.retrieve(t.model);
      assert.equal(m.id, t.model);
      assert.equal(m.object, "model");
      const r = await t.fetch("/v1/models/nope");
      assert.equal(r.status, 404);
      assert.equal((await r.json()).error.code, "model_not_found");
    });

    test("clients that leave mid-stream", async () => {
      const stream = anthropic.messages.stream({ model: t.model, max_tokens: 200, temperature: 0,
        messages: [{ role: "user", content: PROMPT }] });
      await new Promise((resolve) => stream.on("text", () => { stream.abort(); resolve(); }));
      await stream.done().catch(() => {});
      const it = await ollama.generate({ model: t.model, prompt: PROMPT, stream: true, options: { num_predict: 200 } });
      for await (const part of it) { if (part.response) { it.abort(); break; } }
    });

    test("still serving after the bad requests", async () => {
      const r = await ollama.generate({ model: t.model, prompt: PROMPT, raw: true, stream: false,
        options: { temperature: 0, num_predict: 3 } });
      assert.equal(r.response, ", there was");
    });
  });
}

suite("serve", async () => {
  const s = await startServe(["-m", STORIES, "--alias", "stories"]);
  return { base: s.base, model: "stories", stop: () => s.stop() };
});

suite("hub", async () => {
  const h = await startHub(`api_keys: [sk-test]
models:
  - name: story-a
    model_path: ${STORIES}
`);
  return { base: h.base, model: "story-a", key: "sk-test", stop: () => h.stop() };
});

describe("hub with a cmd: worker (the dialect is translated at the hub, the worker sees OpenAI)", () => {
  let h, ollama, anthropic;
  before(async () => {
    h = await startHub(`models:
  - name: ext
    cmd: "${BIN} serve -m ${STORIES} --port \${PORT} --alias ext"
`);
    ollama = new Ollama({ host: h.base });
    anthropic = new Anthropic({ baseURL: h.base, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => h.stop());

  test("ollama chat streamed and anthropic stream through the external worker", async () => {
    let text = "";
    for await (const part of await ollama.chat({ model: "ext", messages: [{ role: "user", content: PROMPT }], stream: true,
      options: { temperature: 0, num_predict: 6 } }))
      text += part.message.content;
    assert.ok(text.length > 0);
    const final = await anthropic.messages.stream({ model: "ext", max_tokens: 6, temperature: 0,
      messages: [{ role: "user", content: PROMPT }] }).finalMessage();
    assert.equal(final.content[0].text, text);
    assert.equal(final.usage.output_tokens, 6);
    const tags = await ollama.list();
    assert.deepEqual(tags.models.map((m) => m.name), ["ext"]);
    const logs = await (await fetch(`${h.base}/hub/models/ext/logs?tail=50`)).text();
    assert.match(logs, /POST \/v1\/chat\/completions 200/, "the worker was asked in OpenAI");
  });
});
