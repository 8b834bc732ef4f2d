"""``zoo bulk`` (issue 22): many models, one process each, a report, resume, bad input, Ctrl-C.

The models come from ``tests/plugins/zoo_test_bulk.py`` (tiny MLPs that export in well under
a second, and ones that raise, fail once, hang or eat memory), declared as an entry point in
a temporary ``.dist-info``: the export is not the point here, the running of many is.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import REPO, Ran, one_line_error, temp_dirs, zoo_env

from zoo import bulk_run

FIXTURES = Path(__file__).resolve().parent / "plugins"
MODEL = ("--exporter", "torchscript")  # the cheaper exporter: these tests are about running many


@pytest.fixture
def bulk(cheap_source: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """``bulk(*args)``: ``zoo bulk ARGS`` in process, the test source installed (conftest's
    ``cheap_source``), a marker in the environment of every process the run starts (to find any
    left behind)."""
    from helpers import invoke

    monkeypatch.setenv("ZOO_TEST_BULK_DIR", str(tmp_path))
    monkeypatch.setenv("ZOO_TEST_BULK_MARK", uuid.uuid4().hex)

    def run(*args: str, check: bool = False) -> Ran:
        return invoke("bulk", *args, check=check)

    return run


def marked(mark: str) -> list[int]:
    """Processes whose environment holds ``mark``, but this one and multiprocessing's fork server and
    resource tracker (both outlive a run by design: the next run forks from the same server)."""
    from multiprocessing import forkserver, resource_tracker

    helpers = {os.getpid(), getattr(forkserver._forkserver, "_forkserver_pid", None),
               getattr(resource_tracker._resource_tracker, "_pid", None)}
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) not in helpers:
            try:
                if f"ZOO_TEST_BULK_MARK={mark}".encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def no_process_left(mark: str) -> None:
    deadline = time.monotonic() + 5
    while marked(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked(mark) == []


def test_report_json_lines_failures_and_resume(bulk: Callable[..., Ran], home: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    ran = bulk("bulk:ok*", "bulk:raises", "nosuch", "bulk:zz*", "nosource:*", "bulk:ok1", "--workers", "2",
               "--report", str(report), "--json", *MODEL)
    assert ran.returncode == 1, ran.stderr
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    assert lines[-1]["summary"]["counts"] == {"exported": 3, "hit": 0, "remote": 0, "failed": 4, "timed out": 0}
    rows = {r["name"]: r for r in json.loads(report.read_text())["models"]}
    assert {r["name"]: r for r in lines[:-1]} == rows  # the same rows, as they finished
    assert set(rows) == {"bulk:ok1", "bulk:ok2", "bulk:ok3", "bulk:raises", "nosuch", "bulk:zz*", "nosource:*"}
    for name in ("bulk:ok1", "bulk:ok2", "bulk:ok3"):
        row = rows[name]
        assert row["status"] == "exported" and row["exporter"] == "torchscript" and row["error"] is None
        assert row["parity"] < 1e-4 and row["size"] > 1000 and row["peak_memory"] > 10 << 20
        assert Path(row["path"]).is_file() and row["key"] in row["path"] and row["attempts"] == 1
    assert len({rows[n]["key"] for n in ("bulk:ok1", "bulk:ok2", "bulk:ok3")}) == 3
    assert "this model cannot be built" in rows["bulk:raises"]["error"]
    assert rows["bulk:raises"]["attempts"] == 1  # --retries 0
    assert "unknown model 'nosuch'" in rows["nosuch"]["error"]
    assert rows["bulk:zz*"]["error"] == "bulk:zz* names no model; see `zoo list --available 'bulk:zz*'`"
    assert "nosource" in rows["nosource:*"]["error"]
    assert all("\n" not in (r["error"] or "") for r in rows.values())
    assert temp_dirs(home) == []

    # The same models again, as a real process: only hits, no child, torch never imported.
    csv_report = tmp_path / "report.csv"
    probe = ("import sys; from zoo.cli import main; sys.argv = ['zoo', 'bulk', 'bulk:ok*', '--report', "
             f"{str(csv_report)!r}, '--exporter', 'torchscript']\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print(code, 'torch' in sys.modules, 'multiprocessing.forkserver' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], env=zoo_env(home, **{
        k: v for k, v in os.environ.items() if k.startswith("ZOO_TEST")}), capture_output=True, text=True,
        cwd=REPO, timeout=120)
    assert proc.stdout.split()[-3:] == ["0", "False", "False"], proc.stderr
    text = csv_report.read_text().splitlines()
    table = list(csv.DictReader(text[:-1]))
    assert [(r["name"], r["status"]) for r in table] == [(f"bulk:ok{i}", "hit") for i in (1, 2, 3)]
    assert text[-1].startswith("# 3 models: 3 hit in ")


def test_timeout_memory_limit_and_retries(bulk: Callable[..., Ran], home: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_TEST_BULK_HOG_MB", "4096")  # held until killed: only the limit stops it
    # The limit is 1 GiB (a tiny model's child peaks under half of it) so that the hog reaches it well
    # within the 3 s timeout, which the hanging model pays twice (--retries 1).
    report = tmp_path / "report.json"
    ran = bulk("bulk:hangs", "bulk:hog", "bulk:flaky", "bulk:ok1", "--workers", "2", "--timeout", "3",
               "--memory-limit", "1G", "--retries", "1", "--report", str(report), *MODEL)
    assert ran.returncode == 1, ran.stderr
    rows = {r["name"]: r for r in json.loads(report.read_text())["models"]}
    hangs, hog = rows["bulk:hangs"], rows["bulk:hog"]
    assert hangs["status"] == "timed out" and hangs["attempts"] == 2 and 3 <= hangs["seconds"] < 13
    assert hangs["error"] == "took more than 3 s; its processes were killed"
    assert hog["status"] == "failed" and hog["attempts"] == 2
    assert hog["error"] == "used more than 1.0 GiB of memory (--memory-limit); its processes were killed"
    assert 1 << 30 < hog["peak_memory"] < 3 << 30
    assert rows["bulk:flaky"]["status"] == "exported" and rows["bulk:flaky"]["attempts"] == 2
    assert rows["bulk:ok1"]["status"] == "exported" and rows["bulk:ok1"]["attempts"] == 1
    assert temp_dirs(home) == []  # the killed children's temp dirs are gone
    no_process_left(os.environ["ZOO_TEST_BULK_MARK"])
    for line in ran.stderr.splitlines():
        assert line.startswith("zoo: ")


def start_bulk(home: Path, folder: Path, *args: str, **popen: object) -> tuple[subprocess.Popen, str]:
    """``python -m zoo bulk ARGS`` as a real process in its own session, on the store at ``home``, the
    test source installed under ``folder``; and the marker in its environment."""
    mark = uuid.uuid4().hex
    site = folder / "site" / "zoo_test_bulk-1.0.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-test-bulk\nVersion: 1.0\n")
    (site / "entry_points.txt").write_text("[zoo]\nbulk = zoo_test_bulk\n")
    env = zoo_env(home, ZOO_TEST_BULK_MARK=mark, ZOO_TEST_BULK_DIR=str(folder),
                  PYTHONPATH=os.pathsep.join([str(site.parent), str(FIXTURES), *sys.path]))
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "bulk", *args, *MODEL], env=env, cwd=REPO,
                            start_new_session=True, **popen)  # type: ignore[call-overload]
    return proc, mark


def test_ctrl_c_or_a_killed_run_stops_every_child(home: Path, tmp_path: Path) -> None:
    """Ctrl-C to one run, SIGKILL to another (no chance to stop anything): no child outlives either.
    The two runs go side by side, so their start-ups (the fork server's imports) overlap."""
    report = tmp_path / "report.json"
    killed_home = tmp_path / "killed-home"
    proc, mark = start_bulk(home, tmp_path / "interrupted", "bulk:hangs", "bulk:hog", "bulk:ok1",
                            "--workers", "2", "--report", str(report),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, killed_mark = start_bulk(killed_home, tmp_path / "killed", "bulk:hangs",
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not temp_dirs(killed_home) and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert temp_dirs(killed_home), "the child never started"
        assert len(marked(killed_mark)) >= 2  # the fork server and the child
        killed.kill()
        killed.wait()

        while len(temp_dirs(home)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # both children are inside the store, writing
        assert len(temp_dirs(home)) == 2, proc.stderr.read() if proc.poll() is not None else "no children"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        out, err = proc.communicate(timeout=60)
    finally:
        for each in (proc, killed):
            if each.poll() is None:
                os.killpg(each.pid, signal.SIGKILL)
    no_process_left(killed_mark)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "zoo: interrupted"
    assert temp_dirs(home) == []
    no_process_left(mark)
    summary = json.loads(report.read_text())["summary"]
    assert summary["interrupted"] is True


@pytest.mark.parametrize("args, fragments", [
    (("bulk:ok1", "--workers", "0"), ["--workers 0: give at least 1"]),
    (("bulk:ok1", "--retries", "-1"), ["--retries -1: give 0 or more"]),
    (("bulk:ok1", "--timeout", "0"), ["--timeout 0"]),
    (("bulk:ok1", "--memory-limit", "lots"), ["--memory-limit 'lots' is not a size"]),
    (("bulk:ok1", "--report", "REPORT_DIR/missing/r.json"), ["cannot be written", "No such file"]),
    (("bulk:ok1", "--report", "REPORT_DIR/r.txt"), ["name a .json or .csv file"]),
    (("--from", "REPORT_DIR/none.txt"), ["--from", "No such file"]),
    ((), ["name the models"]),
])
def test_bad_input_is_one_line_before_any_work(bulk: Callable[..., Ran], home: Path, tmp_path: Path,
                                               args: tuple[str, ...], fragments: list[str]) -> None:
    ran = bulk(*(a.replace("REPORT_DIR", str(tmp_path)) for a in args))
    one_line_error(ran, 1, *fragments)
    assert not (home / "models").exists() or not list((home / "models").iterdir())


def test_from_file_and_default_sizes(bulk: Callable[..., Ran], tmp_path: Path) -> None:
    listing = tmp_path / "models.txt"
    listing.write_text("# nightly\nbulk:ok2\n\nbulk:ok3  # the wide one\n")
    assert bulk_run.read_names(listing) == ["bulk:ok2", "bulk:ok3"]
    assert bulk_run.default_workers(2, 24 << 30) == 2  # cores bound
    assert bulk_run.default_workers(16, 5 << 30) == 2  # memory bound: 2 GiB a model
    assert bulk_run.default_workers(4, 1 << 30) == 1  # never 0
    assert bulk_run.default_memory_limit(4, 8 << 30) == 2 << 30
    assert bulk_run.parse_size("1.5G") == 3 << 29 and bulk_run.parse_size("512MiB") == 512 << 20
