"""Real, unmodified client SDKs from npm (openai, @openrouter/sdk) against
the router: what a developer would run. The OpenRouter SDK validates every
answer, stream chunk and the model list against its own schemas."""
import json
import os
import subprocess

import pytest

from conftest import ROOT

SDK = os.path.join(ROOT, "tests", "sdk")


@pytest.fixture(scope="session")
def node_modules():
    if not os.path.isdir(os.path.join(SDK, "node_modules", "openai")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=SDK,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
    return SDK


def run(script, stack, model="test/three:floor"):     # :floor: the cheapest, alpha
    r = subprocess.run(["node", script, "http://127.0.0.1:%d/api/v1" % stack.router_port, stack.key, model],
                       cwd=SDK, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_openai_sdk(stack, node_modules):
    out = run("openai_sdk.mjs", stack)
    assert out["id"].startswith("gen-") and out["model"] == "test/three" and out["provider"] == "Alpha AI"
    assert out["content"].startswith("Hello from alpha")
    assert out["usage"]["total_tokens"] > 0 and out["usage"]["cost"] > 0
    s = out["stream"]
    assert len(s["ids"]) == 1 and s["ids"][0].startswith("gen-")
    assert s["text"] == out["content"] and s["usage"]["cost"] > 0
    assert out["tool"] == "get_weather"
    assert out["error"]["status"] == 404


def test_openrouter_sdk(stack, node_modules):
    out = run("openrouter_sdk.mjs", stack)
    assert out["id"].startswith("gen-") and out["model"] == "test/three"
    assert out["content"].startswith("Hello from alpha")
    assert out["usage"]["totalTokens"] > 0 and out["usage"]["cost"] > 0
    assert out["stream"]["text"] == out["content"] and out["stream"]["usage"]["cost"] > 0
    assert out["models"] == out["total_count"] == len(stack.catalog["models"])
