"""What zoo reads from the environment: where it keeps things, offline mode, debug.

Also the check that every path zoo writes stays inside its root.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .errors import UserError


def home() -> Path:
    """The store root: ``ZOO_HOME``, else the platform cache dir."""
    value = os.environ.get("ZOO_HOME")
    return Path(value).expanduser() if value else Path(platformdirs.user_cache_dir("zoo"))


def offline() -> bool:
    """``ZOO_OFFLINE=1`` (or huggingface_hub's ``HF_HUB_OFFLINE=1``): sources never download weights.

    Only for what sources fetch from the Hub or the web; the team remote follows ``zoo_offline``.
    """
    return zoo_offline() or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def zoo_offline() -> bool:
    """``ZOO_OFFLINE=1`` alone: the remote cache is off. ``HF_HUB_OFFLINE`` is the Hub's switch and is
    set everywhere on air-gapped clusters, exactly where a team's internal remote is what they use."""
    return _truthy(os.environ.get("ZOO_OFFLINE"))


def no_lock() -> bool:
    """``ZOO_NO_LOCK=1``: write the store without its per-key locks (for filesystems without
    ``flock``); correctness does not depend on them."""
    return _truthy(os.environ.get("ZOO_NO_LOCK"))


def no_renameat2() -> bool:
    """``ZOO_NO_RENAMEAT2=1``: publish files with ``link`` then ``unlink`` even where
    ``renameat2(RENAME_NOREPLACE)`` exists (the fallback path, for tests and odd filesystems)."""
    return _truthy(os.environ.get("ZOO_NO_RENAMEAT2"))


def debug() -> bool:
    """``ZOO_DEBUG=1``: show tracebacks."""
    return _truthy(os.environ.get("ZOO_DEBUG"))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def config_dir() -> Path:
    """The user's config dir (a user ``registry.toml`` lives here)."""
    value = os.environ.get("ZOO_CONFIG_DIR")
    return Path(value).expanduser() if value else Path(platformdirs.user_config_dir("zoo"))


def contained(root: Path, path: Path) -> Path:
    """``path`` resolved, or an error when it is not inside ``root``."""
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UserError(f"refusing path {path}: it is outside {root}")
    return resolved
