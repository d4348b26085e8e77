"""Providers that speak the Anthropic Messages API, reached through the
router's adapter: the client sends and gets chat completions all the same
(JSON and SSE, tools, usage and exact cost, fail-over)."""
import json
from decimal import Decimal

from conftest import CLAUDE, sse_events, wait_for

# sorted by price: anthro, anthro2 (Anthropic Messages), then solo (OpenAI-compatible)
ASK = {"model": "test/claude", "messages": [{"role": "user", "content": "Hello there"}],
       "provider": {"sort": "price"}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather now",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


def expected_cost(usage, provider):
    _, pp, cp = CLAUDE[provider]
    nusd = usage["prompt_tokens"] * pp // 1000 + usage["completion_tokens"] * cp // 1000
    return Decimal(nusd) / Decimal(10 ** 9)


def chat_exact(stack, body):
    s, h, raw = stack.chat(body)
    return s, json.loads(raw, parse_float=Decimal)


def chunks_of(raw):
    events = sse_events(raw)
    assert events[-1] == "[DONE]", events[-3:]
    return [json.loads(e, parse_float=Decimal) for e in events[:-1]]


def test_non_streamed_answer(stack):
    body = dict(ASK, messages=[{"role": "system", "content": "Be brief."},
                               {"role": "developer", "content": "Be kind."},
                               {"role": "user", "content": "Hello there"}],
                temperature=0.5, stop="END", max_tokens=5, user="end-user-7")
    s, h, raw = stack.chat(body)
    assert s == 200, raw
    out = json.loads(raw, parse_float=Decimal)
    assert out["id"].startswith("gen-") and out["object"] == "chat.completion"
    assert out["model"] == "test/claude" and out["provider"] == "Anthro Messages"
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("Hello from anthro")
    assert choice["finish_reason"] == "length"           # Anthropic's max_tokens
    u = out["usage"]
    assert u["completion_tokens"] == 5
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] > 5
    assert u["cost"] == expected_cost(u, "anthro")
    st = stack.mock("anthro").stats()
    sent, headers = st["last_request"], st["last_headers"]
    assert st["last_path"] == "/v1/messages"
    assert sent["model"] == "up-anthro-claude"
    assert sent["system"] == "Be brief.\n\nBe kind."
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]
    assert sent["max_tokens"] == 5 and sent["temperature"] == 0.5 and sent["stop_sequences"] == ["END"]
    assert sent["metadata"] == {"user_id": "end-user-7"}
    for k in ("provider", "stop", "stream_options", "user", "stream"):
        assert k not in sent, k
    assert headers["x-api-key"] == stack.provider_keys["TEST_KEY_ANTHRO"]
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["authorization"] is None
    assert stack.key not in json.dumps(st)


def test_max_tokens_default(stack):
    s, out = stack.chat_json(ASK)
    assert s == 200, out
    assert stack.mock("anthro").stats()["last_request"]["max_tokens"] == 4096
    assert out["choices"][0]["finish_reason"] == "stop"   # end_turn


def test_streamed_answer_with_usage(stack):
    s, whole = stack.chat_json(ASK)
    assert s == 200
    s, h, raw = stack.chat(dict(ASK, stream=True, stream_options={"include_usage": True}))
    assert s == 200 and h["content-type"].startswith("text/event-stream")
    chunks = chunks_of(raw)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("gen-")
    assert chunks[0]["id"] == h["x-generation-id"]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "test/claude" for c in chunks)
    assert all(c["provider"] == "Anthro Messages" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    usage = [c for c in chunks if c.get("usage")]
    assert len(usage) == 1 and usage[0] is chunks[-1] and usage[0]["choices"] == []
    u = usage[0]["usage"]
    assert u["prompt_tokens"] == whole["usage"]["prompt_tokens"] and u["completion_tokens"] == 12
    assert u["total_tokens"] == u["prompt_tokens"] + 12
    assert u["cost"] == expected_cost(u, "anthro")
    assert stack.mock("anthro").stats()["last_request"]["stream"] is True


def test_streamed_without_usage_is_still_metered(stack):
    s, h, raw = stack.chat(dict(ASK, stream=True))
    assert s == 200
    chunks = chunks_of(raw)
    assert chunks and not any("usage" in c for c in chunks)
    rows = wait_for(lambda: stack.sql("SELECT provider_id, streamed, estimated, completion_tokens FROM usage_events"
                                      " WHERE generation_id = %s", chunks[0]["id"]), 10)
    assert rows == [("anthro", True, False, 12)]        # the provider's count, not an estimate


def test_tools_round_trip(stack):
    s, out = stack.chat_json(dict(ASK, tools=TOOLS, tool_choice="auto"))
    assert s == 200, out
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"mock": True}
    sent = stack.mock("anthro").stats()["last_request"]
    assert sent["tools"] == [{"name": "get_weather", "description": "The weather now",
                              "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "auto"}

    # the next turn carries the call and its result back
    follow = dict(ASK, tools=TOOLS, parallel_tool_calls=False,
                  tool_choice={"type": "function", "function": {"name": "get_weather"}},
                  messages=ASK["messages"] + [choice["message"],
                                              {"role": "tool", "tool_call_id": call["id"], "content": "18 C"}])
    s, out = stack.chat_json(follow)
    assert s == 200, out
    sent = stack.mock("anthro").stats()["last_request"]
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call["id"], "name": "get_weather",
                                           "input": {"mock": True}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18 C"}]}]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}

    # streamed: tool_calls deltas (id and name first, then the arguments)
    s, h, raw = stack.chat(dict(ASK, tools=TOOLS, stream=True))
    assert s == 200
    chunks = chunks_of(raw)
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["index"] == 0 and calls[0]["id"] == "toolu_mock1" and calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "get_weather"
    assert all(tc["index"] == 0 for tc in calls)
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"mock": True}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_failover_between_anthropic_and_openai_endpoints(stack):
    stack.mock("anthro").config(fail="500")
    s, out = chat_exact(stack, ASK)
    assert s == 200, out
    assert out["provider"] == "Anthro2 Messages"
    assert out["usage"]["cost"] == expected_cost(out["usage"], "anthro2")
    # both Anthropic endpoints fail: the OpenAI-compatible one gets the client's request intact
    stack.mock("anthro2").config(fail="429", retry_after=0)   # 0: its breaker stays closed
    body = dict(ASK, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                stop="END")
    s, out = chat_exact(stack, body)
    assert s == 200, out
    assert out["provider"] == "Solo AI"
    sent = stack.mock("solo").stats()["last_request"]
    assert sent["model"] == "up-solo-claude" and sent["messages"] == body["messages"] and sent["stop"] == "END"
    assert "system" not in sent and "max_tokens" not in sent
    assert out["usage"]["cost"] == expected_cost(out["usage"], "solo")


def test_streamed_failover_before_the_first_byte(stack):
    for mode in ("error_event", "garbage", "reset"):
        stack.mock("anthro").config(fail=mode)
        s, h, raw = stack.chat(dict(ASK, stream=True, stream_options={"include_usage": True}))
        assert s == 200, (mode, raw)
        chunks = chunks_of(raw)
        assert {c["provider"] for c in chunks} == {"Anthro2 Messages"}, mode
        u = chunks[-1]["usage"]
        assert u["cost"] == expected_cost(u, "anthro2")
    assert "error event: Overloaded" in stack.log("router")


def test_stream_cut_mid_way(stack):
    stack.mock("anthro").config(fail="cut", words=20)
    s, h, raw = stack.chat(dict(ASK, stream=True))
    assert s == 200
    events = sse_events(raw)
    assert events[-1] != "[DONE]"
    assert json.loads(events[-1])["error"]["code"] == 502
    assert json.loads(events[0])["provider"] == "Anthro Messages"


def test_errors(stack):
    stack.mock("anthro").config(fail="400")             # the request itself: Anthropic's message, no retry
    s, out = stack.chat_json(ASK)
    assert s == 400 and out["error"]["message"] == "mock bad request"
    assert stack.mock("anthro2").stats()["requests"] == 0
    stack.mock("anthro").config(fail="none")
    before = stack.mock("anthro").stats()["requests"]
    bad = dict(ASK, messages=[{"role": "user", "content": [{"type": "input_audio",
                                                              "input_audio": {"data": "", "format": "wav"}}]}])
    s, out = stack.chat_json(bad)                       # what Messages cannot express
    assert s == 400 and "'input_audio'" in out["error"]["message"]
    assert stack.mock("anthro").stats()["requests"] == before
