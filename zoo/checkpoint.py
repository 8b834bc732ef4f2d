"""Loading weight files safely: safetensors, or pickles with ``weights_only=True``.

The reading is timm's (``timm.models.load_state_dict``): safetensors files, training
checkpoints (``{'model': ...}``, ``{'state_dict': ...}``, EMA weights preferred when
present) and ``module.`` / ``_orig_mod.`` prefixes. A pickle that needs arbitrary code to
load is refused; there is no unsafe fallback.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .errors import UserError, one_line

# Wrappers some training scripts put around a state_dict beyond the ones timm knows.
WRAPPER_KEYS = ("state_dict", "model", "module", "net", "network")
SHOWN_KEYS = 3


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """A flat ``{name: tensor}`` state_dict from a checkpoint file."""
    from timm.models import clean_state_dict
    from timm.models import load_state_dict as timm_load

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the outcome is what matters
            warnings.simplefilter("ignore")
            data = timm_load(str(path), use_ema=True, device="cpu", weights_only=True)
    except RuntimeError as exc:
        if "weights_only" in str(exc):
            raise _refusal(path, exc) from None
        raise UserError(f"cannot read checkpoint {path}: {one_line(exc)}") from None
    except Exception as exc:  # truncated zip, not a pickle, bad safetensors header...
        raise UserError(f"cannot read checkpoint {path}: {one_line(exc)}") from None
    return clean_state_dict(unwrap(data, path))


def _refusal(path: Path, exc: BaseException) -> UserError:
    """Why a pickle was refused: the globals it would import, and what to save instead."""
    import re

    text = f"{exc} {exc.__cause__}"
    found = re.search(r"Unsupported globals?: (?:GLOBAL )?(\S+?)\.?(?:\s|$)", text)
    other = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
    why = f"it imports {found.group(1)}" if found else other.group(1) if other else "it imports code"
    return UserError(
        f"refusing {path}: it is not a plain weights pickle and unpickling it could run arbitrary code "
        f"({why}); load it only if you trust it "
        "and re-save the weights as safetensors (safetensors.torch.save_file(model.state_dict(), ...)) "
        "or as a plain state_dict"
    )


def unwrap(data: Any, path: Path) -> dict[str, Any]:
    """The tensors of the state_dict inside ``data``, looking through nested wrappers."""
    import torch

    while isinstance(data, dict) and not any(isinstance(v, torch.Tensor) for v in data.values()):
        inner = next((data[k] for k in WRAPPER_KEYS if isinstance(data.get(k), dict)), None)
        if inner is None:
            keys = ", ".join(sorted(map(str, data))[:6]) or "none"
            raise UserError(f"no state_dict found in {path} (top-level keys: {keys})")
        data = inner
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a {type(data).__name__}, not a state_dict")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def infer_num_classes(module: Any, state: dict[str, Any]) -> int | None:
    """The class count of the checkpoint's head when only the head's size differs from ``module``.

    Every mismatched tensor must differ in its first dimension alone, from the same model
    size to the same checkpoint size (a classifier's weight and bias, a distillation head).
    Tensors are paired by name, or by position when the names are another code base's.
    """
    diffs = [(tuple(mine.shape), tuple(theirs.shape)) for mine, theirs in _pairs(module, state)
             if mine.shape != theirs.shape]
    if not diffs or any(len(m) != len(c) or not m or m[1:] != c[1:] for m, c in diffs):
        return None
    sizes = {(m[0], c[0]) for m, c in diffs}
    return sizes.pop()[1] if len(sizes) == 1 else None


def by_position(module: Any, state: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint renamed to ``module``'s keys when only the names differ, else None.

    Checkpoints saved by a model's original repository often name the same tensors
    differently from timm (RepViT's ``features.0.0.c`` is timm's ``stem.conv1.c``) while
    registering them in the same order. When few names match but every tensor lines up
    with the same shape, timm's ``remap_state_dict`` pairs them by position.
    """
    from timm.models import remap_state_dict

    own = module.state_dict()
    if not _named_elsewhere(own, state):
        return None
    if any(mine.shape != theirs.shape for mine, theirs in zip(own.values(), state.values(), strict=True)):
        return None
    return remap_state_dict(state, module, allow_reshape=False)


def _named_elsewhere(own: dict[str, Any], state: dict[str, Any]) -> bool:
    """As many tensors as the model, but most of them under names the model does not use."""
    return len(own) == len(state) and len(own.keys() & state.keys()) <= len(own) // 2


def _pairs(module: Any, state: dict[str, Any]) -> list[tuple[Any, Any]]:
    own = module.state_dict()
    if _named_elsewhere(own, state):
        return list(zip(own.values(), state.values(), strict=True))
    return [(own[k], v) for k, v in state.items() if k in own]


def load_into(module: Any, state: dict[str, Any], path: str | Path, strict: bool = True,
              hint: str | None = None) -> dict[str, Any]:
    """``module.load_state_dict`` with a one-line error naming a few bad keys; returns the load
    report (``tensors_loaded``, ``missing_keys``, ``unexpected_keys``) for ``BuiltModel.weights``.

    ``strict=False`` loads what fits (a new head: its tensors of another shape are left out and
    stay as initialised), but a checkpoint that fills less than half of the model's tensors
    is refused even then: that is another architecture, and the export would be a random
    model. ``hint`` ends the error with what your users can change (your source's options,
    e.g. ``--num-classes``); without it the advice names no flag.
    """
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched and strict:
        k = mismatched[0]
        raise UserError(
            f"{path}: shape mismatch for {k}: checkpoint {tuple(state[k].shape)} vs model "
            f"{tuple(own[k].shape)} ({len(mismatched)} tensors differ); "
            + (hint or "is it a checkpoint of this architecture, with this number of classes?")
        )
    state = {k: v for k, v in state.items() if k not in mismatched}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({_few(missing)})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({_few(unexpected)})")
        raise UserError(
            f"{path} does not fit the model: {'; '.join(parts)}; "
            + (hint or "is it a checkpoint of this architecture? (non-strict loading takes the matching tensors)")
        )
    loaded = len(own) - len(missing)
    if loaded * 2 < len(own):
        raise UserError(f"{path} fills only {loaded} of the model's {len(own)} tensors ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(mismatched)} of another shape), even without "
                        "--strict: is it a checkpoint of this architecture?")
    module.load_state_dict(state, strict=False)
    return {"tensors_loaded": loaded, "missing_keys": missing, "unexpected_keys": unexpected + mismatched}


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN_KEYS]) + (", ..." if len(keys) > SHOWN_KEYS else "")
