"""`zoo run` refuses what it must not load: corrupted store entries (so does a `zoo pull`
hit, and `zoo pull --force` repairs them) and ONNX files whose external data points outside their folder, before
ONNX Runtime opens anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, entry_dirs, external_model, one_line_error

from zoo.store import MODEL_FILE


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flipped byte":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2:]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flipped byte", "truncated"])
def test_run_refuses_a_corrupted_entry_and_force_pull_repairs_it(copy_store: Path, zoo, how: str) -> None:
    (key,) = entry_dirs(copy_store)
    assert json.loads(zoo("pull", key, "--json").stdout)["cached"] is True  # intact: a hit (hashes remembered)
    _corrupt(copy_store / "models" / key / MODEL_FILE, how)
    for command in (["run", *TINY], ["pull", *TINY], ["pull", key[:8]]):  # a hit never hands out bad files
        proc = zoo(*command, "--json", check=False)
        one_line_error(proc, 3, "does not match its record", f"zoo pull --force {key}")
    if how == "truncated":
        assert json.loads(zoo("pull", *TINY, "--force", "--json").stdout)["cached"] is False
        out = json.loads(zoo("run", *TINY, "--json").stdout)
    else:  # run, bench and eval take --force too: export again, then run
        out = json.loads(zoo("run", key[:8], "--force", "--json").stdout)
    assert out["provider"] == "cpu"
    assert json.loads(zoo("verify", "--json").stdout)["ok"] is True


@pytest.mark.parametrize("attack", ["absolute", "dotdot", "symlink out"])
def test_run_refuses_external_data_outside_before_onnxruntime_opens_it(
    home: Path, zoo, tmp_path: Path, secret: Path, attack: str
) -> None:
    """zoo's own check answers (exit 3, "refusing"), not ONNX Runtime's (1.31 validates these
    paths too; older runtimes and ``onnx.load`` do not all), so nothing reaches the runtime."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    location = {"absolute": str(secret), "dotdot": "../secret.bin", "symlink out": "link.bin"}[attack]
    model = external_model(folder, location)
    proc = zoo("run", str(model), "--json", check=False)
    one_line_error(proc, 3, "refusing", "external data", "must be a plain file next to the model")


def test_run_loads_external_data_kept_inside_the_folder(home: Path, zoo, tmp_path: Path, secret: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(secret.read_bytes())
    model = external_model(folder, "weights.bin")
    x = tmp_path / "x.npy"
    np.save(x, np.ones(4, np.float32))
    out = json.loads(zoo("run", str(model), "--input", str(x), "--output", str(tmp_path / "y.npz"), "--json").stdout)
    assert out["provider"] == "cpu"
    assert np.load(tmp_path / "y.npz")["Y"].tolist() == [1.0, 2.0, 3.0, 4.0]  # X + W, W read from weights.bin
