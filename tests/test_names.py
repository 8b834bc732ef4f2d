"""A name travels one way: checked once, resolved once, a stored one found by the index of
names (``names.json``) without reading every record or asking a source that imports torch.

The plugin is ``tests/plugins/zoo_test_mirror.py``, a fetch-only source (ready ONNX files from
a configured mirror), installed as an entry point of a ``.dist-info`` in a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import REPO, Ran, entry_dirs, invoke, one_line_error, run_cli, zoo_env

import zoo
from zoo.errors import NotInStoreError, UserError, ZooWarning
from zoo.host import reset_host
from zoo.record import Record

PLUGINS = Path(__file__).parent / "plugins"
WHO = "plugin mirror (zoo-test-mirror 1.2.3)"


@pytest.fixture
def mirror(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Ran]]:
    """``mirror(*args, check=True, **env)``: ``zoo ARGS`` in process with the mirror plugin
    installed and configured (``ZOO_TEST_MIRROR``); the same paths go to library calls."""
    site = tmp_path / "site"
    info = site / "zoo_test_mirror-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-test-mirror\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[zoo]\nmirror = zoo_test_mirror\n")
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "catalogue.json").write_text(json.dumps({"colours": "ab" * 32}))
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(PLUGINS), str(REPO), str(REPO / "plugins")]))
    monkeypatch.setenv("ZOO_TEST_MIRROR", str(folder))
    reset_host()

    def run(*args: str, check: bool = True, **env: str | None) -> Ran:
        return invoke(*args, env=env, check=check)

    yield run
    reset_host()


def test_a_stored_bare_name_of_a_plugin_is_found_without_torch(home: Path, mirror, tmp_path: Path) -> None:
    pulled = json.loads(mirror("pull", "colours", "--json").stdout)
    poison = tmp_path / "poison"
    for name in ("torch", "torchvision", "timm"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} must not be imported')\n")
    env = zoo_env(home, PYTHONPATH=os.pathsep.join([str(poison), os.environ["PYTHONPATH"]]),
                  ZOO_TEST_MIRROR=os.environ["ZOO_TEST_MIRROR"])
    hit = json.loads(run_cli("pull", "colours", "--json", env=env).stdout)
    assert hit["cached"] is True and hit["key"] == pulled["key"]
    assert json.loads(run_cli("info", "colours", "--json", env=env).stdout)["key"] == pulled["key"]
    ran = json.loads(run_cli("run", "colours", "--json", env=env).stdout)
    assert [p["label"] for p in ran["predictions"][0]][:1] in (["red"], ["green"], ["blue"])
    # The poison works: what does need a torch source fails.
    miss = run_cli("pull", "resnet18", "--weights", "none", env=env, check=False)
    assert miss.returncode != 0 and "must not be imported" in miss.stderr


def test_a_bare_name_goes_through_the_sources_spec(home: Path, mirror) -> None:
    one_line_error(mirror("pull", "colours", "--weights", "none", check=False), 1, "cannot apply")
    assert entry_dirs(home) == []
    bare = json.loads(mirror("pull", "colours", "--json").stdout)
    ref = json.loads(mirror("pull", "mirror:colours", "--json").stdout)
    assert ref["cached"] is True and ref["key"] == bare["key"]  # one path, one key
    assert zoo.find("colours").record.options == {"catalogue_sha256": "ab" * 32}  # what spec pinned


def test_a_raising_resolve_is_skipped_with_a_warning_naming_the_plugin(home: Path, mirror,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_TEST_MIRROR_FAIL", "resolve")
    with pytest.warns(ZooWarning, match=re.escape(WHO) + r" failed resolving 'squeezenet1_0'.*answered 500.*skipped"):
        resolved = zoo.resolve_name("squeezenet1_0", weights="none")
    assert resolved.spec.ref == "torchvision:squeezenet1_0"
    proc = mirror("info", "squeezenet1_0", "--weights", "none", check=False)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 2 and "not in the store" in lines[1], proc.stderr
    assert lines[0].startswith("zoo: warning: ") and WHO in lines[0]


def test_stored_entries_stay_reachable_when_their_source_cannot_resolve(home: Path, mirror,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    key = json.loads(mirror("pull", "mirror:colours", "--json").stdout)["key"]
    monkeypatch.delenv("ZOO_TEST_MIRROR")
    one_line_error(mirror("pull", "mirror:other", check=False), 4, "not configured")  # it really cannot
    assert json.loads(mirror("info", "mirror:colours", "--json").stdout)["key"] == key
    assert json.loads(mirror("run", "mirror:colours", "--json").stdout)["key"] == key
    hit = json.loads(mirror("pull", "mirror:colours", "--json").stdout)
    assert hit["cached"] is True and hit["key"] == key
    mirror("rm", "mirror:colours")
    assert entry_dirs(home) == []


def test_a_miss_is_resolved_once_and_a_bare_name_checked_once(home: Path, mirror,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import zoo.api
    import zoo.resolve

    calls: dict[str, int] = {"resolve": 0, "check_name": 0}

    def counted(name: str, real: Callable) -> Callable:
        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(zoo.api, "resolve", counted("resolve", zoo.resolve.resolve))
    monkeypatch.setattr(zoo.resolve, "check_name", counted("check_name", zoo.resolve.check_name))
    for run in (lambda: zoo.run("colours"), lambda: zoo.bench("colours", warmup=0, iterations=1)):
        shutil.rmtree(home, ignore_errors=True)
        calls.update(resolve=0, check_name=0)
        run()  # a miss: looked up, then fetched, with one resolution
        assert calls == {"resolve": 1, "check_name": 1}
    calls.update(resolve=0, check_name=0)
    zoo.run("colours")  # a hit by a stored bare name: the index answers, nothing is resolved
    assert calls == {"resolve": 0, "check_name": 1}


def old(path: Path) -> None:
    past = time.time() - 60
    for item in [path, *path.rglob("*")]:
        os.utime(item, (past, past), follow_symlinks=False)


def test_the_index_of_names_finds_an_entry_without_reading_every_record(copy_store: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (key,) = entry_dirs(copy_store)
    for i in range(20):
        copy = copy_store / "models" / f"{i:020x}"
        shutil.copytree(copy_store / "models" / key, copy)
        record = json.loads((copy / "zoo.json").read_text())
        (copy / "zoo.json").write_text(json.dumps({**record, "name": f"model_{i}", "key": copy.name}))
    old(copy_store)
    reads: list[Path] = []
    real = Record.load.__func__

    def load(cls, path, *args, **kwargs):
        reads.append(Path(path))
        return real(cls, path, *args, **kwargs)

    monkeypatch.setattr(Record, "load", classmethod(load))
    assert zoo.find("model_3").key == f"{3:020x}"
    assert len(reads) == 22  # the index is built once: every record, then the entry found
    names = json.loads((copy_store / "names.json").read_text())["keys"]
    assert names[f"{7:020x}"]["names"] == ["model_7", "timm:test_resnet"]
    reads.clear()
    assert zoo.find("model_7").key == f"{7:020x}" and len(reads) == 1
    # A record changed behind the index's back is read again, and only it.
    moved = copy_store / "models" / f"{7:020x}" / "zoo.json"
    moved.write_text(json.dumps({**json.loads(moved.read_text()), "name": "renamed"}))
    reads.clear()
    assert zoo.find("renamed").key == f"{7:020x}" and len(reads) == 2
    with pytest.raises(UserError):
        zoo.find("model_7")
    # rm keeps it current; a lost index is rebuilt from the records.
    zoo.remove("model_3")
    assert f"{3:020x}" not in json.loads((copy_store / "names.json").read_text())["keys"]
    (copy_store / "names.json").unlink()
    assert zoo.find("model_5").key == f"{5:020x}"
    with pytest.raises(NotInStoreError, match="several stored entries match timm:test_resnet"):
        zoo.find("timm:test_resnet")  # stored under 20 keys, none of them what the ref makes now


def test_the_index_never_leads_out_of_the_store(copy_store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "names.json"
    outside.write_text("keep")
    (copy_store / "names.json").unlink(missing_ok=True)
    (copy_store / "names.json").symlink_to(outside)
    proc = invoke("info", "timm:test_resnet", check=False)
    one_line_error(proc, 1, "refusing path", "outside")
    assert outside.read_text() == "keep"
