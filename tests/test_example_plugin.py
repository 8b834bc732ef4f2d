"""The example plugin package (examples/zoo-hubconf), installed with pip and driven through the CLI.

It is installed into a temporary ``--target`` folder (its entry point is found from the
``.dist-info`` there), not into the shared environment: put on this process's ``sys.path`` for
the in-process CLI calls, and on PYTHONPATH for the processes zoo starts itself (the kit's
``light`` step imports the plugin in a fresh interpreter).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, invoke

EXAMPLE = REPO / "examples" / "zoo-hubconf"

HUBCONF = '''
dependencies = ["torch"]

from blocks import block  # a module of the repo itself: the repo is on sys.path while it loads


def small_net(pretrained=False, width=4):
    """Conv, pool, linear on 3x24x24 inputs."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(block(3, width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 5))


def _helper():
    pass


ZOO_METADATA = {"small_net": {"input_size": [3, 24, 24], "labels": ["a", "b", "c", "d", "e"]}}
'''
BLOCKS = '''
def block(cin, cout):
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())
'''


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/zoo-hubconf installed with pip into a folder of its own."""
    root = tmp_path_factory.mktemp("example")
    source = root / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, capture_output=True, timeout=300)
    assert (site / "zoo_hubconf" / "sample_repo" / "hubconf.py").is_file()
    return site


@pytest.fixture
def cli(home: Path, example_site: Path, monkeypatch: pytest.MonkeyPatch):  # -> Callable[..., helpers.Ran]
    """``cli(*args, check=True, **env)``: the CLI in this process, with the installed example importable
    here and in the processes it starts."""
    monkeypatch.syspath_prepend(str(example_site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in [str(example_site), os.environ.get("PYTHONPATH")] if p))

    def run(*args: str, check: bool = True, **extra: str):
        return invoke(*args, env=extra, check=check)

    return run


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small torch.hub repo: hubconf.py plus a module it imports."""
    repo = tmp_path / "my-hub-repo"
    repo.mkdir()
    (repo / "hubconf.py").write_text(HUBCONF)
    (repo / "blocks.py").write_text(BLOCKS)
    return repo


def test_installed_plugin_is_listed(cli) -> None:
    rows = {p["name"]: p for p in json.loads(cli("plugins", "--json").stdout)}
    hub = rows["hubconf"]
    assert (hub["distribution"], hub["version"], hub["status"]) == ("zoo-hubconf", "0.1.0", "loaded")
    assert hub["sources"] == ["hubconf"] and hub["hooks"] == ["zoo_register_sources"]
    assert "hubconf" in cli("plugins").stdout


def test_pull_a_model_from_a_hubconf_repo(cli, repo: Path) -> None:
    ref = f"hubconf:{repo}:small_net"
    first = json.loads(cli("pull", ref, "--weights", "none", "--json").stdout)
    assert first["cached"] is False and Path(first["path"]).is_file()
    again = json.loads(cli("pull", ref, "--weights", "none", "--json").stdout)
    assert again["cached"] is True and again["key"] == first["key"]

    info = json.loads(cli("info", ref, "--weights", "none", "--json").stdout)
    assert info["ref"] == f"hubconf:{repo.resolve()}:small_net"
    assert info["source"]["distribution"] == "zoo-hubconf"
    assert info["inputs"][0]["shape"][1:] == [3, 24, 24] and info["labels"] == ["a", "b", "c", "d", "e"]
    assert info["validation"]["passed"] is True
    assert info["weights"]["hubconf_sha256"] == info["options"]["hubconf_sha256"]

    # Editing hubconf.py changes what the name builds, so it is a new cache key.
    (repo / "hubconf.py").write_text(HUBCONF.replace("width=4", "width=6"))
    edited = json.loads(cli("pull", ref, "--weights", "none", "--json").stdout)
    assert edited["cached"] is False and edited["key"] != first["key"]


def test_weights_from_a_state_dict(cli, repo: Path, tmp_path: Path) -> None:
    import torch

    sys.path.insert(0, str(repo))
    try:
        namespace: dict[str, object] = {}
        exec(HUBCONF, namespace)
        model = namespace["small_net"]()
    finally:
        sys.path.remove(str(repo))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(0.25)
    checkpoint = tmp_path / "trained.pth"
    torch.save(model.state_dict(), checkpoint)
    pulled = json.loads(cli("pull", f"hubconf:{repo}:small_net", "--weights", str(checkpoint), "--json").stdout)
    info = json.loads(cli("info", pulled["path"], "--json").stdout)  # read from the .onnx file
    from zoo.recipe import file_sha256

    assert info["weights"]["sha256"] == file_sha256(checkpoint)


def test_catalogue_lists_repos_from_the_environment(cli, repo: Path) -> None:
    listing = cli("list", "--available", "*", "--json", ZOO_HUBCONF_REPOS=str(repo))
    names = [r["name"] for r in json.loads(listing.stdout)]
    assert f"hubconf:{repo.resolve()}:small_net" in names
    assert not any(name.endswith(":_helper") for name in names)
    assert any(name.endswith("sample_repo:tiny_cnn") for name in names)


def test_errors_say_what_to_do(cli, repo: Path, tmp_path: Path) -> None:
    proc = cli("pull", f"hubconf:{repo}:nope", "--weights", "none", check=False)
    assert proc.returncode == 1 and "has no entry point 'nope': it has small_net" in proc.stderr
    proc = cli("pull", f"hubconf:{tmp_path / 'nowhere'}:small_net", check=False)
    assert proc.returncode == 1 and "no hubconf.py in" in proc.stderr
    proc = cli("pull", f"hubconf:{repo}", check=False)
    assert proc.returncode == 1 and "is not REPO_DIR:FUNCTION" in proc.stderr
    (repo / "hubconf.py").write_text("def small_net(:\n")
    listing = cli("list", "--available", "*", "--json", ZOO_HUBCONF_REPOS=str(repo))
    assert any(row["name"].endswith("sample_repo:tiny_cnn") for row in json.loads(listing.stdout))  # broken: skipped
    proc = cli("pull", f"hubconf:{repo}:small_net", "--weights", "none", check=False)
    assert proc.returncode == 1 and "hubconf.py failed to load: SyntaxError" in proc.stderr
    (repo / "hubconf.py").write_text('dependencies = ["no_such_package_zoo"]\n\ndef small_net():\n    pass\n')
    proc = cli("pull", f"hubconf:{repo}:small_net", "--weights", "none", check=False)
    assert proc.returncode == 4 and "needs no_such_package_zoo: pip install them" in proc.stderr
    for line in proc.stderr.strip().splitlines():
        assert line.startswith("zoo: ")  # one line, no traceback


def test_conformance_kit_passes(cli) -> None:
    """The kit's "light" step imports the plugin in a fresh interpreter, found on PYTHONPATH."""
    data = json.loads(cli("plugins", "check", "hubconf", "--json").stdout)
    assert data["passed"] is True
    assert data["reports"][0]["model"].endswith("sample_repo:tiny_cnn")


@pytest.mark.slow
def test_conformance_kit_passes_on_a_users_repo(cli, repo: Path) -> None:
    data = json.loads(cli("plugins", "check", "hubconf", "--model", f"{repo}:small_net", "--json").stdout)
    assert data["passed"] is True
