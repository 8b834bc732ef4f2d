"""Whole catalogues: pull many models, each in a process of its own, and report on each.

``expand`` turns patterns (``timm:resnet*``, registry names, ``--from FILE``) into model
names; ``run`` pulls them ``workers`` at a time. Each model that is not already stored is
pulled in a fresh child process that does that one model and exits, so a model that leaks
memory, hangs or crashes takes nothing else down: its memory (and any CUDA state) goes back
when the child exits. A child runs in its own process group, so a timeout, a memory limit or
Ctrl-C kills everything it started.

Children are forked from one server process that imported torch, timm and onnx once
(``multiprocessing``'s forkserver with a preload list): a model then costs its export, not
another few seconds of imports. The server never touches CUDA, so every child still starts
without a CUDA context.

Hits are decided here, in the calling process, from the cache key alone: a second run of the
same command starts no child for what is stored and never imports torch.

The module is ``bulk_run`` rather than ``bulk``: ``zoo``'s public names must not be shadowed
by a submodule.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import EnvironmentProblem, UserError, ZooError, one_line

STATUSES = ("exported", "hit", "remote", "failed", "timed out")
GLOB = re.compile(r"[*?\[]")
# What one model's export may need, for the default number of workers (timm's and
# torchvision's classifiers up to ResNet-152 stay under this on CPU).
MODEL_MEMORY = 2 << 30
# Imported once in the server that forks the children (missing ones are skipped): what every
# export needs, the dynamo exporter's stack unless --exporter torchscript, and the libraries
# of the sources the run names (a source's own plugin imports them lazily).
# "__main__": the calling program's script, imported once there rather than again by every
# child (multiprocessing re-imports a parent's main script in each child it starts).
PRELOAD = ["__main__", "torch", "onnx", "onnxruntime", "zoo.api", "zoo.exporting"]
PRELOAD_DYNAMO = ["onnxscript", "torch.onnx", "torch.export"]
PRELOAD_SOURCE = {"timm": ["timm"], "torchvision": ["torchvision"]}
POLL_S = 0.05  # how often running children are checked (memory, time)
GRACE_S = 3.0  # between asking a child to stop (SIGTERM) and killing its process group


@dataclass
class Outcome:
    """One model of a bulk run: what the report holds for it."""

    name: str
    status: str
    key: str | None = None
    error: str | None = None
    exporter: str | None = None
    parity: float | None = None  # max abs difference against PyTorch
    size: int | None = None  # bytes of the entry's files
    seconds: float = 0.0
    peak_memory: int | None = None  # bytes: the high-water mark of its process
    attempts: int = 0
    path: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("exported", "hit", "remote")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Summary:
    """The end of a report: counts per status, total time, how it ran."""

    total: int
    counts: dict[str, int]
    seconds: float
    workers: int
    interrupted: bool = False
    engine: str = "local"

    @classmethod
    def of(cls, outcomes: Sequence[Outcome], seconds: float, workers: int, interrupted: bool = False,
           engine: str = "local") -> Summary:
        counts = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
        return cls(len(outcomes), counts, round(seconds, 3), workers, interrupted, engine)

    def line(self) -> str:
        parts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        tail = " (interrupted)" if self.interrupted else ""
        return f"{self.total} models: {parts or 'none run'} in {self.seconds:.1f} s{tail}"


@dataclass
class Plan:
    """What a run will do: models to pull (name, key) and names that failed before any work."""

    todo: list[tuple[str, str]] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)


# -- choosing models -------------------------------------------------------------------------------
def read_names(path: str | Path) -> list[str]:
    """One model name a line; blank lines and ``#`` comments are skipped."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise UserError(f"--from {path}: {exc.strerror or exc}; give a file with one model name a line") from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def expand(patterns: Iterable[str], registry: str | Path | None = None) -> tuple[list[str], list[Outcome]]:
    """Model names for ``patterns``, in order and without repeats, and a failed outcome for
    each pattern that names nothing (an unknown source, a pattern matching no model).

    A pattern with ``*``, ``?`` or ``[`` is matched against the catalogues as
    ``zoo list --available PATTERN`` does; anything else is one name, resolved later.
    """
    from . import api

    names: list[str] = []
    failed: list[Outcome] = []
    for pattern in patterns:
        if not GLOB.search(pattern):
            names.append(pattern)
            continue
        try:
            rows = api.available(pattern, registry=registry)
        except ZooError as exc:
            failed.append(Outcome(pattern, "failed", error=one_line(str(exc))))
            continue
        if not rows:
            failed.append(Outcome(pattern, "failed", error=f"{pattern} names no model; see "
                                                           f"`zoo list --available '{pattern}'`"))
        names.extend(row["name"] for row in rows)
    return list(dict.fromkeys(names)), failed


def plan(names: Iterable[str], selection: Mapping[str, Any]) -> Plan:
    """Resolve each name to its cache key (no torch); a name that does not resolve fails here.
    Two names for one key (an alias and its ref) are pulled once."""
    from . import api

    result = Plan()
    seen: set[str] = set()
    for name in names:
        try:
            key = api.resolve_name(name, **selection).key
        except ZooError as exc:
            result.failed.append(Outcome(name, "failed", error=one_line(str(exc))))
            continue
        if key not in seen:
            seen.add(key)
            result.todo.append((name, key))
    return result


# -- sizing ----------------------------------------------------------------------------------------
def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where it cannot be read)."""
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def default_workers(n_cores: int | None = None, memory: int | None = None) -> int:
    """One worker per core, but no more than available memory / 2 GiB (``MODEL_MEMORY``); at least 1."""
    n_cores = cores() if n_cores is None else n_cores
    memory = available_memory() if memory is None else memory
    by_memory = n_cores if memory is None else memory // MODEL_MEMORY
    return max(1, min(n_cores, by_memory))


def default_memory_limit(workers: int, memory: int | None = None) -> int | None:
    """Each child may use its share of the memory available when the run starts."""
    memory = available_memory() if memory is None else memory
    return None if memory is None else max(memory // workers, 256 << 20)


def parse_size(text: str) -> int:
    """``2G``, ``512M``, ``1.5GiB``, ``300000000`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    try:
        if match is None:
            raise ValueError(text)
        return int(float(match[1]) * 1024 ** " kmgt".index(match[2] or " "))
    except ValueError:
        raise UserError(f"--memory-limit {text!r} is not a size: give bytes or a number with K, M or G "
                        "(e.g. 4G)") from None


# -- the report ------------------------------------------------------------------------------------
REPORT_FIELDS = [f for f in Outcome.__dataclass_fields__]


def check_report(path: str | Path) -> Path:
    """Refuse a report that could not be written, before any work is done."""
    report = Path(path).expanduser()
    if report.suffix not in (".json", ".csv"):
        raise UserError(f"--report {path}: name a .json or .csv file")
    if report.is_dir():
        raise UserError(f"--report {path} is a directory; name a .json or .csv file")
    folder = report.parent
    probe = folder / f".{report.name}.{os.getpid()}.probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--report {path} cannot be written ({exc.strerror or exc}); choose a writable place") \
            from None
    return report


def write_report(path: Path, outcomes: Sequence[Outcome], summary: Summary) -> None:
    """The report as JSON (``{"models": [...], "summary": {...}}``) or CSV (a row per model and a
    ``#`` summary line at the end), written next to its place and renamed in."""
    if path.suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, REPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for outcome in outcomes:
            writer.writerow(outcome.to_json())
        buffer.write(f"# {summary.line()}\n")
        text = buffer.getvalue()
    else:
        text = json.dumps({"models": [o.to_json() for o in outcomes], "summary": asdict(summary)}, indent=2) + "\n"
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text)
        partial.replace(path)
    except OSError as exc:
        with suppress(OSError):
            partial.unlink()
        raise EnvironmentProblem(f"--report {path} cannot be written ({exc.strerror or exc})") from None


# -- running ----------------------------------------------------------------------------------------
Event = Callable[[str, Outcome], None]  # ("start" | "done", outcome so far)


def local_hit(name: str, key: str, store: Any) -> Outcome | None:
    """The outcome for a stored, intact entry (hashes checked the cheap way), else None."""
    from . import api

    if store.get(key) is None:
        return None
    started = time.perf_counter()
    try:
        pulled = api.pull(key, store=store, remote=False)
    except ZooError as exc:
        return Outcome(name, "failed", key=key, error=one_line(str(exc)))
    return outcome_of(name, pulled.summary(), pulled.entry, time.perf_counter() - started)


def outcome_of(name: str, summary: Mapping[str, Any], entry: Any, seconds: float) -> Outcome:
    cached = summary["cached"]
    validation = entry.record.validation
    return Outcome(name, "hit" if cached is True else "remote" if cached == "remote" else "exported",
                   key=entry.key, exporter=entry.record.exporter,
                   parity=validation.max_abs_diff if validation else None, size=entry.size,
                   seconds=round(seconds, 3), path=summary["path"])


def run(names: Sequence[str], *, workers: int | None = None, timeout: float | None = None, retries: int = 0,
        memory_limit: int | None = None, force: bool = False, remote: str | bool | None = None,
        upload: bool = True, failed: Sequence[Outcome] = (), on_event: Event | None = None,
        store: Any = None, **selection: Any) -> tuple[list[Outcome], Summary]:
    """Pull every model in ``names`` (``selection``: see ``zoo.Selection``), ``workers`` at a
    time, each in its own process; the outcomes in the order of ``names`` and a summary.

    ``timeout``: seconds a model may take before its process group is killed (status
    ``timed out``). ``retries``: how often a model that failed for a reason other than bad
    input, or timed out, is tried again (in a new process). ``memory_limit``: bytes a child
    may hold before it is killed (default: the available memory shared among the workers).
    ``failed``: outcomes decided before (patterns that named nothing), reported with the rest.
    On ``KeyboardInterrupt`` every child is stopped, the store's temp dirs of the killed ones
    are removed, and ``Interrupted`` (a ``KeyboardInterrupt`` holding what had finished) is raised.
    """
    from .store import Store

    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise UserError(f"--workers {workers}: give at least 1")
    if retries < 0:
        raise UserError(f"--retries {retries}: give 0 or more")
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout {timeout}: give a number of seconds above 0")
    memory_limit = default_memory_limit(workers) if memory_limit is None else memory_limit
    store = store or Store()
    started = time.perf_counter()
    emit = on_event or (lambda kind, outcome: None)
    planned = plan(names, selection)
    done: dict[str, Outcome] = {}
    for outcome in [*failed, *planned.failed]:
        done[outcome.name] = outcome
        emit("done", outcome)
    queue: list[tuple[str, str]] = []
    for name, key in planned.todo:
        hit = None if force else local_hit(name, key, store)
        if hit is None:
            queue.append((name, key))
        else:
            done[name] = hit
            emit("done", hit)
    if queue:
        pool = Pool(workers, timeout, retries, memory_limit,
                    {"force": force, "remote": remote, "upload": upload, "selection": dict(selection)}, emit)
        pool.preload_sources(name for name, _key in queue)
        try:
            for outcome in pool.run(queue):
                done[outcome.name] = outcome
        except KeyboardInterrupt:
            pool.stop_all()
            collect(store)  # temp dirs of the children stopped mid-write
            outcomes = ordered(failed, names, done)
            raise Interrupted(outcomes, Summary.of(outcomes, time.perf_counter() - started, workers, True)) \
                from None
        finally:
            pool.stop_all()
        if pool.killed:
            collect(store)  # temp dirs of children killed mid-write
    outcomes = ordered(failed, names, done)
    return outcomes, Summary.of(outcomes, time.perf_counter() - started, workers)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: every child was stopped; what had finished, for the report."""

    def __init__(self, outcomes: list[Outcome], summary: Summary) -> None:
        super().__init__("interrupted")
        self.outcomes, self.summary = outcomes, summary


def ordered(failed: Sequence[Outcome], names: Sequence[str], done: Mapping[str, Outcome]) -> list[Outcome]:
    order = [o.name for o in failed] + list(names)
    return [done[n] for n in dict.fromkeys(order) if n in done]


def collect(store: Any) -> None:
    from . import api

    with suppress(ZooError, OSError):
        api.gc(store=store)


@dataclass
class _Job:
    name: str
    key: str
    attempt: int
    process: Any
    conn: Any
    started: float
    peak: int = 0
    result: dict[str, Any] | None = None


class Pool:
    """Children forked one per model from a server that preloaded the heavy imports."""

    def __init__(self, workers: int, timeout: float | None, retries: int, memory_limit: int | None,
                 task: dict[str, Any], emit: Event, threads: int | None = None) -> None:
        self.workers, self.timeout, self.retries, self.memory_limit = workers, timeout, retries, memory_limit
        self.task, self.emit = task, emit
        self.running: list[_Job] = []
        self.finished: list[Outcome] = []
        self.killed = False
        self.threads = threads or max(1, cores() // workers)  # intra-op threads per child: no oversubscription
        self.preload = list(PRELOAD)
        if task["selection"].get("exporter") != "torchscript":
            self.preload += PRELOAD_DYNAMO

    def preload_sources(self, names: Iterable[str]) -> None:
        for name in names:
            self.preload += [m for m in PRELOAD_SOURCE.get(name.partition(":")[0], []) if m not in self.preload]

    def run(self, queue: list[tuple[str, str]]) -> Iterable[Outcome]:
        from multiprocessing.connection import wait

        pending = [(name, key, 1) for name, key in queue]
        stop: list[int] = []  # Ctrl-C (or SIGTERM) is acted on between steps, never halfway through a start
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(ValueError):  # not the main thread: no signal arrives here anyway
                previous[sig] = signal.signal(sig, lambda signum, frame: stop.append(signum))
        try:
            yield from self._loop(pending, stop, wait)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, pending: list[tuple[str, str, int]], stop: list[int], wait: Any) -> Iterable[Outcome]:
        while pending or self.running:
            if stop:
                raise KeyboardInterrupt
            while pending and len(self.running) < self.workers:
                self._start(*pending.pop(0))
            wait([j.process.sentinel for j in self.running] + [j.conn for j in self.running], POLL_S)
            for job in list(self.running):
                outcome = self._check(job)
                if outcome is None:
                    continue
                self.running.remove(job)
                if not outcome.ok and outcome.attempts <= self.retries and self._retryable(job, outcome):
                    pending.append((job.name, job.key, job.attempt + 1))
                    continue
                self.finished.append(outcome)
                self.emit("done", outcome)
                yield outcome

    @staticmethod
    def _retryable(job: _Job, outcome: Outcome) -> bool:
        return not (job.result or {}).get("bad_input", False)

    def _start(self, name: str, key: str, attempt: int) -> None:
        ctx = _context(self.preload)
        receive, send = ctx.Pipe(duplex=False)
        task = {**self.task, "name": name, "env": dict(os.environ), "threads": self.threads}
        process = ctx.Process(target=child, args=(task, send), name=f"zoo bulk {name}", daemon=False)
        process.start()
        send.close()  # the child holds the only writing end: EOF when it dies
        job = _Job(name, key, attempt, process, receive, time.perf_counter())
        self.running.append(job)
        self.emit("start", Outcome(name, "running", key=key, attempts=attempt))

    def _check(self, job: _Job) -> Outcome | None:
        """The job's outcome once it has one: finished, dead, over time or over memory."""
        if job.result is None and job.conn.poll():
            with suppress(EOFError, OSError):
                job.result = job.conn.recv()
        rss, hwm = _memory(job.process.pid)
        job.peak = max(job.peak, hwm)
        elapsed = time.perf_counter() - job.started
        if job.result is not None or not job.process.is_alive():
            job.process.join(GRACE_S)
            if job.result is None and job.conn.poll():  # sent just before it exited
                with suppress(EOFError, OSError):
                    job.result = job.conn.recv()
            self._finish(job)
            return self._outcome(job, elapsed)
        if self.timeout is not None and elapsed > self.timeout:
            self._kill(job)
            return self._outcome(job, elapsed, "timed out", f"took more than {self.timeout:g} s; "
                                                            "its processes were killed")
        if self.memory_limit is not None and rss > self.memory_limit:
            self._kill(job, at_once=True)
            return self._outcome(job, elapsed, "failed", f"used more than {_human(self.memory_limit)} of memory "
                                                         "(--memory-limit); its processes were killed")
        return None

    def _outcome(self, job: _Job, elapsed: float, status: str | None = None, error: str | None = None) -> Outcome:
        result = job.result or {}
        peak = max(job.peak, result.get("peak_memory") or 0) or None
        if status is None:
            if result:
                status, error = result["status"], result.get("error")
            else:
                code = job.process.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                status, error = "failed", f"its process died ({how}) before reporting"
        fields = {k: result.get(k) for k in ("exporter", "parity", "size", "path")} if status != "timed out" else {}
        return Outcome(job.name, status, key=result.get("key", job.key), error=error, seconds=round(elapsed, 3),
                       peak_memory=peak, attempts=job.attempt, **fields)

    def _finish(self, job: _Job) -> None:
        _signal_group(job.process.pid, signal.SIGKILL)  # anything the model left running
        job.conn.close()

    def _kill(self, job: _Job, at_once: bool = False) -> None:
        """Stop a child: SIGTERM to its group (the store cleans its temp dir), then SIGKILL."""
        self.killed = True
        if not at_once:
            _signal_group(job.process.pid, signal.SIGTERM)
            job.process.join(GRACE_S)
        _signal_group(job.process.pid, signal.SIGKILL)
        job.process.join()
        job.conn.close()

    def stop_all(self) -> None:
        for job in self.running:
            _signal_group(job.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for job in self.running:
            job.process.join(max(0.0, deadline - time.monotonic()))
        for job in self.running:
            self.killed = True
            _signal_group(job.process.pid, signal.SIGKILL)
            job.process.join()
            job.conn.close()
        self.running.clear()


_CONTEXT: list[Any] = []


def _context(preload: list[str]) -> Any:
    """The forkserver context, its preload set by the first run in this process (where fork is
    unsafe, spawn)."""
    if not _CONTEXT:
        import multiprocessing

        try:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(preload)
        except ValueError:
            ctx = multiprocessing.get_context("spawn")
        _CONTEXT.append(ctx)
    return _CONTEXT[0]


def _signal_group(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the child leads its own group (setsid)
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)  # before its setsid, or if that failed


def _memory(pid: int | None) -> tuple[int, int]:
    """(resident, high-water mark) of process ``pid`` in bytes; zeros once it is gone."""
    rss = hwm = 0
    with suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def _human(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.0f} MiB"


# -- the child ------------------------------------------------------------------------------------------
def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the store's cleanup of its temp dir


def _die_with_server() -> None:
    """Have the kernel kill this child when the server that forked it exits, which it does as
    soon as its caller is gone: a ``zoo bulk`` or Ray worker killed outright (SIGKILL, no
    chance to stop its children) leaves no child running on (Linux; elsewhere a no-op)."""
    with suppress(Exception):
        import ctypes
        from multiprocessing import forkserver

        # multiprocessing hands every child the write end of the pipe whose EOF ends the server
        # (so it outlives its children); a child that must die with the server lets it go.
        alive = forkserver._forkserver._forkserver_alive_fd
        if alive is not None:
            os.close(alive)
            forkserver._forkserver._forkserver_alive_fd = None
        server = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != server:  # the server was gone already
            os._exit(1)


def child(task: dict[str, Any], conn: Any) -> None:
    """Pull one model and send its result; runs in a fresh process that exits after it."""
    with suppress(OSError):
        os.setsid()  # its own process group: a timeout kills what it started too
    _die_with_server()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ.clear()
    os.environ.update(task["env"])
    with suppress(Exception):
        import torch  # preloaded: costs nothing here

        torch.set_num_threads(task["threads"])
    result = pull_one(task["name"], task["force"], task["remote"], task["upload"], task["selection"])
    try:
        import resource

        result["peak_memory"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        pass
    conn.send(result)
    conn.close()


def pull_one(name: str, force: bool, remote: str | bool | None, upload: bool,
             selection: Mapping[str, Any]) -> dict[str, Any]:
    """``api.pull`` of one model as the plain dict a report row is made from (never raises a
    ``ZooError`` or ``Exception``: a failure is its one-line error)."""
    from . import api
    from .host import reset_host

    reset_host()  # plugins as the environment says now, not as the forking server found them
    started = time.perf_counter()
    try:
        pulled = api.pull(name, force=force, remote=remote, upload=upload, **selection)
    except ZooError as exc:
        return {"status": "failed", "error": one_line(str(exc)), "bad_input": isinstance(exc, UserError)}
    except MemoryError:
        return {"status": "failed", "error": "ran out of memory (MemoryError)"}
    except Exception as exc:
        return {"status": "failed", "error": one_line(exc, kind=True)}
    outcome = outcome_of(name, pulled.summary(), pulled.entry, time.perf_counter() - started)
    return {k: v for k, v in outcome.to_json().items() if k not in ("name", "attempts", "peak_memory")}
