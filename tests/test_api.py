"""The Python API: every documented function importable from ``zoo``, callable after any other call."""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo

TINY = "timm:test_resnet"
FAST = {"weights": "none", "exporter": "torchscript"}  # the exporter is not the point here: the faster one


def test_every_documented_function_works_twice_in_one_process(home: Path, tmp_path: Path) -> None:
    for round_ in range(2):
        pulled = zoo.pull(TINY, **FAST)
        assert pulled.cached is False and zoo.pull(TINY, **FAST).cached is True
        assert pulled.entry.model_path.is_file()
        exported = zoo.export(TINY, tmp_path / f"out{round_}", **FAST)
        assert exported.key == pulled.entry.key and exported.model_path.is_file()
        assert zoo.find(TINY, **FAST).key == pulled.entry.key
        assert [e.key for e in zoo.entries()] == [pulled.entry.key]
        assert [e.key for e in zoo.entries("TIMM:test_res*")] == [pulled.entry.key]  # by ref, any case
        assert zoo.entries("resnet*") == []
        assert zoo.info(TINY).record.key == pulled.entry.key
        assert zoo.info(str(exported.model_path)).record.ref == TINY
        assert zoo.resolve_name(TINY, **FAST).key == pulled.entry.key
        assert zoo.locate(TINY, **FAST).path == pulled.entry.model_path
        assert [r["problems"] for r in zoo.verify()] == [[]]
        assert zoo.gc() == []
        assert any(row["ref"] == TINY for row in zoo.available("test_res*"))
        assert {p.name for p in zoo.plugins()} >= {"zoo_timm", "zoo_torchvision", "zoo_local"}
        ran = zoo.run(TINY, topk=2, **FAST)
        assert ran["provider"] == "cpu" and len(ran["predictions"][0]) == 2
        timed = zoo.bench(TINY, iterations=2, warmup=0, **FAST)
        assert timed[0]["mode"] == "naive" and timed[0]["p50_ms"] > 0
        assert zoo.remove(TINY, **FAST).key == pulled.entry.key
        assert zoo.entries() == []


@pytest.mark.parametrize("call", [
    lambda: zoo.pull(TINY, wieghts="none"),
    lambda: zoo.pull(TINY, opest=13),
    lambda: zoo.find(TINY, dtpye="float16"),
    lambda: zoo.export(TINY, "out", num_clases=3),
])
def test_a_misspelled_keyword_is_a_type_error(home: Path, call) -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        call()


def test_source_options_are_named_parameters(home: Path, tmp_path: Path) -> None:
    import torch

    from zoo.errors import UserError

    checkpoint = tmp_path / "ft.pth"
    import timm

    torch.save(timm.create_model("test_resnet", num_classes=3).state_dict(), checkpoint)
    entry = zoo.export(f"local:{checkpoint}", tmp_path / "out", arch=TINY, num_classes=3, strict=True,
                       exporter="torchscript")
    assert entry.metadata["outputs"][0]["shape"][-1] == 3
    with pytest.raises(UserError, match="arch"):
        zoo.export(f"local:{checkpoint}", tmp_path / "out2")


def test_no_submodule_shadows_an_exported_name() -> None:
    import importlib
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(zoo.__path__)}
    assert not modules & set(zoo.__all__), "a submodule would replace the function of the same name"
    for module in modules - {"__main__"}:
        importlib.import_module(f"zoo.{module}")
    for name in zoo.__all__:
        assert not isinstance(getattr(zoo, name), type(zoo)), name


def test_an_entry_is_named_by_its_key_or_a_unique_prefix(home: Path, tmp_path: Path) -> None:
    import timm
    import torch

    checkpoint = tmp_path / "ft.pth"
    torch.save(timm.create_model("test_resnet", num_classes=3).state_dict(), checkpoint)
    pulled = zoo.pull(f"local:{checkpoint}", arch=TINY, num_classes=3, exporter="torchscript")
    key = pulled.entry.key
    for name in (key, key[:6]):
        assert zoo.find(name).key == key
        assert zoo.info(name).record.key == key
        assert zoo.pull(name).cached is True
    with pytest.raises(zoo_errors().UserError, match="unknown model"):
        zoo.find("0123")  # too short to be a key: a name, and no such model
    repaired = zoo.pull(key[:8], force=True)  # the repair hint's command, with nothing else given
    assert repaired.entry.key == key and repaired.cached is False
    checkpoint.unlink()  # an entry whose weights file is gone can still be found and removed
    assert zoo.remove(key[:6]).key == key
    assert zoo.entries() == []


def zoo_errors():
    import zoo.errors

    return zoo.errors


def test_the_remote_and_the_plugin_kit_are_functions_too(copy_store: Path, tmp_path: Path) -> None:
    from zoo.errors import UnknownModelError, ZooWarning

    (key,) = [e.key for e in zoo.entries()]
    shared = tmp_path / "remote"
    url = shared.as_uri()
    assert zoo.remote_push(key, url=url)["key"] == key
    assert [r["key"] for r in zoo.remote_list(url)] == [key]
    assert zoo.remote_verify(url)["ok"] is True
    assert zoo.remote_gc(url)["removed"] == []
    (shared / "entries" / f"{'0' * 20}.json").write_text("not a manifest")
    with pytest.warns(ZooWarning, match=f"entries/{'0' * 20}.json"):  # said, and the good entry still listed
        assert [r["key"] for r in zoo.remote_list(url)] == [key]
    assert zoo.remote_verify(url)["ok"] is False
    with pytest.raises(UnknownModelError, match="no source or plugin called 'nosuch'"):
        zoo.check_plugin("nosuch")
