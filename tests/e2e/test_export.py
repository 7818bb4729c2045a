"""What the data-protection officer and the operator reach for, end to end
on the real binary: `ctl export` (CSV and JSON Lines, a few thousand rows
over many pages, filters, receipts), `ctl find`, tables on a terminal, and
receipts signed by a key the gateway made itself, which survives a restart."""
import csv
import io
import json
import time
import os
import pty
import stat
import subprocess

import harness as h

N_BATCHES = 3  # of 1000 items each, from crm; plus webhooks and billing requests


def send_many(g):
    """Deletions of several kinds; returns {deletion id: what was sent}."""
    sent = {}
    for b in range(N_BATCHES):
        items = [{"resource": "file" if i % 3 == 0 else "extract_run", "id": "exr_b%d_%04d" % (b, i),
                  "reason": ["GDPR art. 17, ticket \"%d\"" % i, "=HYPERLINK(\"x\")", "ünïcode; \"quoted\", comma", "plain"][i % 4]}
                 for i in range(1000)]
        msg = "msg_batch_%d" % b
        r = g.erasure({"items": items}, msg_id=msg)
        assert r.status == 202, r
        for item, d in zip(items, r.json()["deletions"]):
            sent[d["id"]] = dict(item, source="crm", key=msg)
    for i in range(20):
        r = g.webhook(h.extract_event("exr_wh_%02d" % i, event_id="evt_exp_%02d" % i))
        assert r.status == 200, r
        for d in r.json()["deletions"]:
            sent[d["id"]] = {"resource": d["resource"], "id": d["resource_id"],
                             "reason": "extend webhook extract_run.processed", "source": "extend",
                             "key": "evt_exp_%02d" % i}
    r = g.erasure({"resource": "file", "id": "file_billing_1", "reason": "offboarding"},
                  secret=h.OTHER_SECRET, msg_id="msg_billing_1")
    assert r.status == 202, r
    sent[r.json()["deletions"][0]["id"]] = {"resource": "file", "id": "file_billing_1", "reason": "offboarding",
                                            "source": "billing", "key": "msg_billing_1"}
    return sent


def settle(g, n):
    h.wait_for(lambda: (lambda q: q["jobs_pending"] == 0 and q["deletions"]["deleted"] == n)(g.queue()),
               120, 0.2, what="every deletion done")


class ExportTest(h.GatewayTestCase):
    """ctl export and find, tables, and the gateway's own receipt key."""

    def test_export_of_thousands_in_csv_and_jsonl_matches_what_was_sent(self):
        sim = self.sim()
        g = self.gateway(sim, overrides={"extend": {"max_in_flight": 16}})
        sent = send_many(g)
        settle(g, len(sent))
        r = g.ctl("export", "--format", "jsonl")
        rows = [json.loads(l) for l in r.stdout.decode().splitlines()]
        assert len(rows) == len(sent) == len({x["id"] for x in rows}), (len(rows), len(sent))
        accepted = [x["accepted_at"] for x in rows]
        assert accepted == sorted(accepted), "not in accepted order"
        for x in rows:
            want = sent[x["id"]]
            assert (x["resource"], x["resource_id"], x["reason"]) == (want["resource"], want["id"], want["reason"]), x
            by = x["requested_by"]
            assert (by.get("client_id") or "extend") == want["source"], x
            assert (by.get("webhook_id") or by.get("event_id")) == want["key"], x
            assert x["state"] == "deleted" and x["audit"]["seq"] > 0 and len(x["audit"]["mac"]) == 64, x
            assert x["last_upstream_request_id"], x
            h.openapi_validate(x, {"$ref": "#/components/schemas/ExportRow"}, "jsonl row")
        # Each row carries the request id Extend (the simulator) gave its DELETE.
        upstream = [x["last_upstream_request_id"] for x in rows]
        assert len(set(upstream)) == len(rows) and all(u.startswith("req_sim") for u in upstream)

        r = g.ctl("export")  # CSV is the default
        text = r.stdout.decode()
        assert text.startswith("deletion_id,state,resource,resource_id,source,request_key,reason,"), text[:200]
        table = list(csv.DictReader(io.StringIO(text, newline="")))
        assert [t["deletion_id"] for t in table] == [x["id"] for x in rows]
        for t in table:
            want = sent[t["deletion_id"]]
            reason = want["reason"]
            if reason[0] in "=+-@":
                reason = "'" + reason  # a spreadsheet must not run it
            assert (t["resource_id"], t["source"], t["request_key"], t["reason"]) == \
                (want["id"], want["source"], want["key"], reason), (t, want)
            assert t["audit_seq"].isdigit() and len(t["audit_mac"]) == 64 and t["extend_request_id"], t

        # Filters: a window, a source, a state, one resource; a bad one is refused.
        mid = rows[1500]["accepted_at"]
        later = g.ctl("export", "--format", "jsonl", "--since", mid).stdout.decode().splitlines()
        assert len(later) == sum(1 for x in rows if x["accepted_at"] >= mid) and len(later) < len(rows)
        early = g.ctl("export", "--format", "jsonl", "--until", mid).stdout.decode().splitlines()
        assert len(early) + len(later) == len(rows)
        billing = g.ctl("export", "--format", "jsonl", "--source", "billing").stdout.decode().splitlines()
        assert [json.loads(l)["resource_id"] for l in billing] == ["file_billing_1"]
        assert g.ctl("export", "--format", "jsonl", "--state", "dead").stdout == b""
        one = g.ctl("export", "--format", "jsonl", "--resource-id", "exr_b1_0007").stdout.decode().splitlines()
        assert len(one) == 1 and json.loads(one[0])["resource_id"] == "exr_b1_0007"
        bad = g.ctl("export", "--since", "last tuesday", check=False)
        assert bad.returncode == 1 and b"invalid_query" in bad.stderr, bad
        assert g.ctl("export", "--format", "xml", check=False).returncode == 2

        # With receipts: each verifies offline with the gateway's public key.
        r = g.ctl("export", "--format", "jsonl", "--source", "extend", "--receipts")
        receipted = [json.loads(l) for l in r.stdout.decode().splitlines()]
        assert len(receipted) == 20
        pub = os.path.join(self.dir, "pub.pem")
        with open(pub, "wb") as f:
            f.write(h.run_cli("receipt", "pubkey", "-c", g.config_path, env=g.env, check=True).stdout)
        for x in receipted[:5]:
            assert x["receipt"]["statement"]["deletion_id"] == x["id"]
            v = h.run_cli("receipt", "verify", "--pubkey", pub, stdin=json.dumps(x["receipt"]).encode())
            assert v.returncode == 0 and b"receipt ok" in v.stdout, v
        csv_r = list(csv.DictReader(io.StringIO(g.ctl("export", "--source", "extend", "--receipts").stdout.decode(),
                                                newline="")))
        assert json.loads(csv_r[0]["receipt"])["statement"]["deletion_id"] == csv_r[0]["deletion_id"]

    def test_find_lists_every_deletion_of_one_resource(self):
        sim = self.sim()
        g = self.gateway(sim)
        first = g.erasure({"resource": "file", "id": "file_twice", "reason": "first"}).json()["deletions"][0]["id"]
        g.wait_state(first, "deleted")
        second = g.erasure({"resource": "file", "id": "file_twice", "reason": "again"}).json()["deletions"][0]["id"]
        g.wait_state(second, ("deleted", "not_found"))
        g.erasure({"resource": "file", "id": "file_other"})
        found = json.loads(g.ctl("find", "file_twice").stdout)
        assert found["count"] == 2 and [d["id"] for d in found["deletions"]] == [first, second], found
        assert json.loads(g.ctl("find", "file_nobody").stdout)["count"] == 0
        table = g.ctl("find", "file_twice", "--table").stdout.decode()
        assert table.splitlines()[0].split()[:4] == ["ID", "STATE", "RESOURCE", "RESOURCE_ID"], table
        assert first in table and second in table and "(2 deletions)" in table, table

    def test_ctl_prints_a_table_on_a_terminal_and_json_when_asked(self):
        g = self.gateway()
        master, slave = pty.openpty()
        try:
            p = subprocess.run([h.GATEWAY_BIN, "ctl", "-c", g.config_path, "show", "queue"], env=g.env,
                               stdout=slave, stderr=subprocess.PIPE, timeout=30)
            os.close(slave)
            slave = None
            out = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        assert p.returncode == 0, p.stderr
        text = out.decode()
        assert "deletions.queued" in text and "breaker_open" in text and "{" not in text, text
        js = json.loads(g.ctl("show", "queue", "--json").stdout)
        assert js["deletions"]["queued"] == 0
        assert json.loads(g.ctl("show", "queue").stdout)["paused"] is False  # a pipe gets JSON

    def test_retry_all_dead_moves_more_than_one_batch(self):
        """One call moves about 10000 of the dead (a batch); ctl asks until all moved."""
        import sqlite3
        g = self.gateway()
        assert g.admin("POST", "/admin/pause").status == 200
        n = 12000
        for b in range(0, n, 1000):
            r = g.erasure({"items": [{"resource": "file", "id": "file_dead_%05d" % i} for i in range(b, min(n, b + 1000))]})
            assert r.status == 202, r
        g.stop()
        # Dying takes give_up_after_seconds of failures: move them by hand, and
        # their counts with them, as the queue's own code would. Finished now,
        # so retention does not prune them.
        db = sqlite3.connect(os.path.join(self.dir, "queue.db"))
        db.execute("UPDATE jobs SET state = 'dead', completed_ms = ? WHERE state = 'queued'",
                   (int(time.time() * 1000),))
        db.execute("UPDATE counts SET n = n + ? * (CASE name WHEN 'dead' THEN 1 ELSE -1 END)"
                   " WHERE name IN ('dead', 'queued', 'jobs_pending')", (n,))
        db.commit()
        db.close()
        g.start()
        assert g.queue()["deletions"]["dead"] == n
        r = g.ctl("retry", "--all-dead")
        assert json.loads(r.stdout)["changed"] == n, r.stdout
        assert g.queue()["deletions"]["queued"] == n and g.queue()["deletions"]["dead"] == 0

    def test_receipts_work_with_a_generated_key_that_survives_a_restart(self):
        sim = self.sim()
        g = self.gateway(sim, overrides={"receipts": {"signing_key": None}})
        key_path = os.path.join(self.dir, "receipt-key.pem")
        st = os.stat(key_path)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        made = [json.loads(l) for l in g.logs().splitlines() if "receipts: signing with key id" in l]
        assert len(made) == 1 and "(generated " in made[0]["msg"], made
        key_id = made[0]["msg"].split("key id ")[1].split()[0]
        pub1 = h.run_cli("receipt", "pubkey", "-c", g.config_path, env=g.env, check=True).stdout
        did = g.erasure({"resource": "extract_run", "id": "exr_gen_1", "reason": "gdpr"}).json()["deletions"][0]["id"]
        g.wait_state(did, "deleted")
        r = g.get_deletion(did, suffix="/receipt")
        assert r.status == 200 and r.json()["key_id"] == key_id, r
        receipt_file = os.path.join(self.dir, "receipt.json")
        with open(receipt_file, "wb") as f:
            f.write(r.body)
        with open(key_path, "rb") as f:
            key_bytes = f.read()

        g.restart()
        with open(key_path, "rb") as f:
            assert f.read() == key_bytes, "the key changed across a restart"
        again = [l for l in g.logs().splitlines() if "receipts: signing with key id %s" % key_id in l]
        assert len(again) == 2 and "(from " in json.loads(again[1])["msg"], again
        assert h.run_cli("receipt", "pubkey", "-c", g.config_path, env=g.env, check=True).stdout == pub1
        # The receipt from before the restart, and a new one, verify: from a file, from stdin, with -c.
        v = h.run_cli("receipt", "verify", "-c", g.config_path, receipt_file, env=g.env)
        assert v.returncode == 0 and v.stdout == b"receipt ok\n", v
        r2 = g.get_deletion(did, suffix="/receipt")
        v = h.run_cli("receipt", "verify", "-c", g.config_path, stdin=r2.body, env=g.env)
        assert v.returncode == 0, v
        tampered = dict(r2.json(), key_id="0000000000000000")
        v = h.run_cli("receipt", "verify", "-c", g.config_path, stdin=json.dumps(tampered).encode(), env=g.env)
        assert v.returncode == 1 and b"INVALID" in v.stdout, v
        assert key_bytes.decode() not in g.logs()

        # A key file others may read is refused at start, as sshd refuses one.
        g.stop()
        os.chmod(key_path, 0o644)
        p = subprocess.run([h.GATEWAY_BIN, "serve", "-c", g.config_path], env=g.env, capture_output=True, timeout=30)
        assert p.returncode != 0 and b"chmod 600" in p.stdout + p.stderr, p
        os.chmod(key_path, 0o600)

    def test_receipts_can_be_turned_off(self):
        sim = self.sim()
        g = self.gateway(sim, overrides={"receipts": {"signing_key": None, "enabled": False}})
        assert not os.path.exists(os.path.join(self.dir, "receipt-key.pem"))
        did = g.erasure({"resource": "extract_run", "id": "exr_off_1"}).json()["deletions"][0]["id"]
        g.wait_state(did, "deleted")
        r = g.get_deletion(did, suffix="/receipt")
        assert r.status == 404 and r.json()["error"]["code"] == "receipts_disabled", r
        r = g.admin("GET", "/admin/export?receipts=true")
        assert r.status == 409 and r.json()["error"]["code"] == "receipts_disabled", r
        p = h.run_cli("receipt", "pubkey", "-c", g.config_path, env=g.env)
        assert p.returncode == 1 and b"off" in p.stderr, p


if __name__ == "__main__":
    h.main()
