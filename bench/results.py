#!/usr/bin/env python3
"""Turns one bench/all.sh run (its scratch directory) into bench/RESULTS.md
and the PNG plots in bench/plots/, drawn with gnuplot: the latency
distribution at half and full load, throughput against connections, RSS
against queued jobs. Every figure is a median over the run's rounds.

Usage: results.py WORKDIR --out RESULTS.md --plots DIR [--quick] [--failed "STEPS"]
"""
import argparse
import csv
import datetime
import glob
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys

TARGETS = ["gateway", "peer-memory", "peer-sqlite", "hello"]
LABEL = {"gateway": "deletion-gateway", "peer-memory": "Node SDK peer (memory)",
         "peer-sqlite": "Node SDK peer (SQLite)", "hello": "evhttp hello-world"}
PCTS = ["1", "5", "10", "20", "30", "40", "50", "60", "70", "80", "90", "95", "99", "99.9"]
CONNS = [1, 4, 16, 64, 256]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def tsv(path):
    try:
        return list(csv.DictReader(open(path), delimiter="\t"))
    except OSError:
        return []


def bench_lines(path):
    """Every "BENCH k=v ..." line of a file, as dicts."""
    out = []
    try:
        for line in open(path):
            if line.startswith("BENCH "):
                out.append(dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv))
    except OSError:
        pass
    return out


def by_target(rows, key):
    d = {}
    for r in rows:
        d.setdefault(r["target"], []).append(num(r.get(key)))
    return {t: med(v) for t, v in d.items()}


def latency_dist(rundir):
    """target -> {percentile: median us} from the wrk outputs of one run.sh."""
    acc = {}
    for f in glob.glob(os.path.join(rundir, "*.r*", "load.out")):
        t = os.path.basename(os.path.dirname(f)).rsplit(".r", 1)[0]
        for line in open(f):
            if line.startswith("BENCHLAT "):
                for kv in line.split()[1:]:
                    p, v = kv.split("=")
                    acc.setdefault(t, {}).setdefault(p, []).append(float(v))
    return {t: {p: med(v) for p, v in d.items()} for t, d in acc.items()}


def fmt(v, spec="%.0f", none="-"):
    return none if v is None else spec % v


def ratio(a, b):
    return "-" if a is None or not b else "%.2fx" % (a / b)


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = [l for l in open("/proc/meminfo") if l.startswith("MemTotal")][0].split()[1]
        mem = "%.0f GiB" % (int(mem) / 1048576.0)
    except (OSError, IndexError):
        mem = "?"
    fs = "?"
    try:
        fs = subprocess.run(["df", "--output=fstype", os.path.dirname(os.path.abspath(__file__))],
                            capture_output=True, text=True).stdout.split()[-1]
    except (OSError, IndexError):
        pass
    return "%d cores (%s), %s memory, Linux %s, %s file system" % (
        os.cpu_count() or 0, model, mem, platform.release(), fs)


def commit(root):
    try:
        h = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                           text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return h + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


def gnuplot(script, datafiles, out_png):
    if shutil.which("gnuplot") is None:
        return False
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        sys.stderr.write("results: gnuplot failed for %s: %s\n" % (out_png, r.stderr[-400:]))
        return False
    return True


HEAD = ('set terminal pngcairo size 720,440 font "DejaVu Sans,10"\nset output "%s"\n'
        'set grid\nset key top left\n')


def plot_latency(dists, title, path, tmp):
    series = [t for t in TARGETS if t in dists]
    if not series:
        return False
    data = os.path.join(tmp, os.path.basename(path) + ".dat")
    with open(data, "w") as f:
        for p in PCTS:
            f.write(p + " " + " ".join(fmt(dists[t].get(p) and dists[t][p] / 1000.0, "%.3f", "NaN")
                                       for t in series) + "\n")
    plots = ", ".join('"%s" using 1:%d with linespoints title "%s"' % (data, i + 2, LABEL[t])
                      for i, t in enumerate(series))
    return gnuplot(HEAD % path + 'set title "%s"\nset xlabel "percentile"\nset ylabel "latency (ms)"\n'
                   'set logscale y\nplot %s\n' % (title, plots), [data], path)


def plot_conns(rps, path, tmp):
    series = [t for t in TARGETS if any(rps.get(c, {}).get(t) for c in CONNS)]
    if not series:
        return False
    data = os.path.join(tmp, "conns.dat")
    with open(data, "w") as f:
        for c in CONNS:
            f.write("%d " % c + " ".join(fmt(rps.get(c, {}).get(t), "%.0f", "NaN") for t in series) + "\n")
    plots = ", ".join('"%s" using 1:%d with linespoints title "%s"' % (data, i + 2, LABEL[t])
                      for i, t in enumerate(series))
    return gnuplot(HEAD % path + 'set title "Ingest throughput against connections (signed webhooks)"\n'
                   'set xlabel "connections"\nset ylabel "requests/s"\nset logscale xy\n'
                   'set xrange [0.8:320]\nset xtics (1, 4, 16, 64, 256)\nset key below\n'
                   'plot %s\n' % plots, [data], path)


def plot_rss(rss_tsv, path, tmp):
    rows = tsv(rss_tsv)
    if not rows:
        return False
    data = os.path.join(tmp, "rss.dat")
    with open(data, "w") as f:
        for r in rows:
            f.write("%s %.1f\n" % (r["queued"], int(r["rss_kb"]) / 1024.0))
    return gnuplot(HEAD % path + 'set title "Gateway RSS against queued jobs (SQLite)"\n'
                   'set xlabel "queued jobs"\nset ylabel "RSS (MB)"\nset yrange [0:*]\nset key bottom right\n'
                   'set format x "%%.0s%%c"\nplot "%s" using 1:2 with linespoints title "RSS", '
                   '64 with lines dashtype 2 title "target 64 MB"\n' % data, [data], path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plots", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--failed", default="")
    ap.add_argument("--missed", default="")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    w = a.work
    os.makedirs(a.plots, exist_ok=True)
    o = []
    checks = []

    o.append("# Benchmark results\n")
    o.append("Written by `make bench` (bench/all.sh, bench/results.py); the method and the "
             "knobs are in [README.md](README.md).\n")
    o.append("| | |\n|---|---|")
    o.append("| machine | %s |" % machine())
    o.append("| date | %s |" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    o.append("| commit | %s |" % commit(root))
    o.append("| mode | %s |" % ("BENCH_QUICK=1: one short round per step, 100,000 queued; a check of "
                                 "the chain, not figures to quote" if a.quick else
                                 "full: medians of 3 interleaved rounds, 1,000,000 queued"))
    o.append("| raw data | `%s` |\n" % os.path.relpath(w, root))
    if a.failed.strip():
        o.append("**Steps that failed:** %s (their figures are missing or partial).\n" % a.failed.strip())
    if a.missed.strip():
        o.append("Steps that missed one of their own checks (their tables below say which): %s.\n"
                 % a.missed.strip())

    # 1. Ingest, full and half load.
    ingest = {}
    for load in ("full", "half"):
        rows = tsv(os.path.join(w, "ingest-%s" % load, "results.tsv"))
        if rows:
            ingest[load] = {k: by_target(rows, k) for k in
                            ("rps", "p50_us", "p99_us", "cpu_s_per_10k", "rss_peak_kb", "cpu_pct")}
    if ingest:
        o.append("## Ingest: distinct signed Extend webhooks\n")
        o.append("Full load: wrk flat out, 2 threads, 64 connections. Half load: each connection "
                 "paced to half the rate its target reached in the warm-up. CPU is user + sys of "
                 "all the target's threads, from /proc, per 10,000 accepted requests.\n")
        o.append("| target | load | req/s | p50 | p99 | CPU s / 10k accepted | peak RSS | vs peer memory "
                 "| vs peer SQLite | vs hello |")
        o.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in TARGETS:
            for load, m in ingest.items():
                if t not in m["rps"]:
                    continue
                r = m["rps"]
                o.append("| %s | %s | %s | %s ms | %s ms | %s | %s MB | %s | %s | %s |" % (
                    LABEL[t], load, fmt(r[t]), fmt(m["p50_us"][t] and m["p50_us"][t] / 1000, "%.2f"),
                    fmt(m["p99_us"][t] and m["p99_us"][t] / 1000, "%.2f"),
                    fmt(m["cpu_s_per_10k"][t], "%.2f"), fmt(m["rss_peak_kb"][t] and m["rss_peak_kb"][t] / 1024),
                    ratio(r[t], r.get("peer-memory")), ratio(r[t], r.get("peer-sqlite")),
                    ratio(r[t], r.get("hello"))))
        o.append("")
        f = ingest.get("full")
        if f and "gateway" in f["cpu_s_per_10k"]:
            g = f["cpu_s_per_10k"]["gateway"]
            for peer in ("peer-memory", "peer-sqlite"):
                if f["cpu_s_per_10k"].get(peer):
                    o.append("- CPU per 10,000 accepted at full load, gateway against %s: %.2f s against "
                             "%.2f s (%.2fx)." % (LABEL[peer], g, f["cpu_s_per_10k"][peer],
                                                  g / f["cpu_s_per_10k"][peer]))
            o.append("")

    # 2. Throughput against connections.
    rps = {}
    for c in CONNS:
        rows = tsv(os.path.join(w, "conns-%d" % c, "results.tsv"))
        if rows:
            rps[c] = by_target(rows, "rps")
    if rps:
        o.append("## Throughput against connections\n")
        o.append("| connections | " + " | ".join(LABEL[t] for t in TARGETS) + " | gateway / hello |")
        o.append("|---:|" + "---:|" * (len(TARGETS) + 1))
        for c in CONNS:
            if c in rps:
                o.append("| %d | %s | %s |" % (c, " | ".join(fmt(rps[c].get(t)) for t in TARGETS),
                                               ratio(rps[c].get("gateway"), rps[c].get("hello"))))
        o.append("")
        if plot_conns(rps, os.path.join(a.plots, "throughput-connections.png"), w):
            o.append("![throughput against connections](plots/throughput-connections.png)\n")

    # Latency plots from the ingest runs.
    for load in ("half", "full"):
        d = latency_dist(os.path.join(w, "ingest-%s" % load))
        name = "latency-%s-load.png" % load
        if d and plot_latency(d, "Ingest latency distribution, %s load" % load, os.path.join(a.plots, name), w):
            o.append("![latency at %s load](plots/%s)\n" % (load, name))

    # 3. Drain.
    rows = tsv(os.path.join(w, "drain", "results.tsv"))
    if rows:
        dr = {k: by_target(rows, k) for k in ("drain_rate", "lat_p50_ms", "lat_p99_ms")}
        o.append("## Drain and accept-to-DELETE latency (extend-sim, TLS, no rate limit, 16 in flight)\n")
        o.append("| target | DELETEs/s | vs peer memory | vs peer SQLite | accept-to-DELETE p50 | p99 |")
        o.append("|---|---:|---:|---:|---:|---:|")
        for t in TARGETS:
            if t in dr["drain_rate"]:
                o.append("| %s | %s | %s | %s | %s ms | %s ms |" % (
                    LABEL[t], fmt(dr["drain_rate"][t]), ratio(dr["drain_rate"][t], dr["drain_rate"].get("peer-memory")),
                    ratio(dr["drain_rate"][t], dr["drain_rate"].get("peer-sqlite")),
                    fmt(dr["lat_p50_ms"][t], "%.2f"), fmt(dr["lat_p99_ms"][t], "%.2f")))
        o.append("")

    # 4. Backlog.
    bl = {}
    for d in bench_lines(os.path.join(w, "backlog", "backlog.txt")):
        if "name" in d:
            bl[d["name"]] = d
        else:
            bl.update(d)
    if bl:
        n = int(bl.get("load_items", 0))
        o.append("## A backlog of %s queued (SQLite)\n" % format(n, ","))
        o.append("Loaded through the API as signed internal batches of 1,000 with the dispatcher paused.\n")
        o.append("| measure | result | target |")
        o.append("|---|---:|---|")

        def row(name, value, target, ok):
            o.append("| %s | %s | %s |" % (name, value, target))
            if ok is not None:
                checks.append((name, ok, value))
        load_rate = num(bl.get("load_items_per_s"))
        row("load rate", fmt(load_rate) + " items/s", "-", None)
        rss = num(bl.get("rss_kb_at_n"))
        row("RSS with all queued", fmt(rss and rss / 1024, "%.1f") + " MB", "< 64 MB", rss is not None and rss < 65536)
        peak = num(bl.get("load_peak_rss_kb"))
        row("peak RSS during the load", fmt(peak and peak / 1024, "%.1f") + " MB", "< 64 MB",
            peak is not None and peak < 65536)
        wal = num(bl.get("load_peak_wal_bytes"))
        row("peak WAL during the load", fmt(wal and wal / 1e6, "%.1f") + " MB",
            "bounded (checkpoints keep up; < 64 MB)", wal is not None and wal < 64e6)
        row("database file after the load", fmt(num(bl.get("load_db_bytes")) and num(bl.get("load_db_bytes")) / 1e6,
                                                 "%.0f") + " MB", "-", None)
        for k, label in (("readyz_after_clean_stop_s", "start to /readyz 200 after a clean stop"),
                         ("readyz_after_kill9_s", "start to /readyz 200 after kill -9")):
            v = num(bl.get(k))
            row(label, fmt(v, "%.2f") + " s", "< 2 s", v is not None and v < 2)
        for name, label in (("show_queue", "ctl show queue"), ("list_queued_1000", "ctl list queued --limit 1000"),
                            ("admin_list_queued_1000", "GET /admin/deletions?state=queued&limit=1000"),
                            ("list_dead_1000", "ctl list dead --limit 1000"),
                            ("admin_queue", "GET /admin/queue"), ("metrics", "GET /metrics"),
                            ("deletion_get", "GET /v1/deletions/{id}")):
            if name in bl:
                v = num(bl[name].get("median_ms"))
                row(label + " (median of 5)", fmt(v, "%.1f") + " ms (max %s)" % bl[name].get("max_ms"),
                    "< 50 ms", v is not None and v < 50)
        cn, c1 = num(bl.get("claim_at_n_cpu_us_per_round")), num(bl.get("claim_at_1k_cpu_us_per_round"))
        row("claim of 16 and their release, CPU, at %s against 1,000 queued" % format(n, ","),
            "%s us against %s us (%s)" % (fmt(cn), fmt(c1), ratio(cn, c1)), "within 1.5x",
            cn is not None and c1 and cn / c1 <= 1.5)
        wn, w1 = num(bl.get("claim_at_n_claim_median_us")), num(bl.get("claim_at_1k_claim_median_us"))
        row("claim of 16, wall time with its commit (median)", "%s us against %s us (%s)" % (
            fmt(wn), fmt(w1), ratio(wn, w1)), "-", None)
        for d in bench_lines(os.path.join(w, "backlog", "backlog.txt")):
            if "drain_rate_configured" in d:
                r, m = float(d["drain_rate_configured"]), float(d["drain_rate_measured"])
                row("drain at a configured %g/s" % r, "%.2f/s (%+.1f%%)" % (m, 100 * (m - r) / r),
                    "within 5%", abs(m - r) <= 0.05 * r)
        o.append("")
        if plot_rss(os.path.join(w, "backlog", "rss.tsv"), os.path.join(a.plots, "rss-queued.png"), w):
            o.append("![RSS against queued jobs](plots/rss-queued.png)\n")

    # 5. Bulk ingest.
    bulk = bench_lines(os.path.join(w, "bulk", "bulk.txt"))
    if bulk:
        o.append("## Bulk ingest: internal batches of 1,000 items\n")
        o.append("Dispatcher paused; each 202 is one fsynced commit of its rows and audit records. "
                 "queue_bench: the same batches straight into the queue (no HTTP, signature or JSON), "
                 "the storage limit.\n")
        o.append("| connections | gateway items/s | queue_bench items/s | HTTP path / storage limit "
                 "| gateway CPU us per item | queue_bench CPU us per item | gateway batch p50 / p99 |")
        o.append("|---:|---:|---:|---:|---:|---:|---:|")
        best = None
        for c in sorted({int(d["conns"]) for d in bulk}):
            g = [d for d in bulk if d["what"] == "gateway" and int(d["conns"]) == c]
            q = [d for d in bulk if d["what"] == "queue_bench" and int(d["conns"]) == c]
            gi, qi = med([num(d["items_per_s"]) for d in g]), med([num(d["items_per_s"]) for d in q])
            best = max(best or 0, gi or 0)
            o.append("| %d | %s | %s | %s | %s | %s | %s / %s ms |" % (
                c, fmt(gi), fmt(qi), ratio(gi, qi), fmt(med([num(d["cpu_us_per_item"]) for d in g]), "%.1f"),
                fmt(med([num(d["cpu_us_per_item"]) for d in q]), "%.1f"),
                fmt(med([num(d["p50_us"]) for d in g]) and med([num(d["p50_us"]) for d in g]) / 1000),
                fmt(med([num(d["p99_us"]) for d in g]) and med([num(d["p99_us"]) for d in g]) / 1000)))
        o.append("")
        checks.append(("bulk ingest >= 100,000 items/s", (best or 0) >= 100000, fmt(best) + " items/s"))

    if checks:
        o.append("## Targets\n")
        o.append("| target | result | measured |")
        o.append("|---|---|---|")
        for name, ok, v in checks:
            o.append("| %s | %s | %s |" % (name, "PASS" if ok else "MISSED", v))
        o.append("")
    for md in ("ingest-full.md", "ingest-half.md", "drain.md"):
        p = os.path.join(w, md)
        if os.path.exists(p):
            o.append("<details><summary>%s, as the step wrote it</summary>\n" % md)
            o.append(re.sub(r"^## ", "### ", open(p).read(), flags=re.M))
            o.append("</details>\n")
    text = "\n".join(o)
    with open(a.out, "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
