"""The `hf` source and `zoo push`, against a local Hub (tests/hubserver.py) that the real
huggingface_hub client talks to through ``HF_ENDPOINT``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import REPO, TINY, hf_settings, run_cli, zoo_env
from helpers import tiny_classifier as tiny_model
from hubserver import HubServer

from zoo.errors import InvalidNameError

TIMM_CONFIG = {"architecture": "tiny", "num_classes": 3, "label_names": ["cat", "dog", "fox"],
               "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bicubic", "crop_pct": 0.875,
                                  "crop_mode": "center", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}


def with_external_data(model: onnx.ModelProto, folder: Path, location: str) -> dict[str, bytes]:
    """``model.onnx`` and its external-data file, as bytes."""
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return {"model.onnx": (folder / "model.onnx").read_bytes(), location: (folder / location).read_bytes()}


@pytest.fixture
def server() -> Iterator[HubServer]:
    with HubServer() as running:
        yield running


@pytest.fixture
def hf(home: Path, server: HubServer, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``hf(*args, check=True, **env)``: the CLI with HF_ENDPOINT at the local Hub and its own HF cache."""

    def run(*args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        env = zoo_env(home, **{**hf_settings(server, tmp_path), **extra})
        return run_cli(*args, env=env, check=check)

    return run


def hub_requests(server: HubServer) -> list[tuple[str, str]]:
    return [r for r in server.hub.requests if r[1].startswith(("/api/models", "/api/repos", "/acme", "/team", "/lfs"))]


def run_model(path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.ones((2, 3, 32, 32), np.float32)})[0]


@pytest.mark.parametrize("name", ["a/../b", "/etc/passwd", "org/repo/../x.onnx", "org/repo/x.onnx@../main",
                                  "org/repo/sub//x.onnx", "org", "org/repo/model.bin", "org/re\x00po",
                                  "org/repo@", "org/repo/.hidden/../x.onnx", "C:\\x/y"])
def test_unsafe_names_are_refused(name: str) -> None:
    from zoo_hf import parse

    with pytest.raises(InvalidNameError):
        parse(name)


def test_names_parse() -> None:
    from zoo_hf import HubRef, parse

    assert parse("org/repo") == HubRef("org/repo")
    assert parse("org/repo/onnx/model_q.onnx@v1.0") == HubRef("org/repo", "onnx/model_q.onnx", "v1.0")
    assert parse("org/repo@refs/pr/1") == HubRef("org/repo", None, "refs/pr/1")


def test_bad_name_fails_before_any_request(hf, server: HubServer) -> None:
    proc = hf("pull", "hf:acme/../etc", check=False)
    assert proc.returncode == 1 and "invalid Hub repo id" in proc.stderr
    proc = hf("pull", "hf:acme/tiny", "--weights", "none", check=False)
    assert proc.returncode == 1 and "--weights cannot apply" in proc.stderr
    assert hub_requests(server) == []


def test_an_unreachable_hub_is_an_environment_error(hf) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = hf("pull", "hf:acme/tiny", check=False, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    assert proc.returncode == 4 and "cannot reach the Hub" in proc.stderr


def test_pull_pins_the_revision_and_checks_hashes(hf, server: HubServer) -> None:
    config = json.dumps(TIMM_CONFIG).encode()
    first = server.hub.commit("acme/tiny", {"model.onnx": tiny_model(0).SerializeToString(), "config.json": config})
    second = server.hub.commit("acme/tiny", {"model.onnx": tiny_model(1).SerializeToString()})

    proc = hf("pull", f"hf:acme/tiny@{first}", "--json")
    assert proc.stderr == ""  # no progress output with --json
    pinned = json.loads(proc.stdout)
    assert pinned["cached"] is False and pinned["ref"] == f"hf:acme/tiny@{first}"
    path = Path(pinned["path"])
    assert path.read_bytes() == server.hub.files("acme/tiny", first)["model.onnx"]  # stored byte for byte
    metadata = json.loads((path.parent / "zoo.json").read_text())
    weights = metadata["weights"]
    assert weights["commit"] == first and weights["hub_id"] == "acme/tiny" and weights["revision"] == first
    assert weights["verified"] == {"model.onnx": "sha256 (Hub LFS)", "config.json": "git blob sha1"}
    assert metadata["labels"] == ["cat", "dog", "fox"]
    assert metadata["preprocessing_from"] == "config.json"
    assert metadata["preprocessing"] == {
        "input_size": [3, 32, 32], "resize": 36, "crop": [32, 32], "crop_mode": "center",
        "interpolation": "bicubic", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
        "channel_order": "RGB", "layout": "NCHW"}
    assert metadata["inputs"][0]["shape"] == ["batch", 3, 32, 32]
    assert metadata["validation"]["passed"] is True and metadata["exporter"] == "fetched"
    assert metadata["opset"] == 18 and metadata["recipe"] == {}  # the file's own opset; no recipe applied
    assert run_model(path).shape == (2, 3)
    assert "parity=not run" in hf("info", f"hf:acme/tiny@{first}").stdout

    latest = json.loads(hf("pull", "hf:acme/tiny", "--json").stdout)
    latest_meta = json.loads((Path(latest["path"]).parent / "zoo.json").read_text())
    assert latest_meta["weights"]["commit"] == second and latest_meta["weights"]["revision"] == "main"
    assert latest["sha256"] != pinned["sha256"]
    assert not np.allclose(run_model(Path(latest["path"])), run_model(path))

    again = json.loads(hf("pull", f"hf:acme/tiny@{first}", "--json").stdout)
    assert again["cached"] is True and again["path"] == pinned["path"]

    proc = hf("pull", "hf:acme/tiny@nope", check=False)
    assert proc.returncode == 1 and "no such revision" in proc.stderr
    proc = hf("pull", "hf:acme/missing", check=False)
    assert proc.returncode == 1 and "no Hub repo acme/missing" in proc.stderr
    proc = hf("pull", "hf:acme/tiny", "--opset", "17", check=False)
    assert proc.returncode == 1 and "--opset cannot apply" in proc.stderr


def test_run_uses_the_pulled_labels(hf, server: HubServer, tmp_path: Path) -> None:
    server.hub.commit("acme/tiny", {"model.onnx": tiny_model().SerializeToString(),
                                    "config.json": json.dumps(TIMM_CONFIG).encode()})
    np.save(tmp_path / "x.npy", np.ones((1, 3, 32, 32), np.float32))
    out = json.loads(hf("run", "hf:acme/tiny", "--input", str(tmp_path / "x.npy"), "--json").stdout)
    want = int(np.argmax(run_model(Path(out["path"]))[0]))
    assert out["predictions"][0][0]["index"] == want
    assert out["predictions"][0][0]["label"] == TIMM_CONFIG["label_names"][want]


def test_a_sha_mismatch_is_refused_and_not_kept(hf, server: HubServer, home: Path) -> None:
    server.hub.commit("acme/tiny", {"model.onnx": tiny_model().SerializeToString()})
    server.hub.corrupt("acme/tiny", "model.onnx")
    proc = hf("pull", "hf:acme/tiny", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "sha256 (Hub LFS)" in proc.stderr and "refused" in proc.stderr
    assert json.loads(hf("list", "--json").stdout) == []
    # The bad copy left huggingface_hub's cache too: once the Hub serves the right bytes, it works.
    server.hub.corrupted.clear()
    pulled = json.loads(hf("pull", "hf:acme/tiny", "--json").stdout)
    assert Path(pulled["path"]).read_bytes() == server.hub.files("acme/tiny")["model.onnx"]


def test_offline_mode_uses_caches_and_never_the_network(hf, server: HubServer) -> None:
    server.hub.commit("acme/tiny", {"model.onnx": tiny_model().SerializeToString(),
                                    "config.json": json.dumps(TIMM_CONFIG).encode()})
    online = json.loads(hf("pull", "hf:acme/tiny", "--json").stdout)
    online_meta = json.loads((Path(online["path"]).parent / "zoo.json").read_text())

    before = len(server.hub.requests)
    hit = json.loads(hf("pull", "hf:acme/tiny", "--json", ZOO_OFFLINE="1").stdout)
    assert hit["cached"] is True

    hf("rm", "hf:acme/tiny")  # zoo's store forgets it; huggingface_hub's cache still has it
    again = json.loads(hf("pull", "hf:acme/tiny", "--json", HF_HUB_OFFLINE="1").stdout)
    assert again["cached"] is False and again["sha256"] == online["sha256"]
    meta = json.loads((Path(again["path"]).parent / "zoo.json").read_text())
    assert meta["weights"]["commit"] == online_meta["weights"]["commit"]
    assert meta["labels"] == online_meta["labels"] and meta["preprocessing"] == online_meta["preprocessing"]
    assert meta["weights"]["verified"]["model.onnx"].startswith("not checked: offline")
    assert len(server.hub.requests) == before  # neither offline pull touched the Hub

    proc = hf("pull", "hf:acme/other", check=False, ZOO_OFFLINE="1")
    assert proc.returncode == 4 and "offline mode" in proc.stderr
    assert len(server.hub.requests) == before


def test_external_data_and_model_paths(hf, server: HubServer, tmp_path: Path, home: Path) -> None:
    files = with_external_data(tiny_model(2), tmp_path, "model.onnx.data")
    processor = {"do_resize": True, "size": {"shortest_edge": 40}, "do_center_crop": True,
                 "crop_size": {"height": 32, "width": 32}, "resample": 3, "image_mean": [0.5, 0.5, 0.5],
                 "image_std": [0.5, 0.5, 0.5]}
    server.hub.commit("acme/big", {f"onnx/{name}": data for name, data in files.items()}
                      | {"onnx/model_fp16.onnx": tiny_model(3).SerializeToString(),
                         "preprocessor_config.json": json.dumps(processor).encode(),
                         "README.md": b"---\nlicense: apache-2.0\nlibrary_name: onnx\n---\n# big\n",
                         "config.json": json.dumps({"id2label": {"1": "b", "0": "a", "2": "c"}}).encode()})

    proc = hf("pull", "hf:acme/big", check=False)
    assert proc.returncode == 1 and "several ONNX files" in proc.stderr and "onnx/model.onnx" in proc.stderr

    pulled = json.loads(hf("pull", "hf:acme/big/onnx/model.onnx", "--json").stdout)
    entry = Path(pulled["path"]).parent
    assert sorted(p.name for p in entry.iterdir()) == ["model.onnx", "model.onnx.data", "zoo.json"]
    assert (entry / "model.onnx.data").read_bytes() == files["model.onnx.data"]
    metadata = json.loads((entry / "zoo.json").read_text())
    assert metadata["hub_files"] == {"model.onnx": "onnx/model.onnx", "model.onnx.data": "onnx/model.onnx.data"}
    assert metadata["weights"]["verified"]["onnx/model.onnx.data"] == "sha256 (Hub LFS)"
    assert {f["path"] for f in metadata["files"]} == {"model.onnx", "model.onnx.data"}
    assert metadata["preprocessing_from"] == "preprocessor_config.json"
    assert metadata["preprocessing"]["resize"] == 40 and metadata["preprocessing"]["interpolation"] == "bicubic"
    assert metadata["labels"] == ["a", "b", "c"]
    assert metadata["license"] == "apache-2.0"  # from the model card
    reference = ort.InferenceSession(tiny_model(2).SerializeToString(), providers=["CPUExecutionProvider"])
    want = reference.run(None, {"input": np.ones((2, 3, 32, 32), np.float32)})[0]
    np.testing.assert_allclose(run_model(entry / "model.onnx"), want, rtol=1e-6)
    assert json.loads(hf("verify", "--json").stdout)["ok"] is True

    server.hub.corrupt("acme/big", "onnx/model.onnx.data")
    proc = hf("pull", "hf:acme/big/onnx/model.onnx", "--force", check=False, HF_HOME=str(tmp_path / "fresh"))
    assert proc.returncode == 3 and "model.onnx.data" in proc.stderr


def test_pull_and_push_never_import_torch(home: Path, server: HubServer, tmp_path: Path) -> None:
    server.hub.commit("acme/tiny", {"model.onnx": tiny_model().SerializeToString()})
    code = ("import sys, zoo; r = zoo.pull('hf:acme/tiny'); assert r.entry.model_path.is_file(); "
            "zoo.push('hf:acme/tiny', 'team/copy'); "
            "heavy = sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules); "
            "print(heavy); sys.exit(1 if heavy else 0)")
    env = zoo_env(home, **hf_settings(server, tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "model.onnx" in server.hub.files("team/copy")


def test_push_and_pull_back_round_trip(copy_store: Path, server: HubServer, tmp_path: Path) -> None:
    env = zoo_env(copy_store, **hf_settings(server, tmp_path))
    original = json.loads(run_cli("info", *TINY, "--json", env=env).stdout)

    pushed = json.loads(run_cli("push", *TINY[:1], "team/resnet18", *TINY[1:], "--private", "--json", env=env).stdout)
    assert pushed["repo_id"] == "team/resnet18" and pushed["revision"] == "main"
    assert pushed["files"] == ["README.md", "model.onnx", "zoo.json"]
    repo = server.hub.repos["team/resnet18"]
    assert repo.private and repo.refs["main"] == pushed["commit"]
    assert sum(1 for method, path in server.hub.requests if method == "PUT" and path.startswith("/lfs/")) == 1
    commits = [path for method, path in server.hub.requests if path.endswith("/commit/main")]
    assert len(commits) == 1  # one commit for all files
    files = server.hub.files("team/resnet18")
    stored = Path(original["path"])
    assert files["model.onnx"] == stored.read_bytes()
    assert json.loads(files["zoo.json"]) == json.loads((stored.parent / "zoo.json").read_text())
    card = files["README.md"].decode()
    assert card.startswith("---\nlibrary_name: onnx\nlicense: apache-2.0\n")
    assert "zoo pull hf:team/resnet18" in card and "| crop | [160, 160] |" in card
    assert '1000 labels: "tench, Tinca tinca", "goldfish, Carassius auratus"' in card  # quoted: labels have commas
    assert f"| max_abs_diff | {original['validation']['max_abs_diff']} |" in card
    assert f"| exporter | {original['exporter']} |" in card and "| torch | " in card

    other = tmp_path / "teammate"  # another machine: an empty store and an empty HF cache
    mate_env = zoo_env(other, **hf_settings(server, tmp_path / "mate"))
    pulled = json.loads(run_cli("pull", "hf:team/resnet18", "--json", env=mate_env).stdout)
    assert pulled["sha256"] == original["files"][0]["sha256"]
    back = json.loads((Path(pulled["path"]).parent / "zoo.json").read_text())
    for key in ("preprocessing", "labels", "validation", "license"):
        assert back[key] == original[key], key
    assert back["exporter"] == "fetched" and back["origin"]["exporter"] == original["exporter"]
    assert back["preprocessing_from"] == "zoo.json"
    assert back["origin"]["ref"] == "timm:test_resnet" and back["origin"]["recipe"] == original["recipe"]
    assert back["weights"]["commit"] == pushed["commit"]
    logits = ort.InferenceSession(pulled["path"], providers=["CPUExecutionProvider"]).run(
        None, {"input": np.zeros((1, 3, 160, 160), np.float32)})[0]
    assert logits.shape == (1, 1000)

    # Private: without the token the repo does not exist for you.
    no_token = {**mate_env, "HF_TOKEN": ""}
    proc = run_cli("pull", "hf:team/resnet18", "--force", env=no_token, check=False)
    assert proc.returncode == 1 and "no Hub repo team/resnet18" in proc.stderr

    # A branch: created on first push, pulled by name.
    branch = json.loads(run_cli("push", *TINY[:1], "team/resnet18", *TINY[1:], "--revision", "dev", "--json",
                                env=env).stdout)
    assert branch["revision"] == "dev" and repo.refs["dev"] == branch["commit"]
    on_dev = json.loads(run_cli("pull", "hf:team/resnet18@dev", "--json", env=mate_env).stdout)
    assert on_dev["sha256"] == pulled["sha256"]


def test_push_refusals(hf, server: HubServer, home: Path) -> None:
    server.hub.commit("acme/tiny", {"model.onnx": tiny_model().SerializeToString()})
    hf("pull", "hf:acme/tiny")

    proc = hf("push", "hf:acme/tiny", "team/x", check=False, HF_TOKEN="")
    assert proc.returncode == 4 and "hf auth login" in proc.stderr
    proc = hf("push", "hf:acme/tiny", "team/x", check=False, ZOO_OFFLINE="1")
    assert proc.returncode == 4 and "offline" in proc.stderr
    proc = hf("push", "hf:acme/tiny", "team/../x", check=False)
    assert proc.returncode == 1 and "invalid Hub repo id" in proc.stderr
    proc = hf("push", "resnet18", "team/x", check=False)
    assert proc.returncode == 1 and "not in the store" in proc.stderr

    entry = next((home / "models").iterdir())
    (entry / "model.onnx").write_bytes(b"tampered")
    proc = hf("push", "hf:acme/tiny", "team/x", check=False)
    assert proc.returncode == 3 and "refusing to push" in proc.stderr
    assert "team/x" not in server.hub.repos


def test_pushed_metadata_names_local_files_without_their_location() -> None:
    from zoo.hub import model_card
    from zoo.record import Record

    record = Record.from_json({"name": "mine", "ref": "local:/home/alice/secret/ckpt.pth",
                               "weights": {"tag": "sha256:ab", "file": "/home/alice/secret/ckpt.pth", "sha256": "ab"}})
    shared = record.for_hub()
    assert shared["weights"] == {"tag": "sha256:ab", "file": "ckpt.pth", "sha256": "ab"}
    assert record.weights.file == "/home/alice/secret/ckpt.pth"  # the store's copy is untouched
    assert "| weights file | ckpt.pth |" in model_card(record, "team/mine")


def test_configs_to_preprocessing() -> None:
    from zoo_hf import configs

    vit = configs.from_image_processor({"do_resize": True, "size": {"height": 224, "width": 224},
                                        "do_center_crop": False, "resample": 2,
                                        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    assert vit is not None and vit.crop_mode == "squash" and vit.crop == (224, 224)
    assert vit.interpolation == "bilinear" and vit.mean == (0.5, 0.5, 0.5)
    assert configs.from_image_processor({"do_normalize": False, "size": 64}).std == (1.0, 1.0, 1.0)
    assert configs.from_image_processor({"tokenizer_class": "Bert"}) is None
    timm = configs.from_timm_config({"pretrained_cfg": {"input_size": [3, 288, 288], "crop_pct": 1.0}})
    assert timm is not None and timm.resize == 288 and timm.interpolation == "bicubic"
    assert configs.from_timm_config({"architectures": ["BertModel"]}) is None
    assert configs.labels_from_config({"id2label": {"0": "x", "2": "z"}}) is None  # a gap: not a label list
    assert configs.for_input(["batch", 3, 64, 64]).crop == (64, 64)


def test_download_progress_goes_to_the_spinner_line() -> None:
    """huggingface_hub's xet reporter drives the bar class zoo hands it (HTTP downloads call ``update``)."""
    from types import SimpleNamespace

    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    from zoo.hub import spinner_bar

    said: list[str] = []
    with XetDownloadProgressReporter(reconstruction_desc="x", total=10_000_000, log_level=20,
                                     tqdm_class=spinner_bar(said.append, "model.onnx")) as reporter:
        reporter.update_progress(SimpleNamespace(
            total_bytes_completed=5_000_000, total_transfer_bytes_completed=3_000_000, total_bytes=10_000_000,
            total_bytes_completion_rate=1.0, total_transfer_bytes_completion_rate=1.0))
    assert "downloading model.onnx: 5.0 MB of 10.0 MB" in said


def test_pull_shows_download_progress_on_a_terminal(home: Path, server: HubServer, tmp_path: Path) -> None:
    import os
    import pty

    server.hub.commit("acme/tiny", {"model.onnx": tiny_model().SerializeToString()})
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "pull", "hf:acme/tiny"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=slave, env=zoo_env(home, **hf_settings(server, tmp_path)))
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    # The spinner draws ~12 times a second, so a step shorter than a frame (this tiny download)
    # may never be drawn; the byte counts themselves are checked in the test above.
    assert re.search(rb"fetching hf:acme/tiny|downloading model\.onnx|checking the ONNX file", shown), shown
    assert proc.stdout is not None and proc.stdout.read().decode().strip().endswith("model.onnx")
