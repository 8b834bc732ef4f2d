"""Reading small files zoo did not write itself: regular files only, never more than a cap.

A FIFO, a device or ``/dev/zero`` named where zoo expects a record, a registry or an image
would block or fill memory, so anything but a regular file is refused before its content
is read, and a regular file larger than the cap is refused without reading it.

Also: the small JSON memos that only save work (``read_memo``, ``write_memo``), the
one-line refusals of writes the filesystem refused, and moving a file into place without ever
replacing one (``publish_new``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from .env import no_renameat2
from .errors import EnvironmentProblem, IntegrityError, UserError, ZooError

MiB = 1 << 20


class FileRefused(ZooError):
    """A file that is not a regular file, or larger than the reader's cap.

    Readers turn it into their own error class (a record, a registry, an image) with the
    message kept: it names the file and the reason.
    """


def check_regular(path: str | Path) -> os.stat_result:
    """``path``'s stat (following links) when it is a regular file; ``FileRefused`` otherwise.

    ``FileNotFoundError`` and other ``OSError`` propagate.
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{path} is not a regular file ({_kind(info.st_mode)}); give a regular file")
    return info


def read_capped(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, or ``FileRefused``."""
    check_regular(path)  # before open: opening a FIFO for reading blocks until a writer comes
    # O_NONBLOCK: should the path be swapped for a FIFO after the check, open still returns,
    # and the fstat below refuses it.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{path} is not a regular file ({_kind(info.st_mode)}); give a regular file")
        if info.st_size > limit:
            raise FileRefused(f"{path} is {info.st_size} bytes, more than zoo reads for it ({_size(limit)})")
        chunks, total = [], 0
        while total <= limit:
            block = os.read(fd, min(MiB, limit + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
    finally:
        os.close(fd)
    if total > limit:  # the file grew while it was read
        raise FileRefused(f"{path} is more than {_size(limit)}, more than zoo reads for it")
    return b"".join(chunks)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _size(limit: int) -> str:
    return f"{limit / MiB:g} MiB" if limit >= MiB else f"{limit} bytes"


# -- writes the machine refused ---------------------------------------------------------------
# The errnos of a full disk, and of any write the filesystem refuses (full, read-only, denied):
# the one list every writer checks (the store, exports, downloads, the CLI's last resort).
FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
UNWRITABLE = FULL | {errno.EROFS, errno.EACCES, errno.EPERM}
# Below this many free bytes after a failed write, the disk being full is the likely cause.
NEARLY_FULL = 1 << 20


def nearly_full(path: Path) -> bool:
    try:
        stats = os.statvfs(path if path.exists() else path.parent)
    except (OSError, AttributeError):
        return False
    return stats.f_bavail * stats.f_frsize < NEARLY_FULL


def os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (itself, its cause or context) that a full or read-only store raises."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 20:
        if isinstance(current, OSError) and current.errno in UNWRITABLE:
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def is_write_error(exc: BaseException, full: bool) -> bool:
    """Whether ``exc`` means the filesystem refused a write (``full``: the disk is nearly full,
    so any failure of the writer is taken for that)."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, UserError, IntegrityError, EnvironmentProblem)):
        return False
    return os_error(exc) is not None or (full and isinstance(exc, Exception))


def refused_write(exc: BaseException, target: Path, partial: Path | None = None) -> EnvironmentProblem | None:
    """The one-line error (exit 4) when ``exc`` means the filesystem under ``target`` refused a
    write (full, read-only, no permission); None for any other error. ``partial``: what was
    being written, whose disk being nearly full makes "full" the likely cause."""
    if not is_write_error(exc, partial is not None and nearly_full(partial)):
        return None
    reason, full = refusal(exc)
    advice = "free some space or choose another directory" if full else "make it writable or choose another directory"
    return EnvironmentProblem(f"cannot write to {target}: {reason}; {advice}")


def refusal(exc: BaseException) -> tuple[str, bool]:
    """Why the filesystem refused a write, and whether it is full (rather than read-only or denied)."""
    cause = os_error(exc)
    reason = cause.strerror if cause is not None and cause.strerror else "no space left on device"
    return reason, cause is None or cause.errno in FULL


# -- memos: small JSON files that only save work (trusted hashes, the plugin list) ---------------
def read_memo(path: Path, cap: int = MiB) -> Any:
    """The JSON in ``path``; None when it is missing, unreadable, over ``cap`` or not JSON (the
    caller then does the work again)."""
    try:
        return json.loads(read_capped(path, cap))
    except (OSError, ValueError, FileRefused):
        return None


def write_memo(path: Path, data: Any) -> bool:
    """``data`` as JSON in ``path``, through a temp file beside it renamed over it; False, with
    nothing left behind, when the filesystem refuses (the next run does the work again)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)
        return False
    return True


# -- publishing without replacing ---------------------------------------------------------------
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
# renameat2 errors that mean "not here" (an old kernel, a filesystem without the flag): fall back
_NO_RENAMEAT2 = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}
# link errors that mean "this filesystem has no hard links" (vfat, some FUSE and network mounts)
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_renameat2_fn: Any = None


def _renameat2() -> Any:
    """glibc's ``renameat2`` (2.28+, Linux 3.15+) through ctypes, or None where there is none."""
    global _renameat2_fn
    if _renameat2_fn is None:
        _renameat2_fn = False
        if sys.platform.startswith("linux"):
            import ctypes

            with suppress(OSError, AttributeError):
                fn = ctypes.CDLL(None, use_errno=True).renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2_fn = fn
    return _renameat2_fn or None


def publish_method() -> str:
    """How ``publish_new`` moves files on this machine: ``renameat2`` or ``link``
    (``ZOO_NO_RENAMEAT2=1`` forces the second, so that both are tested)."""
    return "link" if no_renameat2() or _renameat2() is None else "renameat2"


def publish_new(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` (same directory or filesystem) unless ``dst`` exists, in one step.

    ``FileExistsError`` when anything is at ``dst``, which is left as it is: the check and the
    write are one system call (``renameat2(RENAME_NOREPLACE)``, else ``link`` then ``unlink``),
    so a file created there a moment before is never replaced.
    """
    if publish_method() == "renameat2":
        import ctypes

        if _renameat2()(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in _NO_RENAMEAT2:
            raise OSError(err, os.strerror(err), str(dst))
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in _NO_LINK or isinstance(exc, FileExistsError):
            raise
        _copy_exclusive(src, dst)  # no hard links here: create exclusively, then fill
    os.unlink(src)


def _copy_exclusive(src: Path, dst: Path) -> None:
    """``src``'s bytes into a ``dst`` that this call creates (O_EXCL); removed again on failure."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as source:
            shutil.copyfileobj(source, out, MiB)
    except BaseException:
        with suppress(OSError):
            os.unlink(dst)
        raise
