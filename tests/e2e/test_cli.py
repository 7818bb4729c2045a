"""The command line: sign, check, version and help, run as a user would."""
import json
import os

import harness as h


def headers_of(out):
    return dict(line.split(": ", 1) for line in out.decode().strip().splitlines())


def health(*args, env=None):
    # No secret in the environment: the probe must not need any.
    return h.run_cli("health", *args, "--timeout-ms", "2000",
                     env=env or {k: "" for k in ("EXTEND_API_TOKEN", "EXTEND_WEBHOOK_SECRET",
                                                 "DG_CRM_SECRET", "DG_AUDIT_KEY", "DG_ADMIN_TOKEN")})


COMMANDS = ("serve", "check", "sign", "audit", "receipt", "ctl", "health")


class CommandLineTest(h.GatewayTestCase):
    """The subcommands as a user runs them."""

    def test_sign_extend_matches_an_independent_hmac_and_is_accepted(self):
        body = h.extract_event("exr_cli", "evt_cli")
        r = h.run_cli("sign", "extend", "--secret", "env:EXTEND_WEBHOOK_SECRET", "--timestamp", "1795944904",
                      stdin=body, env={"EXTEND_WEBHOOK_SECRET": h.WEBHOOK_SECRET}, check=True)
        hd = headers_of(r.stdout)
        assert hd == h.sign_extend(body, ts=1795944904), hd
        g = self.gateway()
        g.admin("POST", "/admin/pause")
        now = h.run_cli("sign", "extend", "--secret", h.WEBHOOK_SECRET, stdin=body, check=True)
        assert g.webhook(body, headers=headers_of(now.stdout)).status == 200

    def test_sign_internal_matches_an_independent_hmac_and_is_accepted(self):
        body = json.dumps({"resource": "file", "id": "file_cli"}).encode()
        secret_file = os.path.join(self.dir, "crm.secret")
        open(secret_file, "w").write(h.CLIENT_SECRET + "\n")
        r = h.run_cli("sign", "internal", "--secret", "file:" + secret_file, "--id", "msg_cli",
                      "--timestamp", "1795944904", stdin=body, check=True)
        assert headers_of(r.stdout) == h.sign_standard(body, msg_id="msg_cli", ts=1795944904)
        g = self.gateway()
        g.admin("POST", "/admin/pause")
        now = headers_of(h.run_cli("sign", "internal", "--secret", "file:" + secret_file, stdin=body, check=True).stdout)
        assert now["webhook-id"].startswith("msg_")
        assert h.request(g.port, "POST", "/v1/deletions", body, now).status == 202

    def test_check_prints_redacted_config_and_names_the_bad_key(self):
        g = self.gateway()
        r = h.run_cli("check", "-c", g.config_path, env=g.env)
        assert r.returncode == 0, r.stderr
        cfg = json.loads(r.stdout)
        assert cfg["extend"]["token"] == {"ref": "env:EXTEND_API_TOKEN", "value": "(redacted)"}
        assert h.EXTEND_TOKEN.encode() not in r.stdout
        bad = os.path.join(self.dir, "bad.json")
        for text, key in [('{"extend": {"rate_per_second": -1}}', b"extend.rate_per_second"),
                          ('{"listen": {"prot": 1}}', b"listen.prot"),
                          ('{"extend": {"token": "sk_live_literal"}}', b"extend.token"),
                          ('{"clients": [{"id": "a", "secrets": ["env:X"]}, {"id": "a", "secrets": ["env:X"]}]}', b"clients[1].id")]:
            open(bad, "w").write(text)
            r = h.run_cli("check", "-c", bad, env=g.env)
            assert r.returncode == 1 and key in r.stderr, (text, r.stderr)
            assert b"sk_live_literal" not in r.stderr
        r = h.run_cli("check", "-c", g.config_path, env=dict(g.env, EXTEND_API_TOKEN=""))
        assert r.returncode == 1 and b"EXTEND_API_TOKEN" in r.stderr

    def test_version_help_and_unknown_command(self):
        r = h.run_cli("--version", check=True)
        assert r.stdout.startswith(b"deletion-gateway ")
        r = h.run_cli("--help", check=True)
        for word in (b"serve", b"check", b"sign extend", b"audit verify", b"ctl", b"receipt"):
            assert word in r.stdout
        assert h.run_cli("frobnicate").returncode == 2

    def test_config_reference_doc_is_current(self):
        ref = h.run_cli("check", "--reference", check=True).stdout.decode()
        doc = open(os.path.join(h.SRC, "docs", "configuration.md")).read()
        assert ref.strip() in doc, "docs/configuration.md's config table differs from `check --reference`"

    def test_health_c_probes_the_port_the_config_names(self):
        g = self.gateway(overrides={"listen": {"address": "0.0.0.0"}})
        assert g.port != 8080
        r = health("-c", g.config_path)
        assert r.returncode == 0 and r.stdout == b"healthy\n", (r.returncode, r.stderr)
        # --url and -c name the same thing twice: refused.
        assert health("-c", g.config_path, "--url", "http://127.0.0.1:%d/healthz" % g.port).returncode == 2
        assert g.stop() == 0
        r = health("-c", g.config_path)
        assert r.returncode == 1 and (b"127.0.0.1:%d" % g.port) in r.stderr, (r.returncode, r.stderr)
        assert health("-c", os.path.join(self.dir, "missing.json")).returncode == 2

    def test_health_c_speaks_tls_when_the_listener_does(self):
        c = h.certs()
        tls = {"cert_file": os.path.join(c, "server.pem"), "key_file": os.path.join(c, "server.key")}
        g = self.gateway(overrides={"listen": {"tls": tls}}, wait_path=("admin", "/admin/queue"))
        r = health("-c", g.config_path)
        assert r.returncode == 0, (r.returncode, r.stderr)
        r = health("-c", g.config_path, "--cacert", os.path.join(c, "ca.pem"))
        assert r.returncode == 0, (r.returncode, r.stderr)
        # Plain http to that port is not an answer.
        assert health("--url", "http://127.0.0.1:%d/healthz" % g.port).returncode == 1

    def test_health_c_under_mtls_needs_a_client_certificate(self):
        c = h.certs()
        tls = {"cert_file": os.path.join(c, "server.pem"), "key_file": os.path.join(c, "server.key"),
               "client_ca_file": os.path.join(c, "ca.pem")}
        g = self.gateway(overrides={"listen": {"tls": tls}}, wait_path=("admin", "/admin/queue"))
        r = health("-c", g.config_path)
        assert r.returncode == 1 and b"client_ca_file" in r.stderr, (r.returncode, r.stderr)
        r = health("-c", g.config_path, "--cert", os.path.join(c, "client-crm.pem"),
                   "--key", os.path.join(c, "client-crm.key"))
        assert r.returncode == 0, (r.returncode, r.stderr)

    def test_every_command_answers_help_with_its_own_usage_and_exit_0(self):
        top = h.run_cli("--help", check=True).stdout.decode()
        for cmd in COMMANDS:
            assert "\n  %s " % cmd in top, (cmd, top)
            for flag in ("--help", "-h"):
                # No config, no stdin, no gateway: help needs none of them.
                r = h.run_cli(cmd, flag)
                assert r.returncode == 0 and r.stderr == b"", (cmd, flag, r.returncode, r.stderr)
                assert r.stdout.startswith(b"usage: deletion-gateway %s " % cmd.encode()), (cmd, r.stdout)
                assert b"Exit: 0" in r.stdout, (cmd, r.stdout)
            assert h.run_cli("help", cmd, check=True).stdout == r.stdout, cmd

    def test_every_command_refuses_an_unknown_option_with_exit_2_naming_it(self):
        for cmd in COMMANDS:
            r = h.run_cli(cmd, "--no-such-option")
            assert r.returncode == 2 and r.stdout == b"", (cmd, r.returncode, r.stdout)
            err = r.stderr.decode()
            assert err.startswith("deletion-gateway %s: unknown option --no-such-option\n" % cmd), (cmd, err)
            assert "usage: deletion-gateway %s " % cmd in err, (cmd, err)
        r = h.run_cli("ctl", "-x")
        assert r.returncode == 2 and r.stderr.startswith(b"deletion-gateway ctl: unknown option -x\n"), r.stderr
        r = h.run_cli("health", "--url")
        assert r.returncode == 2 and r.stderr.startswith(b"deletion-gateway health: --url needs a value\n"), r.stderr
        # A required option missing is a usage error too, like any other.
        for args in (("serve",), ("check",), ("sign", "extend")):
            r = h.run_cli(*args)
            assert r.returncode == 2 and b"usage: deletion-gateway %s " % args[0].encode() in r.stderr, (args, r.stderr)

    def test_ctl_and_health_reach_the_gateway_past_a_proxy_in_the_environment(self):
        # They talk to the gateway's own listeners: a proxy (here one that
        # is not even there) must neither see the admin token nor stand between.
        g = self.gateway()
        dead = "http://127.0.0.1:9"
        env = dict(g.env, http_proxy=dead, https_proxy=dead, all_proxy=dead, ALL_PROXY=dead, no_proxy="")
        r = h.run_cli("ctl", "-c", g.config_path, "show", "queue", env=env)
        assert r.returncode == 0 and "paused" in json.loads(r.stdout), (r.returncode, r.stderr)
        r = h.run_cli("health", "-c", g.config_path, env=env)
        assert r.returncode == 0 and r.stdout == b"healthy\n", (r.returncode, r.stderr)


if __name__ == "__main__":
    h.main()
