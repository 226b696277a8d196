// chat_templates.test.mjs — a synthetic model per template family (modelhub synth
// --chat-template): serve detects the family and formats the conversation with it.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { writeFileSync } from "node:fs";
import { SRC, STORIES, startServe, postJson, synth, tempDir, waitFor } from "./lib.mjs";

const dir = path.join(SRC, "tests", "data", "chat_templates");
const conversation = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Hi" },
];
// family -> a piece of the formatted prompt that only that family writes
const families = {
  chatml: "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
  llama2: "[INST] Be brief.\nHi [/INST]",
  llama3: "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  "mistral-v7": "[SYSTEM_PROMPT] Be brief.[/SYSTEM_PROMPT][INST] Hi[/INST]",
  zephyr: "<|user|>\nHi<|endoftext|>\n<|assistant|>\n",
  gemma: "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n",
  phi3: "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n",
};

for (const [family, marker] of Object.entries(families)) {
  test(`${family}: detected and used`, async () => {
    const model = synth(`chat-${family}`, ["--vocab-from", STORIES, "--chat-template", path.join(dir, `${family}.jinja`)]);
    const s = await startServe(["-m", model, "--log-level", "debug"]);
    try {
      const r = await postJson(`${s.base}/v1/chat/completions`, { messages: conversation, max_tokens: 4 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await waitFor(() => /POST \/v1\/chat\/completions 200/.test(s.stderr()), { what: "request log" });
      assert.match(s.stderr(), new RegExp(`chat format ${family}\\)`));
      const logged = s.stderr().match(/chat prompt \([^)]*\): ([\s\S]*?)\n\d{4}-\d\d-\d\d /);
      assert.ok(logged, "prompt logged at debug level");
      assert.ok(logged[1].includes(marker.replace(/\n$/, "")), `${family} prompt:\n${logged[1]}`);
    } finally {
      await s.stop();
    }
  });
}

test("an unrecognised template is logged once and the plain format is used", async () => {
  const t = tempDir();
  try {
    const tmpl = path.join(t.dir, "odd.jinja");
    writeFileSync(tmpl, "{% for m in messages %}~~{{ m['content'] }}~~{% endfor %}");
    const model = synth("chat-odd", ["--vocab-from", STORIES, "--chat-template", tmpl]);
    const s = await startServe(["-m", model, "--log-level", "debug"]);
    try {
      for (let i = 0; i < 2; i++) {
        const r = await postJson(`${s.base}/v1/chat/completions`, { messages: conversation, max_tokens: 2 });
        assert.equal(r.status, 200);
      }
      assert.equal((s.stderr().match(/unrecognised chat template/g) || []).length, 1);
      assert.match(s.stderr(), /chat prompt \(unknown format\): System: Be brief.\nUser: Hi\nAssistant:/);
    } finally {
      await s.stop();
    }
  } finally {
    t.cleanup();
  }
});
