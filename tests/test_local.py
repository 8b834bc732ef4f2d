"""The local-checkpoint source and ``zoo.checkpoint``: formats, safety, keys, cache keys."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import REPO, zoo_env

TOLERANCE = 1e-4  # max abs diff between ORT and PyTorch logits on the fixed input


def fixed_input(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1234))


def onnx_logits(path: str | Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def random_timm(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, **kwargs).eval()


@pytest.mark.slow
def test_repvit_checkpoint_saved_like_the_repvit_repo_exports_and_matches(
        zoo, tmp_path: Path, record_property) -> None:
    """``torch.save({'model': sd}, path)`` as RepViT's training script does, exported with local:.

    With torchscript, the cheaper exporter: the point is the checkpoint and fusing after loading it
    (done on the PyTorch module, before any exporter runs), not the exporter."""
    model = random_timm("repvit_m0_9")
    ckpt = tmp_path / "pretrain" / "repvit_m0_9_distill_300e.pth"
    ckpt.parent.mkdir()
    torch.save({"model": model.state_dict()}, ckpt)
    out = tmp_path / "onnx_output"
    data = json.loads(zoo("export", f"local:{ckpt}", "--arch", "timm:repvit_m0_9", "--exporter", "torchscript",
                           "-o", str(out), "--json").stdout)
    assert data["path"] == str(out / "model.onnx")
    x = fixed_input(224)
    with torch.inference_mode():
        want = model(x).numpy()
    diff = float(np.abs(onnx_logits(out / "model.onnx", x) - want).max())
    record_property("max_abs_diff", diff)
    print(f"repvit_m0_9 local: max abs diff vs PyTorch = {diff:.3g}")
    assert diff < TOLERANCE
    meta = json.loads((out / "zoo.json").read_text())
    assert meta["ref"] == f"local:{ckpt}"
    assert meta["weights"]["sha256"] == meta["weights"]["tag"].removeprefix("sha256:")
    assert meta["weights"]["arch"] == "timm:repvit_m0_9"
    assert meta["extra"]["reparameterize"]["applied"] is True  # fused after loading the weights
    assert meta["validation"]["passed"] is True


@pytest.mark.parametrize("layout", ["safetensors", "state_dict+module", "ema", "bare"])
def test_checkpoint_layouts_load_the_same_tensors(tmp_path: Path, layout: str) -> None:
    from safetensors.torch import save_file

    from zoo.checkpoint import load_state_dict

    state = random_timm("test_resnet").state_dict()
    noise = {k: torch.zeros_like(v) for k, v in state.items()}
    if layout == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "w.pth"
        data = {
            "state_dict+module": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 4},
            "ema": {"model": noise, "model_ema": state, "optimizer": {"lr": 0.1}},
            "bare": state,
        }[layout]
        torch.save(data, path)
    loaded = load_state_dict(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


class RunsCode:
    """Unpickling this writes a sentinel file: what a malicious checkpoint would do."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (exec, (f"open({str(self.sentinel)!r}, 'w').write('ran')",))


@pytest.mark.parametrize(("writer", "reason"), [
    ("torch.save", "it imports builtins.exec"),
    ("pickle protocol 2", "it imports exec"),
    ("pickle protocol 5", "Unsupported operand"),  # refused before it reaches the global
])
def test_checkpoint_that_runs_code_is_refused_and_never_runs(zoo, tmp_path: Path, writer: str, reason: str) -> None:
    sentinel = tmp_path / "sentinel"
    evil = tmp_path / "evil.pth"
    payload = {"model": RunsCode(sentinel)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    proc = zoo("export", f"local:{evil}", "--arch", "timm:test_resnet", "-o", str(tmp_path / "out"), check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"refusing {evil}" in lines[0] and "arbitrary code" in lines[0] and "safetensors" in lines[0]
    assert reason in lines[0]
    assert not sentinel.exists()
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_missing_and_unexpected_keys_are_listed_and_no_strict_allows_them(zoo, tmp_path: Path) -> None:
    model = random_timm("test_resnet")
    state = model.state_dict()
    dropped = list(state)[:4]
    for key in dropped:
        del state[key]
    state["extra.weight"] = torch.zeros(3)
    ckpt = tmp_path / "partial.pth"
    torch.save({"model": state}, ckpt)
    out = tmp_path / "out"
    proc = zoo("export", "--checkpoint", str(ckpt), "--arch", "timm:test_resnet", "-o", str(out), check=False)
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert line.startswith("zoo: error: ") and len(line.splitlines()) == 1
    assert f"missing {len(dropped)} keys ({', '.join(dropped[:3])}, ...)" in line
    assert "unexpected 1 keys (extra.weight)" in line and "--no-strict" in line
    zoo("export", "--checkpoint", str(ckpt), "--arch", "timm:test_resnet", "--no-strict", "--exporter", "torchscript",
        "-o", str(out))
    meta = json.loads((out / "zoo.json").read_text())
    assert meta["options"] == {"arch": "timm:test_resnet", "strict": False}


def test_head_size_is_read_from_the_checkpoint_or_given(zoo, tmp_path: Path) -> None:
    model = random_timm("test_resnet", num_classes=5)
    ckpt = tmp_path / "five.safetensors"
    from safetensors.torch import save_file

    save_file({f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    out = tmp_path / "out"
    zoo("export", f"local:{ckpt}", "--arch", "timm:test_resnet", "--exporter", "torchscript", "-o", str(out))
    x = fixed_input(160)
    with torch.inference_mode():
        want = model(x).numpy()
    assert np.abs(onnx_logits(out / "model.onnx", x) - want).max() < TOLERANCE
    proc = zoo("export", f"local:{ckpt}", "--arch", "timm:test_resnet", "--num-classes", "7", "-o",
               str(tmp_path / "out7"), check=False)
    assert proc.returncode == 1
    assert "shape mismatch" in proc.stderr and "--num-classes" in proc.stderr


def test_torchvision_architecture_from_a_ddp_checkpoint(zoo, tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.squeezenet1_1().eval()  # torchvision's smallest classifier
    ckpt = tmp_path / "tv.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    out = tmp_path / "out"
    zoo("export", f"local:{ckpt}", "--arch", "torchvision:squeezenet1_1", "--exporter", "torchscript", "-o", str(out))
    x = fixed_input(224)
    with torch.inference_mode():
        want = model(x).numpy()
    assert np.abs(onnx_logits(out / "model.onnx", x) - want).max() < TOLERANCE


def test_cache_key_follows_file_content_and_options(home: Path, tmp_path: Path) -> None:
    from zoo import api

    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"first version")
    arch = {"arch": "timm:test_resnet"}

    def key(**options) -> str:
        return api.resolve_name(f"local:{ckpt}", options={**arch, **options}).key

    first = key()
    assert key() == first == key(strict=True)  # stable; strict is the default
    assert len({first, key(num_classes=10), key(strict=False), key(arch="timm:resnet18")}) == 4
    ckpt.write_bytes(b"second version")
    assert key() != first  # a changed file is a new entry
    spec = api.resolve_name(f"local:{ckpt}", options=arch).spec
    assert spec.name == str(ckpt.resolve()) and spec.option("arch") == "timm:test_resnet"


def test_resolving_a_checkpoint_never_imports_torch(tmp_path: Path) -> None:
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"x" * 1000)
    code = (
        "import sys; from zoo import api; "
        f"r = api.resolve_name('local:{ckpt}', options={{'arch': 'timm:repvit_m0_9'}}); "
        "print(r.key, r.spec.weights, 'torch' in sys.modules, 'timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=zoo_env(tmp_path / "home"), cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[1].startswith("sha256:") and out[2:] == ["False", "False"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["local:{ckpt}"], "needs --arch SOURCE:NAME"),
        (["local:{ckpt}", "--arch", "repvit_m0_9"], "write SOURCE:NAME"),
        (["local:{ckpt}", "--arch", "timm:test_resnet", "--weights", "none"], "takes its weights from the file"),
        (["local:{tmp}/nope.pth", "--arch", "timm:test_resnet"], "checkpoint file not found"),
        (["resnet18", "--arch", "timm:resnet18"], "only for SOURCE:NAME refs"),
        (["timm:resnet18", "--arch", "timm:resnet18"], "source 'timm' takes no --arch"),
        (["timm:resnet18", "--checkpoint", "{ckpt}"], "not both"),
    ],
)
def test_bad_checkpoint_requests_fail_in_one_line(zoo, tmp_path: Path, args: list[str], fragment: str) -> None:
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"not a checkpoint")
    args = [a.format(ckpt=ckpt, tmp=tmp_path) for a in args]
    proc = zoo("export", *args, "-o", str(tmp_path / "out"), check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr, proc.stderr


def test_checkpoint_with_another_code_bases_names_is_paired_by_position(zoo, tmp_path: Path) -> None:
    """Like RepViT's own checkpoints (``features.0.0.c``...): same tensors, same order, other names."""
    model = random_timm("test_resnet", num_classes=6)
    renamed = {f"features.{i}.{key.rsplit('.', 1)[-1]}": v for i, (key, v) in enumerate(model.state_dict().items())}
    ckpt = tmp_path / "original_repo.pth"
    torch.save({"model": renamed}, ckpt)
    out = tmp_path / "out"
    zoo("export", f"local:{ckpt}", "--arch", "timm:test_resnet", "--exporter", "torchscript", "-o", str(out))
    x = fixed_input(160)
    with torch.inference_mode():
        want = model(x).numpy()
    assert np.abs(onnx_logits(out / "model.onnx", x) - want).max() < TOLERANCE
    meta = json.loads((out / "zoo.json").read_text())
    assert meta["weights"]["remapped"].startswith("by position")
    assert meta["outputs"][0]["shape"] == ["batch", 6]  # head size read by position too
    shuffled = dict(reversed(list(renamed.items())))
    torch.save({"model": shuffled}, ckpt)
    proc = zoo("export", f"local:{ckpt}", "--arch", "timm:test_resnet", "-o", str(tmp_path / "shuffled"), check=False)
    assert proc.returncode == 1 and "does not fit the model" in proc.stderr
