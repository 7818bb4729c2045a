"""Shared machinery for the end-to-end tests: they run the real
deletion-gateway binary on loopback against the real extend-sim, sign
requests the way Extend and Standard Webhooks senders do (computed here
with Python's hmac, independently of the gateway's C code), and check what
reached the simulator, the queue, the audit log and the metrics.

Each test file defines GatewayTestCase classes whose test_* methods are
named for the behaviour they protect, and calls harness.main(); every test
gets fresh processes, a fresh directory and a time-out.
"""
import base64
import faulthandler
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SRC = os.environ.get("DG_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("DG_BUILD_DIR") or os.path.join(SRC, "build")
GATEWAY_BIN = os.path.join(BUILD, "deletion-gateway")
SIM_BIN = os.path.join(BUILD, "extend-sim")

WEBHOOK_SECRET = "wss_e2e_webhook_secret_0123456789abcdef"
CLIENT_SECRET = "whsec_" + base64.b64encode(b"e2e-client-secret-32-bytes-long!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"other-client-secret-32-bytes-ok!").decode()
EXTEND_TOKEN = "sk_e2e_token_do_not_log_4f9a1c"
ADMIN_TOKEN = "adm_e2e_token_do_not_log_77b2e1"
AUDIT_KEY = "audit_e2e_key_do_not_log_c0ffee"
ALL_SECRETS = [WEBHOOK_SECRET, CLIENT_SECRET, OTHER_SECRET, EXTEND_TOKEN, ADMIN_TOKEN, AUDIT_KEY,
               CLIENT_SECRET[len("whsec_"):], OTHER_SECRET[len("whsec_"):]]

_certs_dir = None


def certs():
    """The development CA and certificates, made once per test process."""
    global _certs_dir
    if _certs_dir is None:
        _certs_dir = tempfile.mkdtemp(prefix="dg-certs-")
        subprocess.run([os.path.join(SRC, "certs", "make-dev-certs.sh"), _certs_dir],
                       check=True, stdout=subprocess.DEVNULL)
    return _certs_dir


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


# ---- signing, independent of the gateway's code ----

def sign_extend(body, secret=WEBHOOK_SECRET, ts=None):
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), b"v0:%d:" % ts + body, hashlib.sha256).hexdigest()
    return {"x-extend-request-timestamp": str(ts), "x-extend-request-signature": mac}


def sign_standard(body, secret=CLIENT_SECRET, msg_id=None, ts=None):
    ts = int(time.time()) if ts is None else ts
    msg_id = msg_id or "msg_" + os.urandom(8).hex()
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    mac = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), ts, body), hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def extract_event(run_id, event_id=None, event_type="extract_run.processed", file_id=None):
    payload = {"object": "extract_run", "id": run_id, "status": "PROCESSED",
               "file": {"id": file_id} if file_id else None,
               "output": {"value": {"invoice_total": 1234.5}}, "metadata": {}}
    return json.dumps({"eventId": event_id or "evt_" + os.urandom(8).hex(),
                       "eventType": event_type, "payload": payload}).encode()


# ---- HTTP ----

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


# ---- the HTTP contract: every JSON answer of a gateway checked against docs/openapi.yaml ----

OPENAPI_PATH = os.path.join(SRC, "docs", "openapi.yaml")
_openapi = None
_gateway_ports = {}  # port -> "public" or "admin", for the gateways of the running test


def openapi():
    """The OpenAPI document, with each path as a regular expression."""
    global _openapi
    if _openapi is None:
        import yaml
        with open(OPENAPI_PATH) as f:
            doc = yaml.safe_load(f)
        routes = []
        for template, item in doc["paths"].items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            routes.append((re.compile(rx), template, item))
        _openapi = (doc, routes)
    return _openapi


def openapi_schema(schema):
    """A schema of the document made self-contained: its #/components refs resolve."""
    doc = openapi()[0]
    return dict(schema, components=doc["components"])


def openapi_validate(instance, schema, where):
    import jsonschema
    v = jsonschema.Draft202012Validator(openapi_schema(schema))
    errors = sorted(v.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise AssertionError("%s: answer does not match docs/openapi.yaml at %s: %s\n%s" % (
            where, "/".join(str(p) for p in e.path) or "(root)", e.message, json.dumps(instance)[:2000]))


def _resolve(obj):
    doc = openapi()[0]
    while isinstance(obj, dict) and "$ref" in obj and len(obj) == 1:
        node = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def check_contract(listener, method, path, r):
    """Raises unless the documented answer for method, path and status is what came."""
    if method == "HEAD":
        return
    doc, routes = openapi()
    path = path.split("?", 1)[0]
    where = "%s %s -> %d (%s listener)" % (method, path, r.status, listener)
    ctype = r.headers.get("content-type", "").split(";")[0].strip()
    item = next((item for rx, t, item in routes if rx.match(path) and t.startswith("/admin/") == (listener == "admin")), None)
    op = item.get(method.lower()) if item else None
    if op is None:
        # Not a documented route or method: the gateway must say so in its error format.
        want = 405 if item is not None else 404
        if r.status not in (404, 405) or (item is not None and r.status != want) or ctype != "application/json":
            raise AssertionError("%s: an undocumented route or method must answer %d JSON" % (where, want))
        openapi_validate(json.loads(r.body), {"$ref": "#/components/schemas/Error"}, where)
        return
    documented = _resolve(op["responses"].get(str(r.status)))
    if documented is None:
        raise AssertionError("%s: status %d is not documented in docs/openapi.yaml" % (where, r.status))
    content = documented.get("content", {})
    if ctype not in content:
        raise AssertionError("%s: content type %r not documented (have %s)" % (where, ctype, list(content)))
    if ctype == "application/json":
        openapi_validate(json.loads(r.body), content[ctype]["schema"], where)


def request(port, method, path, body=b"", headers=None, tls=None, timeout=10, raw=None):
    """One request on a fresh connection. tls: an ssl.SSLContext for https.
    An answer from a gateway of this test is checked against docs/openapi.yaml."""
    if tls is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Content-Type": "application/json"} if method == "POST" else {}
        h.update(headers or {})
        conn.request(method, path, body=body if method != "GET" else None, headers=h)
        r = conn.getresponse()
        resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()
    if port in _gateway_ports:
        check_contract(_gateway_ports[port], method, path, resp)
    return resp


def raw_request(port, data, timeout=5):
    """Sends raw bytes on a fresh connection; every byte answered until the
    server closes (or the timeout, or a reset)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return read_all(s)
    finally:
        s.close()


def read_all(s, each=None):
    """Reads s until EOF, a time-out or a reset; each(chunk) after every read."""
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        out += chunk
        if each is not None:
            each(chunk)
    return out


def sim_tls():
    ctx = ssl.create_default_context(cafile=os.path.join(certs(), "ca.pem"))
    return ctx


# ---- processes ----

class Sim:
    """port: 0 picks a free one; a fixed port lets a test bring the same
    upstream back after stopping it. cert/key: another server certificate
    (default: the development one); control_tls: the SSLContext that reads
    the control routes of a simulator with such a certificate."""

    def __init__(self, workdir, token=EXTEND_TOKEN, extra=(), port=0, cert=None, key=None, control_tls=None):
        self.port = None
        self.control_tls = control_tls
        args = [SIM_BIN, "--port", str(port), "--cert", cert or os.path.join(certs(), "server.pem"),
                "--key", key or os.path.join(certs(), "server.key")]
        if token:
            args += ["--token", token]
        args += list(extra)
        self.log = open(os.path.join(workdir, "sim.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        if "listening on" not in line:
            raise AssertionError("extend-sim did not start: %r" % line)
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.url = "https://127.0.0.1:%d" % self.port

    def call(self, method, path, obj=None):
        body = json.dumps(obj).encode() if obj is not None else b""
        r = request(self.port, method, path, body, tls=self.control_tls or sim_tls())
        if r.status != 200:
            raise AssertionError("sim %s %s: %r" % (method, path, r))
        return r.json() if r.body.strip() else None

    def requests(self):
        return self.call("GET", "/_sim/requests")

    def deletes(self, status=None):
        return [r for r in self.requests() if status is None or r["status"] == status]

    def stats(self):
        return self.call("GET", "/_sim/stats")

    def faults(self, rules):
        return self.call("POST", "/_sim/faults", rules)

    def reset(self):
        return self.call("POST", "/_sim/reset", {})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def deep_merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


class Gateway:
    """The real binary with a config written for this test."""

    def __init__(self, workdir, sim=None, overrides=None, env=None, wait_path=("public", "/healthz"),
                 drop=()):
        """drop: dotted keys of the default config to leave out (the legacy
        "extend" block and "webhooks.signing_secrets" for an "accounts"
        config)."""
        self.wait_path = wait_path
        self.workdir = workdir
        self.port = free_port()
        self.admin_port = free_port()
        _gateway_ports[self.port] = "public"
        _gateway_ports[self.admin_port] = "admin"
        self.config_path = os.path.join(workdir, "gateway.json")
        self.log_path = os.path.join(workdir, "gateway.log")
        cfg = {
            "listen": {"address": "127.0.0.1", "port": self.port},
            "admin": {"address": "127.0.0.1", "port": self.admin_port, "token": "env:DG_ADMIN_TOKEN"},
            "extend": {"base_url": sim.url if sim else "https://127.0.0.1:1",
                       "ca_file": os.path.join(certs(), "ca.pem"),
                       "token": "env:EXTEND_API_TOKEN", "timeout_ms": 5000,
                       "rate_per_second": 0, "max_in_flight": 4},
            "webhooks": {"signing_secrets": ["env:EXTEND_WEBHOOK_SECRET"],
                         "rules": [{"event": "extract_run.processed", "delete": ["run", "file"]},
                                   {"event": "extract_run.failed", "delete": ["run"]}]},
            "clients": [{"id": "crm", "secrets": ["env:DG_CRM_SECRET"]},
                        {"id": "billing", "secrets": ["file:" + os.path.join(workdir, "billing.secret")]}],
            "queue": {"path": os.path.join(workdir, "queue.db")},
            "retry": {"initial_ms": 100, "max_ms": 2000},
            "audit": {"path": os.path.join(workdir, "audit.jsonl"), "key": "env:DG_AUDIT_KEY"},
            "receipts": {"signing_key": "file:" + os.path.join(certs(), "receipt-key.pem")},
            "log": {"level": "debug"},
        }
        with open(os.path.join(workdir, "billing.secret"), "w") as f:
            f.write(OTHER_SECRET + "\n")
        for key in drop:
            *parents, last = key.split(".")
            node = cfg
            for p in parents:
                node = node[p]
            node.pop(last, None)
        deep_merge(cfg, overrides or {})
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.env = dict(os.environ, EXTEND_WEBHOOK_SECRET=WEBHOOK_SECRET, DG_CRM_SECRET=CLIENT_SECRET,
                        EXTEND_API_TOKEN=EXTEND_TOKEN, DG_ADMIN_TOKEN=ADMIN_TOKEN,
                        DG_AUDIT_KEY=AUDIT_KEY)
        self.env.update(env or {})
        self.proc = None
        self.start()

    def start(self, wait=True, args=()):
        """args: extra serve options."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([GATEWAY_BIN, "serve", "-c", self.config_path] + list(args), env=self.env,
                                     stdout=self.log, stderr=self.log)
        if wait:
            def up():
                if self.proc.poll() is not None:
                    raise AssertionError("gateway exited with %d:\n%s" % (self.proc.returncode, self.logs()[-3000:]))
                where, path = self.wait_path
                try:
                    if where == "admin":
                        return self.admin("GET", path).status == 200
                    return request(self.port, "GET", path, timeout=1).status == 200
                except OSError:
                    return False
            # DG_START_TIMEOUT: slow starts (the gateway under valgrind).
            wait_for(up, float(os.environ.get("DG_START_TIMEOUT", "20")), what="gateway /healthz")

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("gateway did not stop within %ds" % timeout)
        self.log.close()
        return rc

    def restart(self):
        self.stop()
        self.start()

    # requests
    def webhook(self, body, headers=None, **kw):
        h = sign_extend(body, **kw) if headers is None else headers
        return request(self.port, "POST", "/webhooks/extend", body, h)

    def erasure(self, obj_or_bytes, secret=CLIENT_SECRET, msg_id=None, ts=None, extra=None):
        body = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
        h = sign_standard(body, secret=secret, msg_id=msg_id, ts=ts)
        h.update(extra or {})
        return request(self.port, "POST", "/v1/deletions", body, h)

    def get_deletion(self, did, secret=CLIENT_SECRET, suffix=""):
        return request(self.port, "GET", "/v1/deletions/" + did + suffix, b"", sign_standard(b"", secret=secret))

    def admin(self, method, path, token=ADMIN_TOKEN):
        return request(self.admin_port, method, path, b"", {"Authorization": "Bearer " + token})

    def queue(self):
        r = self.admin("GET", "/admin/queue")
        assert r.status == 200, r
        return r.json()

    def show(self, did):
        r = self.admin("GET", "/admin/deletions/" + did)
        assert r.status == 200, r
        return r.json()

    def wait_state(self, did, states, timeout=15):
        states = (states,) if isinstance(states, str) else states
        return wait_for(lambda: (lambda v: v if v["state"] in states else None)(self.show(did)),
                        timeout, 0.05, what="%s to reach %s" % (did, states))

    def ctl(self, *args, check=True):
        r = subprocess.run([GATEWAY_BIN, "ctl", "-c", self.config_path] + list(args), env=self.env,
                           capture_output=True, timeout=30)
        if check and r.returncode != 0:
            raise AssertionError("ctl %s: %d %s" % (args, r.returncode, r.stderr.decode()))
        return r


def run_cli(*args, stdin=b"", env=None, check=False):
    r = subprocess.run([GATEWAY_BIN] + list(args), input=stdin, capture_output=True, timeout=60,
                       env=dict(os.environ, **(env or {})))
    if check and r.returncode != 0:
        raise AssertionError("%s: %d %s" % (args, r.returncode, r.stderr.decode()))
    return r


# ---- the runner: unittest, one fresh directory and fresh processes per test ----

def timeout(seconds):
    """Decorates a test method with its own time-out (seconds, before the
    scale below), for a test that is slow by design."""
    def mark(fn):
        fn.timeout = seconds
        return fn
    return mark


def timeout_scale():
    """DG_TEST_TIMEOUT_SCALE multiplies every time-out; the sanitizer build
    (DG_SANITIZE=1) runs about three times slower, so it gets 3 by default."""
    v = os.environ.get("DG_TEST_TIMEOUT_SCALE")
    if v:
        return float(v)
    return 3.0 if os.environ.get("DG_SANITIZE") else 1.0


class TestTimeout(AssertionError):
    """The test ran past its time-out; the traceback shows where it hung."""


def _kill_children():
    """SIGKILL to every direct child of this process (gateways, simulators,
    CLI runs), so that none outlives a test process that gives up."""
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                # pid (comm) state ppid ...: comm may hold spaces, so split after it.
                ppid = f.read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if ppid == me:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


class TimedTestCase(unittest.TestCase):
    """A test that fails with its name once it runs past `timeout` seconds
    (a class attribute, or @timeout(N) on the method). SIGALRM raises
    TestTimeout in the test, which then cleans up as any failure does; a
    test stuck where the signal cannot reach it (a C call that retries on
    EINTR) is ended by a watchdog thread 30 s later: it kills the children,
    prints every thread's stack and exits the process with status 1."""

    timeout = 60
    WATCHDOG_GRACE = 30

    def _seconds(self):
        fn = getattr(self, self._testMethodName)
        return getattr(fn, "timeout", self.timeout) * timeout_scale()

    def _expired(self, signum, frame):
        raise TestTimeout("%s did not finish within %.0f s" % (self._testMethodName, self._seconds()))

    def _watchdog(self):
        print("TIMEOUT %s: still running %d s past its %.0f s time-out; killing its processes" % (
            self._testMethodName, self.WATCHDOG_GRACE, self._seconds()), flush=True)
        _kill_children()
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)

    def setUp(self):
        seconds = self._seconds()
        signal.signal(signal.SIGALRM, self._expired)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        self._dog = threading.Timer(seconds + self.WATCHDOG_GRACE, self._watchdog)
        self._dog.daemon = True
        self._dog.start()
        # Registered first, so it runs last: the watchdog still guards the
        # other clean-ups (stopping a gateway that will not stop).
        self.addCleanup(self._disarm)

    def tearDown(self):
        # The alarm covers the test alone: its clean-ups have their own bounds.
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _disarm(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._dog.cancel()


class GatewayTestCase(TimedTestCase):
    """What an end-to-end test gets: self.dir, a fresh directory, and
    self.sim() / self.gateway() whose processes are stopped after the test.
    The directory is removed when the test passed and kept (and named, with
    the gateways' log tails) when it did not."""

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="dg-%s-" % self._testMethodName[:60])
        self.procs = []
        self.addCleanup(self._stop_processes)

    def sim(self, **kw):
        s = Sim(self.dir, **kw)
        self.procs.append(s)
        return s

    def gateway(self, sim=None, **kw):
        g = Gateway(self.dir, sim, **kw)
        self.procs.append(g)
        return g

    def _stop_processes(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:
                pass
            if isinstance(p, Gateway):
                _gateway_ports.pop(p.port, None)
                _gateway_ports.pop(p.admin_port, None)

    def finish(self, ok):
        """After the test and its clean-ups: the directory goes when the test
        passed or was skipped; after a failure it stays, named, and the
        gateways' log tails are printed."""
        if not hasattr(self, "dir"):
            return
        if ok:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for p in self.procs:
            if isinstance(p, Gateway):
                print("---- gateway log (tail) ----\n" + p.logs()[-4000:], flush=True)
        print("(files kept in %s)" % self.dir, flush=True)


class _Result(unittest.TestResult):
    """One line per test as it ends (PASS/FAIL/SKIP and its duration), and
    after a failure its traceback and the test's own report. The report
    comes at stopTest, after the test's clean-ups, whatever the Python
    version's order of reporting."""

    def __init__(self):
        super().__init__()
        self.passed = 0
        self._t0 = 0.0
        self._failed = False

    def startTest(self, test):
        super().startTest(test)
        self._t0 = time.monotonic()
        self._failed = False

    def _line(self, word, test, rest=""):
        name = getattr(test, "_testMethodName", None) or str(test)
        print("%s %s (%.1fs)%s" % (word, name, time.monotonic() - self._t0, rest), flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        self._line("PASS", test)

    def _fail(self, test, err):
        self._failed = True
        self._line("FAIL", test, "\n" + self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._fail(test, err)
        if not hasattr(test, "_testMethodName"):  # setUpClass or tearDownClass: no stopTest follows
            self._failed = False

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line("SKIP", test, ": " + reason)

    def stopTest(self, test):
        super().stopTest(test)
        if hasattr(test, "finish"):
            test.finish(ok=not self._failed)


def _in_source_order(module):
    """Every test method of the module's TestCase classes, in the order the
    file states them (unittest's own order is alphabetical)."""
    cases = [c for c in vars(module).values()
             if isinstance(c, type) and issubclass(c, unittest.TestCase) and c.__module__ == module.__name__]
    out = []
    for c in cases:
        out += [(c, n) for n in unittest.TestLoader().getTestCaseNames(c)]
    out.sort(key=lambda t: getattr(t[0], t[1]).__code__.co_firstlineno)
    return out


def main():
    """Runs the calling file's tests: all of them, or the test methods named
    on the command line (python3 test_ingest.py test_a test_b). Exits 0 only
    when at least one test ran and none failed."""
    mod = sys.modules["__main__"]
    tests = _in_source_order(mod)
    only = sys.argv[1:]
    unknown = [n for n in only if n not in {name for _, name in tests}]
    if unknown:
        sys.exit("no such test: %s" % " ".join(unknown))
    suite = unittest.TestSuite(c(n) for c, n in tests if not only or n in only)
    result = _Result()
    suite.run(result)
    failed = len(result.failures) + len(result.errors)
    if result.skipped:
        print("%d skipped" % len(result.skipped))
    print("%d passed, %d failed" % (result.passed, failed))
    sys.exit(1 if failed or not result.passed else 0)
