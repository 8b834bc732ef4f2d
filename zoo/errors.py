"""Errors users can act on.

Every error zoo raises on purpose is a ``ZooError``: its message is one line that says
what was wrong and what to do, and its ``exit_code`` is what the CLI exits with.
Plugins raise these too (``UnknownModelError``, ``WeightsUnavailableError``) so the host
prints them the same way.
"""

from __future__ import annotations

import re

# Terminal escape codes (torch and ONNX Runtime colour their messages).
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")


def one_line(what: BaseException | str, *, kind: bool = False, limit: int | None = None) -> str:
    """An exception's message (its first non-empty line; its class name when it has none) or a
    text, as one plain line: no escape codes, control characters shown escaped (a NUL in a
    name reads ``\\x00``), whitespace runs as one space. ``kind``: prefixed with the exception's
    class name (for errors that are not zoo's own); ``limit``: at most that many characters.

    The one way zoo turns a message into the line it shows or embeds in its own.
    """
    if isinstance(what, BaseException):
        lines = [line for line in str(what).splitlines() if line.strip()]
        text = lines[0] if lines else ""
    else:
        text = what
    text = _ESCAPES.sub("", text)
    text = " ".join("".join(c if c.isprintable() or c.isspace() else ascii(c)[1:-1] for c in text).split())
    if isinstance(what, BaseException):
        name = type(what).__name__
        text = f"{name}: {text}" if kind and text else (text or name)
    return text[:limit] if limit is not None else text


def repair_hint(key: str) -> str:
    """What to do about a stored entry whose record or files are bad: both work (``pull --force
    KEY`` makes it again from its record, or from the record its model file carries, or says
    that it cannot and what to do instead)."""
    return f"make it again with `zoo pull --force {key}` or remove it with `zoo rm {key}`"


class ZooError(Exception):
    """Base class: a one-line, actionable message and a documented exit code."""

    exit_code = 1


class UserError(ZooError):
    """Bad input: a name, a flag, a file the user gave."""


class InvalidNameError(UserError):
    """A model name that is not safe or not well formed."""


class UnknownModelError(UserError):
    """No alias, source or model answers to this name."""


class AmbiguousNameError(UserError):
    """Several sources claim a bare name."""


class RegistryError(UserError):
    """A registry file that cannot be read: names the file and the key."""


class NotInStoreError(UserError):
    """The model is not in the store (and the command does not pull)."""


class ExportError(ZooError):
    """Building, exporting or checking a model failed."""


class ParityError(ExportError):
    """The ONNX model's outputs differ from PyTorch's beyond tolerance."""


class IntegrityError(ZooError):
    """A stored or downloaded file does not match its recorded hash."""

    exit_code = 3


class EnvironmentProblem(ZooError):
    """Something outside zoo is missing: network, provider, library."""

    exit_code = 4


class StoreWriteError(EnvironmentProblem):
    """The store's filesystem refused a write: read-only, full, or no permission."""


class WeightsUnavailableError(EnvironmentProblem):
    """Pretrained weights cannot be fetched (no network, offline mode, missing file)."""


class PluginError(ZooError):
    """A plugin failed to import, validate or register."""


class PluginFailure(PluginError):
    """An exception escaped a plugin's code: reported as that plugin's failure, not zoo's."""

    def __init__(self, message: str, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class ZooWarning(UserWarning):
    """Something zoo worked around (e.g. a post-export transform undone); the CLI prints it on one line."""
