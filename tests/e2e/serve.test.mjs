// serve.test.mjs — `modelhub serve` end to end on stories260K: every endpoint, streamed and not,
// JIT, idle unload, queueing, disconnects, control routes and every kind of bad input.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  STORIES, MODELS, startServe, getJson, postJson, postStream, waitFor, modelhub, slowModel,
  sleep, tempDir,
} from "./lib.mjs";

const reference = readFileSync(
  path.join(MODELS, "reference", "stories260K.once-upon-a-time.steps64.txt"), "utf8");
// run.c printed the prompt and a final newline; the API returns only the continuation
const refContinuation = reference.slice("Once upon a time".length, -1);

describe("endpoints", () => {
  let s, logs;
  before(async () => {
    logs = tempDir();
    s = await startServe(["-m", STORIES, "--alias", "tiny", "--log-file", path.join(logs.dir, "serve.log")]);
  });
  after(async () => {
    await s.stop();
    logs.cleanup();
  });

  test("health and models", async () => {
    const h = await waitFor(async () => {
      const r = await getJson(`${s.base}/health`);
      return r.body.model_status === "loaded" && r;
    }, { what: "model loaded at start" });
    assert.equal(h.status, 200);
    assert.equal(h.body.status, "ok");
    assert.equal(h.body.unload_at, null);
    const m = await getJson(`${s.base}/v1/models`);
    assert.equal(m.status, 200);
    assert.equal(m.body.object, "list");
    assert.equal(m.body.data.length, 1);
    const entry = m.body.data[0];
    assert.equal(entry.id, "tiny");
    assert.equal(entry.object, "model");
    assert.equal(entry.owned_by, "modelhub");
    assert.equal(entry.metadata.memory_state, "loaded");
    assert.equal(entry.metadata.process_state, "running");
    assert.equal(entry.metadata.backend, "local");
    assert.deepEqual(entry.metadata.aliases, ["stories260K.gguf"]);
    assert.ok(entry.metadata.memory_bytes > 1000000);
  });

  test("completion, greedy, equals the reference continuation", async () => {
    const r = await postJson(`${s.base}/v1/completions`, {
      model: "tiny", prompt: "Once upon a time", temperature: 0, max_tokens: 60,
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.object, "text_completion");
    assert.equal(r.body.model, "tiny");
    assert.equal(r.body.choices[0].text, refContinuation);
    assert.equal(r.body.choices[0].finish_reason, "length");
    assert.deepEqual(r.body.usage, {
      prompt_tokens: 5, completion_tokens: 60, total_tokens: 65, prompt_tokens_details: { cached_tokens: 0 },
    });
  });

  test("completion streamed: same text, chunk by chunk, then [DONE]", async () => {
    const r = await postStream(`${s.base}/v1/completions`, {
      model: "stories260K.gguf", prompt: "Once upon a time", temperature: 0, max_tokens: 60,
      stream: true, stream_options: { include_usage: true },
    });
    assert.equal(r.status, 200);
    assert.equal(r.events.at(-1), "[DONE]");
    const chunks = r.events.slice(0, -1);
    const usage = chunks.at(-1);
    // the slot still holds the same prompt: all but its last token come from the cache
    assert.deepEqual(usage.usage, {
      prompt_tokens: 5, completion_tokens: 60, total_tokens: 65, prompt_tokens_details: { cached_tokens: 4 },
    });
    assert.deepEqual(usage.choices, []);
    const body = chunks.slice(0, -1);
    assert.ok(body.length > 30, "streamed in many chunks");
    assert.equal(body.map((c) => c.choices[0].text).join(""), refContinuation);
    assert.equal(body.at(-1).choices[0].finish_reason, "length");
    for (const c of body.slice(0, -1)) assert.equal(c.choices[0].finish_reason, null);
    for (const c of body) assert.equal(c.object, "text_completion");
  });

  test("chat: greedy output equals modelhub run on the formatted prompt", async () => {
    const r = await postJson(`${s.base}/v1/chat/completions`, {
      model: "tiny", temperature: 0, max_tokens: 40,
      messages: [{ role: "system", content: "Be kind." }, { role: "user", content: "Tell a story." }],
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.object, "chat.completion");
    const msg = r.body.choices[0].message;
    assert.equal(msg.role, "assistant");
    // stories260K has no chat template: the documented fallback format
    const prompt = "System: Be kind.\nUser: Tell a story.\nAssistant:";
    const run = modelhub(["run", "-m", STORIES, "-p", prompt, "-n", "40", "--temp", "0", "-q"]);
    const runText = run.slice(0, -1); // run ends with a newline
    if (r.body.choices[0].finish_reason === "length") assert.equal(msg.content, runText);
    else assert.ok(runText.startsWith(msg.content), "stopped at a turn marker");
    assert.ok(msg.content.length > 10);
    assert.equal(r.body.usage.completion_tokens <= 40, true);
    assert.equal(r.body.usage.prompt_tokens > 10, true);
  });

  test("chat streamed: role first, content deltas, finish, usage, [DONE]", async () => {
    const req = {
      model: "tiny", temperature: 0, max_tokens: 30,
      messages: [{ role: "user", content: [{ type: "text", text: "Once upon" }, { type: "text", text: " a time" }] }],
    };
    const plain = await postJson(`${s.base}/v1/chat/completions`, req);
    const r = await postStream(`${s.base}/v1/chat/completions`, {
      ...req, stream: true, stream_options: { include_usage: true },
    });
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /text\/event-stream/);
    const ev = r.events;
    assert.equal(ev.at(-1), "[DONE]");
    assert.deepEqual(ev[0].choices[0].delta, { role: "assistant", content: "" });
    assert.equal(ev[0].object, "chat.completion.chunk");
    const final = ev.at(-3);
    assert.equal(final.choices[0].finish_reason, plain.body.choices[0].finish_reason);
    assert.deepEqual(final.choices[0].delta, {});
    const text = ev.slice(1, -3).map((c) => c.choices[0].delta.content).join("");
    assert.equal(text, plain.body.choices[0].message.content);
    const { prompt_tokens, completion_tokens, total_tokens } = ev.at(-2).usage;
    assert.deepEqual({ prompt_tokens, completion_tokens, total_tokens }, {
      prompt_tokens: plain.body.usage.prompt_tokens, completion_tokens: plain.body.usage.completion_tokens,
      total_tokens: plain.body.usage.total_tokens,
    });
    // one id across the stream
    assert.equal(new Set(ev.slice(0, -1).map((c) => c.id)).size, 1);
  });

  test("stop strings: matched across tokens, not emitted", async () => {
    const r = await postJson(`${s.base}/v1/completions`, {
      prompt: "Once upon a time", temperature: 0, max_tokens: 60, stop: ["named Lily", "xyz"],
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.choices[0].text, ", there was a little girl ");
    assert.equal(r.body.choices[0].finish_reason, "stop");
    const one = await postJson(`${s.base}/v1/completions`, {
      prompt: "Once upon a time", temperature: 0, max_tokens: 60, stop: "girl",
    });
    assert.equal(one.body.choices[0].text, ", there was a little ");
    const streamed = await postStream(`${s.base}/v1/completions`, {
      prompt: "Once upon a time", temperature: 0, max_tokens: 60, stop: "named Lily", stream: true,
    });
    const text = streamed.events.slice(0, -1).map((c) => c.choices[0].text).join("");
    assert.equal(text, ", there was a little girl ");
    assert.equal(streamed.events.at(-2).choices[0].finish_reason, "stop");
  });

  test("frequency and presence penalties and logit_bias change the greedy text", async () => {
    // "Once upon a time" continues ", there" = ids 432 383 (bench/llamacpp-ref.mjs on stories260K)
    const greedy = (extra) => postJson(`${s.base}/v1/completions`, {
      prompt: "Once upon a time", temperature: 0, max_tokens: 60, ...extra,
    });
    const text = (r) => { assert.equal(r.status, 200, JSON.stringify(r.body)); return r.body.choices[0].text; };
    const plain = text(await greedy({ frequency_penalty: 0, presence_penalty: 0, logit_bias: {} }));
    assert.equal(plain, refContinuation);
    const freq = text(await greedy({ frequency_penalty: 2 }));
    const pres = text(await greedy({ presence_penalty: 2 }));
    assert.notEqual(freq, plain);
    assert.notEqual(pres, plain);
    assert.equal(text(await greedy({ frequency_penalty: 2 })), freq); // deterministic
    // penalties count only the completion: the first token, chosen before any, is unchanged
    assert.ok(freq.startsWith(",") && pres.startsWith(","), `${freq} / ${pres}`);
    const words = (t) => t.split(/\W+/).filter(Boolean);
    const distinct = (t) => new Set(words(t)).size / words(t).length;
    assert.ok(distinct(pres) > distinct(plain), `presence penalty repeats less: ${pres}`);
    const banned = text(await greedy({ logit_bias: { 432: -100 } }));
    assert.ok(!banned.startsWith(","), banned);
    const forced = text(await greedy({ logit_bias: { 383: 100 }, max_tokens: 5 }));
    assert.equal(forced, " there".repeat(5));
    for (const [bias, what] of [[{ x: 1 }, /token ids/], [{ 5: 101 }, /-100 to 100/],
                                [{ 99999: 1 }, /vocabulary has 512 tokens/], [[1], /object/]]) {
      const r = await greedy({ logit_bias: bias });
      assert.equal(r.status, 400, JSON.stringify(bias));
      assert.equal(r.body.error.param, "logit_bias");
      assert.match(r.body.error.message, what);
    }
    const r = await greedy({ presence_penalty: 3 });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.param, "presence_penalty");
  });

  test("n choices: each its own draws, choice 0 as with n = 1, streamed by index", async () => {
    const req = { prompt: "Lily", max_tokens: 20, temperature: 1, seed: 42, top_k: 20, top_p: 0.9 };
    const one = await postJson(`${s.base}/v1/completions`, req);
    const three = await postJson(`${s.base}/v1/completions`, { ...req, n: 3 });
    assert.equal(three.status, 200);
    const ch = three.body.choices;
    assert.deepEqual(ch.map((c) => c.index), [0, 1, 2]);
    assert.equal(ch[0].text, one.body.choices[0].text);
    assert.ok(new Set(ch.map((c) => c.text)).size >= 2, JSON.stringify(ch));
    assert.equal(three.body.usage.prompt_tokens, one.body.usage.prompt_tokens);
    assert.equal(three.body.usage.completion_tokens, 60);
    const { prompt: _, ...sampling } = req; // chat takes messages, and refuses "prompt"
    const streamed = await postStream(`${s.base}/v1/chat/completions`, {
      messages: [{ role: "user", content: "Lily" }], ...sampling, n: 2, stream: true,
      stream_options: { include_usage: true },
    });
    const plainChat = await postJson(`${s.base}/v1/chat/completions`, {
      messages: [{ role: "user", content: "Lily" }], ...sampling, n: 2,
    });
    const chunks = streamed.events.filter((e) => e.choices && e.choices.length);
    for (const i of [0, 1]) {
      const mine = chunks.filter((e) => e.choices[0].index === i);
      assert.equal(mine[0].choices[0].delta.role, "assistant");
      assert.equal(mine.map((e) => e.choices[0].delta.content ?? "").join(""),
                   plainChat.body.choices[i].message.content);
      assert.equal(mine.at(-1).choices[0].finish_reason, "length");
    }
    assert.equal(streamed.events.at(-2).usage.completion_tokens, 40);
    for (const n of [0, 9, 1.5]) {
      const r = await postJson(`${s.base}/v1/completions`, { ...req, n });
      assert.equal(r.status, 400);
      assert.equal(r.body.error.param, "n");
    }
  });

  test("logprobs: chat and completions shapes, streamed equal to not, tokens spell the text", async () => {
    const chatBody = {
      model: "tiny", messages: [{ role: "user", content: "Tell a story" }], max_tokens: 12,
      temperature: 1, seed: 5, logprobs: true, top_logprobs: 3,
    };
    const r = await postJson(`${s.base}/v1/chat/completions`, chatBody);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const choice = r.body.choices[0];
    const entries = choice.logprobs.content;
    assert.equal(choice.logprobs.refusal, null);
    assert.equal(entries.length, r.body.usage.completion_tokens);
    assert.equal(entries.map((e) => e.token).join(""), choice.message.content);
    for (const e of entries) {
      assert.ok(e.logprob <= 0 && e.logprob >= -9999);
      assert.deepEqual(e.bytes, [...Buffer.from(e.token, "utf8")]);
      assert.equal(e.top_logprobs.length, 3);
      const tops = e.top_logprobs.map((t) => t.logprob);
      assert.deepEqual(tops, [...tops].sort((a, b) => b - a));
      assert.ok(tops.reduce((a, v) => a + Math.exp(v), 0) <= 1 + 1e-6);
      // the chosen token is one of the top 3, or less likely than all of them
      const same = e.top_logprobs.find((t) => t.token === e.token);
      if (same) assert.ok(Math.abs(same.logprob - e.logprob) < 1e-9);
      else assert.ok(e.logprob <= tops[2]);
    }
    // streamed: the same entries, spread over the content chunks (the prompt now comes from the
    // slot's cache, so the floats may differ in their last bits)
    const st = await postStream(`${s.base}/v1/chat/completions`, { ...chatBody, stream: true });
    const chunks = st.events.filter((e) => e !== "[DONE]" && e.choices.length);
    const streamed = chunks.flatMap((e) => e.choices[0].logprobs?.content ?? []);
    const near = (a, b) => {
      assert.equal(a.length, b.length);
      a.forEach((x, i) => {
        assert.equal(x.token, b[i].token);
        assert.ok(Math.abs(x.logprob - b[i].logprob) < 1e-4, `${x.logprob} vs ${b[i].logprob}`);
        if (x.top_logprobs) near(x.top_logprobs, b[i].top_logprobs);
      });
    };
    near(streamed, entries);
    for (const e of chunks)
      if (e.choices[0].delta.content) assert.ok(e.choices[0].logprobs.content.length >= 1);
    // without logprobs the field stays null
    const plain = await postJson(`${s.base}/v1/chat/completions`, { ...chatBody, logprobs: false, top_logprobs: null });
    assert.equal(plain.body.choices[0].logprobs, null);

    // completions: the legacy shape, greedy, so the chosen token is always the top one
    const c = await postJson(`${s.base}/v1/completions`, {
      model: "tiny", prompt: "Once upon a time", max_tokens: 10, temperature: 0, logprobs: 2,
    });
    assert.equal(c.status, 200, JSON.stringify(c.body));
    const lp = c.body.choices[0].logprobs;
    assert.equal(lp.tokens.length, 10);
    assert.equal(lp.tokens.join(""), c.body.choices[0].text);
    assert.equal(lp.token_logprobs.length, 10);
    assert.equal(lp.top_logprobs.length, 10);
    let offset = 0;
    lp.tokens.forEach((t, i) => {
      assert.equal(lp.text_offset[i], offset);
      offset += Buffer.byteLength(t);
      const top = Object.entries(lp.top_logprobs[i]);
      assert.equal(top.length, 2);
      assert.equal(top[0][0], t);
      assert.equal(top[0][1], lp.token_logprobs[i]);
    });
    const cs = await postStream(`${s.base}/v1/completions`, {
      model: "tiny", prompt: "Once upon a time", max_tokens: 10, temperature: 0, logprobs: 2, stream: true,
    });
    const parts = cs.events.filter((e) => e !== "[DONE]" && e.choices[0].logprobs);
    const values = parts.flatMap((e) => e.choices[0].logprobs.token_logprobs);
    assert.equal(values.length, lp.token_logprobs.length);
    values.forEach((v, i) => assert.ok(Math.abs(v - lp.token_logprobs[i]) < 1e-4));
    assert.deepEqual(parts.flatMap((e) => e.choices[0].logprobs.tokens), lp.tokens);
    assert.deepEqual(parts.flatMap((e) => e.choices[0].logprobs.text_offset), lp.text_offset);

    // bad values name the field
    for (const [url, body, param] of [
      [`${s.base}/v1/chat/completions`, { ...chatBody, top_logprobs: 21 }, "top_logprobs"],
      [`${s.base}/v1/chat/completions`, { ...chatBody, logprobs: false }, "top_logprobs"],
      [`${s.base}/v1/chat/completions`, { ...chatBody, logprobs: 3 }, "logprobs"],
      [`${s.base}/v1/completions`, { prompt: "x", logprobs: true }, "logprobs"],
      [`${s.base}/v1/completions`, { prompt: "x", logprobs: 21 }, "logprobs"],
      [`${s.base}/v1/completions`, { prompt: "x", top_logprobs: 2 }, "top_logprobs"],
    ]) {
      const bad = await postJson(url, body);
      assert.equal(bad.status, 400, JSON.stringify(body));
      assert.equal(bad.body.error.param, param, JSON.stringify(bad.body));
    }
  });

  test("tools: history with calls and results is accepted; bad tool input is 400 naming the field", async () => {
    const chat = `${s.base}/v1/chat/completions`;
    const tools = [{ type: "function", function: {
      name: "get_weather", description: "Weather in a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
    const history = [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: null, tool_calls: [
        { id: "call_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }] },
      { role: "tool", tool_call_id: "call_1", content: "18C and sunny" },
    ];
    const ok = await postJson(chat, { model: "tiny", messages: history, tools, max_tokens: 4, temperature: 0 });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.ok(["stop", "length", "tool_calls"].includes(ok.body.choices[0].finish_reason));
    // the tools and the call make the prompt longer than the bare conversation
    const bare = await postJson(chat, { model: "tiny", messages: [{ role: "user", content: "Weather in Paris?" }], max_tokens: 1 });
    assert.ok(ok.body.usage.prompt_tokens > bare.body.usage.prompt_tokens + 40);
    const none = await postJson(chat, { model: "tiny", messages: history, tools, tool_choice: "none", max_tokens: 4 });
    assert.equal(none.status, 200);
    assert.equal(none.body.choices[0].message.tool_calls, undefined);
    for (const [body, param] of [
      [{ messages: history, tools: [{ type: "function", function: { name: "f", parameters: "not a schema" } }] }, "tools[0].function.parameters"],
      [{ messages: history, tools: [{ type: "function", function: { name: "bad name!" } }] }, "tools[0].function.name"],
      [{ messages: history, tools, tool_choice: "sometimes" }, "tool_choice"],
      [{ messages: history, tools, tool_choice: { type: "function", function: { name: "other" } } }, "tool_choice"],
      [{ messages: history, tool_choice: "required" }, "tool_choice"],
      [{ messages: [{ role: "tool", content: "18C" }], tools }, "messages[0].tool_call_id"],
      [{ messages: [{ role: "assistant", tool_calls: [{ id: "x", type: "function", function: { name: "f", arguments: {} } }] }] }, "messages[0].tool_calls[0]"],
      [{ messages: history, tools, parallel_tool_calls: "yes" }, "parallel_tool_calls"],
    ]) {
      const bad = await postJson(chat, { model: "tiny", max_tokens: 2, ...body });
      assert.equal(bad.status, 400, JSON.stringify(body));
      assert.equal(bad.body.error.param, param, JSON.stringify(bad.body));
    }
  });

  test("tools: a forced call (required or named) always parses and fits the function's schema", async () => {
    const chat = `${s.base}/v1/chat/completions`;
    const tools = [
      { type: "function", function: { name: "get_weather", parameters: {
        type: "object", properties: { city: { type: "string", maxLength: 12 },
          unit: { enum: ["C", "F"] }, days: { type: "integer" } }, required: ["city", "unit"] } } },
      { type: "function", function: { name: "get_time" } },
    ];
    const messages = [{ role: "user", content: "What is the weather in Oslo?" }];
    const check = (call, allowed) => {
      assert.equal(call.type, "function");
      assert.match(call.id, /^call_/);
      assert.ok(allowed.includes(call.function.name), call.function.name);
      const args = JSON.parse(call.function.arguments);
      if (call.function.name === "get_time") return assert.deepEqual(args, {});
      assert.equal(typeof args.city, "string");
      assert.ok(args.city.length <= 12);
      assert.ok(["C", "F"].includes(args.unit));
      if ("days" in args) assert.ok(Number.isInteger(args.days));
      assert.deepEqual(Object.keys(args).filter((k) => !["city", "unit", "days"].includes(k)), []);
    };
    const seen = new Set();
    for (let seed = 1; seed <= 6; seed++) {
      const r = await postJson(chat, { model: "tiny", messages, tools, tool_choice: "required", seed, temperature: 1 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const c = r.body.choices[0];
      assert.equal(c.finish_reason, "tool_calls", JSON.stringify(c));
      assert.equal(c.message.content, null);
      assert.equal(c.message.tool_calls.length, 1);
      check(c.message.tool_calls[0], ["get_weather", "get_time"]);
      seen.add(c.message.tool_calls[0].function.name);
      // named: only that function
      const named = await postJson(chat, { model: "tiny", messages, tools, seed, temperature: 1,
        tool_choice: { type: "function", function: { name: "get_weather" } } });
      check(named.body.choices[0].message.tool_calls[0], ["get_weather"]);
      // streamed: one delta.tool_calls chunk with the whole call, then finish tool_calls
      const st = await postStream(chat, { model: "tiny", messages, tools, seed, temperature: 1, stream: true,
        tool_choice: { type: "function", function: { name: "get_weather" } } });
      const chunks = st.events.filter((e) => e !== "[DONE]");
      const calls = chunks.flatMap((e) => e.choices[0].delta.tool_calls ?? []);
      assert.equal(calls.length, 1);
      assert.equal(calls[0].index, 0);
      check(calls[0], ["get_weather"]);
      assert.equal(chunks.at(-1).choices[0].finish_reason, "tool_calls");
      assert.ok(chunks.every((e) => !e.choices[0].delta.content), "no content beside a forced call");
    }
    assert.ok(seen.size >= 1);
    // a schema the call cannot be constrained to is refused before anything runs
    const bad = await postJson(chat, { model: "tiny", messages, tool_choice: "required", tools: [
      { type: "function", function: { name: "f", parameters: { type: "object", properties: { a: { type: "string", pattern: "x+" } } } } }] });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.param, "tools[0].function.parameters");
    assert.match(bad.body.error.message, /pattern/);
  });

  test("sampling with a seed is reproducible", async () => {
    const req = { prompt: "Lily", max_tokens: 30, temperature: 1, seed: 42, top_k: 20, top_p: 0.9 };
    const a = await postJson(`${s.base}/v1/completions`, req);
    const b = await postJson(`${s.base}/v1/completions`, req);
    const c = await postJson(`${s.base}/v1/completions`, { ...req, seed: 43 });
    assert.equal(a.body.choices[0].text, b.body.choices[0].text);
    assert.notEqual(a.body.choices[0].text, c.body.choices[0].text);
  });

  test("embeddings: float and base64, normalised, usage", async () => {
    const f = await postJson(`${s.base}/v1/embeddings`, { model: "tiny", input: ["hello there", "a cat"] });
    assert.equal(f.status, 200);
    assert.equal(f.body.object, "list");
    assert.equal(f.body.data.length, 2);
    const [e0, e1] = f.body.data;
    assert.equal(e0.object, "embedding");
    assert.equal(e0.index, 0);
    assert.equal(e1.index, 1);
    assert.equal(e0.embedding.length, 64);
    const norm = Math.hypot(...e0.embedding);
    assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
    assert.notDeepEqual(e0.embedding, e1.embedding);
    assert.ok(f.body.usage.prompt_tokens >= 4);
    assert.equal(f.body.usage.total_tokens, f.body.usage.prompt_tokens);
    const b = await postJson(`${s.base}/v1/embeddings`, { input: "hello there", encoding_format: "base64" });
    assert.equal(b.status, 200);
    const buf = Buffer.from(b.body.data[0].embedding, "base64");
    const floats = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    assert.equal(floats.length, 64);
    for (let i = 0; i < 64; i++) assert.ok(Math.abs(floats[i] - e0.embedding[i]) < 1e-6);
  });

  test("bad input: clear errors in the OpenAI envelope, and the server keeps serving", async () => {
    const chat = `${s.base}/v1/chat/completions`;
    const cases = [
      [chat, "{not json", 400, null, /line 1, column/],
      [chat, "[1,2]", 400, null, /object/],
      [chat, {}, 400, "messages", /messages/],
      [chat, { messages: [] }, 400, "messages", /empty/],
      [chat, { messages: [{ role: "wizard", content: "x" }] }, 400, "messages[0]", /role/],
      [chat, { messages: [{ role: "user", content: 5 }] }, 400, "messages[0]", /content/],
      [chat, { messages: [{ role: "user", content: [{ type: "image_url" }] }] }, 400, "messages[0]", /text/],
      [chat, { messages: [{ role: "user", content: "x" }], temperature: "hot" }, 400, "temperature", /temperature/],
      [chat, { messages: [{ role: "user", content: "x" }], temperature: 5 }, 400, "temperature", /temperature/],
      [chat, { messages: [{ role: "user", content: "x" }], top_p: -1 }, 400, "top_p", /top_p/],
      [chat, { messages: [{ role: "user", content: "x" }], max_tokens: 0 }, 400, "max_tokens", /max_tokens/],
      [chat, { messages: [{ role: "user", content: "x" }], max_tokens: 2.5 }, 400, "max_tokens", /max_tokens/],
      [chat, { messages: [{ role: "user", content: "x" }], n: 9 }, 400, "n", /from 1 to 8/],
      [chat, { messages: [{ role: "user", content: "x" }], stream: "yes" }, 400, "stream", /stream/],
      [chat, { messages: [{ role: "user", content: "x" }], stop: 7 }, 400, "stop", /stop/],
      [chat, { messages: [{ role: "user", content: "x" }], model: "gpt-9" }, 404, "model", /gpt-9/],
      [`${s.base}/v1/completions`, { prompt: ["a", "b"] }, 400, "prompt", /string/],
      [`${s.base}/v1/completions`, { prompt: "a", echo: true }, 400, "echo", /echo/],
      [`${s.base}/v1/completions`, {}, 400, "prompt", /prompt/],
      [`${s.base}/v1/embeddings`, { input: [] }, 400, "input", /input/],
      [`${s.base}/v1/embeddings`, { input: [1] }, 400, "input", /input/],
      [`${s.base}/v1/embeddings`, { input: "x", encoding_format: "hex" }, 400, "encoding_format", /base64/],
    ];
    for (const [url, body, status, param, message] of cases) {
      const r = await postJson(url, body);
      assert.equal(r.status, status, `${JSON.stringify(body)} -> ${r.status} ${JSON.stringify(r.body)}`);
      assert.ok(r.body.error, `envelope for ${JSON.stringify(body)}`);
      assert.equal(r.body.error.param, param, `param for ${JSON.stringify(body)}`);
      assert.match(r.body.error.message, message);
      assert.equal(typeof r.body.error.type, "string");
    }
    const unknownModel = await postJson(chat, { model: "nope", messages: [{ role: "user", content: "x" }] });
    assert.equal(unknownModel.body.error.code, "model_not_found");
    // unknown route and wrong method
    assert.equal((await getJson(`${s.base}/v1/nothing`)).status, 404);
    const wrong = await getJson(chat);
    assert.equal(wrong.status, 405);
    assert.ok(wrong.body.error);
    // a body over 8 MiB
    const big = await postJson(chat, JSON.stringify({ messages: [{ role: "user", content: "a".repeat(9 << 20) }] }));
    assert.equal(big.status, 413);
    assert.ok(big.body.error);
    // still serving
    const ok = await postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 3 });
    assert.equal(ok.status, 200);
  });

  test("every request field is applied or refused with 400 naming it, never ignored", async () => {
    const chat = `${s.base}/v1/chat/completions`;
    const comp = `${s.base}/v1/completions`;
    const msg = { messages: [{ role: "user", content: "x" }], max_tokens: 2 };
    const refused = [
      [chat, { ...msg, frobnicate: 1 }, "frobnicate", /unrecognized/],
      [chat, { ...msg, prompt: "x" }, "prompt", /unrecognized/],
      [comp, { prompt: "x", messages: [] }, "messages", /unrecognized/],
      [chat, { ...msg, store: true }, "store", /stored/],
      [chat, { ...msg, service_tier: "flex" }, "service_tier", /tiers/],
      [chat, { ...msg, modalities: ["text", "audio"] }, "modalities", /text/],
      [chat, { ...msg, audio: { voice: "x" } }, "audio", /audio/],
      [chat, { ...msg, user: 7 }, "user", /string/],
      [comp, { prompt: "x", best_of: 3 }, "best_of", /equal n/],
      [comp, { prompt: "x", suffix: "end" }, "suffix", /suffix/],
      [`${s.base}/v1/embeddings`, { input: "x", dimensions: 8 }, "dimensions", /dimensions/],
    ];
    for (const [url, body, param, message] of refused) {
      const r = await postJson(url, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status}`);
      assert.equal(r.body.error.param, param, JSON.stringify(r.body));
      assert.match(r.body.error.message, message);
    }
    const accepted = [
      [chat, { ...msg, store: false, service_tier: "auto", modalities: ["text"], tools: null, tool_choice: "none" }],
      [comp, { prompt: "x", max_tokens: 2, best_of: 2, n: 2, suffix: "" }],
      [chat, { ...msg, user: "field-test-user" }],
    ];
    for (const [url, body] of accepted) {
      const r = await postJson(url, body);
      assert.equal(r.status, 200, `${JSON.stringify(body)} -> ${JSON.stringify(r.body)}`);
    }
    await waitFor(() => /POST \/v1\/chat\/completions 200 .* user=field-test-user/.test(
      readFileSync(path.join(logs.dir, "serve.log"), "utf8")), { what: "the user id in the log line" });
  });

  test("one log line per request with model and token counts", async () => {
    const log = readFileSync(path.join(logs.dir, "serve.log"), "utf8");
    assert.match(log, /POST \/v1\/completions 200 [\d.]+ ms model=tiny prompt_tokens=5 gen_tokens=60/);
    assert.match(log, /POST \/v1\/chat\/completions 400 /);
    assert.match(log, /GET \/health 200/);
  });
});

describe("prompt cache", () => {
  async function twoTurns(extraArgs) {
    const s = await startServe(["-m", STORIES, ...extraArgs]);
    try {
      const first = [{ role: "user", content: "Tell me a story about Lily." }];
      const a = await postJson(`${s.base}/v1/chat/completions`, { messages: first, max_tokens: 40, temperature: 0 });
      const second = [...first, a.body.choices[0].message, { role: "user", content: "And then?" }];
      const b = await postJson(`${s.base}/v1/chat/completions`, { messages: second, max_tokens: 10, temperature: 0 });
      assert.equal(b.status, 200);
      return { first: a.body.usage, second: b.body.usage };
    } finally {
      await s.stop();
    }
  }

  test("a chat turn reuses the previous turn's prompt and answer from the slot's cache", async () => {
    const on = await twoTurns([]);
    const cached = on.second.prompt_tokens_details.cached_tokens;
    assert.ok(cached >= on.first.prompt_tokens + on.first.completion_tokens - 4,
      `cached ${cached} of ${on.second.prompt_tokens}`);
    assert.ok(cached < on.second.prompt_tokens);
    const off = await twoTurns(["--no-prompt-cache"]);
    assert.equal(off.second.prompt_tokens_details.cached_tokens, 0);
    assert.equal(off.second.prompt_tokens, on.second.prompt_tokens);
  });
});

describe("limits", () => {
  test("prompt longer than the context: 400 with both numbers", async () => {
    const s = await startServe(["-m", STORIES, "--ctx", "32"]);
    try {
      const r = await postJson(`${s.base}/v1/completions`, { prompt: "Once upon a time ".repeat(20) });
      assert.equal(r.status, 400);
      assert.equal(r.body.error.param, "prompt");
      assert.equal(r.body.error.code, "context_length_exceeded");
      assert.match(r.body.error.message, /\b82 tokens\b.*\b32\b/);
      const ok = await postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 100, temperature: 0 });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.choices[0].finish_reason, "length"); // stopped at the full context
      assert.ok(ok.body.usage.prompt_tokens + ok.body.usage.completion_tokens <= 33);
    } finally {
      await s.stop();
    }
  });

  test("api key: 401 without or with a wrong key, /health stays public", async () => {
    const s = await startServe(["-m", STORIES, "--api-key", "sekret"]);
    try {
      const body = { prompt: "Once", max_tokens: 2 };
      assert.equal((await postJson(`${s.base}/v1/completions`, body)).status, 401);
      const wrong = await postJson(`${s.base}/v1/completions`, body, { authorization: "Bearer nope" });
      assert.equal(wrong.status, 401);
      assert.ok(wrong.body.error);
      assert.equal((await getJson(`${s.base}/v1/models`)).status, 401);
      const right = await postJson(`${s.base}/v1/completions`, body, { authorization: "Bearer sekret" });
      assert.equal(right.status, 200);
      assert.equal((await getJson(`${s.base}/health`)).status, 200);
    } finally {
      await s.stop();
    }
  });
});

describe("lifecycle", () => {
  test("JIT: unloaded until the first request, which loads it", async () => {
    const s = await startServe(["-m", STORIES, "--jit"]);
    try {
      const before = await getJson(`${s.base}/health`);
      assert.equal(before.body.model_status, "unloaded");
      const m = await getJson(`${s.base}/v1/models`);
      assert.equal(m.body.data[0].metadata.memory_state, "unloaded");
      assert.equal(m.body.data[0].metadata.memory_bytes, 0);
      // concurrent first requests share the one load
      const rs = await Promise.all(Array.from({ length: 5 }, () =>
        postJson(`${s.base}/v1/completions`, { prompt: "Once upon a time", max_tokens: 5, temperature: 0 })));
      for (const r of rs) assert.equal(r.status, 200);
      const after = await getJson(`${s.base}/health`);
      assert.equal(after.body.model_status, "loaded");
      assert.equal((s.stderr().match(/loading /g) || []).length, 1);
    } finally {
      await s.stop();
    }
  });

  test("idle unload after the timeout, exact unload_at, reload on the next request", async () => {
    const s = await startServe(["-m", STORIES, "--jit", "--idle-unload", "1"]);
    try {
      const r = await postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 3 });
      assert.equal(r.status, 200);
      const m = (await getJson(`${s.base}/v1/models`)).body.data[0].metadata;
      assert.equal(m.memory_state, "loaded");
      assert.ok(Math.abs(m.unload_at - (m.last_activity_ts + 1)) < 0.002, JSON.stringify(m));
      const h = await getJson(`${s.base}/health`);
      assert.equal(h.body.unload_at, m.unload_at);
      await waitFor(async () => (await getJson(`${s.base}/health`)).body.model_status === "unloaded",
        { timeoutMs: 15000, what: "idle unload" });
      const after = (await getJson(`${s.base}/v1/models`)).body.data[0].metadata;
      assert.equal(after.last_unload_reason, "idle");
      assert.equal(after.unload_at, null);
      assert.ok(Date.now() / 1000 >= m.unload_at - 0.05, "not unloaded before unload_at");
      const again = await postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 3 });
      assert.equal(again.status, 200);
      assert.equal((await getJson(`${s.base}/health`)).body.model_status, "loaded");
    } finally {
      await s.stop();
    }
  });

  test("no unload while a long generation runs past the timeout", async () => {
    const s = await startServe(["-m", slowModel(), "--idle-unload", "1"]);
    try {
      await waitFor(async () => (await getJson(`${s.base}/health`)).body.model_status === "loaded");
      // stream for 2.5 s (past the 1 s timeout), checking /health says busy and loaded
      const ctl = new AbortController();
      let seen = 0, checks = 0;
      const started = Date.now();
      await postStream(`${s.base}/v1/completions`, {
        prompt: "Once upon a time", max_tokens: 4000, temperature: 0, stream: true,
      }, {
        signal: ctl.signal,
        onEvent: async () => {
          if (++seen % 10 !== 0) return;
          const h = (await getJson(`${s.base}/health`)).body;
          assert.equal(h.model_status, "loaded");
          assert.equal(h.unload_at, null, "busy: no unload scheduled");
          checks++;
          if (Date.now() - started > 2500) ctl.abort();
        },
      }).catch((e) => { if (e.name !== "AbortError") throw e; });
      assert.ok(Date.now() - started >= 2500, "still generating when we stopped reading");
      assert.ok(checks >= 3);
      await waitFor(async () => (await getJson(`${s.base}/health`)).body.model_status === "unloaded",
        { timeoutMs: 15000, what: "idle unload after the stream" });
    } finally {
      await s.stop();
    }
  });
});

describe("concurrency", () => {
  let s;
  before(async () => {
    s = await startServe(["-m", slowModel(), "--parallel", "1", "--queue-size", "1", "--queue-timeout", "2"]);
    await waitFor(async () => (await getJson(`${s.base}/health`)).body.model_status === "loaded");
  });
  after(async () => s.stop());

  async function inFlight() {
    return (await getJson(`${s.base}/v1/models`)).body.data[0].metadata;
  }

  test("queue full answers 429; a queued request past the timeout answers 503", async () => {
    const ctl = new AbortController();
    let first;
    const long = postStream(`${s.base}/v1/completions`, {
      prompt: "Once upon a time", max_tokens: 4000, temperature: 0, stream: true,
    }, { signal: ctl.signal, onEvent: (ev) => { first ??= ev; } }).catch((e) => e);
    await waitFor(() => first, { what: "first chunk of the long stream" });
    const queued = postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 2 });
    await waitFor(async () => (await inFlight()).queued >= 1, { what: "second request queued" });
    const full = await postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 2 });
    assert.equal(full.status, 429);
    assert.equal(full.body.error.code, "queue_full");
    const timedOut = await queued;
    assert.equal(timedOut.status, 503);
    assert.ok(timedOut.headers.get("retry-after"));
    assert.match(timedOut.body.error.message, /timed out/);
    ctl.abort();
    await long;
  });

  test("a client that disconnects mid-stream frees its slot", async () => {
    const ctl = new AbortController();
    let n = 0;
    const r = postStream(`${s.base}/v1/completions`, {
      prompt: "Once upon a time", max_tokens: 2000, temperature: 0, stream: true,
    }, { signal: ctl.signal, onEvent: () => { if (++n === 3) ctl.abort(); } }).catch((e) => e);
    await r;
    const t0 = Date.now();
    await waitFor(async () => (await inFlight()).in_flight === 0, { what: "slot freed" });
    const next = await postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 2 });
    assert.equal(next.status, 200);
    assert.ok(Date.now() - t0 < 10000);
    assert.match(s.stderr(), /POST \/v1\/completions \d+ [\d.]+ ms .*\(client gone\)/);
  });
});

describe("worker control", () => {
  test("load, unload and status, with the control token", async () => {
    const s = await startServe(["-m", STORIES, "--jit"], { env: { MODELHUB_CONTROL_TOKEN: "tok123" } });
    try {
      const h = { "x-control-token": "tok123" };
      assert.equal((await postJson(`${s.base}/control/load`, {})).status, 401);
      const st = await getJson(`${s.base}/control/status`, { headers: h });
      assert.equal(st.status, 200);
      assert.equal(st.body.memory_state, "unloaded");
      const load = await postJson(`${s.base}/control/load`, {}, h);
      assert.equal(load.status, 200);
      assert.equal(load.body.memory_state, "loaded");
      assert.ok(load.body.loaded_at > 0);
      const unload = await postJson(`${s.base}/control/unload`, {}, h);
      assert.equal(unload.status, 200);
      assert.equal(unload.body.memory_state, "unloaded");
      assert.equal(unload.body.last_unload_reason, "manual");
      assert.equal((await getJson(`${s.base}/health`)).body.model_status, "unloaded");
      // a request brings it back (JIT)
      assert.equal((await postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 2 })).status, 200);
    } finally {
      await s.stop();
    }
  });

  test("a model file that fails to load: the request gets a clear error", async () => {
    const t = tempDir();
    try {
      const bad = path.join(t.dir, "broken.gguf");
      const good = readFileSync(STORIES);
      (await import("node:fs")).writeFileSync(bad, good.subarray(0, 20000));
      const s = await startServe(["-m", bad, "--jit"]);
      try {
        const r = await postJson(`${s.base}/v1/completions`, { prompt: "Once", max_tokens: 2 });
        assert.equal(r.status, 503);
        assert.match(r.body.error.message, /broken\.gguf.*extends past end of file/);
        const m = (await getJson(`${s.base}/v1/models`)).body.data[0].metadata;
        assert.equal(m.memory_state, "error");
        assert.match(m.error, /extends past end of file/);
        assert.equal((await getJson(`${s.base}/health`)).status, 200);
      } finally {
        await s.stop();
      }
    } finally {
      t.cleanup();
    }
  });

  test("SIGTERM stops the server cleanly", async () => {
    const s = await startServe(["-m", STORIES]);
    const r = await s.stop();
    assert.equal(r.code, 0);
  });
});
