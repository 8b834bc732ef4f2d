"""`zoo pull`: export on a miss, hit on the second call, a model that really runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import REPO, TINY, home_env, invoke, run_cli, tree, zoo_env


@pytest.mark.slow
def test_pull_exports_checks_and_runs(resnet18_store: Path) -> None:
    """A real torchvision architecture end to end: checker, parity, labels, stats, metadata in the file."""
    first = json.loads(invoke("pull", "resnet18", "--weights", "none", "--json", env=home_env(resnet18_store)).stdout)
    assert first["cached"] is True  # the fixture's pull was the miss
    path = Path(first["path"])
    assert path.name == "model.onnx" and path.is_relative_to(resnet18_store)
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.zeros((2, 3, 224, 224), np.float32)})
    assert logits.shape == (2, 1000)  # dynamic batch

    metadata = json.loads((path.parent / "zoo.json").read_text())
    assert metadata["ref"] == "torchvision:resnet18"
    assert metadata["exporter"] in ("dynamo", "torchscript")
    assert metadata["validation"]["passed"] is True
    assert metadata["validation"]["max_abs_diff"] < 1e-3
    assert metadata["preprocessing"]["crop"] == [224, 224]
    assert metadata["preprocessing"]["resize"] == 256
    assert metadata["preprocessing"]["interpolation"] == "bilinear"
    assert len(metadata["labels"]) == 1000 and metadata["labels"][0] == "tench"
    assert metadata["stats"]["params"] == 11689512 and metadata["stats"]["gflops"] > 1
    assert {f["path"] for f in metadata["files"]} == {"model.onnx"}
    assert metadata["files"][0]["sha256"] == first["sha256"]
    assert metadata["toolchain"]["torch"] and metadata["toolchain"]["onnx"]

    # The ONNX file describes itself for use outside the store.
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    carried = json.loads(props["zoo.metadata"])
    assert carried["preprocessing"] == metadata["preprocessing"]
    assert carried["labels"] == metadata["labels"]


def test_second_pull_is_a_hit_and_creates_nothing(copy_store: Path, zoo) -> None:
    before = tree(copy_store)
    mtimes = {p: os.stat(copy_store / p).st_mtime_ns for p in before}
    out = json.loads(zoo("pull", *TINY, "--json").stdout)
    assert out["cached"] is True and out["ref"] == "timm:test_resnet"
    assert tree(copy_store) == before
    assert {p: os.stat(copy_store / p).st_mtime_ns for p in before} == mtimes


def test_cache_hit_never_imports_torch(tiny_store: Path, tmp_path: Path) -> None:
    """Real processes: torch, torchvision and timm cannot be imported at all (poisoned on PYTHONPATH)."""
    poison = tmp_path / "poison"
    for name in ("torch", "torchvision", "timm"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} must not be imported')\n")
    env = zoo_env(tiny_store, PYTHONPATH=os.pathsep.join([str(poison), os.environ.get("PYTHONPATH", str(REPO))]))
    pulled = json.loads(run_cli("pull", *TINY, "--json", env=env).stdout)
    assert pulled["cached"] is True
    listed = json.loads(run_cli("list", "--json", env=env).stdout)
    assert [row["name"] for row in listed] == ["timm:test_resnet"]
    assert set(listed[0]) >= {"name", "ref", "path", "size", "sha256"}
    info = json.loads(run_cli("info", *TINY, "--json", env=env).stdout)
    assert info["key"] == pulled["key"]
    # A torchvision alias resolves without torch too: the lookup answers, not an import.
    alias = run_cli("info", "resnet18", "--weights", "none", env=env, check=False)
    assert alias.returncode == 1 and "not in the store" in alias.stderr, alias.stderr
    # and the poison works: a miss does need torch
    miss = run_cli("pull", "mobilenet_v3_small", "--weights", "none", env=env, check=False)
    assert miss.returncode != 0 and "must not be imported" in miss.stderr


def test_force_exports_again(copy_store: Path, zoo) -> None:
    (key,) = os.listdir(copy_store / "models")
    out = json.loads(zoo("pull", *TINY, "--force", "--json").stdout)
    assert out["cached"] is False and out["key"] == key
    assert os.listdir(copy_store / "models") == [key]
