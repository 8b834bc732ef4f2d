"""Hash once, trust while the stat identity holds, re-hash when anything moves (zoo.trust)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

import zoo.trust
from zoo.trust import TrustedHashes


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = zoo.trust.file_sha256

    def counting(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(zoo.trust, "file_sha256", counting)
    return calls


def old_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def test_an_unchanged_file_is_hashed_once_across_processes(tmp_path: Path, counted: list[Path]) -> None:
    model = old_file(tmp_path / "model.onnx", b"weights" * 1000)
    record = tmp_path / "hashes" / "key.json"
    first = TrustedHashes(record)
    assert first.sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest()
    first.save()
    again = TrustedHashes(record)  # a new process reads what the first one remembered
    assert again.sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest()
    assert counted == [model]


def test_a_rewritten_file_is_hashed_again_even_with_its_old_mtime(tmp_path: Path, counted: list[Path]) -> None:
    model = old_file(tmp_path / "model.onnx", b"a" * 4096)
    hashes = TrustedHashes(tmp_path / "hashes.json")
    hashes.sha256(model)
    stat = model.stat()
    with open(model, "r+b") as handle:  # same size, one byte flipped, mtime put back
        handle.write(b"b")
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert hashes.sha256(model) == hashlib.sha256(b"b" + b"a" * 4095).hexdigest()  # ctime moved
    assert counted == [model, model]


def test_a_racily_new_file_is_not_trusted(tmp_path: Path, counted: list[Path]) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"fresh")
    hashes = TrustedHashes(tmp_path / "hashes.json")
    hashes.sha256(model)
    hashes.sha256(model)
    assert counted == [model, model]


def test_a_hostile_hash_record_is_ignored(tmp_path: Path, counted: list[Path]) -> None:
    model = old_file(tmp_path / "model.onnx", b"x")
    record = tmp_path / "hashes.json"
    for content in ("[1, 2]", "{not json", json.dumps({str(model): {"identity": 1, "sha256": 2}})):
        record.write_text(content)
        assert TrustedHashes(record).sha256(model) == hashlib.sha256(b"x").hexdigest()
    os.mkfifo(tmp_path / "fifo.json")
    assert TrustedHashes(tmp_path / "fifo.json").sha256(model) == hashlib.sha256(b"x").hexdigest()
    assert len(counted) == 4
