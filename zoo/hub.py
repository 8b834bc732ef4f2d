"""Sharing stored models through the Hugging Face Hub: ``zoo push``, and what the ``hf``
source shares with it (repo id checks, error translation, progress bars).

A push uploads ``model.onnx`` (+ external data), ``zoo.json`` and a generated model card
in one commit; ``zoo pull hf:REPO_ID`` brings it back with the same preprocessing, labels
and validation. huggingface_hub is imported inside functions only, and reads the usual
``HF_TOKEN`` / ``hf auth login`` token and ``HF_ENDPOINT``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .env import offline
from .errors import (
    EnvironmentProblem,
    IntegrityError,
    InvalidNameError,
    UnknownModelError,
    ZooError,
    one_line,
    repair_hint,
)
from .record import Evaluation, Record, SourceInfo, as_json, label_preview
from .store import METADATA_FILE, Entry, Store

CARD_FILE = "README.md"
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_REVISION = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._/-]{0,199}")
# The Hub's own SPDX-style ids; anything else is declared as "other" with the text in the card.
_CARD_LICENSE = re.compile(r"[a-z0-9][a-z0-9.-]*")


def check_repo_id(repo_id: str) -> str:
    """``ORG/REPO`` as the Hub spells it, or ``InvalidNameError``."""
    parts = repo_id.split("/")
    if (len(parts) != 2 or not all(_REPO_PART.fullmatch(p) for p in parts)
            or ".." in repo_id or "--" in repo_id):
        raise InvalidNameError(f"invalid Hub repo id {repo_id!r}: write ORG/REPO "
                               "(letters, digits and . _ -; no '..' or '--')")
    return repo_id


def check_revision(revision: str) -> str:
    """A branch, tag or commit name that cannot act as a path or an option."""
    if not _REVISION.fullmatch(revision) or ".." in revision or "//" in revision or revision.endswith("/"):
        raise InvalidNameError(f"invalid revision {revision!r}: use a branch, tag or commit hash "
                               "(letters, digits and . _ - /; no '..')")
    return revision


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """huggingface_hub's download/upload bars on a terminal; none with ``--json`` or in a pipe."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def spinner_bar(say: Callable[[str], None], name: str) -> type:
    """A ``tqdm_class`` for huggingface_hub that reports bytes through zoo's progress line.

    The CLI shows one spinner line while pulling; a second, tqdm-drawn bar would fight it
    for the terminal, so downloads report into that line instead.
    """

    class SpinnerBar:
        def __init__(self, *, total: int | None = None, initial: int = 0, **_: Any) -> None:
            self.total, self.n = total, initial

        def __enter__(self) -> SpinnerBar:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def update(self, n: int = 1) -> None:
            self.n += n
            total = f" of {self.total / 1e6:.1f} MB" if self.total else ""
            say(f"downloading {name}: {self.n / 1e6:.1f} MB{total}")

        def close(self) -> None:
            return None

        def __getattr__(self, name: str) -> Callable[..., None]:
            # The rest of tqdm's surface (set_postfix_str, refresh... as xet downloads call them):
            # nothing to draw, the spinner line is the display.
            if name.startswith("__"):
                raise AttributeError(name)
            return lambda *args, **kwargs: None

    return SpinnerBar


def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached at all (its host name does not resolve), else None.

    huggingface_hub retries a failed request five times with backoff (about 25 s) before it
    gives up; a machine with no network is told at once instead. Behind a proxy the name may
    not resolve locally while the proxy reaches it, so then the download is simply tried.
    """
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    host = urlparse(endpoint).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        return f"{host} cannot be resolved ({exc.strerror or exc}): no network?"
    return None


@contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into zoo's one-line errors for ``what`` (a repo id)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    login = "log in with `hf auth login` or set HF_TOKEN"
    try:
        yield
    except ZooError:
        raise
    except GatedRepoError:
        raise EnvironmentProblem(f"{what} is gated: accept its terms on the Hub, then {login}") from None
    except RepositoryNotFoundError:
        raise UnknownModelError(f"no Hub repo {what} (or it is private): check the name, or {login}") from None
    except RevisionNotFoundError:
        raise UnknownModelError(f"{what}: no such revision on the Hub; name a branch, tag or commit") from None
    except RemoteEntryNotFoundError as exc:
        raise UnknownModelError(f"{what}: no such file on the Hub ({one_line(exc)})") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError):
        raise EnvironmentProblem(f"offline mode: {what} is not in the Hugging Face cache; pull it once "
                                 "online (unset ZOO_OFFLINE / HF_HUB_OFFLINE)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise EnvironmentProblem(f"the Hub refused access to {what} (HTTP {status}): {login} "
                                     "with a token that may read (pull) or write (push) it") from None
        raise EnvironmentProblem(f"the Hub failed for {what}: {one_line(exc)}") from None
    except (ConnectionError, TimeoutError, *_transport_errors()) as exc:
        raise EnvironmentProblem(f"cannot reach the Hub for {what} ({type(exc).__name__}: "
                                 f"{one_line(exc)}); check the network or use ZOO_OFFLINE=1 "
                                 "for cached models") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of the HTTP library huggingface_hub uses (it changed across versions)."""
    import importlib

    found: list[type[BaseException]] = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


# -- push ------------------------------------------------------------------------------------
def commit_files(entry: Entry, repo_id: str) -> dict[str, Path | bytes]:
    """What a push puts in the repo: the entry's files, its ``zoo.json`` and a model card."""
    files: dict[str, Path | bytes] = {f.path: entry.dir / f.path for f in entry.files}
    files[METADATA_FILE] = (json.dumps(entry.record.for_hub(), indent=2) + "\n").encode("utf-8")
    files[CARD_FILE] = model_card(entry.record, repo_id).encode("utf-8")
    return files


def push(
    entry: Entry,
    repo_id: str,
    store: Store,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
    bars: bool = False,
) -> dict[str, Any]:
    """Upload the stored ``entry`` to the Hub repo ``repo_id`` in one commit.

    The repo is created when missing (``private`` applies then), and the branch
    ``revision`` too. Returns the commit and the ref that pulls it back.
    """
    check_repo_id(repo_id)
    if revision is not None:
        check_revision(revision)
    problems = store.verify(entry)
    if problems:
        raise IntegrityError(f"refusing to push {entry.name} ({entry.key}): {'; '.join(problems)}; "
                             f"{repair_hint(entry.key)}")
    if offline():
        raise EnvironmentProblem("offline mode (ZOO_OFFLINE / HF_HUB_OFFLINE): cannot push; unset it to upload")
    files = commit_files(entry, repo_id)

    from huggingface_hub import CommitOperationAdd, HfApi

    hub = HfApi()
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes)
                                     else str(content)) for path, content in files.items()]
    with hub_errors(repo_id), progress_bars(bars):
        hub.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and revision != "main":
            hub.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = hub.create_commit(
            repo_id,
            operations,
            commit_message=message or f"zoo push {entry.name} ({entry.ref}, key {entry.key})",
            revision=revision,
        )
    return {
        "name": entry.name,
        "ref": entry.ref,
        "key": entry.key,
        "repo_id": repo_id,
        "revision": revision or "main",
        "commit": commit.oid,
        "url": commit.commit_url,
        "files": sorted(files),
        "pull": f"hf:{repo_id}@{commit.oid}",
    }


# -- model card ------------------------------------------------------------------------------
def _accuracy(evaluations: dict[str, Evaluation]) -> list[str]:
    """The card's accuracy table: one row per `zoo eval` data set recorded."""
    if not evaluations:
        return []
    lines = ["## Accuracy (`zoo eval`)", "", "| data | images | top-1 | top-5 | provider | date |",
             "|---|---|---|---|---|---|"]
    for mark, run in evaluations.items():
        def percent(value: Any) -> str:
            return f"{value:.2%}" if isinstance(value, (int, float)) else "n/a"

        root = Path(str((run.dataset or {}).get("root", ""))).name
        lines.append(f"| {root} ({mark}) | {run.images} | {percent(run.top1)} | "
                     f"{percent(run.top5)} | {run.provider} | {run.created} |")
    return [*lines, ""]


def model_card(record: Record, repo_id: str) -> str:
    """A README.md for the Hub: YAML front matter, then what zoo knows about the model."""
    source = record.source or SourceInfo(name="")
    weights = record.for_hub().get("weights") or {}
    pre = record.preprocessing.to_dict() if record.preprocessing else {}
    labels = record.labels or []
    validation = as_json(record.validation) if record.validation else {}
    recipe = record.recipe
    license_text = record.license or "unknown"
    first = license_text.split()[0].lower() if license_text.strip() else ""
    license_id = first if _CARD_LICENSE.fullmatch(first) and first != "unknown" else "other"
    tags = ["onnx", "zoo"] + ([source.name] if source.name else [])
    front = ["---", "library_name: onnx", f"license: {license_id}", "tags:"]
    front += [f"- {tag}" for tag in tags]
    if labels:
        front.append("pipeline_tag: image-classification")
    front.append("---")

    def table(rows: dict[str, Any]) -> list[str]:
        lines = ["| | |", "|---|---|"]
        for key, value in rows.items():
            if value is None or value == {} or value == []:
                continue
            shown = value if isinstance(value, str) else json.dumps(value)
            lines.append(f"| {key} | {str(shown).replace('|', '/')} |")
        return lines

    body = [
        f"# {record.name or repo_id}",
        "",
        f"ONNX model `{record.ref}`, checked and shared with "
        f"zoo {record.toolchain.get('zoo') or ''}".rstrip() + ".",
        "",
        "## Use",
        "",
        "```",
        f"zoo pull hf:{repo_id}",
        "```",
        "",
        "or with ONNX Runtime directly: `onnxruntime.InferenceSession(\"model.onnx\")`; the input is "
        "described under Preprocessing, and `zoo.json` holds all of this as data.",
        "",
        "## Source and weights",
        "",
        *table({"ref": record.ref, "source": source.name, "plugin": source.plugin,
                "source version": source.version, **{f"weights {k}": v for k, v in weights.items()}}),
        "",
        "## Preprocessing",
        "",
        *table(pre),
        "",
        "## Inputs and outputs",
        "",
        *table({f"{kind} {v.name}": f"{v.dtype} {v.shape}"
                for kind, values in (("input", record.inputs), ("output", record.outputs)) for v in values}),
        "",
        "## Labels",
        "",
        (f"{len(labels)} labels: {label_preview(labels, 10)}" if labels else "No labels recorded."),
        "",
        "## Validation",
        "",
        *table({"exporter": record.exporter, "opset": recipe.opset,
                "dtype": recipe.dtype, "dynamic batch": recipe.dynamic_batch, **validation}),
        "",
        *_accuracy(record.evaluations or {}),
        "## Toolchain",
        "",
        *table(record.toolchain),
        "",
        "## License",
        "",
        license_text,
        "",
    ]
    return "\n".join(front + [""] + body)
