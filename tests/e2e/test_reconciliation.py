"""Provider-invoice reconciliation against the real stack: known usage goes
through billing (crafted usage events XADDed to the Redis stream `usage`, on
days of July 2019 no other test touches, for an account of its own), then
crafted provider CSVs are imported with agoractl and the API and reported:
matched, differs beyond the tolerance, within it, present on one side only
(both ways); re-imports replace the days they cover; every kind of bad file
is refused with its line number and imports nothing; the API needs an
operator key."""
import calendar
import json
import time
import urllib.parse
import uuid
from decimal import Decimal

import pytest

from conftest import wait_for

FROM, TO = "2019-07-01", "2019-07-06"          # [FROM, TO): July 1st to 5th

# Our usage, per (day, provider, model): the events that make it (pt, ct, provider cost in nano-USD)
OURS = {
    ("2019-07-01", "alpha", "test/three"): [(1000, 2000, 150000), (500, 1000, 75000)],
    ("2019-07-02", "alpha", "test/three"): [(10000, 20000, 3000000)],
    ("2019-07-03", "alpha", "test/three"): [(4000, 8000, 1200000)],
    ("2019-07-04", "alpha", "test/three"): [(700, 900, 500000)],
    ("2019-07-01", "solo", "test/solo"): [(100, 50, 100000)],
    ("2019-07-01", "solo", "test/claude"): [(300, 30, 180000)],
}

# alpha's invoice: July 1st in two lines (input, output) that add up to ours
# exactly, the 2nd off by 10 input tokens and 3.3% of the amount, the 3rd off
# by 0.33% of the amount (within the default 0.5%), the 4th missing (only
# ours), the 5th only theirs. Columns in another order, an extra one, quoting.
ALPHA_CSV = (
    "Model,date,amount,output_tokens,input_tokens,memo\r\n"
    "up-alpha-three,2019-07-01,0.0001,0,1500,\"input, all of it\"\r\n"
    "up-alpha-three,2019-07-01,0.000125,3000,0,\"output \"\"completion\"\" tokens\"\r\n"
    "test/three,2019-07-02,0.0031,20000,10010,\r\n"
    "up-alpha-three,2019-07-03,0.001204,8000,4000,\"two\nlines\"\r\n"
    "up-alpha-three,2019-07-05,0.00001,20,10,\r\n")

# solo's invoice: test/solo matches, test/claude (upstream up-solo-claude) is
# billed on the 2nd only, so the 1st is only ours and the 2nd only theirs.
SOLO_CSV = ("date,model,input_tokens,output_tokens,amount\n"
            "2019-07-01,up-solo,100,50,0.0001\n"
            "2019-07-02,up-solo-claude,300,30,0.00018\n")

HEADER = "date,model,input_tokens,output_tokens,amount\n"
BAD_FILES = [
    # (CSV, line, words the error must contain)
    (HEADER + "2019-07-01,up-alpha-three,1,2,0.1\n2019-07-02,up-alpha-three,1,2\n", 3, "missing field 'amount'"),
    (HEADER + "2019-07-01,up-alpha-three,1,2,0.1\n2019-07-02,up-alpha-three,1,2,0.1\n"
     "2019-02-29,up-alpha-three,1,2,0.1\n", 4, "bad date '2019-02-29'"),
    (HEADER + "2019-07-01,up-alpha-three,-1,2,0.1\n", 2, "bad input_tokens '-1'"),
    (HEADER + "2019-07-01,up-alpha-three,1,2,0.1\n2019-07-01,up-alpha-three,1,2.5,0.1\n", 3,
     "bad output_tokens '2.5'"),
    (HEADER + "\n".join("2019-07-0%d,up-alpha-three,1,2,0.1" % d for d in range(1, 4)) +
     "\n2019-07-04,up-alpha-three,1,2,0.0000000001\n", 5, "bad amount '0.0000000001'"),
    (HEADER + "2019-07-01,up-alpha-three,1,2,0.1\n2019-07-01,up-alpha-three,1,2,USD 3\n", 3, "bad amount"),
    # up-beta-three exists, but not at alpha
    (HEADER + "2019-07-01,up-alpha-three,1,2,0.1\n2019-07-01,up-beta-three,1,2,0.1\n", 3,
     "unknown model 'up-beta-three' for provider 'alpha'"),
    ("date,model,input_tokens,amount\n2019-07-01,up-alpha-three,1,0.1\n", 1, "no 'output_tokens' column"),
    (HEADER + "2019-07-01,up-alpha-three,1,2,0.1\n2019-07-01,\"up-alpha-three,1,2,0.1\n", 3,
     "unterminated quoted field"),
    (HEADER, 2, "no data rows"),
]


def nusd(usd):
    return int(Decimal(usd) * 10 ** 9)


def api(stack, method, path, body=None, key="admin", ctype="text/csv"):
    k = stack.admin_key if key == "admin" else key
    s, h, raw = stack.request(method, path, body, key=k, headers={"Content-Type": ctype},
                              port=stack.analytics_port)
    return s, h, raw


def report(stack, **params):
    q = dict(params)
    s, h, raw = api(stack, "GET", "/api/v1/analytics/reconciliation?" + urllib.parse.urlencode(q))
    assert s == 200, raw
    return json.loads(raw)["data"]


def api_import(stack, provider, csv, label="api"):
    path = "/api/v1/analytics/reconciliation/import?" + urllib.parse.urlencode({"provider": provider,
                                                                                  "label": label})
    s, h, raw = api(stack, "POST", path, csv)
    return s, json.loads(raw)


def ctl_import(stack, tmp_path, provider, csv, name="invoice.csv", check=True):
    f = tmp_path / name
    f.write_bytes(csv.encode())
    return stack.ctl("reconcile", "import", provider, str(f), check=check)


def tables(stack):
    """What the reconciliation tables hold, to show that nothing changed."""
    return (stack.sql("SELECT count(*), coalesce(sum(amount_nusd), 0), coalesce(sum(input_tokens), 0) FROM recon_rows"),
            stack.sql("SELECT count(*), coalesce(max(id), 0) FROM recon_imports"))


def dispatcher_ready(stack):
    s, _, _ = api(stack, "GET", "/api/v1/analytics/reconciliation?from=%s&to=%s" % (FROM, TO))
    return s != 404


@pytest.fixture(scope="module")
def usage(stack):
    """Bills the OURS events through Redis and billing for an account of its own."""
    import redis
    acct = stack.ctl("account", "create", "recon-test", "--credits", "10").stdout.strip()
    stack.ctl("key", "create", "recon-test", "--name", "recon")
    account, key = stack.sql("SELECT a.id, k.id FROM accounts a JOIN api_keys k ON k.account_id = a.id "
                             "WHERE a.name = 'recon-test'")[0]
    eps = dict(((m, p), i) for i, m, p in stack.sql("SELECT id, model_id, provider_id FROM endpoints"))
    r = redis.Redis(port=stack.redis_port)
    n = 0
    for (day, provider, model), events in OURS.items():
        t0 = calendar.timegm(time.strptime(day, "%Y-%m-%d")) * 1000
        for i, (pt, ct, pcost) in enumerate(events):
            ev = {"id": "gen-recon-" + uuid.uuid4().hex, "ts": t0 + 3600_000 * (i + 1), "account": account,
                  "key": key, "app_title": "recon", "model": model, "author": model.split("/")[0],
                  "provider": provider, "endpoint": eps[(model, provider)], "pt": pt, "ct": ct, "cached": 0,
                  "reasoning": 0, "cost": pcost * 2, "pcost": pcost, "latency_ms": 900, "ttft_ms": 200,
                  "tps_milli": 50000, "stream": False, "estimated": False, "status": 200, "attempts": 1,
                  "finish": "stop"}
            r.xadd("usage", {"e": json.dumps(ev)})
            n += 1
    want = sum(p for evs in OURS.values() for _, _, p in evs)
    got = lambda: stack.sql("SELECT coalesce(sum(provider_cost_nusd), 0), count(*) FROM usage_events "
                            "WHERE account_id = %s", account)[0]
    assert wait_for(lambda: got() == (want, n), 20), got()
    daily = stack.sql("SELECT day::text, provider_id, model_id, sum(prompt_tokens), sum(completion_tokens), "
                      "sum(provider_cost_nusd) FROM usage_daily WHERE account_id = %s GROUP BY 1, 2, 3", account)
    assert {(d, p, m): (i, o, a) for d, p, m, i, o, a in daily} == \
        {k: tuple(sum(e[j] for e in v) for j in range(3)) for k, v in OURS.items()}
    return acct


def rows_by_key(data):
    return {(r["date"], r["provider"], r["model"]): r for r in data["rows"]}


def test_import_and_report_with_agoractl(stack, usage, tmp_path):
    out = ctl_import(stack, tmp_path, "alpha", ALPHA_CSV, name="alpha-2019-07.csv")
    assert "provider alpha, 5 rows, 2019-07-01 to 2019-07-05 (alpha-2019-07.csv)" in out.stdout
    assert "input tokens   15520" in out.stdout and "output tokens  31020" in out.stdout
    assert "amount         0.004539 USD" in out.stdout
    imp = stack.sql("SELECT provider_id, label, rows, first_day::text, last_day::text, input_tokens, output_tokens,"
                    " amount_nusd FROM recon_imports ORDER BY id DESC LIMIT 1")[0]
    assert imp == ("alpha", "alpha-2019-07.csv", 5, "2019-07-01", "2019-07-05", 15520, 31020, 4539000)
    # lines keep their number, the name the file used and the model it resolved to
    assert stack.sql("SELECT line, model_name, model_id FROM recon_rows WHERE import_id = "
                     "(SELECT max(id) FROM recon_imports) ORDER BY line") == [
        (2, "up-alpha-three", "test/three"), (3, "up-alpha-three", "test/three"), (4, "test/three", "test/three"),
        (5, "up-alpha-three", "test/three"), (7, "up-alpha-three", "test/three")]

    out = stack.ctl("reconcile", "report", "alpha", "--from", FROM, "--to", TO).stdout
    lines = [l.split() for l in out.splitlines() if l.startswith("2019-07-")]
    assert [(l[0], l[1], l[2], l[3]) for l in lines] == [
        ("2019-07-01", "alpha", "test/three", "matched"), ("2019-07-02", "alpha", "test/three", "differs"),
        ("2019-07-03", "alpha", "test/three", "matched"), ("2019-07-04", "alpha", "test/three", "only_ours"),
        ("2019-07-05", "alpha", "test/three", "only_theirs")]
    assert lines[1][4:] == ["10000", "20000", "0.003", "10010", "20000", "0.0031", "0.0001"]
    assert lines[3][4:] == ["700", "900", "0.0005", "-", "-", "-", "-0.0005"]
    assert "2 matched, 1 differ, 1 only ours, 1 only theirs; ours 0.004925 USD, theirs 0.004539 USD" in out

    # tolerances: none at all, then wide enough for the 2nd, then an absolute amount
    out = stack.ctl("reconcile", "report", "alpha", "--from", FROM, "--to", TO, "--tolerance-pct", "0").stdout
    assert "1 matched, 2 differ" in out
    out = stack.ctl("reconcile", "report", "alpha", "--from", FROM, "--to", TO, "--tolerance-pct", "3.5",
                    "--tolerance-tokens", "10").stdout
    assert "3 matched, 0 differ" in out
    out = stack.ctl("reconcile", "report", "alpha", "--from", FROM, "--to", TO, "--tolerance-pct", "0",
                    "--tolerance-amount", "0.000004").stdout
    assert "2 matched, 1 differ" in out
    r = stack.ctl("reconcile", "report", "alpha", "--from", TO, "--to", FROM, check=False)
    assert r.returncode == 1 and "before the to date" in r.stderr
    r = stack.ctl("reconcile", "report", "nobody", "--from", FROM, "--to", TO, check=False)
    assert r.returncode == 1 and "unknown provider 'nobody'" in r.stderr


def test_report_api_json_and_csv(stack, usage, tmp_path):
    ctl_import(stack, tmp_path, "alpha", ALPHA_CSV)
    if not dispatcher_ready(stack):
        pytest.skip("agora-analytics has no dispatcher for /api/v1/analytics/reconciliation yet")
    s, body = api_import(stack, "solo", SOLO_CSV, label="solo July")
    assert s == 200, body
    d = body["data"]
    assert (d["provider"], d["rows"], d["input_tokens"], d["output_tokens"], d["amount"], d["amount_nusd"]) == \
        ("solo", 2, 400, 80, "0.00028", 280000)
    assert (d["first_date"], d["last_date"]) == ("2019-07-01", "2019-07-02") and d["import_id"] > 0
    assert stack.sql("SELECT label FROM recon_imports WHERE id = %s", d["import_id"]) == [("solo July",)]

    data = report(stack, provider="solo", **{"from": FROM, "to": TO})
    assert data["query"] == {"provider": "solo", "from": FROM, "to": TO,
                             "tolerance": {"pct": "0.5", "tokens": 0, "amount": "0"}}
    rows = rows_by_key(data)
    assert [(k, r["status"]) for k, r in rows.items()] == [
        (("2019-07-01", "solo", "test/claude"), "only_ours"), (("2019-07-01", "solo", "test/solo"), "matched"),
        (("2019-07-02", "solo", "test/claude"), "only_theirs")]
    r = rows[("2019-07-01", "solo", "test/solo")]
    assert r["ours"] == r["theirs"] == {"input_tokens": 100, "output_tokens": 50, "amount": "0.0001",
                                        "amount_nusd": 100000}
    assert r["diff"] == {"input_tokens": 0, "output_tokens": 0, "amount": "0", "amount_nusd": 0}
    r = rows[("2019-07-01", "solo", "test/claude")]
    assert r["theirs"] is None and r["diff"] == {"input_tokens": -300, "output_tokens": -30,
                                                 "amount": "-0.00018", "amount_nusd": -180000}
    r = rows[("2019-07-02", "solo", "test/claude")]
    assert r["ours"] is None and r["diff"]["amount"] == "0.00018"
    assert data["summary"] == {"matched": 1, "differs": 0, "only_ours": 1, "only_theirs": 1,
                               "ours_amount": "0.00028", "ours_amount_nusd": 280000,
                               "theirs_amount": "0.00028", "theirs_amount_nusd": 280000,
                               "diff_amount": "0", "diff_amount_nusd": 0}

    # every provider: alpha's rows and solo's, in date, provider, model order
    data = report(stack, **{"from": FROM, "to": TO})
    assert data["query"]["provider"] is None
    keys = [(r["date"], r["provider"], r["model"]) for r in data["rows"]]
    assert keys == sorted(keys) and len(keys) == 8
    assert data["summary"]["matched"] == 3 and data["summary"]["differs"] == 1
    assert data["summary"]["only_ours"] == 2 and data["summary"]["only_theirs"] == 2
    assert nusd(data["summary"]["ours_amount"]) == sum(p for evs in OURS.values() for _, _, p in evs)
    data = report(stack, provider="alpha", tolerance_pct="3.5", tolerance_tokens="10", **{"from": FROM, "to": TO})
    assert data["summary"]["matched"] == 3 and data["summary"]["differs"] == 0

    # the same rows as CSV
    s, h, raw = api(stack, "GET", "/api/v1/analytics/reconciliation?provider=alpha&from=%s&to=%s&format=csv"
                    % (FROM, TO))
    assert s == 200 and h["content-type"].startswith("text/csv")
    lines = raw.decode().split("\r\n")
    assert lines[0] == ("date,provider,model,status,ours_input_tokens,ours_output_tokens,ours_amount,"
                        "theirs_input_tokens,theirs_output_tokens,theirs_amount,diff_input_tokens,"
                        "diff_output_tokens,diff_amount")
    assert lines[2] == "2019-07-02,alpha,test/three,differs,10000,20000,0.003,10010,20000,0.0031,10,0,0.0001"
    assert lines[4] == "2019-07-04,alpha,test/three,only_ours,700,900,0.0005,,,,-700,-900,-0.0005"
    assert lines[5].startswith("2019-07-05,alpha,test/three,only_theirs,,,,10,20,0.00001,")
    assert lines[6:] == [""]


def test_reimport_replaces_the_days_it_covers(stack, usage, tmp_path):
    ctl_import(stack, tmp_path, "alpha", ALPHA_CSV)
    others = stack.sql("SELECT count(*), coalesce(sum(amount_nusd), 0) FROM recon_rows WHERE provider_id <> 'alpha'")
    # a corrected invoice for the 2nd only: the 2nd's row is replaced, the other days stay
    out = ctl_import(stack, tmp_path, "alpha", HEADER + "2019-07-02,up-alpha-three,10000,20000,0.003\n")
    assert "replaced 1 rows of earlier imports of alpha from 2019-07-02 to 2019-07-02" in out.stdout
    out = stack.ctl("reconcile", "report", "alpha", "--from", FROM, "--to", TO).stdout
    assert "3 matched, 0 differ, 1 only ours, 1 only theirs" in out
    # a file for the 4th to the 6th replaces the 5th's row even without a row on the 5th
    out = ctl_import(stack, tmp_path, "alpha", HEADER + "2019-07-04,test/three,700,900,0.0005\n"
                     "2019-07-06,test/three,0,0,0\n")
    assert "replaced 1 rows" in out.stdout
    out = stack.ctl("reconcile", "report", "alpha", "--from", FROM, "--to", TO).stdout
    assert "4 matched, 0 differ, 0 only ours, 0 only theirs" in out
    # other providers' rows for those days are untouched
    assert stack.sql("SELECT count(*), coalesce(sum(amount_nusd), 0) FROM recon_rows "
                     "WHERE provider_id <> 'alpha'") == others


@pytest.mark.parametrize("csv,line,words", BAD_FILES)
def test_bad_file_imports_nothing_with_agoractl(stack, usage, tmp_path, csv, line, words):
    before = tables(stack)
    r = ctl_import(stack, tmp_path, "alpha", csv, check=False)
    assert r.returncode == 1
    assert "line %d: " % line in r.stderr and words in r.stderr, r.stderr
    assert "nothing imported" in r.stderr and r.stdout == ""
    assert tables(stack) == before


@pytest.mark.parametrize("csv,line,words", BAD_FILES)
def test_bad_file_imports_nothing_with_the_api(stack, usage, csv, line, words):
    if not dispatcher_ready(stack):
        pytest.skip("agora-analytics has no dispatcher for /api/v1/analytics/reconciliation yet")
    before = tables(stack)
    s, body = api_import(stack, "alpha", csv)
    assert s == 400, body
    assert body["error"]["code"] == 400
    msg = body["error"]["message"]
    assert msg.startswith("line %d: " % line) and words in msg, msg
    assert tables(stack) == before


def test_import_refusals(stack, usage, tmp_path):
    before = tables(stack)
    r = ctl_import(stack, tmp_path, "nobody", SOLO_CSV, check=False)
    assert r.returncode == 1 and "unknown provider 'nobody'" in r.stderr
    r = stack.ctl("reconcile", "import", "alpha", str(tmp_path / "missing.csv"), check=False)
    assert r.returncode == 1 and "No such file" in r.stderr
    if dispatcher_ready(stack):
        s, body = api_import(stack, "nobody", SOLO_CSV)
        assert s == 400 and "unknown provider 'nobody'" in body["error"]["message"]
        s, _, raw = api(stack, "POST", "/api/v1/analytics/reconciliation/import", SOLO_CSV)
        assert s == 400 and b"provider" in raw
        s, _, raw = api(stack, "POST", "/api/v1/analytics/reconciliation/import?provider=alpha", "")
        assert s == 400 and b"empty body" in raw
        s, _, raw = api(stack, "GET", "/api/v1/analytics/reconciliation/import?provider=alpha")
        assert s == 405
        s, _, raw = api(stack, "GET", "/api/v1/analytics/reconciliation?from=2019-07-06&to=2019-07-01")
        assert s == 400 and b"before the to date" in raw
        s, _, raw = api(stack, "GET", "/api/v1/analytics/reconciliation?tolerance_pct=abc")
        assert s == 400 and b"tolerance percentage" in raw
        s, _, raw = api(stack, "GET", "/api/v1/analytics/reconciliation?provider=nobody")
        assert s == 400 and b"unknown provider" in raw
        s, _, raw = api(stack, "GET", "/api/v1/analytics/reconciliation/other")
        assert s == 404
    assert tables(stack) == before


def test_api_needs_an_operator_key(stack, usage):
    if not dispatcher_ready(stack):
        pytest.skip("agora-analytics has no dispatcher for /api/v1/analytics/reconciliation yet")
    before = tables(stack)
    for method, path, body in (("GET", "/api/v1/analytics/reconciliation", None),
                               ("POST", "/api/v1/analytics/reconciliation/import?provider=solo", SOLO_CSV)):
        s, _, raw = api(stack, method, path, body, key=None)
        assert s == 401 and json.loads(raw)["error"]["code"] == 401
        s, _, raw = api(stack, method, path, body, key="sk-ag-v1-" + "0" * 64)
        assert s == 401
        s, _, raw = api(stack, method, path, body, key=stack.key)     # an inference key
        assert s == 403 and json.loads(raw)["error"]["code"] == 403
    assert tables(stack) == before
