// structured_output.test.mjs — response_format json_object / json_schema: real generation at
// temperature 1 with many seeds, streamed and not, must always give JSON that parses and matches
// the schema (checked by a small validator for the subset below); bad schemas are 400s.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { SRC, STORIES, startServe, postJson, postStream, synth } from "./lib.mjs";

// A nested object, an array, an enum, an integer, anyOf, optional properties.
const SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 24 },
    age: { type: "integer" },
    kind: { enum: ["cat", "dog", "bird"] },
    tags: { type: "array", items: { type: "string", maxLength: 12 }, minItems: 1, maxItems: 3 },
    owner: {
      type: "object",
      properties: { first: { type: "string", maxLength: 16 }, score: { type: "number" }, ok: { type: "boolean" } },
      required: ["first", "ok"],
      additionalProperties: false,
    },
    extra: { anyOf: [{ type: "null" }, { type: "integer" }, { type: "array", items: { type: "boolean" }, maxItems: 2 }] },
    note: { type: "string", maxLength: 20 },
  },
  required: ["name", "age", "kind", "tags", "owner", "extra"],
  additionalProperties: false,
};

/** Errors of `v` against `schema` (the subset the server supports), [] when it matches. */
function validate(schema, v, at = "$") {
  if (schema === true || Object.keys(schema).length === 0) return [];
  if ("const" in schema) return JSON.stringify(v) === JSON.stringify(schema.const) ? [] : [`${at}: not the const`];
  if (schema.enum) return schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v)) ? [] : [`${at}: not in enum`];
  if (schema.anyOf) return schema.anyOf.some((s) => validate(s, v, at).length === 0) ? [] : [`${at}: no anyOf branch`];
  if (Array.isArray(schema.type))
    return schema.type.some((t) => validate({ ...schema, type: t }, v, at).length === 0) ? [] : [`${at}: no listed type`];
  const type = schema.type;
  const is = {
    object: (x) => x !== null && typeof x === "object" && !Array.isArray(x),
    array: Array.isArray,
    string: (x) => typeof x === "string",
    number: (x) => typeof x === "number",
    integer: Number.isInteger,
    boolean: (x) => typeof x === "boolean",
    null: (x) => x === null,
  };
  if (type && !is[type](v)) return [`${at}: not ${type}`];
  const errs = [];
  if (type === "object") {
    for (const r of schema.required || []) if (!(r in v)) errs.push(`${at}: missing ${r}`);
    for (const [k, x] of Object.entries(v)) {
      if (schema.properties && k in schema.properties) errs.push(...validate(schema.properties[k], x, `${at}.${k}`));
      else if (schema.additionalProperties === false) errs.push(`${at}: extra ${k}`);
    }
  }
  if (type === "array") {
    if (schema.minItems !== undefined && v.length < schema.minItems) errs.push(`${at}: too few items`);
    if (schema.maxItems !== undefined && v.length > schema.maxItems) errs.push(`${at}: too many items`);
    if (schema.items) v.forEach((x, i) => errs.push(...validate(schema.items, x, `${at}[${i}]`)));
  }
  if (type === "string" && schema.maxLength !== undefined && [...v].length > schema.maxLength)
    errs.push(`${at}: too long`);
  return errs;
}

const jsonSchema = (schema) => ({ type: "json_schema", json_schema: { name: "pet", schema, strict: true } });

let stories, big;
before(async () => {
  // a synthetic model over Llama 3's 128k byte-level BPE vocabulary: masks over a real big vocab
  const model = synth("grammar-llama3", ["--vocab-from", path.join(SRC, "tests/data/ggml-vocab-llama3.gguf"), "--seed", "7"]);
  [stories, big] = await Promise.all([startServe(["-m", STORIES]), startServe(["-m", model])]);
});
after(async () => Promise.all([stories?.stop(), big?.stop()]));

async function generate(server, body, stream) {
  const url = `${server.base}/v1/chat/completions`;
  const req = { messages: [{ role: "user", content: "Describe a pet as JSON." }], temperature: 1, ...body };
  if (!stream) {
    const r = await postJson(url, req);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return { text: r.body.choices[0].message.content, finish: r.body.choices[0].finish_reason };
  }
  const r = await postStream(url, { ...req, stream: true });
  assert.equal(r.status, 200, r.raw);
  let text = "", finish = null;
  for (const ev of r.events) {
    if (ev === "[DONE]") continue;
    const c = ev.choices?.[0];
    if (c?.delta?.content) text += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  return { text, finish };
}

async function checkMany(server, responseFormat, schema, seeds, maxTokens) {
  let n = 0;
  for (const stream of [false, true])
    for (const seed of seeds) {
      const { text, finish } = await generate(server, { seed, max_tokens: maxTokens, response_format: responseFormat }, stream);
      let doc;
      assert.doesNotThrow(() => (doc = JSON.parse(text)), `seed ${seed} stream ${stream}: ${text}`);
      assert.deepEqual(validate(schema, doc), [], `seed ${seed} stream ${stream}: ${text}`);
      assert.equal(finish, "stop", `seed ${seed}: ${text}`);
      n++;
    }
  return n;
}

test("json_schema on stories260K: every seed parses and validates, streamed or not", async () => {
  const seeds = Array.from({ length: 12 }, (_, i) => i + 1);
  assert.equal(await checkMany(stories, jsonSchema(SCHEMA), SCHEMA, seeds, 400), 24);
});

test("json_object on stories260K, even when max_tokens is short", async () => {
  const obj = { type: "object" };
  await checkMany(stories, { type: "json_object" }, obj, [1, 2, 3, 4, 5], 60);
  await checkMany(stories, { type: "json_object" }, obj, [6, 7], 300);
});

test("json_schema and json_object on a synthetic model with a 128k vocabulary", async () => {
  await checkMany(big, jsonSchema(SCHEMA), SCHEMA, [1, 2, 3], 200);
  await checkMany(big, { type: "json_object" }, { type: "object" }, [4, 5], 60);
});

test("schemas of other shapes: top-level array, const, $defs, type lists", async () => {
  const schema = {
    $defs: { point: { type: "object", properties: { x: { type: "integer" }, y: { type: "integer" } }, required: ["x", "y"] } },
    type: "array",
    items: { anyOf: [{ $ref: "#/$defs/point" }, { const: "origin" }, { type: ["string", "null"], maxLength: 5 }] },
    minItems: 2,
    maxItems: 4,
  };
  const resolved = structuredClone(schema);
  resolved.items.anyOf[0] = schema.$defs.point;
  await checkMany(stories, jsonSchema(schema), resolved, [1, 2, 3, 4], 300);
});

test("response_format on /v1/completions, and type text changes nothing", async () => {
  const r = await postJson(`${stories.base}/v1/completions`, {
    prompt: "Once upon a time", temperature: 1, seed: 3, max_tokens: 200, response_format: jsonSchema(SCHEMA),
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(validate(SCHEMA, JSON.parse(r.body.choices[0].text)), []);
  const body = { messages: [{ role: "user", content: "Lily" }], temperature: 0, max_tokens: 20 };
  const plain = await postJson(`${stories.base}/v1/chat/completions`, body);
  const text = await postJson(`${stories.base}/v1/chat/completions`, { ...body, response_format: { type: "text" } });
  assert.equal(text.status, 200);
  assert.equal(text.body.choices[0].message.content, plain.body.choices[0].message.content);
});

test("bad response_format and unsupported schemas are 400s naming the field", async () => {
  const url = `${stories.base}/v1/chat/completions`;
  const ask = (response_format) =>
    postJson(url, { messages: [{ role: "user", content: "x" }], max_tokens: 5, response_format });
  const cases = [
    [{ type: "xml" }, "response_format.type", /json_schema/],
    ["json", "response_format", /object/],
    [{ type: "json_schema" }, "response_format.json_schema", /name/],
    [{ type: "json_schema", json_schema: { name: "bad name!", schema: {} } }, "response_format.json_schema.name", /letters/],
    [jsonSchema({ type: "string", pattern: "^a" }), "response_format.json_schema.schema", /'pattern'/],
    [jsonSchema({ type: "object", properties: { d: { type: "string", format: "date" } } }), "response_format.json_schema.schema", /'format' at properties\.d/],
    [jsonSchema({ type: "strnig" }), "response_format.json_schema.schema", /'type'/],
    [jsonSchema([1, 2]), "response_format.json_schema.schema", /must be an object/],
    [jsonSchema({ type: "integer", minimum: 3 }), "response_format.json_schema.schema", /'minimum'/],
    [jsonSchema({ $ref: "https://example.com/s.json" }), "response_format.json_schema.schema", /\$ref/],
    [{ type: "json_object", json_schema: {} }, "response_format", /takes no/],
  ];
  let deep = {};
  for (let i = 0; i < 500; i++) deep = { type: "array", items: deep };
  cases.push([jsonSchema(deep), "response_format.json_schema.schema", /deeper/]);
  for (const [rf, param, msg] of cases) {
    const r = await ask(rf);
    assert.equal(r.status, 400, JSON.stringify(rf).slice(0, 200));
    assert.equal(r.body.error.param, param);
    assert.match(r.body.error.message, msg);
  }
  // the server is still fine
  const ok = await ask({ type: "json_object" });
  assert.equal(ok.status, 200);
});
