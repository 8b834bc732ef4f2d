"""Attack the store's guarantees and print what happened (issue 13's fault suite, kept).

Five scenario classes, each a bounded batch of real processes against real stores:

- kills:       SIGKILL / SIGTERM / SIGINT at every step of a forced write and of a removal
               (the ``ZOO_TEST_PAUSE`` seam), at random moments, and of real ``zoo pull``s;
- races:       concurrent writers of one key (locked and not), forced writers next to
               readers, removal against a forced write, ``gc --max-age 0`` next to a writer;
- corruption:  layouts of a broken entry under ``list``, ``verify``, ``info``, ``run``, ``pull``, ``rm``;
- hostile:     names, ONNX files with escaping external data, non-ONNX bytes, a code-running
               pickle, registries, a FIFO where a file belongs;
- environment: ``ZOO_HOME`` a file, ``/dev/null`` or under a file, a read-only store or
               export target, a closed stdout.

Issue 23's probe classes (on a second base store holding timm's tiny test_resnet, whose export
takes seconds):

- containment: each folder of the store (``models``, ``tmp``, ``generations``, ``locks``,
               ``hashes``, ``tensorrt``) a symlink out of ``ZOO_HOME``, under ``pull --force``,
               ``run``, ``verify``, ``rm``, ``gc``: nothing may be written outside;
- publish:     a file created at ``export -o``'s target while the export runs (``renameat2`` and
               the ``ZOO_NO_RENAMEAT2`` link path, ``-o FILE.onnx`` and ``-o DIR``): it must survive;
- mismatch:    ``models/KEY`` leading to another key's generation, under ``info``, ``run``, ``pull``,
               ``verify``: exit 3, never served;
- repair:      a broken record (invalid, no files, missing, unreadable with its model, a pointer
               out of the store): the command each error advises is run until the entry is whole;
               an advice that fails with the same line is unclean;
- memos:       ``rm`` and ``gc`` leave nothing of an entry behind (``hashes/KEY.json``, ``tensorrt/KEY``);
- unclean:     Ctrl-C 0.05-0.4 s into ``zoo run``, ONNX Runtime failing mid-run (a 256 GiB output),
               a ``tensor(string)`` input, ``--weights /proc/self/mem``, ``ZOO_HOME=/proc/self/x``,
               ``generations`` a regular file (with torch poisoned: refused before any export);
- remote:      a ``file://`` remote under ``HF_HUB_OFFLINE=1`` (must serve), ``ZOO_OFFLINE=1`` and
               ``--no-remote`` (off, and said on stderr).

Each case ends as one of: clean (the documented outcome: success, or one ``zoo:`` line with
the documented exit code), unclean (a traceback, an internal error, several lines),
wrong exit, lost (a valid entry disappeared or stopped verifying), breach (something outside
``ZOO_HOME`` changed, or a pickle ran), hang (no answer within the case's time limit).

Bounded in count (fixed case lists, ``--random N`` kills) and in time (``--budget`` seconds
for the whole suite: cases left when it runs out are counted as skipped). Every process
runs with a 4 GiB address-space limit, so a case that would exhaust memory fails instead.

Run: python benchmarks/fault_suite.py [--budget 300] [--random 8] [--only CLASSES] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMALL = ["torchvision:mobilenet_v3_small", "--weights", "none", "--exporter", "torchscript"]
TINY = ["timm:test_resnet", "--weights", "none", "--exporter", "torchscript"]
KEY = "0123456789abcdef0123"
OUTCOMES = ("clean", "unclean", "wrong exit", "lost", "breach", "hang")
SCENARIOS = ("kills", "races", "corruption", "hostile", "environment",  # issue 13's
             "containment", "publish", "mismatch", "repair", "memos", "unclean", "remote")  # issue 23's
POINTS = ("tmp-made", "synced", "placed", "linked", "swapped", "trashed")
MEMORY_LIMIT = 4 << 30

# A store writer with a fake producer: the store's protocol without an export's cost.
WRITER = """
import sys, time
from zoo.record import Record
from zoo.store import MODEL_FILE, Store
label, force, slow = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
def produce(directory):
    for part in range(3):
        (directory / f"part{part}.bin").write_bytes(label.encode() * 50000)
        time.sleep(slow)
    (directory / MODEL_FILE).write_bytes(label.encode())
    return Record(name="fake", ref="fake:m", other={"label": label})
Store().create(sys.argv[4], produce, force=force)
"""
REMOVER = "import sys; from zoo.store import Store; Store().remove(sys.argv[1])"


@dataclass
class Result:
    scenario: str
    case: str
    outcome: str
    detail: str = ""


@dataclass
class Suite:
    work: Path
    budget_s: float
    base: Path = field(init=False)
    tiny: Path = field(init=False)
    outside: Path = field(init=False)
    results: list[Result] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.base = self.work / "base"
        self.tiny = self.work / "tiny-base"
        self.outside = self.work / "outside"  # must never change
        self.outside.mkdir(parents=True)
        (self.outside / "secret.bin").write_bytes(bytes(range(16)))
        self.outside_digest = _tree_digest(self.outside)

    # -- bookkeeping ---------------------------------------------------------------------------
    def time_left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def case(self, scenario: str, name: str, run: Callable[[], tuple[str, str]]) -> None:
        if self.time_left() <= 0:
            self.skipped[scenario] += 1
            return
        try:
            outcome, detail = run()
        except subprocess.TimeoutExpired as exc:
            outcome, detail = "hang", f"no answer in {exc.timeout:.0f} s"
        except Exception as exc:  # the suite's own check failed: report it, go on
            outcome, detail = "unclean", f"suite: {type(exc).__name__}: {exc}"
        if _tree_digest(self.outside) != self.outside_digest:
            outcome, detail = "breach", "a file outside ZOO_HOME changed"
            self.restore_outside()  # so the next case is judged on its own
        self.results.append(Result(scenario, name, outcome, detail))

    def restore_outside(self) -> None:
        shutil.rmtree(self.outside, ignore_errors=True)
        self.outside.mkdir(parents=True)
        (self.outside / "secret.bin").write_bytes(bytes(range(16)))

    # -- stores ------------------------------------------------------------------------------------
    def fresh(self, name: str, with_entry: bool = True, tiny: bool = False) -> Path:
        home = self.work / "cases" / f"{len(self.results)}-{name.replace('/', '_')[:40]}"
        if with_entry:
            shutil.copytree(self.tiny if tiny else self.base, home, symlinks=True)
        else:
            home.mkdir(parents=True)
        return home

    def env(self, home: Path | str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
        env.update(ZOO_HOME=str(home), ZOO_CONFIG_DIR=str(self.work / "config"), **extra)
        return env


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def zoo(env: dict[str, str], *args: str, timeout: float = 60, stdin: int | None = subprocess.DEVNULL,
        shell_suffix: str = "") -> subprocess.CompletedProcess[str]:
    if shell_suffix:  # e.g. ">&-": run through bash to close a stream
        quoted = " ".join(f"'{a}'" for a in [sys.executable, "-m", "zoo", *args])
        return subprocess.run(["bash", "-c", f"exec {quoted} {shell_suffix}"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory)
    return subprocess.run([sys.executable, "-m", "zoo", *args], env=env, cwd=REPO, stdin=stdin,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory)


def judge(proc: subprocess.CompletedProcess[str], expected: set[int], *fragments: str) -> tuple[str, str]:
    """The outcome of one command against its documented exit codes."""
    lines = proc.stderr.strip().splitlines()
    first = lines[0] if lines else ""
    if proc.returncode not in expected:
        return "wrong exit", f"exit {proc.returncode} (want {sorted(expected)}): {first[:160]}"
    report = proc.args[3:4] == ["verify"]  # `zoo verify` prints its report on stdout, failing or not
    if proc.returncode != 0:
        if (len(lines) != 1 or not first.startswith("zoo: ") or "internal error" in first
                or "Traceback" in proc.stderr or (proc.stdout and not report)):
            return "unclean", f"exit {proc.returncode}: {' | '.join(lines[:3])[:200]}"
        missing = [f for f in fragments if f not in first]
        if missing:
            return "unclean", f"message lacks {missing}: {first[:160]}"
    return "clean", first[:160]


def entry_state(suite: Suite, home: Path) -> tuple[bool, str]:
    """Whether KEY (or the base entry) is listed and every listed entry verifies."""
    env = suite.env(home)
    listed = zoo(env, "list", "--json", timeout=60)
    verified = zoo(env, "verify", "--json", timeout=120)
    if listed.returncode != 0 or verified.returncode != 0:
        return False, f"list {listed.returncode} verify {verified.returncode}: {verified.stdout[-200:]}"
    return bool(json.loads(listed.stdout)), listed.stdout


# -- setup -------------------------------------------------------------------------------------------
def build_base(suite: Suite) -> None:
    """One real entry (mobilenet_v3_small, random weights) every store-backed case starts from."""
    proc = zoo(suite.env(suite.base), "pull", *SMALL, "--json", timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"cannot build the base store: {proc.stderr}")
    suite.base_key = json.loads(proc.stdout)["key"]


def build_tiny(suite: Suite) -> None:
    """The base of issue 23's classes: timm's test_resnet (random weights), hashes memo written."""
    env = suite.env(suite.tiny)
    proc = zoo(env, "pull", *TINY, "--json", timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"cannot build the tiny base store: {proc.stderr}")
    suite.tiny_key = json.loads(proc.stdout)["key"]
    zoo(env, "verify", timeout=120)


def writer(suite: Suite, home: Path, label: str, force: bool, slow: float = 0.0, key: str = KEY,
           **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, label, "1" if force else "0", str(slow), key],
                            env=suite.env(home, **extra), cwd=REPO, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_limit_memory)


def wait_pause(proc: subprocess.Popen[str], point: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    line = proc.stderr.readline()  # the pause line comes first; a failure shows its output
    if line.strip() != f"zoo: test pause at {point}" or time.monotonic() > deadline:
        proc.kill()
        raise RuntimeError(f"writer did not pause at {point}: {line}{proc.stderr.read()[-300:]}")


def fake_entry(suite: Suite, home: Path, label: str = "old") -> None:
    proc = writer(suite, home, label, force=False)
    if proc.wait(timeout=60) != 0:
        raise RuntimeError(proc.stderr.read())


# -- kills ---------------------------------------------------------------------------------------------
def kills(suite: Suite, rounds: int) -> None:
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        for point in POINTS:
            suite.case("kills", f"forced write, {sig.name} at {point}",
                       lambda sig=sig, point=point: _kill_forced(suite, sig, point))
        suite.case("kills", f"remove, {sig.name} after unlinking", lambda sig=sig: _kill_remove(suite, sig))
    rng = random.Random(13)
    for _ in range(rounds):
        delay = rng.uniform(0.05, 0.8)
        suite.case("kills", f"forced write, SIGKILL after {delay:.2f} s",
                   lambda delay=delay: _kill_forced(suite, signal.SIGKILL, None, delay))
    for delay in (1.5, 4.0)[: max(1, rounds // 4)]:
        suite.case("kills", f"real `zoo pull --force`, SIGKILL after {delay} s",
                   lambda delay=delay: _kill_real_pull(suite, delay))
    suite.case("kills", "real `zoo pull`, SIGINT (Ctrl-C)", lambda: _interrupt_real_pull(suite))


def _kill_forced(suite: Suite, sig: signal.Signals, point: str | None, delay: float = 0.0) -> tuple[str, str]:
    home = suite.fresh("kill", with_entry=False)
    fake_entry(suite, home)
    extra = {"ZOO_TEST_PAUSE": point} if point else {}
    proc = writer(suite, home, "new", force=True, slow=0.05 if point is None else 0.0, **extra)
    try:
        if point:
            wait_pause(proc, point)
            present, detail = entry_state(suite, home)  # while the writer is stopped there
            if not present:
                return "lost", f"no entry while stopped at {point}: {detail[:200]}"
        else:
            time.sleep(delay)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    present, detail = entry_state(suite, home)
    if not present:
        return "lost", detail[:200]
    zoo(suite.env(home), "gc", timeout=60)
    present, detail = entry_state(suite, home)
    return ("clean", "") if present else ("lost", f"after gc: {detail[:200]}")


def _kill_remove(suite: Suite, sig: signal.Signals) -> tuple[str, str]:
    home = suite.fresh("kill-rm", with_entry=False)
    fake_entry(suite, home)
    proc = subprocess.Popen([sys.executable, "-c", REMOVER, KEY], env=suite.env(home, ZOO_TEST_PAUSE="unlinked"),
                            cwd=REPO, text=True, stderr=subprocess.PIPE)
    try:
        wait_pause(proc, "unlinked")
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    present, detail = entry_state(suite, home)
    if present:
        return "unclean", "the removed entry is still listed"
    zoo(suite.env(home), "gc", timeout=60)
    leftovers = os.listdir(home / "generations") + os.listdir(home / "tmp")
    return ("clean", "") if not leftovers else ("unclean", f"gc left {leftovers}")


def _kill_real_pull(suite: Suite, delay: float) -> tuple[str, str]:
    home = suite.fresh("kill-real")
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "pull", "--force", *SMALL], env=suite.env(home),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_limit_memory)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    present, detail = entry_state(suite, home)
    return ("clean", "") if present else ("lost", detail[:200])


def _interrupt_real_pull(suite: Suite) -> tuple[str, str]:
    home = suite.fresh("ctrl-c", with_entry=False)
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "pull", *SMALL],
                            env=suite.env(home, ZOO_TEST_PAUSE="tmp-made"), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_pause(proc, "tmp-made")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    if proc.returncode != 130:
        return "wrong exit", f"exit {proc.returncode}"
    if (out, err) != ("", "zoo: interrupted\n") or os.listdir(home / "tmp"):
        return "unclean", f"stderr {err!r}, tmp {os.listdir(home / 'tmp')}"
    return "clean", ""


# -- races ---------------------------------------------------------------------------------------------
def races(suite: Suite) -> None:
    for locked in (True, False):
        for n in range(2):
            suite.case("races", f"4 writers of one new key ({'locked' if locked else 'ZOO_NO_LOCK'}) #{n}",
                       lambda locked=locked: _writers(suite, locked))
    for n in range(3):
        suite.case("races", f"3 forced writers next to readers #{n}", lambda: _forced_with_readers(suite))
    for n in range(2):
        suite.case("races", f"remove against a forced write #{n}", lambda: _remove_vs_force(suite))
    for point in ("tmp-made", "synced", "placed", "linked"):
        suite.case("races", f"gc --max-age 0 next to a writer stopped at {point}",
                   lambda point=point: _gc_next_to_writer(suite, point))


def _writers(suite: Suite, locked: bool) -> tuple[str, str]:
    home = suite.fresh("race", with_entry=False)
    extra = {} if locked else {"ZOO_NO_LOCK": "1"}
    procs = [writer(suite, home, f"w{i}", force=False, slow=0.02, **extra) for i in range(4)]
    codes = [p.wait(timeout=60) for p in procs]
    if codes != [0] * 4:
        return "wrong exit", f"writers exited {codes}: {procs[codes.index(max(codes))].stderr.read()[-200:]}"
    present, detail = entry_state(suite, home)
    if not present:
        return "lost", detail[:200]
    if os.listdir(home / "tmp") or len(os.listdir(home / "generations")) != 1:
        return "unclean", f"left {os.listdir(home / 'tmp')} {os.listdir(home / 'generations')}"
    return "clean", ""


def _forced_with_readers(suite: Suite) -> tuple[str, str]:
    home = suite.fresh("force-read", with_entry=False)
    fake_entry(suite, home)
    procs = [writer(suite, home, f"w{i}", force=True, slow=0.02) for i in range(3)]
    misses = 0
    while any(p.poll() is None for p in procs):
        if not (home / "models" / KEY / "zoo.json").is_file():  # what every reader opens
            misses += 1
        time.sleep(0.002)
    codes = [p.wait() for p in procs]
    present, detail = entry_state(suite, home)
    if misses or not present:
        return "lost", f"the key was absent {misses} times while forced writers ran"
    if codes != [0] * 3:
        return "wrong exit", f"writers exited {codes}"
    return "clean", ""


def _remove_vs_force(suite: Suite) -> tuple[str, str]:
    home = suite.fresh("rm-force", with_entry=False)
    fake_entry(suite, home)
    procs = [writer(suite, home, "new", force=True, slow=0.02),
             subprocess.Popen([sys.executable, "-c", REMOVER, KEY], env=suite.env(home), cwd=REPO,
                              stderr=subprocess.PIPE, text=True)]
    codes = [p.wait(timeout=60) for p in procs]
    if codes != [0, 0]:
        return "wrong exit", f"exited {codes}"
    verified = zoo(suite.env(home), "verify", "--json")
    return judge(verified, {0})


def _gc_next_to_writer(suite: Suite, point: str) -> tuple[str, str]:
    replacing = point == "linked"  # only a forced write over an entry makes a new link to swap in
    home = suite.fresh("gc", with_entry=replacing)
    proc = writer(suite, home, "new", force=replacing, ZOO_TEST_PAUSE=point)
    try:
        wait_pause(proc, point)
        before = sorted(os.listdir(home / "tmp")) + sorted(os.listdir(home / "generations")
                                                           if (home / "generations").is_dir() else [])
        gc = zoo(suite.env(home), "gc", "--max-age", "0", "--json")
        after = sorted(os.listdir(home / "tmp")) + sorted(os.listdir(home / "generations")
                                                          if (home / "generations").is_dir() else [])
    finally:
        proc.kill()
        proc.wait()
    if after != before:
        return "lost", f"gc removed a running writer's files: {json.loads(gc.stdout or '{}')}"
    return judge(gc, {0})


# -- corruption -----------------------------------------------------------------------------------------
def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _record(change: Callable[[dict], object]) -> Callable[..., None]:
    def corrupt(entry: Path, _suite: object = None) -> None:
        record = json.loads((entry / "zoo.json").read_text())
        change(record)
        (entry / "zoo.json").write_text(json.dumps(record))
    return corrupt


# name -> (corrupt(entry_dir, suite), exit codes allowed for list, verify, info, run, rm)
CORRUPTIONS: dict[str, tuple[Callable[..., None], dict[str, set[int]]]] = {}


def _corruption(name: str, **codes: set[int]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    expected = {"list": {0}, "verify": {3}, "info": {3}, "run": {3}, "pull": {3}, "rm": {0}}
    expected.update(codes)

    def register(corrupt: Callable[..., None]) -> Callable[..., None]:
        CORRUPTIONS[name] = (corrupt, expected)
        return corrupt
    return register


_corruption("flipped byte in model.onnx", info={0})(lambda e, s: _flip(e / "model.onnx"))
_corruption("truncated model.onnx", info={0})(lambda e, s: os.truncate(e / "model.onnx", 100))
_corruption("model.onnx deleted", info={0})(lambda e, s: (e / "model.onnx").unlink())
_corruption("model.onnx a symlink out", info={0})(
    lambda e, s: ((e / "model.onnx").unlink(), (e / "model.onnx").symlink_to(s.outside / "secret.bin")))
_corruption("extra file recorded nowhere", verify={0}, info={0}, run={0}, pull={0})(
    lambda e, s: (e / "extra.bin").write_bytes(b"x"))
# pull: a missing record or target is a miss, exported again (a repair); a flipped byte is exit 3.
_corruption("zoo.json missing", info={1}, run={0, 1, 3}, pull={0}, rm={0, 1})(lambda e, s: (e / "zoo.json").unlink())
_corruption("zoo.json invalid JSON")(lambda e, s: (e / "zoo.json").write_text("{ not json"))
_corruption("zoo.json empty")(lambda e, s: (e / "zoo.json").write_text(""))
_corruption("zoo.json a list")(lambda e, s: (e / "zoo.json").write_text("[1, 2]"))
_corruption("zoo.json a directory")(lambda e, s: ((e / "zoo.json").unlink(), (e / "zoo.json").mkdir()))
_corruption("zoo.json binary")(lambda e, s: (e / "zoo.json").write_bytes(b"\x00\xff\xfe garbage"))
_corruption("files: [1, 2]")(_record(lambda r: r.update(files=[1, 2])))
_corruption("files record without size")(_record(lambda r: r["files"][0].pop("size")))
_corruption("size a string")(_record(lambda r: r["files"][0].update(size="big")))
_corruption("files path ../../outside")(_record(lambda r: r["files"][0].update(path="../../outside/secret.bin")))
_corruption("name null", info={0, 3}, run={0, 3})(_record(lambda r: r.update(name=None)))
_corruption("weights a string", info={0, 3}, run={0, 3})(_record(lambda r: r.update(weights="x")))
_corruption("JSON nested 200,000 deep")(lambda e, s: (e / "zoo.json").write_text("[" * 200_000 + "]" * 200_000))
_corruption("pointer dangling", info={1}, run={0, 1, 3}, pull={0}, rm={0, 1})(
    lambda e, s: shutil.rmtree(e.resolve()))
_corruption("pointer to outside ZOO_HOME", list={0, 1}, verify={1, 3}, info={1, 3}, run={1, 3}, rm={1, 3})(
    lambda e, s: (e.unlink(), e.symlink_to(s.outside)))
_corruption("zoo.json a FIFO")(lambda e, s: ((e / "zoo.json").unlink(), os.mkfifo(e / "zoo.json")))


def corruption(suite: Suite) -> None:
    for name, (corrupt, expected) in CORRUPTIONS.items():
        for command, codes in expected.items():
            suite.case("corruption", f"{name}: {command}",
                       lambda c=corrupt, cmd=command, codes=codes: _corrupted(suite, c, cmd, codes))


def _corrupted(suite: Suite, corrupt: Callable[..., None], command: str, codes: set[int]) -> tuple[str, str]:
    home = suite.fresh("corrupt")
    intact = home / "models" / ("f" * 20)  # a second, healthy entry: it must survive everything
    shutil.copytree(home / "models" / suite.base_key, intact)
    record = json.loads((intact / "zoo.json").read_text())
    (intact / "zoo.json").write_text(json.dumps({**record, "key": intact.name}))  # its own, not the copied one's
    corrupt(home / "models" / suite.base_key, suite)
    args = {"list": ["list"], "verify": ["verify"], "info": ["info", *SMALL], "run": ["run", *SMALL],
            "pull": ["pull", *SMALL], "rm": ["rm", suite.base_key]}[command]  # a broken record: removed by key
    outcome = judge(zoo(suite.env(home), *args, timeout=30), codes)
    if outcome[0] == "clean" and command in ("list", "verify"):
        listed = zoo(suite.env(home), "list", "--json", timeout=30)
        if listed.returncode != 0 or intact.name not in listed.stdout:
            return "lost", "the healthy entry is not listed next to the broken one"
    return outcome


# -- hostile inputs ----------------------------------------------------------------------------------------
def hostile(suite: Suite) -> None:
    for name in ("../x", "/etc/passwd", "..", "a/b", "C:\\x", ".hidden", "x" * 300, "local:../../etc/shadow"):
        for command in ("pull", "info", "rm"):
            suite.case("hostile", f"name {name[:24]!r}: {command}",
                       lambda name=name, command=command: _hostile_name(suite, name, command))
    for kind, location in (("dense absolute", "ABS"), ("dense ..", "../secret.bin"), ("dense symlink", "link.bin"),
                           ("sparse absolute", "ABS"), ("sparse symlink", "link.bin"),
                           ("constant absolute", "ABS"), ("function absolute", "ABS")):
        for command in ("run", "info"):
            suite.case("hostile", f"ONNX {kind} external data: {command}",
                       lambda kind=kind, location=location, command=command:
                       _hostile_onnx(suite, kind, location, command))
    for label, content in (("non-ONNX bytes", b"GIF89a not a model"), ("empty file", b""),
                           ("truncated protobuf", b"\x08\x09\x12\xff\xff\xff\xff\x0f")):
        for command in ("run", "info"):
            suite.case("hostile", f"{label} as .onnx: {command}",
                       lambda content=content, command=command: _bad_onnx(suite, content, command))
    suite.case("hostile", "FIFO as .onnx: run", lambda: _fifo_onnx(suite))
    suite.case("hostile", "pickle that runs code as a checkpoint", lambda: _evil_pickle(suite))
    for label, text in (("TOML garbage", "[models.x\nsource ="),
                        ("unknown key", '[models.x]\nsource="timm"\nnme="a"\n'),
                        ("NUL in a path", '[models.x]\nsource = "torchvision"\nname = "resnet18"\n'
                                          'weights = "/tmp/a\\u0000b"\n'),
                        ("nested arrays", "x = " + "[" * 5000 + "]" * 5000 + "\n"),
                        ("local alias", '[models.x]\nsource = "local"\nname = "NOFILE"\n')):
        suite.case("hostile", f"registry: {label}", lambda text=text: _hostile_registry(suite, text))
    suite.case("hostile", "registry: a directory", lambda: judge(
        zoo(suite.env(suite.fresh("reg-dir", False)), "pull", "x", "--registry", str(suite.work)), {1}))


def _hostile_name(suite: Suite, name: str, command: str) -> tuple[str, str]:
    home = suite.fresh("name")
    before = _tree_digest(home)
    outcome = judge(zoo(suite.env(home), command, name), {1})
    if _tree_digest(home) != before:
        return "breach", "the store changed for a refused name"
    return outcome


def _planted(folder: Path, kind: str, location: str, secret: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    import onnx
    from helpers import planted_model  # the same hostile models the tests use

    (folder / "link.bin").symlink_to(secret)
    kind_name = {"dense": "dense", "sparse": "sparse values", "constant": "constant attribute",
                 "function": "function"}[kind.split()[0]]
    model = planted_model(kind_name, str(secret) if location == "ABS" else location)
    onnx.save(model, str(folder / "model.onnx"))
    return folder / "model.onnx"


def _hostile_onnx(suite: Suite, kind: str, location: str, command: str) -> tuple[str, str]:
    home = suite.fresh("onnx", with_entry=False)
    folder = home / "model"
    folder.mkdir()
    model = _planted(folder, kind, location, suite.outside / "secret.bin")
    proc = zoo(suite.env(home), command, str(model), timeout=60)
    if command == "info":  # reads metadata only, never tensor data: success is fine
        return judge(proc, {0})
    return judge(proc, {3}, "external data")


def _bad_onnx(suite: Suite, content: bytes, command: str) -> tuple[str, str]:
    home = suite.fresh("bad-onnx", with_entry=False)
    path = home / "bad.onnx"
    path.write_bytes(content)
    return judge(zoo(suite.env(home), command, str(path), timeout=60), {1})


def _fifo_onnx(suite: Suite) -> tuple[str, str]:
    home = suite.fresh("fifo", with_entry=False)
    os.mkfifo(home / "fifo.onnx")
    return judge(zoo(suite.env(home), "run", str(home / "fifo.onnx"), timeout=20), {1})


EVIL = """
import os, pickle, sys
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
with open(sys.argv[1], "wb") as f:
    pickle.dump({"state_dict": Evil()}, f)
"""


def _evil_pickle(suite: Suite) -> tuple[str, str]:
    home = suite.fresh("pickle", with_entry=False)
    sentinel = suite.work / "PWNED"
    subprocess.run([sys.executable, "-c", EVIL, str(home / "evil.pth"), str(sentinel)], check=True)
    proc = zoo(suite.env(home), "export", "--checkpoint", str(home / "evil.pth"), "--arch", "timm:test_vit",
               "-o", str(home / "out"), timeout=240)
    if sentinel.exists():
        return "breach", "the pickle ran"
    return judge(proc, {1})


def _hostile_registry(suite: Suite, text: str) -> tuple[str, str]:
    home = suite.fresh("registry", with_entry=False)
    registry = home / "registry.toml"
    registry.write_text(text.replace("NOFILE", str(home / "missing.pth")))
    return judge(zoo(suite.env(home), "pull", "x", "--registry", str(registry), timeout=60), {1})


# -- environment --------------------------------------------------------------------------------------------
def environment(suite: Suite) -> None:
    regular = suite.work / "a-file"
    regular.write_text("not a store")
    commands = [["list"], ["verify"], ["gc"], ["info", *SMALL], ["rm", *SMALL], ["pull", *SMALL],
                ["pull", "--force", *SMALL], ["run", *SMALL]]
    for label, root in (("a regular file", regular), ("/dev/null", "/dev/null"), ("under a file", regular / "x")):
        for args in commands:
            suite.case("environment", f"ZOO_HOME {label}: {' '.join(args[:2])}",
                       lambda root=root, args=args: judge(zoo(suite.env(root), *args), {4}, "ZOO_HOME"))
    suite.case("environment", "models is a file: list", lambda: _models_file(suite))
    for args, codes in ((["pull", *SMALL], {0}), (["list"], {0}), (["verify"], {0}), (["gc"], {0}),
                        (["rm", *SMALL], {4}), (["pull", "resnet18", "--weights", "none"], {4})):
        suite.case("environment", f"read-only store: {' '.join(args[:2])}",
                   lambda args=args, codes=codes: _read_only(suite, args, codes))
    suite.case("environment", "export -o onto a read-only mount", lambda: _export_read_only(suite))
    suite.case("environment", "stdout closed: list", lambda: judge(
        zoo(suite.env(suite.fresh("closed")), "list", shell_suffix=">&-"), {4}, "standard output"))
    suite.case("environment", "stdout closed: pull (cached)", lambda: judge(
        zoo(suite.env(suite.fresh("closed")), "pull", *SMALL, shell_suffix=">&-"), {4}, "standard output"))
    suite.case("environment", "ZOO_REGISTRY a FIFO", lambda: _fifo_registry(suite))


def _models_file(suite: Suite) -> tuple[str, str]:
    home = suite.fresh("models-file", with_entry=False)
    (home / "models").write_text("x")
    return judge(zoo(suite.env(home), "list"), {4}, "ZOO_HOME")


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _read_only(suite: Suite, args: list[str], codes: set[int]) -> tuple[str, str]:
    home = suite.fresh("ro")
    if not (_mount("--bind", str(home), str(home)) and _mount("-o", "remount,bind,ro", str(home))):
        subprocess.run(["umount", "-l", str(home)], capture_output=True)
        return "clean", "skipped: cannot mount here"
    try:
        return judge(zoo(suite.env(home), *args), codes)
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)


def _export_read_only(suite: Suite) -> tuple[str, str]:
    target = suite.fresh("ro-target", with_entry=False)
    if not _mount("-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(target)):
        return "clean", "skipped: cannot mount here"
    try:
        return judge(zoo(suite.env(suite.fresh("ro-export")), "export", *SMALL, "-o", str(target)), {4},
                     "Read-only")
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _fifo_registry(suite: Suite) -> tuple[str, str]:
    home = suite.fresh("fifo-reg")
    os.mkfifo(home / "registry.toml")
    return judge(zoo(suite.env(home, ZOO_REGISTRY=str(home / "registry.toml")), "pull", *SMALL, timeout=20), {1})


# -- issue 23: every store folder contained --------------------------------------------------------------
FOLDERS = ("models", "tmp", "generations", "locks", "hashes", "tensorrt")


def containment(suite: Suite) -> None:
    for folder in FOLDERS:
        for args in (["pull", "--force", *TINY], ["run", *TINY], ["verify"], ["rm", *TINY], ["gc"]):
            suite.case("containment", f"{folder} a symlink out: {' '.join(args[:2])}",
                       lambda folder=folder, args=args: _contained(suite, folder, args))


def _contained(suite: Suite, folder: str, args: list[str]) -> tuple[str, str]:
    """The folder leads to ``suite.outside`` (whose digest the case checks): any write there is
    a breach; the command may work without the folder or refuse in one line."""
    home = suite.fresh(f"out-{folder}", tiny=True)
    path = home / folder
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    path.symlink_to(suite.outside, target_is_directory=True)
    return judge(zoo(suite.env(home), *args, timeout=240), {0, 1, 3, 4})


# -- issue 23: export never replaces what appeared meanwhile ---------------------------------------------
def publish(suite: Suite) -> None:
    for method in ("renameat2", "link"):
        for target in ("FILE.onnx", "DIR"):
            suite.case("publish", f"a file appears at -o {target} during the export ({method})",
                       lambda method=method, target=target: _appears(suite, method, target))


def _appears(suite: Suite, method: str, target: str) -> tuple[str, str]:
    home = suite.fresh("publish", with_entry=False)
    out_dir = home / "out"
    out_dir.mkdir()
    output = out_dir / "model.onnx" if target == "DIR" else out_dir / "tiny.onnx"
    extra = {"ZOO_NO_RENAMEAT2": "1"} if method == "link" else {}
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "export", *TINY, "-o",
                             str(out_dir if target == "DIR" else output)],
                            env=suite.env(home, **extra), cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_limit_memory)
    theirs = b"someone else's file"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".zoo-export.") for p in out_dir.iterdir()):  # past the check: exporting
            output.write_bytes(theirs)
            break
        time.sleep(0.01)
    out, err = proc.communicate(timeout=240)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if not output.exists() or output.read_bytes() != theirs:
        return "lost", f"the file written during the export was replaced (exit {proc.returncode})"
    return judge(result, {1}, "appeared during the export")


# -- issue 23: models/KEY leading to another key's generation --------------------------------------------
def mismatch(suite: Suite) -> None:
    for args in (["info", "KEY"], ["run", "KEY"], ["pull", "KEY"], ["verify", "KEY"], ["verify"]):
        suite.case("mismatch", f"models/KEY leads to another key's files: {' '.join(args)}",
                   lambda args=args: _mismatched(suite, args))


def _mismatched(suite: Suite, args: list[str]) -> tuple[str, str]:
    home = suite.fresh("mismatch", tiny=True)
    key, other = suite.tiny_key, "e" * 20
    generation = (home / "models" / key).resolve()
    twin = home / "generations" / f"{other}.twin"
    shutil.copytree(generation, twin)
    record = json.loads((twin / "zoo.json").read_text())
    (twin / "zoo.json").write_text(json.dumps({**record, "key": other}))  # another key's entry...
    (home / "models" / other).symlink_to(f"../generations/{twin.name}")
    (home / "models" / key).unlink()
    (home / "models" / key).symlink_to(f"../generations/{twin.name}")  # ...served through KEY
    return judge(zoo(suite.env(home), *[key if a == "KEY" else a for a in args], timeout=120), {3}, key)


# -- issue 23: repair advice that works -------------------------------------------------------------------
def repair(suite: Suite) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import ENTRY_DAMAGES  # the repair-advice test's damages

    for damage in ENTRY_DAMAGES:
        suite.case("repair", f"{damage}: follow the advice", lambda damage=damage: _follow_advice(suite, damage))


def _follow_advice(suite: Suite, damage: str) -> tuple[str, str]:
    from helpers import damage_entry

    home = suite.fresh("repair", tiny=True)
    key = suite.tiny_key
    damage_entry(home / "models" / key, damage, suite.work / "cases" / f"{len(suite.results)}-elsewhere")
    env = suite.env(home)
    proc = zoo(env, "info", key, timeout=60)
    said: list[str] = []
    for _ in range(4):  # the error's advice, then the next error's: at most a few steps
        lines = proc.stderr.strip().splitlines()
        if proc.returncode == 0:
            break
        if len(lines) != 1 or "`zoo " not in lines[0]:
            return "unclean", f"no advice to follow: {' | '.join(lines[:2])[:200]}"
        if lines[0] in said:
            return "unclean", f"the advice leads back to the same error: {lines[0][:200]}"
        said.append(lines[0])
        advice = lines[0].split("`zoo ", 1)[1].split("`", 1)[0].split()
        proc = zoo(env, *advice, timeout=240)
        if proc.returncode == 0 and advice[0] == "rm":  # removed: the advice goes on with a pull by name
            proc = zoo(env, "pull", *TINY, timeout=240)
    if proc.returncode != 0:
        return "unclean", f"still failing after {len(said)} advised steps: {proc.stderr.strip()[:200]}"
    return judge(zoo(env, "verify", timeout=120), {0})


# -- issue 23: rm and gc leave nothing behind -----------------------------------------------------------
def memos(suite: Suite) -> None:
    suite.case("memos", "rm KEY removes hashes/KEY.json and tensorrt/KEY", lambda: _left_behind(suite, "rm"))
    suite.case("memos", "gc removes the memos of a key with no entry", lambda: _left_behind(suite, "gc"))


def _left_behind(suite: Suite, command: str) -> tuple[str, str]:
    home = suite.fresh("memos", tiny=True)
    key = suite.tiny_key
    if command == "gc":  # the entry went without its memos (an older release's rm, a killed one)
        (home / "models" / key).unlink()
    (home / "tensorrt" / key).mkdir(parents=True)  # an engine cache a CUDA run would have left
    (home / "tensorrt" / key / "engine.bin").write_bytes(b"x")
    memo = home / "hashes" / f"{key}.json"
    if not memo.is_file():  # a fresh export's files are too new to be trusted yet (the racy rule)
        memo.parent.mkdir(exist_ok=True)
        memo.write_text("{}")
    proc = zoo(suite.env(home), *(["rm", key] if command == "rm" else ["gc"]), timeout=120)
    left = [p for p in (home / "hashes" / f"{key}.json", home / "tensorrt" / key) if os.path.lexists(p)]
    if proc.returncode == 0 and left:
        return "unclean", f"{command} left {[str(p.relative_to(home)) for p in left]}"
    return judge(proc, {0})


# -- issue 23: the last unclean cases ---------------------------------------------------------------------
def unclean(suite: Suite) -> None:
    for delay in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4):
        suite.case("unclean", f"Ctrl-C {delay:.2f} s into zoo run", lambda delay=delay: _ctrl_c_run(suite, delay))
    for args in (["run"], ["bench", "--mode", "iobinding"]):
        suite.case("unclean", f"ONNX Runtime failing mid-run: {' '.join(args)}",
                   lambda args=args: _model_case(suite, "huge", args, {4}, "out of memory"))
    for args in (["run"], ["bench"]):
        suite.case("unclean", f"tensor(string) input: {args[0]}",
                   lambda args=args: _model_case(suite, "strings", args, {1}, "tensor(string)"))
    for args in (["pull", *TINY[:1]], ["export", *TINY[:1]]):
        suite.case("unclean", f"--weights /proc/self/mem: {args[0]}", lambda args=args: _mem_weights(suite, args))
    for args in (["pull", *TINY], ["run", *TINY], ["list"]):
        suite.case("unclean", f"ZOO_HOME=/proc/self/x: {args[0]}",
                   lambda args=args: judge(zoo(suite.env("/proc/self/x"), *args, timeout=120),
                                           {0} if args == ["list"] else {4}))
    for args in (["pull", *TINY[:3]], ["run", *TINY[:3]], ["list"]):
        suite.case("unclean", f"generations a regular file: {args[0]}",
                   lambda args=args: _generations_file(suite, args))


def _ctrl_c_run(suite: Suite, delay: float) -> tuple[str, str]:
    home = suite.fresh("ctrl-c-run", tiny=True)
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "run", *TINY], env=suite.env(home), cwd=REPO,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_limit_memory)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0 and err.count("\n") <= 1:  # finished before the signal came: fine
        return "clean", "finished first"
    if proc.returncode != 130:
        early = "Traceback" in err and "/zoo/" not in err  # the interpreter's site imports, say
        where = " (in Python's own start-up, before any zoo code)" if early else ""
        return "wrong exit", f"exit {proc.returncode}{where}: {err.strip().splitlines()[-1:] or ''}"
    if (out, err) != ("", "zoo: interrupted\n"):
        return "unclean", f"{len(err.splitlines())} lines: {err.strip().splitlines()[-1][:160]}"
    return "clean", ""


def _probe_models(folder: Path) -> dict[str, Path]:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1 << 16, 1 << 16, 16], dtype=np.int64), "shape")
    huge = helper.make_graph([helper.make_node("Expand", ["x", "shape"], ["y"])], "huge",  # 256 GiB out
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    strings = helper.make_graph([helper.make_node("Identity", ["s"], ["t"])], "strings",
                                [helper.make_tensor_value_info("s", TensorProto.STRING, [1])],
                                [helper.make_tensor_value_info("t", TensorProto.STRING, [1])])
    paths = {}
    for name, graph in (("huge", huge), ("strings", strings)):
        paths[name] = folder / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), paths[name])
    return paths


def _model_case(suite: Suite, model: str, args: list[str], codes: set[int], said: str) -> tuple[str, str]:
    home = suite.fresh("model", with_entry=False)
    path = _probe_models(home)[model]
    command = [args[0], str(path), *args[1:]] + (["--iterations", "1", "--warmup", "0"] if args[0] == "bench" else [])
    return judge(zoo(suite.env(home), *command, timeout=120), codes, said)


def _mem_weights(suite: Suite, args: list[str]) -> tuple[str, str]:
    home = suite.fresh("mem-weights", with_entry=False)
    extra = ["-o", str(home / "out")] if args[0] == "export" else []
    return judge(zoo(suite.env(home), *args, "--weights", "/proc/self/mem", *extra, timeout=120), {1},
                 "/proc/self/mem")


def _generations_file(suite: Suite, args: list[str]) -> tuple[str, str]:
    """With torch poisoned: a refusal that comes after an export never comes at all."""
    home = suite.fresh("generations-file", with_entry=False)
    (home / "generations").write_text("x")
    poison = home / "poison" / "torch"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('torch: the store was not checked before the export')\n")
    path = os.pathsep.join([str(home / "poison"), str(REPO), str(REPO / "plugins")])
    return judge(zoo(suite.env(home, PYTHONPATH=path), *args, timeout=120), {4}, "generations")


# -- issue 23: the remote follows ZOO_OFFLINE and --no-remote only ------------------------------------------
def remote(suite: Suite) -> None:
    for label, extra, args in (("HF_HUB_OFFLINE=1 serves from it", {"HF_HUB_OFFLINE": "1"}, []),
                               ("ZOO_OFFLINE=1 says it is off", {"ZOO_OFFLINE": "1"}, []),
                               ("--no-remote says it is off", {}, ["--no-remote"])):
        suite.case("remote", f"file:// remote, {label}",
                   lambda extra=extra, args=args: _remote_case(suite, extra, args))


def _remote_case(suite: Suite, extra: dict[str, str], args: list[str]) -> tuple[str, str]:
    shared = suite.work / "remote"
    url = shared.as_uri()
    if not (shared / "entries").is_dir():
        pushed = zoo(suite.env(suite.tiny), "remote", "push", suite.tiny_key, "--remote", url, timeout=240)
        if pushed.returncode != 0:
            return "unclean", f"suite: cannot seed the remote: {pushed.stderr.strip()[:160]}"
    home = suite.fresh("remote", with_entry=False)
    proc = zoo(suite.env(home, ZOO_REMOTE=url, **extra), "pull", *TINY, *args, "--json", timeout=300)
    if proc.returncode != 0:
        return judge(proc, {0})
    cached = json.loads(proc.stdout)["cached"]
    off = [line for line in proc.stderr.splitlines() if "is off" in line]
    if not extra.get("ZOO_OFFLINE") and not args:  # HF_HUB_OFFLINE: the remote must serve
        return ("clean", "") if cached == "remote" else ("unclean", f"the remote was not asked (cached {cached})")
    if cached == "remote":
        return "unclean", "the remote was used while off"
    if len(off) != 1:
        return "unclean", f"the remote was off in silence ({len(off)} lines say so)"
    return "clean", off[0][:160]


# -- report ------------------------------------------------------------------------------------------------
def table(suite: Suite) -> str:
    rows = []
    header = f"{'scenario':<12} {'cases':>6} " + " ".join(f"{o:>10}" for o in OUTCOMES) + f" {'skipped':>8}"
    rows.append(header)
    ran = {r.scenario for r in suite.results} | set(suite.skipped)
    scenarios = [s for s in SCENARIOS if s in ran]
    for scenario in [*scenarios, "total"]:
        picked = [r for r in suite.results if scenario in ("total", r.scenario)]
        counts = Counter(r.outcome for r in picked)
        skipped = sum(suite.skipped.values()) if scenario == "total" else suite.skipped[scenario]
        rows.append(f"{scenario:<12} {len(picked):>6} " + " ".join(f"{counts[o]:>10}" for o in OUTCOMES)
                    + f" {skipped:>8}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=300, help="seconds for the whole suite (default 300)")
    parser.add_argument("--random", type=int, default=8, help="random-moment kills of forced writes (default 8)")
    parser.add_argument("--only", help="comma-separated scenario classes to run")
    parser.add_argument("--json", help="also write every case's result to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zoo-faults-"))
    suite = Suite(work, args.budget)
    try:
        classes = {"kills": lambda: kills(suite, args.random), "races": lambda: races(suite),
                   "corruption": lambda: corruption(suite), "hostile": lambda: hostile(suite),
                   "environment": lambda: environment(suite), "containment": lambda: containment(suite),
                   "publish": lambda: publish(suite), "mismatch": lambda: mismatch(suite),
                   "repair": lambda: repair(suite), "memos": lambda: memos(suite),
                   "unclean": lambda: unclean(suite), "remote": lambda: remote(suite)}
        chosen = [name for name in classes if not args.only or name in args.only.split(",")]
        if set(chosen) & set(SCENARIOS[:5]):
            build_base(suite)
        if set(chosen) - set(SCENARIOS[:5]):
            build_tiny(suite)
        for name in chosen:
            classes[name]()
    finally:
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - suite.started
    print(table(suite))
    print(f"\n{len(suite.results)} cases in {elapsed:.0f} s")
    for r in suite.results:
        if r.outcome != "clean":
            print(f"  {r.outcome:<10} {r.scenario:<12} {r.case}: {r.detail}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in suite.results], indent=2))
    sys.exit(1 if any(r.outcome in ("lost", "breach", "hang") for r in suite.results) else 0)


if __name__ == "__main__":
    main()
