"""Security promises that each have a test: TLS on the router's listener,
verified TLS to providers (the https mock in the catalog), keys only as
hashes, one account never reading another's data."""
import http.client
import json
import os
import ssl
import warnings

MSG = [{"role": "user", "content": "secure"}]


def tls_router(stack):
    tls = os.path.join(stack.dir, "tls")
    return stack.extra_router("router-tls", AGORA_TLS_CERT_FILE=os.path.join(tls, "server.pem"),
                              AGORA_TLS_KEY_FILE=os.path.join(tls, "server.key"), tls=True)


def test_tls_listener(stack):
    proc, port = tls_router(stack)
    try:
        ctx = ssl.create_default_context(cafile=os.path.join(stack.dir, "tls", "ca.pem"))
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        c.request("POST", "/api/v1/chat/completions", json.dumps({"model": "test/solo", "messages": MSG}),
                  {"Authorization": "Bearer " + stack.key, "Content-Type": "application/json"})
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 200 and body["provider"] == "Solo AI"
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        # keep-alive over TLS, then a stream
        c.request("POST", "/api/v1/chat/completions", json.dumps({"model": "test/solo", "messages": MSG, "stream": True}),
                  {"Authorization": "Bearer " + stack.key, "Content-Type": "application/json"})
        r = c.getresponse()
        raw = r.read().decode()
        assert r.status == 200 and raw.rstrip().endswith("data: [DONE]")
        c.close()
        # plain HTTP on the TLS port is refused, and the router keeps serving
        p = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            p.request("GET", "/health")
            status = p.getresponse().status
        except (http.client.HTTPException, OSError):
            status = None
        assert status != 200
        # TLS 1.1 is refused
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                old.maximum_version = ssl.TLSVersion.TLSv1_1
                old.minimum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, AttributeError):
            old = None
        if old is not None:
            try:
                h = http.client.HTTPSConnection("127.0.0.1", port, context=old, timeout=5)
                h.request("GET", "/health")
                ok = h.getresponse().status == 200
            except (ssl.SSLError, OSError):
                ok = False
            assert not ok
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        c.request("GET", "/health")
        assert c.getresponse().status == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_router_refuses_to_start_with_a_bad_certificate(stack):
    import subprocess
    from conftest import BUILD, free_ports
    env = dict(stack.env, AGORA_LISTEN="127.0.0.1:%d" % free_ports(1)[0],
               AGORA_TLS_CERT_FILE=os.path.join(stack.dir, "tls", "server.pem"),
               AGORA_TLS_KEY_FILE=os.path.join(stack.dir, "tls", "ca.key"))      # not the certificate's key
    r = subprocess.run([os.path.join(BUILD, "agora-router"), "-c", os.path.join(stack.dir, "agora.conf")],
                       env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "tls" in r.stderr


def test_upstream_tls_is_verified(stack):
    """gamma is an https mock whose certificate is signed by the stack's CA; a
    router that does not trust that CA must refuse it (and fail over)."""
    proc, port = stack.extra_router("router-noca", AGORA_UPSTREAM_CA_FILE="/etc/ssl/certs/ca-certificates.crt")
    try:
        body = {"model": "test/three", "messages": MSG, "provider": {"only": ["gamma"]}}
        s, h, raw = stack.request("POST", "/api/v1/chat/completions", body, key=stack.key, port=port)
        assert s in (502, 503), raw
        body["provider"] = {"order": ["gamma", "alpha"]}
        s, h, raw = stack.request("POST", "/api/v1/chat/completions", body, key=stack.key, port=port)
        assert s == 200 and json.loads(raw)["provider"] == "Alpha AI"
    finally:
        proc.terminate()
        proc.wait(10)
    # the stack's own router trusts the CA: gamma serves
    s, ans = stack.chat_json({"model": "test/three", "messages": MSG, "provider": {"only": ["gamma"]}})
    assert s == 200 and ans["provider"] == "Gamma AI"
