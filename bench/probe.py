#!/usr/bin/env python3
"""Small timing probes for bench/backlog.sh, each printing one
"BENCH key=value ..." line (lib.sh's kv reads it):

  probe.py readyz PORT --since T [--timeout S]
      Polls http://127.0.0.1:PORT/readyz every 5 ms until it answers 200;
      prints the seconds since T (Unix seconds, float: when the process was
      started).
  probe.py latency NAME [--tries N] -- COMMAND...
      Runs COMMAND N times (default 5) and prints its wall time: median and
      max in ms. COMMAND is either a program (ctl) or "GET PORT PATH
      [HEADER...]" for one HTTP GET on a fresh connection, signed the
      Standard Webhooks way (the internal clients' API) with --secret.
  probe.py sample PID DB --out FILE --every S
      Until PID exits, appends "time rss_kb wal_bytes db_bytes" every S
      seconds; the max of each column goes to FILE.max when it ends.
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import os
import statistics
import subprocess
import sys
import time


def http_get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def cmd_readyz(a):
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        try:
            if http_get(a.port, "/readyz") == 200:
                print("BENCH seconds=%.3f" % (time.time() - a.since))
                return 0
        except OSError:
            pass
        time.sleep(0.005)
    print("BENCH seconds=timeout")
    return 1


def signed_headers(secret):
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    msg_id, ts = "msg_" + os.urandom(8).hex(), int(time.time())
    mac = hmac.new(key, b"%s.%d." % (msg_id.encode(), ts), hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def one_run(cmd, secret):
    """Runs one probe command; returns (ms, ok)."""
    t0 = time.perf_counter()
    if cmd[0] == "GET":
        port, path = int(cmd[1]), cmd[2]
        headers = {}
        for h in cmd[3:]:
            k, _, v = h.partition(":")
            headers[k.strip()] = v.strip()
        if secret:
            headers.update(signed_headers(secret))
        t0 = time.perf_counter()
        ok = http_get(port, path, headers) == 200
    else:
        ok = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    return (time.perf_counter() - t0) * 1000.0, ok


def cmd_latency(a):
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    times, bad = [], 0
    for _ in range(a.tries):
        ms, ok = one_run(cmd, a.secret)
        times.append(ms)
        bad += not ok
    print("BENCH name=%s median_ms=%.1f max_ms=%.1f tries=%d failed=%d" % (
        a.name, statistics.median(times), max(times), a.tries, bad))
    return 1 if bad else 0


def cmd_sample(a):
    wal = a.db + "-wal"
    peak = [0, 0, 0]
    with open(a.out, "a") as f:
        while True:
            try:
                rss = 0
                for line in open("/proc/%d/status" % a.pid):
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
            except OSError:
                break
            w = os.path.getsize(wal) if os.path.exists(wal) else 0
            d = os.path.getsize(a.db) if os.path.exists(a.db) else 0
            peak = [max(peak[0], rss), max(peak[1], w), max(peak[2], d)]
            f.write("%.2f %d %d %d\n" % (time.time(), rss, w, d))
            f.flush()
            time.sleep(a.every)
    with open(a.out + ".max", "w") as f:
        f.write("BENCH rss_kb=%d wal_bytes=%d db_bytes=%d\n" % tuple(peak))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("readyz")
    p.add_argument("port", type=int)
    p.add_argument("--since", type=float, required=True)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("latency")
    p.add_argument("name")
    p.add_argument("--tries", type=int, default=5)
    p.add_argument("--secret", default=None, help="sign each GET for the internal API")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("sample")
    p.add_argument("pid", type=int)
    p.add_argument("db")
    p.add_argument("--out", required=True)
    p.add_argument("--every", type=float, default=0.25)
    a = ap.parse_args()
    if not (1 <= getattr(a, "tries", 1) <= 1000):
        sys.exit("probe: --tries must be 1..1000")
    return {"readyz": cmd_readyz, "latency": cmd_latency, "sample": cmd_sample}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
