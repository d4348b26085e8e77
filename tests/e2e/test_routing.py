"""Routing beyond preferences: the default load balancing (inverse square of
price), operator policy that no request can widen, `models` fail-over, and
the record of every attempt (X-Agora-Attempts, provider_responses)."""
import collections
import concurrent.futures
import json

from conftest import THREE, wait_for

MSG = [{"role": "user", "content": "route me"}]
NAMES = {"alpha": "Alpha AI", "beta": "Beta AI", "gamma": "Gamma AI"}


def served_by(stack, body, key=None):
    s, raw = stack.chat_json(body, key=key)
    return s, raw.get("provider") or raw["error"]["message"]


def warm(stack):
    """One success per endpoint, so no earlier test's failure keeps one out
    of the balanced pick."""
    for pid in THREE:
        s, _ = served_by(stack, {"model": "test/three", "messages": MSG, "provider": {"only": [pid]}})
        assert s == 200


def test_default_balancing_follows_inverse_square_price(stack):
    warm(stack)
    price = {pid: pp + cp for pid, (_, pp, cp) in THREE.items()}
    weight = {pid: 1.0 / price[pid] ** 2 for pid in price}
    total = sum(weight.values())
    expected = {NAMES[pid]: w / total for pid, w in weight.items()}   # 89.0%, 9.9%, 1.1%
    n = 1500

    def one(_):
        return served_by(stack, {"model": "test/three", "messages": MSG})

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(n)))
    assert all(s == 200 for s, _ in results)
    got = collections.Counter(p for _, p in results)
    for name, share in expected.items():
        # tolerance: 3 percentage points (over 3 standard deviations for beta at n=1500)
        assert abs(got[name] / n - share) < 0.03, (got, expected)
    assert got["Beta AI"] > 0


def test_default_balancing_keeps_failing_providers_out(stack):
    warm(stack)
    stack.mock("beta").config(fail="500", fail_count=1)        # one failure, then fine
    seen = collections.Counter()
    for _ in range(60):
        s, p = served_by(stack, {"model": "test/three", "messages": MSG, "provider": {"ignore": ["alpha"]}})
        assert s == 200
        seen[p] += 1
    # beta failed once: for the next 30 s the balanced pick is gamma (beta only as fall-back)
    assert seen["Gamma AI"] >= 58, seen


def _account(stack, name):
    stack.ctl("account", "create", name, "--credits", "10", "--if-missing")
    return stack.ctl("key", "create", name, "--name", name).stdout.strip()


def test_policy_restricts_and_requests_cannot_widen_it(stack):
    key = _account(stack, "eu-only")
    stack.ctl("policy", "set", "eu-only", "--regions", "EU")
    body = {"model": "test/three", "messages": MSG}
    for _ in range(5):
        assert served_by(stack, body, key) == (200, "Beta AI")
    # neither order, nor only, nor sort can bring a non-EU provider back
    assert served_by(stack, dict(body, provider={"order": ["alpha"]}), key) == (200, "Beta AI")
    s, msg = served_by(stack, dict(body, provider={"only": ["alpha"]}), key)
    assert s == 404 and "provider preferences" in msg
    # beta down: no silent choice outside the policy
    stack.mock("beta").config(fail="500")
    s, msg = served_by(stack, dict(body, provider={"sort": "price"}), key)
    assert s == 502, msg
    stack.mock("beta").config(fail="none")
    # a policy that leaves nothing: 403 saying why
    s, msg = served_by(stack, {"model": "test/solo", "messages": MSG}, key)
    assert s == 403 and "regions EU only" in msg, msg
    show = stack.ctl("policy", "show", "eu-only").stdout
    assert '"regions": ["EU"]' in show or '"regions":["EU"]' in show
    # the other accounts are untouched
    assert served_by(stack, dict(body, provider={"sort": "price"}))[1] == "Alpha AI"
    stack.ctl("policy", "clear", "eu-only")
    assert wait_for(lambda: served_by(stack, {"model": "test/solo", "messages": MSG}, key)[0] == 200, 5)


def test_key_policy_narrows_the_account_policy(stack):
    key = _account(stack, "narrow")
    other = stack.ctl("key", "create", "narrow", "--name", "other").stdout.strip()
    key_id = stack.sql("SELECT id FROM api_keys WHERE name = 'narrow'")[0][0]
    stack.ctl("policy", "set", "narrow", "--data-policy", "no_training")     # alpha, beta
    stack.ctl("policy", "set", "narrow", "--key", str(key_id), "--max-prompt", "0.2")   # alpha only
    body = {"model": "test/three", "messages": MSG, "provider": {"ignore": ["alpha"]}}
    s, msg = served_by(stack, body, key)
    assert s == 404, msg                                     # ignore + policy: nothing left
    assert served_by(stack, {"model": "test/three", "messages": MSG, "provider": {"sort": "price"}}, key) \
        == (200, "Alpha AI")
    assert served_by(stack, body, other) == (200, "Beta AI")   # the account policy alone
    s, msg = served_by(stack, {"model": "test/three", "messages": MSG, "provider": {"only": ["gamma"]}}, other)
    assert s == 404
    # policy values are checked before they are stored
    r = stack.ctl("policy", "set", "narrow", "--data-policy", "sometimes", check=False)
    assert r.returncode != 0 and "data_policy" in r.stderr
    stack.ctl("policy", "clear", "narrow")
    stack.ctl("policy", "clear", "narrow", "--key", str(key_id))


def test_policy_open_weights_and_origin(stack):
    key = _account(stack, "open-only")
    stack.ctl("policy", "set", "open-only", "--open-weights-only", "--licenses", "MIT")
    assert served_by(stack, {"model": "test/three", "messages": MSG}, key)[0] == 200   # open, MIT
    s, msg = served_by(stack, {"model": "test/solo", "messages": MSG}, key)
    assert s == 403 and "licenses MIT only" in msg, msg
    stack.ctl("policy", "set", "open-only", "--origins", "CN")
    assert served_by(stack, {"model": "test/three", "messages": MSG}, key)[0] == 200
    s, msg = served_by(stack, {"model": "test/solo", "messages": MSG}, key)
    assert s == 403 and "origins CN only" in msg
    stack.ctl("policy", "clear", "open-only")


def test_models_fallback_and_attempt_record(stack):
    stack.mock("solo").config(fail="500")
    body = {"model": "test/solo", "models": ["test/three"], "messages": MSG, "provider": {"sort": "price"}}
    s, h, raw = stack.chat(body)
    assert s == 200, raw
    ans = json.loads(raw)
    assert ans["model"] == "test/three" and ans["provider"] == "Alpha AI"
    assert h["x-agora-attempts"] == "solo=502, alpha=200"
    gen = wait_for(lambda: (lambda r: r[1]["data"] if r[0] == 200 else None)(
        stack.get("/api/v1/generation?id=" + ans["id"], key=stack.key)), 10)
    assert gen and gen["attempts"] == 2
    tried = gen["provider_responses"]
    assert [(t["provider"], t["status"]) for t in tried] == [("solo", 502), ("alpha", 200)]
    assert all(t["latency"] >= 0 and t["endpoint_id"] > 0 for t in tried)


def test_retry_after_keeps_provider_away(stack):
    stack.mock("alpha").config(fail="429", retry_after=3)
    body = {"model": "test/three", "messages": MSG, "provider": {"sort": "price"}}
    assert served_by(stack, body) == (200, "Beta AI")
    before = stack.mock("alpha").stats()["requests"]
    stack.mock("alpha").config(fail="none")
    for _ in range(5):                                       # alpha asked to wait 3 s: not tried
        assert served_by(stack, body) == (200, "Beta AI")
    assert stack.mock("alpha").stats()["requests"] == before
    eps = stack.get("/api/v1/models/test/three/endpoints")[1]["data"]["endpoints"]
    assert [e for e in eps if e["provider_name"] == "Alpha AI"][0]["status"] == -1
    # after Retry-After, one probe, and alpha is back
    assert wait_for(lambda: served_by(stack, body) == (200, "Alpha AI"), 10, 0.5)


def test_zdr_quantizations_require_parameters_and_context_fit(stack):
    body = {"model": "test/three", "messages": MSG}
    assert served_by(stack, dict(body, provider={"zdr": True})) == (200, "Alpha AI")
    assert served_by(stack, dict(body, provider={"quantizations": ["fp8"], "only": ["gamma"]})) == (200, "Gamma AI")
    s, msg = served_by(stack, dict(body, provider={"quantizations": ["bf16"]}))
    assert s == 404 and "quantizations" in msg
    # every endpoint supports tools; none lists logprobs
    assert served_by(stack, dict(body, tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
                                 provider={"require_parameters": True, "sort": "price"})) == (200, "Alpha AI")
    s, msg = served_by(stack, dict(body, logprobs=True, provider={"require_parameters": True}))
    assert s == 404 and "require_parameters" in msg
    assert served_by(stack, dict(body, logprobs=True, provider={"sort": "price"}))[0] == 200   # not required
    s, msg = served_by(stack, dict(body, provider={"require_parameters": "yes"}))
    assert s == 400 and "provider.require_parameters" in msg
    # context fit: solo's max output is 1024, three's 4096
    s, msg = served_by(stack, {"model": "test/solo", "messages": MSG, "max_tokens": 2000})
    assert s == 404 and "does not fit" in msg
    s, ans = stack.chat_json({"model": "test/solo", "models": ["test/three"], "messages": MSG, "max_tokens": 2000})
    assert s == 200 and ans["model"] == "test/three"
    s, msg = served_by(stack, dict(body, max_tokens=5000))
    assert s == 404
