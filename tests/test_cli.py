"""The core CLI commands on real stores, and bad input that must leave the store unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import REPO, TINY, assert_one_line_error, entry_dirs, metadata_of, tree, zoo_env


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("resnet5", "did you mean: resnet50"),
        ("torchvision:resnet5", "did you mean: resnet50"),
        ("../etc", "invalid model name"),
        ("a/b", "invalid model name"),
        ("/etc/passwd", "invalid model name"),
        ("torchvision:../../x", "invalid model name"),
        ("torchvision:/abs/path", "invalid model name"),
        ("x" * 201, "longer than 200"),
        ("nosuchsource:thing", "unknown source 'nosuchsource'"),
    ],
)
def test_bad_names_fail_in_one_line_and_touch_nothing(copy_store: Path, zoo, name: str, fragment: str) -> None:
    before = tree(copy_store)
    proc = zoo("pull", name, "--weights", "none", check=False)
    assert_one_line_error(proc, fragment)
    assert proc.returncode == 1
    assert tree(copy_store) == before


def test_malformed_registry_names_file_and_key(copy_store: Path, zoo, tmp_path: Path) -> None:
    before = tree(copy_store)
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.mine]\nsource = "torchvision"\nname = 5\n')
    proc = zoo("pull", "mine", "--registry", str(bad), check=False)
    assert_one_line_error(proc, str(bad), "models.mine.name", "expected str")
    bad.write_text('[models.mine\nsource = "torchvision"\n')
    proc = zoo("pull", "resnet18", "--weights", "none", check=False, ZOO_REGISTRY=str(bad))
    assert_one_line_error(proc, str(bad), "invalid TOML")
    bad.write_text('[models.mine]\nsource = "torchvision"\nname = "resnet18"\ncolour = "red"\n')
    proc = zoo("pull", "mine", "--registry", str(bad), check=False)
    assert_one_line_error(proc, "models.mine.colour", "unknown key")
    assert tree(copy_store) == before


def test_registry_layers_user_then_env_then_flag(copy_store: Path, zoo, tmp_path: Path) -> None:
    config = copy_store / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "registry.toml").write_text(
        '[models.mine]\nsource = "timm"\nname = "test_resnet"\nweights = "none"\nexporter = "torchscript"\n'
    )
    out = json.loads(zoo("pull", "mine", "--json").stdout)
    assert out["ref"] == "timm:test_resnet" and out["cached"] is True  # same key as the stored TINY
    override = tmp_path / "team.toml"
    override.write_text('[models.mine]\nsource = "torchvision"\nname = "resnet34"\nweights = "none"\n')
    rows = json.loads(zoo("list", "--available", "mine", "--json", ZOO_REGISTRY=str(override)).stdout)
    assert rows == [{"name": "mine", "ref": "torchvision:resnet34", "kind": "alias", "description": "",
                     "task": "classification"}]


def test_pretrained_weights_offline_fail_in_one_line(copy_store: Path, zoo) -> None:
    before = tree(copy_store)
    proc = zoo("pull", "resnet50", check=False, ZOO_OFFLINE="1")
    assert_one_line_error(proc, "https://download.pytorch.org/models/resnet50", "--weights none", "--weights PATH")
    assert proc.returncode == 4
    assert tree(copy_store) == before


def test_weights_path_loads_a_local_state_dict(home: Path, zoo, tmp_path: Path) -> None:
    import torch
    import torchvision

    torch.manual_seed(3)
    model = torchvision.models.squeezenet1_1(weights=None).eval()  # torchvision's smallest classifier
    checkpoint = tmp_path / "finetuned.pth"
    torch.save(model.state_dict(), checkpoint)
    out = json.loads(zoo("pull", "squeezenet1_1", "--weights", str(checkpoint), "--exporter", "torchscript",
                         "--json").stdout)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    metadata = json.loads((Path(out["path"]).parent / "zoo.json").read_text())
    assert metadata["weights"]["tag"] == str(checkpoint)
    assert len(metadata["weights"]["sha256"]) == 64
    # A different file is a different entry: the stored one is not found for it.
    assert json.loads(zoo("info", "squeezenet1_1", "--weights", str(checkpoint), "--exporter", "torchscript",
                          "--json").stdout)["key"] == out["key"]
    torch.manual_seed(4)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), checkpoint)
    stale = zoo("info", "squeezenet1_1", "--weights", str(checkpoint), "--exporter", "torchscript", check=False)
    assert_one_line_error(stale, "not in the store")


def test_weights_path_with_wrong_architecture_is_a_clear_error(home: Path, zoo, tmp_path: Path) -> None:
    import torch

    checkpoint = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, checkpoint)
    proc = zoo("pull", "resnet18", "--weights", str(checkpoint), check=False)
    assert_one_line_error(proc, str(checkpoint), "does not fit the model", "missing")
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_list_info_rm_verify(copy_store: Path, zoo) -> None:
    listed = json.loads(zoo("list", "--json").stdout)
    assert [r["name"] for r in listed] == ["timm:test_resnet"]
    assert zoo("list").stdout.splitlines()[1].startswith("timm:test_resnet")
    info = json.loads(zoo("info", "timm:test_resnet", "--json").stdout)  # one entry under that name
    assert info["ref"] == "timm:test_resnet" and info["weights"]["tag"] == "none"
    assert "preprocessing" in zoo("info", "timm:test_resnet").stdout
    file_info = json.loads(zoo("info", info["path"], "--json").stdout)
    assert file_info["labels"] == info["labels"]
    assert json.loads(zoo("verify", "--json").stdout)["ok"] is True
    miss = zoo("info", "timm:test_resnet", "--weights", "r160_in1k", check=False)
    assert_one_line_error(miss, "not in the store", "zoo pull timm:test_resnet")
    removed = json.loads(zoo("rm", *TINY, "--json").stdout)
    assert removed["removed"][0]["key"] == info["key"]
    assert json.loads(zoo("list", "--json").stdout) == []
    assert not Path(info["path"]).exists()


def test_list_available_filters_with_wildcards(home: Path, zoo) -> None:
    rows = json.loads(zoo("list", "--available", "resnet*", "--json").stdout)
    names = [r["name"] for r in rows]
    assert "resnet18" in names and "torchvision:resnet152" in names
    assert all("resnet" in n for n in names)


def test_export_to_a_directory(home: Path, zoo, tmp_path: Path) -> None:
    out_dir = tmp_path / "onnx_output"
    not_a_store = tmp_path / "zoo-home-is-a-file"  # exporting a name never opens the store
    not_a_store.write_text("")
    out = json.loads(zoo("export", *TINY, "--static-batch", "-o", str(out_dir), "--json",
                         ZOO_HOME=str(not_a_store)).stdout)
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.onnx", "zoo.json"]
    metadata = json.loads((out_dir / "zoo.json").read_text())
    assert metadata["recipe"]["dynamic_batch"] is False
    assert metadata["inputs"][0]["shape"] == [1, 3, 160, 160]
    assert out["sha256"] == metadata["files"][0]["sha256"]
    assert not (home / "models").exists()  # export does not touch the store


def test_export_by_store_key(copy_store: Path, zoo, tmp_path: Path) -> None:
    (key,) = entry_dirs(copy_store)
    stored = json.loads((copy_store / "models" / key / "zoo.json").read_text())
    zoo("export", key[:7], "-o", str(tmp_path / "again"))  # that entry's source, weights and recipe, made again
    made = json.loads((tmp_path / "again" / "zoo.json").read_text())
    assert made["key"] == key and made["recipe"] == stored["recipe"] and made["ref"] == stored["ref"]


@pytest.mark.parametrize("command", [["pull", "--opset", "13"], ["run", "--size", "128"], ["rm", "--weights", "none"],
                                     ["export", "-o", "OUT", "--exporter", "dynamo"], ["info", "--batch", "4"]])
def test_a_key_with_recipe_flags_is_refused_not_ignored(copy_store: Path, zoo, tmp_path: Path,
                                                        command: list[str]) -> None:
    (key,) = entry_dirs(copy_store)
    before = tree(copy_store)
    args = [str(tmp_path / "out") if arg == "OUT" else arg for arg in command[1:]]
    proc = zoo(command[0], key[:8], *args, check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc, "is a store key", f"--{command[-2].lstrip('-')}", "give the key alone")
    assert tree(copy_store) == before and not (tmp_path / "out").exists()


def test_torchscript_exporter_and_size(home: Path, zoo) -> None:
    out = json.loads(zoo("pull", *TINY, "--size", "128", "--json").stdout)
    metadata = metadata_of(out)
    assert metadata["exporter"] == "torchscript"
    assert metadata["inputs"][0]["shape"] == ["batch", 3, 128, 128]
    assert metadata["preprocessing"]["crop"] == [128, 128]
    assert metadata["preprocessing"]["resize"] == 134  # test_resnet's crop_pct 0.95: 168 for 160


def test_plugins_lists_builtins(home: Path, zoo) -> None:
    plugins = json.loads(zoo("plugins", "--json").stdout)
    torchvision = next(p for p in plugins if p["name"] == "zoo_torchvision")
    assert torchvision["status"] == "loaded" and torchvision["sources"] == ["torchvision"]
    assert "zoo_register_sources" in torchvision["hooks"]


def test_usage_error_exits_2(home: Path, zoo) -> None:
    proc = zoo("pull", "--no-such-flag", check=False)
    assert proc.returncode == 2


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux `script` for a pseudo-terminal")
def test_progress_on_a_terminal_only(home: Path, cheap_source: None) -> None:
    """On a terminal the long steps are shown (on stderr); with --json nothing but the document."""
    # A tiny test model (the output is the point, not the export) whose build waits a second, so
    # that the building step outlasts a spinner frame on any machine.
    env = zoo_env(home, ZOO_TEST_BULK_BUILD_S="1")

    def on_tty(*args: str) -> subprocess.Popen[str]:
        command = " ".join([sys.executable, "-m", "zoo", *args])
        return subprocess.Popen(["script", "-qec", command, "/dev/null"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=REPO)

    def output(proc: subprocess.Popen[str]) -> str:
        stdout, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout
        return stdout

    # Side by side (two keys, so both are misses).
    cheap = ("bulk:ok1", "--exporter", "torchscript")
    shown, quiet = on_tty("pull", *cheap), on_tty("pull", *cheap, "--opset", "17", "--json")
    shown, quiet = output(shown), output(quiet)
    # Steps shorter than one spinner frame (~80 ms) may never be drawn; building takes a second.
    assert "building bulk:ok1" in shown
    assert "building" not in quiet
    assert json.loads(quiet)["cached"] is False
