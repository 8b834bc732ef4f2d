"""The ``zoo`` command line: a thin layer over ``zoo.api``.

Every command takes ``--json`` and then prints exactly one JSON document on stdout.
Errors are one line on stderr and a non-zero exit (see ``zoo.errors`` for the codes);
``ZOO_DEBUG=1`` shows tracebacks.
"""

import errno
import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from . import api
from .env import debug
from .errors import ZooError

app = typer.Typer(
    name="zoo",
    help="A model zoo for ONNX: pull, export, check, store and run models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


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
]
RECIPE_NAMES = [p.name for p in RECIPE_PARAMETERS]


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


# -- output --------------------------------------------------------------------------------
def emit(data: Any, as_json: bool, human: Callable[[], None] | None = None) -> None:
    if as_json or human is None:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        human()


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    sys.stderr.write(f"zoo: warning: {text}\n")


@contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A spinner on stderr while long steps run, only on a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    with Console(stderr=True).status("working...") as status:
        yield lambda message: status.update(message)


def warn_broken_plugins() -> None:
    for info in api.get_host().failed():
        origin = f"from {info.distribution}" if info.distribution else "no distribution"
        warn(f"plugin {info.name} ({origin}) skipped: {info.error} (see `zoo plugins`)")


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


# -- commands --------------------------------------------------------------------------------
@app.command()
@recipe_options
def pull(
    names: Annotated[list[str], typer.Argument(help="Aliases, SOURCE:NAME refs or bare names.")],
    selection: dict[str, Any],
    force: Annotated[bool, typer.Option(help="Export again even when cached.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Resolve, export on a miss, and print the path of model.onnx."""
    warn_broken_plugins()
    results = []
    for name in names:
        with progress(not json_) as report:
            results.append(api.pull(name, force=force, progress=report, **selection).summary())
    emit(results[0] if len(results) == 1 else results, json_,
         lambda: [echo(r["path"]) for r in results])


@app.command("export")
@recipe_options
def export_(
    selection: dict[str, Any],
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write model.onnx and zoo.json into.")],
    name: Annotated[str | None, typer.Argument(help="Alias, SOURCE:NAME, bare name or local:PATH.")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        help="A checkpoint file to export: shorthand for the ref local:PATH (needs --arch).")] = None,
    arch: Annotated[str | None, typer.Option(
        help="The checkpoint's architecture as SOURCE:NAME, e.g. timm:repvit_m0_9.")] = None,
    num_classes: Annotated[int | None, typer.Option(
        help="Classes of the checkpoint's head (default: read from the checkpoint).")] = None,
    strict: Annotated[bool | None, typer.Option(
        "--strict/--no-strict", help="Refuse checkpoints with missing or unexpected keys (default strict).",
        show_default=False)] = None,
    json_: JsonFlag = False,
) -> None:
    """Export to a directory of your choosing (model.onnx + zoo.json)."""
    from .errors import UserError

    if checkpoint and name:
        raise UserError("give REF or --checkpoint PATH, not both (a checkpoint's architecture goes in --arch)")
    if not checkpoint and not name:
        raise UserError("name what to export: `zoo export REF -o DIR` or `zoo export --checkpoint PATH --arch "
                        "SOURCE:NAME -o DIR`")
    name = f"local:{checkpoint}" if checkpoint else name
    options = {"arch": arch, "num_classes": num_classes, "strict": strict}
    warn_broken_plugins()
    with progress(not json_) as report:
        entry = api.export(name, output, progress=report, options=options, **selection)
    data = {"name": name, "ref": entry.ref, "path": str(entry.model_path), "sha256": entry.sha256,
            "dir": str(entry.dir)}
    emit(data, json_, lambda: echo(data["path"]))


@app.command("list")
def list_(
    pattern: Annotated[str | None, typer.Argument(help="Shell-style filter, e.g. 'resnet*'.")] = None,
    available: Annotated[
        bool, typer.Option("--available", help="List what the sources can build, not what is cached.")
    ] = False,
    registry: Annotated[str | None, typer.Option(help="An extra registry.toml.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Cached entries (or, with --available, what can be pulled)."""
    from .source import match

    if available:
        warn_broken_plugins()
        rows = api.available(pattern, registry, on_error=lambda _source, reason: warn(reason))
        emit(rows, json_, lambda: [echo(f"{r['name']:<40} {r['description'] or r['ref']}") for r in rows])
        return
    entries = api.entries()
    if pattern:
        entries = [e for e in entries if match([e.name], pattern) or match([e.ref], pattern)]
    rows = [e.summary() for e in entries]

    def table() -> None:
        echo(f"{'NAME':<28} {'REF':<36} {'WEIGHTS':<16} {'SIZE':>9}  KEY")
        for r in rows:
            echo(f"{r['name']:<28} {r['ref']:<36} {str(r['weights']):<16} "
                 f"{human_size(r['size']):>9}  {r['key']}")

    emit(rows, json_, table)


@app.command()
@recipe_options
def info(
    name: Annotated[str, typer.Argument(help="A stored model's name, or a .onnx file.")],
    selection: dict[str, Any],
    json_: JsonFlag = False,
) -> None:
    """Show a stored model's metadata (zoo.json)."""
    if name.endswith(".onnx"):
        metadata = _file_metadata(name)
    else:
        entry = api.find(name, **selection)
        metadata = {**entry.metadata, "path": str(entry.model_path)}

    def show() -> None:
        for key in ("name", "ref", "key", "path", "exporter", "created"):
            if metadata.get(key) is not None:
                echo(f"{key:<14} {metadata[key]}")
        echo(f"{'weights':<14} {json.dumps(metadata.get('weights', {}))}")
        echo(f"{'recipe':<14} {json.dumps(metadata.get('recipe', {}))}")
        for io in ("inputs", "outputs"):
            for value in metadata.get(io, []):
                echo(f"{io[:-1]:<14} {value['name']} {value['shape']} {value['dtype']}")
        echo(f"{'preprocessing':<14} {json.dumps(metadata.get('preprocessing', {}))}")
        labels = metadata.get("labels") or []
        echo(f"{'labels':<14} {len(labels)}" + (f" ({', '.join(labels[:3])}, ...)" if labels else ""))
        validation = metadata.get("validation", {})
        if validation:
            diff = validation.get("max_abs_diff")  # absent for ready files (no PyTorch reference)
            echo(f"{'validation':<14} passed={validation.get('passed')} "
                 + (f"max_abs_diff={diff:.3g}" if isinstance(diff, (int, float)) else
                    f"parity={validation.get('parity', 'not run')}"))
        echo(f"{'stats':<14} {json.dumps(metadata.get('stats', {}))}")
        int8 = validation.get("int8") or {}
        if int8:
            echo(f"{'int8':<14} passed={int8.get('passed')} top1_agreement={int8.get('top1_agreement')} "
                 f"max_abs_diff={int8.get('max_abs_diff')} on {int8.get('images')} calibration images "
                 f"({(int8.get('calibration') or {}).get('fingerprint')})")
        for mark, run in (metadata.get("evaluations") or {}).items():
            echo(f"{'evaluation':<14} top1={run.get('top1')} top5={run.get('top5')} on {run.get('images')} images "
                 f"of {(run.get('dataset') or {}).get('root')} ({mark}, {run.get('provider')}, {run.get('created')})")

    emit(metadata, json_, show)


def _file_metadata(path: str) -> dict[str, Any]:
    from pathlib import Path

    from .errors import UserError
    from .metadata import read_props

    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"no such file: {path}")
    try:
        return {**read_props(file), "path": str(file.resolve())}
    except Exception as exc:
        raise UserError(f"cannot read ONNX metadata from {path}: {exc}") from None


@app.command()
@recipe_options
def rm(
    names: Annotated[list[str], typer.Argument(help="Stored models to remove.")],
    selection: dict[str, Any],
    json_: JsonFlag = False,
) -> None:
    """Remove stored models."""
    removed = [api.remove(name, **selection).summary() for name in names]
    emit({"removed": removed}, json_, lambda: [echo(f"removed {r['name']} ({r['key']})") for r in removed])


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
    from . import hub

    data = hub.push(name, repo_id, private=private, revision=revision, message=message,
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
        raise typer.Exit(3)


@app.command()
def gc(
    max_age: Annotated[float | None, typer.Option(
        help="Also remove temp dirs older than this many hours, even if their writer looks alive.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Remove temp dirs left by exports that were killed (their writer is dead)."""
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
def run(
    name: Annotated[str, typer.Argument(help="A model name (pulled on a miss) or a .onnx file.")],
    selection: dict[str, Any],
    provider: str,
    runtime: Any,
    image: Annotated[list[str] | None, typer.Option(
        "--image", help="An image file; repeat for a batch.")] = None,
    input_: Annotated[str | None, typer.Option("--input", help="Input tensor(s): FILE.npy or FILE.npz.")] = None,
    output: Annotated[str | None, typer.Option("--output", help="Write every output to FILE.npz.")] = None,
    topk: Annotated[int, typer.Option(help="How many classes to show per image.")] = 5,
    json_: JsonFlag = False,
) -> None:
    """Run a model once on images, a tensor file, or a random input of its shape."""
    from . import runtime as rt

    warn_broken_plugins()
    with progress(not json_) as report:
        if report:
            report(f"loading {name}")
        target = rt.locate(name, selection)
    result = rt.run(target, provider, images=image or (), input_file=input_, output_file=output, topk=topk,
                    batch=selection.get("batch"), options=runtime)

    def show() -> None:
        echo(f"provider: {_provider_line(result)}")
        names = result["input"].get("files") or [f"row {i}" for i in range(len(result.get("predictions", [])))]
        for label, rows in zip(names, result.get("predictions", []), strict=False):
            best = ", ".join(f"{r['label'] or r['index']} ({r['score']:.3f})" for r in rows)
            echo(f"{label}: {best}")
        if "predictions" not in result:
            for out in result["outputs"]:
                echo(f"{out['name']}: {out['dtype']} {out['shape']}")
        if result.get("output_file"):
            echo(f"outputs written to {result['output_file']}")

    emit(result, json_, show)


def _provider_line(result: dict[str, Any]) -> str:
    line = result["provider"]
    if result.get("passed_over"):
        line += " (auto; passed over " + "; ".join(
            f"{p['provider']}: {p['reason']}" for p in result["passed_over"]) + ")"
    return line


@app.command()
@recipe_options
@runtime_options
def bench(
    name: Annotated[str, typer.Argument(help="A model name (pulled on a miss) or a .onnx file.")],
    selection: dict[str, Any],
    provider: str,
    runtime: Any,
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
    from . import benchmark as timing
    from . import runtime as rt
    from .errors import UserError

    warn_broken_plugins()
    batches = timing.parse_list(batch, "--batch", int)
    modes = timing.parse_list(mode, "--mode")
    if selection.get("dynamic_batch") is False:  # a static-batch entry is selected by its batch
        if len(batches) != 1:
            raise UserError("a --static-batch model runs one batch size: give a single --batch")
        selection["batch"] = batches[0]
    with progress(not json_) as report:
        if report:
            report(f"loading {name}")
        target = rt.locate(name, selection)
        if report:
            report("timing")
        results = timing.bench(target, provider, batches, modes, warmup, iterations, runtime, compare)

    def show() -> None:
        first = results[0]
        echo(f"{first['model']['name']} on {_provider_line(first)} ({first['device']['name']}), "
             f"session {first['session_create_ms']:.0f} ms")
        echo(f"{'MODE':<10} {'BATCH':>5} {'FIRST':>9} {'P50':>9} {'P90':>9} {'P99':>9} {'MEAN':>9} {'ITEMS/S':>9}")
        for r in results:
            echo(f"{r['mode']:<10} {r['batch']:>5} {r['first_run_ms']:>9.2f} {r['p50_ms']:>9.2f} "
                 f"{r['p90_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['mean_ms']:>9.2f} {r['throughput']:>9.1f}")
            if "compare" in r:
                t = r["compare"].get("torch") or r["compare"]["other"]
                label = "torch" if "torch" in r["compare"] else str(t["model"].get("dtype") or "other")
                note = (f"onnxruntime {r['compare']['speedup_p50']:.2f}x faster (p50)" if label == "torch" else
                        f"{t['model']['key'] or t['model']['path']}: {t['throughput'] / r['throughput']:.2f}x "
                        "the throughput")
                echo(f"{label:<10} {t['batch']:>5} {t['first_run_ms']:>9.2f} {t['p50_ms']:>9.2f} "
                     f"{t['p90_ms']:>9.2f} {t['p99_ms']:>9.2f} {t['mean_ms']:>9.2f} {t['throughput']:>9.1f}   {note}")

    # One batch and one mode: exactly one result object; several: a document with `results`.
    data: Any = results[0] if len(results) == 1 else {
        "provider": results[0]["provider"], "results": results}
    emit(data, json_, show)


@app.command("eval")
@recipe_options
@runtime_options
def eval_(
    name: Annotated[str, typer.Argument(help="A model name or key (pulled on a miss) or a .onnx file.")],
    selection: dict[str, Any],
    provider: str,
    runtime: Any,
    data: Annotated[str, typer.Option(
        help="Labelled images: DIR/<class>/<image>, class = index, WordNet id or label.")],
    labels_map: Annotated[str | None, typer.Option(
        help="A file mapping class folders to indices or labels (JSON, or FOLDER INDEX|LABEL lines).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate at most N images, spread over the classes.")] = None,
    batch: Annotated[int, typer.Option(help="Images per run.")] = 32,
    compare: Annotated[str | None, typer.Option(
        help="'torch' (the PyTorch model), or a KEY, name or FILE.onnx, evaluated on the same images.")] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also report accuracy per class.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Measure top-1 and top-5 accuracy on a labelled image folder (recorded in a stored entry)."""
    from .evaluate import evaluate_model

    warn_broken_plugins()
    if selection.get("dynamic_batch") is False:  # a static-batch entry is selected by its batch
        selection["batch"] = batch
    result = evaluate_model(name, data, selection, labels_map=labels_map, limit=limit, batch=batch,
                            provider=provider, options=runtime, compare=compare, per_class=per_class,
                            bars=not json_ and sys.stderr.isatty())

    def show() -> None:
        def line(label: str, r: dict[str, Any]) -> str:
            return (f"{label}: top-1 {_percent(r['top1'])}  top-5 {_percent(r['top5'])}  "
                    f"({r['images']} images)")

        echo(line(result["model"]["name"], result) + f" on {result['provider']} in {result['seconds']:.1f} s")
        if result["compare"]:
            c = result["compare"]
            echo(line(c["against"], c) + f", top-1 agreement {_percent(c['top1_agreement'])}")
            if c["model"].get("note"):
                warn(c["model"]["note"])
        for item in result["failed_images"]:
            warn(f"skipped {item['path']}: {item['error']}")
        echo(f"data: {result['dataset']['root']} ({result['dataset']['images']} images, "
             f"fingerprint {result['dataset']['fingerprint']})")

    emit(result, json_, show)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


plugins_app = typer.Typer(help="List plugins, or check a source plugin with `zoo plugins check NAME`.")
app.add_typer(plugins_app, name="plugins")


@plugins_app.callback(invoke_without_command=True)
def plugins(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """List plugins: name, version, distribution, hooks, sources and status."""
    if ctx.invoked_subcommand is not None:
        return
    infos = [p.to_dict() for p in api.plugins()]

    def table() -> None:
        echo(f"{'PLUGIN':<20} {'VERSION':<10} {'DISTRIBUTION':<16} {'SOURCES':<16} STATUS")
        for p in infos:
            echo(f"{p['name']:<20} {str(p['version']):<10} {str(p['distribution']):<16} "
                 f"{','.join(p['sources']) or '-':<16} {p['status']}")

    emit(infos, json_, table)


@plugins_app.command("check")
def plugins_check(
    name: Annotated[str, typer.Argument(help="A source name, or a plugin name to check all its sources.")],
    model: Annotated[str | None, typer.Option(help="The model to build (default: the source's example).")] = None,
    exporter: Annotated[str | None, typer.Option(help="dynamo, torchscript or auto.")] = None,
    weights: Annotated[str, typer.Option(help="Weights to build with; 'default' = the source's.")] = "none",
    option: Annotated[list[str] | None, typer.Option(
        help="A source option KEY=VALUE (repeatable), e.g. arch=torchvision:resnet18 for local.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Check that a source follows the plugin contract, end to end (by default with --weights none)."""
    from .errors import UserError
    from .testing import check_plugin

    pairs = [item.partition("=") for item in option or []]
    if any(not key or not sep for key, sep, _value in pairs):
        raise UserError("--option takes KEY=VALUE, e.g. --option arch=torchvision:resnet18")
    warn_broken_plugins()
    reports = check_plugin(name, model, exporter=exporter, weights=None if weights == "default" else weights,
                           options={key: value for key, _sep, value in pairs} or None)
    data = {"passed": all(r.passed for r in reports), "reports": [r.to_dict() for r in reports]}
    emit(data, json_, lambda: [echo(r.format()) for r in reports])
    if not data["passed"]:
        raise typer.Exit(1)


def add_plugin_commands() -> None:
    """Add the plugins' extra commands (``zoo_register_commands``) to the app."""
    taken = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    taken |= {g.name for g in app.registered_groups if g.name}
    for command, (function, _plugin) in api.get_host().register_commands(taken).items():
        app.command(name=command)(function)


def main() -> None:
    """Entry point: run the app, turning zoo's errors into one line and an exit code."""
    try:
        add_plugin_commands()
        code = app(standalone_mode=False)
    except ZooError as exc:
        if debug():
            raise
        sys.stderr.write(f"zoo: error: {exc}\n")
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("zoo: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if _is_click_error(exc):
            _click_error(exc)
        if debug():
            raise
        if isinstance(exc, OSError) and exc.errno in _REFUSED_WRITES:  # the machine, not zoo
            where = f" ({exc.filename})" if exc.filename else ""
            sys.stderr.write(f"zoo: error: {exc.strerror}{where}; free space or choose a writable place\n")
            sys.exit(4)
        first = (str(exc).strip().splitlines() or [""])[0]
        sys.stderr.write(f"zoo: internal error: {type(exc).__name__}: {first} "
                         "(run with ZOO_DEBUG=1 for the traceback)\n")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


_REFUSED_WRITES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


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
        sys.stderr.write(f"zoo: usage error: {_one_line(exc.format_message())} (see `{where} --help`)\n")
    else:
        sys.stderr.write(f"zoo: error: {_one_line(exc.format_message())}\n")
    sys.exit(exc.exit_code)


def _one_line(text: str) -> str:
    return " ".join(text.split())
