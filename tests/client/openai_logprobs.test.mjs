// openai_logprobs.test.mjs — the official `openai` npm client, serve and hub: chat and completions
// with logprobs checked client-side (the tokens spell the text), streaming with usage.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { forEachTarget } from "./targets.mjs";

const MESSAGES = [{ role: "user", content: "Once upon a time" }];
const utf8 = (bytes) => Buffer.from(bytes).toString("utf8");

function suite(name, start) {
  describe(name, () => {
    let srv, client, model;
    before(async () => {
      let base;
      ({ srv, base, model } = await start());
      client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "sk-test", maxRetries: 0 });
    });
    after(async () => srv?.stop());

    test("chat with logprobs: the tokens (and their bytes) join to the content", async () => {
      const r = await client.chat.completions.create({
        model, messages: MESSAGES, temperature: 0, max_tokens: 16, logprobs: true, top_logprobs: 4,
      });
      const { message, logprobs } = r.choices[0];
      assert.equal(message.refusal, null);
      assert.equal(logprobs.refusal, null);
      assert.equal(logprobs.content.length, r.usage.completion_tokens);
      assert.equal(logprobs.content.map((t) => t.token).join(""), message.content);
      assert.equal(utf8(logprobs.content.flatMap((t) => t.bytes)), message.content);
      for (const t of logprobs.content) {
        assert.ok(t.logprob <= 0);
        assert.equal(t.top_logprobs.length, 4);
        const sorted = [...t.top_logprobs].sort((a, b) => b.logprob - a.logprob);
        assert.deepEqual(t.top_logprobs, sorted, "top_logprobs come most likely first");
        // greedy: the chosen token is the most likely one
        assert.equal(t.top_logprobs[0].token, t.token);
      }
    });

    test("chat streamed with logprobs and usage: the deltas' logprobs join to the text", async () => {
      const stream = await client.chat.completions.create({
        model, messages: MESSAGES, temperature: 0, max_tokens: 16, logprobs: true, top_logprobs: 1,
        stream: true, stream_options: { include_usage: true },
      });
      let text = "";
      const tokens = [];
      let usage = null;
      let finish = null;
      for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage;
        const c = chunk.choices[0];
        if (!c) continue;
        text += c.delta.content ?? "";
        for (const t of c.logprobs?.content ?? []) tokens.push(t);
        finish = c.finish_reason ?? finish;
      }
      assert.equal(finish, "length");
      assert.equal(usage.completion_tokens, 16);
      assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
      assert.equal(tokens.length, 16);
      assert.equal(tokens.map((t) => t.token).join(""), text);
    });

    test("completions with logprobs 2: tokens, offsets and top_logprobs agree with the text", async () => {
      const prompt = "Once upon a time";
      const r = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 10, logprobs: 2 });
      const { text, logprobs } = r.choices[0];
      assert.equal(logprobs.tokens.join(""), text);
      assert.equal(logprobs.token_logprobs.length, logprobs.tokens.length);
      assert.equal(logprobs.top_logprobs.length, logprobs.tokens.length);
      let offset = logprobs.text_offset[0];
      assert.ok(offset >= 0);
      logprobs.tokens.forEach((tok, i) => {
        assert.equal(logprobs.text_offset[i], offset, `text_offset of token ${i}`);
        offset += tok.length;
        const top = logprobs.top_logprobs[i];
        assert.ok(Object.keys(top).length <= 2 && Object.keys(top).length >= 1);
        assert.ok(tok in top, "greedy: the chosen token is among the top ones");
        assert.ok(Math.abs(top[tok] - logprobs.token_logprobs[i]) < 1e-6);
      });
    });

    test("completions streamed with usage", async () => {
      const stream = await client.completions.create({
        model, prompt: "Once upon a time", temperature: 0, max_tokens: 8, stream: true,
        stream_options: { include_usage: true },
      });
      let text = "";
      let usage = null;
      for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage;
        text += chunk.choices[0]?.text ?? "";
      }
      const whole = await client.completions.create({ model, prompt: "Once upon a time", temperature: 0, max_tokens: 8 });
      assert.equal(text, whole.choices[0].text);
      assert.deepEqual(usage, whole.usage);
    });
  });
}

forEachTarget(suite);
