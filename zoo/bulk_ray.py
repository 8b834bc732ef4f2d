"""``zoo bulk --ray``: the same run on a Ray cluster, results landing in the remote cache.

Each model is one Ray task with its own CPU/GPU/memory request. The task exports in a child
process that does that one model and exits (forked from a server in the Ray worker that
imported torch once, as in the local pool), so memory and CUDA state go back as with
``max_calls=1``, without a new Ray worker's imports per model. The
worker pulls into its node's own store, then makes sure the remote cache (``--remote`` /
``ZOO_REMOTE``) holds the entry; the driver only decides what is missing and reports. A
later ``zoo pull`` or ``zoo bulk`` anywhere fetches the results from the remote.

The driver's store and the remote are asked first, from the cache key alone (no torch, no
task): what either holds is reported as ``hit`` or ``remote`` and not run again.

Ray is optional (``pip install 'zoo-onnx[ray]'``); nothing here is imported without ``--ray``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from .bulk_run import Event, Interrupted, Outcome, Summary, local_hit, ordered, plan
from .errors import EnvironmentProblem, UserError, ZooError, one_line

CONNECT_TIMEOUT_S = 5.0
CANCEL_GRACE_S = 3.0


def run(names: Sequence[str], *, address: str = "auto", workers: int | None = None, timeout: float | None = None,
        retries: int = 0, memory_limit: int | None = None, cpus: float = 1.0, gpus: float = 0.0, force: bool = False,
        remote: str | bool | None = None, upload: bool = True, failed: Sequence[Outcome] = (),
        on_event: Event | None = None, store: Any = None, **selection: Any) -> tuple[list[Outcome], Summary]:
    """Pull ``names`` as Ray tasks on the cluster at ``address`` (``auto``: the one this machine
    belongs to); the same outcomes and summary as ``zoo.bulk_run.run``.

    At most ``workers`` tasks run at once (default: as many as the cluster's CPUs allow).
    Each task asks for ``cpus`` CPUs, ``gpus`` GPUs and ``memory_limit`` bytes; ``timeout``
    cancels a task (its worker is killed); ``retries`` as in the local run.
    """
    from .remote import open_remote
    from .store import Store

    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: give at least 1")
    if retries < 0:
        raise UserError(f"--retries {retries}: give 0 or more")
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout {timeout}: give a number of seconds above 0")
    if not upload:
        raise UserError("--ray with --no-upload: the workers' results only reach you through the remote cache")
    shared = open_remote(remote)
    if shared is None:
        raise UserError("--ray needs a remote cache for the workers' results: pass --remote URL or set ZOO_REMOTE "
                        "(s3://bucket/zoo, or file:///shared/zoo on a shared filesystem)")
    ray = _connect(address)
    started = time.perf_counter()
    emit = on_event or (lambda kind, outcome: None)
    store = store or Store()
    try:
        planned = plan(names, selection)
        done: dict[str, Outcome] = {}
        for outcome in [*failed, *planned.failed]:
            done[outcome.name] = outcome
            emit("done", outcome)
        queue: list[tuple[str, str, int]] = []
        for name, key in planned.todo:
            known = None if force else (local_hit(name, key, store) or _in_remote(name, key, shared))
            if known is None:
                queue.append((name, key, 1))
            else:
                done[name] = known
                emit("done", known)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1e-3)))
        slots = min(slots, workers) if workers else slots
        # No max_calls=1: the Ray worker is reused, and isolation comes from the process that
        # exports, a child it forks from its preloaded server per model (as the local pool does),
        # so a model costs its export, not a new worker's imports.
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0,
                          **({"memory": memory_limit} if memory_limit else {}))(_task)
        threads = max(1, int(cpus))
        # The task enforces the timeout itself (killing its child's process group); the driver
        # cancels a task only when that has plainly failed (its worker stuck).
        backstop = None if timeout is None else timeout * (retries + 1) + 60
        running: dict[Any, tuple[str, str, int, float]] = {}
        try:
            while queue or running:
                while queue and len(running) < slots:
                    name, key, attempt = queue.pop(0)
                    ref = task.remote(name, key, force, shared.url, dict(selection), threads, timeout, memory_limit,
                                      retries)
                    running[ref] = (name, key, attempt, time.perf_counter())
                    emit("start", Outcome(name, "running", key=key, attempts=attempt))
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
                now = time.perf_counter()
                finished: list[tuple[Any, Outcome, bool]] = []
                for ref in ready:
                    name, key, attempt, since = running[ref]
                    try:
                        result = ray.get(ref)
                        retry = False  # the task retried what deserved it
                    except Exception as exc:  # the Ray worker died: a crash, Ray's memory monitor
                        result = {"status": "failed", "error": one_line(f"its Ray task failed: {one_line(exc)}"),
                                  "attempts": attempt}
                        retry = True
                    finished.append((ref, _outcome(name, key, now - since, result), retry))
                for ref, (name, key, attempt, since) in running.items():
                    if backstop is not None and ref not in ready and now - since > backstop:
                        ray.cancel(ref, force=True)  # kills the Ray worker
                        outcome = Outcome(name, "timed out", key=key, attempts=attempt, seconds=round(now - since, 3),
                                          error=f"its Ray task ran {now - since:.0f} s and did not stop; cancelled")
                        finished.append((ref, outcome, True))
                for ref, outcome, retry in finished:
                    del running[ref]
                    if not outcome.ok and retry and outcome.attempts <= retries:
                        queue.append((outcome.name, outcome.key or "", outcome.attempts + 1))
                        continue
                    done[outcome.name] = outcome
                    emit("done", outcome)
        except KeyboardInterrupt:
            _cancel(ray, list(running))
            outcomes = ordered(failed, names, done)
            raise Interrupted(outcomes, Summary.of(outcomes, time.perf_counter() - started, slots, True, "ray")) \
                from None
        outcomes = ordered(failed, names, done)
        return outcomes, Summary.of(outcomes, time.perf_counter() - started, slots, engine="ray")
    finally:
        with suppress(Exception):
            ray.shutdown()


def _task(name: str, key: str, force: bool, remote: str, selection: Mapping[str, Any], threads: int,
          timeout: float | None, memory_limit: int | None, retries: int) -> dict[str, Any]:
    """One model on a Ray worker: pulled into the node's store by a child process of its own
    (``zoo.bulk_run.Pool``: timeout, memory limit, retries), then made sure of in the remote."""
    from . import api
    from .bulk_run import Pool, collect
    from .store import Store

    with suppress(ZooError, OSError):
        api.gc()  # temp dirs of earlier tasks on this node that were cancelled (killed) mid-write
    pool = Pool(1, timeout, retries, memory_limit,
                {"force": force, "remote": remote, "upload": False, "selection": dict(selection)},
                lambda kind, outcome: None, threads=threads)
    pool.preload_sources([name])
    try:
        outcome = list(pool.run([(name, key)]))[0]
    finally:
        pool.stop_all()
        if pool.killed:
            collect(Store())
    result = outcome.to_json()
    if outcome.ok:
        try:
            from .remote import Remote

            shared = Remote(remote)
            if force or shared.manifest(outcome.key or key) is None:
                entry = Store().get(outcome.key or key)
                if entry is None:
                    raise EnvironmentProblem(f"entry {outcome.key} vanished from the worker's store")
                shared.upload(entry)
        except ZooError as exc:
            result.update(status="failed", error=one_line(f"not uploaded: {exc}"))
    return result


def _outcome(name: str, key: str, seconds: float, result: Mapping[str, Any]) -> Outcome:
    """A task's result as the driver reports it: its seconds from submission (Ray's share included)."""
    fields = {k: result.get(k) for k in ("error", "exporter", "parity", "size", "path", "peak_memory", "attempts")}
    return Outcome(name, result["status"], key=result.get("key") or key, seconds=round(seconds, 3), **fields)


def _in_remote(name: str, key: str, shared: Any) -> Outcome | None:
    """The remote already holds ``key``: nothing to run (reported as ``remote``)."""
    try:
        manifest = shared.manifest(key)
    except ZooError:
        return None  # unreadable here: a worker will try, and say why if it cannot
    if manifest is None:
        return None
    record = manifest.get("record") or {}
    validation = record.get("validation") or {}
    return Outcome(name, "remote", key=key, exporter=record.get("exporter"), parity=validation.get("max_abs_diff"),
                   size=sum(f.get("size", 0) for f in manifest.get("files", [])),
                   path=shared.address(shared.manifest_path(key)))


def _connect(address: str) -> Any:
    """``ray`` connected to the cluster at ``address``: one line (exit 4) when Ray is missing or the
    address does not answer, instead of Ray's minutes of retries."""
    try:
        import ray
    except ImportError:
        raise EnvironmentProblem("--ray needs Ray: pip install 'zoo-onnx[ray]'") from None
    if address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S):
                pass
        except ValueError:
            raise UserError(f"--ray {address}: give 'auto' or HOST:PORT of the cluster's head (e.g. "
                            "10.0.0.5:6379)") from None
        except OSError as exc:
            raise EnvironmentProblem(f"Ray at {address} does not answer ({exc.strerror or exc}); start it with "
                                     "`ray start --head`, or give the head's address") from None
    import logging

    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                 configure_logging=True)
    except ConnectionError as exc:
        raise EnvironmentProblem(f"no Ray cluster at --ray {address} ({one_line(exc)}); start one with "
                                 "`ray start --head` or give the head's address (a cluster with token "
                                 "authentication also needs RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN)") from None
    return ray


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Ctrl-C: ask every running task to stop (the store cleans its temp dir), then kill the rest."""
    for ref in refs:
        with suppress(Exception):
            ray.cancel(ref)
    with suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
    for ref in refs:
        with suppress(Exception):
            ray.cancel(ref, force=True)
