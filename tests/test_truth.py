"""What zoo says is what the file is (opset, names, outputs that are never replaced in silence),
and a provider that cannot run is refused before any export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest

import zoo
from zoo.errors import ExportError, UserError

TINY = "timm:test_resnet"
CHEAP = (TINY, "--weights", "none", "--exporter", "torchscript")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``zoo ARGS`` in process, through the same entry point and error handling as the command."""
    from zoo.cli import main

    argv = sys.argv
    sys.argv = ["zoo", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def opset_of(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_the_file_has_the_opset_asked_for(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "pull", TINY, "--weights", "none", "--opset", "13", "--json")
    assert code == 0, err
    pulled = json.loads(out)
    assert opset_of(Path(pulled["path"])) == 13
    record = zoo.info(pulled["key"]).record
    assert record.recipe.opset == 13 and record.validation.other["artefact"]["opset"] == 13
    assert "Traceback" not in err and len(err.splitlines()) <= 1
    with pytest.raises(ExportError, match="opset 18, not the 13 asked for"):  # dynamo alone cannot make it
        zoo.pull(TINY, weights="none", opset=13, exporter="dynamo")


def test_export_to_a_file_never_replaces_without_force(home: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The names with the default exporter; then the cheaper one (where files go is the point)."""
    target = tmp_path / "out" / "tiny.onnx"
    code, out, err = cli(capsys, "export", TINY, "--weights", "none", "-o", str(target), "--input-names", "images",
                         "--output-names", "scores", "--json")
    assert code == 0, err
    assert target.is_file() and target.with_suffix(".json").is_file() and not (target.parent / "model.onnx").exists()
    graph = onnx.load(str(target), load_external_data=False).graph
    assert [v.name for v in graph.input] == ["images"] and [v.name for v in graph.output] == ["scores"]
    record = json.loads(target.with_suffix(".json").read_text())
    assert record["files"][0]["path"] == "tiny.onnx"
    assert record["key"] != zoo.resolve_name(TINY, weights="none").key  # the names are part of the key
    before = target.read_bytes()
    code, _out, err = cli(capsys, "export", *CHEAP, "-o", str(target))
    assert code == 1 and str(target) in err and "--force" in err and len(err.splitlines()) == 1
    assert target.read_bytes() == before
    code, _out, err = cli(capsys, "export", *CHEAP, "-o", str(target.parent))
    assert code == 0, err  # a directory: model.onnx and zoo.json beside tiny.onnx
    assert (target.parent / "model.onnx").is_file() and (target.parent / "zoo.json").is_file()
    code, _out, err = cli(capsys, "export", *CHEAP, "-o", str(target.parent))
    assert code == 1 and "model.onnx exists" in err
    code, _out, err = cli(capsys, "export", *CHEAP, "-o", str(target), "--force")
    assert code == 0, err


@pytest.mark.parametrize("method", ["renameat2", "link"])
def test_a_file_that_appears_during_the_export_is_never_replaced(
        method: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The target is checked at the start and published at the end: what someone writes there
    in between survives, and the export fails in one line leaving nothing of its own."""
    from zoo import api, files

    if method == "link":
        monkeypatch.setenv("ZOO_NO_RENAMEAT2", "1")
    elif files.publish_method() != "renameat2":
        pytest.skip("no renameat2 on this machine")  # the link test below still runs
    assert files.publish_method() == method
    target = tmp_path / "out" / "tiny.onnx"
    theirs = {"tiny.onnx": b"someone else's model", "tiny.json": b"someone else's record"}
    producer = api._producer

    def racing(*args: object, **kwargs: object):
        produce = producer(*args, **kwargs)

        def produce_then_race(tmp: Path):  # the export is done; the other writer is quicker
            record = produce(tmp)
            (target.parent / appear).write_bytes(theirs[appear])
            return record
        return produce_then_race

    monkeypatch.setattr(api, "_producer", racing)
    for appear in ("tiny.json", "tiny.onnx"):  # the first file published (sorted), then the second
        code, out, err = cli(capsys, "export", *CHEAP, "-o", str(target))
        assert code == 1 and out == "" and len(err.splitlines()) == 1, err
        assert f"{target.parent / appear} appeared during the export and is kept" in err and "--force" in err
        assert {p.name: p.read_bytes() for p in target.parent.iterdir()} == {appear: theirs[appear]}
        (target.parent / appear).unlink()


@pytest.mark.parametrize("method", ["renameat2", "link", "copy"])
def test_publish_new_moves_a_file_in_and_never_over_another(method: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from zoo import files

    if method != "renameat2":
        monkeypatch.setenv("ZOO_NO_RENAMEAT2", "1")
    elif files.publish_method() != "renameat2":
        pytest.skip("no renameat2 on this machine")
    if method == "copy":  # a filesystem without hard links (vfat, some FUSE mounts)
        def no_links(src: object, dst: object) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "new").write_bytes(b"new")
    (tmp_path / "old").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        files.publish_new(tmp_path / "new", tmp_path / "old")
    assert (tmp_path / "old").read_bytes() == b"old" and (tmp_path / "new").read_bytes() == b"new"
    files.publish_new(tmp_path / "new", tmp_path / "free")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["free", "old"]
    assert (tmp_path / "free").read_bytes() == b"new"


def test_names_that_do_not_fit_the_model_are_refused(home: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--output-names gives 2 names"):
        zoo.export(TINY, tmp_path / "out" / "deeper", weights="none", output_names="a,b")
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]  # the directory it made for the export is gone
    with pytest.raises(UserError, match="not unique"):
        zoo.resolve_name(TINY, weights="none", output_names="a,a")


def test_a_provider_that_cannot_load_is_refused_before_any_export(home: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.errors import EnvironmentProblem
    from zoo.runtime import check_provider

    try:
        check_provider("cuda")
    except EnvironmentProblem:
        pass
    else:
        pytest.skip("CUDA runs on this machine: nothing to refuse")
    for provider in ("cuda", "tensorrt"):
        code, _out, err = cli(capsys, "run", TINY, "--weights", "none", "--provider", provider)
        assert code == 4 and len(err.splitlines()) == 1, err
        assert "use --provider cuda" not in err
    assert not home.exists() or not any(home.rglob("*.onnx"))


def bare_classifier(path: Path, side: int = 32, classes: int = 4) -> Path:
    """An ONNX classifier with no zoo metadata: mean colour per channel, then a linear layer."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(3 * classes, dtype=np.float32).reshape(classes, 3) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)],
        "bare", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", classes])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_a_bare_onnx_file_runs_on_images_with_the_preprocessing_given(home: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    model = bare_classifier(tmp_path / "bare.onnx")
    image = tmp_path / "red.png"
    Image.new("RGB", (50, 40), (255, 0, 0)).save(image)
    code, _out, err = cli(capsys, "run", str(model), "--image", str(image))
    assert code == 1 and "--size" in err and "--preprocess-like" in err
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog, the big one\nbird\nfish\n")
    code, out, err = cli(capsys, "run", str(model), "--image", str(image), "--size", "32", "--mean", "0,0,0",
                         "--std", "1,1,1", "--labels", str(labels), "--topk", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    # red (1, 0, 0) after mean 0 / std 1: logits 0.0, 0.3, 0.6, 0.9; softmax of the last
    best = 1 / sum(2.718281828 ** (x - 0.9) for x in (0.0, 0.3, 0.6, 0.9))
    assert result["predictions"][0] == [{"index": 3, "label": "fish", "score": pytest.approx(best, rel=1e-5)}]


def test_error_lines_are_plain_single_lines(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.errors import one_line as _one_line

    assert _one_line("\x1b[1;31mRuntimeError\x1b[0m: bad\n  input\x00") == "RuntimeError: bad input\\x00"
    code, _out, err = cli(capsys, "pull", "no\x1b[31msuch\x00model")
    assert code != 0 and "\x1b" not in err and "\x00" not in err and len(err.splitlines()) == 1, err


def test_a_checkpoint_of_another_architecture_is_refused_even_without_strict(home: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import timm
    import torch

    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), other)
    code, _out, err = cli(capsys, "export", f"local:{other}", "--arch", TINY, "--no-strict", "-o", str(tmp_path / "o"))
    assert code == 1 and len(err.splitlines()) == 1
    assert "fills only" in err and "tensors" in err and not (tmp_path / "o" / "model.onnx").exists()


def test_fine_tuned_heads_load_for_torchvision_and_the_report_is_recorded(home: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    import torchvision

    ten = tmp_path / "ten.pth"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10).state_dict(), ten)
    code, out, err = cli(capsys, "pull", f"local:{ten}", "--arch", "torchvision:mobilenet_v3_small",
                         "--exporter", "torchscript", "--json")
    assert code == 0, err
    entry = zoo.info(json.loads(out)["key"]).record
    assert entry.outputs[0].shape[-1] == 10  # the head came from the checkpoint
    assert entry.weights.tensors_loaded > 100 and entry.weights.missing_keys == [] == entry.weights.unexpected_keys

    headless = tmp_path / "headless.pth"
    state = torchvision.models.mobilenet_v3_small().state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier.3")}, headless)
    code, _out, err = cli(capsys, "pull", f"local:{headless}", "--arch", "torchvision:mobilenet_v3_small")
    assert code == 1 and "--no-strict" in err  # strict by default, and the advice works:
    code, _out, err = cli(capsys, "pull", f"local:{headless}", "--arch", "torchvision:mobilenet_v3_small",
                          "--no-strict", "--exporter", "torchscript")
    assert code == 0, err
    assert "(2 missing, 0 unexpected)" in err and len(err.splitlines()) == 1  # the summary line says so


def test_list_shows_what_differs_and_says_when_nothing_matches(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import _recipe_differences
    from zoo.recipe import Recipe

    assert _recipe_differences(Recipe().to_dict()) == ""
    changed = Recipe(dtype="float16", opset=13, dynamic_batch=False, batch=4, output_names="a,b").to_dict()
    assert _recipe_differences(changed) == "batch=4 dtype=float16 dynamic_batch=False opset=13 output_names=a,b"
    code, out, err = cli(capsys, "list")
    assert code == 0 and out == "" and err == "zoo: the store is empty\n"
    code, out, err = cli(capsys, "list", "resnet*", "--json")
    assert code == 0 and json.loads(out) == [] and "no stored entry matches 'resnet*'" in err


def test_pretrained_timm_weights_fail_fast_without_a_network(home: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # a name that never resolves (RFC 6761)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    start = time.monotonic()
    code, _out, err = cli(capsys, "pull", "timm:test_resnet.r160_in1k")
    assert code == 4 and "hub.invalid cannot be resolved" in err and len(err.splitlines()) == 1, err
    assert time.monotonic() - start < 15  # not huggingface_hub's 25 s of retries
