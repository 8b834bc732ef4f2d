"""Built-in source: every model in ``timm.list_models()``, pretrained tags included.

``timm:repvit_m0_9`` (timm's default weights), ``timm:repvit_m0_9.dist_450e_in1k`` or
``--weights dist_450e_in1k`` (a pretrained tag), ``--weights none`` (random init) or
``--weights PATH`` (a local checkpoint, read by ``zoo.checkpoint`` with timm's loaders).
Pretrained weights come from the Hugging Face Hub through huggingface_hub, so its cache
and ``HF_HUB_OFFLINE`` apply. Models are built with ``exportable=True`` and, unless the
recipe says ``--no-reparameterize``, re-parameterised (RepViT, MobileOne, FastViT...).

Options (``ModelSpec.options``): ``num_classes`` (a new head; inferred from a checkpoint's
classifier when not given) and ``strict`` (refuse missing/unexpected keys, default on).
"""

from __future__ import annotations

import sys
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
    by_position,
    checkpoint_spec,
    file_sha256,
    hookimpl,
    hub_unreachable,
    infer_num_classes,
    load_into,
    load_state_dict,
    looks_like_path,
    offline,
    report,
    spinner_bar,
)

WEIGHTS_ADVICE = "use --weights none, or --weights PATH to a local checkpoint"
FIT_HINT = "set the classes with --num-classes N, or load the matching tensors with --no-strict"


class TimmSource(Source):
    name = "timm"
    default_weights = "default"
    example = "test_resnet"  # timm's own tiny test model

    def models(self, pattern: str | None = None) -> list[str]:
        """Architectures and pretrained ``arch.tag`` names, filtered as ``timm.list_models`` does."""
        import timm

        pattern = (pattern or "").lower()
        names = set(timm.list_models(pattern)) | set(timm.list_models(pattern, pretrained=True))
        return sorted(names)

    def resolve(self, name: str) -> ModelSpec | None:
        import timm
        from timm.models import split_model_name_tag

        arch, tag = split_model_name_tag(name)
        if not timm.is_model(arch):
            return None
        if tag and _pretrained_cfg(f"{arch}.{tag}") is None:
            raise UnknownModelError(f"timm has no weights {tag!r} for {arch}; {_tags_hint(arch)}")
        return ModelSpec(self.name, name, self.default_weights)

    def spec(self, name: str, weights: str, options: Mapping[str, Any]) -> ModelSpec:
        """``num_classes`` (a new head) and ``strict`` (default on) for ``--weights PATH``."""
        return checkpoint_spec(self.name, name, weights, options)

    def build(self, spec: ModelSpec, recipe: Recipe) -> BuiltModel:
        import timm

        arch, tag = _arch_and_tag(spec)
        kwargs: dict[str, Any] = {"exportable": True}
        if spec.option("num_classes") is not None:
            kwargs["num_classes"] = int(spec.option("num_classes"))
        weights: dict[str, Any] = {}
        name = f"{arch}.{tag}" if tag else arch  # the tag's config describes preprocessing too
        if spec.weights.lower() == "none":
            model = timm.create_model(name, pretrained=False, **kwargs)
        elif looks_like_path(spec.weights):
            model, weights = _from_file(name, Path(spec.weights).expanduser(), kwargs,
                                        strict=bool(spec.option("strict", True)))
        else:
            cfg = _pretrained_cfg(name)
            if cfg is None or not (cfg.hf_hub_id or cfg.url):
                raise UserError(f"timm has no pretrained weights for {name}; {_tags_hint(arch)}")
            file = _fetch(cfg)
            overlay = {"file": str(file)} if file else {}
            model = timm.create_model(f"{arch}.{cfg.tag}", pretrained=True, pretrained_cfg_overlay=overlay,
                                      **kwargs)
            weights = {"resolved": f"{arch}.{cfg.tag}", "hub_id": cfg.hf_hub_id, "url": cfg.url or None}
            if file:
                weights.update(file=str(file), sha256=file_sha256(file))
        model.eval()
        fused = reparameterize(model) if recipe.reparameterize else None
        cfg = model.pretrained_cfg
        return BuiltModel(
            module=model,
            preprocessing=preprocessing(model),
            labels=_labels(model),
            weights={k: v for k, v in weights.items() if v is not None},
            stats={"reparameterized": bool(fused)},
            license=cfg.get("license"),
            source_version=timm.__version__,
            extra={"reparameterize": fused or {"applied": False,
                                               "reason": "turned off" if not recipe.reparameterize
                                               else "no fusable blocks"}},
        )


def _arch_and_tag(spec: ModelSpec) -> tuple[str, str]:
    """The architecture and the pretrained tag asked for by name or by ``--weights TAG``."""
    import timm
    from timm.models import split_model_name_tag

    arch, tag = split_model_name_tag(spec.name)
    if not timm.is_model(arch):
        from difflib import get_close_matches

        close = get_close_matches(arch, timm.list_models(), n=4)
        hint = f"did you mean: {', '.join(close)}?" if close else "see `zoo list --available`"
        raise UnknownModelError(f"timm has no model {arch!r}; {hint}")
    if tag and _pretrained_cfg(f"{arch}.{tag}") is None:
        raise UnknownModelError(f"timm has no weights {tag!r} for {arch}; {_tags_hint(arch)}")
    weights = spec.weights
    if weights.lower() in ("none", "default") or looks_like_path(weights):
        return arch, tag
    if tag and weights != tag:
        raise UserError(f"{spec.name} names weights {tag!r} but --weights says {weights!r}: give one of them")
    return arch, weights


def _pretrained_cfg(name: str) -> Any:
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:
        return None


def _tags_hint(arch: str) -> str:
    from timm.models import get_arch_pretrained_cfgs

    tags = [name.split(".", 1)[1] for name in get_arch_pretrained_cfgs(arch) if "." in name]
    return f"its tags are {', '.join(tags)}, or use none / a PATH" if tags else "use --weights none or a PATH"


def _fetch(cfg: Any) -> Path | None:
    """The weights file from the Hub cache, downloaded unless offline.

    Files the way timm looks for them: a safetensors alternative first, then the named file.
    None when the weights are not on the Hub (timm then fetches its own URL).
    """
    if not cfg.hf_hub_id:
        if offline():  # timm would fetch the URL itself, and zoo cannot tell whether it is cached
            raise WeightsUnavailableError(f"offline mode: weights {cfg.url} come from a URL, not the "
                                          f"Hugging Face Hub cache; {WEIGHTS_ADVICE}")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    from huggingface_hub.utils import logging as hf_logging
    from timm.models._hub import _get_safe_alternatives, hf_split

    hf_logging.set_verbosity_error()  # its retry chatter would break "errors are one line"
    repo, revision = hf_split(cfg.hf_hub_id)
    filename = cfg.hf_hub_filename or "pytorch_model.bin"
    problem = "no weights file found"
    unreachable = None if offline() else hub_unreachable()  # no network: cached files only, at once
    cache_only = offline() or unreachable is not None
    for candidate in [*_get_safe_alternatives(filename), filename]:
        try:
            # The bytes go to zoo's progress line (a terminal's spinner), never to a tqdm bar of their own.
            return Path(hf_hub_download(repo, candidate, revision=revision, local_files_only=cache_only,
                                        tqdm_class=spinner_bar(report, f"{repo}/{candidate}")))
        except LocalEntryNotFoundError as exc:  # not cached, and offline or the Hub unreachable
            problem = unreachable or _first_line(exc)
            if not cache_only:
                break  # unreachable: the other files would fail the same way
        except EntryNotFoundError:  # the repo lacks this file: try the next one, as timm does
            continue
        except Exception as exc:  # network, auth or disk failure: all mean "no weights"
            problem = _first_line(exc)
    if offline():
        raise WeightsUnavailableError(
            f"offline mode: weights {cfg.hf_hub_id} (Hugging Face Hub) are not cached; {WEIGHTS_ADVICE}")
    raise WeightsUnavailableError(
        f"cannot download weights {cfg.hf_hub_id} from the Hugging Face Hub ({problem}); {WEIGHTS_ADVICE}")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _from_file(name: str, path: Path, kwargs: dict[str, Any], strict: bool) -> tuple[Any, dict[str, Any]]:
    """A model with a local checkpoint's weights, through timm's checkpoint filter."""
    import timm
    from timm.models import split_model_name_tag

    arch = split_model_name_tag(name)[0]
    state = load_state_dict(path)
    model = timm.create_model(name, pretrained=False, **kwargs)
    state = _filter(arch, state, model)
    if "num_classes" not in kwargs:
        classes = infer_num_classes(model, state)
        if classes is not None and classes != model.num_classes:
            model = timm.create_model(name, pretrained=False, **{**kwargs, "num_classes": classes})
            state = _filter(arch, state, model)
    weights = {"file": str(path.resolve()), "sha256": file_sha256(path)}
    renamed = by_position(model, state)
    if renamed is not None:  # e.g. a checkpoint from the model's original repository
        state = renamed
        weights["remapped"] = "by position: the checkpoint's tensor names differ from timm's, shapes line up"
    weights.update(load_into(model, state, path, strict=strict, hint=FIT_HINT))
    return model, weights


def _filter(arch: str, state: dict[str, Any], model: Any) -> dict[str, Any]:
    """timm's own checkpoint filter for this architecture, as its pretrained loader applies.

    It maps checkpoints saved by the original repositories onto timm's module names.
    """
    from timm.models import model_entrypoint

    module = sys.modules.get(model_entrypoint(arch).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state
    try:
        return filter_fn(state, model)
    except TypeError:  # older filters take the state_dict only
        return filter_fn(state)


def reparameterize(model: Any) -> dict[str, Any] | None:
    """Fuse re-parameterisable blocks in place; what changed, or None when nothing can fuse."""
    from timm.utils import reparameterize_model

    hooks = ("fuse", "reparameterize", "switch_to_deploy")
    fusable = sum(1 for m in model.modules() if m is not model and any(hasattr(m, h) for h in hooks))
    if not fusable:
        return None
    before = _counts(model)
    reparameterize_model(model, inplace=True)
    after = _counts(model)
    return {"applied": True, "fusable_blocks": fusable, "modules_before": before[0], "modules_after": after[0],
            "params_before": before[1], "params_after": after[1]}


def _counts(model: Any) -> tuple[int, int]:
    return sum(1 for _ in model.modules()), int(sum(p.numel() for p in model.parameters()))


def preprocessing(model: Any) -> Preprocessing:
    """timm's data config (input size, interpolation, crop_pct, crop mode, mean, std) for the model."""
    import math

    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    channels, height, width = config["input_size"]
    crop_pct = config.get("crop_pct") or 1.0
    # timm's eval transform: resize the shorter side to size / crop_pct, then crop (transforms_factory).
    resize = math.floor(max(height, width) / crop_pct)
    crop_mode = "squash" if config.get("crop_mode") == "squash" else "center"
    return Preprocessing(
        input_size=(channels, height, width),
        resize=resize,
        crop=(height, width),
        crop_mode=crop_mode,
        interpolation=config.get("interpolation") or "bicubic",
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
    )


def _labels(model: Any) -> list[str] | None:
    """ImageNet class names for an in1k/in21k-sized head, else None."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if subset is None:
        return None
    try:
        return list(ImageNetInfo(subset).label_descriptions())
    except Exception:  # a subset whose label files timm does not ship
        return None


@hookimpl
def zoo_register_sources(register: Any) -> None:
    register(TimmSource())
