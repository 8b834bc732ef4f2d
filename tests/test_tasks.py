"""Tasks beyond classification: the record's task, torchvision's detectors and segmenters, the
plugin surface for declaring a task, and ``zoo run`` per task (JSON, human lines, --save).

Real exports of the two smallest families only, once per session (conftest's ``task_store``, which
``zoo eval``'s tests share): SSDlite (from a checkpoint the test writes, so that its scores are
decisive: random initialisation ties every SSDlite score at 1/91) and LR-ASPP (``--weights none``
at a small size).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, invoke, write_image

SSD = "torchvision:ssdlite320_mobilenet_v3_large"
LRASPP = "lraspp_mobilenet_v3_large"


def info(store: dict, key: str) -> dict:
    return json.loads(invoke("info", key, "--json", env=store["env"]).stdout)


# -- the record ----------------------------------------------------------------------------------
def test_a_detector_record_says_its_task_outputs_thresholds_and_coco_categories(task_store: dict) -> None:
    record = info(task_store, task_store["ssd"]["key"])
    assert record["task"] == "detection" and record["schema"] == 3  # older zoo refuses it, not misreads it
    described = record["task_outputs"]
    assert (described["boxes"], described["labels"], described["scores"]) == ("boxes", "labels", "scores")
    assert described["box_format"] == "xyxy" and described["box_frame"] == "input"
    assert described["score_threshold"] == pytest.approx(0.001) and described["nms_iou"] == pytest.approx(0.55)
    assert described["max_detections"] == 300 and described["threshold"] == 0.5 and described["batch"] == 1
    categories = described["categories"]
    assert len(categories) == 91 and categories[1] == "person" and categories[12] == "N/A"
    assert record["exporter"] == "torchscript" and "TorchScript" in record["validation"]["exporter_reason"]
    assert record["inputs"][0]["shape"] == [1, 3, 320, 320]  # R-CNN-style exports take one image
    assert [o["shape"] for o in record["outputs"]] == [["detections", 4], ["detections"], ["detections"]]
    shown = invoke("info", task_store["ssd"]["key"], env=task_store["env"]).stdout
    assert "detection: boxes xyxy in input pixels, score threshold 0.001" in shown and "91 categories" in shown


def test_detector_parity_pairs_detections_not_tensors(task_store: dict) -> None:
    validation = info(task_store, task_store["ssd"]["key"])["validation"]
    found = validation["detections"]
    assert validation["parity"] == "detections" and validation["passed"] is True
    assert found["expected"] == 300 and found["matched"] >= 295  # a few may sit at the NMS or top-300 cut
    assert found["matched"] + found["excused"] == found["expected"]
    assert found["max_box_diff"] <= 0.1 and found["max_score_diff"] <= 1e-3


def test_a_segmenter_takes_any_batch_and_records_its_classes(task_store: dict) -> None:
    record = info(task_store, task_store["seg"]["key"])
    assert record["task"] == "semantic-segmentation"
    assert record["inputs"][0]["shape"] == ["batch", 3, "height", "width"]  # any batch, any size
    assert record["task_outputs"]["dynamic_size"] is True and record["preprocessing"]["crop"] == [128, 128]
    import onnxruntime as ort

    session = ort.InferenceSession(task_store["seg"]["path"], providers=["CPUExecutionProvider"])
    wide = np.random.default_rng(0).standard_normal((3, 3, 96, 160)).astype(np.float32)
    assert session.run(None, {"input": wide})[0].shape == (3, 21, 96, 160)
    assert record["task_outputs"]["logits"] == "logits" and record["task_outputs"]["categories"][15] == "person"
    validation = record["validation"]
    assert validation["passed"] is True and validation["max_abs_diff"] < 1e-3 and validation["pixels_agree"] >= 0.999


def test_records_without_a_task_read_as_classification() -> None:
    from zoo.record import Record, RecordError

    old = Record.from_json({"schema": 2, "name": "r", "ref": "torchvision:resnet18"})
    assert old.task is None and old.kind == "classification"
    assert "task" not in old.to_json()  # read and written back unchanged
    with pytest.raises(RecordError, match="task 'detection' needs task_outputs"):
        Record.from_json({"schema": 3, "name": "d", "ref": "x:d", "task": "detection"})
    with pytest.raises(RecordError, match="task: 'tracking' is not one of classification, detection"):
        Record.from_json({"schema": 3, "name": "d", "ref": "x:d", "task": "tracking"})
    with pytest.raises(RecordError, match="box_frame must be one of input, original"):
        Record.from_json({"schema": 3, "name": "d", "ref": "x:d", "task": "detection", "task_outputs": {
            "boxes": "b", "labels": "l", "scores": "s", "box_format": "xyxy", "box_frame": "network"}})


def test_list_available_says_each_rows_task(zoo) -> None:
    rows = json.loads(zoo("list", "--available", "torchvision:*mobilenet_v3_large*", "--json").stdout)
    tasks = {row["name"]: row["task"] for row in rows}
    assert tasks["torchvision:ssdlite320_mobilenet_v3_large"] == "detection"
    assert tasks["torchvision:lraspp_mobilenet_v3_large"] == "semantic-segmentation"
    assert tasks["torchvision:deeplabv3_mobilenet_v3_large"] == "semantic-segmentation"
    assert tasks["torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"] == "detection"
    assert tasks["torchvision:mobilenet_v3_large"] == "classification"
    listed = zoo("list", "--available", "torchvision:*rcnn*").stdout
    assert "maskrcnn_resnet50_fpn_v2" in listed and "instance-segmentation" in listed and "keypoints" in listed


def test_a_detector_refuses_a_batch_it_cannot_export(zoo) -> None:
    ran = zoo("pull", SSD, "--weights", "none", "--batch", "2", check=False)
    assert_one_line_error(ran, "exports at batch 1 only", "TorchScript", "drop --batch 2")


# -- zoo run ---------------------------------------------------------------------------------------
def test_run_gives_detections_in_the_original_images_pixels(task_store: dict, tmp_path: Path) -> None:
    import torch
    from zoo_torchvision import _fetch, _weights_enum, tasks

    from zoo import images as image_io
    from zoo.plugin import COCO_CATEGORIES, ModelSpec, Recipe

    wide = write_image(tmp_path / "wide.png", 400, 300)
    ran = invoke("run", task_store["ssd"]["key"], "--image", str(wide), "--threshold", "0.6", "--json",
                 env=task_store["env"])
    result = json.loads(ran.stdout)
    found = result["predictions"][0]
    assert result["task"] == "detection" and result["threshold"] == 0.6 and found
    assert all(set(d) == {"box", "label", "index", "score"} and d["score"] >= 0.6 for d in found)
    assert [d["score"] for d in found] == sorted((d["score"] for d in found), reverse=True)
    # The same image through PyTorch, boxes scaled from the 320x320 input to 400x300 by hand.
    built = tasks.build(ModelSpec("torchvision", "ssdlite320_mobilenet_v3_large", str(task_store["checkpoint"])),
                        Recipe(), _weights_enum, _fetch)
    tensor = torch.from_numpy(image_io.batch([wide], built.preprocessing))
    with torch.inference_mode():
        boxes, labels, scores = built.module(tensor)
    keep = scores >= 0.6
    want = boxes[keep].numpy() * np.array([400 / 320, 300 / 320, 400 / 320, 300 / 320])
    assert len(found) == int(keep.sum())
    got = np.array([d["box"] for d in found])
    assert np.abs(np.sort(got, axis=0) - np.sort(want, axis=0)).max() < 0.1
    assert {d["label"] for d in found} == {COCO_CATEGORIES[i] for i in labels[keep].tolist()}
    human = invoke("run", task_store["ssd"]["key"], "--image", str(wide), "--threshold", "0.6",
                   env=task_store["env"]).stdout.splitlines()
    assert human[1] == f"{wide}: {len(found)} detection(s) scoring at least 0.6"
    assert len(human) == 2 + len(found) and human[2].split()[0] == found[0]["label"].split()[0]


def test_run_save_draws_boxes_on_each_image_and_writes_pngs_only(task_store: dict, tmp_path: Path) -> None:
    from PIL import Image

    first = write_image(tmp_path / "first.jpg", 320, 240, seed=1)
    second = write_image(tmp_path / "second.png", 200, 260, seed=2)
    out = tmp_path / "drawn"
    result = json.loads(invoke("run", task_store["ssd"]["key"], "--image", str(first), "--image", str(second),
                               "--threshold", "0.6", "--save", str(out), "--json", env=task_store["env"]).stdout)
    assert result["input"]["runs"] == 2 and result["input"]["batch"] == 1  # one image at a time
    assert sorted(p.name for p in out.iterdir()) == ["first.png", "second.png"]
    drawn = np.asarray(Image.open(out / "second.png"))
    plain = np.asarray(Image.open(second).convert("RGB"))
    assert drawn.shape == plain.shape
    box = result["predictions"][1][0]["box"] if result["predictions"][1] else None
    if box is not None:  # the box's left edge is drawn in its class colour
        from zoo.drawing import colour

        x, y = int(round(box[0])) + 1, int((box[1] + box[3]) / 2)
        assert tuple(drawn[y, x]) == colour(result["predictions"][1][0]["index"])
    assert (drawn != plain).any()


def test_run_segmentation_gives_class_shares_and_an_overlay(task_store: dict, tmp_path: Path) -> None:
    image = write_image(tmp_path / "scene.png", 300, 200)
    out = tmp_path / "masks"
    result = json.loads(invoke("run", task_store["seg"]["key"], "--image", str(image), "--image", str(image),
                               "--save", str(out), "--json", env=task_store["env"]).stdout)
    shares = result["predictions"][0]
    assert result["task"] == "semantic-segmentation" and result["input"]["runs"] == 1  # one batch of two
    assert sum(row["share"] for row in shares) == pytest.approx(1.0, abs=1e-3)
    assert all(row["label"] for row in shares) and result["predictions"][0] == result["predictions"][1]
    assert sorted(p.name for p in out.iterdir()) == ["scene-2.png", "scene.png"]


def test_predictor_is_usable_from_python(task_store: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoo
    from zoo.tasks import Predictor

    monkeypatch.setenv("ZOO_HOME", str(task_store["root"]))
    image = write_image(tmp_path / "x.png", 640, 480)
    predictor = Predictor(zoo.info(task_store["ssd"]["key"]))
    [result] = predictor.predict([image], threshold=0.6)
    assert result.size == (640, 480) and result.detections
    assert all(0 <= d.box[0] <= d.box[2] <= 640 and 0 <= d.box[1] <= d.box[3] <= 480 for d in result.detections)


def test_threshold_and_save_are_refused_where_they_mean_nothing(copy_store: Path, zoo, tmp_path: Path) -> None:
    from helpers import TINY

    image = write_image(tmp_path / "x.png")
    assert_one_line_error(zoo("run", TINY[0], *TINY[1:], "--image", str(image), "--threshold", "0.5", check=False),
                          "--threshold is for detection models")
    assert_one_line_error(zoo("run", TINY[0], *TINY[1:], "--save", str(tmp_path / "d"), check=False),
                          "--save draws results on images")
    # A classifier with --save: its best classes written on the image.
    result = json.loads(zoo("run", TINY[0], *TINY[1:], "--image", str(image), "--save", str(tmp_path / "d"),
                            "--json").stdout)
    assert len(result["predictions"][0]) == 5 and (tmp_path / "d" / "x.png").is_file()


# -- the plugin surface ----------------------------------------------------------------------------
def toy_detector_source(declare_outputs: bool = True):  # -> zoo.plugin.Source
    """A third-party source of one tiny detector, declared as the plugin docs say."""
    from zoo.plugin import BuiltModel, ModelSpec, Preprocessing, Source, TaskOutputs

    class Toy(Source):
        name = "toydet"
        example = "boxer"

        def models(self, pattern=None):
            return ["boxer"]

        def resolve(self, name):
            return ModelSpec(self.name, name, "none") if name == "boxer" else None

        def task(self, name):
            return "detection"

        def build(self, spec, recipe):
            import torch

            class Boxer(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.conv = torch.nn.Conv2d(3, 6, 3, stride=4)

                def forward(self, images):
                    features = self.conv(images).flatten(2).mean(2)[0]  # 6 numbers for the one image
                    corner = torch.sigmoid(features[:2]) * 16
                    box = torch.cat([corner, corner + 8]).reshape(1, 4)
                    return box, torch.ones(1, dtype=torch.int64), torch.sigmoid(features[2:3])

            described = TaskOutputs(boxes="boxes", box_format="xyxy", box_frame="input", labels="labels",
                                    scores="scores", threshold=0.0, categories=["background", "thing"], batch=1)
            torch.manual_seed(0)
            return BuiltModel(module=Boxer().eval(), task="detection",
                              task_outputs=described if declare_outputs else None,
                              preprocessing=Preprocessing(input_size=(3, 32, 32), resize=32, crop=(32, 32),
                                                          crop_mode="squash"),
                              output_names=("boxes", "labels", "scores"), exporters=("torchscript",),
                              exporter_reason="a toy", fixed_batch=1)

    return Toy()


def test_a_plugin_declares_a_task_and_the_kit_checks_it(home: Path) -> None:
    from helpers import host_with

    from zoo.testing import SourceCheck, _Failed

    def kit(source):  # -> SourceCheck, past its resolve step
        check = SourceCheck("toydet", "boxer", host_with(source), light=False, weights="none", options=None,
                            recipe_flags={})
        check.source = check.host.source("toydet")
        check.resolve()
        return check

    check = kit(toy_detector_source())
    assert check.build().endswith("task detection")
    assert check.export().startswith("torchscript exporter")
    assert "detections paired" in check.parity()
    with pytest.raises(_Failed, match="a detection model needs BuiltModel.task_outputs"):
        kit(toy_detector_source(declare_outputs=False)).build()
