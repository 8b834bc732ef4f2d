"""The timm source: pull, re-parameterisation, preprocessing, names, offline weights."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import home_env, invoke
from helpers import metadata_of as metadata


def pull_json(*args: str, env: dict[str, str | None]) -> dict:
    return json.loads(invoke("pull", *args, "--json", env=env).stdout)


@pytest.fixture(scope="session")
def repvit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """``zoo pull repvit_m0_9 --weights none``, fused (the alias's default) and un-fused.

    Both with torchscript, the cheaper exporter (the same for both, so their graphs compare):
    fusing is done on the PyTorch module, before any exporter runs.
    """
    env = home_env(tmp_path_factory.mktemp("repvit") / "zoo-home")
    fused = pull_json("repvit_m0_9", "--weights", "none", "--exporter", "torchscript", env=env)
    plain = pull_json("repvit_m0_9", "--weights", "none", "--exporter", "torchscript", "--no-reparameterize",
                      env=env)
    return {"fused": fused, "plain": plain}


@pytest.mark.slow
def test_repvit_pull_is_reparameterised_and_smaller(repvit: dict[str, dict]) -> None:
    fused, plain = metadata(repvit["fused"]), metadata(repvit["plain"])
    assert fused["ref"] == plain["ref"] == "timm:repvit_m0_9"
    assert fused["key"] != plain["key"]
    for pulled, meta in ((repvit["fused"], fused), (repvit["plain"], plain)):
        onnx.checker.check_model(pulled["path"], full_check=True)
        assert meta["validation"]["passed"] is True and meta["validation"]["max_abs_diff"] < 1e-3
        assert meta["license"] == "apache-2.0"
        assert len(meta["labels"]) == 1000 and meta["labels"][0].startswith("tench")
    assert fused["recipe"]["reparameterize"] is True and plain["recipe"]["reparameterize"] is False
    assert fused["extra"]["reparameterize"]["applied"] is True
    assert plain["extra"]["reparameterize"] == {"applied": False, "reason": "turned off"}
    assert fused["stats"]["reparameterized"] is True and plain["stats"]["reparameterized"] is False
    # Fusing conv+BN branches and the distillation head leaves a smaller graph and model.
    assert fused["stats"]["onnx_nodes"] < plain["stats"]["onnx_nodes"]
    assert fused["stats"]["params"] < plain["stats"]["params"]
    # RepViT's pretrained config: crop_pct 0.95, bicubic, ImageNet mean/std.
    assert fused["preprocessing"] == {
        "input_size": [3, 224, 224], "resize": 235, "crop": [224, 224], "crop_mode": "center",
        "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "channel_order": "RGB", "layout": "NCHW",
    }


def test_timm_ref_pulls_and_runs(tmp_path: Path) -> None:
    """The default recipe (dynamo exporter) on timm's tiny test model."""
    env = home_env(tmp_path / "zoo-home")
    pulled = pull_json("timm:test_resnet", "--weights", "none", env=env)
    assert pulled["ref"] == "timm:test_resnet" and pulled["cached"] is False
    meta = metadata(pulled)
    assert meta["validation"]["passed"] is True
    assert meta["preprocessing"]["input_size"] == [3, 160, 160]
    assert meta["source"]["name"] == "timm" and meta["source"]["plugin"] == "zoo_timm"
    assert meta["extra"]["reparameterize"] == {"applied": False, "reason": "no fusable blocks"}
    again = pull_json("timm:test_resnet", "--weights", "none", env=env)
    assert again["cached"] is True and again["sha256"] == pulled["sha256"]


@pytest.mark.slow
def test_timm_resnet18_pulls_with_checker_and_parity(tmp_path: Path) -> None:
    """A real architecture through the checker and parity; the default (dynamo) exporter is
    test_timm_ref_pulls_and_runs's point, so the cheaper one here."""
    env = home_env(tmp_path / "zoo-home")
    pulled = pull_json("timm:resnet18", "--weights", "none", "--exporter", "torchscript", env=env)
    meta = metadata(pulled)
    onnx.checker.check_model(pulled["path"], full_check=True)
    assert meta["ref"] == "timm:resnet18" and meta["validation"]["passed"] is True
    assert meta["validation"]["max_abs_diff"] < 1e-3
    assert meta["stats"]["params"] == 11689512
    session = ort.InferenceSession(pulled["path"], providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.zeros((1, 3, 224, 224), np.float32)})
    assert logits.shape == (1, 1000)


def test_bare_name_claimed_by_timm_and_torchvision_is_ambiguous(home: Path, zoo) -> None:
    proc = zoo("pull", "resnet101", "--weights", "none", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "zoo: error: 'resnet101' is ambiguous: several sources have it "
        "(timm:resnet101, torchvision:resnet101); name one"
    )


def test_aliases_keep_their_sources(home: Path) -> None:
    from zoo import api

    assert api.resolve_name("resnet50").spec.ref == "torchvision:resnet50"  # the alias wins
    repvit = api.resolve_name("repvit_m0_9")
    assert (repvit.spec.ref, repvit.spec.weights, repvit.recipe.reparameterize) == (
        "timm:repvit_m0_9", "dist_450e_in1k", True)
    for alias in ("repvit_m1_1", "efficientnet_lite0", "mobilenetv4_conv_small", "fastvit_t8", "convnext_atto"):
        spec = api.resolve_name(alias).spec
        assert spec.source == "timm" and api.resolve_name(f"timm:{spec.name}.{spec.weights}").spec


def test_tagged_names_resolve_and_bad_tags_list_the_good_ones(home: Path, zoo) -> None:
    from zoo import api

    spec = api.resolve_name("repvit_m0_9.dist_300e_in1k").spec
    assert (spec.ref, spec.weights) == ("timm:repvit_m0_9.dist_300e_in1k", "default")
    proc = zoo("pull", "timm:repvit_m0_9.nope", check=False)
    assert proc.returncode == 1
    assert "timm has no weights 'nope' for repvit_m0_9" in proc.stderr
    assert "dist_300e_in1k, dist_450e_in1k" in proc.stderr
    proc = zoo("pull", "timm:repvit_m0_9.dist_300e_in1k", "--weights", "dist_450e_in1k", check=False)
    assert "give one of them" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_list_available_uses_timm_wildcards(home: Path, zoo) -> None:
    rows = json.loads(zoo("list", "--available", "repvit*", "--json").stdout)
    names = {row["name"] for row in rows}
    assert {"repvit_m0_9", "repvit_m1_1", "timm:repvit_m0_9", "timm:repvit_m0_9.dist_450e_in1k"} <= names
    assert all("repvit" in name for name in names)


def test_offline_pretrained_weights_fail_in_one_line(home: Path, zoo_process, tmp_path: Path) -> None:
    """A real process: huggingface_hub reads HF_HOME once, when it is imported."""
    proc = zoo_process("pull", "repvit_m0_9", check=False, ZOO_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode == 4 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "timm/repvit_m0_9.dist_450e_in1k" in lines[0] and "--weights none" in lines[0]
    assert "offline" in lines[0]
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_weights_path_infers_the_head_and_loads_through_timm(home: Path, zoo, tmp_path: Path) -> None:
    import timm
    import torch

    torch.manual_seed(1)
    model = timm.create_model("test_resnet", num_classes=7).eval()
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 9}, path)
    pulled = json.loads(zoo("pull", "timm:test_resnet", "--weights", str(path), "--exporter", "torchscript",
                            "--json").stdout)
    meta = metadata(pulled)
    assert meta["outputs"][0]["shape"] == ["batch", 7]
    assert meta["labels"] is None  # no ImageNet labels for a 7-class head
    assert meta["weights"]["file"] == str(path.resolve())
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(pulled["path"], providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        want = model(x).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_pretrained_weights_come_from_the_hub_cache_offline(home: Path, zoo_process, tmp_path: Path) -> None:
    """timm's default weights, read from a Hugging Face Hub cache laid out as huggingface_hub does
    (a real process: huggingface_hub reads HF_HOME once, when it is imported)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(2)
    model = timm.create_model("test_resnet").eval()
    snapshot = tmp_path / "hf" / "hub" / "models--timm--test_resnet.r160_in1k"
    commit = "0" * 40
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(commit)
    (snapshot / "snapshots" / commit).mkdir(parents=True)
    weights = snapshot / "snapshots" / commit / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))

    env = {"ZOO_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    pulled = json.loads(zoo_process("pull", "timm:test_resnet", "--exporter", "torchscript", "--json", **env).stdout)
    meta = metadata(pulled)
    assert meta["weights"]["hub_id"] == "timm/test_resnet.r160_in1k"
    assert meta["weights"]["resolved"] == "test_resnet.r160_in1k"
    assert Path(meta["weights"]["file"]).name == "model.safetensors"
    assert len(meta["weights"]["sha256"]) == 64
    x = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(5))
    session = ort.InferenceSession(pulled["path"], providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        assert np.abs(got - model(x).numpy()).max() < 1e-4


def test_pretrained_weights_download_through_zoos_progress_line(home: Path, tmp_path: Path) -> None:
    """timm's default weights downloaded from a Hub (the local one in tests/hubserver.py): the bytes
    are reported through zoo's progress (a terminal's spinner line), never drawn as a tqdm bar of
    huggingface_hub's own. A real process: huggingface_hub reads HF_ENDPOINT when imported."""
    import timm
    import torch
    from helpers import REPO, hf_settings, zoo_env
    from hubserver import HubServer
    from safetensors.torch import save as safetensors_bytes

    torch.manual_seed(3)
    state = {k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}
    script = ("import sys, zoo\n"
              "say = lambda message: print(message, file=sys.stderr)\n"
              "pulled = zoo.pull('timm:test_resnet', exporter='torchscript', progress=say)\n"
              "print(pulled.entry.record.weights.hub_id)\n")
    with HubServer() as server:
        server.hub.commit("timm/test_resnet.r160_in1k", {"model.safetensors": safetensors_bytes(state)})
        proc = subprocess.run([sys.executable, "-c", script], env=zoo_env(home, **hf_settings(server, tmp_path)),
                              capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "timm/test_resnet.r160_in1k"
    assert re.search(r"^downloading timm/test_resnet\.r160_in1k/model\.safetensors: [\d.]+ MB of [\d.]+ MB$",
                     proc.stderr, re.M), proc.stderr
    assert "%|" not in proc.stderr, proc.stderr  # no tqdm bar
