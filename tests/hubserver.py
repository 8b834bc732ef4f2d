"""A small Hugging Face Hub on 127.0.0.1, for tests: point ``HF_ENDPOINT`` at it and the
real huggingface_hub client code runs against it.

It speaks the parts of the Hub API that ``hf_hub_download``, ``HfApi.model_info``,
``create_repo``, ``create_branch`` and ``create_commit`` use (with ``HF_HUB_DISABLE_XET=1``,
uploads take the plain LFS route):

- ``GET /api/models/{repo}[/revision/{rev}]``: repo info, with ``siblings`` (size, blob id,
  LFS sha256) and the commit ``sha``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``,
  ``ETag`` and, for LFS files, ``X-Linked-Etag`` / ``X-Linked-Size``;
- ``POST /api/repos/create``, ``/api/models/{repo}/branch/{branch}``, ``/api/validate-yaml``,
  ``/api/models/{repo}/preupload/{rev}``, ``/{repo}.git/info/lfs/objects/batch``,
  ``PUT /lfs/{oid}`` and ``POST /api/models/{repo}/commit/{rev}`` (NDJSON).

Repos live in memory. ``corrupt(repo, path)`` makes the server send altered bytes (same
length) while still listing the true hash; ``requests`` records every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

TOKEN = "hf_zoo_test_token"
LFS_SUFFIXES = (".onnx", ".data", ".onnx_data", ".bin", ".safetensors")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


def card_data(readme: bytes) -> dict[str, str]:
    """The model card's YAML front matter, flat ``key: value`` lines only (enough for tests)."""
    text = readme.decode("utf-8", "replace")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return {}
    front = text[4:text.index("\n---", 4)]
    pairs = (line.split(":", 1) for line in front.splitlines() if ":" in line and not line.startswith(" "))
    return {key.strip(): value.strip() for key, value in pairs if value.strip()}


@dataclass
class Repo:
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class Hub:
    """The server's state, plus helpers for tests to set it up and inspect it."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.corrupted: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main",
               message: str = "upload", deleted: tuple[str, ...] = (), private: bool = False) -> str:
        """Add a commit on ``branch`` (creating the repo); returns its oid."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo(private=private))
            parent = repo.refs.get(branch) or repo.refs.get("main")
            tree = dict(repo.commits.get(parent, {})) if parent else {}
            tree.update(files)
            for path in deleted:
                tree.pop(path, None)
            listing = json.dumps({p: hashlib.sha256(d).hexdigest() for p, d in sorted(tree.items())})
            oid = hashlib.sha1(f"{parent}\n{message}\n{listing}".encode()).hexdigest()
            repo.commits[oid] = tree
            repo.refs[branch] = oid
            repo.messages[oid] = message
            for data in files.values():
                self.lfs[hashlib.sha256(data).hexdigest()] = data
            return oid

    def corrupt(self, repo_id: str, path: str) -> None:
        self.corrupted.add((repo_id, path))

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(revision) or ""]


class Handler(BaseHTTPRequestHandler):
    hub: Hub
    base_url: str

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return

    # -- plumbing -------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {TOKEN}"

    def _repo(self, repo_id: str, write: bool = False) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorised()):
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        if write and not self._authorised():
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return None
        return repo

    def _route(self) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((self.command, path))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self._api_model(parts[2] + "/" + parts[3], parts[4:])
            if parts[:3] == ["api", "repos", "create"] and self.command == "POST":
                return self._create_repo()
            if parts[:2] == ["api", "validate-yaml"]:
                self._body()
                return self._json(200, {"errors": [], "warnings": []})
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]))
            if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
                return self._lfs_batch(parts[0] + "/" + parts[1][: -len(".git")])
            if parts[0] == "lfs" and len(parts) == 2 and self.command == "PUT":
                return self._lfs_put(parts[1])
        except Exception as exc:  # a test server bug should show, not hang the client
            return self._json(500, {"error": f"{type(exc).__name__}: {exc}"})
        self._error(404, "NotFound", f"no route for {self.command} {path}")

    do_GET = do_HEAD = do_POST = do_PUT = _route

    # -- reading ----------------------------------------------------------------------------
    def _api_model(self, repo_id: str, rest: list[str]) -> None:
        if self.command == "GET" and (not rest or rest[0] == "revision"):
            repo = self._repo(repo_id)
            if repo is None:
                return
            revision = rest[1] if len(rest) > 1 else "main"
            oid = repo.resolve(revision)
            if oid is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            siblings = []
            for name, data in sorted(repo.commits[oid].items()):
                sibling: dict[str, Any] = {"rfilename": name, "size": len(data)}
                if is_lfs(name):
                    sibling["blobId"] = git_blob_sha1(f"lfs pointer {hashlib.sha256(data).hexdigest()}".encode())
                    sibling["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                      "pointerSize": 134}
                else:
                    sibling["blobId"] = git_blob_sha1(data)
                siblings.append(sibling)
            return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": oid, "private": repo.private,
                                    "siblings": siblings, "tags": [],
                                    "cardData": card_data(repo.commits[oid].get("README.md", b""))})
        if self.command == "POST" and rest and rest[0] == "preupload":
            if self._repo(repo_id, write=True) is None:
                return
            payload = json.loads(self._body())
            files = [{"path": f["path"], "uploadMode": "lfs" if is_lfs(f["path"]) else "regular",
                      "shouldIgnore": False} for f in payload["files"]]
            return self._json(200, {"files": files, "commitOid": None})
        if self.command == "POST" and rest and rest[0] == "commit":
            return self._commit(repo_id, rest[1] if len(rest) > 1 else "main")
        if self.command == "POST" and rest and rest[0] == "branch":
            repo = self._repo(repo_id, write=True)
            if repo is None:
                return
            self._body()
            if rest[1] in repo.refs:
                return self._error(409, "Conflict", f"branch {rest[1]} exists")
            repo.refs[rest[1]] = repo.refs["main"]
            return self._json(200, {})
        self._error(404, "NotFound", f"no route for {self.command} /api/models/{repo_id}/{'/'.join(rest)}")

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        oid = repo.resolve(revision)
        if oid is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        tree = repo.commits[oid]
        if path not in tree:
            return self._send(404, b'{"error": "Entry not found"}',
                              {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": oid})
        data = tree[path]
        headers = {"X-Repo-Commit": oid}
        if is_lfs(path):
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})
        else:
            headers["ETag"] = f'"{git_blob_sha1(data)}"'
        if (repo_id, path) in self.hub.corrupted:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self._send(200, data, headers, content_type="application/octet-stream")

    # -- writing ----------------------------------------------------------------------------
    def _create_repo(self) -> None:
        payload = json.loads(self._body())
        if not self._authorised():
            return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.base_url}/{repo_id}"
        if repo_id in self.hub.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.hub.repos[repo_id] = Repo(private=private)
        self.hub.commit(repo_id, {".gitattributes": b"*.onnx filter=lfs diff=lfs merge=lfs -text\n"},
                        message="initial commit")
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _lfs_batch(self, repo_id: str) -> None:
        if self._repo(repo_id, write=True) is None:
            return
        payload = json.loads(self._body())
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs:
                entry["actions"] = {"upload": {"href": f"{self.base_url}/lfs/{obj['oid']}"}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, "BadRequest", "uploaded content does not match its oid")
        self.hub.lfs[oid] = data
        self._json(200, {})

    def _commit(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        if revision not in repo.refs:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        files: dict[str, bytes] = {}
        deleted: list[str] = []
        for item in lines:
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.hub.lfs:
                    return self._error(422, "BadRequest", f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = self.hub.lfs[value["oid"]]
            elif item["key"] == "deletedFile":
                deleted.append(value["path"])
        oid = self.hub.commit(repo_id, files, branch=revision, message=header["summary"], deleted=tuple(deleted))
        self._json(200, {"commitUrl": f"{self.base_url}/{repo_id}/commit/{oid}", "commitOid": oid,
                         "success": True})


class HubServer:
    """``with HubServer() as server:`` serves ``server.hub`` at ``server.url`` in a thread."""

    def __init__(self) -> None:
        self.hub = Hub()

    def __enter__(self) -> HubServer:
        handler = type("BoundHandler", (Handler,), {"hub": self.hub})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        handler.base_url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
