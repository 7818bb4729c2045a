"""What the reliability campaigns share: the e2e harness (processes,
signing, ports), the campaign's size (DG_CAMPAIGN=ci, the default, is the
bounded form CI runs; DG_CAMPAIGN=long or --long is the long form), and the
small readers of the simulator's request log and of a gateway that is
expected to refuse to start.
"""
import collections
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness as h  # noqa: E402

if "--long" in sys.argv:
    sys.argv.remove("--long")
    os.environ["DG_CAMPAIGN"] = "long"
MODE = os.environ.get("DG_CAMPAIGN", "ci")
if MODE not in ("ci", "long"):
    sys.exit("DG_CAMPAIGN must be ci or long, not %r" % MODE)
LONG = MODE == "long"


def pick(ci, long):
    return long if LONG else ci


def figure(name, value):
    """One figure of the campaign, in a form a reader (or a grep) finds."""
    print("  %-34s %s" % (name + ":", value), flush=True)


def delete_paths(sim):
    """path -> list of statuses of every DELETE the simulator received."""
    out = collections.defaultdict(list)
    for r in sim.requests():
        if r.get("method") == "DELETE":
            out[r["path"]].append(r["status"])
    return out


def gaps_ms(sim, path):
    """Milliseconds between successive DELETEs of one path, in order."""
    t = [r["time_ms"] for r in sim.requests() if r["path"] == path]
    return [b - a for a, b in zip(t, t[1:])]


def wait_drained(g, timeout):
    """Until the gateway has nothing queued or in flight."""
    def done():
        q = g.queue()
        return q if q["jobs_pending"] == 0 and q["in_flight"] == 0 else None
    return h.wait_for(done, timeout, 0.1, what="the queue to drain")


def serve_expecting_exit(g, args=(), timeout=10.0):
    """Runs serve on g's config; returns (exit code or None if it was still
    running after timeout, its output). A process still running is left
    running in g.proc, so the caller can use or stop it."""
    log = os.path.join(g.workdir, "serve-%d.log" % int(time.monotonic() * 1000))
    with open(log, "wb") as out:
        p = subprocess.Popen([h.GATEWAY_BIN, "serve", "-c", g.config_path] + list(args), env=g.env,
                             stdout=out, stderr=out)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
    with open(log, "rb") as f:
        text = f.read().decode(errors="replace")
    if rc is None:
        g.proc = p
        g.log = open(log, "ab")
    return rc, text


def up(g):
    try:
        return h.request(g.port, "GET", "/healthz", timeout=1).status == 200
    except OSError:
        return False
