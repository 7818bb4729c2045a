#!/usr/bin/env python3
"""Fault matrix: one case per fault, each with fresh processes and a fresh
directory; a case's name states the behaviour it checks. Each prints its
figures. Cases whose docstring starts "Expected:" state behaviour that the
gateway is being changed to have; they fail on a gateway without it.

    DG_CAMPAIGN=ci   (default) each case takes seconds
    DG_CAMPAIGN=long (or --long) larger backlogs, and SIGSTOP past the lease
    python3 faults.py [test_name ...]   only those cases
"""
import json
import os
import random
import signal
import ssl
import subprocess
import tempfile
import threading
import time

from campaign import delete_paths, figure, gaps_ms, h, pick, serve_expecting_exit, up, wait_drained

# The serve option that accepts starting on a queue older than the audit
# log (an operator's decision after restoring or losing the queue's WAL).
ACCEPT_ROLLBACK_FLAG = "--accept-audit-mismatch"
# How long serve may take to refuse a queue it must not use.
REFUSE_WITHIN_S = 5.0

FAST_RETRY = {"initial_ms": 100, "max_ms": 1000}


# ---- helpers ----

def erase(g, ids, resource="file", msg_id=None):
    """One internal batch; returns the answer."""
    items = [{"resource": resource, "id": i, "reason": "fault matrix"} for i in ids]
    return g.erasure({"items": items} if len(items) > 1 else items[0], msg_id=msg_id)


def erase_ok(g, ids, resource="file", msg_id=None):
    r = erase(g, ids, resource, msg_id)
    assert r.status == 202, r
    return [d["id"] for d in r.json()["deletions"]]


def paused_gateway(test, sim=None, **kw):
    g = test.gateway(sim, **kw)
    assert g.admin("POST", "/admin/pause").status == 200
    return g


def metric(g, name, labels=""):
    text = h.request(g.port, "GET", "/metrics").body.decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{" if labels else name) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def dir_sizes(*paths):
    return ", ".join("%s %d B" % (os.path.basename(p), os.path.getsize(p) if os.path.exists(p) else -1)
                     for p in paths)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def kill_during_load(g, n_threads=4, until=60):
    """Sends single erasures from several threads and kills the gateway
    with SIGKILL while they are being committed, so the newest commits are
    in the WAL only. Returns the deletion ids acknowledged."""
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def send(k):
        n = 0
        while not stop.is_set():
            fid = "file_wal_%d_%d" % (k, n)
            n += 1
            try:
                r = erase(g, [fid])
                if r.status == 202:
                    with lock:
                        acked.append(r.json()["deletions"][0]["id"])
            except OSError:
                return
    threads = [threading.Thread(target=send, args=(k,), daemon=True) for k in range(n_threads)]
    for t in threads:
        t.start()
    h.wait_for(lambda: len(acked) >= until, 30, what="%d acknowledged" % until)
    g.kill9()
    stop.set()
    for t in threads:
        t.join(10)
    return acked


def refusal_line(text, *words):
    """The message of the first log line that names every word
    (case-insensitive), paths left out so a directory's name cannot match."""
    for line in text.splitlines():
        try:
            msg = json.loads(line)["msg"]
        except (ValueError, KeyError, TypeError):
            msg = line
        low = " ".join(w for w in msg.lower().split() if "/" not in w)
        if all(w in low for w in words):
            return msg
    return None


class FaultMatrix(h.GatewayTestCase):
    """One case per fault, in sections; the helpers of a section are its own."""

    timeout = pick(90, 900)

    # ---- full file system ----

    def test_full_disk_answers_503_loses_nothing_acknowledged_and_recovers_without_restart(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs")
        mnt = tempfile.mkdtemp(prefix="dg-tmpfs-")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt]).returncode != 0:
            os.rmdir(mnt)
            self.skipTest("mount -t tmpfs failed")
        try:
            self._full_disk(mnt)
        finally:
            for p in reversed(self.procs):
                try:
                    p.stop()
                except Exception:
                    pass
            subprocess.run(["umount", "-l", mnt])
            os.rmdir(mnt)

    def _full_disk(self, mnt):
        sim = self.sim()
        qpath, apath = os.path.join(mnt, "queue.db"), os.path.join(mnt, "audit.jsonl")
        g = self.gateway(sim, overrides={"queue": {"path": qpath}, "audit": {"path": apath},
                                         "retry": FAST_RETRY, "log": {"level": "info"}})
        # Dispatching is held while the disk is full: an outcome that cannot be
        # committed leaves its job leased for a whole lease (over a minute), and
        # this case is about ingest.
        assert g.admin("POST", "/admin/pause").status == 200
        acked = []
        for i in range(20):
            ids = ["file_full_a%d_%d" % (i, k) for k in range(10)]
            erase_ok(g, ids)
            acked += ids
        figure("before filling", dir_sizes(qpath, qpath + "-wal", apath) + ", free %d B" % free_bytes(mnt))

        filler = os.path.join(mnt, "filler")
        # Unbuffered: a buffered file would raise ENOSPC again from its close.
        for name, block in ((filler, 65536), (filler + "2", 512)):  # then the last partial block
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                while os.write(fd, b"\0" * block) > 0:
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
        figure("filled", "free %d B" % free_bytes(mnt))

        first_503, answers = None, {}
        for i in range(200):
            ids = ["file_full_b%d_%d" % (i, k) for k in range(10)]
            r = erase(g, ids)
            answers[r.status] = answers.get(r.status, 0) + 1
            if r.status == 202:
                acked += ids
            elif r.status == 503:
                first_503 = r
                break
        figure("answers while full", answers)
        assert first_503 is not None, "no 503 while the file system is full: %s" % answers
        assert first_503.json()["error"]["code"] == "queue_unavailable", first_503
        ready = h.request(g.port, "GET", "/readyz")
        figure("/readyz while full", ready.status)

        for p in (filler, filler + "2"):
            if os.path.exists(p):
                os.unlink(p)
        freed = free_bytes(mnt)
        figure("freed", "free %d B" % freed)
        pid = g.proc.pid

        def recovered():
            r = erase(g, ["file_full_c_%d" % time.monotonic_ns()])
            return r if r.status == 202 else None
        t0 = time.monotonic()
        h.wait_for(recovered, 15, 0.2, what="ingest to recover after space was freed")
        figure("recovered after", "%.1f s, same process: %s" % (time.monotonic() - t0, g.proc.pid == pid))
        assert g.proc.poll() is None and g.proc.pid == pid
        for i in range(10):
            ids = ["file_full_d%d_%d" % (i, k) for k in range(10)]
            erase_ok(g, ids)
            acked += ids
        assert g.admin("POST", "/admin/resume").status == 200
        wait_drained(g, 30)
        time.sleep(1.5)  # a checkpoint or two
        after = free_bytes(mnt)
        figure("after recovery", dir_sizes(qpath, qpath + "-wal", apath) + ", free %d B" % after)
        paths = delete_paths(sim)
        lost = [i for i in acked if 200 not in paths.get("/files/" + i, [])]
        figure("acknowledged / lost", "%d / %d" % (len(acked), len(lost)))
        assert not lost, lost[:10]
        # The freed space must not be swallowed at once by a WAL that grew while
        # the disk was full (or preallocates): most of it is still free.
        assert after >= freed // 2, "freed %d B, %d B left after recovery" % (freed, after)

    # ---- Extend unreachable ----

    def test_extend_down_then_back_retries_and_drains_the_backlog(self):
        backlog, rate = pick(200, 1000), 50
        sim = self.sim()
        port = sim.port
        g = self.gateway(sim, overrides={"extend": {"rate_per_second": rate, "connect_timeout_ms": 500},
                                         "retry": FAST_RETRY, "log": {"level": "info"}})
        sim.stop()
        ids = []
        for b in range(0, backlog, 100):
            ids += erase_ok(g, ["file_down_%d" % i for i in range(b, min(backlog, b + 100))])
        h.wait_for(lambda: metric(g, "dg_upstream_attempts_total", 'outcome="transient"') >= 5, 15,
                   what="failed attempts while Extend is down")
        time.sleep(1.0)
        failed = metric(g, "dg_upstream_attempts_total", 'outcome="transient"')
        sim2 = h.Sim(self.dir, port=port)
        self.procs.append(sim2)
        t0 = time.monotonic()
        wait_drained(g, pick(60, 120))
        took = time.monotonic() - t0
        paths = delete_paths(sim2)
        done = sum(1 for i in range(backlog) if 200 in paths.get("/files/file_down_%d" % i, []))
        figure("backlog", "%d deletions at %d/s" % (backlog, rate))
        figure("failed attempts while down", int(failed))
        figure("return to drained", "%.1f s (%.1f s at the rate alone; %.0f/s achieved)"
               % (took, backlog / rate, backlog / took))
        figure("deleted after return", "%d / %d" % (done, backlog))
        assert done == backlog
        states = [g.show(d)["state"] for d in random.sample(ids, 10)]
        assert set(states) == {"deleted"}, states
        # Backoff is capped at retry.max_ms: once Extend is back, every job is
        # due within that cap and the backlog goes at close to the configured
        # rate (a maximum: each job also costs a claim and an outcome commit).
        assert took <= 1.5 * backlog / rate + FAST_RETRY["max_ms"] / 1000 + 2, took

    # ---- 500s and 429s ----

    def _spacing_of_faults(self, rule, n, initial_ms, max_ms):
        """One deletion that meets rule n times, then succeeds; returns the
        milliseconds between its DELETEs."""
        sim = self.sim()
        sim.faults([dict(rule, match="exr_spaced", count=n)])
        g = self.gateway(sim, overrides={"retry": {"initial_ms": initial_ms, "max_ms": max_ms}})
        did = erase_ok(g, ["exr_spaced"], "extract_run")[0]
        v = g.wait_state(did, "deleted", timeout=40)
        gaps = gaps_ms(sim, "/extract_runs/exr_spaced")
        figure("attempts counted against the budget", v["attempts"])
        figure("spacing (ms)", gaps)
        assert len(gaps) == n, gaps
        return gaps

    def test_500s_then_success_are_retried_with_growing_backoff(self):
        gaps = self._spacing_of_faults({"status": 500}, 4, 200, 5000)
        # The n-th retry waits between half and all of initial * 2^(n-1).
        for n, gap in enumerate(gaps):
            base = 200 * 2 ** n
            assert base / 2 - 30 <= gap <= base + 300, (n, gap, gaps)

    def _spacing_of_429s(self, rule, n):
        return self._spacing_of_faults(dict(rule, status=429), n, 100, 20000)

    def test_429_with_retry_after_0_is_spaced_at_least_a_second(self):
        """Expected: a "Retry-After: 0" does not make the gateway hammer a
        rate-limited account; each retry waits at least about a second."""
        gaps = self._spacing_of_429s({"retry_after": "0"}, 3)
        assert min(gaps) >= 950, gaps

    def test_429_without_a_hint_is_spaced_at_least_a_second_and_grows(self):
        """Expected: 429s without Retry-After or X-RateLimit-Reset wait at
        least about a second, and longer as they repeat."""
        gaps = self._spacing_of_429s({}, 4)
        assert min(gaps) >= 950, gaps
        assert gaps[-1] > gaps[0], gaps

    # ---- untrusted upstream certificates ----

    def _make_cert(self, name, sans, ca_dir=None):
        """A server certificate for sans, signed by the CA in ca_dir (or by a
        new CA of its own). Returns (cert, key)."""
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)  # noqa: E731
        if ca_dir is None:
            run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=another CA")
            ca_dir = d
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=" + sans[0].split(":", 1)[1])
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % ",".join(sans))
        run("openssl", "x509", "-req", "-in", "server.csr", "-CA", os.path.join(ca_dir, "ca.pem"),
            "-CAkey", os.path.join(ca_dir, "ca.key"), "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "ext.cnf")
        return os.path.join(d, "server.pem"), os.path.join(d, "server.key")

    def _untrusted_upstream(self, cert, key):
        sim = h.Sim(self.dir, cert=cert, key=key, control_tls=ssl._create_unverified_context())
        self.procs.append(sim)
        g = self.gateway(sim, overrides={"retry": FAST_RETRY})
        ids = erase_ok(g, ["file_tls_%d" % i for i in range(5)])
        # A TLS failure is a failure to reach Extend at all: the gateway holds
        # every job behind one probe at a time, so the tries spread over jobs.
        h.wait_for(lambda: metric(g, "dg_upstream_attempts_total", 'outcome="transient"') >= 3, 20,
                   0.1, what="three attempts")
        transient = metric(g, "dg_upstream_attempts_total", 'outcome="transient"')
        v = max((g.show(d) for d in ids), key=lambda x: x["attempts"])
        logged = [line for line in g.logs().splitlines() if "tls" in line.lower() or "certificate" in line.lower()]
        states = sorted({g.show(d)["state"] for d in ids})
        figure("attempts of one deletion", v["attempts"])
        figure("errors recorded", sorted({a["error"] for a in v["attempt_history"]}))
        figure("states", states)
        figure("DELETEs the upstream saw", len(sim.deletes()))
        figure("transient attempts (metrics)", int(transient))
        figure("log lines naming TLS", len(logged))
        assert sim.deletes() == [], "a request reached an untrusted upstream"
        assert set(states) <= {"queued", "in_flight"}, states
        assert {a["error"] for a in v["attempt_history"]} == {"tls_failed"}, v["attempt_history"]
        assert transient >= 3, transient

    def test_certificate_from_another_ca_upstream_sends_nothing_and_keeps_the_jobs(self):
        cert, key = self._make_cert("other-ca", ["DNS:localhost", "IP:127.0.0.1"])
        self._untrusted_upstream(cert, key)

    def test_certificate_for_another_host_upstream_sends_nothing_and_keeps_the_jobs(self):
        cert, key = self._make_cert("wrong-name", ["DNS:api.example.invalid"], ca_dir=h.certs())
        self._untrusted_upstream(cert, key)

    # ---- SIGSTOP past the lease ----

    def test_sigstop_past_the_request_time_out_then_sigcont_loses_no_job(self):
        """The lease is timeout + connect timeout + 60 s and cannot be made
        shorter; the CI form stops the process well past the request time-out
        (every DELETE out has timed out by the time it runs again), the long
        form past the lease itself."""
        n = pick(40, 200)
        sim = self.sim(extra=["--latency-ms", "150"])
        g = self.gateway(sim, overrides={"extend": {"timeout_ms": 500, "connect_timeout_ms": 200,
                                                    "rate_per_second": 20, "max_in_flight": 4},
                                         "retry": FAST_RETRY, "log": {"level": "info"}})
        ids = erase_ok(g, ["file_stop_%d" % i for i in range(n)])
        h.wait_for(lambda: len(sim.deletes()) >= 4, 10, what="DELETEs under way")
        stop_s = pick(3.0, 500 / 1000 + 200 / 1000 + 60 + 5)
        g.proc.send_signal(signal.SIGSTOP)
        time.sleep(stop_s)
        g.proc.send_signal(signal.SIGCONT)
        wait_drained(g, pick(30, 60))
        paths = delete_paths(sim)
        missing = [i for i in range(n) if 200 not in paths.get("/files/file_stop_%d" % i, [])]
        dups = sum(len(s) - 1 for s in paths.values())
        states = {}
        for d in ids:
            s = g.show(d)["state"]
            states[s] = states.get(s, 0) + 1
        figure("stopped for", "%.1f s" % stop_s)
        figure("jobs / lost / duplicates", "%d / %d / %d" % (n, len(missing), dups))
        figure("states", states)
        assert not missing, missing[:10]
        assert set(states) <= {"deleted", "not_found"}, states
        assert g.proc.poll() is None

    # ---- SIGHUP with a broken secret ----

    def test_sighup_with_a_broken_secret_file_keeps_running_on_the_old_secret(self):
        g = paused_gateway(self)
        secret_file = os.path.join(self.dir, "billing.secret")
        assert g.erasure({"resource": "file", "id": "file_hup0"}, secret=h.OTHER_SECRET).status == 202
        for n, (what, breakit) in enumerate([
                ("empty", lambda: open(secret_file, "w").close()),
                ("missing", lambda: os.unlink(secret_file)),
                ("a directory", lambda: (os.unlink(secret_file), os.mkdir(secret_file)))]):
            if os.path.isdir(secret_file):
                os.rmdir(secret_file)
            with open(secret_file, "w") as f:  # the good secret back, then broken another way
                f.write(h.OTHER_SECRET + "\n")
            breakit()
            before = g.logs().count("SIGHUP")
            g.proc.send_signal(signal.SIGHUP)
            h.wait_for(lambda: g.logs().count("SIGHUP") > before, 10, what="the SIGHUP log line")
            time.sleep(0.2)
            lines = [line for line in g.logs().splitlines() if "SIGHUP" in line][-3:]
            failure = [line for line in lines if '"error"' in line or "not reloaded" in line]
            r = g.erasure({"resource": "file", "id": "file_hup%d" % (n + 1)}, secret=h.OTHER_SECRET)
            figure("secret file %s" % what, "answer %d, logged: %s" % (r.status, failure[-1][:160] if failure else None))
            assert g.proc.poll() is None, "the gateway exited on SIGHUP"
            assert failure, "the failed reload is not logged: %s" % lines
            assert secret_file in failure[-1] or "billing" in failure[-1] or "clients" in failure[-1], failure
            assert r.status == 202, r
            assert h.OTHER_SECRET not in g.logs()

    # ---- the audit log under the running gateway ----

    def test_audit_file_deleted_while_running_is_written_back_and_alarmed(self):
        """With its audit file deleted, the gateway never acknowledges a request
        whose record nobody can find: it writes the file back at its path from
        the descriptor it holds (every earlier record with it), says so in its
        log and metrics, and goes on; the chain verifies."""
        g = paused_gateway(self)
        erase_ok(g, ["file_aud0"], msg_id="msg_aud0")
        apath = os.path.join(self.dir, "audit.jsonl")
        os.unlink(apath)
        r = erase(g, ["file_aud1"], msg_id="msg_aud1")
        text = open(apath).read() if os.path.exists(apath) else ""
        findable = "msg_aud0" in text and "msg_aud1" in text
        metrics = h.request(g.port, "GET", "/metrics").body.decode()
        figure("answer after the audit file was deleted", r.status)
        figure("records findable at the path", findable)
        assert r.status in (202, 503), r
        if r.status == 202:
            assert findable, "acknowledged, but its record is not at %s" % apath
        assert 'dg_audit_errors_total{reason="audit_log_missing"} 1' in metrics, metrics
        assert "was deleted while open" in g.logs()
        g.stop()
        audit = h.run_cli("audit", "verify", "-c", g.config_path, env=g.env)
        assert audit.returncode == 0, audit.stderr

    def test_audit_file_made_unwritable_answers_503_and_recovers_without_restart(self):
        """Expected: an audit file that cannot be written refuses ingest with
        503, and once it can be written again ingest resumes in the same
        process."""
        g = paused_gateway(self)
        erase_ok(g, ["file_ro0"])
        apath = os.path.join(self.dir, "audit.jsonl")
        if subprocess.run(["chattr", "+i", apath], capture_output=True).returncode != 0:
            self.skipTest("chattr +i is not supported here")
        try:
            r = erase(g, ["file_ro1"])
            figure("answer while immutable", r.status)
            assert r.status == 503, r
        finally:
            subprocess.run(["chattr", "-i", apath])
        pid = g.proc.pid
        t0 = time.monotonic()
        h.wait_for(lambda: erase(g, ["file_ro2_%d" % time.monotonic_ns()]).status == 202, 10, 0.2,
                   what="ingest to recover")
        figure("recovered after", "%.1f s" % (time.monotonic() - t0))
        assert g.proc.pid == pid and g.proc.poll() is None
        g.stop()
        audit = h.run_cli("audit", "verify", "-c", g.config_path, env=g.env)
        assert audit.returncode == 0, audit.stderr

    # ---- the queue and the audit log disagree at start ----

    @staticmethod
    def _refuses_then_accepts_rollback(g, what, measure=lambda g: None, lost_nothing=None):
        """serve must refuse within REFUSE_WITHIN_S, explaining why; with
        ACCEPT_ROLLBACK_FLAG it starts. measure(g) reports on the gateway that
        runs (the refused one, if it did not refuse). lost_nothing(g): when
        given, a start that goes ahead is right if it holds everything."""
        t0 = time.monotonic()
        rc, text = serve_expecting_exit(g, timeout=REFUSE_WITHIN_S + 1)
        took = time.monotonic() - t0
        line = (refusal_line(text, "audit", "queue", "disagree") or refusal_line(text, "audit", "queue", "behind")
                or refusal_line(text, "audit", "queue", "rollback") or refusal_line(text, "audit", "queue", "missing"))
        figure("serve after %s" % what, "exit %s after %.1f s" % (rc, took))
        figure("explained by", line[:200] if line else None)
        if rc is None:
            h.wait_for(lambda: up(g), 10, what="the gateway that did not refuse")
            measure(g)
            if lost_nothing is not None and lost_nothing(g):
                figure("serve after %s" % what, "started: nothing had been lost")
                g.stop()
                return
            g.stop()
        assert rc is not None and rc != 0 and took <= REFUSE_WITHIN_S, (rc, took, text[-1500:])
        assert line, text[-1500:]
        g.start(args=[ACCEPT_ROLLBACK_FLAG])
        figure("serve %s" % ACCEPT_ROLLBACK_FLAG, "started")
        measure(g)

    def test_wal_deleted_after_kill_9_refuses_to_start_unless_rollback_accepted(self):
        """Expected: a queue that lost commits the audit log recorded (its WAL
        deleted after a crash) is not used silently."""
        g = paused_gateway(self, overrides={"log": {"level": "info"}})
        acked = kill_during_load(g)
        wal = os.path.join(self.dir, "queue.db-wal")
        figure("acknowledged before the kill", len(acked))
        figure("WAL removed", dir_sizes(wal))
        os.unlink(wal)
        if os.path.exists(wal[:-4] + "-shm"):
            os.unlink(wal[:-4] + "-shm")

        def lost(g):
            return sum(1 for d in acked if g.admin("GET", "/admin/deletions/" + d).status == 404)

        def measure(g):
            figure("acknowledged deletions the queue lost", "%d of %d" % (lost(g), len(acked)))
        # The checkpointer may have folded every commit into the database just
        # before the kill: then the WAL held nothing, and starting is right.
        self._refuses_then_accepts_rollback(g, "the WAL was deleted", measure, lambda g: lost(g) == 0)

    def test_audit_log_deleted_after_clean_stop_refuses_to_start_unless_rollback_accepted(self):
        """Expected: an audit log that lost what the queue holds is not
        restarted from scratch silently."""
        g = paused_gateway(self)
        for i in range(5):
            erase_ok(g, ["file_noaudit_%d_%d" % (i, k) for k in range(5)])
        assert g.stop() == 0
        os.unlink(os.path.join(self.dir, "audit.jsonl"))
        self._refuses_then_accepts_rollback(g, "the audit log was deleted")

    # ---- a damaged database ----

    def test_corrupted_database_page_refuses_to_start_naming_quick_check(self):
        """Expected: serve runs a quick_check and refuses a damaged queue."""
        g = paused_gateway(self, overrides={"log": {"level": "info"}})
        qpath = os.path.join(self.dir, "queue.db")
        n = 0
        while True:
            erase_ok(g, ["file_page_%d_%d" % (n, k) for k in range(500)])
            n += 1
            assert g.stop() == 0
            if os.path.getsize(qpath) > 100 * 1024 or n > 10:
                break
            g.start()
        size = os.path.getsize(qpath)
        assert size > 100 * 1024, size
        assert not os.path.exists(qpath + "-wal") or os.path.getsize(qpath + "-wal") == 0
        rng = random.Random(size)
        # Whole pages in the middle of the file: b-tree pages of the tables and
        # their indexes, which a quick_check reads.
        with open(qpath, "r+b") as f:
            f.seek(size // 2 // 1024 * 1024)
            f.write(bytes(rng.randrange(256) for _ in range(4096)))
        t0 = time.monotonic()
        rc, text = serve_expecting_exit(g, timeout=REFUSE_WITHIN_S + 1)
        took = time.monotonic() - t0
        line = refusal_line(text, "quick_check") or refusal_line(text, "damaged")
        figure("database", "%d B, 4096 B overwritten at %d" % (size, size // 2 // 1024 * 1024))
        figure("serve", "exit %s after %.1f s" % (rc, took))
        figure("explained by", line[:200] if line else None)
        if rc is None:
            g.stop()
        assert rc is not None and rc != 0 and took <= REFUSE_WITHIN_S, (rc, took, text[-1500:])
        assert line, text[-1500:]


if __name__ == "__main__":
    h.main()
