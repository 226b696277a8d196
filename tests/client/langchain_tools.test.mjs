// langchain_tools.test.mjs — LangChain's ChatOpenAI, serve and hub: bindTools with tool_choice,
// a ToolMessage round trip, streamed tool call chunks, and withStructuredOutput (json_schema).
// Depends on constrained decoding.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ChatOpenAI } from "@langchain/openai";
import { HumanMessage, ToolMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { z } from "zod";
import { forEachTarget } from "./targets.mjs";

const weatherInput = z.object({ city: z.enum(["Paris", "Rome", "Oslo"]), unit: z.enum(["celsius", "fahrenheit"]) });
const getWeather = tool(async ({ city }) => JSON.stringify({ city, temperature: 21, sky: "clear" }),
  { name: "get_weather", description: "Current weather in a city", schema: weatherInput });
const ASK = [new HumanMessage("What is the weather in Paris?")];

function suite(name, start) {
  describe(name, () => {
    let srv, chat;
    before(async () => {
      const { srv: s, base, model } = await start();
      srv = s;
      chat = new ChatOpenAI({ model, apiKey: "sk-test", configuration: { baseURL: `${base}/v1` },
                              temperature: 0, maxTokens: 256, maxRetries: 0 });
    });
    after(async () => srv?.stop());

    test("bindTools with tool_choice required: tool_calls, then the ToolMessage gets an answer", async () => {
      const forced = chat.bindTools([getWeather], { tool_choice: "required" });
      const ai = await forced.invoke(ASK);
      assert.ok(ai.tool_calls.length >= 1);
      for (const call of ai.tool_calls) {
        assert.equal(call.name, "get_weather");
        weatherInput.parse(call.args);
        assert.ok(call.id);
      }
      assert.equal(ai.response_metadata.finish_reason, "tool_calls");
      const results = await Promise.all(ai.tool_calls.map((c) => getWeather.invoke(c)));
      assert.ok(results.every((m) => m instanceof ToolMessage));
      const answer = await chat.bindTools([getWeather], { tool_choice: "none" })
        .invoke([...ASK, ai, ...results], { max_tokens: 16 });
      assert.equal(typeof answer.content, "string");
      assert.ok(answer.content.length > 0);
      assert.deepEqual(answer.tool_calls, []);
    });

    test("tool_choice naming the function, streamed: the chunks concat to the call", async () => {
      const forced = chat.bindTools([getWeather], { tool_choice: "get_weather" });
      let acc;
      for await (const chunk of await forced.stream(ASK)) acc = acc ? acc.concat(chunk) : chunk;
      assert.ok(acc.tool_calls.length >= 1);
      assert.equal(acc.tool_calls[0].name, "get_weather");
      weatherInput.parse(acc.tool_calls[0].args);
    });

    test("withStructuredOutput (jsonSchema) returns an object that follows the schema", async () => {
      const schema = z.object({ hero: z.enum(["Lily", "Tom", "Ben"]), happy: z.boolean() });
      const structured = chat.withStructuredOutput(schema, { name: "hero", method: "jsonSchema" });
      const out = await structured.invoke([new HumanMessage("Tell me about the hero.")]);
      schema.parse(out);
    });

    test("withStructuredOutput (functionCalling) goes through a forced tool call", async () => {
      const schema = z.object({ hero: z.enum(["Lily", "Tom", "Ben"]), happy: z.boolean() });
      const structured = chat.withStructuredOutput(schema, { name: "hero", method: "functionCalling" });
      const out = await structured.invoke([new HumanMessage("Tell me about the hero.")]);
      schema.parse(out);
    });
  });
}

forEachTarget(suite);
