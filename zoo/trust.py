"""Hash a stored file once, then trust it while its stat identity is unchanged.

Hashes are remembered only for an entry that passed the whole check (hashes and its model's
external-data references), so files that all come from memory also passed that check.

Re-hashing a 100 MB ``model.onnx`` before every ``zoo run`` costs about 0.1 s. Like git's
index, zoo remembers each file's sha256 with its stat identity (device, inode, size,
mtime_ns, ctime_ns) and re-hashes only when one of them moves. Any write through the
file system changes mtime or ctime, and a replaced file has another inode, so a changed
file is always re-hashed. ``zoo verify`` never trusts: it re-hashes every file.

A file modified within the clock's granularity of being hashed could keep its mtime, so
(as git does for "racily clean" entries) a hash is only remembered for a file whose
mtime is safely in the past.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .files import read_memo, write_memo
from .recipe import file_sha256

RACY_S = 2.0  # a file modified this recently is hashed again next time
MAX_BYTES = 1 << 20  # a hash list is tiny; anything bigger is not ours


def identity(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class TrustedHashes:
    """The remembered hashes of one entry's files, kept in one small JSON file."""

    def __init__(self, record: Path) -> None:
        self.record = record
        self._known = self._load()
        self._changed = False
        self.all_trusted = True  # every file asked for so far came from memory, unchanged


    def sha256(self, path: Path) -> str:
        """``path``'s sha256, from memory while its stat identity is unchanged."""
        key = str(path)
        now_id = identity(path)
        known = self._known.get(key)
        if known and known.get("identity") == now_id and isinstance(known.get("sha256"), str):
            return known["sha256"]
        self.all_trusted = False
        digest = file_sha256(path)
        if identity(path) == now_id and settled(now_id[3]):
            self._known[key] = {"identity": now_id, "sha256": digest}
            self._changed = True
        return digest

    def save(self) -> None:
        """Write the hashes atomically; a store that cannot be written just hashes again next time."""
        if self._changed and write_memo(self.record, self._known):
            self._changed = False

    def _load(self) -> dict[str, dict]:
        data = read_memo(self.record, MAX_BYTES)
        return data if isinstance(data, dict) else {}


def settled(mtime_ns: int) -> bool:
    """Whether a file or folder last modified at ``mtime_ns`` is safely in the past: one changed
    within the clock's granularity of being read could change again unseen (git's racy rule)."""
    return time.time_ns() - mtime_ns > RACY_S * 1e9
