"""``zoo eval`` on a detector (COCO mAP) and a semantic segmenter (mean IoU): the real SSDlite and LR-ASPP
exports of conftest's ``task_store`` (random weights), scored against ground truth made from their own
predictions, so the expected score is known (1.0, or what a known change to it makes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, assert_one_line_error, invoke, write_image
from PIL import Image

from zoo.task_eval import agreement_map
from zoo.task_metrics import mean_iou


@pytest.fixture
def stored(task_store: dict, home: Path) -> dict:
    """This test's store, a copy of the shared task store (eval writes its score into the record), and
    the keys of its detector (``ssd``) and segmenter (``seg``)."""
    shutil.copytree(task_store["root"], home, symlinks=True, dirs_exist_ok=True)
    return {"ssd": task_store["ssd"]["key"], "seg": task_store["seg"]["key"]}


def _images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_image(folder / f"img{i}.jpg", w, h, seed=i) for i, (w, h) in enumerate(sizes)]


# -- detection ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def detected(task_store: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three images, the detector's own detections of them (``zoo.tasks.Predictor`` on the stored file,
    threshold 0) and a COCO file whose ground truth is those detections scored above a cut.

    The cut lies above every degenerate box (clipped to a line at the image's edge: as ground truth it
    could never be matched), so every false positive ranks below every object of its category and
    the scores below are exact. Detections of COCO's gap ids (``N/A``) have no category to score."""
    from zoo.tasks import Predictor

    root = tmp_path_factory.mktemp("coco")
    images = _images(root / "images", [(320, 240), (200, 300), (256, 256)])
    results = Predictor(task_store["ssd"]["path"]).predict([str(p) for p in images], threshold=0.0)
    named = [[d for d in r.detections if d.label not in (None, "N/A")] for r in results]
    degenerate = [d.score for found in named for d in found if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) < 1]
    cut = max(degenerate, default=0.0)
    coco: dict = {"images": [], "annotations": [], "categories": []}
    names: dict[int, str] = {}
    for number, (path, found) in enumerate(zip(images, named, strict=True), 1):
        width, height = Image.open(path).size
        coco["images"].append({"id": number, "file_name": path.name, "width": width, "height": height})
        for d in found:
            if d.score > cut:
                x1, y1, x2, y2 = d.box
                coco["annotations"].append({"image_id": number, "category_id": d.index,
                                            "bbox": [x1, y1, x2 - x1, y2 - y1]})
                names[d.index] = d.label
    coco["categories"] = [{"id": i, "name": n} for i, n in sorted(names.items())]
    # COCO scores at most 100 detections per image and category: more would be missed objects here
    counts: dict[tuple[int, int], int] = {}
    for a in coco["annotations"]:
        counts[a["image_id"], a["category_id"]] = counts.get((a["image_id"], a["category_id"]), 0) + 1
    assert len(coco["annotations"]) >= 20 and len(names) >= 3 and max(counts.values()) <= 100
    path = root / "instances.json"
    path.write_text(json.dumps(coco))
    return {"data": root / "images", "annotations": path, "coco": coco,
            "detections": sum(len(r.detections) for r in results)}


def test_detector_scores_one_against_its_own_detections(stored: dict, detected: dict) -> None:
    ran = invoke("eval", stored["ssd"], "--data", str(detected["data"]), "--annotations", str(detected["annotations"]),
                 "--json")
    result = json.loads(ran.stdout)
    assert result["task"] == "detection" and result["images"] == 3 and result["failed_images"] == []
    assert result["map"] == pytest.approx(1.0) and result["map_50"] == pytest.approx(1.0)
    assert result["map_75"] == pytest.approx(1.0)
    assert result["detections"] == detected["detections"]  # all of them scored, gap ids and all
    objects = {str(c["id"]): 0 for c in detected["coco"]["categories"]}
    for a in detected["coco"]["annotations"]:
        objects[str(a["category_id"])] += 1
    assert {k: v["instances"] for k, v in result["per_category"].items()} == objects
    assert all(v["ap"] == pytest.approx(1.0) for v in result["per_category"].values())
    assert result["dataset"]["annotations"] == str(detected["annotations"].resolve())

    # recorded in the entry, keyed by the data set's fingerprint (images and annotations)
    info = json.loads(invoke("info", stored["ssd"], "--json").stdout)
    recorded = info["evaluations"][result["dataset"]["fingerprint"]]
    assert recorded["map"] == result["map"] and recorded["task"] == "detection"
    assert f"map={result['map']}" in invoke("info", stored["ssd"]).stdout
    shown = invoke("eval", stored["ssd"], "--data", str(detected["data"]), "--annotations",
                   str(detected["annotations"]), "--per-class").stdout
    assert "mAP 100.00%  mAP50 100.00%  mAP75 100.00%  (3 images)" in shown and "person" in shown
    lines = shown.splitlines()  # per category: a table with its header, one row per category with objects
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["CATEGORY", "NAME"])
    assert any(line.split()[1:4] == ["person", "100.00%", "100.00%"] for line in lines[header + 1:])
    # one image of three (--limit): another data set, another record
    one = json.loads(invoke("eval", stored["ssd"], "--data", str(detected["data"]), "--annotations",
                            str(detected["annotations"]), "--limit", "1", "--json").stdout)
    assert one["images"] == 1 and one["map"] == pytest.approx(1.0)
    assert one["dataset"]["fingerprint"] != result["dataset"]["fingerprint"]


def test_an_unfindable_object_costs_a_known_share(stored: dict, detected: dict, tmp_path: Path) -> None:
    # One more object of category c, far from anything detected: c's n detections all still hit, so
    # precision is 1 up to recall n/(n+1) and c's AP is the share of COCO's 101 recall points at or
    # below it, at every IoU threshold; the other categories stay at 1.
    coco = json.loads(json.dumps(detected["coco"]))
    counts = {c["id"]: sum(a["category_id"] == c["id"] for a in coco["annotations"]) for c in coco["categories"]}
    # a category whose top recall n/(n+1) is not one of the recall points (no float tie at the edge)
    n, category = next((n, c) for c, n in counts.items() if (100 * n) % (n + 1))
    coco["annotations"].append({"image_id": 2, "category_id": category, "bbox": [5000.0, 5000.0, 50.0, 50.0]})
    path = tmp_path / "more.json"
    path.write_text(json.dumps(coco))
    result = json.loads(invoke("eval", stored["ssd"], "--data", str(detected["data"]), "--annotations", str(path),
                               "--json").stdout)
    expected = (100 * n // (n + 1) + 1) / 101
    row = result["per_category"][str(category)]
    assert row["instances"] == n + 1
    assert row["ap"] == pytest.approx(expected) and row["ap_50"] == pytest.approx(expected)
    others = [v["ap"] for k, v in result["per_category"].items() if k != str(category)]
    assert others and all(ap == pytest.approx(1.0) for ap in others)
    assert result["map"] == pytest.approx((len(others) + expected) / (len(others) + 1))


def test_compare_torch_finds_the_same_objects(stored: dict, detected: dict) -> None:
    result = json.loads(invoke("eval", stored["ssd"], "--data", str(detected["data"]), "--annotations",
                               str(detected["annotations"]), "--compare", "torch", "--json").stdout)
    compare = result["compare"]
    assert compare["against"] == "torch" and compare["model"]["kind"] == "torch" and compare["images"] == 3
    # The network the file was exported from, in PyTorch: the file's objects are its objects, so its
    # mAP against them is 1 (up to a box at the NMS or top-300 cut) ...
    assert compare["map"] == pytest.approx(1.0, abs=0.02)
    # ... and the file's confident detections (at or above the run threshold) are all among its own.
    agreement = compare["agreement"]
    assert agreement["threshold"] == 0.5 and agreement["objects"] > 0
    assert agreement["map"] == pytest.approx(1.0, abs=0.02)


def test_agreement_map() -> None:
    first = [{"image_id": 1, "category_id": 3, "bbox": [10.0, 10.0, 20.0, 20.0]},
             {"image_id": 2, "category_id": 3, "bbox": [0.0, 0.0, 50.0, 40.0]},
             {"image_id": 2, "category_id": 7, "bbox": [60.0, 0.0, 10.0, 10.0]}]
    same = [{**d, "score": 0.9} for d in first]
    assert agreement_map(first, same, [1, 2]) == {"map": 1.0, "map_50": 1.0, "objects": 3}
    # the second model misses the category-7 object: that category's AP is 0, the mean halves
    assert agreement_map(first, same[:2], [1, 2])["map"] == pytest.approx(0.5)
    assert agreement_map([], [], [1, 2]) == {"map": None, "map_50": None, "objects": 0}


def test_detection_eval_errors_are_one_line(stored: dict, detected: dict, tmp_path: Path) -> None:
    data, annotations = str(detected["data"]), str(detected["annotations"])
    assert_one_line_error(invoke("eval", stored["ssd"], "--data", data, check=False),
                          "detection model", "--annotations")
    assert_one_line_error(invoke("eval", stored["ssd"], "--data", data, "--annotations", str(tmp_path / "no.json"),
                                 check=False), "no such file")
    (tmp_path / "bad.json").write_text("{")
    assert_one_line_error(invoke("eval", stored["ssd"], "--data", data, "--annotations", str(tmp_path / "bad.json"),
                                 check=False), "not valid JSON")
    extra = tmp_path / "extra"
    shutil.copytree(detected["data"], extra)
    write_image(extra / "stranger.jpg")
    assert_one_line_error(invoke("eval", stored["ssd"], "--data", str(extra), "--annotations", annotations,
                                 check=False), "stranger.jpg not in --annotations")
    coco = json.loads(json.dumps(detected["coco"]))
    coco["categories"].append({"id": 999, "name": "unicorn"})
    (tmp_path / "unicorn.json").write_text(json.dumps(coco))
    assert_one_line_error(invoke("eval", stored["ssd"], "--data", data, "--annotations",
                                 str(tmp_path / "unicorn.json"), check=False), "no category 'unicorn'", "--labels-map")


def test_a_classifier_refuses_annotations(copy_store: Path, tmp_path: Path) -> None:
    (tmp_path / "instances.json").write_text("{}")
    (tmp_path / "images").mkdir()
    write_image(tmp_path / "images" / "a.jpg")
    assert_one_line_error(invoke("eval", *TINY, "--data", str(tmp_path / "images"), "--annotations",
                                 str(tmp_path / "instances.json"), check=False),
                          "--annotations is for detectors", "is a classifier")


def test_compare_key_and_an_unreadable_image(stored: dict, detected: dict, tmp_path: Path) -> None:
    # A broken file listed in the annotations is counted and left out of the score (its objects are not
    # misses); the entry compared with itself by key finds the same objects.
    data = tmp_path / "images"
    shutil.copytree(detected["data"], data)
    (data / "img1.jpg").write_bytes(b"not a jpeg")
    result = json.loads(invoke("eval", stored["ssd"], "--data", str(data), "--annotations",
                               str(detected["annotations"]), "--compare", stored["ssd"], "--json").stdout)
    assert [Path(f["path"]).name for f in result["failed_images"]] == ["img1.jpg"]
    assert result["images"] == 2 and result["dataset"]["images"] == 3
    assert result["map"] == pytest.approx(1.0)
    compare = result["compare"]
    assert compare["model"]["kind"] == "onnx" and compare["model"]["key"] == stored["ssd"]
    assert compare["map"] == result["map"] and compare["images"] == 2
    assert compare["agreement"]["map"] == pytest.approx(1.0) and compare["agreement"]["objects"] > 0


def test_labels_map_names_annotation_categories(stored: dict, detected: dict, tmp_path: Path) -> None:
    # The same ground truth under other category names, mapped back with --labels-map: the same score.
    coco = json.loads(json.dumps(detected["coco"]))
    mapping = {}
    for category in coco["categories"]:
        mapping[f"thing{category['id']}"] = category["name"]
        category["name"] = f"thing{category['id']}"
    (tmp_path / "renamed.json").write_text(json.dumps(coco))
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    result = json.loads(invoke("eval", stored["ssd"], "--data", str(detected["data"]), "--annotations",
                               str(tmp_path / "renamed.json"), "--labels-map", str(tmp_path / "map.json"),
                               "--json").stdout)
    assert result["map"] == pytest.approx(1.0)


# -- semantic segmentation -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segmented(task_store: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """DIR/images (three images) and DIR/masks: the segmenter's own class maps (``zoo.tasks.Predictor``
    on the stored file), saved as palette PNGs the way VOC ships its masks."""
    from zoo.tasks import Predictor

    root = tmp_path_factory.mktemp("seg")
    images = _images(root / "images", [(160, 120), (96, 128), (128, 128)])
    (root / "masks").mkdir()
    model = task_store["seg"]["path"]
    maps = [np.asarray(r.class_map) for r in Predictor(model).predict([str(p) for p in images])]
    for path, classes in zip(images, maps, strict=True):
        assert classes.shape == Image.open(path).size[::-1]
        _save_mask(classes, root / "masks" / f"{path.stem}.png")
    return {"data": root, "maps": maps, "images": images}


def _save_mask(classes: np.ndarray, path: Path) -> None:
    mask = Image.fromarray(classes.astype(np.uint8), mode="P")
    mask.putpalette([v for i in range(256) for v in (i * 37 % 256, i * 91 % 256, i * 53 % 256)])
    mask.save(path)


def test_segmenter_scores_one_against_its_own_masks(stored: dict, segmented: dict) -> None:
    result = json.loads(invoke("eval", stored["seg"], "--data", str(segmented["data"]), "--json").stdout)
    assert result["task"] == "semantic-segmentation" and result["images"] == 3
    assert result["miou"] == 1.0 and result["pixel_accuracy"] == 1.0
    present = sorted({int(c) for m in segmented["maps"] for c in np.unique(m)})
    assert sorted(int(c) for c in result["per_class"]) == present
    pixels = sum(m.size for m in segmented["maps"])
    assert sum(row["pixels"] for row in result["per_class"].values()) == pixels
    info = json.loads(invoke("info", stored["seg"], "--json").stdout)
    assert info["evaluations"][result["dataset"]["fingerprint"]]["miou"] == 1.0
    lines = invoke("eval", stored["seg"], "--data", str(segmented["data"]), "--per-class").stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["CLASS", "LABEL", "IOU", "PIXELS"])
    rows = [line.split() for line in lines[header + 1:header + 1 + len(present)]]
    assert [int(row[0]) for row in rows] == present and all("100.00%" in row for row in rows)


def test_changed_masks_score_what_their_confusion_matrix_says(stored: dict, segmented: dict, tmp_path: Path) -> None:
    # Relabel a block of the first mask as a class the model did not predict there, and void another:
    # the score is the mean IoU of those masks against the model's own maps (zoo.task_metrics, tested
    # on hand-worked cases), so the eval must pair each image with its mask at the image's size.
    data = tmp_path / "data"
    shutil.copytree(segmented["data"], data)
    masks = [m.copy() for m in segmented["maps"]]
    other = next(c for c in range(21) if c not in np.unique(masks[0][:40, :50]))
    masks[0][:40, :50] = other
    masks[0][60:, 100:] = 255
    _save_mask(masks[0], data / "masks" / "img0.png")
    expected = mean_iou(masks, segmented["maps"], classes=21)
    result = json.loads(invoke("eval", stored["seg"], "--data", str(data), "--json").stdout)
    assert expected["miou"] < 1.0
    assert result["miou"] == pytest.approx(expected["miou"])
    assert result["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert result["per_class"][str(other)]["pixels"] >= 40 * 50


def test_segmenter_compare_torch_agrees_pixel_for_pixel(stored: dict, segmented: dict) -> None:
    result = json.loads(invoke("eval", stored["seg"], "--data", str(segmented["data"]), "--compare", "torch",
                               "--json").stdout)
    compare = result["compare"]
    assert compare["model"]["kind"] == "torch" and compare["images"] == 3
    assert compare["agreement"]["pixels"] > 0.99 and compare["miou"] > 0.95
    same = json.loads(invoke("eval", stored["seg"], "--data", str(segmented["data"]), "--compare", stored["seg"],
                             "--json").stdout)["compare"]
    assert same["model"]["kind"] == "onnx" and same["agreement"]["pixels"] == 1.0 and same["miou"] == 1.0


def test_segmentation_eval_errors_are_one_line(stored: dict, segmented: dict, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(segmented["data"], data)
    assert_one_line_error(invoke("eval", stored["seg"], "--data", str(data), "--annotations", str(data / "x.json"),
                                 check=False), "no such file")
    (data / "x.json").write_text("{}")
    assert_one_line_error(invoke("eval", stored["seg"], "--data", str(data), "--annotations", str(data / "x.json"),
                                 check=False), "semantic-segmentation model", "--annotations is for detectors")
    assert_one_line_error(invoke("eval", stored["seg"], "--data", str(data / "images"), check=False),
                          "DIR/images/<image> with DIR/masks")
    wrong = segmented["maps"][1].copy()
    wrong[0, 0] = 77
    _save_mask(wrong, data / "masks" / "img1.png")
    assert_one_line_error(invoke("eval", stored["seg"], "--data", str(data), check=False),
                          "img1.jpg", "class index 77 in the mask, but the model has 21 classes")
    _save_mask(segmented["maps"][1][:-1], data / "masks" / "img1.png")
    assert_one_line_error(invoke("eval", stored["seg"], "--data", str(data), check=False),
                          "give masks the size of their images")
    (data / "masks" / "img1.png").unlink()
    assert_one_line_error(invoke("eval", stored["seg"], "--data", str(data), check=False),
                          "no mask under masks/ for img1")
