#!/usr/bin/env python3
"""Small load tools for bench/drain.sh, where wrk does not fit: sending an
exact number of requests, pacing them at a fixed rate, and reading the
Extend simulator's counters and request log.

  loadgen.py send PREFIX --port P [--conns C] [--rate R] [--log FILE]
      Sends every request in PREFIX.0, PREFIX.1, ... (gen_webhooks.py's
      format) once, over C keep-alive connections (default 16), as fast as
      possible or, with --rate, paced at R requests/s in total. With --log,
      writes one JSON line per request: run id, send and answer times (Unix
      ms, float), status, and whether the answer said "accepted". Prints
      one "BENCH key=value ..." summary line.
  loadgen.py wait-sim URL --deletes N [--ca CA] [--timeout S] [--since T]
      Polls URL/_sim/stats until "deletes" >= N. Prints the time it took
      since T (Unix seconds, float; default: the start of the wait).
  loadgen.py rate-sim URL [--ca CA] [--rate R]
      Reads every DELETE the simulator logged and prints the rate they
      came at, from the first to the last (n - 1 intervals), and the most
      that fell in any one-second window (at most R if a limit R held).
  loadgen.py latency URL --log FILE [--ca CA]
      Matches each accepted request in FILE with the first DELETE the
      simulator logged for its run id and prints p50/p99/max of
      (DELETE received - answer received) and (DELETE received - sent).
"""
import argparse
import http.client
import json
import re
import socket
import ssl
import statistics
import sys
import threading
import time
import urllib.parse

RUN_ID = re.compile(rb'"payload":\{"object":"extract_run","id":"([^"]+)"')


def load_requests(prefix):
    reqs, t = [], 0
    while True:
        try:
            data = open("%s.%d" % (prefix, t), "rb").read()
        except FileNotFoundError:
            break
        pos = 0
        while pos < len(data):
            nl = data.index(b"\n", pos)
            n = int(data[pos:nl])
            reqs.append(data[nl + 1:nl + 1 + n])
            pos = nl + 1 + n
        t += 1
    return reqs


class Conn:
    """One keep-alive HTTP/1.1 connection that sends raw requests and reads
    answers with a Content-Length (what every target here sends)."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def roundtrip(self, raw):
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.buf = b""
                self.sock.sendall(raw)
                return self.read_answer()
            except (OSError, ValueError):
                if self.sock:
                    self.sock.close()
                self.sock = None
                if attempt:
                    return 0, b""
        return 0, b""

    def fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ValueError("closed")
            self.buf += chunk

    def read_line(self):
        while b"\r\n" not in self.buf:
            self.fill(len(self.buf) + 1)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_chunked(self):
        # Node's http module answers writeHead() + end(body) this way.
        body = b""
        while True:
            size = int(self.read_line().split(b";")[0], 16)
            if size == 0:
                while self.read_line():  # trailers, then the empty line
                    pass
                return body
            self.fill(size + 2)
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]

    def read_answer(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ValueError("closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = chunked = False
        for h in lines[1:]:
            k, _, v = h.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        if chunked:
            body = self.read_chunked()
        else:
            self.fill(length)
            body, self.buf = self.buf[:length], self.buf[length:]
        if close:
            self.sock.close()
            self.sock = None
        return status, body


def cmd_send(a):
    reqs = load_requests(a.prefix)
    if not reqs:
        sys.exit("loadgen: no requests at %s.*" % a.prefix)
    results = [None] * len(reqs)
    nxt = [0]
    lock = threading.Lock()
    start = time.time() + 0.05

    def worker():
        c = Conn(a.port)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(reqs):
                break
            if a.rate:
                # Open loop: request i goes at start + i/rate whatever the
                # answers before it took, so a slow target shows as latency.
                delay = start + i / a.rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            t0 = time.time()
            status, body = c.roundtrip(reqs[i])
            results[i] = (t0, time.time(), status, b'"accepted"' in body)
        if c.sock:
            c.sock.close()

    threads = [threading.Thread(target=worker) for _ in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.time()
    accepted = sum(1 for r in results if r[3])
    ok = sum(1 for r in results if 200 <= r[2] < 300)
    if a.log:
        with open(a.log, "w") as f:
            for raw, r in zip(reqs, results):
                m = RUN_ID.search(raw)
                f.write(json.dumps({"id": m.group(1).decode() if m else None, "sent_ms": r[0] * 1000,
                                    "answer_ms": r[1] * 1000, "status": r[2], "accepted": r[3]}) + "\n")
    lat = sorted((r[1] - r[0]) * 1000 for r in results)
    print("BENCH sent=%d ok2xx=%d accepted=%d non2xx=%d start=%.3f seconds=%.3f rps=%.1f "
          "answer_p50_ms=%.2f answer_p99_ms=%.2f" % (
              len(reqs), ok, accepted, len(reqs) - ok, start, end - start, len(reqs) / (end - start),
              lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]))


_sim_conns = {}


def sim_get(url, path, ca):
    """GET from the simulator over one kept-alive connection per (url, ca):
    polling every 20 ms with a fresh TLS handshake (and CA load) each time
    cost the simulator and this process a noticeable share of the CPU that
    the target being measured needs."""
    key = (url, ca)
    for attempt in (0, 1):
        conn = _sim_conns.get(key)
        if conn is None:
            ctx = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()
            u = urllib.parse.urlsplit(url)
            conn = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=30)
            _sim_conns[key] = conn
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise OSError("simulator answered %d to GET %s" % (r.status, path))
            return json.loads(body)
        except (http.client.HTTPException, ConnectionError, ssl.SSLError):
            conn.close()
            del _sim_conns[key]
            if attempt == 1:
                raise


def cmd_wait_sim(a):
    since = a.since if a.since else time.time()
    deadline = time.time() + a.timeout
    n = 0
    while time.time() < deadline:
        n = sim_get(a.url, "/_sim/stats", a.ca)["deletes"]
        if n >= a.deletes:
            now = time.time()
            print("BENCH deletes=%d seconds=%.3f rate=%.1f" % (n, now - since, n / (now - since)))
            return 0
        time.sleep(0.02)
    print("BENCH deletes=%d seconds=timeout rate=0" % n)
    return 1


def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def cmd_latency(a):
    first = {}
    seq = 0
    while True:
        recs = sim_get(a.url, "/_sim/requests?since=%d" % seq, a.ca)
        if not recs:
            break
        for r in recs:
            first.setdefault(r.get("id"), r["time_ms"])
        seq += len(recs)
    from_answer, from_send, missing = [], [], 0
    for line in open(a.log):
        r = json.loads(line)
        if not r["accepted"]:
            continue
        t = first.get(r["id"])
        if t is None:
            missing += 1
            continue
        # The simulator stamps whole milliseconds (floored): its midpoint is
        # the unbiased estimate, still +-0.5 ms.
        from_answer.append(t + 0.5 - r["answer_ms"])
        from_send.append(t + 0.5 - r["sent_ms"])
    from_answer.sort()
    from_send.sort()
    print("BENCH matched=%d missing=%d accept_p50_ms=%.2f accept_p99_ms=%.2f accept_max_ms=%.2f "
          "send_p50_ms=%.2f send_p99_ms=%.2f" % (
              len(from_answer), missing, pct(from_answer, 0.5), pct(from_answer, 0.99),
              from_answer[-1] if from_answer else float("nan"), pct(from_send, 0.5), pct(from_send, 0.99)))
    return 1 if missing or not from_answer else 0


def cmd_rate_sim(a):
    times, seq = [], 0
    while True:
        recs = sim_get(a.url, "/_sim/requests?since=%d" % seq, a.ca)
        if not recs:
            break
        times.extend(r["time_ms"] for r in recs)
        seq += len(recs)
    times.sort()
    rate = (len(times) - 1) * 1000.0 / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    # The busiest one-second window [t, t + 1000): whole-millisecond stamps.
    busiest, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= 1000:
            j += 1
        busiest = max(busiest, i - j + 1)
    print("BENCH deletes=%d rate=%.2f max_per_second=%d ratio=%.3f" % (
        len(times), rate, busiest, rate / a.rate if a.rate else 0.0))
    return 1 if a.rate and busiest > a.rate else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("prefix")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--conns", type=int, default=16)
    s.add_argument("--rate", type=float, default=0)
    s.add_argument("--log")
    w = sub.add_parser("wait-sim")
    w.add_argument("url")
    w.add_argument("--deletes", type=int, required=True)
    w.add_argument("--ca")
    w.add_argument("--timeout", type=float, default=300)
    w.add_argument("--since", type=float, default=0)
    rs = sub.add_parser("rate-sim")
    rs.add_argument("url")
    rs.add_argument("--ca")
    rs.add_argument("--rate", type=float, default=0)
    lt = sub.add_parser("latency")
    lt.add_argument("url")
    lt.add_argument("--log", required=True)
    lt.add_argument("--ca")
    a = ap.parse_args()
    if a.cmd == "send":
        if not (1 <= a.conns <= 256):
            sys.exit("loadgen: --conns 1..256")
        return cmd_send(a)
    if a.cmd == "wait-sim":
        return cmd_wait_sim(a)
    if a.cmd == "rate-sim":
        return cmd_rate_sim(a)
    return cmd_latency(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
