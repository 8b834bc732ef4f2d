"""The installed plugins' entry points, remembered between runs.

Finding them means importing ``importlib.metadata`` and reading every installed
distribution's ``entry_points.txt``: about 30 ms, on every command. Installing, upgrading or
removing a distribution adds or removes a ``.dist-info`` folder, which moves the modification
time of the ``sys.path`` folder holding it; so the result is kept with each ``sys.path``
entry's mtime (the rule ``importlib.metadata`` itself uses to cache a folder's listing within a
process) and found again when any of them moves. As for trusted hashes, a folder modified
too recently could change again within the clock's granularity, so such a result is not
kept (``zoo.trust.settled``).

The remembered list is only a cache: a file that does not parse, or names a value that is
not an entry point, is ignored and the distributions are read again. It belongs to the
Python environment, not to a store, so it lives in the user's cache dir (``cache_dir``) and
never under ``ZOO_HOME``: a command refused before it touches the store still loads plugins.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .files import read_memo, write_memo
from .trust import settled

# importlib.metadata.EntryPoint's own pattern: "module.path:attr.path [extras]".
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


@dataclass(frozen=True)
class EntryPoint:
    """One entry point of a group, with the distribution that declares it."""

    name: str
    value: str
    distribution: str | None = None
    version: str | None = None

    def load(self) -> Any:
        """Import the module the value names and return the attribute it points at."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"entry point {self.name} = {self.value!r} is not MODULE[:ATTRIBUTE]")
        target = importlib.import_module(match["module"])
        for part in filter(None, (match["attr"] or "").split(".")):
            target = getattr(target, part)
        return target


def cache_dir() -> Path:
    """Where the lists are kept: ``entry-points`` in the platform's user cache dir for zoo."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("zoo")) / "entry-points"


def installed(group: str, cache_dir: Path | None = None) -> list[EntryPoint]:
    """The entry points of ``group``, from ``cache_dir`` while no ``sys.path`` folder has changed."""
    paths = [os.path.abspath(p) for p in sys.path]  # "" is the working directory
    stamps = [_mtime_ns(p) for p in paths]
    record = _record_path(cache_dir, group, paths) if cache_dir is not None else None
    if record is not None and not _inside(cache_dir.parent, record):
        record = None  # a memo (or its folder) leading out of zoo's cache dir is never read or written through
    if record is not None and (found := _remembered(record, stamps)) is not None:
        return found
    found = _scan(group)
    unchanged = stamps == [_mtime_ns(p) for p in paths] and all(s is None or settled(s) for s in stamps)
    if record is not None and unchanged:
        write_memo(record, {"stamps": stamps, "entry_points": [asdict(ep) for ep in found]})
    return found


def _scan(group: str) -> list[EntryPoint]:
    import importlib.metadata

    found = []
    for ep in importlib.metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        found.append(EntryPoint(ep.name, ep.value, dist.name if dist else None, dist.version if dist else None))
    return found


def _mtime_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _record_path(cache_dir: Path, group: str, paths: list[str]) -> Path:
    # One file per interpreter and search path, so environments sharing a store do not evict each other.
    digest = hashlib.sha256(json.dumps([group, sys.executable, paths]).encode()).hexdigest()[:20]
    return cache_dir / f"{digest}.json"


def _inside(folder: Path, path: Path) -> bool:
    """Whether ``path`` (links followed) stays in ``folder``: the same check as the store's folders."""
    from .env import contained
    from .errors import UserError

    try:
        contained(folder, path)
    except (UserError, OSError):
        return False
    return True


def _remembered(record: Path, stamps: list[int | None]) -> list[EntryPoint] | None:
    data = read_memo(record)
    try:
        if data["stamps"] != stamps:
            return None
        found = [EntryPoint(**fields) for fields in data["entry_points"]]
    except (TypeError, KeyError):  # None (no memo), or not the shape written
        return None
    return found if all(map(_well_formed, found)) else None


def _well_formed(ep: EntryPoint) -> bool:
    return (isinstance(ep.name, str) and isinstance(ep.value, str) and _VALUE.match(ep.value) is not None
            and all(v is None or isinstance(v, str) for v in (ep.distribution, ep.version)))
