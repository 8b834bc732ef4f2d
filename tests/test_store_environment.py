"""The store's environment and its writers' lives: unusable stores, full export targets,
Ctrl-C, gc next to a running pull, and the smaller hostile inputs of issue 13.

Exit codes are checked through ``zoo.cli.main`` in process where the process boundary is
not the point; signals, a closed stdout and mounts use real processes and filesystems.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from helpers import REPO, SMALL, mounted, one_line_error, zoo_env
from onnx import TensorProto, helper

from zoo.liveness import host as _host

Main = Callable[..., tuple[int, str, str]]


@pytest.fixture
def main(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Main:
    """``main(*args)`` runs the real entry point in process: (exit code, stdout, stderr)."""
    from zoo.cli import main as entry

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["zoo", *args])
        with pytest.raises(SystemExit) as info:
            entry()
        out, err = capsys.readouterr()
        return info.value.code, out, err

    return run


def one_line(result: tuple[int, str, str], code: int, *fragments: str) -> str:
    got, out, err = result
    assert got == code, (got, err)
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("zoo: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def tiny_model(path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


# A store writer with a fake producer: the store's protocol without the cost of an export.
WRITER = """
from zoo.record import Record
from zoo.store import MODEL_FILE, Store
def produce(directory):
    (directory / MODEL_FILE).write_bytes(b"model")
    return Record(name="m", ref="fake:m")
Store().create("0123456789abcdef0123", produce)
"""


def start_pull(home: Path, pause: str, real: bool = False) -> subprocess.Popen[str]:
    """A pull (``real``: ``zoo pull``, else a fake writer) stopped at a named step of the store's
    protocol, which it says on its stderr."""
    command = ["-m", "zoo", "pull", *SMALL] if real else ["-c", WRITER]
    proc = subprocess.Popen([sys.executable, *command], env=zoo_env(home, ZOO_TEST_PAUSE=pause),
                            cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stderr.readline()
    if line.strip() != f"zoo: test pause at {pause}":
        proc.kill()
        raise AssertionError(line + proc.stderr.read())
    return proc


# -- item 6: a store that cannot be used ------------------------------------------------------------
COMMANDS = [("list",), ("verify",), ("gc",), ("info", "resnet18"), ("rm", "resnet18"),
            ("pull", "resnet18", "--weights", "none"), ("pull", "resnet18", "--weights", "none", "--force"),
            ("run", "resnet18", "--weights", "none")]


@pytest.mark.parametrize("kind", ["regular file", "/dev/null"])
def test_unusable_zoo_home_is_exit_4_naming_it_for_every_command(
        main: Main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    root = "/dev/null"
    if kind == "regular file":
        root = str(tmp_path / "not-a-store")
        Path(root).write_text("x")
    monkeypatch.setenv("ZOO_HOME", root)
    for command in COMMANDS:
        one_line(main(*command), 4, f"ZOO_HOME={root}", "not a directory")
    if kind == "regular file":
        assert Path(root).read_text() == "x"


def refuse_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any export from here on fails the test: what is checked must be checked before the work."""
    from zoo import api

    def producer(*args: object, **kwargs: object) -> Callable[[Path], object]:
        def produce(directory: Path) -> object:
            raise AssertionError("exported before the store was checked")
        return produce

    monkeypatch.setattr(api, "_producer", producer)


def test_a_store_folder_that_is_a_file_is_refused_before_the_export(
        main: Main, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir(parents=True)
    (home / "generations").write_text("x")
    refuse_exports(monkeypatch)
    for command in (("pull", "resnet18", "--weights", "none"), ("list",), ("verify",)):
        one_line(main(*command), 4, f"ZOO_HOME={home}", "generations is a regular file",
                 "move generations away")
    assert (home / "generations").read_text() == "x"


def test_a_zoo_home_that_cannot_be_created_is_one_line(main: Main, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HOME", "/proc/self/x")  # /proc refuses new entries: ENOENT, not a write error
    refuse_exports(monkeypatch)
    one_line(main("pull", "resnet18", "--weights", "none"), 4, "ZOO_HOME=/proc/self/x", "cannot create",
             "No such file or directory")
    assert json.loads(main("list", "--json")[1]) == []  # a store that does not exist is empty


def test_unreadable_weights_file_is_one_line(main: Main) -> None:
    """/proc/self/mem is a regular file by stat whose read fails (EIO) while hashing for the key."""
    one_line(main("pull", "timm:test_resnet", "--weights", "/proc/self/mem"), 1,
             "cannot read weights file /proc/self/mem", "Input/output error")


@pytest.mark.slow
def test_export_to_a_read_only_or_full_target_is_exit_4(main: Main, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", target=target):
        one_line(main("export", *SMALL, "-o", str(target)), 4, f"cannot write to {target}", "Read-only")
    with mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", target=target):  # a ~10 MB model
        one_line(main("export", *SMALL, "-o", str(target)), 4, f"cannot write to {target}",
                 "No space left on device", "free some space")
        assert os.listdir(target) == []  # the partial export was removed


# -- item 8: Ctrl-C ----------------------------------------------------------------------------------
def test_ctrl_c_prints_one_line_exits_130_and_cleans_up(home: Path) -> None:
    proc = start_pull(home, "tmp-made", real=True)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (130, "", "zoo: interrupted\n")
    assert os.listdir(home / "tmp") == []


@pytest.mark.parametrize("pause", ["synced", "placed"])
def test_interrupted_writer_removes_its_copy(home: Path, pause: str) -> None:
    proc = start_pull(home, pause)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err  # a bare Python writer
    assert os.listdir(home / "tmp") == []
    assert not (home / "generations").exists() or os.listdir(home / "generations") == []
    assert not (home / "models").exists() or os.listdir(home / "models") == []


# -- item 9: gc next to a running pull -----------------------------------------------------------------
@pytest.mark.parametrize("pause", ["synced", "placed"])
def test_gc_max_age_0_never_removes_a_running_pulls_files(home: Path, main: Main, pause: str) -> None:
    proc = start_pull(home, pause)
    try:
        where = home / ("tmp" if pause == "synced" else "generations")
        (made,) = os.listdir(where)
        code, out, _ = main("gc", "--max-age", "0", "--json")
        assert code == 0 and json.loads(out) == {"removed": []}
        assert os.listdir(where) == [made]
    finally:
        proc.kill()
        proc.wait(timeout=10)
    code, out, _ = main("gc", "--max-age", "0", "--json")  # now its writer is dead
    assert [Path(p).name for p in json.loads(out)["removed"]] == [made]


def test_gc_judges_another_hosts_writer_by_its_lock_then_age(home: Path, main: Main) -> None:
    key = "0123456789abcdef0123"
    elsewhere = home / "tmp" / f"{key}.1@another-host.x1"
    elsewhere.mkdir(parents=True)
    (home / "locks").mkdir()
    with open(home / "locks" / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the writer over there holds the key
        assert json.loads(main("gc", "--max-age", "0", "--json")[1]) == {"removed": []}
    assert json.loads(main("gc", "--json")[1]) == {"removed": []}  # young: kept by age
    assert [Path(p).name for p in json.loads(main("gc", "--max-age", "0", "--json")[1])["removed"]] == [
        elsewhere.name]


def test_gc_removes_a_dir_whose_pid_was_reused(home: Path, main: Main) -> None:
    """Our own pid is alive, but it started after the dir was last written: not its writer."""
    stale = home / "tmp" / f"{'0' * 20}.{os.getpid()}@{_host()}.r1"
    stale.mkdir(parents=True)
    os.utime(stale, (1_000_000_000, 1_000_000_000))  # 2001
    assert [Path(p).name for p in json.loads(main("gc", "--json")[1])["removed"]] == [stale.name]


# -- item 10: smaller hostile inputs -----------------------------------------------------------------
def test_local_alias_resolves_like_a_local_ref(home: Path, tmp_path: Path) -> None:
    from zoo.api import resolve_name
    from zoo.recipe import file_sha256

    checkpoint = tmp_path / "ck.pth"
    checkpoint.write_bytes(b"not loaded by resolve")
    registry = tmp_path / "registry.toml"
    registry.write_text(f'[models.mine]\nsource = "local"\nname = "{checkpoint}"\n'
                        'options = {{ arch = "timm:test_vit" }}\n'.replace("{{", "{").replace("}}", "}"))
    alias = resolve_name("mine", registry=registry)
    ref = resolve_name(f"local:{checkpoint}", options={"arch": "timm:test_vit"})
    assert alias.spec.weights == "sha256:" + file_sha256(checkpoint)  # what build checks against
    assert alias.key == ref.key


def test_nul_in_a_registry_path_is_printed_escaped(main: Main, tmp_path: Path) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text('[models.nul]\nsource = "torchvision"\nname = "resnet18"\nweights = "/tmp/a\\u0000b"\n')
    err = one_line(main("pull", "nul", "--registry", str(registry)), 1, "/tmp/a\\x00b")
    assert "\x00" not in err


def test_bad_output_targets_and_unreadable_checkpoints_are_one_line(main: Main, tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m.onnx")
    (tmp_path / "out.npz").mkdir()
    one_line(main("run", str(model), "--output", str(tmp_path / "out.npz")), 1, "is a directory")
    one_line(main("run", str(model), "--output", str(tmp_path)), 1, "writes an .npz file")
    plain = tmp_path / "notes.txt"
    plain.write_text("not a directory")
    one_line(main("export", *SMALL, "-o", str(plain)), 1, "is not a directory")
    one_line(main("export", *SMALL, "-o", str(model)), 1, "exists", "--force")  # -o FILE.onnx never replaces
    one_line(main("export", "--checkpoint", "/proc/self/mem", "--arch", "timm:test_vit", "-o", str(tmp_path / "x")),
             1, "cannot read checkpoint /proc/self/mem")


def test_closed_stdout_is_one_line_exit_4(home: Path) -> None:
    proc = subprocess.run(["bash", "-c", f'exec "{sys.executable}" -m zoo list >&-'], env=zoo_env(home),
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4 and proc.stderr == (
        "zoo: error: standard output is closed; redirect it instead (e.g. >/dev/null)\n")
    one_line_error(proc, 4, "standard output is closed")
