"""The audit log's faults on the real binary: the file deleted, renamed or
replaced while the gateway runs, and writes that fail until the cause is
gone. In every case no 2xx answer lacks its record in the file at
audit.path, and the gateway recovers without a restart."""
import json
import os
import subprocess

import harness as h


def audit_path(g):
    return os.path.join(g.workdir, "audit.jsonl")


def records(g):
    with open(audit_path(g)) as f:
        return [json.loads(line) for line in f]


def readyz(g):
    r = h.request(g.port, "GET", "/readyz")
    return r.status, r.json()


def metric(g, name):
    body = h.request(g.port, "GET", "/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError("no %s in /metrics" % name)


def erase(g, rid):
    """A new erasure request: its deletion id when answered 202, else None."""
    r = g.erasure({"resource": "parse_run", "id": rid, "reason": "audit fault test"})
    assert r.status in (202, 503), r
    if r.status == 503:
        assert r.json()["error"]["code"] == "queue_unavailable", r
        return None
    return r.json()["deletions"][0]["id"]


def check_every_acknowledged_deletion_is_recorded(g, acked):
    r = h.run_cli("audit", "verify", "-c", g.config_path, env=g.env)
    assert r.returncode == 0 and b"ok:" in r.stdout, (r.stdout, r.stderr)
    accepted = {rec.get("deletion_id") for rec in records(g) if rec["event"] == "accepted"}
    missing = [d for d in acked if d not in accepted]
    assert not missing, missing


def chattr(flag, path):
    return subprocess.run(["chattr", flag, path], capture_output=True).returncode == 0


class AuditFaultsTest(h.GatewayTestCase):
    """The audit file lost, replaced or failing under a running gateway."""

    def test_deleted_audit_log_is_written_back_with_every_acknowledged_record(self):
        sim = self.sim()
        g = self.gateway(sim)
        acked = [erase(g, "pr_before_%d" % i) for i in range(3)]
        assert all(acked), acked
        for d in acked:
            g.wait_state(d, ("deleted", "not_found"))
        os.unlink(audit_path(g))
        # Readiness sees the file gone at once (unless an idle cycle of the
        # writer's put it back first); its probe makes the writer put it back
        # from the open descriptor.
        status, body = readyz(g)
        assert (status == 503 and body["audit"] == "audit_log_missing") or os.path.exists(audit_path(g)), body
        h.wait_for(lambda: os.path.exists(audit_path(g)), 10, what="the audit log written back")
        h.wait_for(lambda: readyz(g)[0] == 200, 10, what="/readyz 200 again")
        # The path is linked before the directory's fsync, and the line is
        # logged after it.
        h.wait_for(lambda: "was deleted while open; wrote its" in g.logs(), 10, what="the log line")
        assert metric(g, 'dg_audit_errors_total{reason="audit_log_missing"}') == 1
        assert metric(g, "dg_audit_healthy") == 1
        after = erase(g, "pr_after")
        assert after, "a request after the log was written back is refused"
        acked.append(after)
        g.wait_state(after, ("deleted", "not_found"))
        check_every_acknowledged_deletion_is_recorded(g, acked)
        seqs = [rec["seq"] for rec in records(g)]
        assert seqs == list(range(1, len(seqs) + 1)), seqs

    def test_replaced_or_renamed_audit_log_refuses_changes_until_back(self):
        g = self.gateway()  # no upstream: nothing but these requests writes records
        acked = [erase(g, "pr_one")]
        assert acked[0]
        path, away = audit_path(g), audit_path(g) + ".away"

        # Renamed: its records are somewhere, but not where anyone looks.
        os.rename(path, away)
        status, body = readyz(g)
        assert status == 503 and body["audit"] == "audit_log_missing", body
        assert erase(g, "pr_renamed") is None
        assert metric(g, "dg_audit_healthy") == 0
        assert not os.path.exists(path), "a fresh log was started at the path"
        os.rename(away, path)
        h.wait_for(lambda: readyz(g)[0] == 200, 10, what="/readyz 200 once the log is back")
        acked.append(erase(g, "pr_back"))
        assert acked[-1]

        # Deleted and another file put at the path: that file is not replaced.
        # The stray file goes in by rename: opened with "w" at the path it would
        # truncate the log itself whenever the gateway wrote it back in between.
        os.unlink(path)
        open(path + ".stray", "w").close()
        os.replace(path + ".stray", path)
        assert erase(g, "pr_replaced") is None
        status, body = readyz(g)
        assert status == 503 and body["audit"] == "audit_log_missing", body
        assert os.path.getsize(path) == 0
        h.wait_for(lambda: "another file is at the path" in g.logs(), 5, what="the log line")
        os.unlink(path)
        h.wait_for(lambda: readyz(g)[0] == 200, 10, what="/readyz 200 once the stray file is gone")
        acked.append(erase(g, "pr_restored"))
        assert acked[-1]
        assert metric(g, 'dg_audit_errors_total{reason="audit_log_missing"}') == 2
        assert h.request(g.port, "GET", "/healthz").status == 200
        check_every_acknowledged_deletion_is_recorded(g, acked)

    def test_failed_audit_write_recovers_without_restart(self):
        g = self.gateway()
        acked = [erase(g, "pr_ok")]
        assert acked[0]
        path = audit_path(g)
        # An immutable file refuses the write and the cut back alike.
        if not chattr("+i", path):
            self.skipTest("%s does not support chattr +i" % self.dir)
        try:
            assert erase(g, "pr_refused") is None
            status, body = readyz(g)
            assert status == 503 and body["audit"] == "audit_write_failed", body
            assert metric(g, "dg_audit_healthy") == 0
            assert metric(g, 'dg_audit_errors_total{reason="audit_write_failed"}') >= 1
            assert erase(g, "pr_refused_again") is None
        finally:
            assert chattr("-i", path)
        # No restart: the next readiness probe lets the writer cut back and go on.
        h.wait_for(lambda: readyz(g)[0] == 200, 10, what="/readyz 200 after chattr -i")
        assert "writable again" in g.logs()
        acked.append(erase(g, "pr_after"))
        assert acked[-1], "still refused after the cause is gone"
        check_every_acknowledged_deletion_is_recorded(g, acked)
        seqs = [rec["seq"] for rec in records(g)]
        assert seqs == list(range(1, len(seqs) + 1)), seqs


if __name__ == "__main__":
    h.main()
