"""`--dtype int8`: calibration, the cache key, validation against float32, selection, bench/eval compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import TINY, home_env, invoke
from photos import cli, real_photos, synthetic

# The default exporter, as users pull: for the tests that quantize a model themselves.
MODEL = ("timm:test_resnet", "--weights", "none")


@pytest.fixture(scope="module")
def int8_store(tmp_path_factory: pytest.TempPathFactory, tiny_store: Path) -> dict[str, object]:
    """The shared tiny store (float32 test_resnet, helpers.TINY) plus its int8 twin calibrated on
    12 images (too few to judge: a warning), pulled in process."""
    base = tmp_path_factory.mktemp("int8")
    calibration = base / "calibration"
    synthetic(calibration, 12)
    root = base / "zoo-home"
    shutil.copytree(tiny_store, root, symlinks=True)  # entries are links to generations
    env = home_env(root)
    float32 = json.loads(invoke("pull", *TINY, "--json", env=env).stdout)
    assert float32["cached"] is True
    pulled = invoke("pull", *TINY, "--dtype", "int8", "--calibration", str(calibration), "--json", env=env)
    return {"root": root, "calibration": calibration, "float32": float32["key"],
            "int8": json.loads(pulled.stdout)["key"], "stderr": pulled.stderr}


@pytest.fixture
def store(home: Path, int8_store: dict[str, object]) -> dict[str, object]:
    shutil.copytree(int8_store["root"], home, symlinks=True, dirs_exist_ok=True)
    return int8_store


def record(home: Path, key: str) -> dict:
    return json.loads((home / "models" / key / "zoo.json").read_text())


def test_int8_without_calibration_is_refused_in_one_line(home: Path) -> None:
    out = cli("pull", *MODEL, "--dtype", "int8")
    assert out.code == 1
    assert len(out.stderr.strip().splitlines()) == 1
    assert "--dtype int8 needs calibration images: add --calibration DIR" in out.stderr
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_calibration_flags_belong_to_int8(home: Path, tmp_path: Path) -> None:
    synthetic(tmp_path / "cal", 1)
    out = cli("pull", *MODEL, "--calibration", tmp_path / "cal")
    assert out.code == 1 and "for --dtype int8 only" in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli("pull", *MODEL, "--dtype", "int8", "--calibration", empty)
    assert out.code == 1 and "no images found" in out.stderr


def test_the_calibration_set_is_in_the_key_by_content_not_path(tmp_path: Path) -> None:
    from zoo.recipe import Recipe, cache_key
    from zoo.spec import ModelSpec

    spec = ModelSpec("timm", "test_resnet", "none")
    one, two = tmp_path / "one", tmp_path / "two"
    synthetic(one, 3)
    shutil.copytree(one, two)

    def key(folder: Path, size: int | None = None) -> str:
        return cache_key(spec, Recipe(dtype="int8", calibration=str(folder), calibration_size=size))

    assert key(one) == key(two)  # same files, another place
    assert key(one, 2) != key(one)  # another subset
    synthetic(two, 1, seed=9)
    assert key(one) != key(two)  # another image
    assert key(one) != cache_key(spec, Recipe(dtype="int8"))
    # Recipes without int8 settings keep the keys they had before int8 existed.
    assert "calibration" not in Recipe().to_dict() and "calibration_size" not in Recipe().to_dict()


def test_the_int8_entry_is_quantized_and_checked_against_float32(home: Path, store: dict[str, object]) -> None:
    import onnx

    from zoo.imageset import calibration_set

    metadata = record(home, store["int8"])
    assert metadata["recipe"]["dtype"] == "int8"
    check = metadata["validation"]["int8"]
    # Every third image is held out of calibration and checked on: 8 calibrate, 4 judge.
    assert check["passed"] is True and check["images"] == 4 and check["format"] == "QDQ"
    assert check["calibration"]["calibrated_on"] == 8 and check["calibration"]["held_out"] == 4
    assert 0.0 <= check["top1_agreement"] <= 1.0 and check["max_abs_diff"] >= 0.0
    assert 0.0 <= check["top5_containment"] <= 1.0 and 0.0 <= check["mean_tv_distance"] <= 1.0
    assert check["judged"] == [] and "labelled" not in check  # a flat folder: no labels
    assert check["threshold"]["min_confident_agreement"] == 0.9 and check["threshold"]["confidence"] == 0.2
    assert check["calibration"]["fingerprint"] == calibration_set(store["calibration"]).fingerprint
    assert check["calibration"]["images"] == 12 and check["calibration"]["failed"] == []
    assert "too few to judge" in check["warning"]
    assert "zoo: warning: int8 checked on 4 held-out images" in store["stderr"]
    from zoo.cpu import detect

    cpu = detect()
    assert check["cpu"]["kind"] == cpu.kind and check["cpu"]["flags"] == list(cpu.flags)
    assert check["reduce_range"] is (cpu.kind not in ("amx", "vnni"))
    assert check["onnxruntime"] == __import__("onnxruntime").__version__

    model = onnx.load(str(home / "models" / store["int8"] / "model.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # same input as float32


def test_dtype_int8_alone_finds_the_only_int8_entry(store: dict[str, object], tmp_path: Path) -> None:
    info = cli("info", *TINY, "--dtype", "int8", "--json")
    assert info.code == 0, info.stderr
    assert info.json()["key"] == store["int8"]
    image = synthetic(tmp_path, 1)[0]
    run = cli("run", *TINY, "--dtype", "int8", "--image", image, "--json")
    assert run.code == 0, run.stderr
    assert run.json()["key"] == store["int8"] and len(run.json()["predictions"][0]) == 5
    removed = cli("rm", *TINY, "--dtype", "int8", "--json")
    assert removed.json()["removed"][0]["key"] == store["int8"]
    assert [e["key"] for e in cli("list", "--json").json()] == [store["float32"]]
    missing = cli("info", *TINY, "--dtype", "int8")
    assert missing.code == 1 and "--dtype int8 --calibration DIR" in missing.stderr


def test_two_int8_entries_are_told_apart_by_key_or_calibration(home: Path, store: dict[str, object],
                                                                 tmp_path: Path) -> None:
    from zoo.recipe import Recipe, cache_key
    from zoo.spec import ModelSpec

    # A second int8 entry, as another calibration set would make it (copied: no second export).
    other = tmp_path / "other-calibration"
    synthetic(other, 4, seed=3)
    key = cache_key(ModelSpec("timm", "test_resnet", "none"), Recipe(dtype="int8", calibration=str(other),
                                                                       exporter="torchscript"))
    shutil.copytree(home / "models" / store["int8"], home / "models" / key)
    metadata = record(home, key)
    metadata.update(key=key)
    metadata["recipe"]["calibration"] = str(other)
    (home / "models" / key / "zoo.json").write_text(json.dumps(metadata))

    both = cli("info", *TINY, "--dtype", "int8")
    assert both.code == 1 and "several int8 entries" in both.stderr
    assert store["int8"] in both.stderr and key in both.stderr
    exact = cli("info", *TINY, "--dtype", "int8", "--calibration", other, "--json")
    assert exact.json()["key"] == key


def test_bench_compare_times_int8_against_float32_in_one_run(store: dict[str, object]) -> None:
    out = cli("bench", *TINY, "--compare", str(store["int8"]), "--batch", "2", "--warmup", "1",
              "--iterations", "3", "--json")
    assert out.code == 0, out.stderr
    result = out.json()
    other = result["compare"]["other"]
    assert other["model"]["key"] == store["int8"] and other["model"]["dtype"] == "int8"
    assert other["batch"] == 2 and other["throughput"] > 0
    assert result["compare"]["speedup_throughput"] == pytest.approx(result["throughput"] / other["throughput"],
                                                                    rel=1e-2)
    human = cli("bench", *TINY, "--compare", str(store["int8"])[:8], "--iterations", "2", "--warmup", "0")
    assert "int8" in human.stdout and "the throughput" in human.stdout


def test_eval_compares_float32_with_its_int8_twin(store: dict[str, object], tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthetic(data / "0", 3)
    out = cli("eval", str(store["float32"])[:10], "--data", data, "--compare", str(store["int8"]), "--json")
    assert out.code == 0, out.stderr
    assert out.json()["model"]["key"] == store["float32"]  # a key prefix names the evaluated entry
    compare = out.json()["compare"]
    assert compare["model"]["dtype"] == "int8" and compare["images"] == 3
    assert 0.0 <= compare["top1_agreement"] <= 1.0 and compare["max_abs_diff"] > 0.0
    assert "new random weights" in compare["model"]["note"]  # weights none: two pulls, two initialisations


def test_a_loss_over_the_threshold_fails_the_pull_with_figures(home: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With 60 images, 20 are held out and the check judges; thresholds no model meets show the
    refusal and its figures."""
    import zoo.quantize
    from zoo import api
    from zoo.errors import ParityError

    synthetic(tmp_path / "cal", 60, size=(40, 32))
    monkeypatch.setattr(zoo.quantize, "MIN_TOP5_CONTAINMENT", 1.01)
    monkeypatch.setattr(zoo.quantize, "MAX_MEAN_TV_DISTANCE", -1.0)
    with pytest.raises(ParityError, match=r"int8 loses too much against float32 on 20 held-out calibration images: "
                                          r"float32's top-1 is in int8's top 5 on \d+\.\d% \(needs 101%\); the "
                                          r"probabilities differ by [0-9.]+ in mean total variation \(at most -1\); "
                                          r"keep float32"):
        api.pull("timm:test_resnet", weights="none", dtype="int8", calibration=str(tmp_path / "cal"))
    assert not (home / "models").exists() or not any((home / "models").iterdir())


@pytest.mark.photos
def test_int8_on_real_photos_passes_the_check(home: Path, tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    photos = real_photos(tmp_path / "photos", 60)
    assert len(photos) >= 50
    out = cli("pull", *MODEL, "--dtype", "int8", "--calibration", tmp_path / "photos", "--json")
    assert out.code == 0, out.stderr
    check = record(home, out.json()["key"])["validation"]["int8"]
    assert check["images"] == len(photos) // 3 and "warning" not in check
    assert check["passed"] is True and "top5_containment" in check["judged"]
