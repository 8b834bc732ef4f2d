"""The local store: one entry per key, replaced atomically.

The folders under ``ZOO_HOME`` are declared in ``zoo.layout``, which every path here goes
through. An entry is ``models/<key>``, a symlink to its generation ``generations/<gen>/``
(``model.onnx``, external data files, and ``zoo.json`` with the size and sha256 of every
file); ``tmp/`` holds entries being written, ``locks/`` the per-key locks.

A generation is written in a temp dir, fsynced, and renamed into ``generations/`` under the
temp dir's name (``<gen>``); only then does the symlink ``models/<key>`` appear or swing
over to it (one ``symlink(2)`` or ``rename(2)``, both atomic). So a key always resolves to
a complete entry, old or new, and a forced pull puts the new one in place before the old
one goes. When two writers race on a new key, the first symlink wins; the second discards
its copy and returns the winner's entry. Entries written by older releases (``models/<key>``
a plain directory) are read as they are and replaced with ``renameat2(RENAME_EXCHANGE)``
where the OS has it. The lock only saves duplicate work; without it (``ZOO_NO_LOCK=1``, a
store on a filesystem without ``flock``, a ``locks`` dir that cannot be created) the store
stays correct. Temp dirs and unlinked generations whose writer died are removed by
``zoo gc`` and on the next write. See docs/reliability.md.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .durable import sync_dir, sync_file, sync_tree
from .env import contained, home, no_lock
from .errors import (
    EnvironmentProblem,
    IntegrityError,
    NotInStoreError,
    StoreWriteError,
    UserError,
    one_line,
    repair_hint,
)
from .files import is_write_error, nearly_full, refusal
from .integrity import check_external_data, external_data_problems
from .layout import GENERATIONS, MODELS, TMP, Layout
from .liveness import host, writer_alive
from .recipe import KEY, file_sha256
from .record import FileRecord, Record, RecordError
from .trust import TrustedHashes

METADATA_FILE = "zoo.json"
MODEL_FILE = "model.onnx"
# tmp/<key or "trash">.<pid>@<host>.<random>, and generations/ under the same name.
_TMP = re.compile(r"(?:([0-9a-f]{20})|trash)\.(\d+)@([A-Za-z0-9-]*)\.[A-Za-z0-9_]+")
# models/<generation>.new: a symlink made to be renamed over models/<key>.
_NEW = ".new"
_LINK = re.compile(_TMP.pattern + re.escape(_NEW))
# A temp dir of a writer that cannot be judged by its pid (another host) is stale after this.
STALE_AFTER_S = 24 * 3600


@dataclass
class Entry:
    """One stored model: its directory and its checked record."""

    key: str
    dir: Path
    record: Record
    model_file: str = MODEL_FILE  # another name only for `zoo export -o FILE.onnx`

    @property
    def metadata(self) -> dict[str, Any]:
        """The record as ``zoo.json`` holds it (a copy; for library users reading it as data)."""
        return self.record.to_json()

    @property
    def model_path(self) -> Path:
        return self.dir / self.model_file

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def ref(self) -> str:
        return self.record.ref

    @property
    def sha256(self) -> str:
        model = self.record.file(self.model_file)
        return model.sha256 if model else ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def files(self) -> list[FileRecord]:
        return self.record.files

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "key": self.key,
            "path": str(self.model_path),
            "size": self.size,
            "sha256": self.sha256,
            "weights": self.record.weights_tag,
            "created": self.record.created,
        }


def describe_files(directory: Path) -> list[FileRecord]:
    """Size and sha256 of every file in an entry directory but ``zoo.json``."""
    files = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != METADATA_FILE:
            files.append(FileRecord(path=path.relative_to(directory).as_posix(), size=path.stat().st_size,
                                    sha256=file_sha256(path)))
    return files


class Store:
    """Entries under a root directory (``ZOO_HOME`` by default)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else home()
        self.layout = Layout(self.root)
        self.models_dir = self.layout.models
        self.generations_dir = self.layout.generations
        self.tmp_dir = self.layout.tmp
        self.locks_dir = self.layout.locks
        self._check_usable()

    def _check_usable(self) -> None:
        """A store root, or a folder entries need, that exists but is no directory is refused
        (exit 4): ``ZOO_HOME=/dev/null`` must not pass for an empty store, and a ``generations``
        that is a file must stop a pull before its export, not after it. (``locks``, ``hashes``
        and ``tensorrt`` only save work: zoo goes on without them.)"""
        for directory in (self.root, *(self.root / folder for folder in (MODELS, GENERATIONS, TMP))):
            try:
                mode = os.stat(directory).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                cause = f"{directory}: {exc.strerror or type(exc).__name__}"
            else:
                if stat.S_ISDIR(mode):
                    continue
                cause = f"{'it' if directory == self.root else directory} is {_kind(mode)}, not a directory"
            advice = "point ZOO_HOME at a directory" if directory == self.root else \
                f"move {directory.name} away, or point ZOO_HOME at another directory"
            raise EnvironmentProblem(f"cannot use the store ZOO_HOME={self.root}: {cause}; {advice}")

    def entry_dir(self, key: str) -> Path:
        """``models/<key>``: the entry's stable path, a symlink to its current generation
        (a plain directory for entries written by older releases), checked to lead to a
        place inside the store before anything reads through it."""
        pointer = self._pointer(key)
        try:
            self.layout.inside(pointer)
        except UserError:
            raise IntegrityError(f"entry {key} leads outside the store (to {os.path.realpath(pointer)}); "
                                 f"remove it with `zoo rm {key}` (the link alone: nothing it leads to is "
                                 "touched), then pull the model again by name") from None
        return pointer

    def _pointer(self, key: str) -> Path:
        """``models/<key>`` itself, never followed (writers replace or unlink the link)."""
        if not KEY.fullmatch(key):
            raise UserError(f"invalid store key {key!r}")
        return self.layout.inside(self.models_dir) / key

    def get(self, key: str) -> Entry | None:
        """The entry ``key``, ``None`` when there is none, ``RecordError`` when its record is bad."""
        directory = self.entry_dir(key)
        try:
            record = Record.load(directory / METADATA_FILE)
        except FileNotFoundError:
            return None
        except (OSError, RecordError) as exc:
            problem = str(exc) if isinstance(exc, RecordError) else f"unreadable {METADATA_FILE} ({one_line(exc)})"
            raise RecordError(f"entry {key} has an {problem}; {repair_hint(key)}") from None
        if not record.files:
            raise RecordError(f"entry {key} has an invalid {METADATA_FILE}: it lists no files; {repair_hint(key)}")
        if record.key is not None and record.key != key:  # models/<key> leads to another entry's files
            raise IntegrityError(f"entry {key} leads to the files of entry {record.key} ({record.ref}), not its own; "
                                 f"remove it with `zoo rm {key}`, then pull the model again")
        return Entry(key=key, dir=directory, record=record)

    def keys(self, prefix: str = "") -> list[str]:
        """Keys of the entry directories (readable or not), optionally those starting with ``prefix``."""
        try:
            names = sorted(path.name for path in self.models_dir.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [name for name in names if KEY.fullmatch(name) and name.startswith(prefix)]

    def scan(self) -> Iterator[tuple[str, Entry | RecordError]]:
        """Every entry directory as ``(key, entry)``, or ``(key, error)`` for a bad or missing record:
        one bad record never hides the others."""
        for key in self.keys():
            try:
                entry = self.get(key)
            except RecordError as exc:
                yield key, exc
                continue
            except IntegrityError as exc:  # a pointer leading outside the store: never followed
                yield key, RecordError(str(exc))
                continue
            yield key, entry if entry is not None else RecordError(f"{METADATA_FILE} missing; {repair_hint(key)}")

    def entries(self) -> Iterator[Entry]:
        """Every readable entry; broken ones are skipped (``broken``, ``zoo verify`` report them)."""
        for _key, found in self.scan():
            if isinstance(found, Entry):
                yield found

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
        path = self.layout.lock_file(key)  # checked before anything is made
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
        produce: Callable[[Path], Record],
        force: bool = False,
        describe: Callable[[Path], list[FileRecord]] = describe_files,
    ) -> tuple[Entry, bool]:
        """The entry for ``key``, made by ``produce(tmp_dir) -> Record`` on a miss.

        Returns ``(entry, created)``. ``produce`` writes the model files into the temp
        dir; the store adds file hashes and ``zoo.json``, flushes everything to disk, moves
        the dir into ``generations/`` and points ``models/<key>`` at it. When another writer's
        entry appeared meanwhile, that entry is returned (``created`` False) and this copy is
        discarded. With ``force`` the old entry stays in place until the new one replaces it.
        ``describe`` lists the files with their hashes: a producer that already hashed what it
        wrote (a download checked against its manifest) passes that list instead of a re-hash.
        """
        pointer = self._pointer(key)
        with self.lock(key):
            existing = self.get(key) if not force else None
            if existing is not None:
                return existing, False
            self.collect_garbage()
            made: Path | None = None  # our copy: the temp dir, then its generation
            try:
                made = self._new_tmp(key)
                _pause("tmp-made")
                record = produce(made)
                if (made / MODEL_FILE).is_file():  # nothing that reads outside its folder gets in
                    check_external_data(made / MODEL_FILE)
                record.files = describe(made)
                write_json(made / METADATA_FILE, record.to_json())
                sync_tree(made)
                _pause("synced")
                self._mkdir(self.models_dir)
                self._mkdir(self.generations_dir)
                generation = self.layout.inside(self.generations_dir / made.name)
                os.rename(made, generation)
                made = generation
                sync_dir(self.generations_dir)
                _pause("placed")
                winner = self._point(pointer, generation, replace=force)
            except BaseException as exc:
                full = made is not None and nearly_full(made)
                if made is not None and not _leads_to(pointer, made):
                    shutil.rmtree(made, ignore_errors=True)
                if is_write_error(exc, full):
                    raise _as_write_error(exc, self.root) from None
                raise
            if winner is not None:
                shutil.rmtree(made, ignore_errors=True)
                return winner, False
        self._names_changed()
        return Entry(key=key, dir=pointer, record=record), True

    def _point(self, pointer: Path, generation: Path, replace: bool) -> Entry | None:
        """Make ``pointer`` lead to ``generation``, atomically; without ``replace``, the entry
        already there when another writer won."""
        target = os.path.relpath(generation, pointer.parent)  # relative: the store can be moved
        if not replace:
            try:
                os.symlink(target, pointer)  # fails when the key exists: the first writer wins
            except FileExistsError:
                winner = self.get(pointer.name)
                if winner is not None:
                    return winner
                # A key without a readable entry (never written by this protocol): replace it.
            else:
                sync_dir(pointer.parent)
                return None
        link = pointer.parent / f"{generation.name}{_NEW}"
        os.symlink(target, link)
        _pause("linked")
        old = self._swap(link, pointer)
        sync_dir(pointer.parent)
        _pause("swapped")
        if old is not None:
            self._discard(old)
        return None

    def _swap(self, link: Path, pointer: Path) -> Path | None:
        """Put ``link`` in ``pointer``'s place in one step; returns what it replaced, to delete."""
        if pointer.is_symlink() or not os.path.lexists(pointer):
            old = self._generation_of(pointer)
            os.rename(link, pointer)  # replaces a symlink atomically
            return old
        # A directory, as older releases wrote entries: rename(2) cannot replace it.
        if _exchange(link, pointer):
            return link  # now the old directory
        trash = self._new_tmp("trash")  # fallback: the key is absent between these two renames
        os.rename(pointer, trash / pointer.name)
        os.rename(link, pointer)
        return trash

    def _generation_of(self, pointer: Path) -> Path | None:
        """The generation directory a pointer leads to (None if it leads anywhere else, or to
        another key's generation: removing or replacing this key must not delete that one)."""
        if not pointer.is_symlink():
            return None
        target = Path(os.path.realpath(pointer))
        generations = self.generations_dir.resolve()
        match = _TMP.fullmatch(target.name)
        return target if target.parent == generations and match and match.group(1) == pointer.name else None

    def _new_tmp(self, key: str) -> Path:
        self._mkdir(self.tmp_dir)
        prefix = f"{key}.{os.getpid()}@{host()}."
        return self.layout.inside(Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp_dir)))

    def _mkdir(self, directory: Path) -> None:
        self.layout.inside(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if is_write_error(exc, False):  # read-only, full, denied: the store's write error
                raise
            # ZOO_HOME=/proc/self/x (ENOENT), a path under a file (ENOTDIR), a folder made a file meanwhile
            raise EnvironmentProblem(f"cannot use the store ZOO_HOME={self.root}: cannot create {directory} "
                                     f"({exc.strerror or type(exc).__name__}); point ZOO_HOME at a directory") from None

    def remove(self, key: str) -> bool:
        """Remove entry ``key`` and everything zoo keeps for it (``Layout.kept_for``)."""
        pointer = self._pointer(key)
        if not os.path.lexists(pointer):
            self.layout.forget(key)  # memos an older release left behind
            return False
        try:
            with self.lock(key):
                if pointer.is_symlink():
                    old = self._generation_of(pointer)
                    os.unlink(pointer)  # the key is gone in one step; its files go next
                    sync_dir(pointer.parent)
                    _pause("unlinked")
                    if old is not None:
                        self._discard(old)
                elif os.path.lexists(pointer):
                    self._discard(pointer)
                self.layout.forget(key)
        except OSError as exc:
            if is_write_error(exc, False):
                raise _as_write_error(exc, self.root) from None
            raise
        self._names_changed()
        return True

    def _discard(self, directory: Path) -> None:
        """Move out of sight first (atomic), then delete at leisure; a temp dir is deleted as it is."""
        if directory.parent != self.tmp_dir.resolve():
            trash = self._new_tmp("trash")
            try:
                os.rename(directory, trash / directory.name)
            except FileNotFoundError:  # a dangling pointer's generation: nothing left to delete
                pass
            directory = trash
        _pause("trashed")
        shutil.rmtree(directory, ignore_errors=True)

    def collect_garbage(self, max_age_s: float = STALE_AFTER_S) -> list[Path]:
        """Remove what dead writers left: temp dirs, generations no key leads to, half-made links.

        A writer on this host is judged by its pid (and that pid's start time, against reuse),
        whatever the age: a running pull is never collected. ``max_age_s`` applies only where
        the writer cannot be judged from here (another host or pid namespace), and not while
        the key's lock is held. Returns the removed paths. Best effort: a store that cannot
        be written keeps them.
        """
        removed: list[Path] = []
        places = ((self.tmp_dir, _TMP), (self.generations_dir, _TMP), (self.models_dir, _LINK))
        for directory, pattern in places:
            try:
                candidates = sorted(directory.iterdir())
            except OSError:
                continue
            for path in candidates:
                match = pattern.fullmatch(path.name)
                if directory is not self.tmp_dir and match is None:
                    continue  # entries, and anything zoo did not name, are not garbage
                if self._in_use(path, match, max_age_s):
                    continue
                if directory is self.generations_dir and self._is_linked(path, match):
                    continue  # checked after its writer is known dead: that writer links no more
                self.layout.inside(path.parent)  # the link itself is not followed: only it goes
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        path.unlink(missing_ok=True)
                    except OSError:
                        pass
                if not os.path.lexists(path):
                    removed.append(path)
        removed += self._forget_orphans()
        if removed:
            self._names_changed()
        return removed

    def named(self, name: str) -> list[Entry]:
        """The readable entries stored under ``name`` (the name they were pulled as, their ref
        or alias), found through the index of names (``zoo.names_index``), not by reading every record."""
        from .names_index import NameIndex

        found = []
        for key in NameIndex(self).keys(name):
            try:
                entry = self.get(key)
            except IntegrityError:  # broken since indexed: `zoo verify` reports it
                continue
            if entry is not None and name in (entry.name, entry.ref, entry.record.alias):
                found.append(entry)
        return found

    def _names_changed(self) -> None:
        """Bring ``names.json`` up to date after a publish, an ``rm`` or a ``gc``; it only saves
        work (a lookup repairs it), so a store that refuses it is no error here."""
        from .names_index import NameIndex

        try:
            NameIndex(self).sync()
        except (UserError, OSError):
            pass

    def _forget_orphans(self) -> list[Path]:
        """What zoo kept for keys that have no entry any more (an ``rm`` by an older release, a
        crash between unlinking an entry and its memos)."""
        removed: list[Path] = []
        for folder in (self.layout.hashes, self.layout.tensorrt):
            try:
                self.layout.inside(folder)
                names = sorted(os.listdir(folder))
            except (OSError, UserError):
                continue
            for name in names:
                key = name.removesuffix(".json") if folder == self.layout.hashes else name
                if KEY.fullmatch(key) and not os.path.lexists(self.models_dir / key):
                    removed += self.layout.forget(key)
        return sorted(set(removed))

    def _in_use(self, path: Path, match: re.Match[str] | None, max_age_s: float) -> bool:
        """Whether the writer of a temp dir, generation or link may still be using it."""
        try:
            mtime = path.lstat().st_mtime
        except OSError:
            return True  # already gone
        young = time.time() - mtime <= max_age_s
        if match is None:
            return young  # not named by zoo: age is all there is to judge by
        key, pid, writer_host = match.group(1), int(match.group(2)), match.group(3)
        if writer_host == host():
            return writer_alive(pid, mtime)
        return young or (key is not None and self._lock_held(key))

    def _is_linked(self, generation: Path, match: re.Match[str] | None) -> bool:
        if match is None or match.group(1) is None:
            return False
        return self._generation_of(self.models_dir / match.group(1)) == generation.resolve()

    def _lock_held(self, key: str) -> bool:
        """Whether some process holds ``key``'s lock now (a writer on another host, over NFS)."""
        try:
            import fcntl
        except ImportError:
            return False
        try:
            fd = os.open(self.locks_dir / f"{key}.lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)
        return False

    def verify(self, entry: Entry, hashes: TrustedHashes | None = None) -> list[str]:
        """Problems with an entry's files: missing, resized, re-hashed or unsafe.

        With ``hashes``, a file whose stat identity is unchanged since it was last hashed is
        not read again (``zoo.trust``).
        """
        sha256 = hashes.sha256 if hashes else file_sha256
        problems = []
        for record in entry.files:
            try:
                path = contained(entry.dir, entry.dir / record.path)
            except UserError:
                problems.append(f"{record.path}: points outside the entry")
                continue
            if not path.is_file():
                problems.append(f"{record.path}: missing")
            elif path.stat().st_size != record.size:
                problems.append(f"{record.path}: size {path.stat().st_size} != {record.size}")
            elif sha256(path) != record.sha256:
                problems.append(f"{record.path}: sha256 mismatch")
        if not entry.files:
            problems.append(f"{METADATA_FILE}: lists no files")
        elif not problems and entry.model_path.is_file() and not (hashes and hashes.all_trusted):
            problems += external_data_problems(entry.model_path)  # known safe when nothing changed since
        if hashes and not problems:
            hashes.save()
        return problems

    def update_record(self, key: str, change: Callable[[Record], None]) -> Entry:
        """Rewrite entry ``key``'s ``zoo.json`` with ``change`` applied, under the key's lock,
        through a temp file renamed over it; the model files are untouched."""
        with self.lock(key):
            entry = self.get(key)
            if entry is None:
                raise NotInStoreError(f"entry {key} is not in the store (removed meanwhile?)")
            change(entry.record)
            record = Record.from_json(entry.record.to_json(), METADATA_FILE)  # still a valid record
            target = entry.dir / METADATA_FILE
            temp = entry.dir / f".{METADATA_FILE}.{os.getpid()}.tmp"
            try:
                write_json(temp, record.to_json())
                sync_file(temp)
                os.replace(temp, target)
                sync_dir(entry.dir)
            finally:
                temp.unlink(missing_ok=True)
            return Entry(key=key, dir=entry.dir, record=record)

    def trusted_hashes(self, key: str) -> TrustedHashes:
        """The remembered hashes of entry ``key``'s files (see ``zoo.trust``)."""
        return TrustedHashes(self.layout.hashes_file(key))

    def broken(self) -> list[tuple[str, str]]:
        """Entry directories whose ``zoo.json`` is missing, unreadable or invalid, with the reason."""
        return [(key, str(found)) for key, found in self.scan() if isinstance(found, RecordError)]


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the OS or
    filesystem cannot."""
    if sys.platform != "linux" or os.environ.get("ZOO_NO_EXCHANGE"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # glibc before 2.28
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _leads_to(pointer: Path, directory: Path) -> bool:
    return pointer.is_symlink() and os.path.realpath(pointer) == str(directory.resolve())


def _kind(mode: int) -> str:
    kinds = {stat.S_ISREG: "a regular file", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "not a directory")


def _pause(point: str) -> None:
    """Test seam: ``ZOO_TEST_PAUSE=POINT`` stops a store write at POINT, said on stderr, so
    fault tests can kill or interrupt it exactly there."""
    if os.environ.get("ZOO_TEST_PAUSE") == point:
        sys.stderr.write(f"zoo: test pause at {point}\n")
        sys.stderr.flush()
        time.sleep(600)


def _as_write_error(exc: BaseException, root: Path) -> StoreWriteError:
    """A one-line error for a store that refused a write (full, read-only, no permission)."""
    reason, full = refusal(exc)
    advice = ("free some space (`zoo rm`, `zoo gc`) or point ZOO_HOME at a bigger disk" if full
              else "make it writable or point ZOO_HOME at a writable directory")
    return StoreWriteError(f"cannot write to the store {root}: {reason}; {advice} (stored entries are unchanged)")
