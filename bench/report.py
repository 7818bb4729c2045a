#!/usr/bin/env python3
"""Turns bench/run.sh's results.tsv (one line per target and round) into
the Markdown report: medians over rounds, ratios between targets, the
product's targets as PASS/FAIL, and the durability check (every
"accepted" answer is a row in the stopped target's queue).

Usage: report.py RESULTS.tsv [--out FILE.md] [--meta TEXT] [--note TEXT]
"""
import argparse
import csv
import statistics
import sys

ORDER = ["gateway", "gateway-base", "gateway-pg", "gateway-nofsync", "peer-memory", "peer-sqlite",
         "hello"]
LABEL = {
    "gateway": "deletion-gateway (SQLite, fsync)",
    "gateway-base": "deletion-gateway, an earlier build (BENCH_BASE_BIN)",
    "gateway-pg": "deletion-gateway, one replica on PostgreSQL",
    "gateway-nofsync": "deletion-gateway, fsync made a no-op (eatmydata; not durable)",
    "peer-memory": "Node SDK peer, QUEUE=memory",
    "peer-sqlite": "Node SDK peer, QUEUE=sqlite",
    "hello": "evhttp hello-world (ceiling)",
}
DURABLE = ("gateway", "gateway-base", "gateway-pg", "peer-sqlite")


def ms(us):
    return "%.2f ms" % (us / 1000.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out")
    ap.add_argument("--meta", default="")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--partial", action="store_true",
                    help="a paced, partial load: no throughput checks")
    a = ap.parse_args()

    rows = list(csv.DictReader(open(a.results), delimiter="\t"))
    by = {}
    for r in rows:
        by.setdefault(r["target"], []).append(r)
    med = {}
    for t, rs in by.items():
        med[t] = {
            k: statistics.median(float(r[k]) for r in rs) for k in ("rps", "p50_us", "p99_us")
        }
        med[t]["n"] = len(rs)

    def ratio(t, base):
        if t not in med or base not in med or med[base]["rps"] <= 0:
            return "-"
        return "%.2fx" % (med[t]["rps"] / med[base]["rps"])

    out = []
    out.append("## Ingest: signed Extend webhooks, distinct events, loopback\n")
    if a.meta:
        out.append(a.meta + ".\n")
    out.append("| target | req/s (median) | p50 | p99 | vs peer memory | vs peer sqlite | vs hello |"
               " vs gateway | rounds |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in ORDER:
        if t not in med:
            continue
        m = med[t]
        out.append("| %s | %.0f | %s | %s | %s | %s | %s | %s | %d |" % (
            LABEL[t], m["rps"], ms(m["p50_us"]), ms(m["p99_us"]),
            ratio(t, "peer-memory"), ratio(t, "peer-sqlite"), ratio(t, "hello"),
            ratio(t, "gateway"), m["n"]))
    out.append("")
    if rows and "cpu_pct" in rows[0]:
        out.append("| target | CPU (all threads, median) | CPU s per 10,000 accepted | peak RSS | KB written per request | write calls per request |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for t in ORDER:
            if t not in by:
                continue
            def m(k):
                xs = [float(r[k]) for r in by[t] if r.get(k) not in (None, "")]
                return statistics.median(xs) if xs else float("nan")
            out.append("| %s | %.0f %% | %.2f | %.0f MB | %.1f | %.1f |" % (
                t, m("cpu_pct"), m("cpu_s_per_10k"), m("rss_peak_kb") / 1024.0,
                m("kb_written_per_req"), m("writes_per_req")))
        out.append("")
    out.append("Per round (req/s): " + "; ".join(
        "%s %s" % (t, " / ".join("%.0f" % float(r["rps"]) for r in by[t])) for t in ORDER if t in by) + ".")
    out.append("")

    checks = []
    if "gateway" in med:
        g = med["gateway"]
        for base, factor in (("peer-memory", 1.3), ("peer-sqlite", 10.0), ("hello", 0.5)):
            if base in med and not a.partial:
                got = g["rps"] / med[base]["rps"]
                checks.append(("gateway >= %gx %s throughput" % (factor, base), got >= factor,
                               "%.2fx" % got))
        checks.append(("gateway p99 < 10 ms at %s load" % ("partial" if a.partial else "full"),
                       g["p99_us"] < 10000, ms(g["p99_us"])))
        bad = [r for r in by["gateway"] if int(r["non2xx"]) or int(r["repeats"]) or
               int(r["duplicate"]) or int(r["errors"]) or int(r["accepted"]) != int(r["ok2xx"])]
        checks.append(("gateway: every answer 2xx \"accepted\", no repeated event, no socket error",
                       not bad, "%d bad round(s)" % len(bad) if bad else "all rounds"))
    for t in DURABLE:
        for r in by.get(t, []):
            try:
                n, acc, uniq = int(r["rows"]), int(r["accepted_total"]), int(r["unique_sent"])
            except ValueError:
                checks.append(("%s round %s: queue rows readable" % (t, r["round"]), False, r["rows"]))
                continue
            checks.append(("%s round %s: accepted answers <= queue rows <= distinct events sent" % (t, r["round"]),
                           acc <= n <= uniq, "%d <= %d <= %d" % (acc, n, uniq)))
    if checks:
        out.append("| check | result | measured |")
        out.append("|---|---|---|")
        for name, ok, got in checks:
            out.append("| %s | %s | %s |" % (name, "PASS" if ok else "FAIL", got))
        out.append("")
    for n in a.note:
        out.append("Note: " + n + "\n")
    text = "\n".join(out)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 1 if any(not ok for _, ok, _ in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
