#!/usr/bin/env python3
"""test_sim.py: the Extend simulator (extend-sim, tools/extend-sim/) behaves
as extend-api.md says Extend does, and its fault injection and inspection
routes do what the other end-to-end tests rely on.

Starts the real binary from DG_BUILD_DIR over TLS with a development CA made
by certs/make-dev-certs.sh and talks to it with http.client. Most tests
share one simulator, reset before each; it must still exit 0 on SIGTERM
with an answer pending once they are done. Standard library only.
"""
import http.client
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import harness

SIM = harness.SIM_BIN
TOKEN = "sk_test_simulator"
VERSION = "2026-02-09"
IDLE_MS = 400


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Sim:
    """One running extend-sim and a way to talk to it."""

    def __init__(self, tmp, certs, extra=(), plain=False):
        self.log_path = os.path.join(tmp, "sim-%d.jsonl" % time.monotonic_ns())
        args = [SIM, "--port", "0", "--log", self.log_path] + list(extra)
        if plain:
            args.append("--plain")
        else:
            args += ["--cert", os.path.join(certs, "server.pem"),
                     "--key", os.path.join(certs, "server.key")]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        if not ready:
            self.proc.kill()
            raise RuntimeError("extend-sim did not start")
        self.line = self.proc.stdout.readline().decode().strip()
        self.port = int(self.line.rsplit(":", 1)[1])
        self.plain = plain
        self.ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))

    def conn(self, timeout=10):
        if self.plain:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return http.client.HTTPSConnection("localhost", self.port, context=self.ctx,
                                           timeout=timeout)

    def call(self, method, path, headers=None, body=None, conn=None):
        c = conn or self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if conn is None:
            c.close()
        return r.status, hdrs, data

    def delete(self, collection, rid, token=TOKEN, version=VERSION, extra=None, conn=None):
        h = {"Accept": "application/json"}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        if version is not None:
            h["x-extend-api-version"] = version
        h.update(extra or {})
        return self.call("DELETE", "/%s/%s" % (collection, rid), headers=h, conn=conn)

    def control(self, method, path, doc=None):
        body = json.dumps(doc) if doc is not None else None
        status, _, data = self.call(method, path, body=body)
        return status, json.loads(data)

    def faults(self, rules):
        return self.control("POST", "/_sim/faults", rules)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err.decode(errors="replace")


def is_extend_error(data, code, retryable, request_id):
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return (sorted(doc) == ["code", "message", "requestId", "retryable"]
            and doc["code"] == code and doc["retryable"] is retryable
            and isinstance(doc["message"], str) and doc["message"] != ""
            and doc["requestId"] == request_id)


class SimTest(harness.TimedTestCase):
    """The tests, each named for the behaviour it protects. self.sim is the
    shared simulator (with a token and a short idle limit); the last two
    start simulators of their own."""

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.tmp = cls._tmp.name
        cls.certs = os.path.join(cls.tmp, "certs")
        subprocess.run([os.path.join(harness.SRC, "certs", "make-dev-certs.sh"), cls.certs], check=True,
                       stdout=subprocess.DEVNULL)
        cls.sim = Sim(cls.tmp, cls.certs, extra=["--token", TOKEN, "--idle-close-ms", str(IDLE_MS)])

    @classmethod
    def tearDownClass(cls):
        """Pending answers must not keep the process from a clean exit."""
        try:
            cls.sim.faults([{"match": "hang", "delay_ms": 60000}])
            hang = cls.sim.conn()
            hang.request("DELETE", "/files/file_hang", headers={
                "Authorization": "Bearer " + TOKEN, "x-extend-api-version": VERSION})
            time.sleep(0.2)
        finally:
            rc, err = cls.sim.stop()
            cls._tmp.cleanup()
        check(rc == 0, "test_sigterm_exits_zero: SIGTERM exit status %d, stderr: %s" % (rc, err[-2000:]))

    def setUp(self):
        super().setUp()
        self.sim.control("POST", "/_sim/reset")

    def test_listening_line_names_the_chosen_port(self):
        check(self.sim.line.startswith("extend-sim listening on https://127.0.0.1:"), self.sim.line)
        check(self.sim.port > 0, "port chosen")

    def test_tls_verifies_against_dev_ca(self):
        raw = socket.create_connection(("127.0.0.1", self.sim.port), timeout=5)
        with self.sim.ctx.wrap_socket(raw, server_hostname="localhost") as s:
            check(s.version() in ("TLSv1.2", "TLSv1.3"), "TLS version %s" % s.version())
        strict = ssl.create_default_context()  # system CAs only: the dev CA is not there
        raw = socket.create_connection(("127.0.0.1", self.sim.port), timeout=5)
        try:
            strict.wrap_socket(raw, server_hostname="localhost").close()
            check(False, "untrusted CA must fail verification")
        except ssl.SSLError:
            check(True, "")
        finally:
            raw.close()

    def test_delete_twice_answers_200_then_404(self):
        st, h, body = self.sim.delete("extract_runs", "exr_twice")
        check(st == 200, "first DELETE status %d" % st)
        check(json.loads(body) == {"id": "exr_twice"}, "success body %r" % body)
        check(h.get("content-type") == "application/json", "content-type")
        rid1 = h.get("x-extend-request-id", "")
        check(rid1.startswith("req_"), "request id %r" % rid1)
        st, h, body = self.sim.delete("extract_runs", "exr_twice")
        check(st == 404, "second DELETE status %d" % st)
        check(h.get("content-type") == "application/json", "404 content-type")
        rid2 = h.get("x-extend-request-id", "")
        check(rid2.startswith("req_") and rid2 != rid1, "request ids unique")
        check(is_extend_error(body, "NOT_FOUND", False, rid2), "404 body %r" % body)
        # The same id in another collection is another resource.
        st, _, _ = self.sim.delete("files", "exr_twice")
        check(st == 200, "same id, other collection: %d" % st)

    def test_every_collection_is_served(self):
        for col in ("extract_runs", "parse_runs", "classify_runs", "split_runs", "edit_runs",
                    "workflow_runs", "files"):
            st, _, body = self.sim.delete(col, "id_" + col)
            check(st == 200 and json.loads(body) == {"id": "id_" + col}, "%s: %d" % (col, st))

    def test_missing_ids_are_always_404(self):
        for _ in range(2):
            st, h, body = self.sim.delete("parse_runs", "missing_pr_1")
            check(st == 404 and is_extend_error(body, "NOT_FOUND", False,
                                                h.get("x-extend-request-id")), "missing_ 404")

    def test_id_is_percent_decoded_and_raw_path_recorded(self):
        st, _, body = self.sim.delete("files", "file%2Fa%20b%25")
        check(st == 200, "encoded id status %d" % st)
        check(json.loads(body) == {"id": "file/a b%"}, "decoded id %r" % body)
        _, reqs = self.sim.control("GET", "/_sim/requests")
        check(len(reqs) == 1 and reqs[0]["path"] == "/files/file%2Fa%20b%25"
              and reqs[0]["id"] == "file/a b%" and reqs[0]["collection"] == "files",
              "request log %r" % reqs)

    def test_bad_or_missing_token_is_401(self):
        for token in (None, "sk_wrong", ""):
            st, h, body = self.sim.delete("extract_runs", "exr_auth", token=token)
            check(st == 401 and is_extend_error(body, "UNAUTHORIZED", False,
                                                h.get("x-extend-request-id")),
                  "token %r: %d %r" % (token, st, body))
        st, _, _ = self.sim.delete("extract_runs", "exr_auth", extra={"Authorization": "Basic " + TOKEN})
        check(st == 401, "non-bearer scheme: %d" % st)
        st, _, _ = self.sim.delete("extract_runs", "exr_auth")
        check(st == 200, "refused attempts did not delete: %d" % st)

    def test_missing_api_version_is_400(self):
        st, h, body = self.sim.delete("extract_runs", "exr_ver", version=None)
        check(st == 400 and is_extend_error(body, "INVALID_REQUEST", False,
                                            h.get("x-extend-request-id")), "no version: %d" % st)

    def test_unknown_collection_is_plain_404(self):
        for path in ("/widgets/w_1", "/extract_runs/", "/extract_runs/a/b"):
            st, h, body = self.sim.call("DELETE", path, headers={"Authorization": "Bearer " + TOKEN,
                                                            "x-extend-api-version": VERSION})
            check(st == 404 and body.strip() == b"Not Found", "%s: %d %r" % (path, st, body))
            check(not h.get("content-type", "").startswith("application/json"), "plain type")

    def test_fault_429_with_retry_after_once(self):
        st, doc = self.sim.faults([{"match": "rl_", "status": 429, "retry_after": "2",
                               "ratelimit_reset": "1900000000"}])
        check(st == 200 and doc == {"added": 1, "total": 1}, "add fault %r" % doc)
        st, h, body = self.sim.delete("extract_runs", "exr_rl_1")
        check(st == 429, "429 status %d" % st)
        check(h.get("retry-after") == "2", "Retry-After %r" % h.get("retry-after"))
        check(h.get("x-ratelimit-reset") == "1900000000", "X-RateLimit-Reset")
        check(is_extend_error(body, "RATE_LIMIT_EXCEEDED", True, h.get("x-extend-request-id")),
              "429 body %r" % body)
        st, _, _ = self.sim.delete("extract_runs", "exr_rl_1")
        check(st == 200, "count 1 is used up, then success: %d" % st)
        st, _, _ = self.sim.delete("extract_runs", "exr_other")
        check(st == 200, "non-matching id unaffected: %d" % st)

    def test_fault_500_plain_text_as_a_proxy(self):
        self.sim.faults([{"status": 500, "action": "plain"}])
        st, h, body = self.sim.delete("extract_runs", "exr_px")
        check(st == 500, "plain status %d" % st)
        check(not body.lstrip().startswith(b"{"), "plain body %r" % body)
        check("x-extend-request-id" not in h, "a proxy answer carries no Extend request id")
        check(h.get("content-type", "").startswith("text/plain"), "plain content-type")

    def test_fault_forever_with_custom_code(self):
        self.sim.faults([{"match": "dead", "status": 503, "count": -1, "code": "MAINTENANCE"}])
        for i in range(3):
            st, h, body = self.sim.delete("files", "file_dead_%d" % i)
            check(st == 503 and is_extend_error(body, "MAINTENANCE", True,
                                                h.get("x-extend-request-id")), "forever %d" % i)
        _, rules = self.sim.control("GET", "/_sim/faults")
        check(len(rules) == 1 and rules[0]["count"] == -1, "rule still armed %r" % rules)

    def test_status_sets_default_codes(self):
        expect = {400: ("INVALID_REQUEST", False), 401: ("UNAUTHORIZED", False),
                  402: ("USAGE_BLOCKED", False), 422: ("INVALID_REQUEST", False),
                  500: ("INTERNAL_ERROR", True)}
        self.sim.faults([{"match": "code_%d" % s, "status": s} for s in expect])
        for s, (code, retry) in expect.items():
            st, h, body = self.sim.delete("files", "code_%d" % s)
            check(st == s and is_extend_error(body, code, retry, h.get("x-extend-request-id")),
                  "status %d: %r" % (st, body))

    def test_fault_drop_closes_without_answer(self):
        self.sim.faults([{"match": "drop", "action": "drop"}])
        c = self.sim.conn()
        try:
            self.sim.delete("files", "file_drop", conn=c)
            check(False, "drop must not answer")
        except (http.client.HTTPException, ConnectionError, ssl.SSLError, OSError):
            check(True, "")
        finally:
            c.close()
        st, _, _ = self.sim.delete("files", "file_drop")
        check(st == 200, "after the drop the id is still there: %d" % st)
        _, stats = self.sim.control("GET", "/_sim/stats")
        check(stats["dropped"] == 1, "dropped counted %r" % stats)

    def test_fault_delay_then_success(self):
        self.sim.faults([{"match": "slow", "delay_ms": 500}])
        t = time.monotonic()
        st, _, _ = self.sim.delete("files", "file_slow")
        took = time.monotonic() - t
        check(st == 200 and took >= 0.45, "delayed success %d after %.2fs" % (st, took))
        t = time.monotonic()
        st, _, _ = self.sim.delete("files", "file_slow2")
        check(time.monotonic() - t < 0.4, "count 1: next one is fast")

    def test_bad_fault_rule_adds_nothing(self):
        for bad in ([{"status": 99}], [{"action": "explode"}], [{"bogus": 1}],
                    [{"status": 429}, {"delay_ms": -5}], [{"retry_after": "1\r\nX: y"}], "nope"):
            st, doc = self.sim.faults(bad)
            check(st == 400 and doc.get("code") == "INVALID_REQUEST", "bad rule %r: %d" % (bad, st))
        _, rules = self.sim.control("GET", "/_sim/faults")
        check(rules == [], "no rule added %r" % rules)

    def test_requests_log_shows_headers(self):
        self.sim.delete("extract_runs", "exr_log", extra={"x-extend-workspace-id": "ws_1",
                                                       "User-Agent": "deletion-gateway/0.1.0"})
        self.sim.delete("extract_runs", "exr_log", token="sk_bad")
        _, reqs = self.sim.control("GET", "/_sim/requests")
        check(len(reqs) == 2, "two records %r" % reqs)
        if len(reqs) == 2:
            a, b = reqs
            check(a["seq"] + 1 == b["seq"] and a["method"] == "DELETE", "seq order")
            check(a["status"] == 200 and b["status"] == 401, "statuses")
            check(isinstance(a["time_ms"], int) and abs(a["time_ms"] / 1000 - time.time()) < 60,
                  "time_ms")
            h = a["headers"]
            check(h.get("authorization") == "Bearer " + TOKEN, "authorization %r" % h)
            check(h.get("x-extend-api-version") == VERSION, "version header")
            check(h.get("x-extend-workspace-id") == "ws_1", "workspace header")
            check(h.get("accept") == "application/json", "accept header")
            check(h.get("user-agent") == "deletion-gateway/0.1.0", "user-agent header")
            _, later = self.sim.control("GET", "/_sim/requests?since=%d" % a["seq"])
            check([r["seq"] for r in later] == [b["seq"]], "since filter %r" % later)

    def test_log_file_gets_one_line_per_delete(self):
        self.sim.delete("split_runs", "splr_file_log")
        deadline = time.monotonic() + 5
        lines = []
        while time.monotonic() < deadline:
            with open(self.sim.log_path) as f:
                lines = [json.loads(x) for x in f if x.strip()]
            if any(x["id"] == "splr_file_log" for x in lines):
                break
            time.sleep(0.1)
        check(any(x["id"] == "splr_file_log" and x["status"] == 200 for x in lines),
              "log file line")

    def test_stats_count_statuses_and_concurrency(self):
        self.sim.faults([{"match": "par", "delay_ms": 600, "count": 4}])
        results = []

        def one(i):
            results.append(self.sim.delete("edit_runs", "edr_par_%d" % i)[0])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.sim.delete("edit_runs", "edr_par_0")
        _, stats = self.sim.control("GET", "/_sim/stats")
        check(sorted(results) == [200] * 4, "parallel results %r" % results)
        check(stats["deletes"] == 5, "deletes %r" % stats)
        check(stats["by_status"] == {"200": 4, "404": 1}, "by_status %r" % stats)
        check(stats["max_concurrent"] >= 3, "max_concurrent %r" % stats)
        check(stats["connections_opened"] >= 5, "connections_opened %r" % stats)

    def test_keep_alive_is_reused_then_closed_when_idle(self):
        c = self.sim.conn()
        for i in range(3):
            st, _, _ = self.sim.delete("files", "file_ka_%d" % i, conn=c)
            check(st == 200, "kept-alive request %d" % i)
        _, stats = self.sim.control("GET", "/_sim/stats")
        check(stats["connections_opened"] == 2, "one connection for three DELETEs %r" % stats)
        time.sleep(IDLE_MS / 1000 * 2.5)
        sock = c.sock
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except (ssl.SSLError, ConnectionError, OSError):
            closed = True
        check(closed, "idle connection closed by the server")
        c.close()
        # A delay longer than the idle limit still gets its answer.
        self.sim.faults([{"match": "longer", "delay_ms": IDLE_MS * 2}])
        st, _, _ = self.sim.delete("files", "file_longer")
        check(st == 200, "delay beyond idle limit answered: %d" % st)

    def test_reset_forgets_everything(self):
        self.sim.delete("classify_runs", "clr_reset")
        self.sim.faults([{"status": 500, "count": -1, "match": "never"}])
        st, _ = self.sim.control("POST", "/_sim/reset")
        check(st == 200, "reset status")
        _, reqs = self.sim.control("GET", "/_sim/requests")
        _, rules = self.sim.control("GET", "/_sim/faults")
        _, stats = self.sim.control("GET", "/_sim/stats")
        check(reqs == [] and rules == [] and stats["deletes"] == 0 and stats["by_status"] == {},
              "cleared %r %r %r" % (reqs, rules, stats))
        st, _, _ = self.sim.delete("classify_runs", "clr_reset")
        check(st == 200, "deleted set forgotten: %d" % st)

    def test_plain_mode_and_bad_usage(self):
        sim = Sim(self.tmp, self.certs, plain=True)
        check(sim.line.startswith("extend-sim listening on http://127.0.0.1:"), sim.line)
        st, _, _ = sim.delete("files", "file_plain")
        check(st == 200, "plain DELETE %d" % st)
        rc, err = sim.stop()
        check(rc == 0, "plain exit %d %s" % (rc, err))
        r = subprocess.run([SIM, "--cert", "x"], capture_output=True, timeout=20)
        check(r.returncode == 2, "bad usage exit %d" % r.returncode)
        r = subprocess.run([SIM, "--port", "0", "--cert", "/nonexistent", "--key", "/nonexistent"],
                           capture_output=True, timeout=20)
        check(r.returncode == 1, "missing cert exit %d" % r.returncode)

    def test_rate_limit_answers_429_beyond_n_per_second(self):
        sim = Sim(self.tmp, self.certs, extra=["--rate-limit", "5"])
        try:
            c = sim.conn()
            answers = [sim.delete("files", "file_rate_%d" % i, conn=c) for i in range(8)]
            statuses = [a[0] for a in answers]
            check(statuses.count(200) >= 5 and statuses.count(429) >= 2,
                  "burst of 8 against 5/s: %r" % statuses)
            limited = [a for a in answers if a[0] == 429]
            if limited:
                st, h, body = limited[0]
                check(h.get("retry-after") == "1" and "x-ratelimit-reset" in h, "429 headers %r" % h)
                check(is_extend_error(body, "RATE_LIMIT_EXCEEDED", True,
                                      h.get("x-extend-request-id")), "429 body %r" % body)
            time.sleep(1.1)
            st, _, _ = sim.delete("files", "file_rate_after", conn=c)
            check(st == 200, "after a second the bucket refills: %d" % st)
            c.close()
        finally:
            rc, err = sim.stop()
        check(rc == 0, "rate-limited sim exit %d %s" % (rc, err))


if __name__ == "__main__":
    if not os.access(SIM, os.X_OK):
        raise SystemExit("extend-sim not found at %s" % SIM)
    harness.main()
