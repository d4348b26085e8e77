"""deploy/ checked offline (no stack): the systemd units pass `systemd-analyze
verify` (on a copy whose ExecStart names the build's binaries) and its
offline security score, with the hardening the README promises; every
Kubernetes manifest parses and hangs together (selectors, probe ports,
grace period vs drain, HPA and PDB targets, scrape ports, non-root,
read-only root) and renders with `kubectl kustomize` (offline; `kubectl
apply --dry-run=client` needs an API server for discovery, there is none
here); the ConfigMap's agora.conf and the example configuration load with
the config table; the Grafana dashboard is well formed. Which metrics the
dashboard queries is checked against live scrapes in test_metrics.py."""
import glob
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import BUILD, ROOT

DEPLOY = os.path.join(ROOT, "deploy")
UNITS = ["agora-router.service", "agora-billing@.service", "agora-analytics.service"]
DRAIN_S = 10        # router/main.c DRAIN_MAX_MS; billing stops within 10 s too


def unit(name):
    """{key: [values]} of a unit file's [Service] and the rest (first wins is not
    assumed: lists keep every assignment)."""
    out = {}
    for line in open(os.path.join(DEPLOY, "systemd", name)):
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def seconds(v):
    m = re.fullmatch(r"(\d+)(s|min)?", v)
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path):
    names = []
    for name in UNITS:
        text = open(os.path.join(DEPLOY, "systemd", name)).read()
        assert "ExecStart=/usr/local/bin/" in text
        text = text.replace("/usr/local/bin/", BUILD + "/")
        (tmp_path / name).write_text(text)
        if name.endswith("@.service"):
            name = name.replace("@.", "@8682.")
            (tmp_path / name).write_text(text)
        names.append(name)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + names, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    for name in names:
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", name],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr


def test_systemd_hardening():
    for name in UNITS:
        u = unit(name)
        for k, v in {"User": "agora", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                     "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                     "AmbientCapabilities": "", "ExecReload": "/bin/kill -HUP $MAINPID"}.items():
            assert u.get(k) == [v], (name, k, u.get(k))
        assert "@system-service" in u["SystemCallFilter"], name
        assert set(u["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
        if name != "agora-analytics.service":     # it stops at once; the others drain
            assert seconds(u["TimeoutStopSec"][0]) >= DRAIN_S + 2, name
        assert "ReadWritePaths" not in u or name == "agora-router.service"
    r = unit("agora-router.service")
    assert r["ReadWritePaths"] == ["/var/lib/" + r["StateDirectory"][0]]
    assert r["Environment"] == ["AGORA_SPOOL_PATH=/var/lib/%s/usage.spool" % r["StateDirectory"][0]]
    assert int(r["LimitNOFILE"][0]) >= 2 * 20000 and r["KillMode"] == ["mixed"]
    assert unit("agora-billing@.service")["Environment"] == ["AGORA_BILLING_LISTEN=127.0.0.1:%i"]


def manifests():
    docs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml"))):
        for d in yaml.safe_load_all(open(path)):
            if d is not None:
                docs.append((os.path.basename(path), d))
    return docs


def conf_keys():
    """The config table's keys, from --dump-config."""
    r = subprocess.run([os.path.join(BUILD, "agora-router"), "--dump-config"], env=dict(os.environ, AGORA_KEY_SECRET="x"),
                       capture_output=True, text=True, timeout=10)
    return [l.split(" = ")[0].rstrip(" =") for l in r.stdout.splitlines() if l and not l.startswith("#")]


def load_conf(text, tmp_path):
    p = tmp_path / "agora.conf"
    p.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    return subprocess.run([os.path.join(BUILD, "agora-router"), "-c", str(p), "--dump-config"],
                          env=dict(env, AGORA_KEY_SECRET="x"), capture_output=True, text=True, timeout=10)


def test_k8s_manifests(tmp_path):
    docs = manifests()
    by = {}
    for f, d in docs:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), f
        if d["kind"] not in ("Namespace", "Kustomization"):
            assert d["metadata"].get("namespace") == "agora", (f, d["metadata"]["name"])
        by[(d["kind"], d["metadata"]["name"])] = d
    kinds = {k for k, _ in by}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= kinds
    keys = set(conf_keys())
    conf = by[("ConfigMap", "agora-config")]["data"]["agora.conf"]
    r = load_conf(conf, tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("agora-router", "agora-billing", "agora-analytics"):
        dep = by[("Deployment", name)]
        spec = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert spec["securityContext"]["runAsNonRoot"] is True
        c = spec["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert "readinessProbe" in c and "livenessProbe" in c
        for probe in (c["readinessProbe"], c["livenessProbe"]):
            port = (probe.get("httpGet") or probe.get("tcpSocket"))["port"]
            assert port in ports, (name, port)
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) in ports.values()
        for e in c["env"]:
            if e["name"].startswith("AGORA_"):
                assert e["name"][6:].lower() in keys, e["name"]
        assert c["command"][0].startswith("/usr/local/bin/agora-")
    router = by[("Deployment", "agora-router")]["spec"]["template"]["spec"]
    sleep = int(router["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert router["terminationGracePeriodSeconds"] >= sleep + DRAIN_S
    assert router["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/health"
    spool = [v for v in router["volumes"] if v["name"] == "spool"][0]["emptyDir"]["sizeLimit"]
    max_bytes = int(re.search(r"spool_max_bytes = (\d+)", conf).group(1))
    assert int(spool.rstrip("Mi")) * 2 ** 20 > max_bytes
    assert by[("Deployment", "agora-billing")]["spec"]["replicas"] == 2
    hpa = by[("HorizontalPodAutoscaler", "agora-router")]["spec"]
    assert ("Deployment", hpa["scaleTargetRef"]["name"]) in by and hpa["metrics"][0]["resource"]["name"] == "cpu"
    pdb = by[("PodDisruptionBudget", "agora-router")]["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= by[("Deployment", "agora-router")]["spec"]["template"]["metadata"]["labels"].items()
    for svc in ("agora-router", "agora-analytics"):
        s = by[("Service", svc)]["spec"]
        assert s["selector"].items() <= by[("Deployment", svc)]["spec"]["template"]["metadata"]["labels"].items()
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", os.path.join(DEPLOY, "k8s")], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
        assert len(rendered) == len(docs) - 1      # all but the Kustomization


def test_conf_example_lists_every_key(tmp_path):
    text = open(os.path.join(DEPLOY, "agora.conf.example")).read()
    listed = re.findall(r"^#? ?([a-z_]+) =", text, re.M)
    assert listed == conf_keys()
    r = load_conf(text.replace("key_secret_file = /etc/agora/key_secret", "key_secret = x")
                  .replace("master_key_file = /etc/agora/master.key", ""), tmp_path)
    assert r.returncode == 0, r.stderr


def test_grafana_dashboard_shape():
    dash = json.load(open(os.path.join(DEPLOY, "grafana", "agora.json")))
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] and dash["title"]
    assert dash["templating"]["list"][0]["type"] == "datasource"
    for p in dash["panels"]:
        assert p["targets"] and p["datasource"]["uid"] == "${datasource}"
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
            assert "agora_" in t["expr"]


def test_make_install_puts_what_units_and_manifests_name(stack, tmp_path):
    """`make install DESTDIR=…` stages every path the systemd units and the
    Kubernetes manifests use: the binaries they start, the dashboards'
    web_dir, and migrations that agoractl applies from there."""
    dest = str(tmp_path / "root")
    san = ["SAN=1"] if os.path.basename(BUILD.rstrip("/")) == "build-asan" else []    # make asan: its build
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "install", "DESTDIR=" + dest, "BUILD=" + BUILD] + san,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    paths = set()
    for name in glob.glob(os.path.join(DEPLOY, "systemd", "*.service")):
        for v in unit(os.path.basename(name)).get("ExecStart", []):
            paths.add(v.lstrip("-@+!:").split()[0])
    for _, doc in manifests():
        for c in (doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []):
            paths.add(c["command"][0])
    web = re.search(r"web_dir\s*=\s*(\S+)", open(os.path.join(DEPLOY, "k8s", "configmap.yaml")).read()).group(1)
    assert paths and all(p.startswith("/usr/local/bin/") for p in paths), paths
    for p in paths:
        assert os.access(dest + p, os.X_OK), p
    for page in ("share.html", "providers.html", "app.js", "vendor/chart.umd.min.js"):
        assert os.path.isfile(os.path.join(dest + web, page)), page
    out = stack.ctl("--migrations", dest + "/usr/local/share/agora/migrations", "migrate").stdout
    assert "up to date" in out, out
