"""Built-in source: your own checkpoint file, ``local:PATH --arch SOURCE:NAME``.

The architecture comes from another source (``timm:repvit_m0_9``, ``torchvision:resnet50``,
any source whose ``build`` takes a weights file path); this source hands it the file.
Formats are those ``zoo.checkpoint`` reads: a bare state_dict, ``{'model': ...}``,
``{'state_dict': ...}``, EMA variants, ``module.`` prefixes, ``.safetensors``; pickles are
only ever loaded with ``weights_only=True``.

The checkpoint's sha256 is the weights identity, so a changed file is a new cache entry;
``arch``, ``num_classes`` and ``strict`` are options, part of the key too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.plugin import (
    BuiltModel,
    ModelSpec,
    Recipe,
    Source,
    UserError,
    build_model,
    check_name,
    file_sha256,
    hookimpl,
    split_ref,
)

OPTIONS = ("arch", "num_classes", "strict")
EXAMPLE = "zoo export local:ckpt.pth --arch timm:repvit_m0_9 -o onnx_output"
FIT_ADVICE = "as local:PATH, name the checkpoint's architecture with --arch SOURCE:NAME"


class LocalSource(Source):
    name = "local"
    path_names = True
    default_weights = "checkpoint"

    def models(self, pattern: str | None = None) -> list[str]:
        return []  # files are not listed: any checkpoint path works

    def resolve(self, name: str) -> ModelSpec | None:
        return None  # a file is only ever named explicitly, as local:PATH

    def spec(self, name: str, weights: str, options: dict[str, Any]) -> ModelSpec:
        """The file's content (sha256) and the options, checked without torch."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise UserError(f"local:PATH does not take option {unknown[0]!r} (it takes {', '.join(OPTIONS)})")
        if weights != self.default_weights:
            raise UserError(f"local:{name} takes its weights from the file itself: drop --weights {weights}")
        path = Path(name).expanduser()
        if not path.is_file():
            raise UserError(f"checkpoint file not found: {name}")
        arch = options.get("arch")
        if not arch:
            raise UserError(f"local:{name} needs --arch SOURCE:NAME to build the model, e.g. `{EXAMPLE}`")
        arch_source, arch_name = split_ref(arch)
        if arch_source is None or arch_source == self.name:
            raise UserError(f"--arch {arch!r}: write SOURCE:NAME, e.g. timm:repvit_m0_9 or torchvision:resnet50")
        check_name(arch_name, "architecture name")
        num_classes = options.get("num_classes")
        if num_classes is not None and int(num_classes) < 1:
            raise UserError(f"--num-classes must be at least 1, not {num_classes}")
        settings = {
            "arch": arch,
            "num_classes": None if num_classes is None else int(num_classes),
            "strict": False if options.get("strict") is False else None,  # strict is the default: one key
        }
        return ModelSpec(
            source=self.name,
            name=str(path.resolve()),
            weights="sha256:" + _checkpoint_sha256(path),
            options=tuple(sorted((k, v) for k, v in settings.items() if v is not None)),
        )

    def build(self, spec: ModelSpec, recipe: Recipe) -> BuiltModel:
        path = Path(spec.name)
        if not path.is_file():
            raise UserError(f"checkpoint file not found: {path}")
        digest = _checkpoint_sha256(path)
        if "sha256:" + digest != spec.weights:  # the key promised that content
            raise UserError(f"{path} changed since it was resolved; run the command again")
        arch_source, arch_name = split_ref(spec.option("arch"))
        options = {k: spec.option(k) for k in ("num_classes", "strict") if spec.option(k) is not None}
        arch_spec = ModelSpec(arch_source, arch_name, str(path), tuple(sorted(options.items())))
        try:
            built = build_model(arch_spec, recipe)  # the architecture's own source, given the file
        except UserError as exc:  # e.g. a shape mismatch: say which flags choose what was built
            raise UserError(f"{exc}; {FIT_ADVICE}") from exc
        built.weights = {**built.weights, "file": str(path), "sha256": digest, "arch": spec.option("arch")}
        built.stats = {**built.stats, "checkpoint_bytes": path.stat().st_size}
        built.source_version = None  # the entry's source is this plugin (its version), not the arch's library
        return built


def _checkpoint_sha256(path: Path) -> str:
    """The checkpoint's sha256; a file that cannot be read (``/proc/self/mem``) is the user's to fix."""
    try:
        return file_sha256(path)
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None


@hookimpl
def zoo_register_sources(register: Any) -> None:
    register(LocalSource())
