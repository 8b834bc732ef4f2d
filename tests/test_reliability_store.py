"""Reliability of the store under real faults: concurrent writers, SIGKILL, corruption,
read-only and full filesystems. Real processes, real signals, real files and mounts.

Each test is listed with the guarantee it proves in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ENTRY_DAMAGES,
    REPO,
    TINY,
    damage_entry,
    entry_dirs,
    home_env,
    invoke,
    mounted,
    one_line_error,
    read_only,
    store_files,
    temp_dirs,
    zoo_env,
)

from zoo.errors import IntegrityError
from zoo.liveness import host as _host
from zoo.record import Record
from zoo.store import MODEL_FILE, Store, StoreWriteError

# A miss against the shared tiny store (another opset, so another key): a cheap real export.
MISS = (*TINY, "--opset", "17")
# For the races the export is not the point: a tiny MLP from tests/plugins/zoo_test_bulk.py
# (the ``cheap_source`` fixture) whose build waits RACE_S seconds, so writers started together overlap.
CHEAP = ("bulk:ok1", "--exporter", "torchscript")
RACE_S = "2"


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "zoo", *args], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


Results = list[tuple[int, str, str]]


def watch(procs: list[subprocess.Popen[str]], root: Path, timeout: float = 400) -> tuple[Results, set[str], int]:
    """Wait for ``procs`` while sampling the store's temp dir.

    Returns (returncode, stdout, stderr) per process, every temp dir name seen, and the
    most temp dirs seen at once (how many exports ran side by side).
    """
    seen: set[str] = set()
    most = 0
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        names = [n for n in temp_dirs(root) if not n.startswith("trash.")]
        seen.update(names)
        most = max(most, len(names))
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise AssertionError("concurrent pulls did not finish")
        time.sleep(0.02)
    return [(p.returncode, *p.communicate()) for p in procs], seen, most


def assert_one_intact_entry(root: Path, results: Results) -> dict:
    assert [rc for rc, _, _ in results] == [0] * len(results), [err for _, _, err in results]
    outs = [json.loads(out) for _, out, _ in results]
    assert len(entry_dirs(root)) == 1
    assert temp_dirs(root) == []
    stored = json.loads(invoke("verify", "--json", env=home_env(root)).stdout)
    assert stored["ok"] is True and len(stored["entries"]) == 1
    entry = json.loads(invoke("list", "--json", env=home_env(root)).stdout)[0]
    # Every process reports the entry that is in the store, not its own copy.
    assert {o["sha256"] for o in outs} == {entry["sha256"]}
    assert {o["path"] for o in outs} == {entry["path"]}
    return {"outs": outs, "entry": entry}


# -- 1. concurrent pulls ------------------------------------------------------------------------
@pytest.mark.slow
def test_four_concurrent_pulls_export_once(home: Path, cheap_source: None) -> None:
    env = zoo_env(home, ZOO_TEST_BULK_BUILD_S=RACE_S)
    results, seen, most = watch([start("pull", *CHEAP, "--json", env=env) for _ in range(4)], home)
    checked = assert_one_intact_entry(home, results)
    assert sorted(o["cached"] for o in checked["outs"]) == [False, True, True, True]
    assert len(seen) == 1 and most == 1  # one temp dir ever: the model was exported once


@pytest.mark.slow
def test_concurrent_pulls_without_locking_stay_correct(home: Path, cheap_source: None) -> None:
    """Two writers told not to lock (ZOO_NO_LOCK=1) and one that cannot (``locks`` is a file,
    so the lock dir cannot be created): all export, the first rename wins, all agree.

    Three racers, not more: each is a process importing torch, and three already overlap on two
    cores (``most``: each build waits RACE_S); with the first-wins link made a replace, this fails
    on every run."""
    home.mkdir(parents=True)
    (home / "locks").write_text("not a directory")
    slow = {"ZOO_TEST_BULK_BUILD_S": RACE_S}
    envs = [zoo_env(home, ZOO_NO_LOCK="1", **slow)] * 2 + [zoo_env(home, **slow)]
    results, seen, most = watch([start("pull", *CHEAP, "--json", env=env) for env in envs], home)
    checked = assert_one_intact_entry(home, results)
    assert [o["cached"] for o in checked["outs"]].count(False) == 1
    assert most >= 2, "the writers did not overlap, so the race was not exercised"
    assert (home / "locks").read_text() == "not a directory"


def test_rename_race_returns_the_winner_and_discards_the_copy(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic version of the race: while one writer is producing, another finishes."""
    monkeypatch.setenv("ZOO_NO_LOCK", "1")
    store = Store(home)
    key = "0123456789abcdef0123"

    def produce_as(label: bytes, inner: bool):
        def produce(directory: Path) -> Record:
            (directory / MODEL_FILE).write_bytes(label)
            if inner:  # the other writer completes first
                store.create(key, produce_as(b"winner", inner=False))
            return Record(name=label.decode(), ref="test:race")
        return produce

    entry, created = store.create(key, produce_as(b"loser", inner=True))
    assert created is False
    assert entry.model_path.read_bytes() == b"winner" and entry.name == "winner"
    assert temp_dirs(home) == []
    assert store.verify(entry) == []


# -- 2. killed mid-export -------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_mid_export_leaves_nothing_usable(home: Path, zoo, cheap_source: None, tmp_path: Path) -> None:
    # The killed writer alone also loads tests/plugins/zoo_test_slow_export.py: its zoo_post_export
    # waits, so the window between model.onnx and a complete entry is wide, not a tiny model's ~50 ms.
    info = tmp_path / "slow" / "zoo_test_slow_export-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-test-slow-export\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo]\nslowexport = zoo_test_slow_export\n")
    env = zoo_env(home, ZOO_TEST_SLOW_EXPORT_S="30")
    env["PYTHONPATH"] = os.pathsep.join([str(info.parent), env["PYTHONPATH"]])
    proc = start("pull", *CHEAP, env=env)
    deadline = time.monotonic() + 300
    half_written = None
    while half_written is None:  # kill once model.onnx exists but the entry is not complete
        assert proc.poll() is None, f"pull ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline
        half_written = next(iter((home / "tmp").glob(f"*/{MODEL_FILE}")), None) if (home / "tmp").is_dir() else None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert entry_dirs(home) == []
    stale = temp_dirs(home)
    assert len(stale) == 1
    assert json.loads(zoo("list", "--json").stdout) == []
    assert json.loads(zoo("verify", "--json").stdout) == {"ok": True, "entries": []}
    one_line_error(zoo("info", *CHEAP, check=False), 1, "not in the store")

    # The next write cleans the dead writer's temp dir, and the lock died with the process.
    out = json.loads(zoo("pull", *CHEAP, "--json").stdout)
    assert out["cached"] is False
    assert temp_dirs(home) == []
    assert json.loads(zoo("verify", "--json").stdout)["ok"] is True


def test_gc_removes_dead_and_old_temp_dirs_only(home: Path, zoo, tmp_path: Path) -> None:
    tmp = home / "tmp"
    tmp.mkdir(parents=True)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    key = "0123456789abcdef0123"
    dead = tmp / f"{key}.{finished.pid}@{_host()}.a1"
    live = tmp / f"{key}.{os.getpid()}@{_host()}.b2"
    elsewhere = tmp / f"{key}.{finished.pid}@some-other-host.c3"  # cannot judge its pid: age only
    old = tmp / f"{key}.{os.getpid()}@{_host()}.d4"
    for directory in (dead, live, elsewhere, old):
        directory.mkdir()
        (directory / MODEL_FILE).write_bytes(b"half")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    link = tmp / f"{key}.{finished.pid}@{_host()}.e5"
    link.symlink_to(outside)

    out = json.loads(zoo("gc", "--json").stdout)
    assert sorted(Path(p).name for p in out["removed"]) == sorted([dead.name, old.name, link.name])
    assert sorted(temp_dirs(home)) == sorted([live.name, elsewhere.name])
    assert (outside / "keep.txt").read_text() == "keep"  # a link is removed, never followed
    assert json.loads(zoo("gc", "--json").stdout) == {"removed": []}


def test_gc_keeps_a_live_writer_in_another_pid_namespace(home: Path, zoo) -> None:
    """Containers sharing a store and a hostname: a writer's pid means nothing in our namespace."""
    proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                           "import os; from zoo.liveness import host; print(host(), os.getpid())"],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        pytest.skip(f"cannot create a pid namespace here: {proc.stderr.strip()}")
    host = proc.stdout.split()[0]
    assert host != _host()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # a pid that is dead here, and might be a live writer over there
    writer = home / "tmp" / f"{'0' * 20}.{finished.pid}@{host}.x1"
    writer.mkdir(parents=True)
    assert json.loads(zoo("gc", "--json").stdout) == {"removed": []}
    assert writer.is_dir()


# -- 3. corruption ------------------------------------------------------------------------------
def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


CORRUPTIONS = {
    "flipped byte": (MODEL_FILE, _flip_byte, "model.onnx: sha256 mismatch"),
    "truncated": (MODEL_FILE, _truncate, "model.onnx: size"),
    "missing zoo.json": ("zoo.json", Path.unlink, "zoo.json missing"),
    "invalid zoo.json": ("zoo.json", lambda p: p.write_text("{ not json"), "unreadable zoo.json"),
    "zoo.json not metadata": ("zoo.json", lambda p: p.write_text("[1, 2]"), "invalid zoo.json"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_verify_reports_corruption_and_list_keeps_the_rest(copy_store: Path, zoo, case: str) -> None:
    (key,) = entry_dirs(copy_store)
    intact = copy_store / "models" / ("f" * 20)
    shutil.copytree(copy_store / "models" / key, intact)  # a second, healthy entry
    record = json.loads((intact / "zoo.json").read_text())
    (intact / "zoo.json").write_text(json.dumps({**record, "key": intact.name}))  # its own, not the copied one's
    file, corrupt, problem = CORRUPTIONS[case]
    corrupt(copy_store / "models" / key / file)

    proc = zoo("verify", check=False)
    assert proc.returncode == 3
    assert problem in proc.stdout and "ok" in proc.stdout
    report = json.loads(zoo("verify", "--json", check=False).stdout)
    assert report["ok"] is False
    bad = [e for e in report["entries"] if e["problems"]]
    assert [e["key"] for e in bad] == [key] and problem in bad[0]["problems"][0]
    listed = json.loads(zoo("list", "--json").stdout)
    assert intact.name in [row["key"] for row in listed]


def test_unreadable_metadata_is_refused_then_repaired_by_force(copy_store: Path, zoo) -> None:
    (key,) = entry_dirs(copy_store)
    (copy_store / "models" / key / "zoo.json").write_text("{ not json")
    one_line_error(zoo("pull", *TINY, check=False), 3, "zoo pull --force")
    one_line_error(zoo("info", *TINY, check=False), 3, "zoo pull --force")
    out = json.loads(zoo("pull", *TINY, "--force", "--json").stdout)
    assert out["cached"] is False and out["key"] == key
    assert json.loads(zoo("verify", "--json").stdout)["ok"] is True


def advised(line: str) -> list[str]:
    """The first command a one-line error advises (`zoo ...` in backticks), as arguments."""
    return line.split("`zoo ", 1)[1].split("`", 1)[0].split()


@pytest.mark.parametrize("damage", ENTRY_DAMAGES)
def test_repair_advice_works_and_never_loops(damage: str, copy_store: Path, zoo, tmp_path: Path) -> None:
    """Whatever is wrong with an entry's record, the command its error advises either repairs it or
    fails saying something else, whose advice then works: never the same error again."""
    (key,) = entry_dirs(copy_store)
    damage_entry(copy_store / "models" / key, damage, tmp_path / "elsewhere")
    line = one_line_error(zoo("info", key, check=False), 3, key)
    advice = advised(line)
    if damage == "zoo.json missing":  # also a miss: `pull KEY` makes it again from what model.onnx carries
        assert advice == ["rm", key]
        advice = ["pull", key]
    followed = zoo(*advice, check=False)
    if followed.returncode != 0:  # nothing says how it was made: it says so, and what to do instead
        again = one_line_error(followed, 3, "cannot be made again from its key")
        assert again != line and damage == "record and model unreadable"
        advice = advised(again)
        followed = zoo(*advice, check=False)
    assert followed.returncode == 0, followed.stderr
    if advice[0] == "rm":
        assert damage in ("record and model unreadable", "pointer out")
        zoo("pull", *TINY)
    if damage == "pointer out":  # rm removed the link alone
        assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["model.onnx", "zoo.json"]
    assert json.loads(zoo("info", key, "--json").stdout)["key"] == key
    assert json.loads(zoo("verify", "--json").stdout)["ok"] is True


# -- 6. resources ---------------------------------------------------------------------------------
def test_read_only_store_serves_hits_and_refuses_writes_in_one_line(copy_store: Path, zoo) -> None:
    before = store_files(copy_store)
    with read_only(copy_store):
        assert json.loads(zoo("pull", *TINY, "--json").stdout)["cached"] is True
        assert len(json.loads(zoo("list", "--json").stdout)) == 1
        one_line_error(zoo("pull", *MISS, check=False), 4, "cannot write to the store", "Read-only")
        one_line_error(zoo("rm", *TINY, check=False), 4, "cannot write to the store")
        assert json.loads(zoo("gc", "--json").stdout) == {"removed": []}
        assert json.loads(zoo("verify", "--json").stdout)["ok"] is True
    assert store_files(copy_store) == before


def test_store_write_errors_name_the_store_and_keep_entries(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: the store's own mkdir on a read-only filesystem becomes a StoreWriteError."""
    home.mkdir(parents=True)
    with mounted("-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", target=home):
        with pytest.raises(StoreWriteError, match="cannot write to the store .*Read-only"):
            Store(home).create("0123456789abcdef0123", lambda d: {})


def test_full_store_fails_cleanly_and_keeps_entries(tiny_store: Path, tmp_path: Path) -> None:
    root = tmp_path / "small-disk"
    root.mkdir()
    size = sum(p.stat().st_size for p in tiny_store.rglob("*") if p.is_file())
    with mounted("-t", "tmpfs", "-o", f"size={size + (1 << 20)}", "tmpfs", target=root):
        shutil.copytree(tiny_store, root, symlinks=True, dirs_exist_ok=True)
        before = store_files(root)
        env = home_env(root)
        proc = invoke("pull", *MISS, env=env, check=False)  # a 2 MB model, ~1 MB free
        one_line_error(proc, 4, "cannot write to the store", "No space left on device", "free some space")
        assert store_files(root) == before
        assert temp_dirs(root) == []  # the partial export was removed, its space given back
        assert json.loads(invoke("verify", "--json", env=env).stdout)["ok"] is True
        assert json.loads(invoke("pull", *TINY, "--json", env=env).stdout)["cached"] is True


def test_integrity_error_from_store_get_is_one_line(home: Path) -> None:
    store = Store(home)
    key = "0123456789abcdef0123"
    (home / "models" / key).mkdir(parents=True)
    (home / "models" / key / "zoo.json").write_text("\x00\x01 garbage\nline two")
    with pytest.raises(IntegrityError) as info:
        store.get(key)
    assert "\n" not in str(info.value) and "zoo pull --force" in str(info.value)
