"""A killed forced pull never loses the entry: generations behind an atomically swapped symlink.

Writers are real processes killed with SIGKILL, at every named step of the store's protocol
(the ``ZOO_TEST_PAUSE`` seam) and at random moments; the producer is a fake that writes a
small model, so each kill costs a process start, not an export. Checks go through the CLI
in process (``zoo list``, ``zoo verify``, ``zoo gc``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, zoo_env
from typer.testing import CliRunner

from zoo.cli import app
from zoo.record import Record
from zoo.store import MODEL_FILE, Store, describe_files, write_json

KEY = "0123456789abcdef0123"
# A writer process: force-replaces KEY with a model whose bytes name this generation.
WRITER = """
import sys, time
from pathlib import Path
from zoo.record import Record
from zoo.store import MODEL_FILE, Store
label, slow = sys.argv[1], float(sys.argv[2])
def produce(directory):
    for part in range(4):  # several files written over time: kills land mid-write too
        (directory / f"part{part}.bin").write_bytes(label.encode() * 20000)
        time.sleep(slow)
    (directory / MODEL_FILE).write_bytes(label.encode())
    return Record(name="m", ref="fake:m", other={"label": label})
Store().create(sys.argv[3], produce, force=True)
"""
POINTS = ("tmp-made", "synced", "placed", "linked", "swapped", "trashed")


def cli(*args: str) -> tuple[int, str]:
    """Exit code and output; with --json, stdout alone (warnings go to stderr)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout if "--json" in args else result.output


def writer(home: Path, label: str, slow: float = 0.0, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, label, str(slow), KEY], env=zoo_env(home, **env),
                            cwd=REPO, text=True, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)


def assert_one_complete_entry(home: Path, labels: set[str]) -> str:
    """The key is listed, verifies, and is one of ``labels``; returns which."""
    code, out = cli("list", "--json")
    assert code == 0, out
    (row,) = json.loads(out)
    assert row["key"] == KEY
    code, out = cli("verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True, out
    label = (home / "models" / KEY / MODEL_FILE).read_text()
    assert label in labels
    return label


def assert_collected(home: Path) -> None:
    """After gc, only the live generation is left: nothing a dead writer made stays."""
    code, out = cli("gc", "--json")
    assert code == 0, out
    assert sorted(os.listdir(home / "models")) == [KEY]
    assert os.listdir(home / "tmp") == []
    generations = os.listdir(home / "generations") if (home / "generations").is_dir() else []
    if not (home / "models" / KEY).is_symlink():  # the old release's plain directory, untouched
        assert generations == []
        return
    (generation,) = generations
    assert os.path.realpath(home / "models" / KEY) == str((home / "generations" / generation).resolve())


def old_layout_entry(home: Path, label: str) -> None:
    """An entry as the previous release wrote it: ``models/<key>`` a plain directory."""
    directory = home / "models" / KEY
    directory.mkdir(parents=True)
    (directory / MODEL_FILE).write_text(label)
    record = Record(name="m", ref="fake:m", files=describe_files(directory))
    write_json(directory / "zoo.json", record.to_json())


@pytest.mark.parametrize("layout", ["generations", "plain directory", "plain directory, no exchange"])
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_every_step_of_a_forced_pull_keeps_an_entry(home: Path, point: str, layout: str) -> None:
    extra = {"ZOO_NO_EXCHANGE": "1"} if "no exchange" in layout else {}
    if layout == "generations":
        first = writer(home, "old")
        assert first.wait(timeout=30) == 0, first.stderr.read()
    else:
        old_layout_entry(home, "old")
    assert_one_complete_entry(home, {"old"})

    proc = writer(home, "new", ZOO_TEST_PAUSE=point, **extra)
    try:
        line = proc.stderr.readline()  # the writer is stopped at `point` ...
        assert line.strip() == f"zoo: test pause at {point}", line + proc.stderr.read()
        assert_one_complete_entry(home, {"old", "new"})  # ... and the key still resolves
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
    expected = {"old"} if POINTS.index(point) < POINTS.index("swapped") else {"new"}
    assert assert_one_complete_entry(home, {"old", "new"}) in expected
    assert_collected(home)
    assert assert_one_complete_entry(home, {"old", "new"}) in expected


def test_sigkill_at_random_moments_of_forced_pulls(home: Path) -> None:
    """Bounded: at most 6 kills or 6 s. Whatever the moment, the key resolves to a complete entry."""
    rng = random.Random(13)
    first = writer(home, "gen0")
    assert first.wait(timeout=30) == 0
    labels = {"gen0"}
    deadline, kills = time.monotonic() + 6, 0
    for round_ in range(1, 7):
        if time.monotonic() > deadline:
            break
        label = f"gen{round_}"
        labels.add(label)
        proc = writer(home, label, slow=0.15)  # three parts, 0.45 s of writing: most kills land mid-way
        time.sleep(rng.uniform(0.05, 0.9))  # process start to past the swap
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += proc.returncode == -signal.SIGKILL
        assert_one_complete_entry(home, labels)
    assert kills >= 3, "too few writers were killed mid-way to test anything"
    assert_collected(home)


def test_remove_killed_after_unlinking_leaves_no_entry_and_gc_collects(home: Path) -> None:
    first = writer(home, "old")
    assert first.wait(timeout=30) == 0
    script = f"from zoo.store import Store; Store().remove({KEY!r})"
    proc = subprocess.Popen([sys.executable, "-c", script], env=zoo_env(home, ZOO_TEST_PAUSE="unlinked"),
                            cwd=REPO, text=True, stderr=subprocess.PIPE)
    try:
        assert proc.stderr.readline().strip() == "zoo: test pause at unlinked"
        assert json.loads(cli("list", "--json")[1]) == []  # gone in one step, never half there
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert json.loads(cli("verify", "--json")[1]) == {"ok": True, "entries": []}
    assert len(os.listdir(home / "generations")) == 1  # the orphan, until gc
    cli("gc")
    assert os.listdir(home / "generations") == [] and os.listdir(home / "models") == []


def test_entry_path_is_stable_across_forced_pulls(home: Path) -> None:
    def producing(content: bytes):
        def produce(directory: Path) -> Record:
            (directory / MODEL_FILE).write_bytes(content)
            return Record(name="m", ref="fake:m")
        return produce

    store = Store(home)
    first, _ = store.create(KEY, producing(b"1"))
    second, created = store.create(KEY, producing(b"2"), force=True)
    assert created and first.model_path == second.model_path == home.resolve() / "models" / KEY / MODEL_FILE
    assert second.model_path.read_bytes() == b"2" and store.verify(second) == []
    assert len(os.listdir(home / "generations")) == 1  # the old generation went


def test_a_pointer_leading_outside_the_store_is_never_followed(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "zoo.json").write_text('{"name": "planted", "files": []}')
    (outside / MODEL_FILE).write_bytes(b"keep")
    store = Store(home)
    store.create("f" * 20, lambda d: (d / MODEL_FILE).write_bytes(b"ok") and Record(name="healthy", ref="fake:healthy"))
    (home / "models" / KEY).symlink_to(outside)

    code, out = cli("list", "--json")
    assert code == 0 and [row["key"] for row in json.loads(out)] == ["f" * 20]
    code, out = cli("verify")
    assert code == 3 and f"{KEY}" in out and "leads outside the store" in out
    entry, created = store.create(
        KEY, lambda d: (d / MODEL_FILE).write_bytes(b"new") and Record(name="m", ref="fake:m"), force=True)
    assert created and store.verify(entry) == [] and entry.model_path.read_bytes() == b"new"
    assert store.remove(KEY) and (outside / MODEL_FILE).read_bytes() == b"keep"


def test_a_dangling_pointer_is_replaced_by_the_next_pull(home: Path) -> None:
    import shutil

    def produce(directory: Path) -> Record:
        (directory / MODEL_FILE).write_bytes(b"again")
        return Record(name="m", ref="fake:m")

    store = Store(home)
    first, _ = store.create(KEY, produce)
    shutil.rmtree(first.dir.resolve())  # the generation is gone, the link stays
    assert store.get(KEY) is None
    entry, created = store.create(KEY, produce)
    assert created and entry.model_path.read_bytes() == b"again" and store.verify(entry) == []
