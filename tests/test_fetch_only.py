"""Fetch-only sources (issue 21): a ready ONNX file is described by what it is, checked like an export.

The subject is the example plugin examples/zoo-mirror (a mirror's catalogue of ready files,
written from docs/plugins.md), installed with pip into a temporary folder, plus the sources of
tests/plugins/zoo_test_fetch_kinds.py. The CLI runs in this process (``helpers.invoke``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from helpers import REPO, invoke

EXAMPLES = REPO / "examples"
PLUGINS = Path(__file__).resolve().parent / "plugins"
COLOURS = ["red", "green", "blue"]
IGNORED = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/zoo-mirror installed with pip, and a ``.dist-info`` for the test plugin."""
    root = tmp_path_factory.mktemp("fetch-only")
    source = root / "src"
    shutil.copytree(EXAMPLES / "zoo-mirror", source, ignore=IGNORED)
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(source)], check=True, capture_output=True,
                   timeout=300)
    info = site / "zoo_test_fetch_kinds-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-test-fetch-kinds\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[zoo]\nfetchkinds = zoo_test_fetch_kinds\n")
    return site


@pytest.fixture
def cli(home: Path, site: Path, monkeypatch: pytest.MonkeyPatch):  # -> Callable[..., helpers.Ran]
    """``cli(*args, check=True, **env)``: zoo in this process with the plugins importable here and
    in the processes it starts (the kit's ``light`` step)."""
    for path in (PLUGINS, site):
        monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in [str(site), str(PLUGINS), os.environ.get("PYTHONPATH")]
                                                     if p))

    def run(*args: str, check: bool = True, **env: str):
        return invoke(*args, env=env, check=check)

    return run


def make_mirror(folder: Path, **entry: Any) -> Path:
    """A mirror folder: colours.onnx (mean colour of a 3x32x32 image, opset 17) and catalogue.json."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])], "colours",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.eye(3, dtype=np.float32) * 10, "w"),
         numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    folder.mkdir(parents=True)
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()
    (folder / "colours.onnx").write_bytes(data)
    described = {"file": "colours.onnx", "sha256": hashlib.sha256(data).hexdigest(), "labels": COLOURS,
                 "description": "Mean colour: red, green or blue", "license": "MIT", "version": "3",
                 "preprocessing": {"input_size": [3, 32, 32], "resize": 32, "crop": [32, 32], "mean": [0, 0, 0],
                                   "std": [1, 1, 1]}, **entry}
    (folder / "catalogue.json").write_text(json.dumps({"models": {"colours": described}}))
    return folder


def steps(ran) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads(ran.stdout)["reports"][0]["steps"]}


def test_a_typed_fetch_passes_the_kit_and_pulls_what_the_file_is(cli, tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    check = cli("plugins", "check", "mirror", "--json", ZOO_MIRROR=str(mirror))
    assert json.loads(check.stdout)["passed"] is True
    assert "opset 17" in steps(check)["fetch"]["detail"] and "3 labels" in steps(check)["fetch"]["detail"]

    pulled = json.loads(cli("pull", "mirror:colours", "--json", ZOO_MIRROR=str(mirror)).stdout)
    info = json.loads(cli("info", "mirror:colours", "--json", ZOO_MIRROR=str(mirror)).stdout)
    catalogue = json.loads((mirror / "catalogue.json").read_text())["models"]["colours"]
    assert (info["exporter"], info["opset"], info["recipe"]) == ("fetched", 17, {})  # not opset 18 / auto
    assert info["labels"] == COLOURS and info["preprocessing"]["input_size"] == [3, 32, 32]
    assert info["weights"]["sha256"] == catalogue["sha256"] and info["weights"]["version"] == "3"
    assert info["description"] == catalogue["description"]
    assert Path(pulled["path"]).read_bytes() == (mirror / "colours.onnx").read_bytes()  # stored as fetched
    listed = cli("list").stdout.splitlines()[1].split()
    assert listed[:5] == ["mirror:colours", "mirror:colours", "default", "fetched", "opset=17"]  # not "-"

    # The metadata dict fetch used to return: a Preprocessing object and no weights are taken.
    assert json.loads(cli("plugins", "check", "legacy", "--json").stdout)["passed"] is True
    cli("pull", "legacy:rgb")
    legacy = json.loads(cli("info", "legacy:rgb", "--json").stdout)
    assert legacy["weights"]["tag"] == "default" and legacy["preprocessing"]["input_size"] == [3, 2, 2]


def test_the_kit_fails_where_a_pull_would(cli, tmp_path: Path) -> None:
    check = cli("plugins", "check", "notjson", "--json", check=False)
    assert check.returncode == 1 and steps(check)["fetch"]["status"] == "fail"
    assert "is not JSON" in steps(check)["fetch"]["detail"]
    pulled = cli("pull", "notjson:rgb", check=False)
    assert pulled.returncode == 1 and "is not JSON" in pulled.stderr

    mirror = make_mirror(tmp_path / "mirror", labels=["red", "green", "blue", "violet"])
    check = cli("plugins", "check", "mirror", "--json", check=False, ZOO_MIRROR=str(mirror))
    assert check.returncode == 1 and "4 labels for output 'logits' of width 3" in steps(check)["fetch"]["detail"]


def test_the_blame_step_checks_a_source_that_takes_no_attributes(cli) -> None:
    blame = steps(cli("plugins", "check", "slotted", "--json"))["blame"]
    assert blame["status"] == "pass" and "not checked" not in blame["detail"]
    assert "plugin fetchkinds (zoo-test-fetch-kinds 1.2.3)" in blame["detail"]
    assert "RuntimeError: injected" in blame["detail"]


def test_recipe_flags_are_refused_for_a_ready_file(cli, home: Path, tmp_path: Path) -> None:
    mirror = str(make_mirror(tmp_path / "mirror"))
    for flags, named in ((["--opset", "13"], "--opset"), (["--size", "64"], "--size"),
                         (["--dtype", "float16"], "--dtype"), (["--static-batch"], "--dynamic-batch")):
        ran = cli("pull", "mirror:colours", *flags, check=False, ZOO_MIRROR=mirror)
        assert ran.returncode == 1 and f"{named} cannot apply" in ran.stderr, ran.stderr
        assert ran.stderr.count("\n") == 1
    ran = cli("pull", "colours", "--opset", "13", check=False, ZOO_MIRROR=mirror)  # a bare name: the same
    assert ran.returncode == 1 and "mirror:colours is a ready ONNX file: --opset cannot apply" in ran.stderr
    registry = tmp_path / "registry.toml"
    registry.write_text('[models.col13]\nsource = "mirror"\nname = "colours"\nopset = 13\n')
    ran = cli("pull", "col13", "--registry", str(registry), check=False, ZOO_MIRROR=mirror)
    assert ran.returncode == 1 and "--opset cannot apply" in ran.stderr
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_labels_input_size_and_hash_are_checked_against_the_file(cli, home: Path, tmp_path: Path) -> None:
    wrong = {
        "labels": (dict(labels=["red", "green", "blue", "violet"]), 1,
                   "plugin mirror (zoo-mirror 0.1.0)) described mirror:colours wrongly: 4 labels for output 'logits'"),
        "size": (dict(preprocessing={"input_size": [3, 64, 64], "resize": 64, "crop": [64, 64]}), 1,
                 "preprocessing.input_size [3, 64, 64] (NCHW) does not fit input 'input' of shape "
                 "['batch', 3, 32, 32]"),
        "hash": (dict(sha256="0" * 64), 3, "but source mirror's catalogue says 0000"),
    }
    for case, (entry, code, message) in wrong.items():
        mirror = make_mirror(tmp_path / case, **entry)
        ran = cli("pull", "mirror:colours", check=False, ZOO_MIRROR=str(mirror))
        assert ran.returncode == code and message in ran.stderr, (case, ran.stderr)
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_an_exported_fetched_file_is_self_describing(cli, tmp_path: Path) -> None:
    from PIL import Image

    mirror = make_mirror(tmp_path / "mirror")
    copy = tmp_path / "c.onnx"
    cli("export", "mirror:colours", "-o", str(copy), ZOO_MIRROR=str(mirror))
    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "x.png")
    ran = json.loads(cli("run", str(copy), "--image", str(tmp_path / "x.png"), "--json").stdout)
    assert ran["predictions"][0][0]["label"] == "red"
    carried = json.loads(cli("info", str(copy), "--json").stdout)
    assert (carried["exporter"], carried["opset"], carried["ref"]) == ("fetched", 17, "mirror:colours")


def test_the_docs_and_examples_name_zoo_onnx(tmp_path: Path) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    assert project == "zoo-onnx"
    docs = (REPO / "docs" / "plugins.md").read_text()
    assert 'dependencies = ["zoo-onnx"]' in docs and 'dependencies = ["zoo"]' not in docs
    for example in ("zoo-hubconf", "zoo-mirror"):
        declared = tomllib.loads((EXAMPLES / example / "pyproject.toml").read_text())["project"]["dependencies"]
        assert declared == [project], example
    # Offline, against this environment: the dependency resolves to the installed zoo ("zoo" would not).
    source = tmp_path / "zoo-hubconf"
    shutil.copytree(EXAMPLES / "zoo-hubconf", source, ignore=IGNORED)
    ran = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                          str(source)], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and "Would install zoo-hubconf-0.1.0" in ran.stdout, ran.stderr


def test_listing_tells_a_source_asked_by_name_from_all(cli, tmp_path: Path) -> None:
    everything = cli("list", "--available")
    assert "mirror" not in everything.stderr  # unconfigured, and not asked for: silent
    named = cli("list", "--available", "mirror:*", check=False)
    assert named.returncode == 4 and "source mirror is not configured: set ZOO_MIRROR" in named.stderr

    mirror = str(make_mirror(tmp_path / "mirror"))
    rows = json.loads(cli("list", "--available", "mirror:*", "--json", ZOO_MIRROR=mirror).stdout)
    assert rows == [{"name": "mirror:colours", "ref": "mirror:colours", "kind": "model",
                     "description": "Mean colour: red, green or blue", "task": "classification"}]
    pulled = cli("pull", "mirror:colours", ZOO_MIRROR=mirror)
    assert "fetched mirror:colours from source mirror, opset 17" in pulled.stderr
    assert "exported" not in pulled.stderr and "parity" not in pulled.stderr
