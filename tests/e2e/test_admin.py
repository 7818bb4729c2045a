"""The admin listener's list route and its client, `ctl list`: the limit
that is accepted is the limit that is applied, and one above it is refused."""
import json

import harness as h

LIST_MAX = 1000  # QUEUE_LIST_MAX in gateway/queue.h, as docs/http-api.md documents


def queue_many(g, n):
    """n queued deletions, dispatching paused so they stay queued."""
    assert g.admin("POST", "/admin/pause").status == 200
    items = [{"resource": "file", "id": "file_list_%d" % i} for i in range(n)]
    r = g.erasure({"items": items})
    assert r.status == 202, r
    assert g.queue()["deletions"]["queued"] == n


class ListLimitTest(h.GatewayTestCase):
    """The list limit on the admin route and in ctl list."""

    def test_list_returns_up_to_the_documented_limit_and_refuses_more(self):
        g = self.gateway()
        queue_many(g, 700)
        r = g.admin("GET", "/admin/deletions?state=queued&limit=%d" % LIST_MAX)
        assert r.status == 200, r
        body = r.json()
        assert body["count"] == 700 and len(body["deletions"]) == 700, body["count"]
        assert len({d["id"] for d in body["deletions"]}) == 700
        r = g.admin("GET", "/admin/deletions?state=queued&limit=650")
        assert r.status == 200 and r.json()["count"] == 650, r
        for bad in ("%d" % (LIST_MAX + 1), "0", "-1", "abc", "99999999999999999999"):
            r = g.admin("GET", "/admin/deletions?state=queued&limit=" + bad)
            assert r.status == 400, (bad, r)
            err = r.json()["error"]
            assert err["code"] == "invalid_body" and "limit" in err["message"], (bad, err)

    def test_ctl_list_applies_its_limit_and_refuses_more(self):
        g = self.gateway()
        queue_many(g, 700)
        listed = json.loads(g.ctl("list", "queued", "--limit", str(LIST_MAX)).stdout)
        assert listed["count"] == 700, listed["count"]
        r = g.ctl("list", "queued", "--limit", str(LIST_MAX + 1), check=False)
        assert r.returncode == 2 and b"--limit" in r.stderr, (r.returncode, r.stderr)


if __name__ == "__main__":
    h.main()
