"""zoo source plugin: models from a local directory holding a torch.hub ``hubconf.py``.

``zoo pull hubconf:/path/to/repo:model_fn`` imports ``/path/to/repo/hubconf.py`` and calls
``model_fn`` to build the model. Registration and the catalogue never import torch or the
repo's code: the catalogue reads ``hubconf.py`` with ``ast``; only ``build`` executes it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from zoo.plugin import (
    BuiltModel,
    EnvironmentProblem,
    ExportError,
    ModelSpec,
    Preprocessing,
    Recipe,
    Source,
    UnknownModelError,
    UserError,
    WeightsUnavailableError,
    file_sha256,
    hookimpl,
    load_into,
    load_state_dict,
    looks_like_path,
    match,
    refuse_options,
)

__version__ = "0.1.0"

HUBCONF = "hubconf.py"
SAMPLE_REPO = Path(__file__).resolve().parent / "sample_repo"
# Extra repos whose entry points `zoo list --available` shows, like PATH (os.pathsep-separated).
REPOS_ENV = "ZOO_HUBCONF_REPOS"


def split(name: str) -> tuple[Path, str]:
    """``"/path/to/repo:model_fn"`` -> (repo directory, function name)."""
    repo, sep, function = name.rpartition(":")
    if not sep or not repo or not function.isidentifier():
        raise UserError(f"hubconf model {name!r} is not REPO_DIR:FUNCTION, e.g. hubconf:/path/to/repo:resnet18")
    path = Path(repo).expanduser()
    if not (path / HUBCONF).is_file():
        raise UnknownModelError(f"no {HUBCONF} in {repo!r}: give a directory holding one (torch.hub layout)")
    return path.resolve(), function


def entrypoints(repo: Path) -> list[str]:
    """Public functions defined in ``repo/hubconf.py``, read without running it."""
    tree = ast.parse((repo / HUBCONF).read_text(encoding="utf-8"), filename=str(repo / HUBCONF))
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class HubconfSource(Source):
    name = "hubconf"
    version = __version__
    path_names = True  # names hold a directory path
    example = f"{SAMPLE_REPO}:tiny_cnn"

    def _repos(self) -> list[Path]:
        extra = [Path(p).expanduser() for p in os.environ.get(REPOS_ENV, "").split(os.pathsep) if p]
        return [SAMPLE_REPO, *(p for p in extra if (p / HUBCONF).is_file())]

    def models(self, pattern: str | None = None) -> list[str]:
        names = []
        for repo in self._repos():
            try:
                names += [f"{repo.resolve()}:{fn}" for fn in entrypoints(repo)]
            except (SyntaxError, OSError, UnicodeDecodeError):  # one broken repo must not hide the others
                continue
        return match(names, pattern)

    def resolve(self, name: str) -> ModelSpec | None:
        # Bare names never hold a path (the host refuses them), so there is nothing to claim.
        return None

    def spec(self, name: str, weights: str, options: dict[str, Any]) -> ModelSpec:
        """Pin the repo: its absolute path and the hash of hubconf.py go into the cache key."""
        refuse_options(self.name, options)
        repo, function = split(name)
        return ModelSpec(self.name, f"{repo}:{function}", weights,
                         options=(("hubconf_sha256", _sha256(repo / HUBCONF)),))

    def build(self, spec: ModelSpec, recipe: Recipe) -> BuiltModel:
        import torch

        repo, function = split(spec.name)
        module = _import_hubconf(repo)
        entry = getattr(module, function, None)
        if not callable(entry) or function.startswith("_"):
            hint = ", ".join(entrypoints(repo)) or "none"
            raise UnknownModelError(f"{repo / HUBCONF} has no entry point {function!r}: it has {hint}")
        tag = spec.weights
        if tag.lower() not in ("default", "none") and not looks_like_path(tag):
            raise UserError(f"hubconf weights are default, none or a PATH to a state_dict, not {tag!r}")
        pretrained = tag.lower() == "default"
        kwargs = {"pretrained": pretrained} if "pretrained" in inspect.signature(entry).parameters else {}
        try:
            model = entry(**kwargs)
        except OSError as exc:  # urllib's errors are OSErrors: the repo could not fetch its weights
            raise WeightsUnavailableError(f"{function}(pretrained=True) could not fetch weights ({exc}); "
                                          "use --weights none or --weights PATH") from None
        except Exception as exc:  # the repo's own code failed: say where, in one line
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"{function}({_arguments(kwargs)}) in {repo / HUBCONF} failed: {reason}") from None
        if not isinstance(model, torch.nn.Module):
            raise UserError(f"{function} in {repo / HUBCONF} returned {type(model).__name__}, not a torch.nn.Module")
        weights: dict[str, Any] = {"hubconf": str(repo / HUBCONF), "hubconf_sha256": _sha256(repo / HUBCONF)}
        if looks_like_path(tag):
            load_into(model, load_state_dict(tag), tag)
            file = Path(tag).expanduser().resolve()
            weights.update(file=str(file), sha256=file_sha256(file))
        meta = dict(getattr(module, "ZOO_METADATA", {}).get(function, {}))
        labels = meta.pop("labels", None)
        return BuiltModel(
            module=model.eval(),
            preprocessing=_preprocessing(meta),
            labels=list(labels) if labels else None,
            weights=weights,
            source_version=__version__,
        )


def _arguments(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _preprocessing(meta: dict[str, Any]) -> Preprocessing:
    """``ZOO_METADATA[fn]`` (input_size, resize, mean, std, interpolation...) over ImageNet defaults."""
    if "input_size" not in meta:
        return Preprocessing()
    channels, height, width = (int(v) for v in meta["input_size"])
    return Preprocessing(
        input_size=(channels, height, width),
        resize=int(meta.get("resize", round(max(height, width) / 0.875))),
        crop=(height, width),
        crop_mode=meta.get("crop_mode", "center"),
        interpolation=meta.get("interpolation", "bilinear"),
        mean=tuple(meta.get("mean", Preprocessing().mean)),
        std=tuple(meta.get("std", Preprocessing().std)),
    )


def _import_hubconf(repo: Path) -> Any:
    """Import ``repo/hubconf.py`` as torch.hub does: the repo on sys.path, dependencies checked."""
    digest = hashlib.sha256(str(repo).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"zoo_hubconf_{digest}", repo / HUBCONF)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(repo))
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise EnvironmentProblem(f"{repo / HUBCONF} cannot be imported: {exc}") from None
    except Exception as exc:  # the repo's own code: say where, in one line
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise ExportError(f"{repo / HUBCONF} failed to load: {type(exc).__name__}: {reason}") from None
    finally:
        sys.path.remove(str(repo))
    missing = [dep for dep in getattr(module, "dependencies", []) if importlib.util.find_spec(dep) is None]
    if missing:
        raise EnvironmentProblem(f"{repo / HUBCONF} needs {', '.join(missing)}: pip install them")
    return module


@hookimpl
def zoo_register_sources(register: Any) -> None:
    register(HubconfSource())
