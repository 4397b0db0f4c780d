// Drives a WattOS server with the official OpenAI Node SDK, unmodified (see python_sdk.py for the models).
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.WATTOS_BASE_URL + "/v1", apiKey: "sk-wattos-test", maxRetries: 0 });

let r = await client.chat.completions.create({ model: "parrot-1", messages: [{ role: "user", content: "hello node" }] });
assert.equal(r.choices[0].message.content, "hello node");
assert.equal(r.usage.total_tokens, 10);

let text = "";
let usage = null;
const stream = await client.chat.completions.create({
  model: "parrot-1", stream: true, stream_options: { include_usage: true },
  messages: [{ role: "user", content: "node streams too" }],
});
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(text, "node streams too");
assert.equal(usage.completion_tokens, 3);

const tools = [{ type: "function", function: { name: "lookup", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
r = await client.chat.completions.create({ model: "parrot-1", messages: [{ role: "user", content: "weather?" }], tools });
assert.deepEqual(r.choices[0].message.tool_calls.map((c) => JSON.parse(c.function.arguments).city), ["Berlin", "Paris"]);

const runner = client.chat.completions.stream({ model: "parrot-1", messages: [{ role: "user", content: "weather?" }], tools });
const final = await runner.finalChatCompletion();
assert.equal(final.choices[0].message.tool_calls.length, 2);

const e = await client.embeddings.create({ model: "toy-embed", input: ["ab", "abcd"] });
assert.deepEqual(e.data.map((d) => Array.from(d.embedding)), [[2, 0.5], [4, 0.5]]);

const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.deepEqual(models, ["parrot-1", "toy-embed"]);

await assert.rejects(client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }), OpenAI.NotFoundError);
await assert.rejects(client.chat.completions.create({ model: "parrot-1", messages: [] }), OpenAI.BadRequestError);
await assert.rejects(client.chat.completions.create({ model: "parrot-1", messages: [{ role: "user", content: "busy" }] }), OpenAI.RateLimitError);
await assert.rejects(async () => {
  const s = await client.chat.completions.create({ model: "parrot-1", stream: true, messages: [{ role: "user", content: "break" }] });
  for await (const _ of s) { /* drain */ }
}, OpenAI.APIError);

console.log("node SDK: all checks passed");
