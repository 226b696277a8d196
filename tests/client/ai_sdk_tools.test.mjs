// ai_sdk_tools.test.mjs — the Vercel AI SDK, serve and hub: generateText with a tool and
// toolChoice required, a tool result fed back for an answer, streamText with a forced call, and
// generateObject with a zod schema (response_format json_schema). Depends on constrained decoding.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { generateText, streamText, generateObject, tool, stepCountIs } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { z } from "zod";
import { forEachTarget } from "./targets.mjs";

const weatherInput = z.object({ city: z.enum(["Paris", "Rome", "Oslo"]), unit: z.enum(["celsius", "fahrenheit"]) });

function suite(name, start) {
  describe(name, () => {
    let srv, provider, model;
    before(async () => {
      let base;
      ({ srv, base, model } = await start());
      provider = createOpenAICompatible({ name: "modelhub", baseURL: `${base}/v1`, apiKey: "sk-test",
                                          supportsStructuredOutputs: true });
    });
    after(async () => srv?.stop());

    test("generateText with toolChoice required returns a typed tool call", async () => {
      const r = await generateText({
        model: provider(model), prompt: "What is the weather in Paris?", temperature: 0,
        maxOutputTokens: 256, maxRetries: 0, toolChoice: "required",
        tools: { get_weather: tool({ description: "Current weather in a city", inputSchema: weatherInput }) },
      });
      assert.equal(r.finishReason, "tool-calls");
      assert.ok(r.toolCalls.length >= 1);
      for (const call of r.toolCalls) {
        assert.equal(call.toolName, "get_weather");
        weatherInput.parse(call.input);
      }
    });

    test("a tool with execute: the result goes back and the next step answers", async () => {
      let executed = 0;
      const r = await generateText({
        model: provider(model), prompt: "What is the weather in Paris?", temperature: 0,
        maxOutputTokens: 256, maxRetries: 0, stopWhen: stepCountIs(2),
        prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "none" }),
        tools: {
          get_weather: tool({
            description: "Current weather in a city", inputSchema: weatherInput,
            execute: async ({ city }) => (executed++, { city, temperature: 21, sky: "clear" }),
          }),
        },
      });
      assert.ok(executed >= 1);
      assert.equal(r.steps.length, 2);
      assert.equal(r.steps[0].finishReason, "tool-calls");
      assert.ok(r.steps[0].toolResults.length >= 1);
      assert.ok(["stop", "length"].includes(r.steps[1].finishReason));
      assert.ok(r.text.length > 0);
    });

    test("streamText with a forced tool call", async () => {
      const r = streamText({
        model: provider(model), prompt: "What is the weather in Oslo?", temperature: 0,
        maxOutputTokens: 256, maxRetries: 0, toolChoice: { type: "tool", toolName: "get_weather" },
        tools: { get_weather: tool({ description: "Current weather in a city", inputSchema: weatherInput }) },
      });
      const calls = [];
      for await (const part of r.fullStream) {
        if (part.type === "tool-call") calls.push(part);
        if (part.type === "error") throw part.error;
      }
      assert.ok(calls.length >= 1);
      for (const c of calls) {
        assert.equal(c.toolName, "get_weather");
        weatherInput.parse(c.input);
      }
      assert.equal(await r.finishReason, "tool-calls");
    });

    test("generateObject follows a zod schema", async () => {
      const schema = z.object({ hero: z.enum(["Lily", "Tom", "Ben"]), happy: z.boolean() });
      const r = await generateObject({
        model: provider(model), schema, schemaName: "hero", prompt: "Tell me about the hero.",
        temperature: 0, maxOutputTokens: 64, maxRetries: 0,
      });
      schema.parse(r.object);
      assert.equal(r.finishReason, "stop");
    });
  });
}

forEachTarget(suite);
