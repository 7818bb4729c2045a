#!/usr/bin/env python3
"""Writes validly signed, all-distinct Extend webhooks as raw HTTP/1.1
requests for wrk (bench/webhooks.lua), one file per wrk thread so that the
threads never send the same event twice.

Each request is an `extract_run.processed` event with a fresh eventId, run
id and file id, about 1 KB of realistic extraction output, and the headers
Extend sends: x-extend-request-timestamp (now) and
x-extend-request-signature = hex(HMAC-SHA256(secret, "v0:" + ts + ":" + body)).
Timestamps are "now", so generate right before each run (the gateway and
the SDK reject anything older than 300 s).

File format (read by webhooks.lua): for each request, its length in bytes
in decimal, a newline, then the raw request bytes.

Usage: gen_webhooks.py --secret S --count N [--threads T] [--host H:P]
                       [--path /webhooks/extend] --out PREFIX
writes PREFIX.0 ... PREFIX.(T-1), N requests in all.

With --items K, each request is instead an internal erasure batch for
POST /v1/deletions: {"items": [K distinct extract runs]}, signed the
Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature
= "v1," + base64(HMAC-SHA256(key, id + "." + ts + "." + body)), key the
base64 after "whsec_" in --secret).
"""
import base64
import argparse
import hashlib
import hmac
import os
import random
import sys
import time

# About 1 KB of output, shaped like an invoice extraction: values, then
# per-field confidence metadata, as Extend's extract runs carry them.
OUTPUT = (
    '{"value":{"invoice_number":"INV-%(n)s","invoice_date":"2026-11-02",'
    '"due_date":"2026-12-02","currency":"EUR",'
    '"vendor":{"name":"Nordlicht Logistik GmbH","vat_id":"DE298765432",'
    '"address":"Hafenstrasse 17, 20457 Hamburg"},'
    '"customer":{"name":"Acme Retail B.V.","reference":"PO-%(n)s"},'
    '"line_items":[{"description":"Pallet freight Hamburg-Rotterdam","quantity":12,'
    '"unit_price":84.5,"amount":1014.0},{"description":"Customs clearance",'
    '"quantity":1,"unit_price":145.0,"amount":145.0},{"description":"Fuel surcharge",'
    '"quantity":1,"unit_price":61.2,"amount":61.2}],"subtotal":1220.2,"tax":231.84,'
    '"total":1452.04},"metadata":{"invoice_number":{"ocrConfidence":0.998,'
    '"logprobsConfidence":0.991,"citations":[{"page":1,"polygon":[[412,88],[560,88],'
    '[560,104],[412,104]]}]},"total":{"ocrConfidence":0.987,"logprobsConfidence":0.976,'
    '"citations":[{"page":2,"polygon":[[430,702],[540,702],[540,720],[430,720]]}]},'
    '"vendor":{"ocrConfidence":0.995,"logprobsConfidence":0.982}}}'
)

BODY = (
    '{"eventId":"evt_%(n)s","eventType":"extract_run.processed",'
    '"payload":{"object":"extract_run","id":"exr_%(n)s","status":"PROCESSED",'
    '"extractor":{"id":"ex_bench","version":"3"},"parseRunId":"pr_%(n)s",'
    '"file":{"id":"file_%(n)s","name":"invoice-%(n)s.pdf"},'
    '"output":' + OUTPUT + ',"usage":{"credits":2},'
    '"createdAt":"2026-11-29T09:00:00Z","updatedAt":"2026-11-29T09:00:07Z"}}'
)


ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def rand_id(rng):
    x = rng.getrandbits(120)
    out = []
    for _ in range(20):
        x, d = divmod(x, 62)
        out.append(ALNUM[d])
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secret", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--path", default="/webhooks/extend")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timestamp", type=int, default=None)
    ap.add_argument("--items", type=int, default=0)
    a = ap.parse_args()
    if not (1 <= a.count <= 5_000_000 and 1 <= a.threads <= 256 and 0 <= a.items <= 10000):
        sys.exit("gen_webhooks: --count must be 1..5000000, --threads 1..256, --items 0..10000")
    if a.items:
        return internal(a)

    key = a.secret.encode()
    ts = str(a.timestamp if a.timestamp is not None else int(time.time()))
    # Ids look like Extend's ("exr_Xj8mK2pL9nR4vT7qY5wZ"): 20 random
    # alphanumerics. Sequential ids would flatter any B-tree keyed on them
    # (every insert on the same page); real ones land at random.
    rng = random.Random(os.urandom(16))
    seen = set()
    head = (
        "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        "User-Agent: Extend-Webhooks/1.0\r\nx-extend-api-version: 2026-02-09\r\n"
        "x-extend-request-timestamp: %s\r\n" % (a.path, a.host, ts)
    )
    prefix = ("v0:" + ts + ":").encode()
    per = [a.count // a.threads + (1 if t < a.count % a.threads else 0) for t in range(a.threads)]
    n = 0
    for t in range(a.threads):
        with open("%s.%d" % (a.out, t), "wb") as f:
            chunks = []
            for _ in range(per[t]):
                uid = rand_id(rng)
                while uid in seen:
                    uid = rand_id(rng)
                seen.add(uid)
                body = (BODY % {"n": uid}).encode()
                sig = hmac.new(key, prefix + body, hashlib.sha256).hexdigest()
                req = (
                    head
                    + "x-extend-request-signature: %s\r\nContent-Length: %d\r\n\r\n" % (sig, len(body))
                ).encode() + body
                chunks.append(b"%d\n" % len(req))
                chunks.append(req)
                n += 1
                if len(chunks) >= 4096:
                    f.write(b"".join(chunks))
                    chunks = []
            f.write(b"".join(chunks))
    print("gen_webhooks: %d requests in %d files, ts=%s" % (n, a.threads, ts), file=sys.stderr)


def internal(a):
    """Internal erasure batches of a.items distinct runs each."""
    secret = a.secret[len("whsec_"):] if a.secret.startswith("whsec_") else a.secret
    key = base64.b64decode(secret)
    ts = str(a.timestamp if a.timestamp is not None else int(time.time()))
    rng = random.Random(os.urandom(16))
    path = a.path if a.path != "/webhooks/extend" else "/v1/deletions"
    head = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            "webhook-timestamp: %s\r\n" % (path, a.host, ts))
    per = [a.count // a.threads + (1 if t < a.count % a.threads else 0) for t in range(a.threads)]
    for t in range(a.threads):
        with open("%s.%d" % (a.out, t), "wb") as f:
            for _ in range(per[t]):
                items = ",".join('{"resource":"extract_run","id":"exr_%s","reason":"retention sweep"}'
                                 % rand_id(rng) for _ in range(a.items))
                body = ('{"items":[%s]}' % items).encode()
                msg_id = "msg_" + rand_id(rng)
                mac = hmac.new(key, ("%s.%s." % (msg_id, ts)).encode() + body, hashlib.sha256).digest()
                req = (head + "webhook-id: %s\r\nwebhook-signature: v1,%s\r\n"
                       "Content-Length: %d\r\n\r\n" % (msg_id, base64.b64encode(mac).decode(), len(body))
                       ).encode() + body
                f.write(b"%d\n" % len(req))
                f.write(req)
    print("gen_webhooks: %d batches of %d items in %d files, ts=%s" % (a.count, a.items, a.threads, ts),
          file=sys.stderr)


if __name__ == "__main__":
    main()
