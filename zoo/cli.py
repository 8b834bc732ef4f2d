"""The ``zoo`` command line: a thin layer over ``zoo.api``.

Every command takes ``--json`` and then prints exactly one JSON document on stdout.
Errors are one line on stderr and a non-zero exit (see ``zoo.errors`` for the codes);
``ZOO_DEBUG=1`` shows tracebacks.
"""

import copy
import functools
import inspect
import json
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

from . import api
from .env import debug
from .errors import UserError, ZooError, ZooWarning, one_line
from .files import UNWRITABLE
from .launch import interrupted, say_interrupted
from .output import out

app = typer.Typer(
    name="zoo",
    help="A model zoo for ONNX: pull, export, check, store and run models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
RemoteFlag = Annotated[str | None, typer.Option(
    "--remote", help="The remote cache for this command, an fsspec URL (over ZOO_REMOTE and config.toml).")]


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        echo(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def _app(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print zoo's version and exit.")] = False,
) -> None:
    """A model zoo for ONNX: pull, export, check, store and run models."""


# -- recipe flags, shared by every command that names a model ----------------------------
def _option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


RECIPE_PARAMETERS = [
    _option("weights", Annotated[str | None, typer.Option(
        help="Weights: a tag (IMAGENET1K_V2, DEFAULT...), 'none' for random init, or a PATH.")]),
    _option("registry", Annotated[str | None, typer.Option(
        help="An extra registry.toml, over the shipped and user ones (also ZOO_REGISTRY).")]),
    _option("opset", Annotated[int | None, typer.Option(help="ONNX opset (default 18).")]),
    _option("batch", Annotated[int | None, typer.Option(help="Batch size to trace (default 1).")]),
    _option("dynamic_batch", Annotated[bool | None, typer.Option(
        "--dynamic-batch/--static-batch", help="Dynamic batch dimension (default dynamic).",
        show_default=False)]),
    _option("size", Annotated[int | None, typer.Option(help="Square input side (default: the model's).")]),
    _option("dtype", Annotated[str | None, typer.Option(help="float32, float16 or int8 (needs --calibration).")]),
    _option("calibration", Annotated[str | None, typer.Option(
        help="int8: a folder of calibration images, read with the model's preprocessing.")]),
    _option("calibration_size", Annotated[int | None, typer.Option(
        help="int8: how many calibration images to use, spread over the folder (default 256).")]),
    _option("exporter", Annotated[str | None, typer.Option(
        help="dynamo, torchscript or auto (dynamo, falling back to torchscript).")]),
    _option("reparameterize", Annotated[bool | None, typer.Option(
        "--reparameterize/--no-reparameterize",
        help="Fuse re-parameterisable blocks before export (default on).", show_default=False)]),
    _option("input_names", Annotated[str | None, typer.Option(
        help="The graph's input name (default: input).")]),
    _option("output_names", Annotated[str | None, typer.Option(
        help="The graph's output names, comma-separated (default: the source's, logits).")]),
    _option("arch", Annotated[str | None, typer.Option(
        help="A checkpoint's architecture as SOURCE:NAME, e.g. timm:repvit_m0_9 (for local:PATH).")]),
    _option("num_classes", Annotated[int | None, typer.Option(
        help="Classes of a checkpoint's head (default: read from the checkpoint).")]),
    _option("strict", Annotated[bool | None, typer.Option(
        "--strict/--no-strict", help="Refuse checkpoints with missing or unexpected keys (default strict).",
        show_default=False)]),
]


def recipe_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the recipe flags to a command; it receives them as one ``selection`` dict.

    A command's own parameter named like a recipe flag replaces that flag (``bench --batch``
    takes a list of batch sizes).
    """
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "selection"]
    recipe = [p for p in RECIPE_PARAMETERS if p.name not in {o.name for o in own}]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        selection = {p.name: kwargs.pop(p.name) for p in recipe}
        return func(*args, selection=selection, **kwargs)

    wrapper.__signature__ = inspect.Signature(own + recipe)  # type: ignore[attr-defined]
    return wrapper


# -- output: everything is printed through ``out`` (zoo.output); these names are its verbs ----------
emit = out.result  # the result: one JSON document with --json, else the human form
echo = out.text  # a line of the human form on stdout
warn = out.warning  # ``zoo: warning: ...`` on stderr
note = out.note  # ``zoo: ...`` on stderr: for a person; stdout stays what scripts read
progress = out.progress  # a spinner on stderr while long steps run, on a terminal only


def int8_summary(int8: Any) -> str:
    """``validation.int8`` on one line: the figures it has (older records: top-1 on calibration images)."""
    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    calibration = int8.calibration or {}
    parts = [f"passed={int8.passed}"]
    if int8.confident_agreement is not None or int8.top5_containment is not None:
        parts += [f"confident_agreement={percent(int8.confident_agreement)} of {int8.confident_images}",
                  f"top5={percent(int8.top5_containment)}", f"tv={int8.mean_tv_distance:.3f}",
                  f"on {int8.images} held-out images"]
    else:
        parts += [f"top1_agreement={percent(int8.top1_agreement)} on {int8.images} calibration images"]
    if int8.labelled:
        parts.append(f"labelled top-1 drop={int8.labelled.get('top1_drop')}")
    if int8.cpu is not None:
        parts.append(f"cpu={int8.cpu.kind}" + (" reduce_range" if int8.reduce_range else ""))
    return " ".join(parts) + f" ({calibration.get('fingerprint')})"


def done_line(entry: Any, cached: bool) -> str:
    """How a pull or export ended: in the store already, fetched, or exported (exporter, parity, size)."""
    if cached:
        return f"{entry.ref} was in the store ({entry.key}, {human_size(entry.size)})"
    record = entry.record
    if record.exporter == "fetched":  # a ready file: nothing was exported or compared with PyTorch here
        opset = f"opset {record.opset}, " if record.opset else ""
        return f"fetched {entry.ref} from source {entry.ref.partition(':')[0]}, {opset}" \
               f"onnx.checker passed, {human_size(entry.size)} ({entry.key})"
    validation = record.validation
    diff = validation.max_abs_diff if validation else None
    parity = f"parity max abs diff {diff:.2g}" if diff is not None else "no PyTorch parity run"
    found = validation.other.get("detections") if validation else None
    if isinstance(found, dict):  # detectors: paired detections, not tensors
        parity = (f"parity {found.get('matched')} of {found.get('expected')} detections paired "
                  f"(box diff {diff or 0:.2g} px)")
        if str(validation.parity or "").endswith(")") and "inconclusive" in str(validation.parity):
            parity += ", inconclusive: " + str(validation.parity).split("(", 1)[1].rstrip(")")
    weights = entry.record.weights
    loaded = ""
    if weights is not None and weights.tensors_loaded is not None:
        missing, unexpected = weights.missing_keys or [], weights.unexpected_keys or []
        loaded = (f", loaded {weights.tensors_loaded} of {weights.tensors_loaded + len(missing)} tensors"
                  + (f" ({len(missing)} missing, {len(unexpected)} unexpected)" if missing or unexpected else ""))
    return (f"exported {entry.ref} with {entry.record.exporter or 'its source'}, {parity}{loaded}, "
            f"{human_size(entry.size)} ({entry.key})")


def warn_broken_plugins() -> None:
    for problem in api.plugin_problems():  # broken plugins, ZOO_LOAD_PLUGINS names matching none
        warn(problem)


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


PULL_PARAMETERS = [
    _option("force", Annotated[bool, typer.Option(help="Export the model again even when it is stored.")], False),
    _option("remote", RemoteFlag),
    _option("no_remote", Annotated[bool, typer.Option("--no-remote", help="Do not use the remote cache.")], False),
    _option("no_upload", Annotated[bool, typer.Option(
        "--no-upload", help="Do not upload a fresh export to the remote.")], False),
]


def pull_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the flags of a command that pulls (``--force``, ``--remote``, ``--no-remote``,
    ``--no-upload``); it receives them as ``pulling``, the keywords ``api.pull`` takes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {p.name: kwargs.pop(p.name) for p in PULL_PARAMETERS}
        pulling = {"force": flags["force"], "remote": False if flags["no_remote"] else flags["remote"],
                   "upload": not flags["no_upload"]}
        return func(*args, pulling=pulling, **kwargs)

    own = [p for p in inspect.signature(func).parameters.values() if p.name != "pulling"]
    wrapper.__signature__ = inspect.Signature(own + PULL_PARAMETERS)  # type: ignore[attr-defined]
    return wrapper


# -- commands --------------------------------------------------------------------------------
@app.command()
@recipe_options
@pull_options
def pull(
    names: Annotated[list[str], typer.Argument(help="Aliases, SOURCE:NAME refs or bare names.")],
    selection: dict[str, Any],
    pulling: dict[str, Any],
    json_: JsonFlag = False,
) -> None:
    """Resolve, export on a miss, and print the path of model.onnx."""
    warn_broken_plugins()
    results = []
    for name in names:
        with progress(not json_) as report:
            pulled = api.pull(name, progress=report, **pulling, **selection)
        results.append(pulled.summary())
        if not json_:
            note(f"{name} from remote {pulled.remote}" if pulled.cached == "remote"
                 else done_line(pulled.entry, cached=pulled.cached))
    emit(results[0] if len(results) == 1 else results, json_,
         lambda: [echo(r["path"]) for r in results])


@app.command()
@recipe_options
@pull_options
def bulk(
    patterns: Annotated[list[str] | None, typer.Argument(
        help="Names, SOURCE:NAME refs or patterns ('timm:resnet*', 'torchvision:*').", show_default=False)] = None,
    selection: dict[str, Any] | None = None,
    pulling: dict[str, Any] | None = None,
    from_: Annotated[str | None, typer.Option("--from", help="A file with one model name a line.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Models pulled at once (default: one per core, at most available memory / 2 GiB).")] = None,
    timeout: Annotated[float | None, typer.Option(
        help="Seconds a model may take; then its process group is killed (status 'timed out').")] = None,
    retries: Annotated[int, typer.Option(
        help="Tries again a model that failed for a reason other than bad input, or timed out.")] = 0,
    memory_limit: Annotated[str | None, typer.Option(
        help="Memory one model's process may hold, e.g. 4G (default: available memory / workers).")] = None,
    report: Annotated[str | None, typer.Option(
        help="Write a report: FILE.json or FILE.csv (a row per model and a summary).")] = None,
    ray: Annotated[str | None, typer.Option(
        help="Run on a Ray cluster: 'auto' or its ADDRESS (needs Ray, the extra 'ray' of zoo-onnx, "
             "and a remote cache).")] = None,
    ray_cpus: Annotated[float, typer.Option(help="With --ray: CPUs each model's task asks for.")] = 1.0,
    ray_gpus: Annotated[float, typer.Option(help="With --ray: GPUs each model's task asks for.")] = 0.0,
    json_: Annotated[bool, typer.Option("--json", help="One JSON line per model, then one for the summary.")] = False,
) -> None:
    """Pull many models, each in its own process, N at a time; report on each (exit 1 if any failed)."""
    from . import bulk_run

    selection, pulling = selection or {}, pulling or {}
    report_path = bulk_run.check_report(report) if report else None  # before any work
    limit = bulk_run.parse_size(memory_limit) if memory_limit else None
    names = list(patterns or [])
    if from_:
        names += bulk_run.read_names(from_)
    if not names:
        raise UserError("name the models: PATTERN... (e.g. 'timm:resnet*') or --from FILE")
    warn_broken_plugins()
    names, failed = bulk_run.expand(names, selection.get("registry"))
    shown = _BulkDisplay(json_, len(names) + len(failed))
    try:
        with shown:
            if ray:
                from . import bulk_ray

                outcomes, summary = bulk_ray.run(names, address=ray, workers=workers, timeout=timeout,
                                                 retries=retries, memory_limit=limit, cpus=ray_cpus, gpus=ray_gpus,
                                                 failed=failed, on_event=shown.event, **pulling, **selection)
            else:
                outcomes, summary = bulk_run.run(names, workers=workers, timeout=timeout, retries=retries,
                                                 memory_limit=limit, failed=failed, on_event=shown.event,
                                                 **pulling, **selection)
    except bulk_run.Interrupted as stopped:
        if report_path:
            bulk_run.write_report(report_path, stopped.outcomes, stopped.summary)
        raise KeyboardInterrupt from None
    if report_path:
        bulk_run.write_report(report_path, outcomes, summary)
    shown.finish(summary)
    if any(not o.ok for o in outcomes):
        raise typer.Exit(1)


class _BulkDisplay:
    """How a bulk run shows itself: a live panel on a terminal, a line per model otherwise,
    one JSON line per model with --json (stdout), then the summary."""

    def __init__(self, as_json: bool, total: int) -> None:
        self.as_json, self.total = as_json, total
        self.running: dict[str, float] = {}
        self.counts = {"ok": 0, "failed": 0}
        self.live: Any = None
        if not as_json and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            # Only this object writes to the terminal while the panel is up: the model paths for
            # stdout wait until it is gone, so the two streams never garble one another.
            self.live = Live(console=Console(stderr=True), refresh_per_second=4, transient=True,
                             redirect_stdout=False, redirect_stderr=False, get_renderable=self._panel)
        self.paths: list[str] = []

    def __enter__(self) -> "_BulkDisplay":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _panel(self) -> Any:
        import time

        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        finished = self.counts["ok"] + self.counts["failed"]
        table = Table.grid(padding=(0, 1))
        table.add_row(ProgressBar(total=max(self.total, 1), completed=finished, width=30),
                      Text.assemble(f"{finished}/{self.total}  ", (f"done {self.counts['ok']}", "green"), "  ",
                                    (f"failed {self.counts['failed']}", "red"), f"  running {len(self.running)}"))
        now = time.monotonic()
        for name, since in list(self.running.items())[:12]:
            table.add_row("", Text.assemble((f"{now - since:5.0f} s ", "dim"), name))
        return table

    def event(self, kind: str, outcome: Any) -> None:
        import time

        if kind == "start":
            self.running[outcome.name] = time.monotonic()
            return
        self.running.pop(outcome.name, None)
        self.counts["ok" if outcome.ok else "failed"] += 1
        if self.as_json:
            out.json_line(outcome.to_json())
            return
        line = f"{outcome.status} {outcome.name}"
        line += f": {outcome.error}" if outcome.error else f" ({outcome.seconds:.1f} s)"
        if self.live is not None:
            self.live.console.print(f"zoo: {line}", markup=False, highlight=False, soft_wrap=True)
            if outcome.ok and outcome.path:
                self.paths.append(outcome.path)
        else:
            note(line)
            if outcome.ok and outcome.path:
                echo(outcome.path)

    def finish(self, summary: Any) -> None:
        for path in self.paths:
            echo(path)
        if self.as_json:
            out.json_line({"summary": vars(summary)})
        else:
            note(summary.line())


@app.command("export")
@recipe_options
def export_(
    selection: dict[str, Any],
    output: Annotated[str, typer.Option("--output", "-o", help=(
        "FILE.onnx to write (its record beside it as FILE.json), or a directory to write model.onnx "
        "and zoo.json into."))],
    name: Annotated[str | None, typer.Argument(help="Alias, SOURCE:NAME, bare name or local:PATH.")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        help="A checkpoint file to export: shorthand for the ref local:PATH (needs --arch).")] = None,
    force: Annotated[bool, typer.Option(help="Replace files that exist at the output.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Export to a file or directory of your choosing (model.onnx + zoo.json); never replaces without --force."""
    from .errors import UserError

    if checkpoint and name:
        raise UserError("give REF or --checkpoint PATH, not both (a checkpoint's architecture goes in --arch)")
    if not checkpoint and not name:
        raise UserError("name what to export: `zoo export REF -o DIR` or `zoo export --checkpoint PATH --arch "
                        "SOURCE:NAME -o DIR`")
    name = f"local:{checkpoint}" if checkpoint else name
    warn_broken_plugins()
    with progress(not json_) as report:
        entry = api.export(name, output, force=force, progress=report, **selection)
    data = {"name": name, "ref": entry.ref, "path": str(entry.model_path), "sha256": entry.sha256,
            "dir": str(entry.dir)}
    if not json_:
        note(done_line(entry, cached=False))
    emit(data, json_, lambda: echo(data["path"]))


@app.command("list")
def list_(
    pattern: Annotated[str | None, typer.Argument(
        help="Shell-style filter, e.g. 'resnet*'; with --available, 'SOURCE:PATTERN' lists one source.")] = None,
    available: Annotated[
        bool, typer.Option("--available", help="List what the sources can build, not what is cached.")
    ] = False,
    registry: Annotated[str | None, typer.Option(help="An extra registry.toml.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Cached entries (or, with --available, what can be pulled)."""
    if available:
        warn_broken_plugins()
        rows = api.available(pattern, registry=registry, on_error=lambda _source, reason: warn(reason))
        if not rows:
            note(f"nothing available matches {pattern!r}; try SOURCE:* or see `zoo plugins`"
                 if pattern else "nothing available: no aliases, and no source lists models")
        emit(rows, json_, lambda: out.table(None, [[r["name"], r["task"], r["description"] or r["ref"]]
                                                   for r in rows]))
        return
    entries, broken = api.scan(pattern)
    rows = [e.summary() for e in entries]
    for key, problem in broken:  # marked, not fatal: the other entries are listed
        warn(f"entry {key} is broken ({problem})")

    if not rows and not broken:
        note(f"no stored entry matches {pattern!r}" if pattern else "the store is empty")
    recipes = [f"fetched opset={e.record.opset}" if e.record.exporter == "fetched" else  # a ready file: no recipe
               _recipe_differences(e.record.recipe.to_dict()) for e in entries]

    def table() -> None:
        if not rows and not broken:
            return
        cells = [[r["name"], r["ref"], str(r["weights"]), recipe or "-", human_size(r["size"]), r["key"]]
                 for r, recipe in zip(rows, recipes, strict=True)]
        cells += [["(broken)", "?", "?", "?", "?", key] for key, _problem in broken]
        out.table(["NAME", "REF", "WEIGHTS", "RECIPE", "SIZE", "KEY"], cells, right=[4])

    emit(rows, json_, table)


def _recipe_differences(recipe: dict[str, Any]) -> str:
    """The recipe fields that differ from the defaults, e.g. ``dtype=float16 opset=13``."""
    from .recipe import Recipe

    defaults = Recipe().to_dict()
    changed = {k: v for k, v in recipe.items() if k in defaults and v != defaults[k] or k not in defaults}
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sorted(changed.items()))


@app.command()
@recipe_options
def info(
    name: Annotated[str, typer.Argument(help="A stored model's name, or a .onnx file.")],
    selection: dict[str, Any],
    json_: JsonFlag = False,
) -> None:
    """Show a stored model's metadata (zoo.json)."""
    target = api.info(name, **selection)
    record, path = target.record, target.path
    metadata = {**(record.to_json() if record else {}), "path": str(path)}
    emit(metadata, json_, lambda: _show_record(record, path))


def task_summary(record: Any) -> str:
    """One line about a non-classifier's outputs: ``detection: boxes xyxy in input pixels, ...``."""
    from .record import label_preview

    described = record.task_outputs
    parts = []
    if described.boxes:
        parts.append(f"boxes {described.box_format} in {described.box_frame} pixels")
    for name, value in (("score threshold", described.score_threshold), ("NMS IoU", described.nms_iou),
                        ("max detections", described.max_detections), ("run threshold", described.threshold),
                        ("batch", described.batch)):
        if value is not None:
            parts.append(f"{name} {value:g}")
    cats = list(described.categories or [])
    if cats:
        parts.append(f"{len(cats)} categories ({label_preview(cats, 3)})")
    return f"{record.kind}: " + ", ".join(parts)


def _show_record(record: Any, path: Any) -> None:
    from .record import as_json, label_preview

    if record is None:
        echo(f"{'path':<14} {path}\n(no zoo metadata in this file)")
        return
    for key, value in (("name", record.name), ("ref", record.ref), ("description", record.description),
                       ("key", record.key), ("path", path), ("exporter", record.exporter), ("opset", record.opset),
                       ("created", record.created)):
        if value is not None:
            echo(f"{key:<14} {value}")
    echo(f"{'weights':<14} {json.dumps(as_json(record.weights) or {})}")
    echo(f"{'recipe':<14} {json.dumps(record.recipe.to_dict())}")
    for io, values in (("input", record.inputs), ("output", record.outputs)):
        for value in values:
            echo(f"{io:<14} {value.name} {value.shape} {value.dtype}")
    echo(f"{'preprocessing':<14} {json.dumps(as_json(record.preprocessing) or {})}")
    labels = record.labels or []
    echo(f"{'labels':<14} {len(labels)}" + (f" ({label_preview(labels, 3)})" if labels else ""))
    if record.kind != "classification":
        echo(f"{'task':<14} {task_summary(record)}")
    validation = record.validation
    if validation:
        diff = validation.max_abs_diff  # absent for ready files (no PyTorch reference)
        echo(f"{'validation':<14} passed={validation.passed} "
             + (f"max_abs_diff={diff:.3g}" if diff is not None else f"parity={validation.parity or 'not run'}"))
    echo(f"{'stats':<14} {json.dumps(as_json(record.stats))}")
    int8 = validation.int8 if validation else None
    if int8 is not None:
        echo(f"{'int8':<14} {int8_summary(int8)}")
    for mark, run in (record.evaluations or {}).items():
        scores = " ".join(f"{k}={v}" for k, v in run.scores.items())
        echo(f"{'evaluation':<14} {scores} on {run.images} images "
             f"of {(run.dataset or {}).get('root')} ({mark}, {run.provider}, {run.created})")


@app.command()
@recipe_options
def rm(
    names: Annotated[list[str], typer.Argument(help="Stored models to remove.")],
    selection: dict[str, Any],
    json_: JsonFlag = False,
) -> None:
    """Remove stored models."""
    removed = [_removed(api.remove(name, **selection)) for name in names]
    emit({"removed": removed}, json_, lambda: [echo(f"removed {r['name']} ({r['key']})") for r in removed])


def _removed(entry: Any) -> dict[str, Any]:
    # A key whose record was broken: there is only the key to report.
    return {"name": entry, "key": entry} if isinstance(entry, str) else entry.summary()


@app.command()
@recipe_options
def push(
    name: Annotated[str, typer.Argument(help="A stored model's name (the recipe flags select the entry).")],
    repo_id: Annotated[str, typer.Argument(help="The Hugging Face Hub repo to upload to: ORG/REPO.")],
    selection: dict[str, Any],
    private: Annotated[bool, typer.Option(help="Create the repo private (when it does not exist yet).")] = False,
    revision: Annotated[str | None, typer.Option(help="Branch to commit to (made if missing; default main).")] = None,
    message: Annotated[str | None, typer.Option(help="Commit message.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Upload a stored model (model.onnx, zoo.json and a model card) to the Hub in one commit."""
    data = api.push(name, repo_id, private=private, revision=revision, message=message,
                    bars=not json_ and sys.stderr.isatty(), **selection)
    emit(data, json_, lambda: echo(f"pushed {data['name']} to {data['url']}\npull it with: zoo pull {data['pull']}"))


@app.command()
@recipe_options
def verify(
    name: Annotated[str | None, typer.Argument(help="One stored model (default: all).")] = None,
    selection: dict[str, Any] = None,  # type: ignore[assignment]
    json_: JsonFlag = False,
) -> None:
    """Re-hash stored files and report mismatches (exit 3 on any)."""
    reports = api.verify(name, **selection)
    ok = all(not r["problems"] for r in reports)

    def show() -> None:
        for r in reports:
            label = r["name"] or r["key"]
            echo(f"{label}: " + ("ok" if not r["problems"] else "; ".join(r["problems"])))
        if not reports:
            echo("the store is empty")

    emit({"ok": ok, "entries": reports}, json_, show)
    if not ok:
        bad = [r["key"] for r in reports if r["problems"]]
        out.error(f"{len(bad)} of {len(reports)} entries fail verification ({', '.join(bad[:3])}"
                  f"{', ...' if len(bad) > 3 else ''}): repair one with `zoo pull --force KEY` or remove it "
                  "with `zoo rm KEY`")
        raise typer.Exit(3)


@app.command()
def gc(
    max_age: Annotated[float | None, typer.Option(
        help="Remove temp dirs of writers on other hosts older than this many hours (default 24); "
             "a running writer's on this host are always kept.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Remove what killed exports left (temp dirs, unlinked generations): never a running writer's."""
    removed = [str(p) for p in api.gc(max_age_s=None if max_age is None else max_age * 3600)]
    emit({"removed": removed}, json_,
         lambda: echo(f"removed {len(removed)} stale temp dir(s)") if removed else echo("nothing to remove"))


RUNTIME_PARAMETERS = [
    _option("provider", Annotated[str, typer.Option(
        help="cpu, cuda, tensorrt, or auto (CUDA when it really loads, else CPU). Never falls back silently.")],
        "cpu"),
    _option("threads", Annotated[int | None, typer.Option(help="CPU: intra-op threads (default: ORT's).")]),
    _option("device_id", Annotated[int, typer.Option(help="CUDA/TensorRT: GPU index.")], 0),
    _option("cudnn_conv_algo_search", Annotated[str | None, typer.Option(
        help="CUDA: EXHAUSTIVE, HEURISTIC or DEFAULT (default: HEURISTIC for run, EXHAUSTIVE for bench).")]),
    _option("arena_extend_strategy", Annotated[str | None, typer.Option(
        help="CUDA: kNextPowerOfTwo or kSameAsRequested.")]),
    _option("prefer_nhwc", Annotated[bool | None, typer.Option(
        "--prefer-nhwc/--no-prefer-nhwc", help="CUDA: channels-last kernels.", show_default=False)]),
    _option("trt_fp16", Annotated[bool, typer.Option(
        "--trt-fp16", help="TensorRT: allow float16 kernels (engines cached under the store).")], False),
]


def runtime_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the provider flags to a command; it receives ``provider`` and ``runtime`` (ProviderOptions)."""
    from .runtime import ProviderOptions

    names = [p.name for p in RUNTIME_PARAMETERS]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in names}
        provider = flags.pop("provider")
        return func(*args, provider=provider, runtime=ProviderOptions(**flags), **kwargs)

    own = [p for p in inspect.signature(func).parameters.values() if p.name not in ("provider", "runtime")]
    wrapper.__signature__ = inspect.Signature(own + RUNTIME_PARAMETERS)  # type: ignore[attr-defined]
    return wrapper


@app.command()
@recipe_options
@runtime_options
@pull_options
def run(
    name: Annotated[str, typer.Argument(help="A model name (pulled on a miss) or a .onnx file.")],
    selection: dict[str, Any],
    provider: str,
    runtime: Any,
    pulling: dict[str, Any],
    image: Annotated[list[str] | None, typer.Option(
        "--image", help="An image file; repeat for a batch.")] = None,
    input_: Annotated[str | None, typer.Option("--input", help="Input tensor(s): FILE.npy or FILE.npz.")] = None,
    output: Annotated[str | None, typer.Option("--output", help="Write every output to FILE.npz.")] = None,
    topk: Annotated[int, typer.Option(help="How many classes to show per image.")] = 5,
    threshold: Annotated[float | None, typer.Option(
        help="Detection models: show detections scoring at least this (default: the record's).")] = None,
    save: Annotated[str | None, typer.Option(
        "--save", help="Write each image with its results drawn to DIR/<image>.png.")] = None,
    resize: Annotated[int | None, typer.Option(
        help="FILE.onnx without zoo metadata: resize the shorter side to this (then centre-crop).")] = None,
    mean: Annotated[str | None, typer.Option(help="FILE.onnx: per-channel mean, e.g. 0.485,0.456,0.406.")] = None,
    std: Annotated[str | None, typer.Option(help="FILE.onnx: per-channel std, e.g. 0.229,0.224,0.225.")] = None,
    interpolation: Annotated[str | None, typer.Option(help="FILE.onnx: bilinear, bicubic or nearest.")] = None,
    labels: Annotated[str | None, typer.Option(help="FILE.onnx: a text file with one label per line.")] = None,
    preprocess_like: Annotated[str | None, typer.Option(
        help="FILE.onnx: copy this model's preprocessing (and labels), e.g. timm:resnet50.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Run a model once on images, a tensor file, or a random input of its shape.

    For a FILE.onnx without zoo metadata, --size/--resize/--mean/--std/--interpolation/--labels
    or --preprocess-like say how images become its input.
    """
    from .benchmark import parse_list

    given: dict[str, Any] = {"resize": resize, "interpolation": interpolation}
    for flag, text in (("mean", mean), ("std", std)):
        given[flag] = parse_list(text, f"--{flag}", float) if text is not None else None
    warn_broken_plugins()
    with progress(not json_) as report:
        if report:
            report(f"loading {name}")
        result = api.run(name, provider=provider, images=image or (), input_file=input_, output_file=output,
                         topk=topk, runtime=runtime, progress=report, labels=_read_labels(labels),
                         preprocessing={k: v for k, v in given.items() if v is not None},
                         preprocess_like=preprocess_like, threshold=threshold, save=save, **pulling, **selection)

    def show() -> None:
        echo(f"provider: {_provider_line(result)}")
        if result.get("task", "classification") != "classification":
            _show_task(result)
            return
        names = result["input"].get("files") or [f"row {i}" for i in range(len(result.get("predictions", [])))]
        for label, rows in zip(names, result.get("predictions", []), strict=False):
            best = ", ".join(f"{r['label'] or r['index']} ({r['score']:.3f})" for r in rows)
            echo(f"{label}: {best}")
        if "predictions" not in result:
            for out in result["outputs"]:
                echo(f"{out['name']}: {out['dtype']} {out['shape']}")
        if result.get("output_file"):
            echo(f"outputs written to {result['output_file']}")
        for path in result.get("saved", []):
            echo(f"drawn: {path}")

    emit(result, json_, show)


def _show_task(result: dict[str, Any]) -> None:
    """Detections one line each (label, score, box in the image's pixels); segmentation the
    classes present with their share of the pixels."""
    for file, found in zip(result["input"]["files"], result["predictions"], strict=True):
        if result["task"] == "semantic-segmentation":
            shares = ", ".join(f"{r['label'] or r['index']} {100 * r['share']:.1f}%" for r in found)
            echo(f"{file}: {shares}")
            continue
        cut = result.get("threshold")
        echo(f"{file}: {len(found)} detection(s)" + (f" scoring at least {cut:g}" if cut is not None else ""))
        for row in found:
            box = ", ".join(f"{v:.0f}" for v in row["box"])
            extra = f" ({len(row['keypoints'])} keypoints)" if "keypoints" in row else ""
            echo(f"  {row['label'] or row['index']:<16} {row['score']:.3f}  [{box}]{extra}")
    for path in result.get("saved", []):
        echo(f"drawn: {path}")
    if result.get("output_file"):
        echo(f"outputs written to {result['output_file']}")


def _read_labels(path: str | None) -> list[str] | None:
    from pathlib import Path

    from .errors import UserError
    from .files import FileRefused, MiB, read_capped

    if path is None:
        return None
    try:  # a regular file under a cap, like every file zoo reads (never a FIFO)
        text = read_capped(Path(path).expanduser(), 16 * MiB).decode("utf-8", errors="replace")
    except (FileRefused, OSError):
        raise UserError(f"--labels {path}: not a readable text file (one label per line, at most 16 MB)") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _provider_line(result: dict[str, Any]) -> str:
    line = result["provider"]
    if result.get("passed_over"):
        line += " (auto; passed over " + "; ".join(
            f"{p['provider']}: {p['reason']}" for p in result["passed_over"]) + ")"
    return line


@app.command()
@recipe_options
@runtime_options
@pull_options
def bench(
    name: Annotated[str, typer.Argument(help="A model name (pulled on a miss) or a .onnx file.")],
    selection: dict[str, Any],
    provider: str,
    runtime: Any,
    pulling: dict[str, Any],
    batch: Annotated[str, typer.Option(help="Batch sizes to time, e.g. 1,8,32.")] = "1",
    mode: Annotated[str, typer.Option(help="naive, iobinding, cudagraph, or a list: naive,iobinding.")] = "naive",
    warmup: Annotated[int, typer.Option(help="Untimed runs before timing.")] = 10,
    iterations: Annotated[int, typer.Option(help="Timed runs.")] = 50,
    compare: Annotated[str | None, typer.Option(
        help="'torch': also time PyTorch eager on the same weights; or a KEY, name or FILE.onnx to time "
             "against this one (e.g. float32 vs its int8 twin).")] = None,
    json_: JsonFlag = False,
) -> None:
    """Time a model: session creation, first run, p50/p90/p99/mean latency and throughput."""
    from .benchmark import parse_list

    warn_broken_plugins()
    batches = parse_list(batch, "--batch", int)
    modes = parse_list(mode, "--mode")
    with progress(not json_) as report:
        if report:
            report(f"loading {name}")
        results = api.bench(name, provider=provider, batches=batches, modes=modes, warmup=warmup,
                            iterations=iterations, runtime=runtime, compare=compare, progress=report,
                            **pulling, **selection)

    def show() -> None:
        first = results[0]
        echo(f"{first['model']['name']} on {_provider_line(first)} ({first['device']['name']}), "
             f"session {first['session_create_ms']:.0f} ms")
        def timings(label: str, t: dict[str, Any], said: str = "") -> list[str]:
            return [label, str(t["batch"]), *(f"{t[k]:.2f}" for k in ("first_run_ms", "p50_ms", "p90_ms",
                                                                          "p99_ms", "mean_ms")),
                    f"{t['throughput']:.1f}", said]

        rows = []
        for r in results:
            rows.append(timings(r["mode"], r))
            if "compare" in r:
                t = r["compare"].get("torch") or r["compare"]["other"]
                label = "torch" if "torch" in r["compare"] else str(t["model"].get("dtype") or "other")
                rows.append(timings(label, t, f"onnxruntime {r['compare']['speedup_p50']:.2f}x faster (p50)"
                                    if label == "torch" else f"{t['model']['key'] or t['model']['path']}: "
                                    f"{t['throughput'] / r['throughput']:.2f}x the throughput"))
        out.table(["MODE", "BATCH", "FIRST", "P50", "P90", "P99", "MEAN", "ITEMS/S", ""], rows, right=range(1, 8))

    # One batch and one mode: exactly one result object; several: a document with `results`.
    data: Any = results[0] if len(results) == 1 else {
        "provider": results[0]["provider"], "results": results}
    emit(data, json_, show)


@app.command("eval")
@recipe_options
@runtime_options
@pull_options
def eval_(
    name: Annotated[str, typer.Argument(help="A model name or key (pulled on a miss) or a .onnx file.")],
    selection: dict[str, Any],
    provider: str,
    runtime: Any,
    pulling: dict[str, Any],
    data: Annotated[str, typer.Option(
        help="Labelled images: DIR/<class>/<image>, class = index, WordNet id or label; a detector: the "
             "annotated images; a segmenter: DIR/images + DIR/masks (class-index PNGs).")],
    annotations: Annotated[str | None, typer.Option(
        help="Detectors: the COCO instances JSON naming the images in --data (scored as COCO box mAP).")] = None,
    labels_map: Annotated[str | None, typer.Option(
        help="A file mapping class folders (detectors: annotation categories) to indices or labels "
             "(JSON, or NAME INDEX|LABEL lines).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate at most N images, spread over the classes.")] = None,
    batch: Annotated[int, typer.Option(help="Images per run.")] = 32,
    compare: Annotated[str | None, typer.Option(
        help="'torch' (the PyTorch model), or a KEY, name or FILE.onnx, evaluated on the same images.")] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also report accuracy per class.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Measure accuracy on labelled images (recorded in a stored entry): top-1/top-5 for a classifier,
    COCO mAP for a detector (--annotations), mean IoU for a semantic segmenter."""
    warn_broken_plugins()
    result = api.evaluate(name, data, labels_map=labels_map, limit=limit, batch=batch, provider=provider,
                          runtime=runtime, compare=compare, per_class=per_class, annotations=annotations,
                          bars=not json_ and sys.stderr.isatty(), **pulling, **selection)

    def show() -> None:
        echo(_scores(result["model"]["name"], result) + f" on {result['provider']} in {result['seconds']:.1f} s")
        if per_class and result.get("per_category"):
            out.table(["CATEGORY", "NAME", "AP", "AP50", "OBJECTS"],
                      [[number, row["name"], _percent(row["ap"]), _percent(row["ap_50"]), row["instances"]]
                       for number, row in result["per_category"].items() if row["ap"] is not None],
                      right=[0, 2, 3, 4])
        if per_class and result.get("task") == "semantic-segmentation":
            out.table(["CLASS", "LABEL", "IOU", "PIXELS"],
                      [[number, row["label"], _percent(row["iou"]), row["pixels"]]
                       for number, row in result["per_class"].items()], right=[0, 2, 3])
        if result["compare"]:
            c = result["compare"]
            echo(_scores(c["against"], c) + _agreement(c))
            if c["model"].get("note"):
                warn(c["model"]["note"])
        for item in result["failed_images"]:
            warn(f"skipped {item['path']}: {item['error']}")
        echo(f"data: {result['dataset']['root']} ({result['dataset']['images']} images, "
             f"fingerprint {result['dataset']['fingerprint']})")

    emit(result, json_, show)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _scores(label: str, r: dict[str, Any]) -> str:
    """One line of an evaluation's scores, whatever the task."""
    if "map" in r:
        return (f"{label}: mAP {_percent(r['map'])}  mAP50 {_percent(r['map_50'])}  mAP75 {_percent(r['map_75'])}  "
                f"({r['images']} images)")
    if "miou" in r:
        return (f"{label}: mIoU {_percent(r['miou'])}  pixel accuracy {_percent(r['pixel_accuracy'])}  "
                f"({r['images']} images)")
    return f"{label}: top-1 {_percent(r.get('top1'))}  top-5 {_percent(r.get('top5'))}  ({r.get('images')} images)"


def _agreement(c: dict[str, Any]) -> str:
    agreement = c.get("agreement")
    if "top1_agreement" in c:
        return f", top-1 agreement {_percent(c['top1_agreement'])}"
    if agreement and "pixels" in agreement:
        return f", same class on {_percent(agreement['pixels'])} of the pixels"
    if agreement:
        return (f", mAP {_percent(agreement['map'])} against the first model's {agreement['objects']} objects "
                f"(score >= {agreement['threshold']})")
    return ""


plugins_app = typer.Typer(help="List plugins, or check a source plugin with `zoo plugins check NAME`.")
app.add_typer(plugins_app, name="plugins")


@plugins_app.callback(invoke_without_command=True)
def plugins(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """List plugins: name, version, distribution, hooks, sources and status."""
    if ctx.invoked_subcommand is not None:
        ctx.meta["json"] = json_  # `zoo plugins --json check X` means JSON, as after check
        return
    for problem in api.get_host().problems(broken=False):  # the table shows the broken ones
        warn(problem)
    infos = [p.to_dict() for p in api.plugins()]

    def table() -> None:
        out.table(["PLUGIN", "VERSION", "DISTRIBUTION", "SOURCES", "STATUS"],
                  [[p["name"], str(p["version"]), str(p["distribution"]), ",".join(p["sources"]) or "-",
                    p["status"]] for p in infos])

    emit(infos, json_, table)


@plugins_app.command("check")
def plugins_check(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A source name, or a plugin name to check all its sources.")],
    model: Annotated[str | None, typer.Option(help="The model to build (default: the source's example).")] = None,
    exporter: Annotated[str | None, typer.Option(help="dynamo, torchscript or auto.")] = None,
    weights: Annotated[str, typer.Option(help="Weights to build with; 'default' = the source's.")] = "none",
    option: Annotated[list[str] | None, typer.Option(
        help="A source option KEY=VALUE (repeatable), e.g. arch=torchvision:resnet18 for local.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Check that a source follows the plugin contract, end to end (by default with --weights none)."""
    pairs = [item.partition("=") for item in option or []]
    if any(not key or not sep for key, sep, _value in pairs):
        raise UserError("--option takes KEY=VALUE, e.g. --option arch=torchvision:resnet18")
    warn_broken_plugins()
    reports = api.check_plugin(name, model, exporter=exporter, weights=None if weights == "default" else weights,
                               options={key: value for key, _sep, value in pairs} or None)
    data = {"passed": all(r.passed for r in reports), "reports": [r.to_dict() for r in reports]}
    emit(data, json_ or ctx.meta.get("json", False), lambda: [echo(r.format()) for r in reports])
    if not data["passed"]:
        raise typer.Exit(1)


remote_app = typer.Typer(help="The shared remote cache of exports (ZOO_REMOTE, an fsspec URL).",
                         no_args_is_help=True)
app.add_typer(remote_app, name="remote")


@remote_app.command("list")
def remote_list(remote: RemoteFlag = None, json_: JsonFlag = False) -> None:
    """Entries on the remote."""
    rows = api.remote_list(remote)  # an unreadable manifest: a ZooWarning, shown as one line

    def table() -> None:
        out.table(["NAME", "REF", "WEIGHTS", "SIZE", "KEY"],
                  [[r["name"], r["ref"], str(r["weights"]), human_size(r["size"]), r["key"]] for r in rows],
                  right=[3])

    emit(rows, json_, table)


@remote_app.command("push")
@recipe_options
def remote_push(
    name: Annotated[str, typer.Argument(help="A stored model's name (the recipe flags select the entry) or key.")],
    selection: dict[str, Any],
    remote: RemoteFlag = None,
    json_: JsonFlag = False,
) -> None:
    """Upload a stored entry to the remote."""
    with progress(not json_) as report:
        data = api.remote_push(name, url=remote, progress=report, **selection)
    emit(data, json_, lambda: echo(f"pushed {data['name']} ({data['key']}) to {data['manifest']}, "
                                   f"{human_size(data['uploaded_bytes'])} uploaded"))


@remote_app.command("verify")
def remote_verify(remote: RemoteFlag = None, json_: JsonFlag = False) -> None:
    """Re-hash the remote's blobs and check its manifests (exit 3 on any problem)."""
    with progress(not json_) as report:
        data = api.remote_verify(remote, progress=report)
    def show() -> None:
        for line in data["problems"]:
            echo(line)
        if data["ok"]:
            echo(f"ok: {data['entries']} entries, {data['blobs']} blobs")

    emit(data, json_, show)
    if not data["ok"]:
        raise typer.Exit(3)


@remote_app.command("gc")
def remote_gc(remote: RemoteFlag = None, json_: JsonFlag = False) -> None:
    """Remove blobs no manifest names (never one younger than an hour: an upload may be in flight)."""
    data = api.remote_gc(remote)
    emit(data, json_, lambda: echo(f"removed {len(data['removed'])} unreferenced blob(s); "
                                   f"kept {data['kept_young']} younger than an hour"))


def _command_name(info: Any) -> str | None:
    return info.name or (info.callback.__name__.replace("_", "-") if info.callback else None)


BUILTIN_COMMANDS = frozenset(
    name for name in [*map(_command_name, app.registered_commands), *(g.name for g in app.registered_groups)] if name)


def command(only: str | None = None, plugin_commands: Mapping[str, Callable[..., Any]] | None = None) -> Any:
    """The click command behind ``app`` and ``plugin_commands``, its help free of type placeholders.

    Flags show no value; options show their name as the value (``--opset OPSET``). ``only``:
    build just that built-in command under the group, for a command line that names it (building
    every command's options costs more than parsing them).
    """
    source = copy.copy(app)  # the module's app stays as declared
    source.registered_commands = [c for c in app.registered_commands if only in (None, _command_name(c))]
    source.registered_groups = [g for g in app.registered_groups if only in (None, g.name)]
    for name, function in (plugin_commands or {}).items():
        source.command(name=name)(function)
    root = typer.main.get_command(source)

    def plain(param: Any) -> None:  # for typer < 0.29 (pyproject.toml); never fatal with another
        if param.param_type_name != "argument":
            if not (getattr(param, "is_flag", False) or getattr(param, "count", False)):
                param.metavar = param.metavar or param.name.upper()
        elif hasattr(param, "type"):  # the name column says what an argument is
            param.type = copy.copy(param.type)  # per instance: types are shared
            param.type.get_metavar = lambda param, ctx: ""

    def tidy(cmd: Any) -> None:
        for param in cmd.params:
            plain(param)
        for sub in getattr(cmd, "commands", {}).values():
            tidy(sub)

    tidy(root)
    return root


def main() -> None:
    """Entry point: run the app, turning zoo's errors into one line and an exit code."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): nowhere to print a result
        if sys.stderr is not None:
            out.error("standard output is closed; redirect it instead (e.g. >/dev/null)")
        sys.exit(4)
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", ZooWarning)  # each is said where it happens, not once per code line
    try:
        # Asked every time: a plugin whose commands clash is skipped whole, sources included.
        extra = {name: function for name, (function, _plugin) in api.plugin_commands(set(BUILTIN_COMMANDS)).items()}
        args = sys.argv[1:]
        if args and args[0] in BUILTIN_COMMANDS:
            code = command(only=args[0]).main(standalone_mode=False)
        else:  # the overview, or a plugin's command
            code = command(plugin_commands=extra).main(standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into exit 130 itself, before the handler below
            raise KeyboardInterrupt
    except ZooError as exc:
        if interrupted(exc):  # a zoo error made of an import that Ctrl-C broke
            say_interrupted()
        if debug():
            raise
        out.error(str(exc))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        say_interrupted()  # through the real stderr: after a Ctrl-C nothing else is said
    except Exception as exc:
        if interrupted(exc):  # ONNX Runtime's "import numpy failed" after a Ctrl-C, and the like
            say_interrupted()
        if _is_click_error(exc):
            _click_error(exc)
        if debug():
            raise
        if isinstance(exc, OSError) and exc.errno in UNWRITABLE:  # the machine, not zoo
            where = f" ({exc.filename})" if exc.filename else ""
            out.error(f"{exc.strerror}{where}; free space or choose a writable place")
            sys.exit(4)
        out.error(f"{one_line(exc, kind=True)} (run with ZOO_DEBUG=1 for the traceback)", "internal error")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)




def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """zoo's own warnings (``ZooWarning``) as one ``zoo: warning:`` line; others as Python shows them."""
    if issubclass(category, ZooWarning):
        warn(str(message))
    else:
        _python_show_warning(message, category, *args, **kwargs)


_python_show_warning = warnings.showwarning


def _is_click_error(exc: BaseException) -> bool:
    # Typer ships its own copy of click, so its exception classes are matched by name.
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def _click_error(exc: Any) -> None:
    """Usage errors in one line (exit 2), like every other error; bare `zoo` shows the help."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NoArgsIsHelpError" in names:
        exc.show()
    elif "UsageError" in names:
        where = exc.ctx.command_path if getattr(exc, "ctx", None) else "zoo"
        out.error(f"{exc.format_message()} (see `{where} --help`)", "usage error")
    else:
        out.error(exc.format_message())
    sys.exit(exc.exit_code)

