"""`zoo run` refuses what it must not load: corrupted store entries (so does a `zoo pull`
hit, and `zoo pull --force` repairs them) and ONNX files whose external data points outside their folder, before
ONNX Runtime opens anything. What goes wrong while it runs (ONNX Runtime failing mid-run, inputs
it cannot make, Ctrl-C during its imports) is one line with the documented exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, TINY, entry_dirs, external_model, invoke, one_line_error, relu_model, zoo_env

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


# -- what goes wrong while a model runs ------------------------------------------------------------
def graph_model(path: Path, node: str, value: object, input_type: int, input_shape: list) -> Path:
    """A one-node model ``node(x, constant)`` (``value`` None: ``node(x)``)."""
    import onnx
    from onnx import helper, numpy_helper

    inputs = ["x"] + ([] if value is None else ["c"])
    initializers = [] if value is None else [numpy_helper.from_array(np.array(value, dtype=np.int64), "c")]
    graph = helper.make_graph([helper.make_node(node, inputs, ["y"])], "g",
                              [helper.make_tensor_value_info("x", input_type, input_shape)],
                              [helper.make_tensor_value_info("y", input_type, None)], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def test_onnxruntime_failing_while_it_runs_is_one_line_without_its_log(home: Path, tmp_path: Path) -> None:
    """A 256 GiB output (Expand) fails to allocate mid-run: one line, exit 4, and none of ONNX
    Runtime's own coloured log lines on stderr (a real process: ORT writes to fd 2)."""
    from onnx import TensorProto

    huge = graph_model(tmp_path / "huge_output.onnx", "Expand", [1 << 16, 1 << 16, 16], TensorProto.FLOAT, [1])
    for mode in ("naive", "iobinding"):  # ORT's Fail, and pybind's MemoryError (std::bad_alloc)
        args = ["run", str(huge)] if mode == "naive" else ["bench", str(huge), "--mode", mode, "--iterations", "1"]
        proc = subprocess.run([sys.executable, "-m", "zoo", *args], env=zoo_env(home), cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        one_line_error(proc, 4, "ONNX Runtime ran out of memory running the model", "smaller batch")
    bad = graph_model(tmp_path / "bad_reshape.onnx", "Reshape", [7], TensorProto.FLOAT, ["n"])
    failed = invoke("run", str(bad), check=False)
    one_line_error(failed, 1, "ONNX Runtime failed running the model", "cannot be reshaped")


def test_inputs_zoo_cannot_make_are_refused_in_one_line(home: Path, tmp_path: Path) -> None:
    from onnx import TensorProto

    strings = graph_model(tmp_path / "strings.onnx", "Identity", None, TensorProto.STRING, [1])
    for command in ("run", "bench"):
        refused = invoke(command, str(strings), check=False)
        one_line_error(refused, 1, "input 'x' is tensor(string)", "numeric tensors only")
    shorts = graph_model(tmp_path / "int16.onnx", "Identity", None, TensorProto.INT16, [2])
    assert json.loads(invoke("run", str(shorts), "--json").stdout)["outputs"][0]["dtype"] == "int16"


# Poisoned modules that deliver a real SIGINT to the process while zoo imports them.
CTRL_C = {
    # typer is imported with the CLI itself: the KeyboardInterrupt escapes before zoo.cli exists
    "typer": "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n",
    # ONNX Runtime importing numpy: Ctrl-C becomes "ImportError: import numpy failed", chained
    "onnxruntime": ("import os, signal, time\ntry:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(5)\n"
                    "except KeyboardInterrupt as exc:\n    raise ImportError('import numpy failed') from exc\n"),
}
# A C extension's broken initialisation: the interrupt raised in exec'd text (as dataclasses make
# their methods; CPython then marks the process as killed by SIGINT), its traceback printed by the
# extension itself, and an ImportError that has lost the chain.
CTRL_C["onnxruntime, chain lost"] = (
    "import os, signal, time, traceback\ntry:\n"
    "    exec('os.kill(os.getpid(), signal.SIGINT)\\ntime.sleep(5)')\n"
    "except KeyboardInterrupt:\n    traceback.print_exc()\nraise ImportError('initialization failed')\n")


@pytest.mark.parametrize("poisoned", list(CTRL_C))
def test_ctrl_c_during_the_imports_is_one_line_and_exit_130(poisoned: str, home: Path, tmp_path: Path) -> None:
    package = tmp_path / "poison" / poisoned.split(",")[0]
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(CTRL_C[poisoned])
    path = os.pathsep.join([str(tmp_path / "poison"), str(REPO), str(REPO / "plugins")])
    proc = subprocess.run([sys.executable, "-m", "zoo", "run", str(relu_model())], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=zoo_env(home, PYTHONPATH=path))
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "", "zoo: interrupted\n")
