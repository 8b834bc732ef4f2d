"""Model names and ``source:name`` refs, checked before anything reads a file.

Below the plugin host: the resolver and the plugins (``local:`` checks its ``--arch``) use
the same rules.
"""

from __future__ import annotations

import re

from .errors import InvalidNameError

MAX_NAME = 200
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(name: str, what: str = "model name") -> str:
    """Refuse names that could act as paths before they reach any filesystem call."""
    if not name:
        raise InvalidNameError(f"empty {what}: give a model name, e.g. `zoo pull resnet18`")
    shown = name if len(name) <= 60 else name[:57] + "..."
    if "\x00" in name:
        raise InvalidNameError(f"invalid {what} {shown!r}: it contains a NUL character")
    if len(name) > MAX_NAME:
        raise InvalidNameError(f"invalid {what} {shown!r}: longer than {MAX_NAME} characters")
    if ".." in name or not _SAFE_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid {what} {shown!r}: use letters, digits and . _ + - only "
            "(no path separators or '..'; for a checkpoint file use local:PATH)"
        )
    return name


def split_ref(text: str) -> tuple[str | None, str]:
    """``"timm:resnet50"`` -> ``("timm", "resnet50")``; a bare name -> ``(None, name)``."""
    source, sep, name = text.partition(":")
    # "C:\\x" is a drive path, not a source called "C".
    if sep and _SOURCE_NAME.fullmatch(source) and len(source) > 1:
        return source, name
    return None, text
