"""Reading small files zoo did not write itself: regular files only, never more than a cap.

A FIFO, a device or ``/dev/zero`` named where zoo expects a record, a registry or an image
would block or fill memory, so anything but a regular file is refused before its content
is read, and a regular file larger than the cap is refused without reading it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ZooError

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
