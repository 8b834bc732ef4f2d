"""The shared remote cache: one export serves every machine of a team, through fsspec.

The remote is any fsspec URL (``file:///mnt/shared/zoo``, ``s3://bucket/prefix``,
``gs://bucket/prefix``...), laid out as::

    blobs/sha256/<hex>     file contents named by their sha256: immutable
    entries/<key>.json     one manifest per store key: the entry's files (path, size, sha256)
                           and its record (zoo.json); written after the blobs, it is the commit
    tmp/<random>           uploads in flight, on filesystems where a file is visible while it
                           is written (object stores make an object visible only when complete)

A partial upload is never visible: blobs first, the manifest last, each written whole
(an object PUT, or a temp file renamed). Two machines uploading one key both leave a
valid entry: each manifest names blobs that exist, the last one written wins. A reader
hashes every byte it downloads and never uses a blob that does not match its name; it
says so in one line and the caller exports locally instead. Nothing here imports torch.

Which remote: ``--remote URL`` for one command, else ``ZOO_REMOTE``, else ``remote = "URL"``
in ``config.toml`` in the user config dir. ``--no-remote`` or ``ZOO_OFFLINE=1`` turn it off (never
``HF_HUB_OFFLINE``: that is the Hub's switch), and a pull says so once on stderr.
Credentials and endpoints are fsspec's own (``AWS_*``, ``AWS_ENDPOINT_URL``,
``GOOGLE_APPLICATION_CREDENTIALS``).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from .env import config_dir, zoo_offline
from .errors import EnvironmentProblem, IntegrityError, UserError, ZooError, ZooWarning, one_line, repair_hint
from .files import FULL
from .integrity import SHA256
from .recipe import KEY
from .record import FileRecord, Record, RecordError, as_json
from .source import Progress
from .store import Entry, Store

FORMAT = 1  # manifest format; a reader refuses a newer one
CONFIG_FILE = "config.toml"
CHUNK = 8 << 20
# `zoo remote gc` cannot know whether an upload is in flight: a blob this young is kept.
GC_MIN_AGE_S = 3600.0
# Object stores publish an object only once it is completely written (PUT, multipart complete).
_ATOMIC_WRITES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"}
_LOCAL = {"file", "local"}
# A download failing with these is this machine's disk, not the remote.
_LOCAL_WRITE_ERRORS = FULL | {errno.EROFS}


class RemoteError(EnvironmentProblem):
    """The remote cache could not be read or written (network, permissions, a missing blob)."""


# -- configuration -----------------------------------------------------------------------------
def configured_url() -> str | None:
    """``ZOO_REMOTE``, else ``remote`` in the user's ``config.toml``; None when neither is set."""
    value = os.environ.get("ZOO_REMOTE")
    if value is not None:
        return value.strip() or None  # ZOO_REMOTE= (empty) turns a configured remote off
    path = config_dir() / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML ({exc}); fix or remove it") from None
    url = config.get("remote")
    if url is not None and not isinstance(url, str):
        raise UserError(f"{path}: remote must be a string URL, e.g. remote = \"s3://bucket/zoo\"")
    return (url.strip() or None) if url is not None else None


def open_remote(url: str | bool | None = None) -> Remote | None:
    """The remote to use, or None when it is off.

    ``url``: a URL (``--remote``), ``False`` (``--no-remote``), or ``None`` for the configured
    one. ``ZOO_OFFLINE=1`` turns every remote off.
    """
    if url is False or zoo_offline():
        return None
    chosen = url if isinstance(url, str) and url else configured_url()
    return Remote(chosen) if chosen else None


def require_remote(url: str | None = None) -> Remote:
    """The remote for ``zoo remote ...`` commands: an error when there is none."""
    if zoo_offline():
        raise EnvironmentProblem("offline mode (ZOO_OFFLINE): the remote cache is off; unset it to use the remote")
    remote = open_remote(url)
    if remote is None:
        raise UserError(f"no remote configured: pass --remote URL, set ZOO_REMOTE, or write remote = \"URL\" "
                        f"in {config_dir() / CONFIG_FILE}")
    return remote


def remote_for_pull(url: str | bool | None) -> Remote | None:
    """``open_remote`` for a pull: a remote that cannot be opened is a warning, never a failed pull.

    A remote that is configured but off is said once per process: a team that counts on it
    should never find out from an hour-long export that it was not asked.
    """
    try:
        if url is False or zoo_offline():
            _say_off(url)
            return None
        return open_remote(url)
    except ZooError as exc:
        warn(f"{exc}; going on without the remote")
        return None


_said_off: set[tuple[str, str]] = set()


def _say_off(url: str | bool | None) -> None:
    """One stderr line naming the remote that is off and why, when one is configured."""
    reason = "--no-remote" if url is False else "ZOO_OFFLINE=1"
    configured = url if isinstance(url, str) and url else configured_url()
    if configured and (configured, reason) not in _said_off:
        _said_off.add((configured, reason))
        warn(f"remote cache {configured} is off ({reason}): not asked, nothing uploaded")


def upload_quietly(remote: Remote, entry: Entry, progress: Progress | None = None) -> dict[str, Any] | None:
    """Upload a fresh export; a failure is one warning line and the local entry stays."""
    try:
        return remote.upload(entry, progress)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ZooError) else _describe(exc)
        if isinstance(exc.__cause__ or exc, PermissionError):
            reason += " (a read-only remote? pass --no-upload)"
        warn(f"{entry.name or entry.key} not uploaded to {remote.url}: {reason}; the local entry is kept")
        return None


def push(entry: Entry, url: str | None = None, store: Store | None = None,
         progress: Progress | None = None) -> dict[str, Any]:
    """Upload the stored ``entry`` to the remote at ``url`` (else the configured one), verified first."""
    remote = require_remote(url)
    store = store or Store()
    problems = store.verify(entry)
    if problems:
        raise IntegrityError(f"refusing to push {entry.name} ({entry.key}): {'; '.join(problems)}; "
                             f"{repair_hint(entry.key)}")
    return remote.upload(entry, progress)


def warn(text: str) -> None:
    """A warning for the user (the CLI shows it as one ``zoo: warning:`` line)."""
    warnings.warn(ZooWarning(text), stacklevel=3)


# -- the remote --------------------------------------------------------------------------------
class Remote:
    """Blobs and manifests under an fsspec URL."""

    def __init__(self, url: str) -> None:
        import fsspec

        try:
            # A fresh instance without listings cache: other machines change the remote meanwhile.
            self.fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, use_listings_cache=False)
        except ImportError as exc:
            extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}.get(url.partition(":")[0], "")
            hint = f"pip install 'zoo[{extra}]'" if extra else "install the fsspec implementation it names"
            raise EnvironmentProblem(f"remote {url}: {one_line(exc)}; {hint}") from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"invalid remote URL {url!r} ({one_line(exc)}): use e.g. file:///mnt/shared/zoo "
                            "or s3://bucket/prefix") from None
        self.url = url
        self.root = root.rstrip("/")
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self.atomic_writes = bool(protocols & _ATOMIC_WRITES)
        self._bad: set[str] = set()  # blobs found corrupt: an upload replaces them
        if protocols & _LOCAL:
            try:
                self.fs.makedirs(self.root, exist_ok=True)
            except OSError as exc:
                raise RemoteError(f"remote {url}: cannot create it ({exc.strerror or exc})") from None

    def __repr__(self) -> str:
        return f"Remote({self.url!r})"

    # paths
    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def blob_path(self, sha256: str) -> str:
        return self._path("blobs", "sha256", sha256)

    def manifest_path(self, key: str) -> str:
        return self._path("entries", f"{key}.json")

    def address(self, path: str) -> str:
        """A path on the remote as a URL a user can paste."""
        return self.fs.unstrip_protocol(path)

    # reading
    def manifest(self, key: str) -> dict[str, Any] | None:
        """The manifest for ``key``, None when the remote has none; ``IntegrityError`` when unreadable."""
        try:
            data = self.fs.cat_file(self.manifest_path(key))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise RemoteError(f"remote {self.url}: cannot look up {key} ({_describe(exc)})") from None
        return parse_manifest(data, key, f"{self.url}: entries/{key}.json")

    def fetch(self, key: str, store: Store, progress: Progress | None = None) -> tuple[Entry, bool] | None:
        """Download ``key`` into ``store`` through its temp dir + rename; ``(entry, created)``.

        None on a miss, and on anything wrong with the remote (unreachable, an unreadable
        manifest, a missing or corrupt blob): said in one warning line, so that the caller
        exports locally instead. A store that cannot be written is an error, as for an export.
        """
        try:
            manifest = self.manifest(key)
        except ZooError as exc:
            warn(f"{exc}; exporting locally instead")
            return None
        if manifest is None:
            return None
        files = manifest["files"]
        meter = _Meter(progress, f"downloading {manifest['record'].get('name') or key} from the remote",
                       sum(f["size"] for f in files))

        def produce(directory: Path) -> Record:
            for record in files:
                self._download(record, directory / record["path"], key, meter)
            return Record.from_json(manifest["record"], f"remote entries/{key}.json")

        try:
            return store.create(key, produce, describe=lambda _directory: [FileRecord(**f) for f in files])
        except (IntegrityError, RemoteError) as exc:
            warn(f"{exc}; exporting locally instead")
            return None

    def _download(self, record: dict[str, Any], target: Path, key: str, meter: _Meter) -> None:
        """Copy one blob to ``target`` and hash it; ``IntegrityError`` when it does not match its name.

        One streamed GET (``get_file``) then a hash of the local copy, still in the page cache:
        faster than hashing while reading through fsspec's file objects, which fetch in ranges.
        """
        from .recipe import file_sha256

        sha256 = record["sha256"]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fs.get_file(self.blob_path(sha256), str(target), callback=meter.callback())
        except FileNotFoundError:
            raise RemoteError(f"remote {self.url}: blob {sha256} ({record['path']} of entry {key}) "
                              "is missing") from None
        except OSError as exc:
            if exc.errno in _LOCAL_WRITE_ERRORS:  # this machine's disk: the store reports it
                raise
            raise RemoteError(f"remote {self.url}: cannot read blob {sha256} ({_describe(exc)})") from None
        except Exception as exc:
            raise RemoteError(f"remote {self.url}: cannot read blob {sha256} ({_describe(exc)})") from None
        size = target.stat().st_size
        actual = file_sha256(target) if size == record["size"] else "not computed"
        if size != record["size"] or actual != sha256:
            self._bad.add(sha256)
            raise IntegrityError(f"remote {self.url}: blob {sha256} ({record['path']} of entry {key}) is corrupt "
                                 f"(size {size}, sha256 {actual}); not used (`zoo remote verify` lists bad blobs)")

    # writing
    def upload(self, entry: Entry, progress: Progress | None = None) -> dict[str, Any]:
        """Upload a stored entry: missing blobs, then its manifest (the commit point)."""
        files = [as_json(f) for f in entry.files]
        if not files:
            raise IntegrityError(f"entry {entry.key} lists no files; {repair_hint(entry.key)}")
        try:
            missing = [f for f in files if self._needs_upload(f)]
            meter = _Meter(progress, f"uploading {entry.name or entry.key} to the remote",
                           sum(f["size"] for f in missing))
            for record in missing:
                self._put_file(entry.dir / record["path"], self.blob_path(record["sha256"]), meter)
            manifest = {
                "zoo_remote": FORMAT,
                "key": entry.key,
                "files": files,
                "uploaded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "record": entry.record.for_remote(),
            }
            self._put_bytes(self.manifest_path(entry.key), (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
            # A blob that existed before may have been collected (`zoo remote gc`) while this ran.
            for record in files:
                if self._needs_upload(record):
                    self._put_file(entry.dir / record["path"], self.blob_path(record["sha256"]), meter)
        except ZooError:
            raise
        except Exception as exc:
            raise RemoteError(f"remote {self.url}: cannot upload {entry.name or entry.key} ({_describe(exc)})") from exc
        return {
            "name": entry.name,
            "ref": entry.ref,
            "key": entry.key,
            "remote": self.url,
            "manifest": self.address(self.manifest_path(entry.key)),
            "uploaded": [f["path"] for f in missing],
            "uploaded_bytes": sum(f["size"] for f in missing),
        }

    def _needs_upload(self, record: dict[str, Any]) -> bool:
        if record["sha256"] in self._bad:
            return True
        try:
            info = self.fs.info(self.blob_path(record["sha256"]))
        except FileNotFoundError:
            return True
        return info.get("size") != record["size"]  # a truncated blob is replaced

    def _put_file(self, source: Path, target: str, meter: _Meter) -> None:
        if self.atomic_writes:
            # put_file completes its PUT (or multipart upload) only once every byte is sent;
            # a file object's close() would publish a partial object after an error.
            self.fs.put_file(str(source), target, callback=meter.callback())
        else:
            with open(source, "rb") as stream:
                self._put_through_tmp(stream, target, meter)
        self._bad.discard(_name(target))

    def _put_bytes(self, target: str, body: bytes) -> None:
        if self.atomic_writes:
            self.fs.pipe_file(target, body)
        else:
            self._put_through_tmp(io.BytesIO(body), target, _Meter(None, "", len(body)))

    def _put_through_tmp(self, stream: BinaryIO, target: str, meter: _Meter) -> None:
        """Where a file is visible while it is written: write ``tmp/<random>``, then rename it into place."""
        temporary = self._path("tmp", secrets.token_hex(12))
        self.fs.makedirs(self._path("tmp"), exist_ok=True)
        try:
            with self.fs.open(temporary, "wb") as out:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                    meter.add(len(chunk))
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(temporary, target)
        except BaseException:
            _quietly(lambda: self.fs.rm_file(temporary))
            raise

    # the whole remote
    def manifests(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Every readable manifest by key, and one problem line per unreadable one."""
        paths = [p for p in self._list(self._path("entries")) if KEY.fullmatch(_name(p).removesuffix(".json"))
                 and _name(p).endswith(".json")]
        found: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        contents = self.fs.cat(paths, on_error="return") if paths else {}
        for path in sorted(contents):
            key = _name(path).removesuffix(".json")
            data = contents[path]
            if isinstance(data, BaseException):
                problems.append(f"entries/{key}.json: unreadable ({_describe(data)})")
                continue
            try:
                found[key] = parse_manifest(data, key, f"entries/{key}.json")
            except IntegrityError as exc:
                problems.append(str(exc))
        return found, problems

    def entries(self) -> tuple[list[dict[str, Any]], list[str]]:
        """One row per entry (like ``zoo list``), and the unreadable manifests."""
        manifests, problems = self.manifests()
        rows = []
        for key, manifest in manifests.items():
            record, files = manifest["record"], manifest["files"]
            rows.append({
                "name": record.get("name", ""),
                "ref": record.get("ref", ""),
                "key": key,
                "path": self.address(self.manifest_path(key)),
                "size": sum(f["size"] for f in files),
                "sha256": next((f["sha256"] for f in files if f["path"] == "model.onnx"), ""),
                "weights": (record.get("weights") or {}).get("tag"),
                "created": record.get("created"),
                "uploaded": manifest.get("uploaded"),
            })
        return rows, problems

    def blobs(self) -> dict[str, dict[str, Any]]:
        """Every blob on the remote by sha256, with what the filesystem says of it (size, time)."""
        return {_name(info["name"]): info for info in self._list(self._path("blobs", "sha256"), detail=True)
                if SHA256.fullmatch(_name(info["name"]))}

    def verify(self, progress: Progress | None = None) -> dict[str, Any]:
        """Re-hash every blob; check every manifest names blobs that exist. ``ok`` False on any problem."""
        manifests, problems = self.manifests()
        blobs = self.blobs()
        named: dict[str, list[str]] = {}
        for key, manifest in manifests.items():
            for record in manifest["files"]:
                named.setdefault(record["sha256"], []).append(key)
                info = blobs.get(record["sha256"])
                if info is None:
                    problems.append(f"entries/{key}.json: blob {record['sha256']} ({record['path']}) is missing")
                elif info.get("size") != record["size"]:
                    problems.append(f"blobs/sha256/{record['sha256']}: size {info.get('size')} != {record['size']} "
                                    f"({record['path']} of entry {key})")
        meter = _Meter(progress, "hashing the remote's blobs", sum(int(i.get("size") or 0) for i in blobs.values()))
        for sha256 in sorted(blobs):
            digest = hashlib.sha256()
            try:
                with _Reader(self, self.blob_path(sha256), f"blob {sha256}") as read:
                    while chunk := read(CHUNK):
                        digest.update(chunk)
                        meter.add(len(chunk))
            except RemoteError as exc:
                problems.append(f"blobs/sha256/{sha256}: unreadable ({exc})")
                continue
            if digest.hexdigest() != sha256:
                users = ", ".join(named.get(sha256, [])) or "no entry"
                problems.append(f"blobs/sha256/{sha256}: sha256 mismatch, content hashes to {digest.hexdigest()} "
                                f"(named by {users})")
        return {"remote": self.url, "ok": not problems, "entries": len(manifests), "blobs": len(blobs),
                "problems": problems}

    def collect_garbage(self, now: float | None = None) -> dict[str, Any]:
        """Remove blobs no manifest names, and dead uploads' temp files, when older than an hour.

        Refuses when a manifest cannot be read: the blobs it names are unknown.
        """
        manifests, problems = self.manifests()
        if problems:
            raise IntegrityError(f"refusing to collect garbage on {self.url}: {problems[0]}; fix or remove that "
                                 "manifest first (the blobs it names are unknown)")
        live = {f["sha256"] for manifest in manifests.values() for f in manifest["files"]}
        now = time.time() if now is None else now
        removed: list[str] = []
        young = 0
        candidates = [info for sha256, info in self.blobs().items() if sha256 not in live]
        candidates += self._list(self._path("tmp"), detail=True)
        for info in candidates:
            age = _age(info, now)
            if age is None or age < GC_MIN_AGE_S:  # an upload may be in flight
                young += 1
                continue
            self.fs.rm_file(info["name"])
            removed.append(self.address(info["name"]))
        return {"remote": self.url, "removed": removed, "kept_young": young, "live_blobs": len(live)}

    def _list(self, path: str, detail: bool = False) -> list[Any]:
        try:
            return list(self.fs.ls(path, detail=detail))
        except FileNotFoundError:
            return []


def parse_manifest(data: bytes, key: str, where: str) -> dict[str, Any]:
    """A manifest checked for what a reader relies on; ``IntegrityError`` naming ``where`` otherwise."""
    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"remote manifest {where} is invalid: {why}")

    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise bad(f"not JSON ({one_line(exc)})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("zoo_remote"), int):
        raise bad("not a zoo manifest")
    if manifest["zoo_remote"] > FORMAT:
        raise bad(f"format {manifest['zoo_remote']} is newer than this zoo reads ({FORMAT}); upgrade zoo")
    if manifest.get("key") != key:
        raise bad(f"it is for key {manifest.get('key')!r}")
    if not isinstance(manifest.get("record"), dict):
        raise bad("no record")
    try:  # the same checks and bounds as a local zoo.json: a remote is no more trusted than a disk
        Record.from_json({**manifest["record"], "files": []}, "record")
    except RecordError as exc:
        raise bad(str(exc)) from None
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise bad("no files")
    for record in files:
        if not (isinstance(record, dict) and isinstance(record.get("path"), str)
                and isinstance(record.get("size"), int) and record["size"] >= 0
                and isinstance(record.get("sha256"), str) and SHA256.fullmatch(record["sha256"])):
            raise bad(f"file record {str(record)[:80]!r}")
        path = PurePosixPath(record["path"])
        if (path.is_absolute() or ".." in path.parts or "\\" in record["path"] or not path.parts
                or path.name == "zoo.json" or any(p.startswith(".") for p in path.parts)):
            raise bad(f"unsafe file path {record['path']!r}")
    if len({record["path"] for record in files}) != len(files):
        raise bad("a file is listed twice")
    return manifest


# -- helpers -----------------------------------------------------------------------------------
class _Reader:
    """A remote file opened for reading; remote failures become ``RemoteError`` (local ones stay)."""

    def __init__(self, remote: Remote, path: str, what: str) -> None:
        self.remote, self.path, self.what = remote, path, what
        self.handle: Any = None

    def __enter__(self) -> Callable[[int], bytes]:
        self.handle = self._call(lambda: self.remote.fs.open(self.path, "rb"))
        return lambda size: self._call(lambda: self.handle.read(size))

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            _quietly(self.handle.close)

    def _call(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except FileNotFoundError:
            raise RemoteError(f"remote {self.remote.url}: {self.what} is missing") from None
        except Exception as exc:
            raise RemoteError(f"remote {self.remote.url}: cannot read {self.what} ({_describe(exc)})") from None


class _Meter:
    """Bytes moved, reported through zoo's progress line (a spinner on a terminal, nothing with --json)."""

    def __init__(self, say: Progress | None, what: str, total: int) -> None:
        self.say, self.what, self.total, self.done = say, what, total, 0

    def add(self, size: int) -> None:
        self.done += size
        if self.say:
            self.say(f"{self.what}: {self.done / 1e6:.1f} of {self.total / 1e6:.1f} MB")

    def callback(self) -> Any:
        """An fsspec ``Callback`` feeding this meter (for ``get_file``/``put_file``)."""
        from fsspec.callbacks import Callback

        meter = self

        class Feed(Callback):
            fed = 0

            def call(self, *args: Any, **kwargs: Any) -> None:
                meter.add(self.value - self.fed)
                self.fed = self.value

        return Feed()


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _age(info: dict[str, Any], now: float) -> float | None:
    """Seconds since the filesystem last wrote the file, from whichever field it reports."""
    for field in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(field)
        if isinstance(value, datetime):
            return now - value.timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return now - float(value)
        if isinstance(value, str):
            try:
                return now - datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def _quietly(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception:
        pass


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(exc)}"
