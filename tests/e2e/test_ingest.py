"""Ingest end to end: signed webhooks and internal erasure requests reach
the durable queue; everything else is refused with a stable JSON error
and queues nothing; duplicates, restarts and kill -9 lose nothing."""
import json
import os
import socket
import subprocess
import threading
import time

import harness as h


def pending(g):
    q = g.queue()
    return q["deletions"]["queued"] + q["deletions"]["in_flight"]


def total(g):
    return sum(g.queue()["deletions"].values())


def paused_gateway(test, **kw):
    """A gateway whose dispatcher is paused, so queued rows stay put."""
    g = test.gateway(**kw)
    assert g.admin("POST", "/admin/pause").status == 200
    return g


raw_request = h.raw_request


class IngestTest(h.GatewayTestCase):
    """Signed requests queued; everything else refused and queued nowhere."""

    def test_signed_webhook_is_queued_with_run_and_file(self):
        g = paused_gateway(self)
        body = h.extract_event("exr_ingest1", "evt_ingest1", file_id="file_ingest1")
        r = g.webhook(body)
        assert r.status == 200, r
        out = r.json()
        assert out["status"] == "accepted" and out["event_id"] == "evt_ingest1", out
        kinds = sorted((d["resource"], d["resource_id"]) for d in out["deletions"])
        assert kinds == [("extract_run", "exr_ingest1"), ("file", "file_ingest1")], kinds
        assert r.headers["x-request-id"].startswith("req_")
        v = g.show(out["deletions"][0]["id"])
        assert v["state"] == "queued" and v["requested_by"]["event_id"] == "evt_ingest1", v

    def test_signed_data_url_and_failed_event(self):
        g = paused_gateway(self)
        body = json.dumps({"eventId": "evt_sdu", "eventType": "extract_run.processed",
                           "payload": {"object": "signed_data_url", "id": "exr_big", "data": "https://x/y"}}).encode()
        r = g.webhook(body)
        assert r.status == 200 and r.json()["deletions"][0]["resource_id"] == "exr_big", r
        r = g.webhook(h.extract_event("exr_failed", event_type="extract_run.failed"))
        assert r.status == 200 and len(r.json()["deletions"]) == 1, r

    def test_unknown_event_type_is_ignored_with_200(self):
        g = paused_gateway(self)
        body = json.dumps({"eventId": "evt_new", "eventType": "extractor.created", "payload": {"id": "ex_1"}}).encode()
        r = g.webhook(body)
        assert r.status == 200 and r.json()["status"] == "ignored", r
        assert total(g) == 0

    def test_tampered_stale_future_and_wrong_secret_webhooks_queue_nothing(self):
        g = paused_gateway(self)
        body = h.extract_event("exr_bad")
        hdr = h.sign_extend(body)
        cases = [
            (body.replace(b"exr_bad", b"exr_bae"), hdr, 401, "invalid_signature"),
            (body, h.sign_extend(body, secret="wss_other"), 401, "invalid_signature"),
            (body, h.sign_extend(body, ts=int(time.time()) - 301), 400, "stale_timestamp"),
            (body, h.sign_extend(body, ts=int(time.time()) + 120), 400, "future_timestamp"),
            (body, dict(hdr, **{"x-extend-request-signature": hdr["x-extend-request-signature"][:-2]}), 400, "malformed_signature"),
            (body, {"x-extend-request-timestamp": hdr["x-extend-request-timestamp"]}, 400, "missing_header"),
            (body, dict(hdr, **{"x-extend-request-timestamp": "-5"}), 400, "malformed_signature"),
        ]
        for b, hh, status, code in cases:
            r = g.webhook(b, headers=hh)
            assert r.status == status and r.json()["error"]["code"] == code, (code, r)
            assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
        # Upper-case hex is the same signature.
        up = dict(hdr, **{"x-extend-request-signature": hdr["x-extend-request-signature"].upper()})
        assert total(g) == 0
        assert g.webhook(body, headers=up).status == 200

    def test_rotated_secrets_both_accepted(self):
        g = paused_gateway(self, overrides={"webhooks": {"signing_secrets": ["env:OLD_SECRET", "env:EXTEND_WEBHOOK_SECRET"]}},
                           env={"OLD_SECRET": "wss_old_rotating_secret"})
        assert g.webhook(h.extract_event("exr_rot1"), secret="wss_old_rotating_secret").status == 200
        assert g.webhook(h.extract_event("exr_rot2")).status == 200

    def test_repeated_event_id_is_duplicate_and_survives_restart(self):
        g = paused_gateway(self)
        body = h.extract_event("exr_dup", "evt_dup")
        assert g.webhook(body).json()["status"] == "accepted"
        r = g.webhook(h.extract_event("exr_dup_other", "evt_dup"))
        assert r.status == 200 and r.json()["status"] == "duplicate", r
        g.restart()
        g.admin("POST", "/admin/pause")
        r = g.webhook(body)
        assert r.json()["status"] == "duplicate", r
        assert total(g) == 1

    def test_internal_single_and_batch_with_idempotent_replay(self):
        g = paused_gateway(self)
        r = g.erasure({"resource": "parse_run", "id": "pr_1", "reason": "gdpr #1"}, msg_id="msg_single")
        assert r.status == 202, r
        first = r.json()
        assert first["deletions"][0]["resource"] == "parse_run"
        again = g.erasure({"resource": "parse_run", "id": "pr_1", "reason": "gdpr #1"}, msg_id="msg_single")
        assert again.status == 202 and again.json() == first, again
        assert again.headers.get("idempotent-replayed") == "true"
        items = [{"resource": "file", "id": "file_%d" % i} for i in range(1000)]
        r = g.erasure({"items": items}, msg_id="msg_batch")
        assert r.status == 202 and len(r.json()["deletions"]) == 1000, r
        assert total(g) == 1001
        # The same webhook-id from another client is another request.
        r = g.erasure({"resource": "parse_run", "id": "pr_2"}, secret=h.OTHER_SECRET, msg_id="msg_single")
        assert r.status == 202 and r.json() != first
        g.restart()
        again = g.erasure({"resource": "parse_run", "id": "pr_1"}, msg_id="msg_single")
        assert again.json() == first

    def test_get_deletion_is_signed_and_shows_state(self):
        g = paused_gateway(self)
        did = g.erasure({"resource": "extract_run", "id": "exr_get", "reason": "offboarding"}).json()["deletions"][0]["id"]
        r = g.get_deletion(did)
        assert r.status == 200, r
        v = r.json()
        assert v["state"] == "queued" and v["requested_by"] == {"type": "client", "client_id": "crm", "webhook_id": v["requested_by"]["webhook_id"]}
        assert v["reason"] == "offboarding" and v["attempts"] == 0
        assert h.request(g.port, "GET", "/v1/deletions/" + did).status == 400  # unsigned
        assert g.get_deletion(did, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY").status == 401
        assert g.get_deletion("del_doesnotexist").status == 404
        assert g.get_deletion("..%2Fetc").status == 404

    def test_coalescing_two_requests_share_one_job(self):
        g = paused_gateway(self)
        a = g.erasure({"resource": "file", "id": "file_shared"}).json()["deletions"][0]["id"]
        b = g.webhook(h.extract_event("exr_x", file_id="file_shared")).json()["deletions"]
        fb = [d for d in b if d["resource"] == "file"][0]["id"]
        assert a != fb
        q = g.queue()
        assert q["deletions"]["queued"] == 3 and q["jobs_pending"] == 2, q

    def test_bad_input_gets_stable_json_errors_and_queues_nothing(self):
        g = paused_gateway(self, overrides={"limits": {"max_body_bytes": 200000}})
        ok = {"resource": "extract_run", "id": "exr_ok"}
        cases = [
            (b'{"resource": "extract_run", "id": ', 400, "malformed_json"),
            (b'{"resource": "extract_run", "id": "exr_\xff"}', 400, "malformed_json"),
            (json.dumps({"resource": "invoice", "id": "x"}).encode(), 400, "unknown_resource"),
            (json.dumps({"resource": "file", "id": "a/b"}).encode(), 400, "invalid_id"),
            (json.dumps({"resource": "file", "id": ".."}).encode(), 400, "invalid_id"),
            (json.dumps({"resource": "file", "id": "a%2Fb"}).encode(), 400, "invalid_id"),
            (json.dumps({"resource": "file", "id": "a\nb"}).encode(), 400, "invalid_id"),
            (json.dumps({"resource": "file", "id": "x" * 256}).encode(), 400, "invalid_id"),
            (json.dumps({"resource": "file", "id": ""}).encode(), 400, "invalid_id"),
            (json.dumps({"resource": "file", "id": 12}).encode(), 400, None),
            (json.dumps({"resource": "file", "id": "f", "extra": 1}).encode(), 400, "invalid_body"),
            (json.dumps({"resource": "file", "id": "f", "not_before": "tomorrow"}).encode(), 400, "invalid_not_before"),
            (json.dumps({"resource": "file", "id": "f", "not_before": "2999-01-01T00:00:00Z"}).encode(), 400, "invalid_not_before"),
            (json.dumps({"resource": "file", "id": "f", "reason": "r" * 300}).encode(), 400, "invalid_reason"),
            (json.dumps({"items": []}).encode(), 400, "empty_batch"),
            (json.dumps({"items": [ok] * 1001}).encode(), 400, "batch_too_large"),
            (json.dumps({"items": [ok, {"resource": "file", "id": "../x"}]}).encode(), 400, "invalid_id"),
            (json.dumps([ok]).encode(), 400, None),
            (b"1e999999", 400, None),
        ]
        for body, status, code in cases:
            r = g.erasure(body)
            assert r.status == status, (body[:80], r)
            err = r.json()["error"]
            assert err["code"] and err["message"] and (code is None or err["code"] == code), (body[:80], err)
        # Wrong content type, duplicated and missing headers.
        body = json.dumps(ok).encode()
        hdr = h.sign_standard(body)
        r = h.request(g.port, "POST", "/v1/deletions", body, dict(hdr, **{"Content-Type": "text/plain"}))
        assert r.status == 415 and r.json()["error"]["code"] == "unsupported_media_type", r
        r = h.request(g.port, "POST", "/v1/deletions", body, {k: v for k, v in hdr.items() if k != "webhook-id"})
        assert r.status == 400 and r.json()["error"]["code"] == "missing_header", r
        raw = (b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in hdr.items())
               + b"webhook-id: msg_second\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        resp = raw_request(g.port, raw)
        assert b" 400 " in resp.split(b"\r\n")[0] and b"duplicate_header" in resp, resp[:300]
        # Stale internal timestamp.
        r = g.erasure(ok, ts=int(time.time()) - 1000)
        assert r.status == 400 and r.json()["error"]["code"] == "stale_timestamp", r
        # Method and route.
        assert h.request(g.port, "GET", "/webhooks/extend").status == 405
        for m, path in (("POST", "/healthz"), ("POST", "/metrics"), ("PUT", "/readyz")):
            r = h.request(g.port, m, path, b"{}")
            assert r.status == 405 and r.json()["error"]["code"] == "method_not_allowed", (m, path, r)
        assert g.admin("GET", "/admin/pause").status == 405
        assert g.admin("POST", "/admin/queue").status == 405
        assert g.admin("GET", "/admin/nothing").status == 404
        for m in ("PUT", "DELETE", "PATCH"):
            r = h.request(g.port, m, "/v1/deletions", b"{}")
            assert r.status == 405 and r.json()["error"]["code"] == "method_not_allowed", (m, r)
        assert h.request(g.port, "GET", "/nope").json()["error"]["code"] == "not_found"
        # Oversized body: refused by the server's limit.
        big = json.dumps({"resource": "file", "id": "f", "reason": "x" * 300000}).encode()
        r = g.erasure(big)
        assert r.status == 413, r
        # Oversized headers.
        resp = raw_request(g.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert resp == b"" or b" 4" in resp.split(b"\r\n")[0], resp[:200]
        assert total(g) == 0
        # Still serving everyone else.
        assert g.erasure(ok).status == 202

    def test_slow_client_is_cut_off_and_others_are_served(self):
        g = paused_gateway(self, overrides={"limits": {"request_timeout_seconds": 1}})
        slow = socket.create_connection(("127.0.0.1", g.port))
        slow.sendall(b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert g.erasure({"resource": "file", "id": "f1"}).status == 202
        slow.settimeout(5)
        t0 = time.monotonic()
        data = b""
        try:
            while True:
                c = slow.recv(1000)
                if not c:
                    break
                data += c
        except OSError:
            pass
        assert time.monotonic() - t0 < 4.5, "slow client was not cut off"
        slow.close()

    def test_kill_9_right_after_2xx_loses_nothing(self):
        g = paused_gateway(self)
        accepted = []
        lock = threading.Lock()

        def sender(k):
            for i in range(40):
                rid = "exr_k%d_%d" % (k, i)
                try:
                    r = g.webhook(h.extract_event(rid, "evt_" + rid))
                except OSError:
                    return
                if r.status == 200:
                    with lock:
                        accepted.append(rid)
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        h.wait_for(lambda: len(accepted) >= 100, 20, what="100 accepted")
        g.kill9()
        for t in threads:
            t.join()
        n = len(accepted)
        g.start()
        q = g.queue()
        # Each accepted webhook holds one run deletion (no file in these events).
        assert sum(q["deletions"].values()) >= n, (n, q)
        for rid in accepted[:20] + accepted[-20:]:
            r = g.webhook(h.extract_event(rid, "evt_" + rid))
            assert r.json()["status"] == "duplicate", (rid, r)

    def test_a_queue_it_cannot_open_stops_the_start_with_the_key_named(self):
        g = paused_gateway(self)
        g.kill9()
        # A directory where the database should be: nothing can be kept there,
        # so the gateway must refuse to start rather than accept requests.
        bad = os.path.join(self.dir, "not-a-db")
        os.mkdir(bad)
        cfg = json.load(open(g.config_path))
        cfg["queue"]["path"] = bad
        json.dump(cfg, open(g.config_path, "w"))
        p = subprocess.run([h.GATEWAY_BIN, "serve", "-c", g.config_path], env=g.env,
                           capture_output=True, timeout=20)
        assert p.returncode != 0 and b"queue.path" in p.stderr, (p.returncode, p.stderr[-500:])


if __name__ == "__main__":
    h.main()
