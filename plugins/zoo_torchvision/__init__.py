"""Built-in source: every classification model in ``torchvision.models``, and its detection and
semantic segmentation models (``zoo_torchvision.tasks``).

``torchvision:resnet50`` with weights by enum tag (``IMAGENET1K_V2``, ``DEFAULT``),
``none`` for random initialisation, or a path to a state_dict file. Preprocessing comes
from ``weights.transforms()``, labels from ``weights.meta["categories"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.plugin import (
    BuiltModel,
    ModelSpec,
    Preprocessing,
    Recipe,
    Source,
    UnknownModelError,
    UserError,
    WeightsUnavailableError,
    check_weights_file,
    checkpoint_spec,
    file_sha256,
    hookimpl,
    infer_num_classes,
    load_into,
    load_state_dict,
    looks_like_path,
    match,
    offline,
    pinned_sha256,
    report,
)


class TorchvisionSource(Source):
    name = "torchvision"
    default_weights = "DEFAULT"
    example = "mobilenet_v3_small"

    def _names(self) -> list[str]:
        import torchvision.models

        from . import tasks

        return [*torchvision.models.list_models(module=torchvision.models), *tasks.names()]

    def task(self, name: str) -> str:
        from . import tasks

        return tasks.task(name) or "classification"

    def models(self, pattern: str | None = None) -> list[str]:
        return match(self._names(), pattern)

    def resolve(self, name: str) -> ModelSpec | None:
        return ModelSpec(self.name, name, self.default_weights) if name in self._names() else None

    def spec(self, name: str, weights: str, options: Mapping[str, Any]) -> ModelSpec:
        """``num_classes`` (a new head) and ``strict`` (default on) for ``--weights PATH``."""
        return checkpoint_spec(self.name, name, weights, options)

    def build(self, spec: ModelSpec, recipe: Recipe) -> BuiltModel:
        import torchvision
        from torchvision.models import get_model, get_model_weights

        if spec.name not in self._names():
            from difflib import get_close_matches

            close = get_close_matches(spec.name, self._names(), n=4)
            hint = f"did you mean: {', '.join(close)}?" if close else "see `zoo list --available`"
            raise UnknownModelError(f"torchvision has no model {spec.name!r}; {hint}")
        from . import tasks

        if tasks.task(spec.name):
            if spec.option("num_classes"):
                raise UserError(f"--num-classes is for classifiers; {spec.name} keeps its own heads")
            return tasks.build(spec, recipe, _weights_enum, _fetch)
        enum = get_model_weights(spec.name)
        weights_info: dict[str, Any] = {}
        tag = spec.weights
        if tag.lower() == "none" or looks_like_path(tag):
            reference = enum.DEFAULT  # describes preprocessing and labels only
            classes = spec.option("num_classes")
            model = get_model(spec.name, weights=None, **({"num_classes": int(classes)} if classes else {}))
            if tag.lower() != "none":
                state = load_state_dict(tag)
                if classes is None and (found := infer_num_classes(model, state)) is not None:
                    model = get_model(spec.name, weights=None, num_classes=found)  # a fine-tuned head
                weights_info = {"file": str(Path(tag).expanduser().resolve()),
                                "sha256": file_sha256(Path(tag).expanduser()),
                                **load_into(model, state, tag, strict=bool(spec.option("strict", True)),
                                            hint=FIT_HINT)}
        else:
            reference = _weights_enum(enum, tag)
            file = _fetch(reference)
            check_weights_file(file, pinned_sha256(spec))  # before torchvision loads it
            model = get_model(spec.name, weights=reference)
            weights_info = {"resolved": reference.name, "url": reference.url,
                            "file": str(file), "sha256": file_sha256(file)}
        meta = reference.meta
        # No parameter count here: the host counts `params` for every source (one field, one truth).
        stats = {"gflops": meta.get("_ops"),
                 "file_size_mb": meta.get("_file_size")}
        if tag.lower() != "none" and not looks_like_path(tag):
            stats["accuracy"] = meta.get("_metrics")
        return BuiltModel(
            module=model.eval(),
            preprocessing=_preprocessing(reference),
            labels=list(meta.get("categories") or []) or None,
            weights=weights_info,
            stats={k: v for k, v in stats.items() if v is not None},
            license="BSD-3-Clause (torchvision code); see the weights' upstream terms",
            source_version=torchvision.__version__,
        )


FIT_HINT = "set the classes with --num-classes N, or load the matching tensors with --no-strict"


def _weights_enum(enum: Any, tag: str) -> Any:
    tag = "DEFAULT" if tag == "default" else tag
    try:
        return enum[tag]
    except KeyError:
        tags = ", ".join(list(enum.__members__))
        raise UserError(f"unknown weights {tag!r} for {enum.__name__}: use one of {tags}, "
                        "none, or a path to a state_dict file") from None


def _fetch(weights: Any) -> Path:
    """The weights file in torch.hub's cache, downloaded if needed (never when offline)."""
    import torch.hub

    filename = Path(weights.url.split("?")[0]).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    advice = "use --weights none, or --weights PATH to a local state_dict"
    if offline():
        raise WeightsUnavailableError(f"offline mode: weights {weights.url} are not cached; {advice}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    match_ = torch.hub.HASH_REGEX.search(filename)
    report(f"downloading {weights.url}")
    try:
        torch.hub.download_url_to_file(weights.url, str(cached),
                                       hash_prefix=match_.group(1) if match_ else None,
                                       progress=False)
    except Exception as exc:  # URLError, timeouts, hash mismatch: all mean "no weights"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailableError(f"cannot download weights {weights.url} ({reason}); {advice}") from None
    return cached


def _preprocessing(weights: Any) -> Preprocessing:
    transforms = weights.transforms()
    crop = int(transforms.crop_size[0])
    return Preprocessing(
        input_size=(3, crop, crop),
        resize=int(transforms.resize_size[0]),
        crop=(crop, crop),
        crop_mode="center",
        interpolation=transforms.interpolation.value,
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
    )


@hookimpl
def zoo_register_sources(register: Any) -> None:
    register(TorchvisionSource())
