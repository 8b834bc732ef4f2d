"""`zoo run`: predictions that agree with PyTorch, honest providers, checked inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import (
    NO_CUDA,
    REPO,
    TINY,
    assert_one_line_error,
    cuda_works,
    home_env,
    invoke,
    metadata_of,
    write_image,
    zoo_env,
)
from PIL import Image

from zoo import images
from zoo.spec import Preprocessing


@pytest.fixture(scope="module")
def checkpoint_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store holding timm's test_resnet exported from a checkpoint this test wrote (known weights)."""
    import timm
    import torch

    root = tmp_path_factory.mktemp("run") / "zoo-home"
    torch.manual_seed(1)
    model = timm.create_model("test_resnet")
    checkpoint = root.parent / "test_resnet-seed1.pth"
    torch.save(model.state_dict(), checkpoint)
    invoke("pull", "timm:test_resnet", "--weights", str(checkpoint), "--exporter", "torchscript",
           env=home_env(root))
    return root, checkpoint


def test_image_predictions_agree_with_pytorch(checkpoint_store: tuple[Path, Path], tmp_path: Path) -> None:
    import timm
    import torch
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    root, checkpoint = checkpoint_store
    first, second = write_image(tmp_path / "a.jpg"), write_image(tmp_path / "b.png", 250, 330, seed=1)
    out = json.loads(invoke("run", "timm:test_resnet", "--weights", str(checkpoint), "--exporter", "torchscript",
                            "--image", str(first), "--image", str(second), "--topk", "5", "--json",
                            env=home_env(root)).stdout)
    assert out["provider"] == "cpu" and out["session_providers"] == ["CPUExecutionProvider"]
    assert len(out["predictions"]) == 2

    # PyTorch on the tensor timm's own transforms make from the same files.
    model = timm.create_model("test_resnet")
    model.load_state_dict(torch.load(checkpoint))
    transform = create_transform(**resolve_data_config({}, model=model))
    labels = list(ImageNetInfo().label_descriptions())
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in (first, second)])
    with torch.inference_mode():
        probabilities = model.eval()(batch).softmax(dim=1)
    for rows, expected in zip(out["predictions"], probabilities, strict=True):
        scores, indices = expected.topk(5)
        assert [r["index"] for r in rows] == indices.tolist()
        assert [r["label"] for r in rows] == [labels[i] for i in indices.tolist()]
        np.testing.assert_allclose([r["score"] for r in rows], scores.numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("size", [(640, 480), (333, 517), (224, 224), (90, 200)])
def test_preprocessing_equals_torchvision_transforms(tmp_path: Path, size: tuple[int, int]) -> None:
    from torchvision.models import EfficientNet_B3_Weights, ResNet18_Weights
    from zoo_torchvision import _preprocessing

    image = Image.open(write_image(tmp_path / "x.png", *size)).convert("RGB")
    for weights in (ResNet18_Weights.DEFAULT, EfficientNet_B3_Weights.DEFAULT):  # bilinear 256/224, bicubic 320/300
        mine = images.preprocess(image, _preprocessing(weights))
        np.testing.assert_array_equal(mine, weights.transforms()(image).numpy())


@pytest.mark.parametrize(("name", "crop_mode"), [("repvit_m0_9", None), ("resnet18", "squash")])
def test_preprocessing_equals_timm_transforms(tmp_path: Path, name: str, crop_mode: str | None) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config
    from zoo_timm import preprocessing

    model = timm.create_model(name, pretrained=False)
    if crop_mode:
        model.pretrained_cfg = {**model.pretrained_cfg, "crop_mode": crop_mode}
    spec = preprocessing(model)
    assert spec.crop_mode == (crop_mode or "center")
    reference = create_transform(**resolve_data_config({}, model=model))
    for size in ((640, 480), (333, 517), (200, 90)):
        image = Image.open(write_image(tmp_path / "x.png", *size)).convert("RGB")
        np.testing.assert_array_equal(images.preprocess(image, spec), reference(image).numpy())


def test_preprocessing_pads_small_images_like_torchvision(tmp_path: Path) -> None:
    from torchvision import transforms

    image = Image.open(write_image(tmp_path / "x.png", 300, 180)).convert("RGB")
    spec = Preprocessing(input_size=(3, 224, 224), resize=200, crop=(224, 224), crop_mode="center",
                         interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    reference = transforms.Compose([
        transforms.Resize(200, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.25] * 3)])
    np.testing.assert_allclose(images.preprocess(image, spec), reference(image).numpy(), atol=1e-6)


def test_random_input_npz_output_and_input_file(copy_store: Path, zoo, tmp_path: Path) -> None:
    out = json.loads(zoo("run", *TINY, "--output", str(tmp_path / "r.npz"),
                         "--json").stdout)
    assert out["input"]["kind"] == "random" and out["input"]["shapes"] == {"input": [1, 3, 160, 160]}
    assert out["outputs"][0]["name"] == "logits" and out["outputs"][0]["shape"] == [1, 1000]
    assert len(out["predictions"]) == 1 and len(out["predictions"][0]) == 5
    saved = np.load(tmp_path / "r.npz")["logits"]
    assert saved.shape == (1, 1000)

    # The same tensor given back as a file gives the same outputs a bare ORT session gives.
    x = np.random.default_rng(0).standard_normal((3, 3, 160, 160)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", input=x)
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"input": x})
    for given in ("x.npy", "x.npz"):
        zoo("run", *TINY, "--input", str(tmp_path / given),
            "--output", str(tmp_path / "y.npz"), "--json")
        np.testing.assert_allclose(np.load(tmp_path / "y.npz")["logits"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("array", "shown"), [
    (np.zeros((1, 3, 100, 100), np.float32), "float32 [1, 3, 100, 100]"),
    (np.zeros((1, 3, 160, 160), np.float64), "float64 [1, 3, 160, 160]"),
    (np.zeros((3, 160, 160), np.float32), "float32 [3, 160, 160]"),
])
def test_wrong_input_is_one_line_naming_the_expected_input(copy_store: Path, zoo, tmp_path: Path,
                                                          array: np.ndarray, shown: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    proc = zoo("run", *TINY, "--input", str(tmp_path / "bad.npy"), check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc, shown, "expects 'input' float32 [batch, 3, 160, 160]")


def test_npz_with_wrong_names_and_unreadable_files(copy_store: Path, zoo, tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", a=np.zeros(1), b=np.zeros(1))
    proc = zoo("run", *TINY, "--input", str(tmp_path / "two.npz"), check=False)
    assert_one_line_error(proc, "got inputs ['a', 'b']", "'input' float32")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    proc = zoo("run", *TINY, "--input", str(tmp_path / "junk.npy"), check=False)
    assert_one_line_error(proc, "cannot read", "junk.npy")


def test_unreadable_and_missing_images(copy_store: Path, zoo, tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    proc = zoo("run", *TINY, "--image", str(tmp_path / "broken.jpg"), check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc, "cannot read image", "broken.jpg")
    proc = zoo("run", *TINY, "--image", str(tmp_path / "nope.jpg"), check=False)
    assert_one_line_error(proc, "image not found", "nope.jpg")


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_unavailable_provider_fails_clearly_without_fallback(copy_store: Path, zoo, provider: str) -> None:
    if provider == "cuda" and cuda_works():
        pytest.skip("CUDA really works here: nothing to refuse")
    proc = zoo("run", *TINY, "--provider", provider, "--json", check=False)
    assert proc.returncode == 4, proc.stderr
    name = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[provider]
    assert_one_line_error(proc, name, "onnxruntime", "--provider")


def test_auto_ends_on_cpu_and_says_why(copy_store: Path, zoo) -> None:
    if cuda_works():
        pytest.skip("CUDA really works here: auto picks it (see test_cuda_agrees_with_cpu)")
    out = json.loads(zoo("run", *TINY, "--provider", "auto", "--json").stdout)
    assert out["provider"] == "cpu" and out["requested_provider"] == "auto"
    assert out["session_providers"] == ["CPUExecutionProvider"]
    assert out["passed_over"][0]["provider"] == "cuda"
    assert "CUDAExecutionProvider" in out["passed_over"][0]["reason"]
    human = zoo("run", *TINY, "--provider", "auto").stdout
    assert human.startswith("provider: cpu (auto; passed over cuda:")


@pytest.mark.skipif(not cuda_works(), reason=NO_CUDA)
def test_cuda_agrees_with_cpu(copy_store: Path, zoo, tmp_path: Path) -> None:
    image = str(write_image(tmp_path / "a.jpg"))
    runs = {p: json.loads(zoo("run", *TINY, "--image", image, "--provider", p,
                              "--output", str(tmp_path / f"{p}.npz"), "--json").stdout) for p in ("cpu", "cuda")}
    assert runs["cuda"]["provider"] == "cuda" and runs["cuda"]["session_providers"][0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(np.load(tmp_path / "cuda.npz")["logits"], np.load(tmp_path / "cpu.npz")["logits"],
                               atol=1e-2, rtol=1e-2)
    assert runs["cuda"]["predictions"][0][0]["index"] == runs["cpu"]["predictions"][0][0]["index"]


def test_run_pulls_on_a_miss(home: Path, zoo) -> None:
    out = json.loads(zoo("run", *TINY, "--json").stdout)
    assert out["provider"] == "cpu" and out["outputs"][0]["shape"] == [1, 1000]
    stored = json.loads(zoo("list", "--json").stdout)
    assert [e["path"] for e in stored] == [out["path"]]


def test_bare_onnx_file_reads_its_own_metadata(copy_store: Path, zoo, tmp_path: Path) -> None:
    stored = json.loads(zoo("pull", *TINY, "--json").stdout)["path"]
    loose = tmp_path / "elsewhere" / "resnet.onnx"
    loose.parent.mkdir()
    shutil.copy(stored, loose)
    image = str(write_image(tmp_path / "a.jpg"))
    from_file = json.loads(zoo("run", str(loose), "--image", image, "--json").stdout)
    from_store = json.loads(zoo("run", *TINY, "--image", image, "--json").stdout)
    assert from_file["ref"] == "timm:test_resnet" and from_file["key"] is None
    assert from_file["predictions"] == from_store["predictions"]
    assert isinstance(from_file["predictions"][0][0]["label"], str)


def test_damaged_entry_is_refused(copy_store: Path, zoo) -> None:
    pulled = json.loads(zoo("pull", *TINY, "--json").stdout)
    path = Path(pulled["path"])
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # same size, different bytes: only the hash can tell
    path.write_bytes(bytes(data))
    proc = zoo("run", *TINY, check=False)
    assert proc.returncode == 3
    assert_one_line_error(proc, "sha256 mismatch", f"zoo pull --force {pulled['key']}")
    path.write_bytes(bytes(data[:-10]))
    proc = zoo("run", *TINY, check=False)
    assert_one_line_error(proc, "model.onnx: size")


def test_run_on_a_cache_hit_never_imports_torch(tiny_store: Path) -> None:
    """A real process: what a cache hit imports is only visible in a fresh interpreter."""
    code = ("import sys, zoo; out = zoo.run('timm:test_resnet', weights='none', exporter='torchscript', "
            "provider='auto'); assert out['outputs'][0]['shape'] == [1, 1000]; "
            "heavy = [m for m in ('torch', 'torchvision', 'timm') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], env=zoo_env(tiny_store), check=True, cwd=REPO)


def test_float16_recipe_keeps_float32_io_and_agrees(checkpoint_store: tuple[Path, Path], tmp_path: Path) -> None:
    import onnx

    root, checkpoint = checkpoint_store
    home = tmp_path / "zoo-home"
    shutil.copytree(root, home, symlinks=True)  # holds the float32 export of the same checkpoint
    env = home_env(home)
    ref = ("timm:test_resnet", "--weights", str(checkpoint))
    # The default exporter: torchscript leaves float32 weights, which zoo refuses to record as float16.
    pulled = json.loads(invoke("pull", *ref, "--dtype", "float16", "--json", env=env).stdout)
    metadata = metadata_of(pulled)
    assert metadata["recipe"]["dtype"] == "float16"
    assert metadata["inputs"][0]["dtype"] == "float32" and metadata["outputs"][0]["dtype"] == "float32"
    check = metadata["validation"]["float16"]
    assert check["passed"] and check["top1_agreement"] == 1.0 and check["max_abs_diff"] < 0.05
    model = onnx.load(pulled["path"])
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)

    image = str(write_image(tmp_path / "a.jpg"))
    flags = {"float16": ["--dtype", "float16"], "float32": ["--exporter", "torchscript"]}  # the stored float32 entry
    runs = {dtype: json.loads(invoke("run", *ref, *flags[dtype], "--image", image, "--output",
                                     str(tmp_path / f"{dtype}.npz"), "--json", env=env).stdout)
            for dtype in ("float16", "float32")}
    assert runs["float16"]["dtype"] == "float16" and runs["float32"]["dtype"] == "float32"
    assert runs["float16"]["path"] != runs["float32"]["path"]
    half, full = (np.load(tmp_path / f"{d}.npz")["logits"] for d in ("float16", "float32"))
    np.testing.assert_allclose(half, full, atol=0.05, rtol=0.05)
    assert half.argmax() == full.argmax()
