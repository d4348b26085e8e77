"""Redis at scale (issue 8): a router and billing workers against a 3-master
Redis Cluster with the usage stream in 3 shards, a slot moved under traffic
(ASK, then MOVED) and a master killed and restarted under traffic; and a
Sentinel fail-over under traffic. Each test brings up
its own Redis processes on free loopback ports (AOF on, as the dev stack) and
its own router and billing workers; PostgreSQL and the mock providers are the
suite's. Billing must end exact: every 200 is one usage event, none twice,
and the ledger charges the sum of the answers' costs."""
import decimal
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import BUILD, free_ports, wait_for

SHARDS = 3
MIN_REQUESTS = 150            # per test; more while the Redis operations run
MAX_REQUESTS = 800
THREADS = 6
PAUSE_S = 0.05                # between a thread's requests: traffic lasts while Redis is operated on
ENTRY_EVENTS_MAX = 32         # events a stream entry holds at most (RDS_ENTRY_EVENTS_MAX, lib/rds_slot.h)


def cli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


def start_redis(tmp, port, *extra):
    d = os.path.join(tmp, "redis-%d" % port)
    os.makedirs(d, exist_ok=True)
    log = open(os.path.join(d, "redis.log"), "w")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"] + list(extra),
                            stdout=log, stderr=subprocess.STDOUT)
    assert wait_for(lambda: cli(port, "PING") == "PONG", 10), "redis %d did not start" % port
    return proc


def entries_added(port, key):
    """Entries ever added to a stream (XINFO STREAM), trimmed ones included."""
    out = cli(port, "XINFO", "STREAM", key).split("\n")
    return int(out[out.index("entries-added") + 1])


def stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def start_billing(stack, name, env):
    return stack.extra_billing(name, **env)[0]


def shard_of(account, n):
    """rds_shard_of (lib/rds_slot.c)."""
    return (((account * 0x9E3779B97F4A7C15) % (1 << 64)) >> 32) % n


def accounts_on_every_shard(stack, tag):
    """One (account id, key, key id) per shard: accounts are created until
    every shard has one (ids decide the shard)."""
    chosen, i = {}, 0
    while len(chosen) < SHARDS:
        assert i < 40, "accounts do not spread over the shards"
        name = "%s-%d-%d" % (tag, os.getpid(), i)
        acct = int(stack.ctl("account", "create", name, "--credits", "1000").stdout.strip())
        i += 1
        if shard_of(acct, SHARDS) in chosen:
            continue
        key = stack.ctl("key", "create", name, "--name", name, "--rpm", "100000").stdout.strip()
        kid = stack.sql("SELECT id FROM api_keys WHERE account_id = %s", acct)[0][0]
        chosen[shard_of(acct, SHARDS)] = (acct, key, kid)
    return [chosen[s] for s in range(SHARDS)]


class Traffic:
    """Threads sending completions, round-robin over the accounts, until at
    least MIN_REQUESTS are done and stop() was called (at most MAX_REQUESTS)."""

    def __init__(self, stack, port, accounts):
        self.stack, self.port, self.accounts = stack, port, accounts
        self.results, self.lock, self.done = [], threading.Lock(), threading.Event()
        self.n = 0
        self.threads = [threading.Thread(target=self.run) for _ in range(THREADS)]
        for t in self.threads:
            t.start()

    def next(self):
        with self.lock:
            if self.n >= MAX_REQUESTS or (self.done.is_set() and self.n >= MIN_REQUESTS):
                return None
            self.n += 1
            return self.n

    def run(self):
        while (i := self.next()) is not None:
            acct, key, _ = self.accounts[i % len(self.accounts)]
            body = {"model": "test/solo", "max_tokens": 16, "messages": [{"role": "user", "content": "scale %d" % i}]}
            try:
                s, h, raw = self.stack.request("POST", "/api/v1/chat/completions", body, key=key, port=self.port)
            except OSError as e:
                s, raw = 0, str(e).encode()
            with self.lock:
                self.results.append((s, acct, raw))
            time.sleep(PAUSE_S)

    def count(self):
        with self.lock:
            return len(self.results)

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=120)
        return self.results


def check_billing(stack, results, accounts):
    """Every answer a 200; once billing caught up, exactly one usage event per
    generation and the ledger = the events = the answers' costs."""
    bad = [(s, raw[:200]) for s, _, raw in results if s != 200]
    assert not bad, bad[:5]
    ids, cost = [], 0
    for _, _, raw in results:
        j = json.loads(raw, parse_float=decimal.Decimal)
        ids.append(j["id"])
        cost += int(j["usage"]["cost"] * 10 ** 9)
    accts = [a for a, _, _ in accounts]
    assert len(set(ids)) == len(ids)

    def billed():
        return stack.sql("SELECT count(*), count(DISTINCT generation_id), coalesce(sum(cost_nusd), 0)"
                         " FROM usage_events WHERE account_id = ANY(%s)", accts)[0]
    assert wait_for(lambda: billed()[0] >= len(ids), 90), (billed(), len(ids))
    n, distinct, ev_cost = billed()
    got = stack.sql("SELECT count(*) FROM usage_events WHERE generation_id = ANY(%s)", ids)[0][0]
    ledger = stack.sql("SELECT coalesce(-sum(amount_nusd), 0) FROM ledger WHERE account_id = ANY(%s)"
                       " AND kind = 'usage'", accts)[0][0]
    assert (n, distinct, got) == (len(ids), len(ids), len(ids))
    assert ledger == ev_cost == cost, (ledger, ev_cost, cost)
    return len(ids), cost


# ---- Redis Cluster ----

class Cluster:
    """Three masters on free ports (bus ports given: port + 10000 may not
    exist); a node can be killed and started again from its own files."""

    def __init__(self, tmp):
        free = free_ports(6)
        self.tmp, self.ports, self.bus = tmp, free[:3], dict(zip(free[:3], free[3:]))
        self.procs = {p: self.start(p) for p in self.ports}

    def start(self, p):
        return start_redis(self.tmp, p, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-%d.conf" % p,
                           "--cluster-port", str(self.bus[p]), "--cluster-node-timeout", "3000")

    def ok(self):
        return all("cluster_state:ok" in cli(p, "CLUSTER", "INFO") for p in self.ports)

    def kill(self, p):
        self.procs[p].kill()
        self.procs[p].wait()

    def restart(self, p):
        self.procs[p] = self.start(p)


@pytest.fixture
def cluster(stack):
    c = Cluster(stack.dir)
    ports = c.ports
    try:
        subprocess.run(["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % p for p in ports] +
                       ["--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        assert wait_for(c.ok, 20)
        yield c
    finally:
        stop_all(list(c.procs.values()))
        for p in ports:
            shutil.rmtree(os.path.join(stack.dir, "redis-%d" % p), ignore_errors=True)


def slot_owner(ports, slot):
    for p in ports:
        for line in cli(p, "CLUSTER", "NODES").splitlines():
            f = line.split()
            if "myself" in f[2]:
                for r in f[8:]:
                    lo, _, hi = r.partition("-")
                    if not lo.startswith("[") and int(lo) <= slot <= int(hi or lo):
                        return p
    return None


def move_slot(ports, slot, src, dst, router_log):
    """Moves one slot from src to dst by hand (IMPORTING/MIGRATING, MIGRATE),
    waiting while it is half-way for the router to be sent an ASK, then
    assigns it (the router then gets MOVED)."""
    ids = {p: cli(p, "CLUSTER", "MYID") for p in ports}
    assert cli(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src]) == "OK"
    assert cli(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst]) == "OK"
    keys = cli(src, "CLUSTER", "GETKEYSINSLOT", slot, 1000).split()
    assert keys
    assert cli(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys) == "OK"
    asked = wait_for(lambda: ": ASK " in router_log(), 15)
    for p in [dst, src] + [p for p in ports if p not in (src, dst)]:
        assert cli(p, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]) == "OK"
    return asked


def test_cluster_sharded_usage_with_a_slot_moved_and_a_node_lost_under_traffic(stack, cluster):
    ports = cluster.ports
    env = {"AGORA_REDIS_CLUSTER": ",".join("127.0.0.1:%d" % p for p in ports[:2]),   # two seeds are enough
           "AGORA_USAGE_SHARDS": str(SHARDS), "AGORA_BILLING_CLAIM_IDLE_MS": "2000"}
    accounts = accounts_on_every_shard(stack, "rcl")
    billing = [start_billing(stack, "billing-cl%d" % i, env) for i in range(2)]
    router, port = stack.extra_router("router-cl", **env)
    try:
        traffic = Traffic(stack, port, accounts)
        assert wait_for(lambda: traffic.count() >= 30, 60)
        # the busiest shard's stream moves to another master while requests flow
        streams = {p: cli(p, "--scan", "--pattern", "usage:*").split() for p in ports}
        stream = sorted(k for ks in streams.values() for k in ks)[0]
        slot = int(cli(ports[0], "CLUSTER", "KEYSLOT", stream))
        src = slot_owner(ports, slot)
        dst = [p for p in ports if p != src][0]
        asked = move_slot(ports, slot, src, dst, lambda: stack.log("router-cl"))
        moved = wait_for(lambda: ": MOVED " in stack.log("router-cl"), 15)
        start = traffic.count()
        assert wait_for(lambda: traffic.count() >= min(start + 20, MAX_REQUESTS), 60)
        # a master killed (its shard's events are spooled meanwhile, and the
        # whole cluster says CLUSTERDOWN once the others notice), then started
        # again from its AOF: the router and billing reconnect and catch up
        lost = slot_owner(ports, int(cli(ports[0], "CLUSTER", "KEYSLOT", stream)))
        cluster.kill(lost)
        start = traffic.count()
        assert wait_for(lambda: traffic.count() >= min(start + 20, MAX_REQUESTS), 60)
        cluster.restart(lost)
        assert wait_for(cluster.ok, 30)
        start = traffic.count()
        assert wait_for(lambda: traffic.count() >= min(start + 20, MAX_REQUESTS), 60)
        results = traffic.stop()
        n, cost = check_billing(stack, results, accounts)
        assert asked and moved, stack.log("router-cl")[-2000:]
        assert slot_owner(ports, slot) == dst

        # the shards: three streams, spread over at least two masters, holding every event
        streams = {p: cli(p, "--scan", "--pattern", "usage:*").split() for p in ports}
        assert sum(len(v) for v in streams.values()) == SHARDS, streams
        assert sum(1 for v in streams.values() if v) >= 2, streams
        # (an XADD whose answer the kill cut off is sent again: billing drops such a duplicate)
        # (entries-added, as billing trims what it billed; an entry holds
        # the events a router's loop turn finished, up to 32)
        added = sum(entries_added(p, k) for p, ks in streams.items() for k in ks)
        assert n / ENTRY_EVENTS_MAX <= added, (added, n)
        # one account's counters live in one slot: the budget lease counter by
        # its {account} tag, a key's request and token counters together
        acct, _, kid = accounts[0]
        bslot = int(cli(ports[0], "CLUSTER", "KEYSLOT", "budget:{%d}" % acct))
        assert bslot == int(cli(ports[0], "CLUSTER", "KEYSLOT", str(acct)))
        assert "budget:{%d}" % acct in cli(slot_owner(ports, bslot), "CLUSTER", "GETKEYSINSLOT", bslot, 100).split()
        rl = [k for p in ports for k in cli(p, "--scan", "--pattern", "rl:{%d}:*" % kid).split()]
        assert len(rl) >= 2 and len({int(cli(ports[0], "CLUSTER", "KEYSLOT", k)) for k in rl}) == 1, rl
        print("cluster: %d requests, %d nano-USD billed exactly; shard streams %s" % (n, cost, streams))
    finally:
        stop_all([router] + billing)


# ---- Redis Sentinel ----

def start_sentinel(tmp, port, master_port, quorum=2, extra="", password=None):
    """A sentinel watching master_port as `agora`; extra: more lines of its
    configuration; password: its requirepass (then in extra), to ask it if it is up."""
    d = os.path.join(tmp, "sentinel-%d" % port)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "sentinel.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                "sentinel monitor agora 127.0.0.1 %d %d\n"
                "sentinel down-after-milliseconds agora 3000\n"
                "sentinel failover-timeout agora 30000\n%s" % (port, d, master_port, quorum, extra))
    proc = subprocess.Popen(["redis-server", conf, "--sentinel"], stdout=open(os.path.join(d, "log"), "w"),
                            stderr=subprocess.STDOUT)
    auth = ["--no-auth-warning", "-a", password] if password else []
    assert wait_for(lambda: cli(port, *auth, "PING") == "PONG", 10), "sentinel %d did not start" % port
    return proc


def master_of(sentinel):
    return cli(sentinel, "SENTINEL", "get-master-addr-by-name", "agora").split()


@pytest.fixture
def sentinels(stack):
    ports = free_ports(5)
    master, replica, sents = ports[0], ports[1], ports[2:]
    procs = [start_redis(stack.dir, master)]
    try:
        procs.append(start_redis(stack.dir, replica, "--replicaof", "127.0.0.1", str(master)))
        assert wait_for(lambda: "master_link_status:up" in cli(replica, "INFO", "replication"), 20)
        procs += [start_sentinel(stack.dir, p, master) for p in sents]
        # every sentinel knows the replica (a fail-over needs one) and the others
        assert wait_for(lambda: all(str(replica) in cli(p, "SENTINEL", "replicas", "agora") and
                                    cli(p, "SENTINEL", "sentinels", "agora").count("127.0.0.1") >= 2
                                    for p in sents), 30)
        yield master, replica, sents
    finally:
        stop_all(procs)
        for p in ports:
            for d in ("redis-%d", "sentinel-%d"):
                shutil.rmtree(os.path.join(stack.dir, d % p), ignore_errors=True)


def test_sentinel_failover_under_traffic_bills_exactly(stack, sentinels):
    master, replica, sents = sentinels
    env = {"AGORA_REDIS_SENTINELS": ",".join("127.0.0.1:%d" % p for p in sents), "AGORA_REDIS_MASTER_NAME": "agora",
           "AGORA_REDIS_WAIT_REPLICAS": "1", "AGORA_BILLING_CLAIM_IDLE_MS": "2000"}
    accounts = accounts_on_every_shard(stack, "rse")
    billing = [start_billing(stack, "billing-se%d" % i, env) for i in range(2)]
    router, port = stack.extra_router("router-se", **env)
    try:
        assert wait_for(lambda: "master 127.0.0.1:%d (agora) confirmed" % master in stack.log("router-se"), 10)
        traffic = Traffic(stack, port, accounts)
        assert wait_for(lambda: traffic.count() >= 30, 60)
        assert cli(sents[0], "SENTINEL", "FAILOVER", "agora") == "OK"
        assert wait_for(lambda: master_of(sents[0]) == ["127.0.0.1", str(replica)], 30)
        # the router follows (+switch-master, or a failed write and the sentinels again)
        assert wait_for(lambda: "master 127.0.0.1:%d (agora) confirmed" % replica in stack.log("router-se"), 30)
        start = traffic.count()
        assert wait_for(lambda: traffic.count() >= min(start + 30, MAX_REQUESTS), 60)
        results = traffic.stop()
        assert cli(replica, "ROLE").split()[0] == "master"
        # billing exact once the old master has become a replica and the
        # spooled events (WAIT short of a replica meanwhile) went to the new one
        n, cost = check_billing(stack, results, accounts)
        print("sentinel: %d requests across the fail-over, %d nano-USD billed exactly" % (n, cost))
    finally:
        stop_all([router] + billing)


# ---- a Redis that stops answering ----

def test_hung_redis_is_given_up_on_and_usage_spooled(stack, tmp_path):
    """A Redis that accepts nothing and answers nothing (SIGSTOP, as a
    frozen host): the router keeps answering, its watchdog drops the link
    after RDS_LINK_TIMEOUT_MS (lib/rds.c) so usage goes to the spool, and
    after SIGCONT the spool replays: billing exact."""
    port = free_ports(1)[0]
    redis = start_redis(str(tmp_path), port)
    env = {"AGORA_REDIS_PORT": str(port)}
    accounts = accounts_on_every_shard(stack, "hung")
    billing = [start_billing(stack, "billing-hung", env)]
    router, rport = stack.extra_router("router-hung", **env)
    try:
        traffic = Traffic(stack, rport, accounts)
        assert wait_for(lambda: traffic.count() >= 20, 60)
        redis.send_signal(signal.SIGSTOP)
        assert wait_for(lambda: "not answering for" in stack.log("router-hung"), 20), stack.log("router-hung")[-2000:]
        start = traffic.count()
        assert wait_for(lambda: traffic.count() >= start + 20, 60)     # served while Redis is frozen
        redis.send_signal(signal.SIGCONT)
        assert wait_for(lambda: "spool replay done" in stack.log("router-hung"), 30)
        results = traffic.stop()
        n, cost = check_billing(stack, results, accounts)
        print("hung redis: %d requests, %d nano-USD billed exactly" % (n, cost))
    finally:
        if redis.poll() is None:
            redis.send_signal(signal.SIGCONT)
        stop_all([router, redis] + billing)
