"""Built-in source: ready ONNX models on the Hugging Face Hub.

``hf:ORG/REPO[/PATH/model.onnx][@REVISION]`` downloads the ONNX file and its external-data
files with huggingface_hub (so its cache, token and ``HF_ENDPOINT`` apply), checks each
file against the hash the Hub lists for it (LFS sha256, or the git blob id of small files),
pins the commit in the metadata, and takes preprocessing and labels from the repo: its
``zoo.json`` when ``zoo push`` made it, else ``preprocessor_config.json`` or ``config.json``.
Nothing is built or exported, so this path never imports torch; the file is stored byte
for byte as the Hub serves it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.plugin import (
    MAX_RECORD_BYTES,
    METADATA_FILE,
    MODEL_FILE,
    EnvironmentProblem,
    FileRefused,
    IntegrityError,
    InvalidNameError,
    ModelSpec,
    Progress,
    Recipe,
    Record,
    RecordError,
    Source,
    UnknownModelError,
    UserError,
    check_repo_id,
    check_revision,
    describe_onnx,
    external_location,
    file_sha256,
    hookimpl,
    hub_errors,
    model_tensors,
    offline,
    progress_bars,
    read_capped,
    refuse_options,
    spinner_bar,
)

from . import configs

_COMMIT = re.compile(r"[0-9a-f]{40}")
_PATH_PART = re.compile(r"[A-Za-z0-9_.+=,@-]+")
CARRIED = ("preprocessing", "labels", "validation", "export_attempts", "license")


@dataclass(frozen=True)
class HubRef:
    """``ORG/REPO``, an optional file path in it, an optional revision."""

    repo_id: str
    path: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        return (f"{self.repo_id}{'/' + self.path if self.path else ''}"
                f"{'@' + self.revision if self.revision else ''}")


def parse(name: str) -> HubRef:
    """``ORG/REPO[/PATH.onnx][@REVISION]``, refusing anything that could act as a local path."""
    if "\x00" in name or "\\" in name:
        raise InvalidNameError(f"invalid Hub model {name!r}: no NUL or backslash")
    target, at, revision = name.partition("@")
    if at:
        check_revision(revision)
    parts = target.split("/")
    if len(parts) < 2:
        raise InvalidNameError(f"invalid Hub model {name!r}: write hf:ORG/REPO[/PATH/model.onnx][@REVISION]")
    repo_id = check_repo_id("/".join(parts[:2]))
    path = "/".join(parts[2:]) or None
    if path is not None:
        if not all(_PATH_PART.fullmatch(p) and p not in (".", "..") for p in parts[2:]):
            raise InvalidNameError(f"invalid file path {path!r} in {name!r}: relative, no '..' or empty parts")
        if not path.endswith(".onnx"):
            raise InvalidNameError(f"{name!r}: the path in the repo must name an .onnx file")
    return HubRef(repo_id, path, revision or None)


class HfSource(Source):
    name = "hf"
    path_names = True
    default_weights = "default"

    def models(self, pattern: str | None = None) -> list[str]:
        return []  # the Hub is not listed: any ORG/REPO holding an ONNX file works

    def resolve(self, name: str) -> ModelSpec | None:
        # Bare names are never Hub repos: users write hf:ORG/REPO.
        return None

    def spec(self, name: str, weights: str, options: Mapping[str, Any]) -> ModelSpec:
        """Check ``hf:NAME`` before any lookup (cheap: no network, no torch)."""
        parse(name)
        refuse_options(self.name, options)
        _refuse_weights(name, weights)
        return ModelSpec(self.name, name, weights)

    def fetch(self, spec: ModelSpec, recipe: Recipe, directory: Path,
              progress: Progress | None = None) -> dict[str, Any]:
        """Download ``spec`` into ``directory`` (``model.onnx`` + external data); return its metadata."""
        ref = parse(spec.name)
        _refuse_weights(spec.name, spec.weights)  # recipe flags: zoo refuses them for every source that fetches
        say = progress or (lambda _msg: None)
        with hub_errors(str(ref)), progress_bars(progress is not None):
            remote = Remote(ref, local_only=offline(), say=progress)
            path = ref.path or remote.default_model()
            say(f"downloading {ref.repo_id}/{path} ({remote.revision})")
            shutil.copyfile(remote.download(path), directory / MODEL_FILE)
            sources = {MODEL_FILE: path}
            for location in external_data(directory / MODEL_FILE):
                hub_path = posixpath.normpath(posixpath.join(posixpath.dirname(path), location))
                if hub_path.startswith("../"):
                    raise IntegrityError(f"{path} points outside its repo for external data ({location})")
                say(f"downloading {ref.repo_id}/{hub_path}")
                target = directory / location
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(remote.download(hub_path), target)
                sources[location] = hub_path
            found = {name: remote.read_json(file) for name, file in remote.config_files(path)}
        # zoo checks the file (onnx.checker) and reads its opset when it makes the record
        inputs, outputs, nodes = describe_onnx(directory / MODEL_FILE)
        model_sha = file_sha256(directory / MODEL_FILE)
        described = _describe(found, model_sha, inputs, outputs, say)
        if not described.get("license") and remote.license:
            described["license"] = remote.license
        return {
            "weights": {
                "tag": spec.weights,
                "hub_id": ref.repo_id,
                "revision": ref.revision or "main",
                "commit": remote.commit,
                "path": path,
                "url": f"{remote.endpoint}/{ref.repo_id}/blob/{remote.commit}/{path}",
                "sha256": model_sha,
                "verified": remote.verified,
            },
            "hub_files": sources,
            "inputs": inputs,
            "outputs": outputs,
            "stats": {**described.pop("stats", {}), "onnx_nodes": nodes},
            **described,
        }


def _refuse_weights(name: str, weights: str) -> None:
    if weights != HfSource.default_weights:
        raise UserError(f"hf:{name} is a ready ONNX model: --weights cannot apply; "
                        "pin a version with hf:ORG/REPO@REVISION instead")


class Remote:
    """One repo at one commit, read through huggingface_hub (its cache when ``local_only``)."""

    def __init__(self, ref: HubRef, local_only: bool, say: Callable[[str], None] | None = None) -> None:
        from huggingface_hub import HfApi

        self.ref = ref
        self.say = say  # None: no progress shown
        self.local_only = local_only
        self.revision = ref.revision or "main"
        api = HfApi()
        self.endpoint = api.endpoint
        self.commit: str | None = ref.revision if ref.revision and _COMMIT.fullmatch(ref.revision) else None
        self.listing: dict[str, Any] | None = None  # path -> RepoSibling, unknown offline
        self.verified: dict[str, str] = {}
        self.license: str | None = None  # from the model card's metadata, when online
        if not local_only:
            info = api.model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
            self.commit = info.sha
            card_license = getattr(info.card_data, "license", None) if info.card_data else None
            self.license = card_license if isinstance(card_license, str) else None
            self.listing = {s.rfilename: s for s in info.siblings or []}

    def default_model(self) -> str:
        """``model.onnx`` at the root, else the repo's only ``.onnx`` file."""
        if self.listing is None or MODEL_FILE in self.listing:
            return MODEL_FILE
        found = sorted(p for p in self.listing if p.endswith(".onnx"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise UnknownModelError(f"{self.ref.repo_id} has no .onnx file at {self.revision}")
        shown = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "")
        raise UserError(f"{self.ref.repo_id} has several ONNX files ({shown}): "
                        f"name one, e.g. hf:{self.ref.repo_id}/{found[0]}")

    def has(self, path: str) -> bool:
        if self.listing is not None:
            return path in self.listing
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(self.ref.repo_id, path, revision=self.commit or self.revision),
                          str)

    def download(self, path: str) -> Path:
        """The file in huggingface_hub's cache, checked against the Hub's hash for it."""
        from huggingface_hub import hf_hub_download

        if self.listing is not None and path not in self.listing:
            raise UnknownModelError(f"{self.ref.repo_id} has no file {path} at {self.revision}")
        # By the name the user gave, so that huggingface_hub's cache learns the ref too (and
        # an offline pull of the same name finds it); the listing's commit is the check.
        local = Path(hf_hub_download(self.ref.repo_id, path, revision=self.revision,
                                     local_files_only=self.local_only,
                                     tqdm_class=spinner_bar(self.say, path) if self.say else None))
        snapshot = _snapshot_commit(local)
        if self.commit is None:
            self.commit = snapshot
        elif snapshot is not None and snapshot != self.commit:
            raise EnvironmentProblem(f"{self.ref.repo_id}@{self.revision} moved to a new commit while pulling; "
                                     "pull again (or pin a commit with @REVISION)")
        self._verify(path, local)
        return local

    def _verify(self, path: str, local: Path) -> None:
        if self.listing is None:
            self.verified[path] = "not checked: offline, from the local Hugging Face cache"
            return
        sibling = self.listing[path]
        lfs = getattr(sibling, "lfs", None)
        if lfs:
            expected, got, how = _lfs_sha256(lfs), file_sha256(local), "sha256 (Hub LFS)"
        elif getattr(sibling, "blob_id", None):
            expected, got, how = sibling.blob_id, git_blob_sha1(local), "git blob sha1"
        else:
            self.verified[path] = "not checked: the Hub lists no hash"
            return
        if expected != got:
            _forget(local)  # a bad copy must not be served from the cache next time
            raise IntegrityError(f"{self.ref.repo_id}/{path}@{self.commit}: downloaded {how} {got[:12]}... "
                                 f"!= {expected[:12]}... listed by the Hub; refused (the cached copy was "
                                 "removed: pull again, and report it if it repeats)")
        self.verified[path] = how

    def config_files(self, model_path: str) -> Iterator[tuple[str, str]]:
        """``(name, repo path)`` of the config files present, next to the model first, then at the root."""
        folders = dict.fromkeys([posixpath.dirname(model_path), ""])
        for name in (METADATA_FILE, "preprocessor_config.json", "config.json"):
            for folder in folders:
                candidate = posixpath.join(folder, name) if folder else name
                if self.has(candidate):
                    yield name, candidate
                    break

    def read_json(self, path: str) -> dict[str, Any]:
        """A small JSON file of the repo (a config, a pushed ``zoo.json``): regular, capped, or ``{}``."""
        try:
            data = json.loads(read_capped(self.download(path), MAX_RECORD_BYTES))
        except (OSError, ValueError, RecursionError, FileRefused):
            return {}
        return data if isinstance(data, dict) else {}


def _lfs_sha256(lfs: Any) -> str:
    return lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (how the Hub names small, non-LFS files)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _snapshot_commit(local: Path) -> str | None:
    """The commit a cached file belongs to: its ``snapshots/<commit>/`` folder in the HF cache."""
    parts = local.parts
    if "snapshots" in parts:
        index = len(parts) - 1 - parts[::-1].index("snapshots")
        if index + 1 < len(parts) and _COMMIT.fullmatch(parts[index + 1]):
            return parts[index + 1]
    return None


def _forget(local: Path) -> None:
    blob = local.resolve()
    local.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def external_data(model_path: Path) -> list[str]:
    """The external-data files an ONNX graph names, checked to stay next to it."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    locations: list[str] = []
    for tensor in model_tensors(model):
        location = external_location(tensor)
        if location is not None:
            normal = posixpath.normpath(location)
            if (location.startswith("/") or "\\" in location or normal.startswith("..")
                    or normal in (MODEL_FILE, METADATA_FILE)):
                raise IntegrityError(f"the ONNX file names unsafe external data {location!r}; refused")
            if normal not in locations:
                locations.append(normal)
    return locations


def _describe(found: dict[str, dict[str, Any]], model_sha: str, inputs: list[dict[str, Any]],
              outputs: list[dict[str, Any]], say: Callable[[str], None]) -> dict[str, Any]:
    """Preprocessing, labels, validation... from the repo's config files, best source first."""
    pushed = _pushed_record(found.get(METADATA_FILE), say)
    pushed_file = pushed.file(MODEL_FILE) if pushed else None
    if pushed and pushed_file and pushed_file.sha256 == model_sha:
        # The repo's zoo.json describes exactly this file: keep what zoo learnt when exporting it.
        shared = pushed.to_json()
        described = {key: shared[key] for key in CARRIED if key in shared}
        described["stats"] = dict(shared.get("stats") or {})
        described["preprocessing_from"] = METADATA_FILE
        described["origin"] = {k: shared.get(k) for k in ("name", "ref", "key", "weights", "recipe", "source",
                                                           "exporter", "toolchain", "created")}
        return described
    if pushed:
        say(f"ignoring the repo's {METADATA_FILE}: it describes another model.onnx")
    described: dict[str, Any] = {"validation": {
        "checker": "onnx.checker full_check",
        "parity": "not run: a ready ONNX file has no PyTorch reference here",
        "passed": True,
    }}
    processor, config = found.get("preprocessor_config.json") or {}, found.get("config.json") or {}
    preprocessing, origin = configs.from_image_processor(processor), "preprocessor_config.json"
    if preprocessing is None:
        preprocessing, origin = configs.from_timm_config(config), "config.json"
    if preprocessing is None:
        preprocessing = configs.for_input(inputs[0]["shape"] if inputs else [])
        origin = "default: ImageNet, fitted to the input shape"
    described["preprocessing"] = preprocessing.to_dict()
    described["preprocessing_from"] = origin
    labels = configs.labels_from_config(config)
    classes = outputs[0]["shape"][-1] if outputs and outputs[0]["shape"] else None
    described["labels"] = labels if labels and (not isinstance(classes, int) or classes == len(labels)) else None
    if isinstance(config.get("license"), str):
        described["license"] = config["license"]
    return described


def _pushed_record(data: dict[str, Any] | None, say: Callable[[str], None]) -> Any:
    """The repo's ``zoo.json`` as a checked record; ``None`` (and a note) when it fails the check."""
    if not data:
        return None
    try:
        return Record.from_json(data, f"{METADATA_FILE} in the repo")
    except RecordError as exc:
        say(f"ignoring {exc}")
        return None


@hookimpl
def zoo_register_sources(register: Any) -> None:
    register(HfSource())
