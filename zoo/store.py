"""The local store: one directory per entry, written atomically.

Layout under ``ZOO_HOME``::

    models/<key>/model.onnx    (+ external data files)
    models/<key>/zoo.json      metadata, with the size and sha256 of every file
    tmp/<key>.<pid>@<host>.<random>/   an entry being written by process ``pid``
    locks/<key>.lock           per-key lock: concurrent pulls of one model export once

Correctness comes from the temp dir + rename alone: an entry is either complete or
absent, and when two writers race, the first rename wins and the second discards its
copy and returns the winner's entry. The lock only saves duplicate work; without it
(``ZOO_NO_LOCK=1``, a store on a filesystem without ``flock``, a ``locks`` dir that
cannot be created) the store stays correct. Temp dirs whose writer died are removed by
``zoo gc`` and on the next write.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .env import contained, home, no_lock
from .errors import EnvironmentProblem, IntegrityError, StoreWriteError, UserError
from .integrity import check_external_data, external_data_problems
from .recipe import file_sha256

METADATA_FILE = "zoo.json"
MODEL_FILE = "model.onnx"
_KEY = re.compile(r"[0-9a-f]{20}")
# tmp/<key or "trash">.<pid>@<host>.<random>
_TMP = re.compile(r"(?:[0-9a-f]{20}|trash)\.(\d+)@([A-Za-z0-9-]*)\.[A-Za-z0-9_]+")
# A temp dir older than this is stale even when its pid is alive (pid reuse, other hosts).
STALE_AFTER_S = 24 * 3600
# Errors that mean "this store cannot be written", not "zoo has a bug".
_UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
# Below this many free bytes after a failed write, the disk being full is the likely cause.
_NEARLY_FULL = 1 << 20


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
                f"entry {key} has an unreadable {METADATA_FILE} ({_one_line(exc)}); "
                "repair it with `zoo pull --force NAME` or remove it with `zoo rm`"
            ) from None
        if not isinstance(metadata, dict) or not isinstance(metadata.get("files"), list):
            raise IntegrityError(
                f"entry {key} has an invalid {METADATA_FILE} (not zoo metadata); "
                "repair it with `zoo pull --force NAME` or remove it with `zoo rm`"
            )
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
    def lock(self, key: str) -> Iterator[bool]:
        """Hold the per-key lock when one can be had; yields whether it is held.

        Never fails: a store where locking is impossible is still correct, only slower
        under contention (several processes may export the same model).
        """
        fd = self._lock_fd(key)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)  # closing releases the flock

    def _lock_fd(self, key: str) -> int | None:
        if no_lock():
            return None
        try:
            import fcntl
        except ImportError:  # no flock on this platform
            return None
        path = contained(self.root, self.locks_dir / f"{key}.lock")  # checked before anything is made
        try:
            self.locks_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # read-only store, `locks` is not a directory...
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without flock
            os.close(fd)
            return None
        return fd

    def create(
        self,
        key: str,
        produce: Callable[[Path], dict[str, Any]],
        force: bool = False,
        describe: Callable[[Path], list[dict[str, Any]]] = describe_files,
    ) -> tuple[Entry, bool]:
        """The entry for ``key``, made by ``produce(tmp_dir) -> metadata`` on a miss.

        Returns ``(entry, created)``. ``produce`` writes the model files into the temp
        dir; the store adds file hashes and ``zoo.json``, flushes everything to disk and
        renames the dir into place. When another writer's entry appeared meanwhile, that
        entry is returned (``created`` False) and this copy is discarded. ``describe``
        lists the files with their hashes: a producer that already hashed what it wrote
        (a download checked against its manifest) passes that list instead of a re-hash.
        """
        final = self.entry_dir(key)
        with self.lock(key):
            existing = self.get(key) if not force else None
            if existing is not None:
                return existing, False
            self.collect_garbage()
            tmp: Path | None = None
            try:
                tmp = self._new_tmp(key)
                metadata = produce(tmp)
                if (tmp / MODEL_FILE).is_file():  # nothing that reads outside its folder gets in
                    check_external_data(tmp / MODEL_FILE)
                metadata["files"] = describe(tmp)
                write_json(tmp / METADATA_FILE, metadata)
                _sync_tree(tmp)
                self._mkdir(self.models_dir)
                if force and final.exists():
                    self._discard(final)
                winner = self._rename_into_place(tmp, final)
            except BaseException as exc:
                full = tmp is not None and _nearly_full(tmp)
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                if _is_write_error(exc, full):
                    raise _as_write_error(exc, self.root) from None
                raise
            if winner is not None:
                return winner, False
        return Entry(key=key, dir=final, metadata=metadata), True

    def _rename_into_place(self, tmp: Path, final: Path) -> Entry | None:
        """Rename ``tmp`` to ``final``; the entry already there when another writer won."""
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            winner = self.get(final.name)
            if winner is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return winner
            # A directory without zoo.json is no entry (never written by this protocol): replace it.
            self._discard(final)
            os.rename(tmp, final)
        _sync_dir(final.parent)
        return None

    def _new_tmp(self, key: str) -> Path:
        self._mkdir(self.tmp_dir)
        prefix = f"{key}.{os.getpid()}@{_host()}."
        return contained(self.root, Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp_dir)))

    def _mkdir(self, directory: Path) -> None:
        contained(self.root, directory)
        directory.mkdir(parents=True, exist_ok=True)

    def remove(self, key: str) -> bool:
        directory = self.entry_dir(key)
        if not directory.exists():
            return False
        try:
            with self.lock(key):
                self._discard(directory)
        except OSError as exc:
            if _is_write_error(exc, False):
                raise _as_write_error(exc, self.root) from None
            raise
        return True

    def _discard(self, directory: Path) -> None:
        """Move out of ``models/`` first (atomic), then delete at leisure."""
        trash = self._new_tmp("trash")
        os.rename(directory, trash / directory.name)
        shutil.rmtree(trash, ignore_errors=True)

    def collect_garbage(self, max_age_s: float = STALE_AFTER_S) -> list[Path]:
        """Remove temp dirs whose writer is dead (or that are older than ``max_age_s``).

        Returns the removed dirs. Best effort: a store that cannot be written keeps them.
        """
        removed: list[Path] = []
        try:
            candidates = sorted(self.tmp_dir.iterdir())
        except OSError:
            return removed
        now = time.time()
        for path in candidates:
            try:
                age = now - path.lstat().st_mtime
            except OSError:
                continue
            match = _TMP.fullmatch(path.name)
            if match is None:
                stale = age > max_age_s  # not ours to judge by pid
            else:
                pid, host = int(match.group(1)), match.group(2)
                stale = age > max_age_s or (host == _host() and not _alive(pid))
            if not stale:
                continue
            contained(self.root, path.parent)  # the link itself is not followed: only it goes
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            if not os.path.lexists(path):
                removed.append(path)
        return removed

    def verify(self, entry: Entry) -> list[str]:
        """Problems with an entry's files: missing, resized, re-hashed or unsafe."""
        problems = []
        for record in entry.files:
            try:
                path = contained(entry.dir, entry.dir / record["path"])
            except UserError:
                problems.append(f"{record['path']}: points outside the entry")
                continue
            if not path.is_file():
                problems.append(f"{record['path']}: missing")
            elif path.stat().st_size != record["size"]:
                problems.append(f"{record['path']}: size {path.stat().st_size} != {record['size']}")
            elif file_sha256(path) != record["sha256"]:
                problems.append(f"{record['path']}: sha256 mismatch")
        if not entry.files:
            problems.append(f"{METADATA_FILE}: lists no files")
        elif not problems and entry.model_path.is_file():
            problems += external_data_problems(entry.model_path)
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


@functools.cache
def _host() -> str:
    """Who can judge our pids: this host, and on Linux this pid namespace (containers sharing
    a store volume and a hostname each see other pids as dead)."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63]
    try:
        namespace = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        return name
    return f"{name}-{namespace}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _sync_tree(directory: Path) -> None:
    """fsync every file and the dir itself, so a crash after the rename cannot leave holes."""
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _sync_dir(directory)


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open dirs (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _nearly_full(path: Path) -> bool:
    try:
        stats = os.statvfs(path if path.exists() else path.parent)
    except (OSError, AttributeError):
        return False
    return stats.f_bavail * stats.f_frsize < _NEARLY_FULL


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (itself, its cause or context) that a full or read-only store raises."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 20:
        if isinstance(current, OSError) and current.errno in _UNWRITABLE:
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _is_write_error(exc: BaseException, full: bool) -> bool:
    if isinstance(exc, (KeyboardInterrupt, SystemExit, UserError, IntegrityError, EnvironmentProblem)):
        return False
    return _os_error(exc) is not None or (full and isinstance(exc, Exception))


def _as_write_error(exc: BaseException, root: Path) -> StoreWriteError:
    """A one-line error for a store that refused a write (full, read-only, no permission)."""
    cause = _os_error(exc)
    reason = cause.strerror if cause is not None and cause.strerror else "no space left on device"
    if cause is None or cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "free some space (`zoo rm`, `zoo gc`) or point ZOO_HOME at a bigger disk"
    else:
        advice = "make it writable or point ZOO_HOME at a writable directory"
    return StoreWriteError(f"cannot write to the store {root}: {reason}; {advice} (stored entries are unchanged)")


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
