"""The remote cache on a local S3 server: a cold export against a remote hit, and the hit's
transfer against a raw copy of the same bytes.

An S3-compatible server (moto, in its own process on 127.0.0.1) holds the remote. Figures:

- cold: ``zoo pull resnet50 --weights none --no-remote``, a whole process: what a machine
  without the remote pays (build, export, check, parity, hash, store).
- push: ``zoo remote push`` of that entry (whole process).
- hit: ``zoo pull resnet50 --weights none`` with ``ZOO_REMOTE=s3://...`` in a fresh
  ``ZOO_HOME``, a whole process (start-up, resolve, download, sha256, store).
  Target: hit <= 0.1x cold.
- transfer: in one process, ``Remote.fetch`` into a fresh store (manifest GET, blob GET
  hashed on the way, temp dir, fsync, rename) against raw copies of the same blob to a local
  file: boto3's ``download_file`` (s3transfer, the engine of ``aws s3 cp``) and s3fs's
  ``get_file``, each with a new client as a new process would have. Runs alternate so that
  each round sees the same background load; medians.
  Target: zoo <= 1.3x the ``aws s3 cp``-style copy.

Run: python benchmarks/bench_remote.py [--rounds N] [--model resnet50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BUCKET = "zoo-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_s3() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return server, endpoint
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the moto server did not start")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, proc.stdout


def zoo(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo", *args]


def transfer_rounds(url: str, key: str, sha256: str, tmp: Path, rounds: int) -> dict[str, list[float]]:
    """zoo's download into a store against raw copies of the blob, alternated, in this process."""
    import boto3
    import s3fs

    from zoo.remote import Remote
    from zoo.store import Store

    blob = f"{BUCKET}/bench/blobs/sha256/{sha256}"
    times: dict[str, list[float]] = {"zoo": [], "aws_s3_cp": [], "s3fs_get": []}
    # Each transfer starts with a new client, as each process does (its connection set-up included).
    for i in range(rounds):
        store = Store(tmp / f"fetch{i}")
        start = time.perf_counter()
        fetched = Remote(url).fetch(key, store)
        times["zoo"].append(time.perf_counter() - start)
        assert fetched is not None and fetched[1], "the fetch was not a remote hit"

        target = tmp / f"boto{i}.onnx"
        start = time.perf_counter()
        boto3.client("s3").download_file(BUCKET, blob.removeprefix(BUCKET + "/"), str(target))
        times["aws_s3_cp"].append(time.perf_counter() - start)

        target = tmp / f"s3fs{i}.onnx"
        start = time.perf_counter()
        s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False).get_file(blob, str(target))
        times["s3fs_get"].append(time.perf_counter() - start)
        for path in (tmp / f"fetch{i}", tmp / f"boto{i}.onnx", target):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--rounds", type=int, default=7, help="alternated transfer rounds")
    parser.add_argument("--hits", type=int, default=3, help="whole-process remote hits")
    args = parser.parse_args()
    load_before = os.getloadavg()
    server, endpoint = start_s3()
    try:
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1")
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(BUCKET)
        url = f"s3://{BUCKET}/bench"
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
            env.update(ZOO_CONFIG_DIR=str(tmp / "config"))
            model = [args.model, "--weights", "none"]

            cold, out = timed(zoo("pull", *model, "--no-remote", "--json"), {**env, "ZOO_HOME": str(tmp / "a")})
            pulled = json.loads(out)
            assert pulled["cached"] is False
            size = Path(pulled["path"]).stat().st_size
            push, _ = timed(zoo("remote", "push", pulled["key"], "--remote", url), {**env, "ZOO_HOME": str(tmp / "a")})

            hits = []
            for i in range(args.hits):
                seconds, out = timed(zoo("pull", *model, "--json"),
                                     {**env, "ZOO_HOME": str(tmp / f"hit{i}"), "ZOO_REMOTE": url})
                assert json.loads(out)["cached"] == "remote"
                hits.append(seconds)
            transfers = transfer_rounds(url, pulled["key"], pulled["sha256"], tmp, args.rounds)
    finally:
        server.terminate()
        server.wait()
    load_after = os.getloadavg()

    hit = statistics.median(hits)
    medians = {name: statistics.median(values) for name, values in transfers.items()}
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "model": args.model,
        "model_bytes": size,
        "cold_export_s": round(cold, 3),
        "push_s": round(push, 3),
        "remote_hit_s": [round(x, 3) for x in hits],
        "hit_over_cold": round(hit / cold, 4),
        "transfer_s": {name: [round(x, 3) for x in values] for name, values in transfers.items()},
        "transfer_median_s": {name: round(value, 3) for name, value in medians.items()},
        "zoo_over_aws_s3_cp": round(medians["zoo"] / medians["aws_s3_cp"], 3),
        "zoo_over_s3fs_get": round(medians["zoo"] / medians["s3fs_get"], 3),
    }
    print(json.dumps(result, indent=2))
    print(f"\n{args.model} ({size / 1e6:.1f} MB), S3 = moto on 127.0.0.1; load average {load_before[0]:.1f} "
          f"before, {load_after[0]:.1f} after")
    print(f"cold export (zoo pull --no-remote)   {cold:8.2f} s")
    print(f"zoo remote push                       {push:8.2f} s")
    print(f"remote hit (zoo pull, fresh home)     {hit:8.2f} s  = {hit / cold:.3f}x cold   (target <= 0.1x)")
    print(f"transfer: zoo fetch into the store    {medians['zoo']:8.3f} s")
    print(f"transfer: boto3 download_file         {medians['aws_s3_cp']:8.3f} s  "
          f"zoo = {result['zoo_over_aws_s3_cp']:.2f}x  (target <= 1.3x)")
    print(f"transfer: s3fs get_file               {medians['s3fs_get']:8.3f} s  "
          f"zoo = {result['zoo_over_s3fs_get']:.2f}x")


if __name__ == "__main__":
    main()
