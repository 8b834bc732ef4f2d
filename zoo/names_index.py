"""The index of stored names (``names.json``): which keys a name, ref or alias was stored under.

Finding a stored entry by name used to read and check every ``zoo.json`` (5 s for 500
entries). The index keeps, per key, the names its record answers to and the stat identity
of that record (device, inode, size, mtime_ns, ctime_ns, as ``zoo.trust`` does for files).
A lookup lists ``models/`` and stats each record (a few ms for 500); only a record that is
new or whose identity moved (a forced pull, an edit, an evaluation added) is read again. So
the index is never trusted past what the disk says: writers that never touch it (older
releases, a copied store, a crash) cost one re-read, never a wrong answer. A record changed
within the clock's granularity of being read is not remembered (the racy rule).

It is rewritten atomically (a temp file renamed over it) after a publish, an ``rm`` and a
``gc``, and whenever a lookup found it stale; a missing, unreadable or foreign file is
rebuilt from the records. Concurrent writers may each write their own view: the next
lookup repairs whatever one of them missed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import IntegrityError
from .files import read_memo, write_memo
from .record import Record, RecordError
from .trust import settled

if TYPE_CHECKING:
    from .store import Store

VERSION = 1
MAX_BYTES = 64 << 20  # ~200 bytes a key: far more entries than a store holds


def identity(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def names_of(record: Record) -> list[str]:
    """What a stored entry is found by: the name it was pulled under, its ref and its alias."""
    return sorted({n for n in (record.name, record.ref, record.alias) if n})


class NameIndex:
    """``names.json`` of one store: ``keys(name)`` without reading every record."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def keys(self, name: str) -> list[str]:
        """The keys whose records answer to ``name`` (its name, ref or alias), sorted."""
        known = self.sync()
        return sorted(key for key, row in known.items() if name in row["names"])

    def sync(self) -> dict[str, dict[str, Any]]:
        """The index, brought up to date with the disk (and rewritten when it moved)."""
        from .store import METADATA_FILE

        path = self.store.layout.names  # checked below, before anything is read or written through it
        self.store.layout.inside(path)
        data = read_memo(path, MAX_BYTES)
        old = data.get("keys") if isinstance(data, dict) and data.get("version") == VERSION else None
        old = old if isinstance(old, dict) else {}
        known: dict[str, dict[str, Any]] = {}
        keys = self.store.keys()
        changed = set(old) != set(keys)
        for key in keys:
            stamp = identity(self.store.models_dir / key / METADATA_FILE)
            row = old.get(key)
            if stamp is not None and _well_formed(row) and row["id"] == stamp:
                known[key] = row
                continue
            changed = True
            names = self._read(key)
            if names is not None and stamp is not None and settled(stamp[3]):
                known[key] = {"id": stamp, "names": names}
            elif names is not None:  # racily new: answer from it, remember it next time
                known[key] = {"id": None, "names": names}
        if changed:
            self.write(known)
        return known

    def write(self, known: dict[str, dict[str, Any]]) -> None:
        """Replace ``names.json`` atomically; a store that cannot be written reads records next time."""
        keep = {key: row for key, row in known.items() if row.get("id") is not None}
        write_memo(self.store.layout.inside(self.store.layout.names), {"version": VERSION, "keys": keep})

    def _read(self, key: str) -> list[str] | None:
        """The names of entry ``key``'s record; None for a broken or missing one (never an answer)."""
        try:
            entry = self.store.get(key)
        except (IntegrityError, RecordError, OSError):
            return None
        return names_of(entry.record) if entry is not None else None


def _well_formed(row: Any) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("id"), list) and isinstance(row.get("names"), list)
            and all(isinstance(n, str) for n in row["names"]))
