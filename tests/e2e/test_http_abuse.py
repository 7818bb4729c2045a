"""The HTTP layer under abuse, end to end on raw sockets: every framing
rule of RFC 9112 that a proxy and the gateway could read differently is
refused with a JSON 400 and Connection: close before any route runs, and
nothing after it on the connection is executed; methods, oversized heads,
Expect and slow clients get JSON answers too and are counted; the
connection cap sheds the slowest; running out of file descriptors does not
stop health probes, burn CPU or flood the log."""
import json
import os
import resource
import socket
import threading
import time

import harness as h

REQUEST_ID_HEADER = b"x-request-id: req_"


raw = h.raw_request


def split(resp):
    """(status, headers dict lower-case, body) of the first answer."""
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        hdrs[k.strip().lower().decode()] = v.strip().decode()
    n = int(hdrs.get("content-length", len(body)))
    return status, hdrs, body[:n], body[n:]


def paused(test, **kw):
    g = test.gateway(**kw)
    assert g.admin("POST", "/admin/pause").status == 200
    return g


def total(g):
    return sum(g.queue()["deletions"].values())


def signed_erasure(id_="f_smuggled"):
    body = json.dumps({"resource": "file", "id": id_}).encode()
    hdr = h.sign_standard(body)
    return (b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in hdr.items())
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def metric(g, name, **labels):
    text = h.request(g.port, "GET", "/metrics").body.decode()
    want = name + ("{" + ",".join('%s="%s"' % kv for kv in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        if key.startswith(name + "{") and labels:
            got = dict(p.split("=", 1) for p in key[len(name) + 1:-1].split(","))
            if all(got.get(k) == '"%s"' % v for k, v in labels.items()):
                return float(val)
        elif key == want:
            return float(val)
    return 0.0


# Each case: raw head (before a smuggled signed request that must never
# run), expected status and error code.
FRAMING_CASES = [
    ("two Content-Length", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400, "invalid_content_length"),
    ("two equal Content-Length in one", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}", 400, "invalid_content_length"),
    ("signed Content-Length", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}", 400, "invalid_content_length"),
    ("hex Content-Length", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 0x2\r\n\r\n{}", 400, "invalid_content_length"),
    ("gzip Transfer-Encoding", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "invalid_transfer_encoding"),
    ("chunked twice", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400, "invalid_transfer_encoding"),
    ("two Transfer-Encoding", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400, "invalid_transfer_encoding"),
    ("Transfer-Encoding on HTTP/1.0", b"POST /v1/deletions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_transfer_encoding"),
    ("Transfer-Encoding with Content-Length", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_transfer_encoding"),
    ("chunk size with extension", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\n{}\r\n0\r\n\r\n", 400, "invalid_chunk"),
    ("chunk size with sign", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\n{}\r\n0\r\n\r\n", 400, "invalid_chunk"),
    ("chunk size 0x", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n", 400, "invalid_chunk"),
    ("chunk data too long", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n", 400, "invalid_chunk"),
    ("trailer field", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nwebhook-id: x\r\n\r\n", 400, "invalid_chunk"),
    ("no Host on HTTP/1.1", b"GET /healthz HTTP/1.1\r\n\r\n", 400, "invalid_host"),
    ("two Host", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "invalid_host"),
    ("NUL in a value", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "invalid_header"),
    ("bare CR in a value", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, "invalid_header"),
    ("bare LF ends a line", b"GET /healthz HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400, "invalid_header"),
    ("control byte in a name", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX\x01A: b\r\n\r\n", 400, "invalid_header"),
    ("DEL in a value", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400, "invalid_header"),
    ("space before colon", b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}", 400, "invalid_header"),
    ("tab before colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n", 400, "invalid_header"),
    ("folded line", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400, "invalid_header"),
    ("HTTP/1.2", b"GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n", 400, "unsupported_http_version"),
    ("HTTP/2.0", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 400, "unsupported_http_version"),
    ("HTTP/0.9", b"GET /healthz\r\n\r\n", 400, "invalid_request_line"),
    ("lower-case version", b"GET /healthz http/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line"),
    ("two spaces", b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line"),
    ("absolute-form", b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line"),
    ("double slash", b"GET //healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line"),
    ("bad percent", b"GET /health%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line"),
    ("HEAD with a body", b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 400, "unexpected_body"),
]


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class HttpAbuseTest(h.GatewayTestCase):
    """Framing, limits and abuse on raw sockets."""

    def test_each_framing_rule_is_refused_in_json_and_nothing_after_it_runs(self):
        g = paused(self)
        for name, head, status, code in FRAMING_CASES:
            resp = raw(g.port, head + signed_erasure("f_" + code))
            assert resp, name
            st, hdrs, body, rest = split(resp)
            assert st == status, (name, resp[:300])
            assert hdrs.get("connection") == "close", (name, hdrs)
            assert hdrs.get("content-type") == "application/json", (name, hdrs)
            err = json.loads(body)["error"]
            assert err["code"] == code, (name, err)
            assert err["request_id"] == hdrs["x-request-id"], (name, err, hdrs)
            assert rest == b"", (name, "something answered after the refusal", rest[:200])
        assert total(g) == 0, "a request smuggled behind a refused one was executed"
        assert metric(g, "dg_rejections_total", reason="invalid_content_length") == 4
        assert metric(g, "dg_rejections_total", reason="invalid_header") >= 8
        assert metric(g, "dg_http_requests_total", route="deletions_create", status="400") >= 10
        # The gateway still serves, and a well-framed chunked request works.
        body = json.dumps({"resource": "file", "id": "f_chunked"}).encode()
        hdr = h.sign_standard(body)
        req = (b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in hdr.items())
               + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + b"%x\r\n%s\r\n%X\r\n%s\r\n0\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:]))
        st, _, b, _ = split(raw(g.port, req))
        assert st == 202, b
        assert total(g) == 1

    def test_pipelined_requests_are_answered_in_order_and_a_bad_one_ends_the_connection(self):
        g = paused(self)
        good = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        resp = raw(g.port, good + b"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n" + good
                   + b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n" + signed_erasure())
        answers = resp.split(b"HTTP/1.1 ")[1:]
        assert [a[:3] for a in answers] == [b"200", b"200", b"200", b"400"], resp
        assert b"invalid_header" in answers[3]
        # HEAD: the length a GET would have, no body (the next answer follows at once).
        head = answers[1].split(b"\r\n\r\n")[0]
        assert b"Content-Length: " in head and answers[1].endswith(b"\r\n\r\n"), answers[1]
        assert total(g) == 0
        # Leading empty lines before a request line are ignored (RFC 9112 2.2).
        st, _, _, _ = split(raw(g.port, b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert st == 200

    def test_head_health_probes_answer_like_get_without_a_body(self):
        g = self.gateway()
        for path in ("/healthz", "/readyz", "/metrics"):
            r = h.request(g.port, "HEAD", path)
            got = h.request(g.port, "GET", path)
            assert r.status == got.status == 200, (path, r, got)
            assert r.body == b"", (path, r.body)
            assert int(r.headers["content-length"]) > 0, (path, r.headers)
        # Only HEAD and GET there.
        assert h.request(g.port, "DELETE", "/healthz").status == 405

    def test_unknown_methods_get_the_json_405_and_are_counted(self):
        g = self.gateway()
        for line in (b"PROPFIND / HTTP/1.1", b"get /healthz HTTP/1.1", b"TRACE / HTTP/1.1",
                     b"CONNECT x:443 HTTP/1.1", b"BREW /pot HTTP/1.1"):
            resp = raw(g.port, line + b"\r\nHost: x\r\n\r\n")
            st, hdrs, body, _ = split(resp)
            assert st == 405 and json.loads(body)["error"]["code"] == "method_not_allowed", (line, resp)
            assert REQUEST_ID_HEADER in resp.lower()
        # And on the admin listener too.
        st, _, body, _ = split(raw(g.admin_port, b"PROPFIND /admin/queue HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert st == 405 and b"method_not_allowed" in body
        assert metric(g, "dg_rejections_total", reason="method_not_allowed") >= 5

    def test_oversized_heads_urls_bodies_and_expect_get_json_errors(self):
        g = paused(self, overrides={"limits": {"max_header_bytes": 4096, "max_body_bytes": 2048}})
        cases = [
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431, "headers_too_large"),
            (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
            (b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n", 413, "body_too_large"),
            (b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "invalid_content_length"),
            (b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n900\r\n", 413, "body_too_large"),
            (b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n", 417, "expectation_failed"),
        ]
        for data, status, code in cases:
            resp = raw(g.port, data)
            st, hdrs, body, _ = split(resp)
            assert st == status and json.loads(body)["error"]["code"] == code, (code, resp[:300])
            assert hdrs["connection"] == "close"
            assert metric(g, "dg_rejections_total", reason=code) >= 1, code
        for code, status in (("headers_too_large", "431"), ("uri_too_long", "414"), ("expectation_failed", "417")):
            assert metric(g, "dg_http_requests_total", route="other", status=status) + \
                metric(g, "dg_http_requests_total", route="healthz", status=status) + \
                metric(g, "dg_http_requests_total", route="deletions_create", status=status) >= 1, code
        # Expect: 100-continue is served: the body follows the interim answer.
        body = json.dumps({"resource": "file", "id": "f_continue"}).encode()
        hdr = h.sign_standard(body)
        s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        s.sendall(b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                  + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in hdr.items())
                  + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        out = h.read_all(s)
        s.close()
        assert out.startswith(b"HTTP/1.1 202"), out
        assert total(g) == 1

    def test_a_trickling_client_is_cut_off_at_the_whole_request_deadline(self):
        g = paused(self, overrides={"limits": {"request_timeout_seconds": 2}})
        s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
        data = signed_erasure("f_trickle")
        t0 = time.monotonic()
        got = b""
        i = 0
        try:
            # One byte every 100 ms: each read is quick, the request never ends.
            while time.monotonic() - t0 < 8 and i < len(data) - 1:
                s.sendall(data[i:i + 1])
                i += 1
                s.settimeout(0.1)
                try:
                    c = s.recv(4096)
                    if not c:
                        break
                    got += c
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    break
                if got.endswith(b"}\n"):
                    break
        finally:
            s.close()
        took = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 408 "), got[:200]
        assert b'"request_timeout"' in got and b"Connection: close" in got
        assert 1.8 < took < 4, took
        assert total(g) == 0
        assert metric(g, "dg_rejections_total", reason="request_timeout") == 1
        # A slow body is cut off the same way.
        s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
        s.sendall(b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        t0 = time.monotonic()
        out = h.read_all(s, lambda chunk: None)
        s.close()
        assert out.startswith(b"HTTP/1.1 408 ") and 1.5 < time.monotonic() - t0 < 4, out[:200]

    def test_connection_cap_sheds_the_slowest_unfinished_request(self):
        g = paused(self, overrides={"limits": {"max_connections": 4}})
        socks = []
        for i in range(4):
            s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-%d: " % i)  # never finished
            socks.append(s)
            time.sleep(0.05)
        # A fifth client at the cap is served; the oldest unfinished request goes.
        r = h.request(g.port, "GET", "/healthz")
        assert r.status == 200, r
        socks[0].settimeout(3)
        first = socks[0].recv(4096)
        st, hdrs, body, _ = split(first)
        assert st == 503 and json.loads(body)["error"]["code"] == "too_many_connections", first
        assert hdrs["connection"] == "close"
        # The others are still open (not answered yet).
        for s in socks[1:]:
            s.settimeout(0.2)
            try:
                assert s.recv(10) != b""
                raise AssertionError("a newer slow request was shed before the oldest")
            except socket.timeout:
                pass
        # Connections whose answer the gateway owes are never shed: with every
        # slot busy waiting on us there is nothing to shed, and a newcomer is
        # refused (while the admin listener stays open).
        for s in socks:
            s.close()
        assert metric(g, "dg_rejections_total", reason="too_many_connections") >= 1
        assert g.admin("GET", "/admin/queue").status == 200

    def test_descriptors_running_out_keep_probes_answered_cpu_low_and_the_log_small(self):
        # The gateway under `ulimit -n 64` (soft and hard: it cannot raise it),
        # then far more trickling clients than descriptors.
        limit = 64

        def low_fd_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        g = self.gateway(overrides={"limits": {"request_timeout_seconds": 30}})
        g.stop()
        real_popen = h.subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = low_fd_limit
            return real_popen(*a, **kw)

        h.subprocess.Popen = popen
        try:
            g.start()
        finally:
            h.subprocess.Popen = real_popen
        log_before = os.path.getsize(g.log_path)
        stop = threading.Event()
        opened = [0]
        socks = []
        lock = threading.Lock()

        def trickle():
            # Keeps opening connections and sending a byte now and then.
            while not stop.is_set():
                try:
                    s = socket.create_connection(("127.0.0.1", g.port), timeout=1)
                    s.setblocking(False)
                    with lock:
                        socks.append(s)
                        opened[0] += 1
                except OSError:
                    time.sleep(0.01)
                with lock:
                    for s in list(socks):
                        try:
                            s.send(b"G")
                        except OSError:
                            socks.remove(s)
                            s.close()
                time.sleep(0.002)

        threads = [threading.Thread(target=trickle) for _ in range(3)]
        cpu0 = proc_cpu_seconds(g.proc.pid)
        t0 = time.monotonic()
        for t in threads:
            t.start()
        probes = failures = 0
        try:
            while time.monotonic() - t0 < 8:
                try:
                    ok = h.request(g.port, "GET", "/healthz", timeout=2).status == 200
                except OSError:
                    ok = False
                probes += 1
                failures += 0 if ok else 1
                assert g.admin("GET", "/admin/queue").status == 200
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join()
            for s in socks:
                s.close()
        wall = time.monotonic() - t0
        cpu = proc_cpu_seconds(g.proc.pid) - cpu0
        assert opened[0] > 3 * limit, "the test did not open more connections than descriptors: %d" % opened[0]
        assert failures <= probes // 10, "%d of %d health probes failed" % (failures, probes)
        assert cpu < 0.5 * wall, "gateway used %.1f s CPU in %.1f s" % (cpu, wall)
        grew = os.path.getsize(g.log_path) - log_before
        assert grew < 64 * 1024, "log grew %d bytes" % grew
        assert h.request(g.port, "GET", "/healthz").status == 200
        assert g.proc.poll() is None


if __name__ == "__main__":
    h.main()
