"""The local store: one directory per entry, written atomically.

Layout under ``ZOO_HOME``::

    models/<key>/model.onnx    (+ external data files)
    models/<key>/zoo.json      metadata, with the size and sha256 of every file
    tmp/<key>.<random>/        entries being written; renamed into models/ when complete
    locks/<key>.lock           per-key lock: concurrent pulls of one model export once

Correctness comes from the temp dir + rename (an entry is either complete or absent);
the lock only saves duplicate work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .env import contained, home
from .errors import IntegrityError, UserError
from .recipe import file_sha256

METADATA_FILE = "zoo.json"
MODEL_FILE = "model.onnx"
_KEY = re.compile(r"[0-9a-f]{20}")


@dataclass
class Entry:
    """One stored model."""

    key: str
    dir: Path
    metadata: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.dir / MODEL_FILE

    @property
    def name(self) -> str:
        return self.metadata.get("name", "")

    @property
    def ref(self) -> str:
        return self.metadata.get("ref", "")

    @property
    def sha256(self) -> str:
        return next((f["sha256"] for f in self.files if f["path"] == MODEL_FILE), "")

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files)

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.metadata.get("files", [])

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "key": self.key,
            "path": str(self.model_path),
            "size": self.size,
            "sha256": self.sha256,
            "weights": self.metadata.get("weights", {}).get("tag"),
            "created": self.metadata.get("created"),
        }


def describe_files(directory: Path) -> list[dict[str, Any]]:
    """Size and sha256 of every file in an entry directory but ``zoo.json``."""
    files = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != METADATA_FILE:
            files.append({
                "path": path.relative_to(directory).as_posix(),
                "size": path.stat().st_size,
                "sha256": file_sha256(path),
            })
    return files


class Store:
    """Entries under a root directory (``ZOO_HOME`` by default)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else home()
        self.models_dir = self.root / "models"
        self.tmp_dir = self.root / "tmp"
        self.locks_dir = self.root / "locks"

    def entry_dir(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise UserError(f"invalid store key {key!r}")
        return contained(self.root, self.models_dir / key)

    def get(self, key: str) -> Entry | None:
        directory = self.entry_dir(key)
        try:
            metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise IntegrityError(
                f"entry {key} has an unreadable {METADATA_FILE} ({exc}); "
                "repair it with `zoo pull --force NAME` or remove it with `zoo rm`"
            ) from None
        return Entry(key=key, dir=directory, metadata=metadata)

    def entries(self) -> Iterator[Entry]:
        """Every readable entry; broken ones are skipped (``zoo verify`` reports them)."""
        if not self.models_dir.is_dir():
            return
        for directory in sorted(self.models_dir.iterdir()):
            if not _KEY.fullmatch(directory.name):
                continue
            try:
                entry = self.get(directory.name)
            except IntegrityError:
                continue
            if entry is not None:
                yield entry

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        from filelock import FileLock

        self.locks_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.locks_dir / f"{key}.lock")):
            yield

    def create(
        self,
        key: str,
        produce: Callable[[Path], dict[str, Any]],
        force: bool = False,
    ) -> tuple[Entry, bool]:
        """The entry for ``key``, made by ``produce(tmp_dir) -> metadata`` on a miss.

        Returns ``(entry, created)``. ``produce`` writes the model files into the temp
        dir; the store adds file hashes and ``zoo.json`` and renames the dir into place.
        """
        final = self.entry_dir(key)
        with self.lock(key):
            existing = self.get(key) if not force else None
            if existing is not None:
                return existing, False
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=self.tmp_dir))
            try:
                metadata = produce(tmp)
                metadata["files"] = describe_files(tmp)
                write_json(tmp / METADATA_FILE, metadata)
                self.models_dir.mkdir(parents=True, exist_ok=True)
                if final.exists():
                    self._discard(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return Entry(key=key, dir=final, metadata=metadata), True

    def remove(self, key: str) -> bool:
        directory = self.entry_dir(key)
        if not directory.exists():
            return False
        with self.lock(key):
            self._discard(directory)
        return True

    def _discard(self, directory: Path) -> None:
        """Move out of ``models/`` first (atomic), then delete at leisure."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        trash = Path(tempfile.mkdtemp(prefix="trash.", dir=self.tmp_dir))
        os.replace(directory, trash / directory.name)
        shutil.rmtree(trash, ignore_errors=True)

    def verify(self, entry: Entry) -> list[str]:
        """Problems with an entry's files: missing, resized or re-hashed."""
        problems = []
        for record in entry.files:
            path = contained(entry.dir, entry.dir / record["path"])
            if not path.is_file():
                problems.append(f"{record['path']}: missing")
            elif path.stat().st_size != record["size"]:
                problems.append(f"{record['path']}: size {path.stat().st_size} != {record['size']}")
            elif file_sha256(path) != record["sha256"]:
                problems.append(f"{record['path']}: sha256 mismatch")
        if not entry.files:
            problems.append(f"{METADATA_FILE}: lists no files")
        return problems

    def broken(self) -> list[tuple[str, str]]:
        """Entry directories whose ``zoo.json`` is missing or unreadable."""
        found = []
        if self.models_dir.is_dir():
            for directory in sorted(self.models_dir.iterdir()):
                if not _KEY.fullmatch(directory.name):
                    continue
                try:
                    if self.get(directory.name) is None:
                        found.append((directory.name, f"{METADATA_FILE} missing"))
                except IntegrityError as exc:
                    found.append((directory.name, str(exc)))
        return found


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
