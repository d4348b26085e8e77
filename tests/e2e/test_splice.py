"""The router rewrites bodies, answers and stream events as text (members it keeps
are copied as written, README "Performance"): what the provider receives and what
the client gets must be what the tree rewrite gave."""
import json

from conftest import sse_events


def test_upstream_body_keeps_fields_drops_ours(stack):
    body = ('{"model":"test/solo","models":["test/solo"],"provider":{"allow_fallbacks":true},'
            '"route":"fallback","transforms":[],"stream":true,'
            '"stream_options":{"include_usage":false,"chunk_hint":[1,{"a":"b\\"c"}]},'
            '"messages":[{"role":"user","content":"quote \\" and \\\\ and \\u00e9 and }]{"}],'
            '"temperature":0.5,"x_custom":{"nested":[1,2.50,{"k":"v"}],"e":1e2},"metadata":{"k":"v"}}')
    s, h, raw = stack.chat(body)
    assert s == 200
    sent = stack.mock("solo").stats()["last_request"]
    assert sent["model"] == "up-solo"
    for k in ("models", "provider", "route", "transforms"):
        assert k not in sent
    assert sent["stream_options"] == {"include_usage": True, "chunk_hint": [1, {"a": 'b"c'}]}
    assert sent["messages"] == [{"role": "user", "content": 'quote " and \\ and \u00e9 and }]{'}]
    assert sent["x_custom"] == {"nested": [1, 2.5, {"k": "v"}], "e": 100}
    assert sent["temperature"] == 0.5 and sent["metadata"] == {"k": "v"} and sent["stream"] is True
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["id"].startswith("gen-") and c["model"] == "test/solo" and c["provider"] == "Solo AI"
               for c in chunks)
    assert "usage" not in chunks[-1]        # include_usage false: the usage chunk is not forwarded


def test_escaped_key_takes_the_tree_path(stack):
    # "mod\u0065l" is "model" to JSON parsers: the router must still route and
    # rewrite it (a raw-key splice would pass the client's value upstream)
    body = '{"mod\\u0065l":"test/solo","messages":[{"role":"user","content":"hi"}]}'
    s, h, raw = stack.chat(body)
    assert s == 200, raw
    assert stack.mock("solo").stats()["last_request"]["model"] == "up-solo"
    ans = json.loads(raw)
    assert ans["model"] == "test/solo" and ans["usage"]["cost"] > 0


def test_answer_usage_and_ids(stack):
    s, h, raw = stack.chat({"model": "test/solo", "messages": [{"role": "user", "content": "hello there"}]})
    assert s == 200
    ans = json.loads(raw)
    assert list(ans)[:5] == ["id", "object", "created", "model", "provider"]
    assert ans["object"] == "chat.completion" and ans["system_fingerprint"] is None or \
        isinstance(ans["system_fingerprint"], str)
    u = ans["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["cost"] > 0 and ans["choices"][0]["message"]["content"]
