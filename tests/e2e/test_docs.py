#!/usr/bin/env python3
"""test_docs.py — every runnable example of README.md, docs/api.md,
docs/perkctl.md and docs/operations.md, run against the demo, so that the docs cannot drift.

For each file: a fresh demo (the real tools/demo.sh, copied into a temporary
directory, with PORT=0: the embedded default on an ephemeral port, its own
var/, the generated sample batch), then every runnable block of the file in
document order, each in one bash session whose working directory is the demo's
(so var/ and build/ mean what they mean after `make demo`). What a block
exports (`export PERKHUB_TOKEN=...`), later blocks of the same file see, as in
one terminal.

A block is runnable when its fence says sh/bash/shell/console, or when it is a
plain fence holding a `$ ` prompt line (a transcript: only the `$ ` lines run).
Every runnable block must be followed by an annotation, else the test fails:

    <!-- docs-test: skip REASON -->          not run, and why (the reason is required)

    <!-- docs-test
    replace OLD NEW                          (optional) text to replace in the block
                                             before running; NEW may use ${NAME}
    EXPECTATION                              one line per command, in order
    -->

An EXPECTATION is shell-quoted words. The first says what ends the command:
`skip REASON...` (not run), an HTTP status for a curl command (`201`, or `202|201`),
or `exit=N` for any other command. The others check it:

    path=value      a JSON value of the answer (curl: the body; other commands:
                    stdout parsed as JSON). `a.b[0].c`; `[*]` means every element
                    (and at least one). The value is JSON when it parses as JSON
                    (numbers, true, false, null), a string otherwise, and a string
                    field also matches its text as written (`face_value=30.00`);
                    `x|y` allows either; ${NAME} is a captured value.
    path~text       the string value contains text
    path?  path!    the value is present (not null) / absent or null
    stdout~text     stdout contains text (stderr~text likewise)
    >NAME=path      keep the value as ${NAME} for later replace lines and as an
                    environment variable of later blocks
    >NAME@regex     the same with the first group of a regex search of stdout

Examples use http://127.0.0.1:8080 and /tmp/: both are rewritten to the demo's
URL and a private directory. The test reports every failure as FILE:LINE.
It also runs the examples of `perkctl suppliers|status|events --help` (they
must print what they show) on docs/perkctl.md's fresh demo.
Needs only the Python 3 standard library (and bash, curl, jq, openssl).
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

FILES = ["README.md", "docs/api.md", "docs/perkctl.md", "docs/operations.md"]
RUNNABLE_INFO = {"sh", "bash", "shell", "console"}
BLOCK_TIMEOUT_S = 120

failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")
    print(f"FAIL {where}: {msg}", flush=True)


# ---- parsing ---------------------------------------------------------------


class Block:
    def __init__(self, path, line, info, lines):
        self.path, self.line, self.info, self.lines = path, line, info, lines
        self.annotation = None  # list of lines, or None
        self.skip = None  # reason
        self.transcript = any(l.startswith("$ ") for l in lines)

    @property
    def where(self):
        return f"{self.path}:{self.line}"

    def runnable(self):
        return self.info in RUNNABLE_INFO or (self.info == "" and self.transcript)

    def commands(self, text_lines):
        """The commands to run, continuation lines joined (kept with their
        backslash-newline, as bash reads them)."""
        cmds, cur = [], None
        for l in text_lines:
            if self.transcript:
                if cur is None:
                    if not l.startswith("$ "):
                        continue  # output
                    l = l[2:]
            else:
                if cur is None and (not l.strip() or l.lstrip().startswith("#")):
                    continue
            cur = l if cur is None else cur + "\n" + l
            if not l.endswith("\\"):
                cmds.append(cur)
                cur = None
        if cur is not None:
            cmds.append(cur)
        return cmds


def parse(path, text):
    blocks = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, info, body = i + 1, m.group(1), []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        b = Block(path, start, info, body)
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j < len(lines) and lines[j].startswith("<!-- docs-test"):
            first = lines[j][len("<!-- docs-test"):].strip()
            if first.startswith(":"):
                rest = first[1:].strip()
                if rest.endswith("-->"):
                    rest = rest[:-3].strip()
                words = rest.split(None, 1)
                if words and words[0] == "skip":
                    b.skip = words[1] if len(words) > 1 else ""
                    b.annotation = []
                else:
                    b.annotation = [rest] if rest else []
            else:
                ann = []
                j += 1
                while j < len(lines) and lines[j].strip() != "-->":
                    if lines[j].strip():
                        ann.append(lines[j].strip())
                    j += 1
                b.annotation = ann
            i = j + 1
        blocks.append(b)
    return blocks


# ---- checking --------------------------------------------------------------


def walk(value, path):
    """Values at path: a list (several with [*]); None entries for missing."""
    vals = [value]
    for part in re.findall(r"[^.\[\]]+|\[\*\]|\[\d+\]", path):
        out = []
        for v in vals:
            if part == "[*]":
                if isinstance(v, list):
                    out.extend(v)
            elif part.startswith("["):
                k = int(part[1:-1])
                out.append(v[k] if isinstance(v, list) and k < len(v) else None)
            else:
                out.append(v.get(part) if isinstance(v, dict) else None)
        vals = out
    return vals


def literal(s):
    try:
        return json.loads(s)
    except ValueError:
        return s


def check(where, word, res, captures):
    """One check word against res {"status","json","stdout","stderr"}."""
    m = re.match(r"^>(\w+)([=@])(.*)$", word)
    if m:
        name, kind, what = m.groups()
        if kind == "@":
            mm = re.search(what, res["stdout"], re.M)
            if not mm:
                return fail(where, f"capture {name}: /{what}/ not in stdout:\n{res['stdout']}")
            captures[name] = mm.group(1)
        else:
            vals = walk(res["json"], what)
            if not vals or vals[0] is None:
                return fail(where, f"capture {name}: no {what} in {short(res)}")
            captures[name] = vals[0] if isinstance(vals[0], str) else json.dumps(vals[0])
        return
    m = re.match(r"^(stdout|stderr)~(.*)$", word, re.S)
    if m:
        if m.group(2) not in res[m.group(1)]:
            fail(where, f"{m.group(1)} lacks {m.group(2)!r}:\n{res[m.group(1)]}")
        return
    m = re.match(r"^([\w.\[\]*]+)(=|~|\?|!)(.*)$", word, re.S)
    if not m:
        return fail(where, f"cannot read the check {word!r}")
    path, op, want = m.groups()
    if res["json"] is None:
        return fail(where, f"{word}: the answer is not JSON: {short(res)}")
    vals = walk(res["json"], path)
    if op == "?":
        if not vals or any(v is None for v in vals):
            fail(where, f"{path} missing in {short(res)}")
    elif op == "!":
        if any(v is not None for v in vals):
            fail(where, f"{path} present in {short(res)}")
    elif not vals:
        fail(where, f"{path}: no such element in {short(res)}")
    elif op == "=":
        allowed = [literal(a) for a in want.split("|")]
        for v in vals:
            # a string field matches the text as written: "30.00" is not 30
            if not any((a == v and type(a) is type(v)) or v == raw
                       for a, raw in zip(allowed, want.split("|"))):
                fail(where, f"{path} is {json.dumps(v)}, expected {want} in {short(res)}")
                break
    else:  # ~
        for v in vals:
            if not isinstance(v, str) or want not in v:
                fail(where, f"{path} is {json.dumps(v)}, expected it to contain {want!r}")
                break


def short(res):
    s = res["body"] if res.get("body") is not None else res["stdout"]
    return s if len(s) < 600 else s[:600] + "..."


# ---- running ---------------------------------------------------------------


class Demo:
    """tools/demo.sh in a private copy of the layout it expects."""

    def __init__(self, src, build):
        self.root = tempfile.mkdtemp(prefix="perkhub-docs-")
        os.makedirs(os.path.join(self.root, "tools"))
        os.makedirs(os.path.join(self.root, "tmp"))
        shutil.copy(os.path.join(src, "tools", "demo.sh"), os.path.join(self.root, "tools"))
        os.symlink(build, os.path.join(self.root, "build"))
        bindir = os.path.join(self.root, "bin")
        os.makedirs(bindir)
        for b in ("perkctl", "perkhubd"):
            os.symlink(os.path.join(build, b), os.path.join(bindir, b))
        self.env = dict(os.environ, PORT="0", PATH=bindir + ":" + os.environ["PATH"])
        p = subprocess.run(["tools/demo.sh", "build"], cwd=self.root, env=self.env,
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"make demo failed ({p.returncode}):\n{p.stdout}{p.stderr}")
        with open(os.path.join(self.root, "var", "perkhubd.port")) as f:
            self.url = f"http://127.0.0.1:{int(f.read())}"
        self.env["PERKHUB_URL"] = self.url
        self.env.pop("PERKHUB_TOKEN", None)

    # What a sanitizer prints when it finds something (the daemon is demo.sh's
    # child, not ours, so its log, not its exit status, tells).
    SANITIZER_REPORTS = ("WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                         "ERROR: LeakSanitizer", "runtime error:")

    def stop(self, where, keep):
        pidf = os.path.join(self.root, "var", "perkhubd.pid")
        try:
            with open(pidf) as f:
                pid = int(f.read())
            os.kill(pid, 15)
            end = time.monotonic() + 60
            while os.path.exists(pidf) and time.monotonic() < end:
                time.sleep(0.05)
            if os.path.exists(pidf):
                fail(where, "the demo's perkhubd did not stop cleanly within 60 s")
        except (OSError, ValueError):
            pass
        try:
            with open(os.path.join(self.root, "var", "perkhubd.log"), errors="replace") as f:
                log = f.read()
        except OSError:
            log = ""
        for r in self.SANITIZER_REPORTS:
            if r in log:
                fail(where, f"the demo's perkhubd log has a sanitizer report ({r})")
                keep = True
        if keep:
            print(f"kept {self.root} (var/perkhubd.log has the daemon's log)")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def expand(s, captures):
    return re.sub(r"\$\{(\w+)\}", lambda m: captures.get(m.group(1), m.group(0)), s)


def run_block(demo, b, captures):
    text = "\n".join(b.lines)
    expectations = []
    for a in b.annotation:
        if a.startswith("replace "):
            words = shlex.split(a)
            if len(words) != 3:
                return fail(b.where, f"replace takes OLD NEW: {a!r}")
            if words[1] not in text:
                return fail(b.where, f"replace: {words[1]!r} is not in the block")
            text = text.replace(words[1], expand(words[2], captures))
        else:
            expectations.append(a)
    text = text.replace("http://127.0.0.1:8080", demo.url).replace("/tmp/", demo.root + "/tmp/")
    cmds = b.commands(text.split("\n"))
    if len(cmds) != len(expectations):
        return fail(b.where, f"{len(cmds)} commands but {len(expectations)} expectation lines: "
                    + " | ".join(c.split("\n")[0] for c in cmds))
    work = os.path.join(demo.root, "run")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    # one terminal session per file: what a block exports, later blocks see
    state = os.path.join(demo.root, "session.env")
    script = ["set +e", f"[ -f {state} ] && . {state}"]
    plans = []
    for n, (cmd, exp) in enumerate(zip(cmds, expectations)):
        words = shlex.split(exp)
        if not words:
            return fail(b.where, f"command {n + 1}: empty expectation")
        if words[0] == "skip":
            if len(words) < 2:
                return fail(b.where, f"command {n + 1}: skip needs a reason")
            plans.append(None)
            continue
        o = os.path.join(work, str(n))
        is_curl = cmd.lstrip().startswith("curl ")
        run = cmd + (f" -o {o}.body -w '%{{http_code}}'" if is_curl else "")
        script.append(f"{{ {run}\n}} >{o}.out 2>{o}.err </dev/null; __rc=$?; "
                      f"echo $__rc >{o}.rc; (exit $__rc)")
        plans.append((n, cmd, words, is_curl, o))
    script.append(f"export -p >{state}")
    env = dict(demo.env)
    env.update({k: v for k, v in captures.items()})
    try:
        subprocess.run(["bash", "-c", "\n".join(script)], cwd=demo.root, env=env,
                       timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return fail(b.where, f"the block ran longer than {BLOCK_TIMEOUT_S} s")
    for plan in plans:
        if plan is None:
            continue
        n, cmd, words, is_curl, o = plan
        where = f"{b.where} (command {n + 1}: {cmd.split(chr(10))[0][:80]})"

        def read(ext):
            try:
                with open(o + ext, encoding="utf-8", errors="replace") as f:
                    return f.read()
            except OSError:
                return ""

        res = {"stdout": read(".out"), "stderr": read(".err"), "body": None, "json": None}
        rc = read(".rc").strip()
        if is_curl:
            res["body"] = read(".body")
            got = res["stdout"].strip()
            if not re.fullmatch(r"\d{3}(\|\d{3})*", words[0]):
                fail(where, f"a curl command's expectation starts with its status, not {words[0]!r}")
                continue
            if got not in words[0].split("|"):
                fail(where, f"status {got or '(none: curl exit ' + rc + ')'}, expected "
                     f"{words[0]}: {short(res)}")
                continue
            src = res["body"]
        else:
            m = re.fullmatch(r"exit=(\d+)", words[0])
            if not m:
                fail(where, f"expected exit=N first, got {words[0]!r}")
                continue
            if rc != m.group(1):
                fail(where, f"exit {rc}, expected {m.group(1)}\nstdout: {res['stdout']}\n"
                     f"stderr: {res['stderr']}")
                continue
            src = res["stdout"]
        try:
            res["json"] = json.loads(src) if src.strip() else None
        except ValueError:
            res["json"] = None
        before = len(failures)
        for w in words[1:]:
            check(where, w if w.startswith(">") else expand(w, captures), res, captures)
        if len(failures) == before:
            print(f"ok   {where}", flush=True)


# `perkctl COMMAND --help` examples that can run as they are on a fresh demo:
# each example output line must be a line of the real output (times and the
# URL normalized). Run before docs/perkctl.md's own blocks, on its fresh demo.
HELP_RUNNABLE = ["suppliers", "status", "events"]
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def check_help(demo):
    env = dict(demo.env, PERKHUB_TOKEN="demo-ops-token")
    for name in HELP_RUNNABLE:
        where = f"perkctl {name} --help"
        h = subprocess.run(["build/perkctl", name, "--help"], cwd=demo.root, env=env,
                           capture_output=True, text=True, timeout=60).stdout
        ex = h.split("example:\n", 1)[1].split("\n") if "example:\n" in h else []
        if not ex or not ex[0].startswith("  $ perkctl "):
            fail(where, f"no example to run:\n{h}")
            continue
        argv = ["build/perkctl"] + shlex.split(ex[0][len("  $ perkctl "):])
        p = subprocess.run(argv, cwd=demo.root, env=env, capture_output=True, text=True,
                           timeout=60)
        norm = lambda l: TIME_RE.sub("T", l.replace(demo.url, "http://127.0.0.1:8080")).rstrip()
        got = {norm(l) for l in p.stdout.split("\n")}
        for l in ex[1:]:
            l = norm(l[2:] if l.startswith("  ") else l)
            if l and l != "..." and l not in got:
                fail(where, f"example line {l!r} is not what {' '.join(argv[1:])} prints:\n"
                     f"{p.stdout}")
    h = subprocess.run(["build/perkctl", "void", "--help"], cwd=demo.root, env=env,
                       capture_output=True, text=True, timeout=60).stdout
    if "already issued become voided" not in h:
        fail("perkctl void --help", f"does not say that issued codes are voided too:\n{h}")
    print("ok   perkctl --help examples", flush=True)


def main():
    src = os.environ.get("PH_SOURCE_DIR") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    build = os.environ.get("PH_BUILD_DIR")
    if not build:
        print("PH_BUILD_DIR is not set (run the test through ctest)", file=sys.stderr)
        return 2
    build = os.path.abspath(build)
    only = sys.argv[1:] or FILES
    for rel in only:
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            blocks = parse(rel, f.read())
        runnable = [b for b in blocks if b.runnable()]
        for b in runnable:
            if b.annotation is None:
                fail(b.where, "a runnable example without a docs-test annotation (expectations, "
                     "or `skip REASON`)")
            elif b.skip is not None and not b.skip.strip():
                fail(b.where, "skip needs a reason")
        todo = [b for b in runnable if b.annotation is not None and b.skip is None]
        print(f"== {rel}: {len(runnable)} runnable blocks, {len(todo)} to run", flush=True)
        if not todo:
            continue
        before = len(failures)
        try:
            demo = Demo(src, build)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            fail(rel, str(e))
            continue
        captures = {}
        try:
            if rel == "docs/perkctl.md":
                check_help(demo)
            for b in todo:
                run_block(demo, b, captures)
        finally:
            demo.stop(rel, keep=len(failures) > before)
    if failures:
        print(f"\n{len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print("  " + f.split("\n")[0], file=sys.stderr)
        return 1
    print("\nevery example ran as documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
