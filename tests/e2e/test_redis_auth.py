"""Redis that requires AUTH: a router and a billing worker against a Redis
with a password for the default user and an ACL user of its own, alone, as
a 3-master Cluster (where a link to a node still connecting is already
sent commands: AUTH must go first) and behind a sentinel with a password of
its own. Every 200 is billed once; a wrong
password is refused with a clear log line, usage goes to the spool meanwhile
and is billed once the right password is configured; no log holds a
password. PostgreSQL and the mock providers are the suite's."""
import os
import shutil
import subprocess

from conftest import free_ports, wait_for
from test_redis_scale import (Traffic, accounts_on_every_shard, check_billing, cli, start_redis, start_sentinel,
                              stop_all)

SENTINEL_PASSWORD = "sentinel-pw-91c2"
SENTINEL_USER_PASSWORD = "sentinel-user-pw-5e07"

PASSWORD = "default-pw 'with' spaces"      # one AUTH argument, spaces and all
USER, USER_PASSWORD = "agora-meter", "acl-pw-7f3a"


def protect(port):
    """An ACL user for Agora, then a password for the default user (the
    redis-cli of the tests speaks as that user, with -a)."""
    assert cli(port, "ACL", "SETUSER", USER, "on", ">" + USER_PASSWORD, "~*", "&*", "+@all") == "OK"
    assert cli(port, "CONFIG", "SET", "requirepass", PASSWORD) == "OK"


def acli(port, *args):
    return cli(port, "--no-auth-warning", "-a", PASSWORD, *args)


def redis_up(stack, port):
    metrics = stack.request("GET", "/metrics", port=port)[2].decode()
    return "\nagora_router_redis_up 1\n" in metrics


def no_password_in_logs(stack, *names):
    for name in names:
        log = stack.log(name)
        assert PASSWORD not in log and USER_PASSWORD not in log, name


def test_acl_user_and_password_file_bill_exactly_and_a_wrong_password_spools(stack, tmp_path):
    port = free_ports(1)[0]
    redis = start_redis(str(tmp_path), port)
    protect(port)
    assert cli(port, "XLEN", "usage").startswith("NOAUTH")
    pw_file = tmp_path / "redis-password"
    pw_file.write_text(USER_PASSWORD + "\n")
    good = {"AGORA_REDIS_PORT": str(port), "AGORA_REDIS_USER": USER, "AGORA_REDIS_PASSWORD_FILE": str(pw_file)}
    accounts = accounts_on_every_shard(stack, "rauth")
    procs = [redis]
    try:
        procs.append(stack.extra_billing("billing-auth", **good)[0])
        router, rport = stack.extra_router("router-auth", **good)
        procs.append(router)
        assert wait_for(lambda: redis_up(stack, rport), 10)
        traffic = Traffic(stack, rport, accounts)
        assert wait_for(lambda: traffic.count() >= 40, 60)
        results = traffic.stop()
        n, _ = check_billing(stack, results, accounts)
        assert "billing" in acli(port, "XINFO", "GROUPS", "usage")    # billing's group, made through AUTH

        # the wrong password: refused, said so, usage spooled (requests still answered)
        bad, bport = stack.extra_router("router-badauth", AGORA_REDIS_PORT=str(port), AGORA_REDIS_USER=USER,
                                        AGORA_REDIS_PASSWORD="not-the-password")
        procs.append(bad)
        assert wait_for(lambda: "refused AUTH as %s: WRONGPASS" % USER in stack.log("router-badauth"), 10), \
            stack.log("router-badauth")[-2000:]
        assert not redis_up(stack, bport)
        more = Traffic(stack, bport, accounts)
        assert wait_for(lambda: more.count() >= 10, 60)
        spooled = more.stop()
        assert all(s == 200 for s, _, _ in spooled)
        bad.terminate()
        bad.wait(15)
        # the same spool, the right password: replayed, and everything billed once
        fixed, fport = stack.extra_router("router-badauth", **good)
        procs.append(fixed)
        assert wait_for(lambda: "spool replay done" in stack.log("router-badauth"), 30), \
            stack.log("router-badauth")[-2000:]
        check_billing(stack, results + spooled, accounts)
        no_password_in_logs(stack, "router-auth", "router-badauth", "billing-auth")
        print("redis AUTH: %d requests billed through an ACL user, %d spooled under a wrong password and replayed"
              % (n, len(spooled)))
    finally:
        stop_all(procs)


def test_cluster_with_a_password_bills_exactly(stack, tmp_path):
    free = free_ports(6)
    ports, bus = free[:3], dict(zip(free[:3], free[3:]))
    procs = []
    try:
        for p in ports:
            procs.append(start_redis(str(tmp_path), p, "--cluster-enabled", "yes", "--cluster-config-file",
                                     "nodes-%d.conf" % p, "--cluster-port", str(bus[p]), "--cluster-node-timeout",
                                     "3000"))
            protect(p)
        subprocess.run(["redis-cli", "--no-auth-warning", "-a", PASSWORD, "--cluster", "create"] +
                       ["127.0.0.1:%d" % p for p in ports] + ["--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        assert wait_for(lambda: all("cluster_state:ok" in acli(p, "CLUSTER", "INFO") for p in ports), 20)
        env = {"AGORA_REDIS_CLUSTER": ",".join("127.0.0.1:%d" % p for p in ports), "AGORA_USAGE_SHARDS": "3",
               "AGORA_REDIS_PASSWORD": PASSWORD}
        accounts = accounts_on_every_shard(stack, "rauthcl")
        procs.append(stack.extra_billing("billing-authcl", **env)[0])
        router, rport = stack.extra_router("router-authcl", **env)
        procs.append(router)
        traffic = Traffic(stack, rport, accounts)
        assert wait_for(lambda: traffic.count() >= 40, 60)
        results = traffic.stop()
        check_billing(stack, results, accounts)
        streams = [k for p in ports for k in acli(p, "--scan", "--pattern", "usage:*").split()]
        assert len(streams) == 3, streams
        no_password_in_logs(stack, "router-authcl", "billing-authcl")
    finally:
        stop_all(procs)
        for p in ports:
            shutil.rmtree(os.path.join(str(tmp_path), "redis-%d" % p), ignore_errors=True)


def start_protected_sentinel(tmp, port, master_port):
    """A sentinel with a requirepass of its own, watching a master that wants PASSWORD."""
    proc = start_sentinel(tmp, port, master_port, quorum=1, password=SENTINEL_PASSWORD,
                          extra='requirepass %s\nsentinel auth-pass agora "%s"\n' % (SENTINEL_PASSWORD, PASSWORD))
    scli = lambda *a: cli(port, "--no-auth-warning", "-a", SENTINEL_PASSWORD, *a)
    assert wait_for(lambda: scli("SENTINEL", "get-master-addr-by-name", "agora").split() ==
                    ["127.0.0.1", str(master_port)], 10)
    assert cli(port, "SENTINEL", "get-master-addr-by-name", "agora").startswith("NOAUTH")
    return proc


def bills_behind_a_protected_sentinel(stack, tmp_path, tag, auth, bad_auth, refused, acl_user=None):
    """A master that wants PASSWORD behind a sentinel with a requirepass of
    its own (and acl_user: (name, password), an ACL user of the sentinel's):
    a router and a billing worker with the AGORA_* settings auth bill
    exactly; a router with bad_auth instead is refused, logging `refused`
    (%d: the sentinel's port), and finds no master. No password logged."""
    master, sentinel = free_ports(2)
    procs = [start_redis(str(tmp_path), master)]
    try:
        protect(master)
        procs.append(start_protected_sentinel(str(tmp_path), sentinel, master))
        if acl_user:
            assert cli(sentinel, "--no-auth-warning", "-a", SENTINEL_PASSWORD, "ACL", "SETUSER", acl_user[0], "on",
                       ">" + acl_user[1], "+@all") == "OK"
        env = dict({"AGORA_REDIS_SENTINELS": "127.0.0.1:%d" % sentinel, "AGORA_REDIS_MASTER_NAME": "agora",
                    "AGORA_REDIS_PASSWORD": PASSWORD}, **auth)
        names = ("router-" + tag, "billing-" + tag, "router-%s-bad" % tag)
        accounts = accounts_on_every_shard(stack, "r" + tag)
        procs.append(stack.extra_billing(names[1], **env)[0])
        router, rport = stack.extra_router(names[0], **env)
        procs.append(router)
        assert wait_for(lambda: "master 127.0.0.1:%d (agora) confirmed" % master in stack.log(names[0]), 10)
        traffic = Traffic(stack, rport, accounts)
        assert wait_for(lambda: traffic.count() >= 30, 60)
        check_billing(stack, traffic.stop(), accounts)
        bad, _ = stack.extra_router(names[2], **dict(env, **bad_auth))
        procs.append(bad)
        assert wait_for(lambda: refused % sentinel in stack.log(names[2]), 10), stack.log(names[2])[-2000:]
        assert "confirmed" not in stack.log(names[2])
        no_password_in_logs(stack, *names)
        for name in names:
            assert SENTINEL_PASSWORD not in stack.log(name) and SENTINEL_USER_PASSWORD not in stack.log(name)
    finally:
        stop_all(procs)


def test_sentinel_with_a_password_of_its_own_bills_exactly(stack, tmp_path):
    # the sentinel's password wrong: refused, said so, and no master
    bills_behind_a_protected_sentinel(stack, tmp_path, "authse",
                                      {"AGORA_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD},
                                      {"AGORA_REDIS_SENTINEL_PASSWORD": "wrong"},
                                      "sentinel 127.0.0.1:%d refused AUTH as the default user")


def test_sentinel_acl_user_bills_exactly(stack, tmp_path):
    """redis_sentinel_user: the sentinel links AUTH as an ACL user of the
    sentinels' own, whose password is not the default user's; with the
    default user's password instead, refused, the user named."""
    bills_behind_a_protected_sentinel(stack, tmp_path, "authsu",
                                      {"AGORA_REDIS_SENTINEL_USER": "agora-sent",
                                       "AGORA_REDIS_SENTINEL_PASSWORD": SENTINEL_USER_PASSWORD},
                                      {"AGORA_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD},
                                      "sentinel 127.0.0.1:%d refused AUTH as agora-sent",
                                      acl_user=("agora-sent", SENTINEL_USER_PASSWORD))
