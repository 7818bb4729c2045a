"""The alert rules in deploy/prometheus/ speak of metrics the real binary
exports, each has a runbook line and a promtool test file of its own (the
promtool tests run as ctest prometheus.alerts)."""
import os
import re

import yaml

import harness as h

PROM = os.path.join(h.SRC, "deploy", "prometheus")


class AlertRulesTest(h.GatewayTestCase):
    """The alert rules against what a running gateway exports."""

    def test_every_alert_has_a_runbook_a_test_and_real_metrics(self):
        g = self.gateway()
        r = h.request(g.port, "GET", "/metrics")
        assert r.status == 200, r
        exported = set(re.findall(r"^(dg_[a-z_]+)", r.body.decode(), re.M))
        assert re.search(r"^dg_ready 1$", r.body.decode(), re.M), "dg_ready is not 1 on a ready gateway"
        rules = yaml.safe_load(open(os.path.join(PROM, "alerts.yml")))["groups"][0]["rules"]
        names = [x["alert"] for x in rules]
        assert len(names) == len(set(names)) >= 9, names
        for x in rules:
            assert x["annotations"].get("runbook") and x["annotations"].get("summary"), x["alert"]
            assert x["labels"]["severity"] in ("critical", "warning"), x["alert"]
            assert os.path.exists(os.path.join(PROM, "tests", x["alert"] + ".test.yml")), x["alert"]
            for metric in re.findall(r"\b(dg_[a-z_]+)", x["expr"]):
                assert metric in exported, "%s uses %s, which /metrics does not export" % (x["alert"], metric)
        tests = {f[:-len(".test.yml")] for f in os.listdir(os.path.join(PROM, "tests"))}
        assert tests == set(names), tests ^ set(names)


if __name__ == "__main__":
    h.main()
