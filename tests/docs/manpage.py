"""docs/deletion-gateway.8 passes `mandoc -T lint -W warning`, and its
SYNOPSIS names every command the binary's usage lists (`sign extend`, not
only `sign`) while the page names every option the usage texts show, so
the man page cannot fall behind the command line."""
import os
import re
import subprocess
import sys

SRC = os.environ.get("DG_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("DG_BUILD_DIR") or os.path.join(SRC, "build")
PAGE = os.path.join(SRC, "docs", "deletion-gateway.8")
BIN = os.path.join(BUILD, "deletion-gateway")
# No secret in the environment: `audit verify --help` must not find a key
# and read "--help" as a file, nor `ctl` a token.
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def usage_of(*args):
    """stdout and stderr of `deletion-gateway ARGS`, whatever it exits with."""
    r = subprocess.run([BIN, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=ENV, timeout=20)
    return r.stdout.decode("utf-8", "replace")


def test_lint():
    r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", PAGE],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = r.stdout.decode("utf-8", "replace").strip()
    if r.returncode != 0 or out:
        fail("mandoc -T lint -W warning (exit %d):\n%s" % (r.returncode, out))


def rendered():
    r = subprocess.run(["mandoc", "-T", "ascii", PAGE], stdout=subprocess.PIPE, check=True)
    # Drop the overstrike that marks bold and underline.
    return re.sub(r".\x08", "", r.stdout.decode("utf-8", "replace"))


def section(text, name):
    m = re.search(r"^%s\n(.*?)(?=^[A-Z][A-Z ]+\n)" % name, text, re.S | re.M)
    return m.group(1) if m else ""


def commands(usage):
    """The usage's command lines: indented a little, a lower-case word first
    (after `deletion-gateway`, if written), maybe a lower-case second word
    (`sign extend`); placeholders are upper case, options start with '-'."""
    found = []
    for line in usage.splitlines():
        m = re.match(r"^ {1,4}(?:deletion-gateway +)?([a-z][a-z-]*)(?: +([a-z][a-z-]*)\b(?![:=]))?",
                     line)
        if m:
            found.append(" ".join(w for w in m.groups() if w))
    return found


def test_synopsis_has_every_command():
    top = usage_of("--help")
    cmds = commands(top)
    if "serve" not in [c.split()[0] for c in cmds]:
        fail("no commands found in `deletion-gateway --help`:\n" + top)
        return
    page = rendered()
    synopsis = " ".join(section(page, "SYNOPSIS").split())
    for c in cmds:
        if "deletion-gateway " + c not in synopsis:
            fail("`%s` is in the usage but not in the man page's SYNOPSIS" % c)
    # Every option any usage text shows: the top one and each command's own.
    texts = [top]
    for c in sorted(set(cmds)):
        texts.append(usage_of(*c.split(), "--help"))
    options = set()
    for t in texts:
        options.update(re.findall(r"(?<![\w-])(--?[a-z](?:[a-z-]*[a-z])?)", t))
    whole = " ".join(page.split())
    for o in sorted(options):
        if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), whole):
            fail("option %s is in a usage text but not in the man page" % o)
    print("%d commands, %d options checked" % (len(cmds), len(options)))


if __name__ == "__main__":
    passed = failed = 0
    for test in (test_lint, test_synopsis_has_every_command):
        before = len(failures)
        test()
        if len(failures) == before:
            passed += 1
        else:
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
