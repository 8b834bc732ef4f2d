"""Shared fixtures: isolated stores, a CLI runner, and one exported model per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def zoo_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for a CLI subprocess with its own store and no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_HOME=str(home), ZOO_CONFIG_DIR=str(home / "config"), **extra)
    return env


def run_cli(*args: str, env: dict[str, str], check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zoo ARGS`` for real, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "zoo", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"zoo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def run_json(*args: str, env: dict[str, str]) -> object:
    return json.loads(run_cli(*args, "--json", env=env).stdout)


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
def zoo(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``zoo(*args, check=True, **env)`` runs the CLI against this test's store."""

    def run(*args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=zoo_env(home, **extra_env), check=check)

    return run


@pytest.fixture(scope="session")
def resnet18_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding ``zoo pull resnet18 --weights none``, exported once per session.

    Read-only for tests: copy it (``copy_store``) before changing anything.
    """
    root = tmp_path_factory.mktemp("shared") / "zoo-home"
    run_cli("pull", "resnet18", "--weights", "none", env=zoo_env(root))
    return root


@pytest.fixture
def copy_store(home: Path, resnet18_store: Path) -> Path:
    """This test's store, starting as a copy of the shared resnet18 store."""
    shutil.copytree(resnet18_store, home, dirs_exist_ok=True)
    return home
