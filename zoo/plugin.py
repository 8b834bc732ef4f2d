"""Everything a zoo plugin needs, in one module: the stable surface for plugin authors.

    from zoo.plugin import BuiltModel, ModelSpec, Preprocessing, Source, hookimpl, match
    from zoo.plugin import FetchedModel  # what Source.fetch returns: a ready ONNX file

A plugin imports from here (and from third-party libraries) only; the built-in plugins in
``plugins/`` do, and ``docs/plugins.md`` documents each name. Names elsewhere in ``zoo``
(``zoo.source``, ``zoo.spec``, ``zoo.recipe``, ``zoo.checkpoint``...) are zoo's inside and
may move; the ones earlier docs showed stay importable as aliases of these.

Importing this module is cheap: torch, onnx and huggingface_hub load only inside the
functions that need them. It sits below the plugin host, which imports none of it.
"""

from __future__ import annotations

from .checkpoint import by_position, infer_num_classes, load_into, load_state_dict, unwrap
from .env import offline
from .errors import (
    AmbiguousNameError,
    EnvironmentProblem,
    ExportError,
    IntegrityError,
    InvalidNameError,
    ParityError,
    PluginError,
    PluginFailure,
    RegistryError,
    UnknownModelError,
    UserError,
    WeightsUnavailableError,
    ZooError,
    ZooWarning,
)
from .exporting import MODEL_FILE
from .exporting import check as check_onnx
from .exporting import describe as describe_onnx
from .files import FileRefused, read_capped
from .hookspecs import hookimpl
from .hub import check_repo_id, check_revision, hub_errors, hub_unreachable, progress_bars, spinner_bar
from .integrity import check_weights_file, external_location, model_tensors, pinned_sha256
from .names import check_name, split_ref
from .recipe import CHECKPOINT_SUFFIXES, Recipe, file_sha256, looks_like_path
from .record import MAX_RECORD_BYTES, Record, RecordError
from .source import Pattern, Progress, Source, build_model, checkpoint_spec, match, refuse_options, report
from .spec import BuiltModel, FetchedModel, ModelSpec, Preprocessing
from .store import METADATA_FILE
from .tasks import (
    COCO_CATEGORIES,
    COCO_KEYPOINTS,
    COCO_SKELETON,
    TASKS,
    VOC_CATEGORIES,
    TaskOutputs,
)

__all__ = [
    # the interface and its data
    "Source", "ModelSpec", "BuiltModel", "FetchedModel", "Preprocessing", "Recipe", "Progress", "hookimpl",
    # tasks beyond classification: BuiltModel(task=..., task_outputs=TaskOutputs(...)), Source.task
    "TASKS", "TaskOutputs", "COCO_CATEGORIES", "COCO_KEYPOINTS", "COCO_SKELETON", "VOC_CATEGORIES",
    # catalogues, names, options
    "match", "Pattern", "split_ref", "check_name", "refuse_options", "checkpoint_spec", "looks_like_path",
    "CHECKPOINT_SUFFIXES",
    # building through another source; saying what a long step does
    "build_model", "report",
    # weights files
    "file_sha256", "load_state_dict", "load_into", "unwrap", "infer_num_classes", "by_position",
    "check_weights_file", "pinned_sha256",
    # ready ONNX files
    "MODEL_FILE", "METADATA_FILE", "check_onnx", "describe_onnx", "model_tensors", "external_location",
    # records and capped reads (a pushed zoo.json, a config file)
    "Record", "RecordError", "MAX_RECORD_BYTES", "read_capped", "FileRefused",
    # the Hugging Face Hub
    "check_repo_id", "check_revision", "hub_errors", "hub_unreachable", "progress_bars", "spinner_bar",
    # the environment
    "offline",
    # errors and warnings
    "ZooError", "UserError", "InvalidNameError", "UnknownModelError", "AmbiguousNameError", "RegistryError",
    "ExportError", "ParityError", "IntegrityError", "EnvironmentProblem", "WeightsUnavailableError",
    "PluginError", "PluginFailure", "ZooWarning",
]
