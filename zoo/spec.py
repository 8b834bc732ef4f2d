"""The data a source plugin hands to the host.

``ModelSpec`` is declarative (plain strings, no torch): it is what the cache key is made
of. ``BuiltModel`` is what ``Source.build`` returns: a live ``torch.nn.Module`` plus what
the host needs to export and describe it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What to build: ``source:name`` with the weights asked for.

    ``weights`` is a source-specific tag (``IMAGENET1K_V2``, ``dist_450e_in1k``), ``"none"``
    for random initialisation, or a path to a local file. ``options`` carries extra
    declarative settings a source understands (they are part of the cache key).
    """

    source: str
    name: str
    weights: str = "default"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.source}:{self.name}"

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


@dataclass
class Preprocessing:
    """How an image becomes the model's input tensor.

    Resize the shorter side to ``resize`` with ``interpolation``, crop ``crop`` (height,
    width) per ``crop_mode`` ("center" or "squash": resize straight to ``crop``), scale to
    [0, 1], normalise with ``mean``/``std`` in ``channel_order``, lay out as ``layout``.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    resize: int = 256
    crop: tuple[int, int] = (224, 224)
    crop_mode: str = "center"
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"
    layout: str = "NCHW"

    def resized_to(self, size: int) -> Preprocessing:
        """The same preprocessing for a square input of side ``size``."""
        ratio = self.resize / max(self.crop)
        return Preprocessing(
            input_size=(self.input_size[0], size, size),
            resize=round(size * ratio),
            crop=(size, size),
            crop_mode=self.crop_mode,
            interpolation=self.interpolation,
            mean=self.mean,
            std=self.std,
            channel_order=self.channel_order,
            layout=self.layout,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


@dataclass
class BuiltModel:
    """A model ready to export, returned by ``Source.build``.

    ``module`` is a ``torch.nn.Module`` in eval mode. ``weights`` describes where the
    weights came from (``tag``, ``url``, ``hub_id``, ``file``, ``sha256``...). ``stats``
    holds figures the source knows (``params``, ``gflops``, ``accuracy``...).

    ``task`` is what the model computes (``zoo.tasks.TASKS``; classification by default),
    ``task_outputs`` a ``zoo.tasks.TaskOutputs`` saying which output holds what (required
    for every other task). ``exporters`` is the order ``--exporter auto`` tries for this
    model and ``exporter_reason`` why (None: zoo's default order). ``fixed_batch`` is the
    one batch size the model exports at when it cannot take another (torchvision's R-CNNs
    export at 1); a dynamic-batch recipe then makes a file of that batch, and says so.
    ``dynamic_size``: the graph takes any height and width (torchvision's segmenters); zoo's
    preprocessing still makes ``input_size``, and the record says ``task_outputs.dynamic_size``.
    """

    module: Any
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: list[str] | None = None
    weights: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    license: str | None = None
    source_version: str | None = None
    output_names: tuple[str, ...] = ("logits",)
    extra: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    task_outputs: Any = None
    exporters: tuple[str, ...] | None = None
    exporter_reason: str | None = None
    fixed_batch: int | None = None
    dynamic_size: bool = False


@dataclass
class FetchedModel:
    """A ready ONNX file, returned by ``Source.fetch``, and what the source knows of it.

    The file is ``path`` (anywhere: zoo copies it in), else ``data`` (its bytes: zoo writes
    them), else the ``model.onnx`` that ``fetch`` wrote into its directory. ``sha256`` is
    the hash the source's catalogue gives: zoo checks the file against it. The host reads
    the opset, inputs and outputs from the file itself, and checks ``labels`` against the
    output width and ``preprocessing.input_size`` against the input shape. ``weights`` is
    the identity of what was fetched (``url``, ``version``, ``sha256``...; the ``tag`` is
    added), ``description`` one line about the model, the rest as in ``BuiltModel``.
    """

    path: Any = None  # str | os.PathLike | None
    data: bytes | None = None
    sha256: str | None = None
    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None
    weights: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    license: str | None = None
    source_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
