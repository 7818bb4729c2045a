"""Several gateway replicas on one PostgreSQL queue, end to end: the real
binary, the simulator, a real PostgreSQL server (DG_PG_URL, a conninfo
string; ctest starts one with scripts/pg-test.sh). Each test has a
database of its own."""
import json
import os
import subprocess
import threading
import time

import harness as h

PG_URL = os.environ.get("DG_PG_URL")
PG_DIR = os.environ.get("DG_PG_DIR")  # for restarting the server
PSQL = "/usr/lib/postgresql/15/bin/psql"


def fresh_db(name):
    """An empty database for one test; returns its conninfo."""
    db = "dg_" + name[:40]
    for sql in ("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db, "CREATE DATABASE %s" % db):
        subprocess.run([PSQL, PG_URL, "-qc", sql], check=True, capture_output=True)
    return "%s dbname=%s" % (PG_URL.replace("dbname=dg", ""), db)


def replicas(test, sim, url, n, overrides=None):
    gws = []
    for i in range(n):
        d = os.path.join(test.dir, "r%d" % i)
        os.mkdir(d)
        over = {"queue": {"backend": "postgres", "url": url, "replica_id": "r%d" % i,
                          "lease_slack_seconds": 2},
                "extend": {"timeout_ms": 2000, "connect_timeout_ms": 1000}}
        h.deep_merge(over, overrides or {})
        g = h.Gateway(d, sim, overrides=over)
        test.procs.append(g)
        gws.append(g)
    return gws


def erase_on(g, rid, msg_id=None):
    r = g.erasure({"resource": "file", "id": rid, "reason": "replicas"}, msg_id=msg_id)
    return r


def metric_value(g, name):
    for line in h.request(g.port, "GET", "/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


def windows_ok(times_ms, rate):
    """No one-second window holds more than rate DELETEs."""
    t = sorted(times_ms)
    j = 0
    worst = 0
    for i in range(len(t)):
        while t[i] - t[j] >= 1000:
            j += 1
        worst = max(worst, i - j + 1)
    return worst <= rate, worst


def iso_ms(s):
    import datetime
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000)


class ReplicasTest(h.GatewayTestCase):
    """Replicas sharing one PostgreSQL queue."""

    def test_three_replicas_share_the_queue_and_the_accounts_limits(self):
        url = fresh_db("share")
        sim = self.sim()
        # Each slot is held for the 100 ms a grant waits, the DELETE and the
        # commit of its answer: 6 slots leave the rate, not the cap, to
        # set the pace (docs/replicas.md).
        rate, in_flight = 20, 6
        gws = replicas(self, sim, url, 3, {"extend": {"rate_per_second": rate, "max_in_flight": in_flight}})
        # Warm up: every replica's connection to Extend is made before the
        # measured run, so a TLS handshake does not delay one arrival.
        for i, g in enumerate(gws):
            assert erase_on(g, "file_warm_%d" % i).status == 202
        h.wait_for(lambda: len(sim.deletes()) >= 3, 20, what="the warm-up DELETEs")
        time.sleep(1.2)  # out of the warm-up's window
        warm = len(sim.deletes())
        for g in gws:
            assert g.admin("POST", "/admin/pause").status == 200
        n = 120
        ids = []
        for i in range(n):
            r = erase_on(gws[i % 3], "file_share_%03d" % i)
            assert r.status == 202, r
            ids.append(r.json()["deletions"][0]["id"])
        # A webhook to each replica, coalesced with nothing.
        for i, g in enumerate(gws):
            r = g.webhook(h.extract_event("exr_share_%d" % i))
            assert r.status == 200, r
            ids += [d["id"] for d in r.json()["deletions"]]
        t0 = time.monotonic()
        for g in gws:
            assert g.admin("POST", "/admin/resume").status == 200
        h.wait_for(lambda: len(sim.deletes()) >= warm + len(ids), 60, 0.2, what="every DELETE")
        took = time.monotonic() - t0
        seen = sim.deletes()[warm:]
        _, arrived_worst = windows_ok([d["time_ms"] for d in seen], rate)
        # When each replica sent each DELETE, by its own record.
        views = [gws[0].show(d) for d in ids]
        _, sent_worst = windows_ok([iso_ms(v["attempt_history"][0]["started_at"]) for v in views], rate)
        # What the limiter granted, by the moments it granted them for (the
        # last minute of grants stays in its row).
        grants = subprocess.run([PSQL, url, "-Atc", "SELECT unnest(grants) FROM dg_limiter"],
                                check=True, capture_output=True, text=True).stdout.split()
        granted_ok, granted_worst = windows_ok([int(x) for x in grants], rate)
        print("  %d DELETEs in %.1f s (%.1f/s, configured %d/s); busiest second: %d granted, %d sent,"
              " %d arrived; max in flight %d" % (len(seen), took, len(seen) / took, rate, granted_worst,
                                                 sent_worst, arrived_worst,
                                                 sim.stats()["max_concurrent"]))
        assert granted_ok, "the limiter granted %d DELETEs in one second, above %d" % (granted_worst,
                                                                                       rate)
        # A replica sends a grant 100 ms after the claim, so its own commit
        # never delays it; only a process stalled longer than that (a loaded
        # machine) lets a DELETE slip into the next second, and then it says
        # so (dg_upstream_sent_late_total).
        late = sum(metric_value(g, "dg_upstream_sent_late_total") for g in gws)
        print("  DELETEs that went out late (stalled process): %d" % late)
        if sent_worst > rate or arrived_worst > rate:
            assert late > 0, "%d sent / %d arrived in one second, above %d, none of them late" % (
                sent_worst, arrived_worst, rate)
        # Close to the rate, not far below it: a limiter that lost a quarter
        # of it would be broken (bench/replicas.sh measures it closely; the
        # margin is for a loaded machine).
        assert len(seen) / took >= 0.75 * rate, "drained at %.1f/s" % (len(seen) / took)
        assert sim.stats()["max_concurrent"] <= in_flight, sim.stats()
        assert len({d["id"] for d in seen}) == len(ids), "a resource was deleted twice or not at all"
        assert {v["state"] for v in views} == {"deleted"}, views
        # Every replica sees every deletion, and each sent some: its own audit
        # chain holds the outcomes it recorded.
        for g in gws:
            for d in ids[:10]:
                assert g.admin("GET", "/admin/deletions/" + d).status == 200
        for g in gws:
            g.stop()
            with open(os.path.join(g.workdir, "audit.jsonl")) as f:
                done = sum(1 for line in f if json.loads(line)["event"] == "deleted")
            print("  replica %s recorded %d outcomes" % (os.path.basename(g.workdir), done))
            assert done > 0, "a replica did no work"
            r = h.run_cli("audit", "verify", "-c", g.config_path, env=g.env)
            assert r.returncode == 0, r.stdout + r.stderr

    def test_two_accounts_keep_a_limiter_row_each_across_replicas(self):
        url = fresh_db("accounts")
        eu, us = self.sim(token="sk_e2e_eu_token"), self.sim(token="sk_e2e_us_token")
        rates = {"eu": 5, "us": 10}
        env = {"EU_TOKEN": "sk_e2e_eu_token", "US_TOKEN": "sk_e2e_us_token"}
        accounts = [{"id": aid, "base_url": sim.url, "ca_file": os.path.join(h.certs(), "ca.pem"),
                     "token": "env:%s_TOKEN" % aid.upper(), "timeout_ms": 2000,
                     "connect_timeout_ms": 1000, "rate_per_second": rates[aid], "max_in_flight": 3,
                     "signing_secrets": ["env:EXTEND_WEBHOOK_SECRET"]}
                    for aid, sim in (("eu", eu), ("us", us))]
        gws = []
        for i in range(2):
            d = os.path.join(self.dir, "r%d" % i)
            os.mkdir(d)
            g = h.Gateway(d, None, drop=("extend", "webhooks.signing_secrets"), env=env, overrides={
                "queue": {"backend": "postgres", "url": url, "replica_id": "r%d" % i,
                          "lease_slack_seconds": 2},
                "accounts": accounts})
            self.procs.append(g)
            gws.append(g)
        rows = subprocess.run([PSQL, url, "-Atc", "SELECT account FROM dg_limiter ORDER BY 1"],
                              check=True, capture_output=True, text=True).stdout.split()
        assert rows == ["default", "eu", "us"], rows
        for g in gws:
            assert g.admin("POST", "/admin/pause").status == 200
        ids = {"eu": [], "us": []}
        for i in range(30):
            for aid in ("eu", "us"):
                if aid == "eu" and i >= 15:
                    continue
                r = gws[i % 2].erasure({"resource": "file", "id": "file_%s%02d" % (aid, i),
                                        "account": aid})
                assert r.status == 202, r
                ids[aid].append(r.json()["deletions"][0]["id"])
        for g in gws:
            assert g.admin("POST", "/admin/resume").status == 200
        h.wait_for(lambda: len(eu.deletes()) >= 15 and len(us.deletes()) >= 30, 30, 0.2,
                   what="every DELETE")
        for aid, sim in (("eu", eu), ("us", us)):
            seen = sim.deletes()
            assert {d["id"] for d in seen} == {"file_%s%02d" % (aid, i) for i in range(len(seen))}, seen
            assert all(d["headers"]["authorization"] == "Bearer " + env[aid.upper() + "_TOKEN"]
                       for d in seen)
            grants = subprocess.run([PSQL, url, "-Atc", "SELECT unnest(grants) FROM dg_limiter"
                                     " WHERE account = '%s'" % aid],
                                    check=True, capture_output=True, text=True).stdout.split()
            assert len(grants) >= len(seen), (aid, grants)
            ok, worst = windows_ok([int(x) for x in grants], rates[aid])
            assert ok, "account %s: %d granted in one second, above %d" % (aid, worst, rates[aid])
        for d in ids["us"][:3]:
            assert gws[0].show(d)["account"] == "us"
        # One account paused through one replica holds that account on the
        # other as well, and only that account.
        assert gws[0].admin("POST", "/admin/pause?account=eu").status == 200
        held = gws[1].erasure({"resource": "file", "id": "file_eu_held", "account": "eu"})
        sent = gws[1].erasure({"resource": "file", "id": "file_us_sent", "account": "us"})
        assert held.status == 202 and sent.status == 202, (held, sent)
        h.wait_for(lambda: any(d["id"] == "file_us_sent" for d in us.deletes()), 10,
                   what="the other account's DELETE")
        time.sleep(1.5)  # the poll that would have claimed it has come round
        assert not any(d["id"] == "file_eu_held" for d in eu.deletes()), eu.deletes()[-3:]

        def eu_dispatch(g):
            return h.request(g.port, "GET", "/readyz").json()["accounts"]["eu"]["dispatch"]
        h.wait_for(lambda: eu_dispatch(gws[1]) == "paused", 5, 0.2,
                   what="the other replica seeing the pause")
        assert eu_dispatch(gws[0]) == "paused" and \
            h.request(gws[1].port, "GET", "/readyz").json()["accounts"]["us"]["dispatch"] == "running"
        # Resumed through the other replica: both send again, neither is
        # left holding the pause it was given.
        assert gws[1].admin("POST", "/admin/resume?account=eu").status == 200
        h.wait_for(lambda: any(d["id"] == "file_eu_held" for d in eu.deletes()), 10,
                   what="the paused account's DELETE after its resume")
        h.wait_for(lambda: eu_dispatch(gws[0]) == "running", 5, 0.2,
                   what="the replica that paused it seeing the resume")
        for i, g in enumerate(gws):
            assert g.erasure({"resource": "file", "id": "file_eu_after%d" % i,
                              "account": "eu"}).status == 202
        h.wait_for(lambda: {"file_eu_after0", "file_eu_after1"} <= {d["id"] for d in eu.deletes()},
                   10, what="DELETEs of the resumed account from both replicas")

    def test_a_429_or_401_seen_by_one_replica_holds_them_all(self):
        url = fresh_db("hold")
        sim = self.sim()
        gws = replicas(self, sim, url, 2, {"extend": {"rate_per_second": 0, "max_in_flight": 1},
                                           "retry": {"initial_ms": 100, "max_ms": 2000}})
        sim.faults([{"match": "file_hold_0", "status": 429, "count": 1, "retry_after": "3"}])
        r = erase_on(gws[0], "file_hold_0")
        assert r.status == 202, r
        h.wait_for(lambda: any(d["status"] == 429 for d in sim.deletes()), 10, what="the 429")
        t429 = time.time()
        r = erase_on(gws[1], "file_hold_1")
        assert r.status == 202, r
        h.wait_for(lambda: len([d for d in sim.deletes() if d["status"] == 200]) >= 2, 20, 0.1,
                   what="both deleted after the hold")
        first_after = min(d["time_ms"] for d in sim.deletes() if d["status"] == 200) / 1000.0
        print("  first DELETE after the 429, on either replica: %.2f s later" % (first_after - t429))
        assert first_after - t429 >= 2.5, "a replica sent during another's 429 hold"

        # 401: the breaker opens for all; one probe at a time, from one replica.
        sim.faults([{"match": "file_cred_", "status": 401, "count": 3}])
        for i in range(4):
            assert erase_on(gws[i % 2], "file_cred_%d" % i).status == 202
        h.wait_for(lambda: len([d for d in sim.deletes() if d["status"] == 401]) >= 3, 30, 0.1,
                   what="three 401s")
        h.wait_for(lambda: len([d for d in sim.deletes() if d["id"].startswith("file_cred_")
                                and d["status"] == 200]) == 4, 30, 0.1, what="all deleted once it passes")
        cred = sorted(d["time_ms"] for d in sim.deletes() if d["id"].startswith("file_cred_"))
        # After the first 401, the two 401s that follow are probes: spaced, not bursts.
        gaps = [b - a for a, b in zip(cred, cred[1:])][:2]
        print("  gaps between the first tries after the 401: %s ms" % gaps)
        assert all(g >= 500 for g in gaps), gaps

    def test_kill_9_of_a_replica_and_a_database_restart_lose_nothing(self):
        url = fresh_db("kill")
        sim = self.sim()
        gws = replicas(self, sim, url, 3, {"extend": {"rate_per_second": 50, "max_in_flight": 4}})
        acked, lock = [], threading.Lock()
        stop = threading.Event()
        alive = list(gws)

        def sender(k):
            i = 0
            while not stop.is_set():
                g = alive[(k + i) % len(alive)]
                msg = "msg_kill_%d_%d" % (k, i)
                rid = "file_kill_%d_%d" % (k, i)
                for _ in range(50):  # as Extend does: again until a 2xx
                    try:
                        r = erase_on(g, rid, msg_id=msg)
                        if r.status == 202:
                            with lock:
                                acked.append(r.json()["deletions"][0]["id"])
                            break
                    except OSError:
                        pass
                    g = alive[(k + i + 1) % len(alive)]
                    time.sleep(0.1)
                i += 1
                time.sleep(0.01)

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(2)
        killed = gws[2]
        alive.remove(killed)
        killed.kill9()
        gws = alive
        time.sleep(1)
        if PG_DIR:
            subprocess.run([os.path.join(h.SRC, "scripts", "pg-test.sh"), "restart", PG_DIR], check=True)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(60)
        print("  acknowledged %d while one replica was killed and PostgreSQL restarted" % len(acked))
        assert len(acked) > 50, len(acked)
        # The killed replica's leases end after timeout + connect + slack; then the others take its jobs.
        h.wait_for(lambda: len({d["id"] for d in sim.deletes() if d["status"] == 200}) >=
                   len(set(acked)), 60, 0.5, what="every acknowledged deletion deleted")
        for d in acked:
            v = gws[0].show(d)
            assert v["state"] in ("deleted", "not_found"), v
        for g in gws:
            g.stop()
            r = h.run_cli("audit", "verify", "-c", g.config_path, env=g.env)
            assert r.returncode == 0, r.stdout + r.stderr
        r = h.run_cli("audit", "verify", "-c", killed.config_path, env=killed.env)
        assert r.returncode == 0, r.stdout + r.stderr

    def test_database_down_answers_503_and_recovers_by_itself(self):
        if not PG_DIR:
            self.skipTest("no DG_PG_DIR to stop the server")
        url = fresh_db("down")
        g = replicas(self, None, url, 1)[0]
        assert erase_on(g, "file_down_0").status == 202
        pgt = os.path.join(h.SRC, "scripts", "pg-test.sh")
        subprocess.run([pgt, "stop", PG_DIR], check=True)
        try:
            t0 = time.monotonic()
            r = erase_on(g, "file_down_1")
            took = time.monotonic() - t0
            print("  answer while PostgreSQL is down: %d in %.2f s" % (r.status, took))
            assert r.status == 503 and r.json()["error"]["code"] == "queue_unavailable", r
            assert took < 5, took
            assert h.request(g.port, "GET", "/readyz").status == 503
        finally:
            subprocess.run([pgt, "start", PG_DIR, os.environ.get("DG_PG_PORT", "55432")], check=True)
        h.wait_for(lambda: erase_on(g, "file_down_%d" % time.monotonic_ns()).status == 202, 20, 0.5,
                   what="ingest back without a restart")
        h.wait_for(lambda: h.request(g.port, "GET", "/readyz").status == 200, 10, what="/readyz 200")

    def test_a_replica_without_a_signing_key_makes_one_beside_queue_path(self):
        # A replica keeps no queue file, so nothing else makes that
        # directory: the key's creation does (and the start says where).
        url = fresh_db("key")
        sim = self.sim()
        state = os.path.join(self.dir, "state", "deeper")
        g = replicas(self, sim, url, 1, {"queue": {"path": os.path.join(state, "queue.db")},
                                          "receipts": {"signing_key": None}})[0]
        key = os.path.join(state, "receipt-key.pem")
        assert os.stat(key).st_mode & 0o777 == 0o600, oct(os.stat(key).st_mode)
        logs = g.logs()
        assert "receipts: signing with key id" in logs and "generated " + key in logs, logs
        assert "started: queue postgres " in logs, logs
        r = erase_on(g, "file_key_0")
        assert r.status == 202, r
        did = r.json()["deletions"][0]["id"]
        g.wait_state(did, {"deleted"})
        receipt = g.get_deletion(did, suffix="/receipt")
        assert receipt.status == 200, receipt
        key_id = receipt.json()["key_id"]
        assert "signing with key id %s" % key_id in logs, (key_id, logs)
        # The next start uses the same key.
        g.restart()
        assert g.logs().count("signing with key id %s (from %s)" % (key_id, key)) == 1, g.logs()


if __name__ == "__main__":
    if not PG_URL:
        raise SystemExit("test_replicas: DG_PG_URL is not set (ctest sets it)")
    h.main()
