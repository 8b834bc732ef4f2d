"""The store's folders, declared once (zoo.layout): every one contained, and all of a key's
memos and caches go with its entry."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error

from zoo.layout import FOLDERS, NAMES
from zoo.runtime import ProviderOptions, Target


def stored_key(zoo) -> str:
    [row] = json.loads(zoo("list", "--json").stdout)
    return row["key"]


def age(folder: Path) -> None:
    """Make the entry's files old enough to be trusted (a racily new file is never remembered)."""
    past = time.time() - 60
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def test_a_hashes_folder_leading_out_of_the_store_is_never_written_through(copy_store: Path, zoo,
                                                                            tmp_path: Path) -> None:
    key = stored_key(zoo)
    age(copy_store / "generations")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    planted = outside / f"{key}.json"
    planted.write_text("keep")
    shutil.rmtree(copy_store / "hashes", ignore_errors=True)  # the shared store may hold memos already
    (copy_store / "hashes").symlink_to(outside)
    for command in (("run", key), ("pull", key), ("verify", key), ("bench", key, "--iterations", "1",
                                                                   "--warmup", "0")):
        proc = zoo(*command, check=False)
        if proc.returncode != 0:
            one_line_error(proc, 1, "refusing path", "outside")
        assert sorted(os.listdir(outside)) == [f"{key}.json"] and planted.read_text() == "keep", command
    # The memo file itself a link out: the same refusal.
    (copy_store / "hashes").unlink()
    (copy_store / "hashes").mkdir()
    (copy_store / "hashes" / f"{key}.json").symlink_to(planted)
    one_line_error(zoo("run", key, check=False), 1, "refusing path", "outside")
    assert planted.read_text() == "keep"


def test_a_run_keeps_the_memo_inside_the_store(copy_store: Path, zoo) -> None:
    key = stored_key(zoo)
    age(copy_store / "generations")
    zoo("run", key)
    assert (copy_store / "hashes" / f"{key}.json").is_file()
    # Everything the store holds at the top is declared in one place.
    assert set(os.listdir(copy_store)) - {"config"} <= {*FOLDERS, NAMES}


def test_rm_and_gc_remove_everything_kept_for_a_key(copy_store: Path, zoo, tmp_path: Path) -> None:
    key = stored_key(zoo)
    age(copy_store / "generations")
    zoo("run", key)
    engines = copy_store / "tensorrt" / key
    engines.mkdir(parents=True)
    (engines / "engine.bin").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    (engines / "link").symlink_to(outside)  # removed as a link, never followed
    assert (copy_store / "hashes" / f"{key}.json").is_file()
    zoo("rm", key)
    assert not (copy_store / "hashes" / f"{key}.json").exists() and not engines.exists()
    assert (outside / "keep").read_text() == "keep"
    # What an older release (or a crash between the two steps) left for a key with no entry: gc takes it.
    orphan = "ab" * 10
    (copy_store / "hashes" / f"{orphan}.json").write_text("{}")
    (copy_store / "tensorrt" / orphan).mkdir()
    (copy_store / "tensorrt" / "not-a-key").mkdir()  # engines of a bare .onnx file: not an entry's
    removed = json.loads(zoo("gc", "--json").stdout)["removed"]
    assert sorted(Path(p).name for p in removed) == [orphan, f"{orphan}.json"]
    assert os.listdir(copy_store / "hashes") == [] and os.listdir(copy_store / "tensorrt") == ["not-a-key"]


def test_an_entry_leading_to_another_keys_files_is_refused_and_named(copy_store: Path, zoo) -> None:
    key = stored_key(zoo)
    other = "0" * 20
    generation = os.readlink(copy_store / "models" / key)
    (copy_store / "models" / other).symlink_to(generation)
    for command in (("run", other), ("info", other), ("pull", other)):
        one_line_error(zoo(*command, check=False), 3, f"entry {other} leads to the files of entry {key}")
    proc = zoo("verify", check=False)
    assert proc.returncode == 3 and f"entry {other} leads to the files of entry {key}" in proc.stdout + proc.stderr
    zoo("rm", other)  # the stray link goes; the entry whose files they are stays whole
    assert not os.path.lexists(copy_store / "models" / other)
    assert zoo("verify").returncode == 0 and json.loads(zoo("list", "--json").stdout)[0]["key"] == key


def test_run_and_bench_leave_the_callers_options_as_they_were(copy_store: Path, zoo) -> None:
    from zoo import api
    from zoo.benchmark import bench
    from zoo.runtime import run

    key = stored_key(zoo)
    entry = api.find(key)
    target = Target(path=entry.model_path, record=entry.record, entry=entry, verified=True)
    options = ProviderOptions(threads=1)
    before = repr(options)
    run(target, "cpu", options=options)
    assert repr(options) == before and options.cudnn_conv_algo_search is None
    bench(target, "cpu", warmup=0, iterations=1, options=options)
    assert repr(options) == before
    assert np.isfinite(api.run(key, runtime=options)["run_ms"]) and repr(options) == before


def test_the_engine_cache_of_an_entry_stays_in_the_store(copy_store: Path, zoo, tmp_path: Path) -> None:
    from zoo import api
    from zoo.runtime import trt_cache_dir

    key = stored_key(zoo)
    entry = api.find(key)
    target = Target(path=entry.model_path, record=entry.record, entry=entry)
    assert trt_cache_dir(target) == copy_store.resolve() / "tensorrt" / key
    shutil.rmtree(copy_store / "tensorrt", ignore_errors=True)
    (copy_store / "tensorrt").symlink_to(tmp_path)
    with pytest.raises(Exception, match="outside"):
        trt_cache_dir(target)
