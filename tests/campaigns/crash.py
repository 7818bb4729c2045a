#!/usr/bin/env python3
"""Crash campaign: the promise under kill -9.

Sender threads post a mix of Extend webhooks and internal erasure batches
and retry as Extend does: on any non-2xx or connection error the very same
signed request (same eventId, same webhook-id, same bytes) is sent again
after a backoff. Meanwhile the gateway is killed with SIGKILL at random
instants, some of them a few milliseconds after its start (while it opens
the audit log and the queue), and restarted on the same queue and audit
files. At the end it drains, and the simulator's request log is reconciled
with what was acknowledged: every deletion of every request that got a 2xx
was DELETEd at Extend (lost must be 0); a resource DELETEd twice is allowed
(a crash between the DELETE and the commit of its outcome) and counted; the
audit chain verifies.

    DG_CAMPAIGN=ci   (default) about 10 kills, well under a minute
    DG_CAMPAIGN=long (or --long) 50 kills; DG_CAMPAIGN_KILLS=N overrides
"""
import json
import os
import random
import threading
import time

from campaign import LONG, delete_paths, figure, h, pick, up, wait_drained

KILLS = int(os.environ.get("DG_CAMPAIGN_KILLS") or pick(10, 50))
STARTUP_EVERY = 3          # every third kill lands in the first milliseconds of a start
SENDERS = pick(4, 6)
SEED = int(os.environ.get("DG_CAMPAIGN_SEED") or time.time())
COLLECTION = {"extract_run": "extract_runs", "parse_run": "parse_runs", "file": "files"}


class Ledger:
    """What the senders were told: every acknowledged request and the
    deletion paths it asked for."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []         # (kind, key, [paths])
        self.given_up = []      # requests never acknowledged (should stay empty)
        self.sends = 0
        self.non_2xx = 0
        self.conn_errors = 0


def make_request(rng, tag, n):
    """One request as its sender keeps it: its bytes and headers never change."""
    if rng.random() < 0.5:
        run, file_id = "exr_c%s_%d" % (tag, n), "file_c%s_%d" % (tag, n)
        eid = "evt_c%s_%d" % (tag, n)
        body = h.extract_event(run, eid, file_id=file_id)
        return ("webhook", eid, "/webhooks/extend", body, h.sign_extend(body),
                ["/extract_runs/" + run, "/files/" + file_id])
    items, paths = [], []
    for k in range(rng.randint(1, 5)):
        res = rng.choice(sorted(COLLECTION))
        rid = "%s_c%s_%d_%d" % ({"extract_run": "exr", "parse_run": "pr", "file": "file"}[res], tag, n, k)
        items.append({"resource": res, "id": rid, "reason": "crash campaign"})
        paths.append("/%s/%s" % (COLLECTION[res], rid))
    body = json.dumps({"items": items}).encode()
    mid = "msg_c%s_%d" % (tag, n)
    return ("internal", mid, "/v1/deletions", body, h.sign_standard(body, msg_id=mid), paths)


def sender(g, ledger, idx, stop, hard_stop):
    rng = random.Random(SEED * 100 + idx)
    n = 0
    while not stop.is_set():
        time.sleep(rng.uniform(0, 0.02))  # bounds the simulator's log in the long form
        kind, key, path, body, headers, paths = make_request(rng, "%d_%d" % (SEED % 100000, idx), n)
        n += 1
        backoff = 0.05
        while True:
            with ledger.lock:
                ledger.sends += 1
            try:
                r = h.request(g.port, "POST", path, body, headers, timeout=5)
                if 200 <= r.status < 300:
                    with ledger.lock:
                        ledger.acked.append((kind, key, paths))
                    break
                with ledger.lock:
                    ledger.non_2xx += 1
            except OSError:
                with ledger.lock:
                    ledger.conn_errors += 1
            if hard_stop.is_set():
                with ledger.lock:
                    ledger.given_up.append((kind, key, paths))
                return
            time.sleep(backoff * (0.5 + rng.random() / 2))
            backoff = min(backoff * 2, 1.0)


class CrashCampaign(h.GatewayTestCase):
    """kill -9 at random instants."""

    timeout = pick(120, 1800)

    def test_kill_9_at_random_instants_loses_no_acknowledged_deletion(self):
        rng = random.Random(SEED)
        print("  seed %d, mode %s" % (SEED, "long" if LONG else "ci"), flush=True)
        sim = self.sim(extra=["--latency-ms", "5"])
        g = self.gateway(sim, overrides={
            "extend": {"rate_per_second": 0, "max_in_flight": 8, "timeout_ms": 2000},
            "retry": {"initial_ms": 50, "max_ms": 500},
            "log": {"level": "info"}})
        ledger = Ledger()
        stop, hard_stop = threading.Event(), threading.Event()
        threads = [threading.Thread(target=sender, args=(g, ledger, i, stop, hard_stop), daemon=True)
                   for i in range(SENDERS)]
        for t in threads:
            t.start()

        kills = startup_kills = 0
        t0 = time.monotonic()
        while kills < KILLS:
            if kills % STARTUP_EVERY == STARTUP_EVERY - 1:
                # A kill inside the start: opening the audit log, truncating a
                # torn line, opening and migrating the queue, re-queueing leases.
                g.kill9()
                for _ in range(rng.randint(1, 2)):
                    g.start(wait=False)
                    time.sleep(rng.uniform(0.0, 0.02))
                    g.kill9()
                    startup_kills += 1
                    kills += 1
                g.start()
            else:
                time.sleep(rng.uniform(0.05, 2.0))
                g.kill9()
                kills += 1
                time.sleep(rng.uniform(0.0, 0.2))  # senders meet a closed port meanwhile
                g.start()
        kill_phase = time.monotonic() - t0
        time.sleep(0.5)
        stop.set()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        hard_stop.set()
        for t in threads:
            t.join(10)
        assert up(g), "gateway not serving at the end"
        t_drain = time.monotonic()
        q = wait_drained(g, pick(60, 300))
        drain = time.monotonic() - t_drain

        paths = delete_paths(sim)
        expected = [p for _, _, ps in ledger.acked for p in ps]
        lost = [p for p in expected if 200 not in paths.get(p, [])]
        delivered = sum(1 for p in expected if 200 in paths.get(p, []))
        duplicates = sum(len(s) - 1 for s in paths.values())
        unasked = [p for p in paths if p not in set(expected)]
        rc = g.stop()
        audit = h.run_cli("audit", "verify", "-c", g.config_path, env=g.env)

        figure("kills", "%d (%d of them within 20 ms of a start)" % (kills, startup_kills))
        figure("kill phase", "%.1f s" % kill_phase)
        figure("requests sent (with retries)", ledger.sends)
        figure("non-2xx answers / connection errors", "%d / %d" % (ledger.non_2xx, ledger.conn_errors))
        figure("acknowledged requests", len(ledger.acked))
        figure("acknowledged deletions", len(expected))
        figure("delivered", delivered)
        figure("duplicates", duplicates)
        figure("lost", len(lost))
        figure("never acknowledged", len(ledger.given_up))
        figure("DELETEs of unacknowledged requests", len(unasked))
        figure("drain after the last kill", "%.1f s" % drain)
        figure("final states", json.dumps(q["deletions"], sort_keys=True))
        figure("audit verify", "%d %s" % (audit.returncode, (audit.stdout or audit.stderr).decode().strip()[:200]))

        assert ledger.acked, "nothing was acknowledged"
        assert not lost, "acknowledged but never DELETEd: %s" % lost[:10]
        assert not ledger.given_up, "requests never acknowledged: %s" % [k for _, k, _ in ledger.given_up][:10]
        bad = {s: n for s, n in q["deletions"].items() if n and s not in ("deleted", "not_found")}
        assert not bad, "deletions not done: %s" % bad
        assert rc == 0, "clean stop exited %s" % rc
        assert audit.returncode == 0, audit.stderr.decode()


if __name__ == "__main__":
    h.main()
