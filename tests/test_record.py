"""The typed entry record: today's zoo.json reads, every field is checked and bounded, one bad
record never breaks the store, reads are capped and refuse non-regular files, exports are
reproducible.

The store entries here are written by hand (a tiny ONNX made with onnx.helper and a
zoo.json), and the CLI runs in process, so the module runs in seconds; one test exports a
real (tiny) timm model twice.
"""

from __future__ import annotations

import copy
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zoo.errors import RegistryError, UserError, ZooError
from zoo.record import MAX_SIDE, SCHEMA, Record, RecordError

DATA = Path(__file__).parent / "data"
V1_RECORD = DATA / "zoo-v1-timm-test_resnet.json"  # written by zoo 0.1 (`zoo pull timm:test_resnet.r160_in1k`)
GOOD, BROKEN = "a" * 20, "b" * 20


def v1() -> dict[str, Any]:
    return json.loads(V1_RECORD.read_text(encoding="utf-8"))


class Blocked(BaseException):
    """Raised by ``deadline``: a BaseException, so no ``except Exception`` (or OSError) in zoo
    can turn it into an ordinary error message that a test would accept."""


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail (instead of hanging the suite) when a read blocks: opening a FIFO for reading does."""

    def expired(_signum: int, _frame: Any) -> None:
        raise Blocked("a read blocked for 20 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- a hand-written store ---------------------------------------------------------------------
def tiny_onnx(path: Path, props: dict[str, str] | None = None, side: int | str = 8) -> Path:
    """A 3-class "classifier" on 8x8 images: global average pool, flatten."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_record(**changes: Any) -> dict[str, Any]:
    record = {
        "schema": SCHEMA, "name": "tiny", "ref": "test:tiny", "key": GOOD,
        "source": {"name": "test", "plugin": "tests", "distribution": None, "version": "1"},
        "weights": {"tag": "none"}, "options": {}, "recipe": {"opset": 18, "batch": 1, "dtype": "float32"},
        "exporter": "hand", "inputs": [{"name": "input", "shape": ["batch", 3, 8, 8], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": ["batch", 3], "dtype": "float32"}],
        "preprocessing": {"input_size": [3, 8, 8], "resize": 8, "crop": [8, 8], "mean": [0.5] * 3, "std": [0.5] * 3},
        "labels": ["cat, domestic", "dog", "fox"], "stats": {}, "license": None, "toolchain": {},
    }
    record.update(changes)
    return record


def write_entry(home: Path, key: str, record: dict[str, Any] | None = None) -> Path:
    """A store entry as the store writes one: model.onnx, and zoo.json listing its hashes."""
    from zoo.store import describe_files

    directory = home / "models" / key
    tiny_onnx(directory / "model.onnx")
    data = record or tiny_record(key=key)
    data.setdefault("files", [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in describe_files(directory)])
    (directory / "zoo.json").write_text(json.dumps(data), encoding="utf-8")
    return directory


def cli(*args: str) -> tuple[int, str, str]:
    """``zoo ARGS`` in process: (exit code, stdout, stderr) as ``zoo.cli.main`` would give them."""
    from typer.testing import CliRunner

    from zoo.cli import app

    result = CliRunner().invoke(app, list(args))
    error = result.exception
    if isinstance(error, ZooError):
        return error.exit_code, result.stdout, f"zoo: error: {error}"
    if error is not None and not isinstance(error, SystemExit):
        raise error
    return result.exit_code, result.stdout, result.stderr


# -- today's records still read ----------------------------------------------------------------
def test_a_record_written_by_zoo_0_1_reads_and_writes_back_unchanged() -> None:
    data = v1()
    record = Record.from_json(data)
    assert record.schema == 1 and record.ref == "timm:test_resnet.r160_in1k"
    assert record.preprocessing is not None and record.preprocessing.resize == 168
    assert record.preprocessing.crop == (160, 160) and record.preprocessing.mean == (0.5, 0.5, 0.5)
    assert record.weights is not None and record.weights.tag == "none"
    assert record.stats.params == 469688 and record.stats.other == {"reparameterized": False}
    assert record.files[0].path == "model.onnx" and record.files[0].size == 1986805
    assert record.inputs[0].shape == ["batch", 3, 160, 160]
    assert record.to_json() == data  # keys the record does not model included (extra, export_attempts...)


def test_unknown_keys_are_kept_and_the_load_report_is_typed() -> None:
    data = tiny_record(future_field=[{"top1": 0.5}])
    data["weights"] = {"tag": "sha256:ab", "file": "/ckpt.pth", "tensors_loaded": 10, "missing_keys": ["fc.weight"],
                       "unexpected_keys": [], "hub_revision": "main"}
    data["validation"] = {"passed": True, "int8": {"top1_drop": 0.01}}
    record = Record.from_json(data)
    assert record.weights.tensors_loaded == 10 and record.weights.missing_keys == ["fc.weight"]
    assert record.weights.other == {"hub_revision": "main"}
    assert record.to_json()["future_field"] == [{"top1": 0.5}]
    assert record.to_json()["validation"]["int8"] == {"top1_drop": 0.01}


def test_preprocessing_defaults_are_the_same_everywhere() -> None:
    """A record without mean/std gets spec.Preprocessing's (ImageNet) values, as images.py uses them."""
    from zoo.spec import IMAGENET_MEAN, IMAGENET_STD

    pre = tiny_record()["preprocessing"]
    del pre["mean"], pre["std"]
    record = Record.from_json(tiny_record(preprocessing=pre))
    assert record.preprocessing.mean == IMAGENET_MEAN and record.preprocessing.std == IMAGENET_STD


def test_a_record_from_a_newer_zoo_is_refused_with_advice() -> None:
    with pytest.raises(RecordError, match="schema 99 is from a newer zoo.*upgrade zoo"):
        Record.from_json(tiny_record(schema=99))


# -- every field checked and bounded -------------------------------------------------------------
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return change


BAD_FIELDS = [
    ("files", [1, 2], "files[0]: expected an object, got the number 1"),
    ("files.0.size", "1986805", "files[0].size: expected an integer, got the string '1986805'"),
    ("files.0.size", -1, "files[0].size: -1 is outside"),
    ("files.0.size", True, "files[0].size: expected an integer, got true"),
    ("files.0.sha256", "not-a-hash", "files[0].sha256: expected 64 lowercase hex digits"),
    ("files.0.path", "../../outside/secret.bin", "files[0].path: '../../outside/secret.bin' is not a file inside"),
    ("files.0.path", "/etc/passwd", "files[0].path: '/etc/passwd' is not a file inside"),
    ("weights", "none", "weights: expected an object or null, got the string 'none'"),
    ("name", None, "name: expected a string, got null"),
    ("ref", "no-source", "ref: expected SOURCE:NAME"),
    ("preprocessing.resize", 1_000_000, "preprocessing.resize: 1000000 is outside [1, 8192]"),
    ("preprocessing.resize", "256", "preprocessing.resize: expected an integer"),
    ("preprocessing.crop", [0, 160], "preprocessing.crop[0]: 0 is outside [1, 4096]"),
    ("preprocessing.crop", [160], "preprocessing.crop: expected 2 values, got 1"),
    ("preprocessing.input_size", [3, MAX_SIDE + 1, 160], "preprocessing.input_size[1]: 4097 is outside"),
    ("preprocessing.input_size", [64, 160, 160], "preprocessing.input_size: 64 channels, more than 16"),
    ("preprocessing.std", [0.5, 0.0, 0.5], "preprocessing.std: a zero would divide by zero"),
    ("preprocessing.mean", [0.5, 0.5], "preprocessing.mean: 2 values for 3 channels"),
    ("preprocessing.interpolation", "sinc", "preprocessing.interpolation: 'sinc' is not one of"),
    ("preprocessing.mena", [0.5], "preprocessing.mena: unknown field"),
    ("preprocessing", [3, 224, 224], "preprocessing: expected an object or null, got a list"),
    ("labels", ["x"] * 100_001, "labels: 100001 items, more than 100000"),
    ("labels", ["x" * 5000], "labels[0]: a string of 5000 characters, more than 1024"),
    ("labels", "cat,dog", "labels: expected a list or null"),
    ("inputs.0.shape", [1] * 33, "inputs[0].shape: 33 items, more than 32"),
    ("inputs.0.shape", [1, 3, 2**40, 8], "inputs[0].shape[2]: 1099511627776 is outside"),
    ("inputs.0.shape", [1, 3, None, 8], "inputs[0].shape[2]: expected an integer or a string, got null"),
    ("stats.params", 1.5, "stats.params: expected an integer or null, got the number 1.5"),
    ("validation.max_abs_diff", "small", "validation.max_abs_diff: expected a number or null"),
    ("name", "n" * 5000, "name: a string of 5000 characters, more than 4096"),
    ("extra", {"plugin": json.loads("[" * 40 + "]" * 40)}, "nested too deeply"),
    ("recipe.opset", {"deep": {"deeper": 1}}, "recipe.opset"),
    ("schema", "1", "schema: expected an integer"),
    ("schema", 0, "schema: 0 is outside"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_FIELDS,
                         ids=[f"{f}={str(v)[:20]}" for f, v, _m in BAD_FIELDS])
def test_a_bad_field_is_a_record_error_naming_it(field: str, value: Any, message: str) -> None:
    data = v1()
    _set(field, value)(data)
    with pytest.raises(RecordError) as caught:
        Record.from_json(data)
    assert message in str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)


def test_json_nested_past_the_recursion_limit_is_a_record_error(tmp_path: Path) -> None:
    path = tmp_path / "zoo.json"
    path.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    with pytest.raises(RecordError, match="nested too deeply"):
        Record.load(path)


def test_a_record_file_over_the_cap_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoo.record

    monkeypatch.setattr(zoo.record, "MAX_RECORD_BYTES", 1000)
    path = tmp_path / "zoo.json"
    path.write_text(json.dumps(tiny_record(labels=["x" * 100] * 20)), encoding="utf-8")
    with pytest.raises(RecordError, match="more than zoo reads"):
        Record.load(path)


# -- one bad record never breaks the store --------------------------------------------------------
CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "files-of-numbers": lambda d: _rewrite(d, files=[1, 2]),
    "file-without-size": lambda d: _rewrite(d, files=[{"path": "model.onnx", "sha256": "0" * 64}]),
    "size-as-string": lambda d: _rewrite(d, files=[{"path": "model.onnx", "size": "12", "sha256": "0" * 64}]),
    "weights-as-string": lambda d: _rewrite(d, weights="none"),
    "name-null": lambda d: _rewrite(d, name=None),
    "resize-a-million": lambda d: _rewrite(d, preprocessing={"input_size": [3, 8, 8], "resize": 1_000_000}),
    "from-a-newer-zoo": lambda d: _rewrite(d, schema=99),
    "nested-200000-deep": lambda d: (d / "zoo.json").write_text("[" * 200_000 + "]" * 200_000),
    "not-json": lambda d: (d / "zoo.json").write_text("{not json"),
    "a-list": lambda d: (d / "zoo.json").write_text("[1, 2]"),
    "empty": lambda d: (d / "zoo.json").write_text(""),
    "a-fifo": lambda d: ((d / "zoo.json").unlink(), os.mkfifo(d / "zoo.json")),
    "a-directory": lambda d: ((d / "zoo.json").unlink(), (d / "zoo.json").mkdir()),
}


def _rewrite(directory: Path, **changes: Any) -> None:
    data = json.loads((directory / "zoo.json").read_text())
    data.update(changes)
    (directory / "zoo.json").write_text(json.dumps(data))


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_one_bad_record_never_breaks_the_store(corruption: str, home: Path, deadline: None) -> None:
    write_entry(home, GOOD)
    CORRUPTIONS[corruption](write_entry(home, BROKEN, tiny_record(key=BROKEN)))

    code, out, err = cli("list")
    assert code == 0 and GOOD in out and "tiny" in out
    assert BROKEN in out and BROKEN in err  # marked in the table, and why on stderr
    code, out, err = cli("list", "--json")
    assert code == 0 and [row["key"] for row in json.loads(out)] == [GOOD]

    code, out, _err = cli("verify")
    assert code == 3 and f"{GOOD[:0]}tiny: ok" in out and BROKEN in out
    code, out, _err = cli("verify", "--json")
    reports = {r["key"]: r["problems"] for r in json.loads(out)["entries"]}
    assert code == 3 and reports[GOOD] == [] and reports[BROKEN]

    for command in ("info", "run", "verify"):
        code, _out, err = cli(command, BROKEN)
        assert code == 3, (command, err)
        assert BROKEN in err and f"zoo rm {BROKEN}" in err and "\n" not in err.strip()
    code, _out, err = cli("info", BROKEN[:8])  # a unique key prefix names it too
    assert code == 3 and BROKEN in err

    code, out, _err = cli("rm", BROKEN)
    assert code == 0 and BROKEN in out
    assert not (home / "models" / BROKEN).exists() and (home / "models" / GOOD).is_dir()
    assert cli("verify")[0] == 0


def test_a_good_hand_written_entry_runs_on_an_image(home: Path, tmp_path: Path) -> None:
    """The typed record feeds the image pipeline end to end (preprocessing, labels)."""
    from PIL import Image

    write_entry(home, GOOD)
    image = tmp_path / "red.png"
    Image.new("RGB", (20, 10), (255, 0, 0)).save(image)
    code, out, err = cli("run", GOOD, "--image", str(image), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["predictions"][0][0]["label"] == "cat, domestic"  # the red channel is the largest
    code, out, _err = cli("info", GOOD[:6])
    assert code == 0 and 'labels         3 ("cat, domestic", "dog", "fox")' in out


# -- bounded reads everywhere ----------------------------------------------------------------------
def test_a_fifo_is_never_opened(tmp_path: Path, deadline: None) -> None:
    from zoo.files import FileRefused, read_capped
    from zoo.images import load
    from zoo.registry import load_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(FileRefused, match="not a regular file \\(a FIFO\\)"):
        read_capped(fifo, 100)
    with pytest.raises(RecordError, match="a FIFO"):
        Record.load(fifo)
    with pytest.raises(RegistryError, match="a FIFO"):
        load_file(fifo)
    with pytest.raises(UserError, match="a FIFO"):
        load(fifo)
    onnx_fifo = tmp_path / "model.onnx"
    os.mkfifo(onnx_fifo)
    code, _out, err = cli("info", str(onnx_fifo))
    assert code == 1 and "a FIFO" in err


def test_registry_reads_are_capped_and_bounded(tmp_path: Path, deadline: None) -> None:
    from zoo.registry import load_file

    with pytest.raises(RegistryError, match="character device"):
        load_file(Path("/dev/zero"))
    deep = tmp_path / "deep.toml"
    deep.write_text("[models.x]\nsource = 'timm'\nname = 'x'\noptions = { a = " + "[" * 5000 + "]" * 5000 + " }\n")
    with pytest.raises(RegistryError, match="nested too deeply"):
        load_file(deep)
    big = tmp_path / "big.toml"
    with open(big, "wb") as handle:
        handle.truncate(5 << 20)
    with pytest.raises(RegistryError, match="more than zoo reads"):
        load_file(big)


def test_hostile_metadata_in_a_bare_onnx_file_is_refused(tmp_path: Path) -> None:
    cases = {
        "list": "[1, 2]",
        "name-null": json.dumps(tiny_record(name=None)),
        "huge-resize": json.dumps(tiny_record(preprocessing={"input_size": [3, 8, 8], "resize": 10**6})),
        "not-json": "{",
    }
    for case, text in cases.items():
        model = tiny_onnx(tmp_path / f"{case}.onnx", {"zoo.metadata": text})
        for command in (["info", str(model)], ["run", str(model)]):
            code, _out, err = cli(*command)
            assert code == 3 and "zoo.metadata" in err, (case, command, err)
    foreign = tiny_onnx(tmp_path / "foreign.onnx")
    code, out, _err = cli("info", str(foreign))
    assert code == 0 and "no zoo metadata" in out


def test_metadata_props_are_read_from_the_wire_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The props are read without parsing the graph (no onnx import, nothing large read)."""
    import onnx

    import zoo.metadata
    from zoo.metadata import model_props

    props = {"zoo.metadata": json.dumps(tiny_record()), "other": "x" * 300, "ünï": "cødé"}
    model = tiny_onnx(tmp_path / "m.onnx", props)
    assert model_props(model, *props) == props == {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert zoo.metadata.read_props(model).labels == ["cat, domestic", "dog", "fox"]
    for name, data in (("text.onnx", b"hello, this is not a model\n"), ("empty.onnx", b""),
                       ("cut.onnx", model.read_bytes()[:-40])):
        (tmp_path / name).write_bytes(data)
        code, _out, err = cli("info", str(tmp_path / name))
        assert code == 1 and "as an ONNX model" in err, (name, err)
    monkeypatch.setattr(zoo.metadata, "MAX_PROP_CHARS", 200)
    with pytest.raises(RecordError, match="a metadata property of .* bytes, more than zoo reads"):
        model_props(model, "zoo.metadata")


def test_a_huge_declared_input_is_refused_before_it_is_allocated(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "huge.onnx", side=200_000)  # 1 x 3 x 200000 x 200000 floats: 447 GiB
    code, _out, err = cli("run", str(model))
    assert code == 1 and "more than zoo allocates for a random input" in err


def test_images_are_decoded_under_a_pixel_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from zoo import images

    picture = tmp_path / "wide.png"
    Image.new("RGB", (400, 300)).save(picture)
    monkeypatch.setattr(images, "MAX_PIXELS", 100_000)
    with pytest.raises(UserError, match="refusing image .*400x300 pixels, more than zoo decodes"):
        images.load(picture)
    monkeypatch.setattr(images, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # Pillow's own bomb check: warning...
    with pytest.raises(UserError, match="refusing image"):
        images.load(picture)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # ... and error
    with pytest.raises(UserError, match="refusing image"):
        images.load(picture)


def test_no_resize_makes_an_image_larger_than_the_cap(tmp_path: Path) -> None:
    from PIL import Image

    from zoo import images

    thin = Image.new("RGB", (1, 30_000))
    pre = Record.from_json(tiny_record(preprocessing={"input_size": [3, 8, 8], "resize": 2 * MAX_SIDE,
                                                      "crop": [8, 8]})).preprocessing
    with pytest.raises(UserError, match="refusing to resize an image of 1x30000"):
        images.preprocess(thin, pre)


# -- reproducible exports ------------------------------------------------------------------------------
def test_machine_local_facts_stay_out_of_the_onnx_file(tmp_path: Path) -> None:
    from zoo.metadata import read_props, write_props

    def carried(file: str = "/home/alice/ckpt.pth", **local: Any) -> bytes:
        model = tiny_onnx(tmp_path / "m.onnx")
        data = tiny_record(ref="local:/home/alice/ckpt.pth", name="local:/home/alice/ckpt.pth", **local)
        data["source"]["name"] = "local"
        data["weights"] = {"tag": "sha256:" + "0" * 64, "file": file}
        write_props(model, Record.from_json(data))
        return model.read_bytes()

    first = carried(created="2026-01-01T00:00:00+00:00", export_seconds=1.5,
                    validation={"max_abs_diff": 1e-7, "passed": True}, export_attempts=[{"exporter": "dynamo"}])
    second = carried(created="2027-06-01T12:00:00+00:00", export_seconds=99.0,
                     validation={"max_abs_diff": 3e-7, "passed": True}, file="/srv/bob/ckpt.pth")
    assert first == second
    record = read_props(tmp_path / "m.onnx")
    assert record.ref == "local:ckpt.pth" and record.weights.file == "ckpt.pth" and record.created is None
    assert b"/home/alice" not in first


def test_the_same_export_twice_gives_the_same_bytes(home: Path, tmp_path: Path) -> None:
    import zoo.api as api

    # TorchScript: seconds instead of dynamo's tens; what is checked (zoo's record, the seeded
    # random init) is the same for both exporters.
    first = api.export("timm:test_resnet.r160_in1k", tmp_path / "a", weights="none", exporter="torchscript")
    second = api.export("timm:test_resnet.r160_in1k", tmp_path / "b", weights="none", exporter="torchscript")
    assert first.sha256 == second.sha256
    assert first.record.created and first.record.export_seconds is not None  # kept, in zoo.json only
    assert first.record.source.version and first.record.stats.params == 469688


def test_copies_are_independent() -> None:
    data = v1()
    record = Record.from_json(copy.deepcopy(data))
    record.labels.append("extra")
    assert record.to_json() != data and Record.from_json(data).to_json() == data


# -- provenance ------------------------------------------------------------------------------------------
def test_provenance_local_version_is_the_plugin_s_and_torchvision_has_one_params(home: Path, tmp_path: Path) -> None:
    """Built without exporting: what the sources hand to the record."""
    import timm
    import torch

    from zoo.host import get_host
    from zoo.recipe import Recipe
    from zoo.spec import ModelSpec

    host = get_host()
    checkpoint = tmp_path / "ckpt.pth"
    torch.save(timm.create_model("test_resnet.r160_in1k").state_dict(), checkpoint)
    local = host.source("local")
    spec = local.spec(str(checkpoint), "checkpoint", {"arch": "timm:test_resnet.r160_in1k"})
    built = local.build(spec, Recipe())
    assert built.source_version is None  # so the record's source.version is the local plugin's, not timm's

    vision = host.source("torchvision")
    built = vision.build(ModelSpec("torchvision", "resnet18", "none"), Recipe())
    assert "num_params" not in built.stats  # zoo counts `params` itself: one field


def test_evaluations_are_typed_and_write_back_in_their_order() -> None:
    runs = {
        "aaaa": {"task": "classification", "top1": 0.5, "top5": None, "images": 2, "failed_images": [],
                 "dataset": {"root": "/data/val", "fingerprint": "aaaa"}, "provider": "cpu", "batch": 8,
                 "compare": None, "failed": 0, "created": "2026-01-01T00:00:00Z"},
        "bbbb": {"task": "detection", "map": 0.25, "map_50": 0.5, "map_75": None, "images": 3, "detections": 7,
                 "per_category": {"cat": 0.25}, "dataset": {"root": "/data/coco"}, "provider": "cpu"},
    }
    data = tiny_record(evaluations=runs)
    record = Record.from_json(data)
    assert record.evaluations is not None
    classified, detected = record.evaluations["aaaa"], record.evaluations["bbbb"]
    assert (classified.top1, classified.top5, classified.images, classified.failed) == (0.5, None, 2, 0)
    assert classified.scores == {"top1": 0.5, "top5": None} and classified.other["batch"] == 8
    assert detected.scores == {"map": 0.25, "map_50": 0.5, "map_75": None} and detected.other["detections"] == 7
    assert json.dumps(record.to_json()["evaluations"]) == json.dumps(runs)  # same keys, same order, nulls kept
    with pytest.raises(RecordError, match=r"evaluations\.aaaa\.top1: expected a number or null"):
        Record.from_json(tiny_record(evaluations={"aaaa": {"top1": "high"}}))


def test_the_recipe_is_typed_and_writes_back_as_it_was_read() -> None:
    data = v1()  # zoo 0.1's recipe: "size": null written, no later fields
    record = Record.from_json(data)
    recipe = record.recipe
    assert (recipe.opset, recipe.size, recipe.dtype, record.dtype) == (18, None, "float32", "float32")
    assert record.recipe.calibration is None and "calibration" not in record.to_json()["recipe"]
    assert json.dumps(record.to_json()["recipe"]) == json.dumps(data["recipe"])  # order and the null kept
    fetched = Record.from_json(tiny_record(recipe={}, exporter="fetched"))
    assert fetched.recipe.opset is None and fetched.to_json()["recipe"] == {} and fetched.dtype is None
    later = {"dtype": "int8", "opset": 18, "calibration": "/images", "future": [1, 2]}
    again = Record.from_json(tiny_record(recipe=later))
    assert again.recipe.calibration == "/images" and again.recipe.other == {"future": [1, 2]}
    assert json.dumps(again.to_json()["recipe"]) == json.dumps(later)
    with pytest.raises(RecordError, match=r"recipe\.dynamic_batch: expected true or false or null"):
        Record.from_json(tiny_record(recipe={"dynamic_batch": "yes"}))


# -- what leaves this machine: the three views, pinned -------------------------------------------
# sha256 of each view's bytes for ``_leaving()``, as written by zoo before the views were named on
# Record (the .onnx props, a remote manifest's record, the Hub's zoo.json and model card).
PINNED_VIEWS = {
    "onnx": "de2251a99f2e1e3b32ba626217c71783d93db8619d9f451f097a90658d7d0212",
    "remote": "7deab61c0cad656873e1e5dc2d0c610aa0dda902bb3929ada2a88ab299aabb75",
    "hub": "36494eb9ea7a510ffd9cdfc83b76ab897cf80f28cbb6d5765e8a3a04423c9a4f",
    "card": "f7cff195c2c8f37b7b92643dcbcd3e3a278f237fd3819360121e5022ac5de350",
}


def _leaving() -> Record:
    """A record with every machine-local fact the views drop or shorten."""
    data = v1()
    data.update(name="local:/home/alice/ckpt.pth", ref="local:/home/alice/ckpt.pth",
                created="2026-01-02T03:04:05+00:00", export_seconds=12.5)
    data["source"]["name"] = "local"
    data["weights"] = {"tag": "sha256:" + "ab" * 32, "file": "/home/alice/ckpt.pth", "sha256": "ab" * 32}
    data["recipe"].update(dtype="int8", calibration="/data/calibration", calibration_size=8)
    data["evaluations"] = {"f" * 16: {"task": "classification", "top1": 0.75, "top5": None, "images": 4,
                                      "dataset": {"root": "/data/val", "fingerprint": "f" * 16},
                                      "provider": "cpu", "created": "2026-01-02T03:04:05+00:00"}}
    return Record.from_json(data)


def test_the_three_views_of_what_leaves_this_machine_are_pinned(tmp_path: Path) -> None:
    import hashlib

    import onnx

    from zoo.hub import model_card
    from zoo.metadata import write_props

    record = _leaving()
    path = tiny_onnx(tmp_path / "model.onnx", props={"other.tool": "kept"})
    write_props(path, record)
    written = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert written == {"other.tool": "kept", **record.for_onnx()}
    views = {
        "onnx": json.dumps(record.for_onnx(), sort_keys=True).encode(),
        "remote": (json.dumps(record.for_remote(), indent=1) + "\n").encode(),
        "hub": (json.dumps(record.for_hub(), indent=2) + "\n").encode(),
        "card": model_card(record, "alice/tiny").encode(),
    }
    assert {name: hashlib.sha256(data).hexdigest() for name, data in views.items()} == PINNED_VIEWS
    carried = json.loads(record.for_onnx()["zoo.metadata"])
    assert carried["ref"] == "local:ckpt.pth" and carried["weights"]["file"] == "ckpt.pth"
    assert carried["recipe"]["calibration"] == "calibration"
    assert "evaluations" not in carried and "created" not in carried
    assert "files" not in record.for_remote() and record.for_remote()["evaluations"] == record.to_json()["evaluations"]
    assert record.for_hub()["weights"]["file"] == "ckpt.pth" and record.for_hub()["ref"] == record.ref
