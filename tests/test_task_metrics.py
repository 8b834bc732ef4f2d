"""COCO box mAP and mean IoU (zoo.task_metrics) on hand-written data whose scores are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.errors import UserError
from zoo.task_metrics import (
    ConfusionMatrix,
    coco_box,
    detection_map,
    mask_pairs,
    mean_iou,
    read_coco,
    read_mask,
)

# Three images, two categories with boxes and one (bird) without; no area, iscrowd or id: read_coco fills them.
COCO = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
               {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100},
               {"id": 3, "file_name": "c.jpg", "width": 100, "height": 100}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "bird"}],
    "annotations": [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                    {"image_id": 2, "category_id": 1, "bbox": [30, 30, 20, 20]},
                    {"image_id": 3, "category_id": 2, "bbox": [0, 0, 10, 10]}],
}


@pytest.fixture
def truth(tmp_path: Path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(COCO))
    return read_coco(path)


def found(image_id: int, category_id: int, bbox: list[float], score: float = 0.9) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


PERFECT = [found(a["image_id"], a["category_id"], a["bbox"]) for a in COCO["annotations"]]


def test_perfect_detections_score_one(truth) -> None:
    result = detection_map(truth, PERFECT)
    assert (result["map"], result["map_50"], result["map_75"]) == (1.0, 1.0, 1.0)
    assert result["per_category"]["1"] == {"name": "cat", "ap": 1.0, "ap_50": 1.0, "ap_75": 1.0, "instances": 2}
    # no bird in the ground truth: its AP is undefined and does not enter the mean
    assert result["per_category"]["5"] == {"name": "bird", "ap": None, "ap_50": None, "ap_75": None, "instances": 0}
    assert result["images"] == 3 and result["detections"] == 3


def test_shifted_box_scores_its_iou_thresholds(truth) -> None:
    # The dog box moved 2 px right: IoU = 8*10 / (2*100 - 8*10) = 2/3, a hit at IoU .50, .55, .60, .65
    # and a miss at .70-.95, so the dog's AP is 4/10, 1 at .50, 0 at .75; the cats stay perfect.
    shifted = PERFECT[:2] + [found(3, 2, [2, 0, 10, 10])]
    result = detection_map(truth, shifted)
    dog = result["per_category"]["2"]
    assert dog["ap"] == pytest.approx(0.4) and dog["ap_50"] == 1.0 and dog["ap_75"] == 0.0
    assert result["map"] == pytest.approx((1.0 + 0.4) / 2)
    assert result["map_50"] == 1.0 and result["map_75"] == pytest.approx(0.5)


def test_a_false_positive_between_two_hits_costs_the_interpolated_precision(truth) -> None:
    # cat, by score: hit (P 1, R 1/2), a false positive (P 1/2), hit (P 2/3, R 1). Interpolated precision
    # is 1 at the 51 recall points 0-.50 and 2/3 at the 50 points .51-1: AP = (51 + 50 * 2/3) / 101.
    detections = [found(1, 1, [10, 10, 20, 20], 0.9), found(1, 1, [70, 70, 10, 10], 0.8),
                  found(2, 1, [30, 30, 20, 20], 0.7), found(3, 2, [0, 0, 10, 10])]
    cat = detection_map(truth, detections)["per_category"]["1"]
    assert cat["ap"] == pytest.approx((51 + 50 * 2 / 3) / 101) == cat["ap_50"] == cat["ap_75"]


def test_no_detections_score_zero(truth) -> None:
    result = detection_map(truth, [])
    assert (result["map"], result["map_50"], result["map_75"]) == (0.0, 0.0, 0.0)
    assert result["per_category"]["1"]["ap"] == 0.0 and result["detections"] == 0


def test_a_subset_of_images_and_foreign_detections(truth) -> None:
    # Only image 3: no cat there (AP undefined), the dog is found; a detection of a category the file
    # does not list, and one on another image, are not scored.
    detections = PERFECT + [found(3, 99, [0, 0, 5, 5], 0.99)]
    result = detection_map(truth, detections, image_ids=[3])
    assert result["map"] == 1.0 and result["images"] == 1 and result["detections"] == 1
    assert result["per_category"]["1"]["ap"] is None and result["per_category"]["2"]["instances"] == 1


def test_crowd_boxes_are_neither_missed_nor_false_positives(tmp_path: Path) -> None:
    data = json.loads(json.dumps(COCO))
    data["annotations"].append({"image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "iscrowd": 1})
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(data))
    truth = read_coco(path)
    assert detection_map(truth, PERFECT)["map"] == 1.0  # the crowd region unfound: no miss
    on_crowd = PERFECT + [found(1, 1, [62, 62, 25, 25], 0.95)]
    result = detection_map(truth, on_crowd)
    assert result["map"] == 1.0 and result["per_category"]["1"]["instances"] == 2


def test_read_coco_fills_defaults_and_finds_images(truth) -> None:
    annotation = truth.data["annotations"][0]
    assert annotation["area"] == 400.0 and annotation["iscrowd"] == 0 and annotation["id"] == 1
    assert truth.categories == {1: "cat", 2: "dog", 5: "bird"}
    assert truth.image_id("a.jpg") == 1 and truth.image_id("sub/b.jpg") == 2 and truth.image_id("z.jpg") is None


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ("[]", "not a COCO instances file"),
    ({**COCO, "annotations": [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "image_id 9"),
    ({**COCO, "annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}]}, "category_id 7"),
    ({**COCO, "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}]}, "needs .bbox."),
    ({**COCO, "images": COCO["images"] * 2}, "appears twice"),
    ({**COCO, "categories": []}, "no categories"),
])
def test_read_coco_refuses_bad_files_in_one_line(tmp_path: Path, content, message) -> None:
    path = tmp_path / "instances.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(UserError, match=message) as caught:
        read_coco(path)
    assert "\n" not in str(caught.value)


def test_coco_box() -> None:
    assert coco_box([10, 20, 40, 60]) == [10.0, 20.0, 30.0, 40.0]


# -- mean IoU -------------------------------------------------------------------------------------
def halves() -> tuple[np.ndarray, np.ndarray]:
    """Truth: left half class 0, right half class 1. Prediction: three columns 0, the last one 1."""
    truth = np.zeros((4, 4), dtype=np.int64)
    truth[:, 2:] = 1
    predicted = np.zeros((4, 4), dtype=np.int64)
    predicted[:, 3] = 1
    return truth, predicted


def test_mean_iou_by_hand() -> None:
    truth, predicted = halves()
    # class 0: 8 hits, 4 false positives -> 8/12; class 1: 4 hits, 4 misses -> 4/8; class 2 absent: left out
    result = mean_iou([truth], [predicted], classes=3, labels=["sky", "sea", "sand"])
    assert result["per_class"]["0"] == {"label": "sky", "iou": pytest.approx(8 / 12), "pixels": 8, "predicted": 12}
    assert result["per_class"]["1"]["iou"] == pytest.approx(0.5) and "2" not in result["per_class"]
    assert result["miou"] == pytest.approx((8 / 12 + 0.5) / 2)
    assert result["pixel_accuracy"] == pytest.approx(12 / 16) and result["pixels"] == 16


def test_mean_iou_ignores_void_and_adds_up_images() -> None:
    truth, predicted = halves()
    truth[:, 2] = 255  # the disputed column is void: everything left is right
    assert mean_iou([truth], [predicted], classes=2)["miou"] == 1.0
    matrix = ConfusionMatrix(2)
    matrix.add(*halves())
    matrix.add(truth, predicted)  # counts add up: class 0 8+8 hits, 4 false positives
    assert matrix.result()["per_class"]["0"]["iou"] == pytest.approx(16 / 20)
    # a class predicted but absent from the truth counts with IoU 0
    assert mean_iou([np.zeros((2, 2))], [np.array([[0, 0], [0, 1]])], classes=2)["miou"] == pytest.approx(
        (3 / 4 + 0) / 2)


def test_mean_iou_refuses_masks_that_do_not_fit() -> None:
    truth, predicted = halves()
    truth[0, 0] = 7
    with pytest.raises(UserError, match="class index 7 in the mask, but the model has 3 classes"):
        mean_iou([truth], [predicted], classes=3)
    with pytest.raises(UserError, match="the mask is 4x4 but the prediction 4x2"):
        mean_iou([halves()[0]], [predicted[:2]], classes=3)


def test_read_mask_takes_palette_indices_not_colours(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192])
    image.save(tmp_path / "voc.png")
    Image.fromarray(indices).save(tmp_path / "grey.png")
    for name in ("voc.png", "grey.png"):
        assert read_mask(tmp_path / name).tolist() == indices.tolist()
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(UserError, match="a RGB image; save class indices"):
        read_mask(tmp_path / "rgb.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read mask"):
        read_mask(tmp_path / "junk.png")


def test_mask_pairs(tmp_path: Path) -> None:
    (tmp_path / "images" / "sub").mkdir(parents=True)
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png"):
        Image.new("RGB", (2, 2)).save(tmp_path / "images" / name)
        Image.new("L", (2, 2)).save((tmp_path / "masks" / name).with_suffix(".png"))
    pairs = mask_pairs(tmp_path)
    assert [(i.relative_to(tmp_path).as_posix(), m.relative_to(tmp_path).as_posix()) for i, m in pairs] == [
        ("images/a.jpg", "masks/a.png"), ("images/sub/b.png", "masks/sub/b.png")]
    Image.new("RGB", (2, 2)).save(tmp_path / "images" / "c.jpg")
    with pytest.raises(UserError, match="no mask under masks/ for c.jpg"):
        mask_pairs(tmp_path)
    with pytest.raises(UserError, match="DIR/images/<image> with DIR/masks"):
        mask_pairs(tmp_path / "images")
