// The unmodified OpenAI SDK against Agora: one completion, one stream with
// usage, one tool call. Prints a JSON summary for tests/e2e/test_sdk.py.
// usage: node openai_sdk.mjs BASE_URL KEY MODEL
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const messages = [{ role: "user", content: "Say hello" }];

const r = await client.chat.completions.create({ model, messages, temperature: 0.2, max_tokens: 50 });
let text = "", ids = new Set(), usage = null, chunks = 0;
const stream = await client.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } });
for await (const c of stream) {
  chunks++;
  ids.add(c.id);
  if (c.choices.length) text += c.choices[0].delta.content || "";
  if (c.usage) usage = c.usage;
}
const t = await client.chat.completions.create({
  model, messages,
  tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }],
});
let error = null;
try {
  await client.chat.completions.create({ model: "nobody/nothing", messages });
} catch (e) {
  error = { status: e.status, message: e.message };
}
console.log(JSON.stringify({
  id: r.id, model: r.model, provider: r.provider, content: r.choices[0].message.content, usage: r.usage,
  stream: { chunks, ids: [...ids], text, usage },
  tool: t.choices[0].message.tool_calls?.[0]?.function?.name, error,
}));
