"""The HTTPS listener and mTLS end to end: old protocol versions refused, a
client without a certificate refused, and a certificate bound to one client
never signs for another."""
import json
import os
import signal
import ssl
import subprocess

import harness as h


def start(test, mtls=True):
    c = h.certs()
    tls = {"cert_file": os.path.join(c, "server.pem"), "key_file": os.path.join(c, "server.key")}
    if mtls:
        tls["client_ca_file"] = os.path.join(c, "ca.pem")
    clients = [{"id": "crm", "secrets": ["env:DG_CRM_SECRET"], "cert_subject": "crm"},
               {"id": "billing", "secrets": ["file:" + os.path.join(test.dir, "billing.secret")],
                "cert_subject": "other"}]
    # The listener speaks TLS only: wait for start on the admin listener.
    return test.gateway(overrides={"listen": {"tls": tls}, "clients": clients},
                        wait_path=("admin", "/admin/queue"))


def client_ctx(cert=None):
    c = h.certs()
    ctx = ssl.create_default_context(cafile=os.path.join(c, "ca.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(c, "client-%s.pem" % cert), os.path.join(c, "client-%s.key" % cert))
    return ctx


def post(g, tlsctx, secret):
    body = json.dumps({"resource": "file", "id": "file_tls_%s" % os.urandom(4).hex()}).encode()
    return h.request(g.port, "POST", "/v1/deletions", body, h.sign_standard(body, secret=secret), tls=tlsctx)


def s_client(port, *args):
    c = h.certs()
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile",
                        os.path.join(c, "ca.pem"), "-cert", os.path.join(c, "client-crm.pem"),
                        "-key", os.path.join(c, "client-crm.key")] + list(args),
                       input=b"", capture_output=True, timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


class TlsListenerTest(h.GatewayTestCase):
    """The HTTPS listener and client certificates."""

    def test_tls_1_0_and_1_1_are_refused_1_2_and_1_3_work(self):
        g = start(self)
        for v in ("-tls1", "-tls1_1"):
            # SECLEVEL=0 lets the client offer the old version; the refusal
            # must be the server's protocol_version alert, not the client's.
            rc, out = s_client(g.port, v, "-cipher", "DEFAULT@SECLEVEL=0")
            assert rc != 0 and "alert protocol version" in out, (v, out[-600:])
        for v in ("-tls1_2", "-tls1_3"):
            rc, out = s_client(g.port, v)
            assert rc == 0 and ("TLSv1.2" in out or "TLSv1.3" in out), (v, out[-600:])

    def test_bound_client_certificate_signs_only_for_its_client(self):
        g = start(self)
        r = post(g, client_ctx("crm"), h.CLIENT_SECRET)
        assert r.status == 202, r
        r = post(g, client_ctx("crm"), h.OTHER_SECRET)  # crm's certificate, billing's secret
        assert r.status == 403 and r.json()["error"]["code"] == "client_certificate_mismatch", r
        r = post(g, client_ctx("other"), h.CLIENT_SECRET)  # other's certificate, crm's secret
        assert r.status == 403, r
        r = post(g, client_ctx("other"), h.OTHER_SECRET)
        assert r.status == 202, r
        # One snapshot: jobs move between queued and in_flight while we look.
        counts = g.queue()["deletions"]
        assert sum(counts.values()) == 2, counts

    def test_client_without_certificate_is_refused_under_mtls(self):
        g = start(self)
        try:
            r = post(g, client_ctx(None), h.CLIENT_SECRET)
            refused = r.status >= 400
        except (ssl.SSLError, ConnectionError, OSError):
            refused = True
        assert refused
        assert g.queue()["deletions"]["queued"] == 0

    def test_plain_http_to_the_tls_listener_gets_nothing_useful(self):
        g = start(self, mtls=False)
        try:
            r = h.request(g.port, "GET", "/healthz", timeout=3)
            assert r.status != 200, r
        except Exception:
            pass
        r = h.request(g.port, "GET", "/healthz", tls=client_ctx(None))
        assert r.status == 200

    def test_sighup_reloads_the_certificate_and_keeps_serving(self):
        g = start(self, mtls=False)
        g.proc.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reloaded" in g.logs(), 5, what="reload log line")
        assert h.request(g.port, "GET", "/healthz", tls=client_ctx(None)).status == 200


if __name__ == "__main__":
    h.main()
