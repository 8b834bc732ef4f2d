"""Loading weight files safely: safetensors, or pickles with ``weights_only=True``.

A pickle that needs arbitrary code to load is refused; there is no unsafe fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UserError

# Wrappers training scripts put around a state_dict, most specific first.
WRAPPER_KEYS = ("state_dict", "model", "module", "net", "network")


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """A flat ``{name: tensor}`` state_dict from a checkpoint file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise UserError(f"cannot read safetensors file {path}: {exc}") from None
    data = _load_pickle(path)
    return unwrap(data, path)


def _load_pickle(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        why = next((line for line in reason if "Unsupported" in line or "global" in line),
                   reason[0] if reason else "unsupported content")
        raise UserError(
            f"refusing {path}: loading it would run arbitrary code ({why.strip()}); "
            "save a plain state_dict (torch.save(model.state_dict(), ...)) or use safetensors"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None


def unwrap(data: Any, path: Path) -> dict[str, Any]:
    """Find the state_dict inside a training checkpoint and drop ``module.`` prefixes."""
    import torch

    while isinstance(data, dict) and not _is_state_dict(data):
        inner = next((data[k] for k in WRAPPER_KEYS if isinstance(data.get(k), dict)), None)
        if inner is None:
            keys = ", ".join(sorted(map(str, data))[:6])
            raise UserError(f"no state_dict found in {path} (top-level keys: {keys})")
        data = inner
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a {type(data).__name__}, not a state_dict")
    state = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _is_state_dict(data: dict[str, Any]) -> bool:
    import torch

    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def load_into(module: Any, state: dict[str, Any], path: str | Path, strict: bool = True) -> None:
    """``module.load_state_dict`` with a one-line error naming a few bad keys."""
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        k = mismatched[0]
        raise UserError(
            f"{path}: shape mismatch for {k}: checkpoint {tuple(state[k].shape)} vs model "
            f"{tuple(own[k].shape)} ({len(mismatched)} tensors differ); "
            "is it the right architecture and number of classes?"
        )
    result = module.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({', '.join(missing[:3])}...)")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:3])}...)")
        raise UserError(f"{path} does not fit the model: {'; '.join(parts)}")
