"""Errors users can act on.

Every error zoo raises on purpose is a ``ZooError``: its message is one line that says
what was wrong and what to do, and its ``exit_code`` is what the CLI exits with.
Plugins raise these too (``UnknownModelError``, ``WeightsUnavailableError``) so the host
prints them the same way.
"""

from __future__ import annotations


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
