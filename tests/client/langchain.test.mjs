// langchain.test.mjs — LangChain's ChatOpenAI (`@langchain/openai`) against `modelhub serve` and
// through the hub: invoke and stream.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ChatOpenAI } from "@langchain/openai";
import { HumanMessage, SystemMessage } from "@langchain/core/messages";
import { forEachTarget } from "./targets.mjs";

const MESSAGES = [new SystemMessage("Tell a story."), new HumanMessage("Once upon a time")];

function suite(name, start) {
  describe(name, () => {
    let srv, chat;
    before(async () => {
      const { srv: s, base, model } = await start();
      srv = s;
      chat = new ChatOpenAI({ model, apiKey: "sk-test", configuration: { baseURL: `${base}/v1` },
                              temperature: 0, maxTokens: 12, maxRetries: 0, streamUsage: true });
    });
    after(async () => srv?.stop());

    test("invoke", async () => {
      const m = await chat.invoke(MESSAGES);
      assert.equal(typeof m.content, "string");
      assert.ok(m.content.length > 0);
      assert.equal(m.response_metadata.finish_reason, "length");
      assert.equal(m.usage_metadata.output_tokens, 12);
      assert.ok(m.usage_metadata.input_tokens > 0);
    });

    test("stream gives the same greedy text as invoke, with usage", async () => {
      const whole = await chat.invoke(MESSAGES);
      let text = "";
      let chunks = 0;
      let usage;
      for await (const chunk of await chat.stream(MESSAGES)) {
        text += chunk.content;
        chunks++;
        if (chunk.usage_metadata) usage = chunk.usage_metadata;
      }
      assert.equal(text, whole.content);
      assert.ok(chunks > 1);
      assert.equal(usage?.output_tokens, 12);
    });

    test("batch of two", async () => {
      const out = await chat.batch([MESSAGES, [new HumanMessage("The little dog")]]);
      assert.equal(out.length, 2);
      assert.ok(out.every((m) => m.content.length > 0));
    });
  });
}

forEachTarget(suite);
