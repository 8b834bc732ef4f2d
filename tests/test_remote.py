"""The shared remote cache (zoo.remote): a file:// remote and S3 for real (moto's server on 127.0.0.1).

One tiny model (timm's test_resnet, random weights, TorchScript exporter) is exported once per
session, in process, and uploaded; every other test downloads, damages or re-uploads it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO, run_cli, zoo_env
from typer.testing import CliRunner

MODEL = ["timm:test_resnet", "--weights", "none", "--exporter", "torchscript"]
BUCKET = "zoo-test"


@dataclass
class Seed:
    home: Path  # the store that exported the model (and uploaded it)
    url: str  # the file:// remote it was uploaded to
    pulled: dict  # `zoo pull --json` of that first pull

    @property
    def entry_dir(self) -> Path:
        return Path(self.pulled["path"]).parent


def cli(*args: str) -> object:
    """``zoo ARGS`` in process (the environment is the test's), library warnings shown as
    ``zoo.cli.main`` shows them (one ``zoo: warning:`` line each)."""
    import warnings

    from zoo.cli import _show_warning, app
    from zoo.errors import ZooWarning

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", ZooWarning)
        return CliRunner().invoke(app, list(args))


def poisoned(tmp_path: Path) -> str:
    """A PYTHONPATH where importing torch, torchvision or timm fails loudly."""
    poison = tmp_path / "poison"
    for name in ("torch", "torchvision", "timm"):
        (poison / name).mkdir(parents=True, exist_ok=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} must not be imported')\n")
    return os.pathsep.join([str(poison), str(REPO), str(REPO / "plugins")])


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) == ["model.onnx", "zoo.json"]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("zoo: warning: ")]


@pytest.fixture(scope="session")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    """``zoo pull`` of the tiny model with a file:// remote configured: a miss, exported and uploaded."""
    from zoo.host import reset_host

    base = tmp_path_factory.mktemp("remote-seed")
    url = (base / "shared").as_uri()  # not made yet: a file:// root is created when missing
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("ZOO_")]:
            env.delenv(key)
        env.setenv("ZOO_HOME", str(base / "home"))
        env.setenv("ZOO_CONFIG_DIR", str(base / "config"))
        env.setenv("ZOO_REMOTE", url)
        reset_host()
        result = cli("pull", *MODEL, "--json")
        reset_host()
    assert result.exit_code == 0, result.output
    return Seed(base / "home", url, json.loads(result.stdout))


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1 with a bucket; AWS_* point every client at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.delenv(key, raising=False)
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(BUCKET)
        yield BUCKET
    server.stop()


def s3_fs():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


# -- file:// ---------------------------------------------------------------------------------
def test_file_remote_serves_a_second_home_without_torch(seed: Seed, tmp_path: Path) -> None:
    assert seed.pulled["cached"] is False
    key = seed.pulled["key"]
    shared = Path(seed.url.removeprefix("file://"))
    manifest = json.loads((shared / "entries" / f"{key}.json").read_text())
    assert manifest["files"] == [{k: f[k] for k in ("path", "size", "sha256")}
                                 for f in json.loads((seed.entry_dir / "zoo.json").read_text())["files"]]
    assert manifest["record"]["toolchain"]["torch"]  # the record names the toolchain that made it
    assert (shared / "blobs" / "sha256" / seed.pulled["sha256"]).is_file()

    home = tmp_path / "home-b"
    # HF_HUB_OFFLINE is the Hub's switch (set everywhere on air-gapped clusters): the remote stays on
    env = zoo_env(home, ZOO_REMOTE=seed.url, PYTHONPATH=poisoned(tmp_path), HF_HUB_OFFLINE="1")
    proc = run_cli("pull", *MODEL, "--json", env=env)
    pulled = json.loads(proc.stdout)
    assert pulled["cached"] == "remote" and pulled["remote"] == seed.url
    assert "is off" not in proc.stderr
    assert pulled["key"] == key and pulled["sha256"] == seed.pulled["sha256"]
    same_files(seed.entry_dir, Path(pulled["path"]).parent)
    assert not list((home / "tmp").iterdir())  # downloaded through the store's temp dir + rename

    # the poison works: with the remote off, the same pull must export, and cannot
    for off in ({"ZOO_OFFLINE": "1"}, {}):
        args = ["pull", *MODEL] + ([] if off else ["--no-remote"])
        proc = run_cli(*args, env=zoo_env(tmp_path / "home-c", ZOO_REMOTE=seed.url, PYTHONPATH=poisoned(tmp_path),
                                          **off), check=False)
        assert proc.returncode != 0 and "must not be imported" in proc.stderr, proc.stderr
        said = f"zoo: warning: remote cache {seed.url} is off ({'ZOO_OFFLINE=1' if off else '--no-remote'})"
        assert [line for line in proc.stderr.splitlines() if "is off" in line][0].startswith(said), proc.stderr


def test_human_pull_says_from_remote_and_list_push_verify(seed: Seed, home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = home / "config"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(f'remote = "{seed.url}"\n')
    result = cli("pull", *MODEL)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("model.onnx")
    assert f"from remote {seed.url}" in result.stderr and not warnings_in(result.stderr)

    listed = json.loads(cli("remote", "list", "--json").stdout)
    assert [(r["key"], r["name"], r["sha256"]) for r in listed] == [
        (seed.pulled["key"], "timm:test_resnet", seed.pulled["sha256"])]
    assert set(listed[0]) >= {"name", "ref", "path", "size", "sha256"}

    # push by key to another remote given on the command line (over config.toml), created when missing
    other = (tmp_path / "new" / "remote").as_uri()
    pushed = json.loads(cli("remote", "push", seed.pulled["key"], "--remote", other, "--json").stdout)
    assert pushed["uploaded"] == ["model.onnx"] and pushed["manifest"].startswith(other)
    again = json.loads(cli("remote", "push", "timm:test_resnet", "--remote", other, "--json").stdout)
    assert again["uploaded"] == []  # blobs are content-addressed: nothing to send twice
    verified = cli("remote", "verify", "--remote", other, "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True

    monkeypatch.setenv("ZOO_REMOTE", other)  # the environment wins over config.toml
    assert [r["key"] for r in json.loads(cli("remote", "list", "--json").stdout)] == [seed.pulled["key"]]


def test_no_remote_configured_is_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("remote", "list")
    assert result.exception.exit_code == 1 and "no remote configured" in str(result.exception)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    result = cli("remote", "list", "--remote", "file:///tmp")
    assert result.exception.exit_code == 4 and "offline" in str(result.exception)


def test_run_eval_and_bench_take_the_remote_flags(seed: Seed, home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from zoo import api
    from zoo.errors import UserError

    exported = api._producer

    def refused(*args: object) -> None:
        raise UserError("this model may not be exported here")

    monkeypatch.setattr(api, "_producer", refused)
    ran = cli("run", *MODEL, "--remote", seed.url, "--json")  # a miss, served by the remote named
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["provider"] == "cpu"
    same_files(seed.entry_dir, home / "models" / seed.pulled["key"])

    data = tmp_path / "data" / "0"
    data.mkdir(parents=True)
    Image.new("RGB", (64, 64), (120, 40, 200)).save(data / "a.png")
    monkeypatch.setenv("ZOO_REMOTE", seed.url)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home-2"))
    evaluated = cli("eval", *MODEL, "--data", str(data.parent), "--no-remote")  # over ZOO_REMOTE: must export
    assert evaluated.exit_code == 1 and "may not be exported here" in str(evaluated.exception)
    evaluated = cli("eval", *MODEL, "--data", str(data.parent), "--json")
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["images"] == 1

    monkeypatch.setattr(api, "_producer", exported)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home-3"))
    empty = tmp_path / "empty"
    benched = cli("bench", *MODEL, "--remote", empty.as_uri(), "--no-upload", "--iterations", "1", "--warmup", "0",
                  "--json")
    assert benched.exit_code == 0, benched.output
    assert json.loads(benched.stdout)["model"]["key"] == seed.pulled["key"]
    assert not list(empty.rglob("*.json"))  # exported here, and kept off the remote


def test_gc_removes_old_unreferenced_blobs_only(seed: Seed, tmp_path: Path, home: Path) -> None:
    shared = tmp_path / "shared"
    shutil.copytree(Path(seed.url.removeprefix("file://")), shared)
    blobs = shared / "blobs" / "sha256"
    live = blobs / seed.pulled["sha256"]
    old, young = blobs / ("a" * 64), blobs / ("b" * 64)
    old.write_bytes(b"orphan")
    young.write_bytes(b"in flight")
    stale_upload = shared / "tmp" / "deadbeef"
    stale_upload.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    for path in (old, live, stale_upload):
        os.utime(path, (two_hours_ago, two_hours_ago))
    result = cli("remote", "gc", "--remote", shared.as_uri(), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert sorted(data["removed"]) == sorted([old.as_uri(), stale_upload.as_uri()])
    assert data["kept_young"] == 1 and live.exists() and young.exists()
    assert not old.exists() and not stale_upload.exists()

    # a manifest it cannot read might name any blob: gc refuses
    (shared / "entries" / ("0" * 20 + ".json")).write_text("{not json")
    refused = cli("remote", "gc", "--remote", shared.as_uri())
    assert refused.exception.exit_code == 3 and "refusing to collect garbage" in str(refused.exception)
    assert young.exists()


def test_unsafe_manifest_is_never_used(seed: Seed, tmp_path: Path, home: Path) -> None:
    from zoo.remote import Remote
    from zoo.store import Store

    shared = tmp_path / "shared"
    shutil.copytree(Path(seed.url.removeprefix("file://")), shared)
    key = seed.pulled["key"]
    manifest_path = shared / "entries" / f"{key}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0]["path"] = "../../escaped.onnx"
    manifest_path.write_text(json.dumps(manifest))
    remote = Remote(shared.as_uri())
    from zoo.errors import ZooWarning

    with pytest.warns(ZooWarning, match="unsafe file path"):  # said, and not used
        assert remote.fetch(key, Store()) is None
    assert not (tmp_path / "escaped.onnx").exists() and Store().get(key) is None
    result = cli("remote", "verify", "--remote", shared.as_uri(), "--json")
    assert result.exit_code == 3 and "unsafe file path" in result.stdout


def test_upload_failure_is_a_warning_and_the_entry_stays(seed: Seed, tmp_path: Path) -> None:
    from zoo.errors import ZooWarning
    from zoo.remote import Remote, upload_quietly
    from zoo.store import Store

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "blobs").write_text("a file where the blobs directory should be")
    entry = Store(seed.home).get(seed.pulled["key"])
    with pytest.warns(ZooWarning) as said:  # a library warning; the CLI shows it as one line
        assert upload_quietly(Remote(blocked.as_uri()), entry) is None
    lines = [str(w.message) for w in said]
    assert len(lines) == 1 and "not uploaded" in lines[0] and "the local entry is kept" in lines[0]
    assert not (blocked / "entries").exists()
    assert Store(seed.home).verify(entry) == []


def test_two_machines_uploading_one_key_both_leave_a_valid_entry(seed: Seed, tmp_path: Path, home: Path) -> None:
    import threading

    from zoo.recipe import file_sha256
    from zoo.record import FileRecord, Record
    from zoo.remote import Remote
    from zoo.store import Entry, Store

    # A second machine's export of the same key with other bytes (as random weights give).
    other = tmp_path / "other" / seed.pulled["key"]
    shutil.copytree(seed.entry_dir, other)
    model = bytearray((other / "model.onnx").read_bytes())
    model[len(model) // 2] ^= 0xFF
    (other / "model.onnx").write_bytes(model)
    record = Record.loads((other / "zoo.json").read_text())
    record.files = [FileRecord("model.onnx", len(model), file_sha256(other / "model.onnx"))]
    entries = [Store(seed.home).get(seed.pulled["key"]), Entry(seed.pulled["key"], other, record)]

    url = (tmp_path / "shared").as_uri()
    errors: list[BaseException] = []

    def upload(entry: Entry) -> None:
        try:
            Remote(url).upload(entry)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(entry,)) for entry in entries for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    verified = Remote(url).verify()
    assert verified["ok"] and verified["blobs"] == 2, verified
    fetched = Remote(url).fetch(seed.pulled["key"], Store())
    assert fetched is not None and fetched[1]
    assert fetched[0].sha256 in {e.sha256 for e in entries}
    assert Store().verify(fetched[0]) == []


def test_sigkill_mid_blob_upload_leaves_nothing_visible(seed: Seed, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    script = (
        "import os, sys, time\n"
        "import zoo.api as api\n"
        "def stall(message):\n"
        "    print('writing', message, flush=True)\n"
        "    time.sleep(60)\n"
        f"api.remote_push({seed.pulled['key']!r}, url={shared.as_uri()!r}, progress=stall)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=zoo_env(seed.home), stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().startswith("writing uploading")  # one chunk of the blob written
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    files = [p.relative_to(shared).parts[0] for p in shared.rglob("*") if p.is_file()]
    assert files == ["tmp"]  # the half upload, under tmp/ only: no blob, no manifest
    listed = cli("remote", "list", "--remote", shared.as_uri(), "--json")
    assert json.loads(listed.stdout) == []


# -- S3 ---------------------------------------------------------------------------------------
def test_s3_round_trip_without_torch(seed: Seed, s3: str, home: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.api import remote_push
    from zoo.store import Store

    url = f"s3://{s3}/round-trip"
    key = seed.pulled["key"]
    assert remote_push(key, url=url, store=Store(seed.home))["manifest"] == f"{url}/entries/{key}.json"
    stored = s3_fs().find(f"{s3}/round-trip")
    assert sorted(stored) == [f"{s3}/round-trip/blobs/sha256/{seed.pulled['sha256']}",
                              f"{s3}/round-trip/entries/{key}.json"]

    env = zoo_env(tmp_path / "home-b", ZOO_REMOTE=url, PYTHONPATH=poisoned(tmp_path))
    pulled = json.loads(run_cli("pull", *MODEL, "--json", env=env).stdout)
    assert pulled["cached"] == "remote" and pulled["remote"] == url
    same_files(seed.entry_dir, Path(pulled["path"]).parent)
    monkeypatch.setenv("ZOO_REMOTE", url)
    assert [r["key"] for r in json.loads(cli("remote", "list", "--json").stdout)] == [key]
    verified = json.loads(cli("remote", "verify", "--json").stdout)
    assert verified == {"remote": url, "ok": True, "entries": 1, "blobs": 1, "problems": []}


def test_s3_sigkill_before_the_manifest_leaves_no_entry(seed: Seed, s3: str, home: Path) -> None:
    url = f"s3://{s3}/killed"
    key = seed.pulled["key"]
    # Stop the upload where it is most tempting to get wrong: every blob written, the manifest not yet.
    script = (
        "import time\n"
        "import zoo.remote as remote\n"
        "def stall(self, target, body):\n"
        "    print('manifest next', flush=True)\n"
        "    time.sleep(60)\n"
        "remote.Remote._put_bytes = stall\n"
        "import zoo.api as api\n"
        f"api.remote_push({key!r}, url={url!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=zoo_env(seed.home), stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        assert proc.stdout.readline() == "manifest next\n"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    fs = s3_fs()
    assert fs.find(f"{s3}/killed") == [f"{s3}/killed/blobs/sha256/{seed.pulled['sha256']}"]
    assert json.loads(cli("remote", "list", "--remote", url, "--json").stdout) == []

    from zoo.remote import Remote
    from zoo.store import Store

    remote = Remote(url)
    assert remote.fetch(key, Store()) is None and Store().get(key) is None  # a miss, not an error
    assert remote.collect_garbage()["removed"] == []  # the orphan is young: an upload may be in flight
    later = remote.collect_garbage(now=time.time() + 2 * 3600)
    assert later["removed"] == [f"{url}/blobs/sha256/{seed.pulled['sha256']}"]


def test_s3_flipped_byte_warns_once_and_exports_locally(seed: Seed, s3: str, home: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"s3://{s3}/flipped"
    key = seed.pulled["key"]
    from zoo.api import remote_push
    from zoo.store import Store

    remote_push(key, url=url, store=Store(seed.home))
    blob = f"{s3}/flipped/blobs/sha256/{seed.pulled['sha256']}"
    fs = s3_fs()
    data = bytearray(fs.cat_file(blob))
    data[len(data) // 2] ^= 0x01
    fs.pipe_file(blob, bytes(data))

    checked = cli("remote", "verify", "--remote", url, "--json")
    assert checked.exit_code == 3
    problems = json.loads(checked.stdout)["problems"]
    assert len(problems) == 1 and seed.pulled["sha256"] in problems[0] and "mismatch" in problems[0]

    result = cli("pull", *MODEL, "--remote", url, "--json")
    assert result.exit_code == 0, result.output
    pulled = json.loads(result.stdout)
    assert pulled["cached"] is False  # exported here
    lines = warnings_in(result.stderr)
    assert len(lines) == 1 and seed.pulled["sha256"] in lines[0] and "corrupt" in lines[0]
    assert "exporting locally" in lines[0]
    # the fresh export was uploaded in its place: the remote serves the next machine again
    manifest = json.loads(fs.cat_file(f"{s3}/flipped/entries/{key}.json"))
    assert manifest["files"][0]["sha256"] == pulled["sha256"]
    monkeypatch.setenv("ZOO_HOME", str(home.parent / "next-machine"))
    again = cli("pull", *MODEL, "--remote", url, "--json")
    assert json.loads(again.stdout)["cached"] == "remote" and not warnings_in(again.stderr)
    same_files(Path(pulled["path"]).parent, Path(json.loads(again.stdout)["path"]).parent)
