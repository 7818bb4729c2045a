"""Several Extend accounts in one gateway, end to end: two simulators at
once, each requiring its own token, each account with its own webhook
endpoint and secret, workspace header, rate, breaker and pause; and a queue
from the schema before accounts, whose jobs go to the default account."""
import datetime
import os
import sqlite3

import harness as h

EU_TOKEN = "sk_e2e_eu_token_7d1f0a"
US_TOKEN = "sk_e2e_us_token_93b2c4"
EU_WSS = "wss_e2e_eu_webhook_secret_aa11"
US_WSS = "wss_e2e_us_webhook_secret_bb22"
LEGACY = ("extend", "webhooks.signing_secrets")


def iso_ms(s):
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000)


def account(aid, sim, token_env, wss_env, **kw):
    a = {"id": aid, "base_url": sim.url, "ca_file": os.path.join(h.certs(), "ca.pem"),
         "token": "env:" + token_env, "workspace_id": "ws_" + aid, "timeout_ms": 5000,
         "rate_per_second": 0, "max_in_flight": 4, "signing_secrets": ["env:" + wss_env]}
    a.update(kw)
    return a


class AccountsTest(h.GatewayTestCase):
    """Two accounts: "eu" (the first, so the default) and "us"."""

    def two(self, eu=None, us=None, clients=None):
        self.eu = self.sim(token=EU_TOKEN)
        self.us = self.sim(token=US_TOKEN)
        over = {"accounts": [account("eu", self.eu, "EU_TOKEN", "EU_WSS", **(eu or {})),
                             account("us", self.us, "US_TOKEN", "US_WSS", **(us or {}))]}
        if clients is not None:
            over["clients"] = clients
        return self.gateway(overrides=over, drop=LEGACY,
                            env={"EU_TOKEN": EU_TOKEN, "US_TOKEN": US_TOKEN, "EU_WSS": EU_WSS,
                                 "US_WSS": US_WSS})

    def webhook(self, g, path, run_id, secret):
        body = h.extract_event(run_id)
        return h.request(g.port, "POST", path, body, h.sign_extend(body, secret=secret))

    def test_webhooks_on_each_path_land_at_their_account_with_its_token_and_workspace(self):
        g = self.two()
        r = self.webhook(g, "/webhooks/extend/us", "exr_us1", US_WSS)
        assert r.status == 200, r
        dus = r.json()["deletions"][0]
        assert dus["account"] == "us", dus
        # The bare path is the default (first) account's, with its secret.
        r = self.webhook(g, "/webhooks/extend", "exr_eu1", EU_WSS)
        assert r.status == 200, r
        deu = r.json()["deletions"][0]
        r = self.webhook(g, "/webhooks/extend/eu", "exr_eu2", EU_WSS)
        assert r.status == 200, r
        deu2 = r.json()["deletions"][0]
        # Each endpoint verifies with its own account's secrets only.
        assert self.webhook(g, "/webhooks/extend/us", "exr_x", EU_WSS).status == 401
        assert self.webhook(g, "/webhooks/extend", "exr_x", US_WSS).status == 401
        r = self.webhook(g, "/webhooks/extend/nope", "exr_x", EU_WSS)
        assert r.status == 404 and r.json()["error"]["code"] == "not_found", r
        for d in (dus, deu, deu2):
            g.wait_state(d["id"], "deleted")
        assert g.show(dus["id"])["account"] == "us"
        assert g.show(deu["id"])["account"] == "eu"
        us = [q for q in self.us.deletes() if q["status"] == 200]
        eu = [q for q in self.eu.deletes() if q["status"] == 200]
        assert sorted(q["id"] for q in us) == ["exr_us1"], us
        assert sorted(q["id"] for q in eu) == ["exr_eu1", "exr_eu2"], eu
        for q in us:
            assert q["headers"]["authorization"] == "Bearer " + US_TOKEN, q
            assert q["headers"]["x-extend-workspace-id"] == "ws_us", q
        for q in eu:
            assert q["headers"]["authorization"] == "Bearer " + EU_TOKEN, q
            assert q["headers"]["x-extend-workspace-id"] == "ws_eu", q
        # The audit records name the account (the default one's too: it is "eu").
        import json
        with open(os.path.join(self.dir, "audit.jsonl")) as f:
            recs = [json.loads(line) for line in f]
        for d, acct in ((dus, "us"), (deu, "eu")):
            mine = [x for x in recs if x.get("deletion_id") == d["id"] or
                    (x.get("resource_id") == d["resource_id"] and x["event"] == "deleted")]
            assert mine and all(x.get("account") == acct for x in mine), mine
        # No simulator ever saw the other's token (it would have answered 401).
        assert not [q for q in self.us.deletes() + self.eu.deletes() if q["status"] == 401]

    def test_internal_requests_route_by_account_and_clients_are_held_to_theirs(self):
        clients = [{"id": "crm", "secrets": ["env:DG_CRM_SECRET"]},
                   {"id": "billing", "secrets": ["file:" + os.path.join(self.dir, "billing.secret")],
                    "accounts": ["eu"]}]
        g = self.two(clients=clients)
        r = g.erasure({"resource": "file", "id": "file_us1", "account": "us"})
        assert r.status == 202, r
        d1 = r.json()["deletions"][0]
        assert d1["account"] == "us", d1
        r = g.erasure({"resource": "file", "id": "file_def"})
        assert r.status == 202 and r.json()["deletions"][0]["account"] == "eu", r
        d2 = r.json()["deletions"][0]
        # A batch's account serves its items; an item may name its own.
        r = g.erasure({"account": "us", "items": [{"resource": "file", "id": "file_us2"},
                                                  {"resource": "file", "id": "file_eu2", "account": "eu"}]})
        assert r.status == 202, r
        d3, d4 = r.json()["deletions"]
        assert (d3["account"], d4["account"]) == ("us", "eu"), r.json()
        # The same resource in two accounts is two resources, two DELETEs.
        r = g.erasure({"resource": "file", "id": "file_both", "account": "us"})
        d5 = r.json()["deletions"][0]
        r = g.erasure({"resource": "file", "id": "file_both", "account": "eu"})
        d6 = r.json()["deletions"][0]
        for d in (d1, d2, d3, d4, d5, d6):
            g.wait_state(d["id"], "deleted")
        assert sorted(q["id"] for q in self.us.deletes()) == ["file_both", "file_us1", "file_us2"]
        assert sorted(q["id"] for q in self.eu.deletes()) == ["file_both", "file_def", "file_eu2"]
        # The receipt says in which account the resource was deleted.
        r = g.get_deletion(d1["id"], suffix="/receipt")
        assert r.status == 200 and r.json()["statement"]["account"] == "us", r
        # Unknown: a 400 that names it; nothing is queued.
        r = g.erasure({"items": [{"resource": "file", "id": "f1"},
                                 {"resource": "file", "id": "f2", "account": "apac"}]})
        assert r.status == 400, r
        err = r.json()["error"]
        assert err["code"] == "unknown_account" and "items[1].account" in err["message"] \
            and '"apac"' in err["message"], err
        r = g.erasure({"resource": "file", "id": "f1", "account": "EU"})
        assert r.status == 400 and r.json()["error"]["code"] == "invalid_account", r
        # billing may name eu only.
        r = g.erasure({"resource": "file", "id": "file_b1", "account": "us"}, secret=h.OTHER_SECRET)
        assert r.status == 403 and r.json()["error"]["code"] == "account_not_allowed", r
        r = g.erasure({"resource": "file", "id": "file_b2"}, secret=h.OTHER_SECRET)
        assert r.status == 202 and r.json()["deletions"][0]["account"] == "eu", r
        assert g.queue()["deletions"]["queued"] + g.queue()["deletions"]["in_flight"] <= 1

    def test_a_401_on_one_account_leaves_the_other_draining_at_its_own_rate(self):
        g = self.two(eu={"rate_per_second": 5})
        self.us.faults([{"status": 401, "count": -1, "code": "UNAUTHORIZED"}])
        g.admin("POST", "/admin/pause")
        us_ids = [g.erasure({"resource": "file", "id": "file_u%d" % i, "account": "us"}).json()
                  ["deletions"][0]["id"] for i in range(3)]
        eu_ids = [g.erasure({"resource": "file", "id": "file_e%d" % i}).json()["deletions"][0]["id"]
                  for i in range(10)]
        g.admin("POST", "/admin/resume")
        for d in eu_ids:
            g.wait_state(d, "deleted", timeout=20)
        sent = sorted(iso_ms(g.show(d)["attempt_history"][0]["started_at"]) for d in eu_ids)
        assert sent[-1] - sent[0] >= 1800 - 20, sent  # 10 at 5/s
        for i in range(len(sent)):
            assert len([t for t in sent if sent[i] <= t < sent[i] + 1000]) <= 5, (i, sent)
        for d in us_ids:
            assert g.show(d)["state"] in ("queued", "in_flight"), g.show(d)
        # One bad key: that account is held, the gateway stays ready.
        r = h.request(g.port, "GET", "/readyz")
        ready = r.json()
        assert r.status == 200 and ready["status"] == "ready", ready
        assert ready["accounts"]["us"]["upstream_credentials"] == "rejected", ready
        assert ready["accounts"]["eu"]["upstream_credentials"] == "ok", ready
        metrics = h.request(g.port, "GET", "/metrics").body.decode()
        assert 'dg_account_breaker_open{account="us"} 1' in metrics, metrics
        assert 'dg_account_breaker_open{account="eu"} 0' in metrics
        assert 'dg_account_upstream_attempts_total{account="eu",outcome="deleted"} 10' in metrics
        # Label values are the configured ids, nothing else.
        import re
        assert set(re.findall(r'account="([^"]*)"', metrics)) == {"eu", "us"}
        q = {a["id"]: a for a in g.queue()["accounts"]}
        assert q["us"]["breaker_open"] and not q["eu"]["breaker_open"], q
        self.us.reset()
        for d in us_ids:
            g.wait_state(d, "deleted", timeout=15)
        assert all(x["headers"]["authorization"] == "Bearer " + US_TOKEN for x in self.us.deletes())

    def test_per_account_rate_limits_hold_at_the_same_time(self):
        g = self.two(eu={"rate_per_second": 4}, us={"rate_per_second": 8})
        g.admin("POST", "/admin/pause")
        eu_ids = [g.erasure({"resource": "file", "id": "file_e%d" % i}).json()["deletions"][0]["id"]
                  for i in range(8)]
        us_ids = [g.erasure({"resource": "file", "id": "file_u%d" % i, "account": "us"}).json()
                  ["deletions"][0]["id"] for i in range(16)]
        g.admin("POST", "/admin/resume")
        for d in eu_ids + us_ids:
            g.wait_state(d, "deleted", timeout=20)
        for ids, rate in ((eu_ids, 4), (us_ids, 8)):
            sent = sorted(iso_ms(g.show(d)["attempt_history"][0]["started_at"]) for d in ids)
            assert sent[-1] - sent[0] >= (len(ids) - 1) * 1000 / rate - 20, (rate, sent)
            for i in range(len(sent)):
                assert len([t for t in sent if sent[i] <= t < sent[i] + 1000]) <= rate, (rate, i, sent)
        # Both drained together: us (16 at 8/s) did not wait for eu (8 at 4/s).
        first_us = min(iso_ms(g.show(d)["attempt_history"][0]["started_at"]) for d in us_ids)
        last_eu = max(iso_ms(g.show(d)["attempt_history"][0]["started_at"]) for d in eu_ids)
        assert first_us < last_eu, (first_us, last_eu)

    def test_pause_and_resume_of_one_account(self):
        g = self.two()
        r = g.admin("POST", "/admin/pause?account=us")
        assert r.status == 200 and r.json() == {"paused": True, "account": "us"}, r
        du = g.erasure({"resource": "file", "id": "file_pu", "account": "us"}).json()["deletions"][0]["id"]

        def only_us_held(eu_id):
            de = g.erasure({"resource": "file", "id": eu_id}).json()["deletions"][0]["id"]
            g.wait_state(de, "deleted")
            assert g.show(du)["state"] == "queued"
            ready = h.request(g.port, "GET", "/readyz").json()
            assert ready["accounts"]["us"]["dispatch"] == "paused", ready
            assert ready["accounts"]["eu"]["dispatch"] == "running", ready
        only_us_held("file_pe")
        # The pause outlives a restart, and holds that account alone.
        g.restart()
        assert "dispatching to account us is paused" in g.logs(), g.logs()[-2000:]
        only_us_held("file_pe2")
        r = g.admin("POST", "/admin/pause?account=apac")
        assert r.status == 400 and r.json()["error"]["code"] == "unknown_account", r
        # ctl names the account the same way.
        r = h.run_cli("ctl", "--url", "http://127.0.0.1:%d" % g.admin_port, "--json", "resume",
                      "--account", "us", env={"DG_ADMIN_TOKEN": h.ADMIN_TOKEN})
        assert r.returncode == 0, r
        g.wait_state(du, "deleted")
        r = h.run_cli("ctl", "--url", "http://127.0.0.1:%d" % g.admin_port, "resume", "--account",
                      "US!", env={"DG_ADMIN_TOKEN": h.ADMIN_TOKEN})
        assert r.returncode == 2, r

    def test_a_queue_from_the_previous_schema_upgrades_and_its_jobs_go_to_default(self):
        # The previous schema (v9) is the current one without what v10 added:
        # made here from a queue the legacy form filled, by taking that off.
        sim = self.sim()
        g = self.gateway(sim)
        g.admin("POST", "/admin/pause")
        ids = [g.erasure({"resource": "file", "id": "file_old%d" % i}).json()["deletions"][0]["id"]
               for i in range(3)]
        g.stop()
        db = sqlite3.connect(os.path.join(self.dir, "queue.db"))
        assert db.execute("SELECT schema_version FROM meta").fetchone()[0] == 11
        db.executescript("DROP TABLE paused_accounts;"
                         "DROP INDEX jobs_account_due; ALTER TABLE jobs DROP COLUMN account;"
                         "ALTER TABLE submissions DROP COLUMN account;"
                         "UPDATE meta SET schema_version = 9, paused = 0;")
        db.close()
        g.start()
        for d in ids:
            g.wait_state(d, "deleted")
            assert g.show(d)["account"] == "default"
        # One legacy account's receipts and records read as before: no account.
        r = g.get_deletion(ids[0], suffix="/receipt")
        assert r.status == 200 and "account" not in r.json()["statement"], r
        with open(os.path.join(self.dir, "audit.jsonl")) as f:
            assert '"account"' not in f.read()
        assert sorted(q["id"] for q in sim.deletes()) == ["file_old0", "file_old1", "file_old2"]
        db = sqlite3.connect(os.path.join(self.dir, "queue.db"))
        assert db.execute("SELECT schema_version FROM meta").fetchone()[0] == 11
        assert {r[0] for r in db.execute("SELECT DISTINCT account FROM jobs")} == {"default"}
        db.close()

    def test_switching_to_accounts_gives_the_legacy_jobs_to_the_first_account(self):
        old = self.sim()
        g = self.gateway(old)
        g.admin("POST", "/admin/pause")
        ids = [g.erasure({"resource": "file", "id": "file_l%d" % i}).json()["deletions"][0]["id"]
               for i in range(2)]
        g.stop()
        # The same queue, now under accounts whose first is "eu".
        g = self.two()
        assert g.admin("POST", "/admin/resume").status == 200
        for d in ids:
            g.wait_state(d, "deleted")
            assert g.show(d)["account"] == "eu"
        assert sorted(q["id"] for q in self.eu.deletes()) == ["file_l0", "file_l1"]
        assert old.deletes() == [] and self.us.deletes() == []


if __name__ == "__main__":
    h.main()
