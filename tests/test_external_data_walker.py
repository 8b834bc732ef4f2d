"""One external-data walker for every tensor kind, used by zoo's checks and by the hf source.

A tensor whose bytes live in a file outside the model's folder can sit anywhere ONNX keeps
tensors: dense and sparse initializers (values and indices), ``Constant`` and other tensor
attributes, subgraphs and local functions. Each is planted here and must be found; the
sparse one (which onnx's private walker skipped) is also refused end to end, exit 3, by
``zoo verify`` and ``zoo run FILE.onnx``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import KINDS, home_env, invoke, one_line_error, planted_model
from onnx import helper
from zoo_hf import external_data

from zoo.integrity import external_data_problems, model_tensors
from zoo.record import Record, as_json
from zoo.store import MODEL_FILE, Store, describe_files, write_json


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return path


@pytest.mark.parametrize("attack", ["absolute", "symlink out"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_tensor_kind_is_walked_and_checked(tmp_path: Path, secret: Path, kind: str, attack: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    location = str(secret) if attack == "absolute" else "link.bin"
    model = planted_model(kind, location)
    onnx.save(model, str(folder / MODEL_FILE))
    locations = {t.external_data[0].value for t in model_tensors(model) if t.external_data}
    assert locations == {location}
    problems = external_data_problems(folder / MODEL_FILE)
    reason = "is an absolute path" if attack == "absolute" else "symlink leaving"
    assert problems and all(reason in problem for problem in problems)
    # The hf source walks the same tensors: a hostile repo's absolute location is refused.
    if attack == "absolute":
        with pytest.raises(Exception, match="unsafe external data"):
            external_data(folder / MODEL_FILE)
    else:
        assert external_data(folder / MODEL_FILE) == ["link.bin"]  # hf then downloads it itself


def test_walker_finds_a_tensor_deep_in_nested_subgraphs() -> None:
    graph = planted_model("dense", "/deep.bin").graph
    empty = helper.make_graph([], "empty", [], [])
    for depth in range(20):  # protobuf refuses to parse much deeper
        node = helper.make_node("If", ["cond"], ["W"], then_branch=empty, else_branch=graph)
        graph = helper.make_graph([node], f"level{depth}", [], [helper.make_tensor_value_info("W", 1, [4])])
    model = onnx.load_from_string(helper.make_model(graph).SerializeToString())  # survives a round trip
    assert [t.external_data[0].value for t in model_tensors(model) if t.external_data] == ["/deep.bin"]


@pytest.mark.parametrize("attack", ["absolute", "symlink out"])
def test_planted_sparse_initializer_is_refused_by_verify_and_run(tmp_path: Path, secret: Path, attack: str) -> None:
    home = tmp_path / "zoo-home"
    store = Store(home)
    key = "0123456789abcdef0123"

    def produce(directory: Path) -> Record:
        onnx.save(planted_model("sparse values", "w.bin"), str(directory / MODEL_FILE))
        (directory / "w.bin").write_bytes(secret.read_bytes()[:4])
        return Record(name="planted", ref="fake:planted")

    entry, _ = store.create(key, produce)  # a safe entry, then the attack is planted in place
    location = str(secret) if attack == "absolute" else "link.bin"
    onnx.save(planted_model("sparse values", location), str(entry.model_path))
    metadata = json.loads((entry.dir / "zoo.json").read_text())
    metadata["files"] = [as_json(f) for f in describe_files(entry.dir)]  # hashes match: only the reference is wrong
    write_json(entry.dir / "zoo.json", metadata)
    (entry.dir / "link.bin").symlink_to(secret)  # not in the record: only the model names it

    env = home_env(home)
    proc = invoke("verify", env=env, check=False)
    assert proc.returncode == 3 and "tensor 'W' external data" in proc.stdout, proc.stdout + proc.stderr
    one_line_error(invoke("run", str(entry.model_path), env=env, check=False), 3, "refusing", "external data")
