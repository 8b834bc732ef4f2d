"""What the tests share: the CLI in this process and as a real one, store probes, small models.

Test modules import from here (``from helpers import ...``), never from each other or from
``conftest``; fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# The shared tiny model (conftest's ``tiny_store``): timm's test_resnet, 0.5 M parameters,
# 3x160x160 in, 1000 ImageNet classes out, a 2 MB model.onnx; exported with torchscript, the
# cheaper exporter, so that tests which export it again stay quick. Any command's model arguments.
TINY = ("timm:test_resnet", "--weights", "none", "--exporter", "torchscript")
TINY_INPUT = [1, 3, 160, 160]
# A real torchvision export of ~10 MB, for tests that need a model bigger than a small tmpfs.
SMALL = ("torchvision:mobilenet_v3_small", "--weights", "none", "--exporter", "torchscript")


# -- the CLI ---------------------------------------------------------------------------------------
@dataclass
class Ran:
    """What a CLI call gave: the same fields as ``subprocess.CompletedProcess``."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str, env: dict[str, str | None] | None = None, check: bool = True) -> Ran:
    """``zoo ARGS`` in this process, through the same entry point as the ``zoo`` command.

    ``zoo.cli.main`` (not only the Typer app) runs, so errors map to their one line and exit
    code exactly as for a user. ``env`` is laid over ``os.environ`` for the call (None unsets).
    The plugin host is loaded afresh, as a new process would.
    """
    from typer.testing import CliRunner

    from zoo import cli
    from zoo.host import reset_host

    argv = sys.argv
    with CliRunner().isolation(env=env) as (out, err, _):
        reset_host()
        sys.argv = ["zoo", *args]
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = argv
            reset_host()
        sys.stdout.flush()
        sys.stderr.flush()
        ran = Ran(list(args), code, out.getvalue().decode(), err.getvalue().decode())
    if check and ran.returncode != 0:
        raise AssertionError(f"zoo {' '.join(args)} exited {ran.returncode}:\n{ran.stderr}")
    return ran


def zoo_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for a CLI subprocess with its own store and no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_HOME=str(home), ZOO_CONFIG_DIR=str(home / "config"), **extra)
    return env


def home_env(home: Path, **extra: str) -> dict[str, str | None]:
    """The overrides for an in-process call (``invoke``) on the store at ``home``."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ZOO_")}
    return {**unset, "ZOO_HOME": str(home), "ZOO_CONFIG_DIR": str(home / "config"), **extra}


def run_cli(*args: str, env: dict[str, str], check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zoo ARGS`` as a real process: only where the process boundary is the point."""
    proc = subprocess.run([sys.executable, "-m", "zoo", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"zoo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def one_line_error(proc: Ran | subprocess.CompletedProcess[str], code: int | None, *fragments: str) -> str:
    """The single stderr line of a failed command, after checking the error contract.

    ``code`` None: any non-zero exit.
    """
    if code is None:
        assert proc.returncode != 0, proc.stdout
    else:
        assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("zoo: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_one_line_error(proc: Ran | subprocess.CompletedProcess[str], *fragments: str) -> None:
    """An error (not usage or internal) in one line: ``zoo: error: ...``."""
    line = one_line_error(proc, None, *fragments)
    assert line.startswith("zoo: error: "), line


# -- the store -------------------------------------------------------------------------------------
def tree(root: Path) -> set[str]:
    """Every path under ``root`` but the lock files and the trusted hashes (both only save work)."""
    paths = (p.relative_to(root) for p in root.rglob("*"))
    return {str(p) for p in paths if not {"locks", "hashes"} & set(p.parts)}


def store_files(root: Path) -> dict[str, bytes]:
    """Every file under models/ (through the entries' links) with its content: what "entries
    intact" means."""
    files = {}
    for folder, _dirs, names in os.walk(root / "models", followlinks=True):
        for name in names:
            path = Path(folder) / name
            files[str(path.relative_to(root))] = path.read_bytes()
    return dict(sorted(files.items()))


def entry_dirs(root: Path) -> list[str]:
    models = root / "models"
    return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


def temp_dirs(root: Path) -> list[str]:
    try:
        return sorted(os.listdir(root / "tmp"))
    except FileNotFoundError:
        return []


def metadata_of(pulled: dict) -> dict:
    """The zoo.json next to a pulled or exported model (``pulled["path"]``)."""
    return json.loads((Path(pulled["path"]).parent / "zoo.json").read_text())


# -- small inputs ----------------------------------------------------------------------------------
def write_image(path: Path, width: int = 400, height: int = 300, seed: int = 0) -> Path:
    """A photo-like image: smooth gradients plus noise, not square, so resize and crop matter."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def relu_model() -> Path:
    """A one-node ONNX model (Relu on [1, 3]), written once per machine and shared."""
    import onnx
    from onnx import TensorProto, helper

    path = Path(tempfile.gettempdir()) / "zoo-test-relu.onnx"  # same bytes every time: shared, never piles up
    if not path.exists():
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), partial)
        partial.replace(path)  # atomic: concurrent test runs never read half a file
    return path


NO_CUDA = "no CUDA device can create a session here (CUDAExecutionProvider does not load)"
_cuda: list[bool] = []


def cuda_works() -> bool:
    """Whether a CUDA session really runs here (onnxruntime-gpu lists CUDA even without a GPU)."""
    if not _cuda:
        from zoo.errors import EnvironmentProblem
        from zoo.runtime import open_session

        try:
            open_session(relu_model(), "cuda")
            _cuda.append(True)
        except EnvironmentProblem:
            _cuda.append(False)
    return _cuda[0]


def tiny_classifier(seed: int = 0, classes: int = 3, size: int = 32):  # -> onnx.ModelProto
    """A small image classifier built with onnx.helper (no torch): conv -> pool -> logits."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.RandomState(seed).randn(classes, 3, 3, 3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["c"], ["g"]),
         helper.make_node("Flatten", ["g"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model


def external_model(directory: Path, location: str) -> Path:
    """A tiny ONNX model (Y = X + W) whose initializer W lives in the external file ``location``."""
    import onnx
    from onnx import TensorProto, helper

    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = directory / "model.onnx"
    onnx.save(model, str(path))
    return path


# -- real filesystems ------------------------------------------------------------------------------
def _mount(*args: str) -> None:
    import pytest

    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here ({proc.stderr.strip()}): needs root with CAP_SYS_ADMIN")


@contextmanager
def mounted(*args: str, target: Path) -> Iterator[None]:
    """``mount ARGS TARGET`` (a real filesystem) for the duration of the block."""
    _mount(*args, str(target))
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@contextmanager
def read_only(target: Path) -> Iterator[None]:
    """``target`` bind-mounted read-only onto itself: refuses writes even to root, unlike chmod."""
    _mount("--bind", str(target), str(target))
    try:
        _mount("-o", "remount,bind,ro", str(target))
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


# -- audit hooks in this process -------------------------------------------------------------------
# Filesystem and network events, so a test can show that something did NOT happen.
AUDIT_WATCH = ("open", "os.", "shutil.", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
               "socket.bind", "socket.sendto", "urllib.Request", "http.client.connect")
_recording: list[list[list[str]]] = []


def _audit_hook(event: str, args: tuple) -> None:
    if _recording and event.startswith(AUDIT_WATCH) and event != "os.getpid":
        _recording[-1].append([event, repr(args)[:300]])


@contextmanager
def audited() -> Iterator[list[list[str]]]:
    """``with audited() as events:`` records [event, repr(args)] for the block (a Python audit hook,
    added to this process once: hooks cannot be removed, so it records only while a block runs)."""
    if not getattr(sys, "_zoo_test_audit_hook", False):
        sys.addaudithook(_audit_hook)
        sys._zoo_test_audit_hook = True  # type: ignore[attr-defined]
    events: list[list[str]] = []
    _recording.append(events)
    try:
        yield events
    finally:
        _recording.pop()


# -- a plugin host with made-up sources --------------------------------------------------------------
def catalogue(name: str, models: list[str]):  # -> zoo.source.Source
    """A source that knows ``models`` and builds nothing: enough to resolve names against."""
    from zoo.source import Source
    from zoo.spec import ModelSpec

    class Catalogue(Source):
        def models(self, pattern=None):
            return models

        def resolve(self, model):
            return ModelSpec(name, model) if model in models else None

    source = Catalogue()
    source.name = name
    return source


def host_with(*sources):  # -> zoo.host.PluginHost
    """A plugin host holding exactly ``sources`` (no plugins loaded)."""
    from zoo.host import PluginHost

    host = PluginHost()
    host.sources = {s.name: s for s in sources}
    return host


def hf_settings(server, tmp_path: Path) -> dict[str, str]:  # server: hubserver.HubServer
    """The environment that points the real huggingface_hub client at the local Hub ``server``.

    Xet off: uploads take the plain LFS route this server speaks (downloads use it anyway,
    since the server sends no xet headers).
    """
    from hubserver import TOKEN

    return {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": TOKEN,
            "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"}


# -- hostile ONNX files ------------------------------------------------------------------------
# Where ONNX keeps tensors: each kind can carry an external-data reference.
KINDS = ("dense", "sparse values", "sparse indices", "constant attribute", "subgraph", "function")


def outside(name: str, location: str, dims: tuple[int, ...] = (4,), dtype: int | None = None) -> Any:
    """A tensor whose bytes ONNX would read from ``location``."""
    from onnx import TensorProto

    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT if dtype is None else dtype, dims=list(dims))
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(dims))))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def inline(name: str, values: list[float]) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor(name, TensorProto.FLOAT, [len(values)], values)


def planted_model(kind: str, location: str) -> Any:
    """Y = X + W, with one tensor of ``kind`` (see ``KINDS``) reading its bytes from ``location``."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Add", ["X", "W"], ["Y"])]
    initializers: list[TensorProto] = []
    sparse: list[onnx.SparseTensorProto] = []
    functions: list[onnx.FunctionProto] = []
    if kind == "dense":
        initializers.append(outside("W", location))
    elif kind.startswith("sparse"):
        values = outside("W", location, (1,)) if kind == "sparse values" else inline("W", [1.0])
        indices = (outside("W_idx", location, (1,), TensorProto.INT64) if kind == "sparse indices"
                   else helper.make_tensor("W_idx", TensorProto.INT64, [1], [2]))
        sparse.append(helper.make_sparse_tensor(values, indices, [4]))
    elif kind == "constant attribute":
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=outside("c", location)))
    elif kind == "subgraph":
        branch = helper.make_graph([helper.make_node("Identity", ["B"], ["W_out"])], "branch", [],
                                   [helper.make_tensor_value_info("W_out", TensorProto.FLOAT, [4])],
                                   initializer=[outside("B", location)])
        nodes.insert(0, helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("k", TensorProto.BOOL,
                                                                                           [], [True])))
        nodes.insert(1, helper.make_node("If", ["cond"], ["W"], then_branch=branch, else_branch=branch))
    elif kind == "function":
        body = helper.make_node("Constant", [], ["out"], value=outside("f", location))
        functions.append(helper.make_function("local", "MakeW", [], ["out"], [body],
                                              [helper.make_opsetid("", 18)]))
        nodes.insert(0, helper.make_node("MakeW", [], ["W"], domain="local"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])],
                              initializer=initializers, sparse_initializer=sparse)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid("local", 1)] if functions else [])
    model = helper.make_model(graph, opset_imports=opsets, functions=functions)
    model.ir_version = 9
    return model


def decisive_checkpoint(name: str, path: Path, side: int, **settings: Any) -> Path:
    """Seeded random weights whose batch-norm statistics are measured on random images.

    Random initialisation leaves SSDlite's activations vanishing through its eval-mode batch
    norms (every score equals 1/91); measured statistics give spread, decisive scores.
    ``settings`` go to torchvision's builder (benchmarks/bench_tasks.py sets R-CNN sizes).
    """
    import torch
    from torchvision.models import get_model

    torch.manual_seed(0)
    model = get_model(name, weights=None, weights_backbone=None, **settings).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
            module.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, 3, side, side))
    torch.save(model.state_dict(), path)
    return path


ENTRY_DAMAGES = ("invalid JSON", "lists no files", "zoo.json missing", "record and model unreadable", "pointer out")


def damage_entry(entry: Path, damage: str, elsewhere: Path) -> None:
    """Break a stored entry one of the ways ``ENTRY_DAMAGES`` names (``elsewhere``: where a pointer
    out of the store leads); the repair-advice test and the fault suite share them."""
    import shutil

    record = entry / "zoo.json"
    if damage == "invalid JSON":
        record.write_text("{ not json")
    elif damage == "lists no files":
        record.write_text(json.dumps({**json.loads(record.read_text()), "files": []}))
    elif damage == "zoo.json missing":
        record.unlink()
    elif damage == "record and model unreadable":
        record.write_text("{ not json")
        (entry / "model.onnx").write_bytes(b"not a model")
    elif damage == "pointer out":
        shutil.copytree(entry.resolve(), elsewhere)
        entry.unlink()
        entry.symlink_to(elsewhere)
    else:
        raise ValueError(f"unknown damage {damage!r}")
