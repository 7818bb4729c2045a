"""Start-up refuses a queue and an audit log that disagree, or a damaged
queue, instead of going on silently; an operator's pause outlives a
restart. Each case runs the real binary on files it then breaks the way an
operator or a crash would."""
import json
import os
import shutil
import time

import harness as h

# Far enough ahead that nothing is sent while a test runs, within the
# gateway's 366-day bound.
LATER = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))

MISMATCH_FLAG = "--accept-audit-mismatch"


def accept_some(g, n, prefix):
    ids = []
    for i in range(n):
        r = g.erasure({"resource": "extract_run", "id": "exr_%s_%d" % (prefix, i), "reason": "test",
                       "not_before": LATER})
        assert r.status == 202, r
        ids += [d["id"] for d in r.json()["deletions"]]
    return ids


def start_fails(g, *extra):
    """Starts the gateway expecting it to refuse; returns its log."""
    before = len(g.logs())
    g.start(wait=False, args=extra)
    rc = g.proc.wait(15)
    g.log.close()
    assert rc != 0, "the gateway started:\n" + g.logs()[before:]
    return g.logs()[before:]


def start_with(g, *extra):
    g.start(args=extra)


def _healthy(g):
    try:
        return h.request(g.port, "GET", "/healthz", timeout=1).status == 200
    except OSError:
        return False


def audit_events(g):
    with open(os.path.join(g.workdir, "audit.jsonl")) as f:
        return [json.loads(l) for l in f]


def verify_ok(g):
    r = h.run_cli("audit", "verify", "-c", g.config_path, env=g.env)
    assert r.returncode == 0 and b"ok:" in r.stdout, (r.stdout, r.stderr)


class StartUpChecksTest(h.GatewayTestCase):
    """What start-up refuses, and what outlives a restart."""

    def test_audit_log_deleted_after_a_stop_is_refused_not_restarted_at_seq_1(self):
        g = self.gateway()
        accept_some(g, 5, "a")
        g.stop()
        audit = os.path.join(g.workdir, "audit.jsonl")
        os.unlink(audit)
        log = start_fails(g)
        assert "audit log was deleted, truncated or replaced" in log, log
        assert MISMATCH_FLAG in log, log
        # Nothing was started: no fresh chain was written.
        assert not os.path.exists(audit) or os.path.getsize(audit) == 0
        start_with(g, MISMATCH_FLAG)
        g.stop()
        events = [r["event"] for r in audit_events(g)]
        assert events[:2] == ["mismatch_accepted", "config_loaded"], events
        verify_ok(g)
        # Accepted once, the next start is clean.
        g.start()
        g.stop()

    def test_audit_log_truncated_is_refused(self):
        g = self.gateway()
        accept_some(g, 5, "t")
        g.stop()
        audit = os.path.join(g.workdir, "audit.jsonl")
        lines = open(audit, "rb").read().splitlines(keepends=True)
        with open(audit, "wb") as f:
            f.writelines(lines[:-2])
        log = start_fails(g)
        assert "ends at seq %d but the queue committed records up to seq %d" % (len(lines) - 2, len(lines)) in log, log

    def test_queue_restored_from_an_older_copy_is_refused(self):
        g = self.gateway()
        accept_some(g, 3, "old")
        g.stop()
        backup = os.path.join(self.dir, "backup")
        os.mkdir(backup)
        for name in os.listdir(g.workdir):
            if name.startswith("queue.db"):
                shutil.copy(os.path.join(g.workdir, name), backup)
        g.start()
        newer = accept_some(g, 3, "new")
        g.stop()
        for name in os.listdir(g.workdir):
            if name.startswith("queue.db") and not name.endswith(".lock"):
                os.unlink(os.path.join(g.workdir, name))
        for name in os.listdir(backup):
            shutil.copy(os.path.join(backup, name), g.workdir)
        log = start_fails(g)
        assert "the queue lost commits" in log, log
        start_with(g, MISMATCH_FLAG)
        assert g.admin("GET", "/admin/deletions/" + newer[0]).status == 404  # what the copy lost
        g.stop()
        assert "mismatch_accepted" in [r["event"] for r in audit_events(g)]
        verify_ok(g)

    def test_wal_deleted_after_kill_9_never_starts_without_what_was_acknowledged(self):
        # The checkpointer folds the WAL into the database about once a second
        # when idle, so a kill right after a burst leaves the last commits in
        # the WAL alone. Whichever way the race went, a start that goes ahead
        # must still hold every acknowledged deletion.
        for attempt in range(5):
            g = self.gateway() if attempt == 0 else g
            if attempt:
                for name in os.listdir(g.workdir):
                    if name.startswith(("queue.db", "audit.jsonl")):
                        os.unlink(os.path.join(g.workdir, name))
                g.start()
            ids = accept_some(g, 40, "w%d" % attempt)
            g.kill9()
            wal = os.path.join(g.workdir, "queue.db-wal")
            if os.path.exists(wal):
                os.unlink(wal)
            before = len(g.logs())
            g.start(wait=False)
            up = h.wait_for(lambda: g.proc.poll() is not None or _healthy(g), 20, what="start or exit")
            if g.proc.poll() is not None:
                g.log.close()
                log = g.logs()[before:]
                assert g.proc.returncode != 0 and "the queue lost commits" in log, log
                print("refused after kill %d" % (attempt + 1))
                return
            assert up
            missing = [d for d in ids if g.admin("GET", "/admin/deletions/" + d).status != 200]
            assert not missing, "started without %d acknowledged deletions" % len(missing)
            g.stop()
        raise AssertionError("the WAL was folded in before every kill; the refusal was never exercised")

    def test_corrupted_database_page_is_refused_at_start(self):
        g = self.gateway()
        for i in range(4):
            r = g.erasure({"items": [{"resource": "extract_run", "id": "exr_c%d_%d" % (i, j), "reason": "x",
                                      "not_before": LATER} for j in range(500)]})
            assert r.status == 202, r
        g.stop()
        path = os.path.join(g.workdir, "queue.db")
        size = os.path.getsize(path)
        assert size > 200 * 1024, size
        with open(path, "r+b") as f:
            f.seek(size * 2 // 5)
            f.write(os.urandom(size // 5))
        log = start_fails(g)
        assert "is damaged (quick_check" in log and ".recover" in log, log

    def test_pause_survives_a_restart(self):
        sim = self.sim()
        g = self.gateway(sim)
        assert g.ctl("pause").returncode == 0
        g.restart()
        assert "dispatching is paused" in g.logs()
        r = g.webhook(h.extract_event("exr_paused1"))
        assert r.status == 200, r
        did = r.json()["deletions"][0]["id"]
        time.sleep(1.0)
        assert not sim.deletes(), sim.deletes()
        assert g.queue()["paused"] is True
        metrics = h.request(g.port, "GET", "/metrics").body.decode()
        assert "dg_dispatch_paused 1" in metrics
        assert g.ctl("resume").returncode == 0
        g.wait_state(did, "deleted")
        g.restart()
        assert g.queue()["paused"] is False
        events = [r["event"] for r in audit_events(g)]
        assert "paused" in events and "resumed" in events, events

    def test_metrics_show_the_wal_and_checkpoints(self):
        g = self.gateway()
        accept_some(g, 3, "m")
        body = h.request(g.port, "GET", "/metrics").body.decode()
        assert "dg_queue_checkpoint_failures_total 0" in body, body
        assert "dg_queue_wal_bytes " in body


if __name__ == "__main__":
    h.main()
