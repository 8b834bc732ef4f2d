"""`zoo eval`: accuracy on a labelled folder, class folder names, failures, the record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY as MODEL
from helpers import one_line_error
from photos import cli, real_photos, synthetic


@pytest.fixture
def store(copy_store: Path) -> Path:
    """A copy of the shared tiny store: timm's 470k-parameter test_resnet (1000 ImageNet classes,
    random weights), its only entry."""
    return copy_store


def entry_dir(home: Path) -> Path:
    (directory,) = (home / "models").iterdir()
    return directory


def ranked(home: Path, images: list[Path]) -> np.ndarray:
    """Classes of each image, best first, as the stored model ranks them (zoo.runtime directly)."""
    from zoo import images as image_io
    from zoo.record import Record
    from zoo.runtime import open_session

    directory = entry_dir(home)
    metadata = json.loads((directory / "zoo.json").read_text())
    session = open_session(directory / "model.onnx")
    logits = session.run({"input": image_io.batch(images, Record.from_json(metadata).preprocessing)})[0]
    return np.argsort(-logits, axis=1, kind="stable")


def test_top1_and_top5_count_the_models_own_ranking(store: Path, tmp_path: Path) -> None:
    images = synthetic(tmp_path / "pool", 6)
    ranks = ranked(store, images)
    data = tmp_path / "data"
    # Images 0-2 filed under their best class (top-1 hits), 3-4 under their third (top-5 only),
    # 5 under its tenth (a miss).
    for i, image in enumerate(images):
        label = ranks[i, 0] if i < 3 else ranks[i, 2] if i < 5 else ranks[i, 9]
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, data / str(label) / image.name)

    out = cli("eval", *MODEL, "--data", data, "--batch", "4", "--json")
    assert out.code == 0, out.stderr
    result = out.json()
    assert result["top1"] == pytest.approx(3 / 6)
    assert result["top5"] == pytest.approx(5 / 6)
    assert result["images"] == 6 and result["failed_images"] == []
    assert result["provider"] == "cpu" and result["seconds"] > 0 and result["compare"] is None
    assert result["dataset"]["root"] == str(data.resolve()) and result["dataset"]["images"] == 6
    assert len(result["dataset"]["fingerprint"]) == 20


def test_class_folders_by_index_wordnet_id_label_or_map(store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for folder, seed in (("0", 1), ("n01440764", 2), ("tench", 3), ("Tinca_tinca", 4), ("mystery", 5),
                         ("n02123045", 6)):
        synthetic(data / folder, 1, seed=seed)
    refused = cli("eval", *MODEL, "--data", data)
    one_line_error(refused, 1, "unknown class folders mystery", "--labels-map")

    labels_map = tmp_path / "map.txt"
    labels_map.write_text("# folder, class\nmystery 281\n")
    out = cli("eval", *MODEL, "--data", data, "--labels-map", labels_map, "--per-class", "--json")
    assert out.code == 0, out.stderr
    per_class = out.json()["per_class"]
    # index 0 = n01440764 = "tench, Tinca tinca"; 281 = n02123045 = "tabby, tabby cat"
    assert sorted(per_class) == ["0", "281"]
    assert per_class["0"]["images"] == 4 and per_class["0"]["folders"] == ["0", "Tinca_tinca", "n01440764", "tench"]
    assert per_class["281"]["images"] == 2 and per_class["281"]["label"] == "tabby, tabby cat"

    json_map = tmp_path / "map.json"
    json_map.write_text(json.dumps({"mystery": "tabby cat"}))
    assert cli("eval", *MODEL, "--data", data, "--labels-map", json_map, "--json").code == 0


def test_unreadable_images_are_counted_and_named_not_fatal(store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthetic(data / "7", 3)
    (data / "7" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = cli("eval", *MODEL, "--data", data, "--json")
    assert out.code == 0, out.stderr
    result = out.json()
    assert result["images"] == 3 and result["dataset"]["images"] == 4
    (failed,) = result["failed_images"]
    assert failed["path"].endswith("truncated.jpg") and "cannot read image" in failed["error"]


def test_limit_spreads_over_classes_and_names_another_data_set(store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthetic(data / "1", 4, seed=1)
    synthetic(data / "2", 4, seed=2)
    full = cli("eval", *MODEL, "--data", data, "--json").json()
    limited = cli("eval", *MODEL, "--data", data, "--limit", "2", "--per-class", "--json").json()
    assert limited["images"] == 2 and limited["dataset"]["limit"] == 2
    assert sorted(limited["per_class"]) == ["1", "2"]  # one image from each class, not two from the first
    assert limited["dataset"]["fingerprint"] != full["dataset"]["fingerprint"]


def test_a_stored_entry_records_the_result_and_keeps_its_files(store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthetic(data / "281", 2)
    directory = entry_dir(store)
    model_bytes = (directory / "model.onnx").read_bytes()
    result = cli("eval", *MODEL, "--data", data, "--json").json()

    record = json.loads((directory / "zoo.json").read_text())
    saved = record["evaluations"][result["dataset"]["fingerprint"]]
    assert saved["top1"] == result["top1"] and saved["images"] == 2 and saved["created"]
    assert (directory / "model.onnx").read_bytes() == model_bytes
    assert sorted(p.name for p in directory.iterdir()) == ["model.onnx", "zoo.json"]  # no temp file left
    assert cli("verify", "--json").json()["ok"] is True
    info = cli("info", *MODEL)
    assert "evaluation" in info.stdout and result["dataset"]["fingerprint"] in info.stdout

    from zoo.hub import model_card
    from zoo.record import Record

    card = model_card(Record.from_json(record), "someone/tiny")
    assert "## Accuracy (`zoo eval`)" in card and f"{result['top1']:.2%}" in card

    # A second data set adds a second evaluation; the first stays.
    synthetic(tmp_path / "other" / "3", 1)
    cli("eval", *MODEL, "--data", tmp_path / "other")
    assert len(json.loads((directory / "zoo.json").read_text())["evaluations"]) == 2


def test_a_bare_file_is_evaluated_without_any_record(store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthetic(data / "5", 2)
    loose = tmp_path / "loose.onnx"
    shutil.copy(entry_dir(store) / "model.onnx", loose)
    before = (entry_dir(store) / "zoo.json").read_text()
    out = cli("eval", loose, "--data", data, "--json")
    assert out.code == 0, out.stderr
    assert out.json()["model"]["key"] is None and out.json()["images"] == 2
    assert (entry_dir(store) / "zoo.json").read_text() == before


def test_compare_with_another_file_on_the_same_images(store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthetic(data / "5", 3)
    twin = tmp_path / "twin.onnx"
    shutil.copy(entry_dir(store) / "model.onnx", twin)
    out = cli("eval", *MODEL, "--data", data, "--compare", twin, "--json")
    assert out.code == 0, out.stderr
    compare = out.json()["compare"]
    assert compare["against"] == str(twin) and compare["images"] == 3
    assert compare["top1_agreement"] == 1.0 and compare["max_abs_diff"] == 0.0
    assert compare["top1"] == out.json()["top1"]


def test_bad_data_folders_are_one_line(store: Path, tmp_path: Path) -> None:
    missing = cli("eval", *MODEL, "--data", tmp_path / "nowhere")
    one_line_error(missing, 1, "no such directory")
    (tmp_path / "flat").mkdir()
    synthetic(tmp_path / "flat", 1)
    flat = cli("eval", *MODEL, "--data", tmp_path / "flat")
    one_line_error(flat, 1, "DIR/<class>/<image>")


def test_compare_torch_rebuilds_the_same_weights(home: Path, tmp_path: Path) -> None:
    """A checkpoint the test writes: the rebuilt PyTorch model has exactly the exported weights."""
    import timm
    import torch

    checkpoint = tmp_path / "tiny.pth"
    torch.save(timm.create_model("test_resnet", num_classes=4).state_dict(), checkpoint)
    exported = cli("export", "--checkpoint", checkpoint, "--arch", "timm:test_resnet", "-o", tmp_path / "out")
    assert exported.code == 0, exported.stderr
    data = tmp_path / "data"
    for index in range(4):
        synthetic(data / str(index), 2, seed=index)
    out = cli("eval", tmp_path / "out" / "model.onnx", "--data", data, "--compare", "torch", "--json")
    assert out.code == 0, out.stderr
    result = out.json()
    assert result["compare"]["top1_agreement"] == 1.0
    assert result["compare"]["max_abs_diff"] < 1e-3
    assert result["compare"]["top1"] == result["top1"] and result["compare"]["images"] == 8


@pytest.mark.photos
def test_real_photos_through_the_cli_with_a_progress_free_json(store: Path, tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    photos = real_photos(tmp_path / "pool", 12)
    data = tmp_path / "data"
    ranks = ranked(store, photos)
    for photo, rank in zip(photos, ranks, strict=True):
        (data / str(rank[0])).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, data / str(rank[0]) / photo.name)
    out = cli("eval", *MODEL, "--data", data, "--json")
    assert out.code == 0 and out.json()["top1"] == 1.0 and out.json()["images"] == len(photos)
