"""The export pipeline on small hand-made models, and zoo from a plain source tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from zoo.errors import ExportError
from zoo.exporting import export
from zoo.recipe import Recipe
from zoo.spec import BuiltModel, Preprocessing


def tiny_built(module) -> BuiltModel:
    return BuiltModel(module=module, preprocessing=Preprocessing(input_size=(3, 32, 32)))


def branchy():
    import torch

    class Branchy(torch.nn.Module):
        """Data-dependent control flow: torch.export refuses it, tracing records one branch."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x)
            if y.mean() > -100:  # always true for the parity input
                y = y * 2
            return y.flatten(1)

    return Branchy()


def test_auto_falls_back_to_torchscript_and_records_why(tmp_path: Path) -> None:
    result = export(tiny_built(branchy()), Recipe(), tmp_path)
    assert result.exporter == "torchscript"
    assert result.attempts[0]["exporter"] == "dynamo" and result.attempts[0]["error"]
    assert result.attempts[1] == {"exporter": "torchscript", "error": ""}
    assert result.validation["passed"] and result.validation["max_abs_diff"] < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_asking_for_one_exporter_does_not_fall_back(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"^export failed \(dynamo: "):
        export(tiny_built(branchy()), Recipe(exporter="dynamo"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_static_batch_and_opset_are_honoured(tmp_path: Path) -> None:
    import onnx
    import torch

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten())
    result = export(tiny_built(module), Recipe(dynamic_batch=False, batch=3, opset=17), tmp_path)
    assert result.inputs == [{"name": "input", "shape": [3, 3, 32, 32], "dtype": "float32"}]
    model = onnx.load(str(result.path))
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def test_runs_from_a_plain_source_tree(tmp_path: Path) -> None:
    """`PYTHONPATH=. python -m zoo` with the built-in plugins found in ./plugins."""
    tree = tmp_path / "src"
    for part in ("zoo", "plugins"):
        shutil.copytree(REPO / part, tree / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "registry.toml", tree / "registry.toml")
    env = {**os.environ, "PYTHONPATH": str(tree), "ZOO_HOME": str(tmp_path / "home")}
    code = ("import zoo, zoo.host as p; p.get_host(); import zoo_torchvision as t; "
            "print(zoo.__file__, t.__file__)")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True, check=True)
    assert all(path.startswith(str(tree)) for path in out.stdout.split())
    plugins = json.loads(subprocess.run([sys.executable, "-m", "zoo", "plugins", "--json"], env=env, cwd=tree,
                                        capture_output=True, text=True, check=True).stdout)
    assert any(p["name"] == "zoo_torchvision" and p["status"] == "loaded" for p in plugins)
