"""Shared fixtures: isolated stores, the CLI in process or as a real process, one tiny model per session.

Plain helpers (no fixtures) are in ``helpers.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, Ran, decisive_checkpoint, home_env, invoke, run_cli, zoo_env

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture(autouse=True)
def _network_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with the offline and remote switches unset, as on a developer's laptop;
    a test that depends on one sets it (air-gapped clusters export HF_HUB_OFFLINE=1 everywhere)."""
    for name in ("HF_HUB_OFFLINE", "ZOO_OFFLINE", "ZOO_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    remote = sys.modules.get("zoo.remote")
    if remote is not None:  # "said once" is per process: per test here
        monkeypatch.setattr(remote, "_said_off", set())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store for this test, also set for in-process calls."""
    root = tmp_path / "zoo-home"
    for key in [k for k in os.environ if k.startswith("ZOO_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ZOO_HOME", str(root))
    monkeypatch.setenv("ZOO_CONFIG_DIR", str(root / "config"))
    from zoo.host import reset_host

    reset_host()
    return root


@pytest.fixture
def zoo(home: Path) -> Callable[..., Ran]:
    """``zoo(*args, check=True, **env)`` runs the CLI in this process against this test's store."""

    def run(*args: str, check: bool = True, **extra_env: str) -> Ran:
        return invoke(*args, env=extra_env, check=check)

    return run


@pytest.fixture
def zoo_process(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``zoo_process(*args, check=True, **env)``: the same as a real ``python -m zoo`` process."""

    def run(*args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=zoo_env(home, **extra_env), check=check)

    return run


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside any model folder (16 bytes: float32 0, 1, 2, 3) that no model may reach."""
    path = tmp_path / "secret.bin"
    path.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return path


@pytest.fixture
def cheap_source(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests where the export is not the point: the ``bulk`` test source (tiny MLPs,
    tests/plugins/zoo_test_bulk.py) installed as a ``.dist-info`` entry point for this process
    and the processes it starts."""
    site = tmp_path / "site"
    info = site / "zoo_test_bulk-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-test-bulk\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo]\nbulk = zoo_test_bulk\n")
    monkeypatch.syspath_prepend(str(TEST_PLUGINS))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(TEST_PLUGINS), *sys.path]))
    from zoo.host import reset_host

    reset_host()


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding ``zoo pull timm:test_resnet --weights none`` (helpers.TINY), exported once.

    Read-only for tests: copy it (``copy_store``) before changing anything.
    """
    root = tmp_path_factory.mktemp("shared") / "zoo-home"
    invoke("pull", *TINY, env=home_env(root))
    return root


@pytest.fixture
def copy_store(home: Path, tiny_store: Path) -> Path:
    """This test's store, starting as a copy of the shared tiny store."""
    shutil.copytree(tiny_store, home, symlinks=True, dirs_exist_ok=True)  # entries are links to generations
    return home


@pytest.fixture(scope="session")
def resnet18_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding ``zoo pull resnet18 --weights none``: a real torchvision architecture.

    Only for the few tests whose point is a real architecture (slow); read-only.
    """
    root = tmp_path_factory.mktemp("resnet18") / "zoo-home"
    invoke("pull", "resnet18", "--weights", "none", env=home_env(root))
    return root


@pytest.fixture(scope="session")
def task_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One store with SSDlite (decisive checkpoint) and LR-ASPP (--weights none, --size 128): the
    two smallest task families, for ``zoo run`` and ``zoo eval``. Read-only: copy ``root`` into a
    test's ``home`` before a command that writes (``eval`` records its score)."""
    root = tmp_path_factory.mktemp("tasks") / "zoo-home"
    checkpoint = decisive_checkpoint("ssdlite320_mobilenet_v3_large", root.parent / "ssdlite.pth", 320)
    env = home_env(root)
    ssd = invoke("pull", "torchvision:ssdlite320_mobilenet_v3_large", "--weights", str(checkpoint), "--json", env=env)
    seg = invoke("pull", "lraspp_mobilenet_v3_large", "--weights", "none", "--size", "128", "--json", env=env)
    return {"root": root, "env": env, "ssd": json.loads(ssd.stdout), "seg": json.loads(seg.stdout),
            "checkpoint": checkpoint}
