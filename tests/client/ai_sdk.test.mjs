// ai_sdk.test.mjs — the Vercel AI SDK (`ai` with `@ai-sdk/openai-compatible`) against
// `modelhub serve` and through the hub: generateText and streamText.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { generateText, streamText } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { forEachTarget } from "./targets.mjs";

const PROMPT = "Once upon a time";

function suite(name, start) {
  describe(name, () => {
    let srv, provider, model;
    before(async () => {
      let base;
      ({ srv, base, model } = await start());
      provider = createOpenAICompatible({ name: "modelhub", baseURL: `${base}/v1`, apiKey: "sk-test",
                                          includeUsage: true });
    });
    after(async () => srv?.stop());

    test("generateText", async () => {
      const r = await generateText({ model: provider(model), prompt: PROMPT, temperature: 0,
                                     maxOutputTokens: 12, maxRetries: 0 });
      assert.ok(r.text.length > 0);
      assert.equal(r.finishReason, "length");
      assert.ok(r.usage.inputTokens > 0);
      assert.equal(r.usage.outputTokens, 12);
    });

    test("streamText gives the same greedy text as generateText", async () => {
      const opts = { model: provider(model), prompt: PROMPT, temperature: 0, maxOutputTokens: 12,
                     maxRetries: 0 };
      const whole = await generateText(opts);
      const r = streamText(opts);
      let text = "";
      let parts = 0;
      for await (const delta of r.textStream) {
        text += delta;
        parts++;
      }
      assert.equal(text, whole.text);
      assert.ok(parts > 1, "the text arrived in more than one part");
      assert.equal(await r.finishReason, "length");
      assert.equal((await r.usage).outputTokens, 12);
    });

    test("instructions (sent as a system message) and a user message", async () => {
      const r = await generateText({
        model: provider(model), temperature: 0, maxOutputTokens: 6, maxRetries: 0,
        instructions: "Tell a story.", messages: [{ role: "user", content: PROMPT }],
      });
      assert.ok(r.text.length > 0);
    });
  });
}

forEachTarget(suite);
