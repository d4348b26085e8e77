"""Models and endpoints listings, the key endpoint, catalog changes picked up
while running, and keys stored only as hashes."""
import copy
import json
from decimal import Decimal

from conftest import wait_for


def per_token(uusd):
    return Decimal(uusd) / Decimal(10 ** 12)


def test_models_listing_shape(stack):
    s, body = stack.get("/api/v1/models")
    assert s == 200
    models = {m["id"]: m for m in body["data"]}
    m = models["test/three"]
    for k in ("id", "name", "created", "description", "context_length", "pricing", "architecture",
              "top_provider", "supported_parameters"):
        assert k in m, k
    assert Decimal(m["pricing"]["prompt"]) == per_token(100000)      # the cheapest endpoint
    assert Decimal(m["pricing"]["completion"]) == per_token(200000)
    assert isinstance(m["pricing"]["prompt"], str)
    assert m["architecture"]["input_modalities"] == ["text"]
    assert m["top_provider"]["max_completion_tokens"] == 4096
    assert "tools" in m["supported_parameters"]
    s2, body2 = stack.get("/v1/models")
    assert s2 == 200 and body2 == body


def test_model_endpoints(stack):
    s, body = stack.get("/api/v1/models/test/three/endpoints")
    assert s == 200
    eps = body["data"]["endpoints"]
    assert [e["provider_name"] for e in eps] == ["Alpha AI", "Beta AI", "Gamma AI"]
    for e in eps:
        for k in ("pricing", "context_length", "max_completion_tokens", "quantization", "status"):
            assert k in e
    assert eps[2]["data_policy"] == {"training": True, "retention_days": 60}
    s, body = stack.get("/api/v1/models/nobody/nothing/endpoints")
    assert s == 404 and body["error"]["code"] == 404


def test_key_endpoint(stack):
    s, body = stack.get("/api/v1/key", key=stack.key)
    assert s == 200
    d = body["data"]
    assert d["label"].startswith("sk-ag-v1-") and d["label"].endswith("...")
    assert "usage" in d and "limit" in d
    assert d["is_provisioning_key"] is False
    s, body = stack.get("/api/v1/key")
    assert s == 401 and body["error"]["code"] == 401


def test_catalog_change_is_picked_up(stack):
    new = copy.deepcopy(stack.catalog)
    new["models"].append({"id": "test/new", "name": "Test: New", "context_length": 1000,
                          "endpoints": [{"provider": "solo", "upstream_model": "up-new", "max_output": 100,
                                         "price": {"prompt_uusd_per_mtok": 7, "completion_uusd_per_mtok": 9}}]})
    new["models"][0]["endpoints"][0]["price"]["prompt_uusd_per_mtok"] = 110000
    try:
        stack.write_catalog(new)
        stack.ctl("catalog", "import", stack.catalog_path)

        def seen():
            s, body = stack.get("/api/v1/models")
            ids = {m["id"]: m for m in body["data"]}
            return "test/new" in ids and Decimal(ids["test/three"]["pricing"]["prompt"]) == per_token(110000)
        assert wait_for(seen, 5)
        s, body = stack.chat_json({"model": "test/new", "messages": [{"role": "user", "content": "x"}]})
        assert s == 200 and body["provider"] == "Solo AI"
    finally:
        stack.write_catalog(stack.catalog)
        stack.ctl("catalog", "import", stack.catalog_path)
    assert wait_for(lambda: "test/new" not in {m["id"] for m in stack.get("/api/v1/models")[1]["data"]}, 5)


def test_keys_stored_only_as_hashes(stack):
    rows = stack.sql("SELECT encode(hash, 'hex'), prefix FROM api_keys")
    dump = json.dumps(rows)
    assert stack.key not in dump and stack.admin_key not in dump
    assert all(len(h) == 64 for h, _ in rows)
    assert stack.key[14:] not in dump


def test_make_run_output(stack):
    out = stack.start_output
    assert "base URL:" in out and stack.key in out and "curl -s" in out
    for name in ("AGORA_URL", "AGORA_KEY", "AGORA_ADMIN_KEY", "AGORA_DASHBOARD_URL"):
        assert name in stack.vars
    # the dashboards' URL carries the operator key in its fragment (never sent to the server)
    dash = "http://127.0.0.1:%d/#key=%s" % (stack.analytics_port, stack.admin_key)
    assert stack.vars["AGORA_DASHBOARD_URL"] == dash and dash in out
    s, h, raw = stack.request("GET", "/health", port=stack.analytics_port)
    assert s == 200
