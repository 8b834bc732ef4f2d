"""``zoo bulk --ray`` (issue 22): the same run as Ray tasks on a local Ray instance, results in a
``file://`` remote cache; and the Ray inputs that are refused in one line.

The cluster is ``ray.init(num_cpus=2)`` in a helper process of this test (its workers get a
store of their own, ZOO_HOME=worker-store), with token authentication on a token made for
the test, so nothing under ~/.ray is read or written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import REPO, Ran, one_line_error, run_cli, temp_dirs, zoo_env

pytest.importorskip("ray")

FIXTURES = Path(__file__).resolve().parent / "plugins"
HEAD = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[1], logging_level="ERROR")
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the test closes stdin: then ray.shutdown() at exit stops what it started
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """(address, environment for a driver, the workers' store) of a local 2-CPU Ray instance."""
    site = tmp_path / "site" / "zoo_test_bulk-1.0.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-test-bulk\nVersion: 1.0\n")
    (site / "entry_points.txt").write_text("[zoo]\nbulk = zoo_test_bulk\n")
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex, "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join([str(site.parent), str(FIXTURES), *sys.path]),
            "ZOO_TEST_BULK_DIR": str(tmp_path)}
    workers = tmp_path / "worker-store"
    short = tempfile.mkdtemp(prefix="zr", dir="/tmp")  # Ray's socket paths must stay short
    head = subprocess.Popen([sys.executable, "-c", HEAD, short], env=zoo_env(workers, **auth), cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = head.stdout.readline().strip()
        assert address, "the Ray head did not start"
        yield address, auth, workers
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        subprocess.run(["rm", "-rf", short])


def test_ray_run_lands_in_the_remote(cluster: tuple[str, dict[str, str], Path], home: Path, tmp_path: Path,
                                     zoo: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch) -> None:
    address, auth, workers = cluster
    remote = f"file://{tmp_path / 'remote'}"
    report = tmp_path / "ray.json"
    # One run with the hanging model among the others (first, so its timeout runs alongside
    # their exports): it is stopped at its timeout (the task kills its child's process group).
    args = ("bulk", "bulk:hangs", "bulk:ok1", "bulk:ok2", "bulk:raises", "--ray", address, "--remote", remote,
            "--timeout", "4", "--report", str(report), "--exporter", "torchscript")
    proc = run_cli(*args, env=zoo_env(home, **auth), check=False, timeout=300)
    assert proc.returncode == 1 and report.exists(), proc.stderr
    rows = {r["name"]: r for r in json.loads(report.read_text())["models"]}
    assert json.loads(report.read_text())["summary"]["engine"] == "ray"
    for name in ("bulk:ok1", "bulk:ok2"):
        assert rows[name]["status"] == "exported" and rows[name]["parity"] < 1e-4, rows[name]
        assert str(workers) in rows[name]["path"]  # pulled in the worker's store, not the driver's
        assert rows[name]["peak_memory"] > 10 << 20
    assert "this model cannot be built" in rows["bulk:raises"]["error"]
    assert rows["bulk:hangs"]["status"] == "timed out"
    assert rows["bulk:hangs"]["error"] == "took more than 4 s; its processes were killed"
    assert temp_dirs(workers) == []  # the hanging child's temp dir went with it
    assert not (home / "models").exists() or not list((home / "models").iterdir())

    # The results are in the remote: a second run starts no task for them.
    again = run_cli("bulk", "bulk:ok1", "bulk:ok2", "--ray", address, "--remote", remote,
                    "--json", "--exporter", "torchscript", env=zoo_env(home, **auth), check=False, timeout=300)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert [(r["name"], r["status"]) for r in lines[:-1]] == [("bulk:ok1", "remote"), ("bulk:ok2", "remote")]
    for folder in auth["PYTHONPATH"].split(os.pathsep)[:2]:
        monkeypatch.syspath_prepend(folder)  # the test source, for this process's plugin host
    pulled = json.loads(zoo("pull", "bulk:ok1", "--remote", remote, "--exporter", "torchscript", "--json").stdout)
    assert pulled["cached"] == "remote" and pulled["key"] == rows["bulk:ok1"]["key"]


def test_ray_inputs_refused_in_one_line(zoo: Callable[..., Ran], tmp_path: Path) -> None:
    remote = f"file://{tmp_path / 'remote'}"
    one_line_error(zoo("bulk", "timm:test_resnet", "--ray", "127.0.0.1:1", "--remote", remote, check=False), 4,
                   "Ray at 127.0.0.1:1 does not answer")
    one_line_error(zoo("bulk", "timm:test_resnet", "--ray", "auto", check=False), 1,
                   "--ray needs a remote cache")
    one_line_error(zoo("bulk", "timm:test_resnet", "--ray", "nowhere", "--remote", remote, check=False), 1,
                   "--ray nowhere: give 'auto' or HOST:PORT")
