// The unmodified OpenRouter SDK (@openrouter/sdk) against Agora, which
// validates every answer against its own schemas: a completion and a stream.
// usage: node openrouter_sdk.mjs BASE_URL KEY MODEL
import { OpenRouter } from "@openrouter/sdk";

const [serverURL, apiKey, model] = process.argv.slice(2);
const client = new OpenRouter({ apiKey, serverURL });
const messages = [{ role: "user", content: "Say hello" }];

const r = await client.chat.send({ httpReferer: "https://agora.test/sdk", appTitle: "agora-sdk-test", chatRequest: { model, messages, stream: false } });
let text = "", ids = new Set(), chunks = 0, usage = null;
const stream = await client.chat.send({ chatRequest: { model, messages, stream: true, streamOptions: { includeUsage: true } } });
for await (const c of stream) {
  chunks++;
  ids.add(c.id);
  if (c.choices?.length) text += c.choices[0].delta?.content || "";
  if (c.usage) usage = c.usage;
}
const models = await client.models.list();
console.log(JSON.stringify({
  id: r.id, model: r.model, content: r.choices[0].message.content, usage: r.usage,
  stream: { chunks, ids: [...ids], text, usage },
  models: (models.result?.data || []).length, total_count: models.result?.totalCount,
}));
