"""``zoo.drawing`` on a synthetic image: boxes, masks, keypoints and class maps checked pixel by pixel."""

from __future__ import annotations

import numpy as np
from PIL import Image

from zoo.drawing import LINE, MASK_ALPHA, colour, draw, overlay
from zoo.tasks import Detection, ImageResult


def grey(width: int = 120, height: int = 80) -> Image.Image:
    return Image.new("RGB", (width, height), (100, 100, 100))


def test_a_box_is_drawn_in_its_class_colour_and_nothing_else_changes_far_from_it() -> None:
    result = ImageResult(size=(120, 80), task="detection",
                         detections=[Detection(box=(20.0, 30.0, 70.0, 60.0), index=3, label="car", score=0.9)])
    pixels = np.asarray(draw(grey(), result))
    tint = colour(3)
    assert tuple(pixels[45, 20]) == tint and tuple(pixels[45, 20 + LINE - 1]) == tint  # left edge, LINE wide
    assert tuple(pixels[60, 45]) == tint and tuple(pixels[45, 70]) == tint  # bottom and right edges
    assert tuple(pixels[45, 45]) == (100, 100, 100)  # inside the box: untouched
    assert tuple(pixels[75, 110]) == (100, 100, 100)  # far away: untouched
    assert (pixels[18:30, 20:60] == tint).all(axis=2).any()  # the label tag sits above the box


def test_an_instance_mask_is_blended_over_its_pixels_only() -> None:
    mask = np.zeros((80, 120), dtype=bool)
    mask[10:20, 90:110] = True
    result = ImageResult(size=(120, 80), task="instance-segmentation",
                         detections=[Detection(box=(88.0, 8.0, 112.0, 22.0), index=1, label="person", score=0.8,
                                               mask=mask)])
    pixels = np.asarray(draw(grey(), result)).astype(int)
    want = np.round((1 - MASK_ALPHA) * 100 + MASK_ALPHA * np.array(colour(1))).astype(int)
    assert (pixels[15, 100] == want).all()
    assert (pixels[50, 50] == 100).all()


def test_keypoints_are_dots_joined_by_the_skeleton() -> None:
    points = [(20.0, 40.0, 1.0), (100.0, 40.0, 1.0)]
    result = ImageResult(size=(120, 80), task="keypoints", detections=[
        Detection(box=(10.0, 30.0, 110.0, 50.0), index=1, label="person", score=0.9, keypoints=points)])
    pixels = np.asarray(draw(grey(), result, skeleton=[(0, 1)]))
    assert tuple(pixels[40, 20]) == (255, 255, 255) and tuple(pixels[40, 100]) == (255, 255, 255)  # the dots
    assert tuple(pixels[40, 60]) == colour(1)  # the bone between them


def test_a_class_map_overlay_leaves_the_background_clear() -> None:
    classes = np.zeros((80, 120), dtype=np.uint8)
    classes[:, 60:] = 7
    pixels = np.asarray(overlay(grey(), classes)).astype(int)
    assert (pixels[:, :60] == 100).all()
    want = np.round((1 - MASK_ALPHA) * 100 + MASK_ALPHA * np.array(colour(7))).astype(int)
    assert (pixels[:, 60:] == want).all()
    shares = ImageResult(size=(120, 80), task="semantic-segmentation", class_map=classes,
                         categories=[f"c{i}" for i in range(8)]).shares()
    assert shares == [{"index": 0, "label": "c0", "share": 0.5}, {"index": 7, "label": "c7", "share": 0.5}]


def test_boxes_in_the_input_frame_are_scaled_to_the_image() -> None:
    from zoo.tasks import TaskOutputs, decode

    described = TaskOutputs(boxes="b", box_format="xyxy", box_frame="input", labels="l", scores="s",
                            threshold=0.5, categories=["bg", "cat"])
    values = [np.array([[32.0, 16.0, 64.0, 48.0], [0, 0, 5, 5]], dtype=np.float32), np.array([1, 1]),
              np.array([0.9, 0.2], dtype=np.float32)]
    result = decode("detection", described, ["b", "l", "s"], values, 0, (64, 64), (640, 320), None)
    assert [d.to_json() for d in result.detections] == [
        {"box": [320.0, 80.0, 640.0, 240.0], "label": "cat", "index": 1, "score": 0.9}]
