"""The store's folders, declared once: what lives under ``ZOO_HOME`` and the check every path passes.

Layout under the store root::

    models/<key>                 -> ../generations/<gen>   the entry (a symlink to its generation)
    generations/<gen>/           model.onnx (+ external data) and zoo.json
    tmp/<key>.<pid>@<host>.<r>/  an entry being written
    locks/<key>.lock             the per-key lock
    hashes/<key>.json            the trusted-hash memo of an entry's files (zoo.trust)
    tensorrt/<key>/              TensorRT engines built for the entry
    names.json                   the index of stored names (zoo.names_index)

Every path zoo reads or writes under the root goes through ``Layout.inside``: resolved, it
must stay inside the root, so a folder (or a file in it) that is a symlink out of the store
is refused before anything is written through it. ``rm`` and ``gc`` remove what
``Layout.kept_for`` lists for a key, so nothing zoo keeps for an entry outlives it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .env import contained
from .errors import UserError

MODELS = "models"
GENERATIONS = "generations"
TMP = "tmp"
LOCKS = "locks"
HASHES = "hashes"
TENSORRT = "tensorrt"
NAMES = "names.json"
# Every folder of the store, in the order docs/reliability.md describes them.
FOLDERS = (MODELS, GENERATIONS, TMP, LOCKS, HASHES, TENSORRT)


@dataclass(frozen=True)
class Layout:
    """The folders of the store at ``root``; paths are built here and checked by ``inside``."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / MODELS

    @property
    def generations(self) -> Path:
        return self.root / GENERATIONS

    @property
    def tmp(self) -> Path:
        return self.root / TMP

    @property
    def locks(self) -> Path:
        return self.root / LOCKS

    @property
    def hashes(self) -> Path:
        return self.root / HASHES

    @property
    def tensorrt(self) -> Path:
        return self.root / TENSORRT

    @property
    def names(self) -> Path:
        return self.root / NAMES

    def inside(self, path: Path) -> Path:
        """``path`` resolved (links followed), or ``UserError`` when that leaves the store."""
        return contained(self.root, path)

    def lock_file(self, key: str) -> Path:
        return self.inside(self.locks / f"{key}.lock")

    def hashes_file(self, key: str) -> Path:
        """``hashes/<key>.json``, checked: a ``hashes`` folder (or memo) leading out is refused."""
        return self.inside(self.hashes / f"{key}.json")

    def engine_dir(self, key: str) -> Path:
        """``tensorrt/<key>``, checked like every other folder of the store."""
        return self.inside(self.tensorrt / key)

    def kept_for(self, key: str) -> list[Path]:
        """What zoo keeps for entry ``key`` besides the entry itself (memos, provider caches).

        The lock file is not listed: another process may hold it, and it is empty.
        """
        return [self.hashes / f"{key}.json", self.tensorrt / key]

    def forget(self, key: str) -> list[Path]:
        """Remove what ``kept_for(key)`` lists; returns what went. A link is removed, never
        followed, and nothing is removed through a folder that leads out of the store."""
        removed = []
        for path in self.kept_for(key):
            if not os.path.lexists(path):
                continue
            try:
                self.inside(path.parent)  # the folder holding it must be the store's own
            except UserError:  # a folder leading out: not ours to delete in
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    path.unlink()
                except OSError:
                    continue
            if not os.path.lexists(path):
                removed.append(path)
        return removed
