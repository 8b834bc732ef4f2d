"""The int8 gate (what a user loses, on held-out images), the CPU kinds and the scheme each gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY
from photos import synthetic

AMX = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8\n"
VNNI = "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
AVX_VNNI = "flags\t\t: fpu avx2 avx_vnni\n"
AVX2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse avx avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"


# -- the CPU ---------------------------------------------------------------------------------------
def test_cpu_kinds_come_from_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.cpu import detect

    monkeypatch.delenv("ZOO_CPU_KIND", raising=False)
    assert detect(AMX).kind == "amx" and detect(AMX).flags == ("avx2", "avx512f", "avx512_vnni", "amx_tile",
                                                                "amx_int8")
    assert detect(AMX).name == "Intel(R) Xeon(R) Platinum 8480+"
    assert detect(VNNI).kind == "vnni" and detect(AVX_VNNI).kind == "vnni"
    assert detect(AVX2).kind == "avx2" and not detect(AVX2).fast_int8
    assert detect(ARM).kind == "other" and detect("").kind == "other"
    assert detect(VNNI).fast_int8 and detect(AMX).fast_int8


def test_the_kind_can_be_overridden_and_a_bad_one_is_one_line(zoo, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.cpu import detect
    from zoo.errors import UserError

    assert detect(VNNI, override="avx2").kind == "avx2"
    assert detect(VNNI, override="avx2").describe() == {"kind": "avx2", "name": "AMD EPYC",
                                                        "flags": ["avx2", "avx512f", "avx512_vnni"],
                                                        "detected": "vnni"}
    monkeypatch.setenv("ZOO_CPU_KIND", "other")
    assert detect(AMX).kind == "other" and detect(AMX).detected == "amx"
    with pytest.raises(UserError, match="ZOO_CPU_KIND='sse' is not a CPU kind: use one of amx, vnni, avx2, other"):
        detect(AMX, override="sse")
    synthetic(tmp_path / "cal", 1)
    out = zoo("pull", *TINY, "--dtype", "int8", "--calibration", str(tmp_path / "cal"), check=False,
              ZOO_CPU_KIND="sse")
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "zoo: error: ZOO_CPU_KIND='sse' is not a CPU kind: use one of amx, vnni, avx2, other"]


def test_which_kinds_cover_which() -> None:
    from zoo.cpu import covers

    assert covers("vnni", "amx") and covers("amx", "vnni") and covers("avx2", "avx2")
    assert not covers("vnni", "avx2") and not covers("avx2", "vnni") and not covers("amx", "other")


def test_the_scheme_follows_the_cpu_kind() -> None:
    from zoo.quantize import scheme

    assert scheme("amx")["reduce_range"] is False and scheme("vnni")["reduce_range"] is False
    assert scheme("avx2")["reduce_range"] is True and scheme("other")["reduce_range"] is True
    assert {scheme(k)["activations"] for k in ("amx", "avx2")} == {"uint8, asymmetric"}


def test_the_reduce_range_scheme_has_its_own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team remote must not hand a VNNI machine's file to an AVX2 machine, nor the reverse."""
    from zoo.recipe import Recipe, cache_key
    from zoo.spec import ModelSpec

    synthetic(tmp_path, 3)
    spec, recipe = ModelSpec("timm", "test_resnet", "none"), Recipe(dtype="int8", calibration=str(tmp_path))
    keys = {}
    for kind in ("amx", "vnni", "avx2", "other"):
        monkeypatch.setenv("ZOO_CPU_KIND", kind)
        keys[kind] = cache_key(spec, recipe)
    assert keys["amx"] == keys["vnni"] != keys["avx2"] == keys["other"]
    assert cache_key(spec, Recipe()) == cache_key(spec, Recipe())  # float32 keys never depend on the CPU
    monkeypatch.setenv("ZOO_CPU_KIND", "vnni")
    vnni_float32 = cache_key(spec, Recipe())
    monkeypatch.setenv("ZOO_CPU_KIND", "avx2")
    assert cache_key(spec, Recipe()) == vnni_float32


def _max_weight(model: Path) -> int:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model)).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1]
    assert weights
    return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)


def test_without_vnni_the_user_is_warned_first_and_weights_keep_to_7_bits(zoo, copy_store: Path,
                                                                         tmp_path: Path) -> None:
    """On an AVX2-only CPU (forced here: this box may have VNNI), the pull says int8 will not be
    faster, and quantizes with reduce_range: every int8 weight within [-64, 64], as U8S8 needs
    to stay clear of int16 saturation without VNNI. A VNNI pull uses the whole int8 range."""
    synthetic(tmp_path / "cal", 6)
    avx2 = zoo("pull", *TINY, "--dtype", "int8", "--calibration", str(tmp_path / "cal"), "--json",
               ZOO_CPU_KIND="avx2")
    warnings = [line for line in avx2.stderr.splitlines() if "fast int8" in line]
    assert warnings == ["zoo: warning: this CPU (int8 kind avx2: no AVX-512 VNNI, AVX-VNNI or AMX) has no fast "
                        "int8 kernels: int8 is unlikely to be faster than float32 here; quantizing with "
                        "reduce_range (7-bit weights) to avoid U8S8 saturation"]
    path = Path(json.loads(avx2.stdout)["path"])
    check = json.loads((path.parent / "zoo.json").read_text())["validation"]["int8"]
    assert check["reduce_range"] is True and check["cpu"]["kind"] == "avx2"
    assert _max_weight(path) <= 64

    # `zoo run` says so when the CPU is of a kind the figures were not measured on, and only then.
    image = synthetic(tmp_path / "image", 1)[0]
    elsewhere = zoo("run", *TINY, "--dtype", "int8", "--image", str(image), "--json", ZOO_CPU_KIND="vnni")
    assert json.loads(elsewhere.stdout)["provider"] == "cpu"
    assert elsewhere.stderr.splitlines() == [
        "zoo: warning: this int8 file (made with reduce_range) was checked on a CPU of int8 kind avx2, not on this "
        "one (vnni): its accuracy and speed here are unmeasured; `zoo eval` it, or pull it again here"]
    same = zoo("run", *TINY, "--dtype", "int8", "--image", str(image), ZOO_CPU_KIND="avx2")
    assert "zoo: warning" not in same.stderr

    vnni = zoo("pull", *TINY, "--dtype", "int8", "--calibration", str(tmp_path / "cal"), "--json",
               ZOO_CPU_KIND="vnni")
    assert "fast int8" not in vnni.stderr
    path = Path(json.loads(vnni.stdout)["path"])
    check = json.loads((path.parent / "zoo.json").read_text())["validation"]["int8"]
    assert check["reduce_range"] is False and check["cpu"]["kind"] == "vnni"
    assert _max_weight(path) > 64
    # AMX and VNNI both accumulate int8 products exactly: one kind's figures hold on the other.
    assert "zoo: warning" not in zoo("run", *TINY, "--dtype", "int8", ZOO_CPU_KIND="amx").stderr
    # Both entries are stored (their keys differ): `--dtype int8` picks the one made for this CPU's kind.
    assert json.loads(zoo("run", *TINY, "--dtype", "int8", "--json", ZOO_CPU_KIND="avx2").stdout)["key"] != \
        json.loads(vnni.stdout)["key"]
    picked = zoo("run", *TINY, "--dtype", "int8", "--json", ZOO_CPU_KIND="other")
    assert "kind avx2, not on this one (other)" in picked.stderr
    by_key = zoo("run", json.loads(vnni.stdout)["key"], ZOO_CPU_KIND="avx2")
    assert "kind vnni, not on this one (avx2)" in by_key.stderr


# -- the figures -----------------------------------------------------------------------------------
def _logits(top: list[int], margin: list[float], classes: int = 10) -> np.ndarray:
    """One row per image: class ``top[i]`` ahead of the rest by ``margin[i]`` (logits)."""
    rows = np.zeros((len(top), classes))
    rows[np.arange(len(top)), top] = margin
    return rows


def test_flips_among_near_ties_are_not_a_loss_but_confident_flips_are() -> None:
    from zoo.quantize import compare, judge

    # 20 images: 10 where float32 is confident (margin 5: p ~ 0.94), 10 near-ties (margin 0.1).
    want = _logits([0] * 10 + [1] * 10, [5.0] * 10 + [0.1] * 10)
    ties_flip = want.copy()
    ties_flip[10:, 2] = 0.2  # int8 picks class 2 on every near-tie: float32's top-1 still second
    figures = compare(ties_flip, want)
    assert figures["top1_agreement"] == 0.5 and figures["confident_images"] == 10
    assert figures["confident_agreement"] == 1.0 and figures["top5_containment"] == 1.0
    assert figures["mean_tv_distance"] < 0.05
    judged, losses = judge(figures)
    assert judged == ["confident_agreement", "top5_containment", "mean_tv_distance"] and losses == []

    confident_flip = want.copy()
    confident_flip[:2, 3] = 9.0  # two confident images now say class 3, and surely
    figures = compare(confident_flip, want)
    assert figures["confident_agreement"] == 0.8
    judged, losses = judge(figures)
    assert len(losses) == 1 and "top-1 agrees on 80.0% of the 10 images float32 is confident about" in losses[0]

    lost = -want  # float32's top-1 becomes int8's last: every check fails
    assert len(judge(compare(lost, want))[1]) == 3


def test_too_few_images_are_measured_not_judged() -> None:
    from zoo.quantize import compare, judge

    want = _logits([0] * 19, [5.0] * 19)
    figures = compare(-want, want)
    assert figures["images"] == 19 and figures["top5_containment"] == 0.0
    assert judge(figures) == ([], [])
    few_confident = _logits([0] * 5 + [1] * 15, [5.0] * 5 + [0.1] * 15)
    judged, _ = judge(compare(few_confident, few_confident))
    assert "confident_agreement" not in judged and "top5_containment" in judged


def test_probabilities_are_taken_as_they_are_and_logits_softmaxed() -> None:
    from zoo.quantize import probabilities

    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert probabilities(p) is p
    logits = np.array([[2.0, 0.0, 0.0]])
    assert probabilities(logits)[0, 0] == pytest.approx(np.exp(2) / (np.exp(2) + 2))


def test_a_labelled_folder_gives_the_top1_drop_and_judges_it_from_50_images(tmp_path: Path) -> None:
    from zoo.quantize import compare, folder_labels, judge

    files = []
    for folder, count in (("3", 2), ("tabby", 1)):
        files += synthetic(tmp_path / "data" / folder, count, seed=count)
    labels = ["zero", "one", "two", "three", "tabby, tabby cat"]
    assert folder_labels(tmp_path / "data", files, labels, 5) == [3, 3, 4]
    assert folder_labels(tmp_path / "data", files, None, 5) is None  # "tabby" names no class without labels
    flat = synthetic(tmp_path / "flat", 2)
    assert folder_labels(tmp_path / "flat", flat, labels, 5) is None

    truth = [0] * 50
    want = _logits([0] * 50, [5.0] * 50)
    got = want.copy()
    got[:2, 1] = 9.0  # int8 misses two images float32 gets right: 4 points
    figures = compare(got, want, truth)
    assert figures["labelled"] == {"images": 50, "float32_top1": 1.0, "int8_top1": 0.96,
                                   "top1_drop": pytest.approx(0.04)}
    judged, losses = judge(figures)
    assert "top1_drop" in judged and any("drops 4.0 points (100.0% -> 96.0%; at most 2)" in x for x in losses)
    assert "top1_drop" not in judge(compare(got[:49], want[:49], truth[:49]))[0]


def test_two_images_leave_none_to_hold_out_and_say_so(zoo, copy_store: Path, tmp_path: Path) -> None:
    synthetic(tmp_path / "cal", 2)
    out = zoo("pull", *TINY, "--dtype", "int8", "--calibration", str(tmp_path / "cal"), "--json")
    assert "zoo: warning: int8 not checked: 2 calibration image(s) leave none to hold out; calibrate on 60+ " \
           "images" in out.stderr
    path = Path(json.loads(out.stdout)["path"])
    check = json.loads((path.parent / "zoo.json").read_text())["validation"]["int8"]
    assert check["images"] == 0 and check["judged"] == [] and check["calibration"]["calibrated_on"] == 2
    assert "top5_containment" not in check and check["passed"] is True


def test_a_labelled_calibration_folder_is_measured_at_pull(zoo, copy_store: Path, tmp_path: Path) -> None:
    for folder in ("0", "1", "2"):
        synthetic(tmp_path / "cal" / folder, 2, seed=int(folder))
    out = zoo("pull", *TINY, "--dtype", "int8", "--calibration", str(tmp_path / "cal"), "--json")
    path = Path(json.loads(out.stdout)["path"])
    check = json.loads((path.parent / "zoo.json").read_text())["validation"]["int8"]
    labelled = check["labelled"]
    assert labelled["images"] == 2 and 0.0 <= labelled["int8_top1"] <= 1.0
    assert labelled["top1_drop"] == pytest.approx(labelled["float32_top1"] - labelled["int8_top1"])


# -- the record ------------------------------------------------------------------------------------
OLD_INT8 = {"dtype": "int8", "quantizer": "onnxruntime.quantization.quantize_static", "onnxruntime": "1.31.1",
            "format": "QDQ", "weights": "int8, per channel", "activations": "uint8, asymmetric",
            "calibration_method": "MinMax", "pre_process": "quant_pre_process",
            "calibration": {"root": "/data/cal", "images": 60, "fingerprint": "ab12", "read": 60, "failed": []},
            "against": "float32 export, ORT CPU, on the calibration images", "images": 60,
            "top1_agreement": 0.95, "max_abs_diff": 0.8,
            "threshold": {"min_top1_agreement": 0.9, "min_images": 50}, "passed": True}


def test_older_int8_records_read_typed_and_write_back_unchanged(tiny_store: Path) -> None:
    from zoo.record import Int8Validation, Record

    entry = next((tiny_store / "models").iterdir())
    data = json.loads((entry / "zoo.json").read_text())
    data["validation"]["int8"] = OLD_INT8
    record = Record.from_json(data)
    int8 = record.validation.int8
    assert isinstance(int8, Int8Validation) and int8.top1_agreement == 0.95 and int8.cpu is None
    assert int8.threshold == {"min_top1_agreement": 0.9, "min_images": 50} and int8.confident_agreement is None
    assert record.to_json()["validation"]["int8"] == OLD_INT8

    from zoo.cli import int8_summary

    assert int8_summary(int8) == "passed=True top1_agreement=95.0% on 60 calibration images (ab12)"
    data["validation"]["int8"] = {**OLD_INT8, "top5_containment": 1.5}
    from zoo.record import RecordError

    with pytest.raises(RecordError, match=r"validation\.int8\.top5_containment: 1\.5 is outside \[0, 1\]"):
        Record.from_json(data)
    data["validation"]["int8"] = {**OLD_INT8, "cpu": {"flags": []}}
    with pytest.raises(RecordError, match=r"validation\.int8\.cpu\.kind: missing"):
        Record.from_json(data)


def test_info_shows_the_new_figures(zoo, copy_store: Path, tmp_path: Path) -> None:
    synthetic(tmp_path / "cal", 6)
    zoo("pull", *TINY, "--dtype", "int8", "--calibration", str(tmp_path / "cal"), ZOO_CPU_KIND="amx")
    shown = zoo("info", *TINY, "--dtype", "int8").stdout
    line = next(x for x in shown.splitlines() if x.startswith("int8 "))
    assert "confident_agreement=" in line and "top5=" in line and "on 2 held-out images" in line
    assert "cpu=amx" in line and "reduce_range" not in line
    shutil.rmtree(tmp_path / "cal")
