"""The dispatcher end to end: real DELETEs over TLS to the simulator, with
every outcome, retry rule, limit and stop path of the design."""
import json
import os
import signal
import time

import harness as h


def queue_run(g, run_id):
    r = g.webhook(h.extract_event(run_id))
    assert r.status == 200, r
    return r.json()["deletions"][0]["id"]


def queue_file(g, file_id):
    r = g.erasure({"resource": "file", "id": file_id})
    assert r.status == 202, r
    return r.json()["deletions"][0]["id"]


def iso_ms(s):
    import datetime
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000)


class DispatchTest(h.GatewayTestCase):
    """Each outcome, retry rule, limit and stop path of the dispatcher."""

    def test_delete_carries_exactly_the_right_request(self):
        sim = self.sim()
        g = self.gateway(sim, overrides={"extend": {"workspace_id": "ws_e2e"}})
        did = queue_run(g, "exr_hdr1")
        v = g.wait_state(did, "deleted")
        reqs = sim.deletes()
        assert len(reqs) == 1, reqs
        r = reqs[0]
        assert r["method"] == "DELETE" and r["path"] == "/extract_runs/exr_hdr1", r
        hd = r["headers"]
        assert hd["authorization"] == "Bearer " + h.EXTEND_TOKEN
        assert hd["x-extend-api-version"] == "2026-02-09"
        assert hd["x-extend-workspace-id"] == "ws_e2e"
        assert hd["accept"] == "application/json"
        assert hd["user-agent"].startswith("deletion-gateway/")
        assert hd.get("content-length") in (None, "0")
        assert v["attempts"] == 1 and v["last_upstream_status"] == 200
        assert v["last_upstream_request_id"].startswith("req_"), v
        assert v["attempt_history"][0]["upstream_request_id"] == v["last_upstream_request_id"]
        # The file of a file-rule webhook goes to /files.
        did = g.webhook(h.extract_event("exr_hdr2", file_id="file_hdr2")).json()["deletions"]
        for d in did:
            g.wait_state(d["id"], "deleted")
        assert sorted(x["path"] for x in sim.deletes())[-1] == "/files/file_hdr2"

    def test_404_means_already_gone(self):
        sim = self.sim()
        g = self.gateway(sim)
        v = g.wait_state(queue_file(g, "missing_file1"), "not_found")
        assert v["last_upstream_status"] == 404 and v["attempts"] == 1

    def test_400_and_422_are_rejected_with_extends_code(self):
        sim = self.sim()
        sim.faults([{"match": "rej422", "status": 422, "count": -1, "code": "INVALID_REQUEST"},
                    {"match": "rej400", "status": 400, "count": -1}])
        g = self.gateway(sim)
        a = g.wait_state(queue_file(g, "file_rej422"), "rejected")
        b = g.wait_state(queue_file(g, "file_rej400"), "rejected")
        assert a["last_error"] == "INVALID_REQUEST" and a["last_upstream_status"] == 422, a
        assert b["last_upstream_status"] == 400, b
        time.sleep(0.5)
        assert len(sim.deletes()) == 2  # no retries

    def test_500s_and_dropped_connections_are_retried(self):
        sim = self.sim()
        sim.faults([{"match": "flaky", "status": 500, "count": 2},
                    {"match": "dropper", "action": "drop", "count": 1}])
        g = self.gateway(sim)
        a = g.wait_state(queue_file(g, "file_flaky"), "deleted")
        b = g.wait_state(queue_file(g, "file_dropper"), "deleted")
        assert a["attempts"] == 3, a
        statuses = [x["upstream_status"] for x in a["attempt_history"]]
        assert sorted(statuses, key=lambda s: s or 0) == [200, 500, 500], statuses
        # The dropped answer was either an attempt of ours or, on a reused
        # connection, retried at once by libcurl: the simulator saw it twice.
        dropper = [r for r in sim.deletes() if r["path"] == "/files/file_dropper"]
        assert len(dropper) == 2 and b["attempts"] in (1, 2), (dropper, b)

    def test_429_waits_for_retry_after_and_keeps_the_budget(self):
        sim = self.sim()
        sim.faults([{"match": "limited", "status": 429, "count": 1, "retry_after": "2",
                     "code": "RATE_LIMIT_EXCEEDED"}])
        g = self.gateway(sim)
        v = g.wait_state(queue_file(g, "file_limited"), "deleted", timeout=20)
        times = [r["time_ms"] for r in sim.deletes()]
        assert len(times) == 2, times
        assert times[1] - times[0] >= 1900, times
        assert v["attempts"] == 1, v  # the 429 did not count

    def test_429_with_retry_after_0_holds_at_least_a_second_and_grows(self):
        sim = self.sim()
        sim.faults([{"status": 429, "retry_after": "0", "count": 3, "code": "RATE_LIMIT_EXCEEDED"}])
        g = self.gateway(sim, overrides={"retry": {"initial_ms": 100, "max_ms": 8000}})
        v = g.wait_state(queue_file(g, "file_rl0"), "deleted", timeout=20)
        times = [r["time_ms"] for r in sim.deletes()]
        assert [r["status"] for r in sim.deletes()] == [429, 429, 429, 200], sim.deletes()
        gaps = [b - a for a, b in zip(times, times[1:])]
        # 1 s floor, then doubling: 1, 2, 4 s (not initial_ms, not 0).
        for i, want in enumerate((1000, 2000, 4000)):
            assert want - 50 <= gaps[i] < want + 1500, gaps
        assert v["attempts"] == 1, v  # 429s still do not count
        # A success ends the row: the next 429 holds for the floor again.
        sim.faults([{"status": 429, "retry_after": "0", "count": 1}])
        g.wait_state(queue_file(g, "file_rl1"), "deleted", timeout=10)
        t = [r["time_ms"] for r in sim.deletes() if r["path"] == "/files/file_rl1"]
        assert len(t) == 2 and 950 <= t[1] - t[0] < 2000, t

    def test_429s_of_requests_out_together_are_one_step_of_the_hold(self):
        sim = self.sim()
        sim.faults([{"status": 429, "count": 4}])  # no hint at all
        g = self.gateway(sim, overrides={"extend": {"max_in_flight": 4},
                                         "retry": {"initial_ms": 100, "max_ms": 8000}})
        g.admin("POST", "/admin/pause")
        ids = [queue_file(g, "file_rlb%d" % i) for i in range(4)]
        g.admin("POST", "/admin/resume")
        for d in ids:
            g.wait_state(d, "deleted", timeout=20)
        reqs = sim.deletes()
        limited = [r["time_ms"] for r in reqs if r["status"] == 429]
        ok = [r["time_ms"] for r in reqs if r["status"] == 200]
        assert len(limited) == 4 and len(ok) == 4, reqs
        # Four answers to one burst hold for 1 s, not 1+2+4+8.
        assert 950 <= min(ok) - max(limited) < 2500, (limited, ok)

    def test_outage_holds_sending_and_the_backlog_drains_at_the_rate_once_extend_is_back(self):
        n, rate = 50, 25
        sim = self.sim()
        port = sim.port
        g = self.gateway(sim, overrides={"extend": {"rate_per_second": rate, "max_in_flight": 4,
                                                    "connect_timeout_ms": 1000},
                                         "retry": {"initial_ms": 4000, "max_ms": 60000}})
        g.admin("POST", "/admin/pause")
        r = g.erasure({"items": [{"resource": "file", "id": "file_out%d" % i} for i in range(n)]})
        assert r.status == 202, r
        ids = [x["id"] for x in r.json()["deletions"]]
        sim.stop()  # connections refused from now on
        g.admin("POST", "/admin/resume")
        h.wait_for(lambda: h.request(g.port, "GET", "/readyz").json()["upstream_connection"] == "unreachable",
                   10, what="readyz to report Extend unreachable")
        ready = h.request(g.port, "GET", "/readyz")
        metrics = h.request(g.port, "GET", "/metrics").body.decode()
        queue = g.queue()
        time.sleep(8)  # the outage: its length is the point, nothing to poll for
        metrics_late = h.request(g.port, "GET", "/metrics").body.decode()
        sim = self.sim(port=port)  # Extend is back
        for d in ids:
            g.wait_state(d, "deleted", timeout=30)
        times = sorted(r["time_ms"] for r in sim.deletes())
        assert len(times) == n, len(times)
        # From the first DELETE that got through (the probe), the rest go at
        # the configured rate, not when each job's own backoff ends.
        print("drain %d ms after the first DELETE got through" % (times[-1] - times[0]))
        assert times[-1] - times[0] <= (n - 1) * 1000 / rate + 2500, (times[0], times[-1])
        # While it was unreachable: held, probed one at a time, not a retry storm.
        tries = int(float([l for l in metrics_late.splitlines()
                           if l.startswith('dg_upstream_attempts_total{outcome="transient"}')][0].split()[-1]))
        print("%d transient attempts during the outage" % tries)
        assert tries <= 4 + 12, tries
        # Reported beside the credentials breaker, which stays closed; the
        # gateway stays ready: it keeps accepting and queueing.
        assert ready.status == 200, ready
        assert ready.json()["upstream_credentials"] == "ok", ready
        assert "dg_upstream_unreachable 1" in metrics and "dg_breaker_open 0" in metrics, metrics
        assert queue["upstream_unreachable"] is True and queue["breaker_open"] is False, queue
        assert h.request(g.port, "GET", "/readyz").json()["upstream_connection"] == "ok"
        assert "dg_upstream_unreachable 0" in h.request(g.port, "GET", "/metrics").body.decode()

    def test_outage_longer_than_give_up_makes_jobs_dead(self):
        sim = self.sim()
        sim.stop()
        g = self.gateway(sim, overrides={"retry": {"give_up_after_seconds": 2, "initial_ms": 1000,
                                                   "max_ms": 60000}})
        r = g.erasure({"items": [{"resource": "file", "id": "file_gone%d" % i} for i in range(60)]})
        assert r.status == 202, r
        for x in r.json()["deletions"]:
            g.wait_state(x["id"], "dead", timeout=20)
        # Most were never sent (only probes are, while it is unreachable); the
        # audit trail still says why each one was given up.
        with open(os.path.join(self.dir, "audit.jsonl")) as f:
            dead = [rec for rec in map(json.loads, f) if rec["event"] == "dead"]
        assert len(dead) == 60, len(dead)
        for rec in dead:
            assert rec["error_code"] == "connect_failed" and rec["detail"].startswith("gave up after 2 s"), rec

    def test_401_opens_the_breaker_holds_every_job_and_closes_by_itself(self):
        sim = self.sim()
        sim.faults([{"status": 401, "count": -1, "code": "UNAUTHORIZED"}])
        g = self.gateway(sim)
        ids = [queue_file(g, "file_brk%d" % i) for i in range(5)]
        h.wait_for(lambda: h.request(g.port, "GET", "/readyz").status == 503, 10, what="readyz 503")
        ready = h.request(g.port, "GET", "/readyz").json()
        assert ready["upstream_credentials"] == "rejected", ready
        metrics = h.request(g.port, "GET", "/metrics").body.decode()
        assert "dg_breaker_open 1" in metrics
        time.sleep(1.5)
        for d in ids:
            assert g.show(d)["state"] in ("queued", "in_flight"), g.show(d)
        # Probes are spaced, not a storm: few requests while it was open.
        assert len(sim.deletes()) < 15, len(sim.deletes())
        sim.reset()
        for d in ids:
            g.wait_state(d, "deleted", timeout=15)
        assert h.request(g.port, "GET", "/readyz").status == 200

    def test_rate_limit_spaces_requests(self):
        sim = self.sim()
        g = self.gateway(sim, overrides={"extend": {"rate_per_second": 5, "max_in_flight": 4}})
        g.admin("POST", "/admin/pause")
        ids = [queue_file(g, "file_rate%d" % i) for i in range(10)]
        g.admin("POST", "/admin/resume")
        for d in ids:
            g.wait_state(d, "deleted", timeout=20)
        # When the gateway sent each DELETE (the simulator's arrival times also
        # carry the first connection's TLS handshake).
        sent = sorted(iso_ms(g.show(d)["attempt_history"][0]["started_at"]) for d in ids)
        assert sent[-1] - sent[0] >= 1800 - 20, sent  # 10 requests at 5/s: 9 gaps of 200 ms
        for i in range(len(sent)):
            in_window = [t for t in sent if sent[i] <= t < sent[i] + 1000]
            assert len(in_window) <= 5, (i, sent)
        assert len(sim.deletes()) == 10

    def test_max_in_flight_is_never_exceeded(self):
        sim = self.sim()
        sim.faults([{"delay_ms": 300, "count": -1}])
        g = self.gateway(sim, overrides={"extend": {"max_in_flight": 2}})
        g.admin("POST", "/admin/pause")
        ids = [queue_file(g, "file_mif%d" % i) for i in range(8)]
        g.admin("POST", "/admin/resume")
        for d in ids:
            g.wait_state(d, "deleted", timeout=20)
        assert sim.stats()["max_concurrent"] <= 2, sim.stats()

    def test_pause_hands_claimed_jobs_back_so_no_lease_can_lapse_in_hand(self):
        sim = self.sim()
        sim.faults([{"delay_ms": 600, "count": -1}])
        g = self.gateway(sim, overrides={"extend": {"max_in_flight": 2}})
        g.admin("POST", "/admin/pause")
        ids = [queue_file(g, "file_hand%d" % i) for i in range(8)]
        g.admin("POST", "/admin/resume")
        h.wait_for(lambda: len(sim.deletes()) >= 2, 10, what="two DELETEs out")
        g.admin("POST", "/admin/pause")
        time.sleep(1.5)  # the two out come back; the ones in hand must be queued again
        states = [g.show(d)["state"] for d in ids]
        assert "in_flight" not in states, states
        assert states.count("queued") >= 4, states
        g.admin("POST", "/admin/resume")
        for d in ids:
            g.wait_state(d, "deleted", timeout=20)
        paths = [r["path"] for r in sim.deletes()]
        assert len(paths) == len(set(paths)) == 8, paths  # each sent once

    def test_kill_9_with_requests_in_flight_then_restart_deletes_everything(self):
        sim = self.sim()
        sim.faults([{"delay_ms": 3000, "count": -1}])
        g = self.gateway(sim, overrides={"extend": {"max_in_flight": 4}})
        ids = [queue_file(g, "file_k9_%d" % i) for i in range(10)]
        h.wait_for(lambda: sim.stats()["in_flight"] >= 3 if "in_flight" in sim.stats() else len(sim.deletes()) >= 3,
                   10, what="DELETEs in flight")
        g.kill9()
        sim.reset()
        g.start()
        for d in ids:
            g.wait_state(d, ("deleted", "not_found"), timeout=20)
        got = {r["path"] for r in sim.deletes()}
        assert got == {"/files/file_k9_%d" % i for i in range(10)}, got

    def test_sigterm_drains_in_flight_and_exits_0(self):
        sim = self.sim()
        sim.faults([{"delay_ms": 700, "count": -1}])
        g = self.gateway(sim, overrides={"extend": {"max_in_flight": 2}})
        ids = [queue_file(g, "file_term%d" % i) for i in range(6)]
        h.wait_for(lambda: len(sim.deletes()) >= 1, 10, what="a DELETE in flight")
        t0 = time.monotonic()
        rc = g.stop(signal.SIGTERM)
        assert rc == 0, rc
        assert time.monotonic() - t0 < 9
        g.start()
        sim.reset()
        for d in ids:
            g.wait_state(d, ("deleted", "not_found"), timeout=20)

    def test_dry_run_sends_nothing(self):
        sim = self.sim()
        g = self.gateway(sim, overrides={"extend": {"dry_run": True}})
        v = g.wait_state(queue_file(g, "file_dry"), "cancelled")
        assert v["last_error"] == "dry_run", v
        assert sim.deletes() == []

    def test_give_up_after_deadline_is_dead_and_operator_can_retry(self):
        sim = self.sim()
        sim.faults([{"match": "doomed", "status": 503, "count": -1}])
        g = self.gateway(sim, overrides={"retry": {"give_up_after_seconds": 1, "initial_ms": 100, "max_ms": 300}})
        did = queue_file(g, "file_doomed")
        v = g.wait_state(did, "dead", timeout=15)
        assert v["attempts"] >= 2 and "gave up" in (v["attempt_history"][0]["detail"] or ""), v
        sim.reset()
        g.ctl("retry", did)
        g.wait_state(did, "deleted")

    def test_untrusted_certificate_is_never_accepted(self):
        sim = self.sim()
        g = self.gateway(sim, overrides={"extend": {"ca_file": None}})
        did = queue_file(g, "file_tls")
        v = h.wait_for(lambda: (lambda x: x if x["attempts"] >= 1 else None)(g.show(did)), 10, what="an attempt")
        assert v["state"] in ("queued", "in_flight") and v["attempt_history"][0]["error"] == "tls_failed", v
        assert sim.deletes() == []

    def test_server_closing_idle_keepalives_costs_no_retry(self):
        # The simulator's idle limit also bounds a handshake and a request, so it
        # must leave room for a slow (sanitizer) build; the pause outlasts it.
        sim = self.sim(extra=["--idle-close-ms", "1000"])
        g = self.gateway(sim)
        a = g.wait_state(queue_file(g, "file_idle1"), "deleted")
        time.sleep(2.0)
        b = g.wait_state(queue_file(g, "file_idle2"), "deleted")
        assert a["attempts"] == 1 and b["attempts"] == 1, (a, b)
        assert sim.stats()["connections_opened"] >= 2  # the first connection really was closed


if __name__ == "__main__":
    h.main()
