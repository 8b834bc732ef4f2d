"""Nothing let in: hostile checkpoints and ONNX files, unsafe names, bad registries (fuzzed),
weights pinning, offline mode and the one-line error contract. Real processes and files.

Each test is listed with the guarantee it proves in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import pickle
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    REPO,
    TINY,
    Ran,
    audited,
    catalogue,
    entry_dirs,
    external_model,
    host_with,
    invoke,
    mounted,
    one_line_error,
    store_files,
    zoo_env,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.errors import IntegrityError, RegistryError, ZooError
from zoo.integrity import check_external_data, check_weights_file, external_data_problems
from zoo.record import as_json
from zoo.store import Store, describe_files, write_json

# -- running the CLI as a fresh process under a Python audit hook ----------------------------------
# Records every filesystem and network event after zoo is imported, so a test can show that
# something did NOT happen (no socket when offline) and whether torch was imported.
# In-process tests use helpers.audited() instead.
AUDITED = """
import atexit, json, os, sys
WATCH = ("open", "os.", "shutil.", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
         "socket.bind", "socket.sendto", "urllib.Request", "http.client.connect")
events, armed = [], [False]
def hook(event, args):
    if armed[0] and event.startswith(WATCH) and event != "os.getpid":
        events.append([event, repr(args)[:300]])
sys.addaudithook(hook)
def dump():
    with open(os.environ["AUDIT_OUT"], "w") as handle:
        json.dump({"events": events, "torch": "torch" in sys.modules}, handle)
atexit.register(dump)
import zoo.cli
sys.argv = ["zoo", *json.loads(os.environ["AUDIT_ARGS"])]
armed[0] = True
zoo.cli.main()
"""


def run_audited(args: list[str], env: dict[str, str], out: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    env = {**env, "AUDIT_OUT": str(out), "AUDIT_ARGS": json.dumps(args)}
    proc = subprocess.run([sys.executable, "-c", AUDITED], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    return proc, json.loads(out.read_text())


# -- 4. malicious inputs: pickles --------------------------------------------------------------------
class RunsCode:
    """Unpickling this runs a shell command that creates a sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("fmt", ["plain pickle", "torch.save zip"])
def test_pickle_that_runs_code_is_refused(home: Path, zoo, tmp_path: Path, fmt: str) -> None:
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    payload = {"state_dict": {"fc.weight": RunsCode(sentinel)}}
    if fmt == "plain pickle":
        evil.write_bytes(pickle.dumps(payload))
    else:
        import torch

        torch.save(payload, evil)
    proc = zoo("pull", "torchvision:resnet18", "--weights", str(evil), check=False)
    one_line_error(proc, 1, "refusing", "arbitrary code")
    assert not sentinel.exists()
    assert entry_dirs(home) == []


# -- 4. malicious inputs: ONNX external data ----------------------------------------------------------
@pytest.mark.parametrize("attack", ["absolute", "dotdot", "symlink out", "symlinked dir out", "windows drive"])
def test_external_data_leaving_the_folder_is_refused(tmp_path: Path, secret: Path, attack: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    location = {
        "absolute": str(secret),
        "dotdot": "../secret.bin",
        "symlink out": "link.bin",
        "symlinked dir out": "sub/secret.bin",
        "windows drive": "C:\\secret.bin",
    }[attack]
    (folder / "link.bin").symlink_to(secret)
    (folder / "sub").symlink_to(tmp_path)
    path = external_model(folder, location)
    with pytest.raises(IntegrityError, match="refusing .*external data") as info:
        check_external_data(path)
    assert "\n" not in str(info.value)


def test_external_data_inside_the_folder_is_allowed_and_runs(tmp_path: Path, secret: Path) -> None:
    import onnxruntime as ort

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(secret.read_bytes())
    path = external_model(folder, "weights.bin")
    assert external_data_problems(path) == []
    check_external_data(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"X": np.ones(4, np.float32)})
    assert y.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_store_refuses_an_export_with_external_data_outside(home: Path, secret: Path) -> None:
    """A source plugin (or a downloaded ONNX file) cannot smuggle such a model into the store."""
    store = Store(home)
    with pytest.raises(IntegrityError, match="external data"):
        store.create("0123456789abcdef0123", lambda d: (external_model(d, "../../../secret.bin"), {})[1])
    assert entry_dirs(home) == [] and os.listdir(home / "tmp") == []


def test_verify_reports_a_planted_external_data_attack(copy_store: Path, zoo, secret: Path) -> None:
    (key,) = entry_dirs(copy_store)
    directory = copy_store / "models" / key
    external_model(directory, str(secret))  # replaces model.onnx
    metadata = json.loads((directory / "zoo.json").read_text())
    metadata["files"] = as_json(describe_files(directory))  # hashes match: only the reference is wrong
    write_json(directory / "zoo.json", metadata)
    proc = zoo("verify", check=False)
    assert proc.returncode == 3 and "is an absolute path" in proc.stdout


# -- 4. unsafe names, before any filesystem call; store paths contained ---------------------------------
BAD_NAMES = ["../etc", "a/b", "a\\b", "/etc/passwd", "C:\\Windows\\x", "C:x", "..", "x\x00y", "n" * 201,
             "torchvision:../../x", "torchvision:a/b", "torchvision:/abs", ".hidden", ""]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_names_are_refused_before_any_filesystem_call(home: Path, tmp_path: Path, name: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The registry file is broken: if it were read first, the error would be about it.
    broken = tmp_path / "broken.toml"
    broken.write_text("[models.x\n")
    monkeypatch.setenv("ZOO_REGISTRY", str(broken))
    for command in (["pull", name, "--weights", "none"], ["info", name], ["rm", name]):
        with audited() as events:
            if "\x00" in name:  # argv cannot carry NUL: call the library the same way
                proc = call_api(command[0], name)
            else:
                proc = invoke(*command, check=False)
        one_line_error(proc, 1, "invalid model name" if name else "empty model name")
        touched = [e for e in events if str(home) in e[1] or str(broken) in e[1] or (len(name) > 2 and name in e[1])]
        assert touched == [], touched
        assert not home.exists()


def test_audit_control_a_good_name_does_read_the_registry(home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit hook sees the registry read for a valid name: the test above can fail."""
    broken = tmp_path / "broken.toml"
    broken.write_text("[models.x\n")
    monkeypatch.setenv("ZOO_REGISTRY", str(broken))
    with audited() as events:
        proc = invoke("pull", "resnet18", "--weights", "none", check=False)
    one_line_error(proc, 1, str(broken), "invalid TOML")
    assert any(event == "open" and str(broken) in args for event, args in events)


def call_api(command: str, name: str) -> Ran:
    """``command`` through ``zoo.api`` (for names argv cannot carry), with the CLI's error line."""
    from zoo import api

    try:
        getattr(api, dict(pull="pull", info="find", rm="remove")[command])(name)
    except ZooError as exc:
        return Ran([command, name], exc.exit_code, "", f"zoo: error: {exc}\n")
    return Ran([command, name], 0, "", "")


def test_store_refuses_to_write_through_a_symlink_leaving_zoo_home(home: Path, zoo, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    home.mkdir(parents=True)
    for part in ("models", "tmp"):
        (home / part).symlink_to(outside)
        proc = zoo("pull", *TINY, check=False)
        one_line_error(proc, 1, "refusing path", "outside")
        assert os.listdir(outside) == []
        (home / part).unlink()


hex_keys = st.text("0123456789abcdef", min_size=20, max_size=20)
store_keys = st.one_of(
    hex_keys,  # what the resolver makes
    # a good key with something slipped in (or appended): separators, dots, a newline, other case
    st.builds(lambda key, at, extra: key[:at] + extra + key[at:], hex_keys, st.integers(0, 20),
              st.sampled_from(["/", "/..", "../", "/../../x", "\\", "\n", ".", "A", " ", "\x00", "0"])),
    st.text(max_size=40),  # anything at all
)


@given(key=store_keys)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_store_paths_stay_inside_zoo_home(home: Path, key: str) -> None:
    """Every key the store accepts names a direct child of models/; every key the resolver makes
    (20 hex digits) is accepted, so the assertion below runs for a good share of the examples."""
    import re

    store = Store(home)
    try:
        path = store.entry_dir(key)
    except ZooError:
        assert not re.fullmatch(r"[0-9a-f]{20}", key), f"a valid key was refused: {key!r}"
        return
    assert path.parent == (home / "models").resolve() and path.name == key and len(key) == 20


# -- 5. bad configuration, fuzzed ----------------------------------------------------------------------
def test_alias_pointing_at_a_missing_source_names_file_and_key(copy_store: Path, zoo, tmp_path: Path) -> None:
    before = store_files(copy_store)
    registry = tmp_path / "team.toml"
    registry.write_text('[models.mine]\nsource = "nosuch"\nname = "resnet18"\n')
    proc = zoo("pull", "mine", "--registry", str(registry), check=False)
    one_line_error(proc, 1, str(registry), "models.mine.source", "unknown source 'nosuch'")
    registry.write_text('[models.mine]\nsource = "torchvision"\nname = "resnet18"\nweights_sha256 = "abc"\n')
    proc = zoo("pull", "mine", "--registry", str(registry), check=False)
    one_line_error(proc, 1, str(registry), "models.mine.weights_sha256", "64 hex digits")
    assert store_files(copy_store) == before


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


scalars = st.one_of(st.text(max_size=12), st.integers(-5, 100), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False), st.lists(st.integers(0, 9), max_size=3))
keys = st.sampled_from(["source", "name", "weights", "opset", "batch", "dynamic_batch", "size", "dtype",
                        "exporter", "reparameterize", "description", "weights_sha256", "colour", "options"])
tables = st.dictionaries(keys, scalars, max_size=6)


@given(aliases=st.dictionaries(st.text(string.ascii_letters + "_-", min_size=1, max_size=8), tables, max_size=3))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_registry_tables_load_or_fail_with_registry_error(tmp_path: Path, aliases: dict) -> None:
    text = "".join(
        f"[models.{json.dumps(alias)}]\n" + "".join(f"{key} = {_toml_value(v)}\n" for key, v in table.items())
        for alias, table in aliases.items()
    )
    assert_loads_or_registry_error(tmp_path / "fuzz.toml", text)


@given(text=st.text(max_size=200))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_registry_text_loads_or_fails_with_registry_error(tmp_path: Path, text: str) -> None:
    assert_loads_or_registry_error(tmp_path / "fuzz.toml", "[models.a]\n" + text)


def assert_loads_or_registry_error(path: Path, text: str) -> None:
    from zoo.registry import load_file

    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        aliases = load_file(path)
    except RegistryError as exc:
        assert "\n" not in str(exc).strip() and str(path) in str(exc)
        return
    for alias in aliases.values():
        assert isinstance(alias.source, str) and isinstance(alias.name, str)


# The resolver (aliases, refs, claims, suggestions) fuzzed against made-up sources: a real host
# would spend ~0.1 s per unknown name ranking timm's 3,200 names for "did you mean".
FAKE_SOURCES = (catalogue("torchvision", ["resnet18", "resnet50", "mobilenet_v3_small"]),
                catalogue("timm", ["resnet18", "repvit_m0_9", "test_resnet"]),
                catalogue("x", ["a", "C"]))

name_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="abcz019._-+:/\\\x00 C", max_size=30),
    st.builds(lambda a, b: f"{a}:{b}", st.sampled_from(["torchvision", "timm", "nosuch", "C", "x"]),
              st.text(max_size=20)),
    st.sampled_from(["resnet18", "resnet50", "repvit_m0_9", "resnet5", "timm:resnet18", "x:a"]),
)


@given(text=name_text)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_names_resolve_or_fail_with_zoo_error(home: Path, text: str) -> None:
    from zoo.registry import Registry
    from zoo.resolve import resolve

    try:
        resolved = resolve(text, host_with(*FAKE_SOURCES), Registry.load(), "none", {})
    except ZooError as exc:
        assert "\n" not in str(exc)
        return
    assert len(resolved.key) == 20


@pytest.fixture(scope="module")
def real_host():  # -> zoo.host.PluginHost
    from zoo.host import PluginHost

    return PluginHost().load()


@given(source=st.sampled_from(["torchvision", "timm", "hf", "local"]), text=name_text)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_refs_to_the_real_sources_resolve_or_fail_with_zoo_error(home: Path, real_host, source: str,
                                                                      text: str) -> None:
    """Each built-in source's own name checks: an explicit ``source:name`` never reaches the
    catalogue-wide suggestions, so the real sources are cheap to fuzz this way. Any other
    exception would be an internal error; the CLI prints a ZooError's message on one line."""
    from zoo.registry import Registry
    from zoo.resolve import resolve

    try:
        resolved = resolve(f"{source}:{text}", real_host, Registry({}), None, {})
    except ZooError:
        return
    assert len(resolved.key) == 20


# -- 7. integrity pinning ------------------------------------------------------------------------------
def _pinned_registry(path: Path, weights: str, sha: str) -> Path:
    path.write_text(f'[models.pinned]\nsource = "torchvision"\nname = "squeezenet1_1"\n'
                    f'weights = {json.dumps(weights)}\nweights_sha256 = "{sha}"\nexporter = "torchscript"\n')
    return path


def test_pin_mismatch_on_a_weights_file_aborts_before_loading(home: Path, zoo, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(RunsCode(sentinel)))
    registry = _pinned_registry(tmp_path / "pins.toml", str(evil), "0" * 64)
    proc = zoo("pull", "pinned", "--registry", str(registry), check=False)
    # exit 3 (integrity), not 1 (refused pickle): the hash was checked before any load was tried
    one_line_error(proc, 3, str(evil), "registry pins " + "0" * 64, "refusing to load")
    assert not sentinel.exists() and entry_dirs(home) == []


def _hub_file(torch_home: Path) -> Path:
    from torchvision.models import SqueezeNet1_1_Weights

    name = SqueezeNet1_1_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    path = torch_home / "hub" / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_pin_mismatch_on_a_cached_download_aborts_before_loading(home: Path, zoo, tmp_path: Path) -> None:
    cached = _hub_file(tmp_path / "torch")
    cached.write_bytes(b"tampered: not a checkpoint at all")
    registry = _pinned_registry(tmp_path / "pins.toml", "IMAGENET1K_V1", "a" * 64)
    proc = zoo("pull", "pinned", "--registry", str(registry), check=False, ZOO_OFFLINE="1",
               TORCH_HOME=str(tmp_path / "torch"))
    one_line_error(proc, 3, str(cached), "registry pins", "refusing to load")
    assert entry_dirs(home) == []


def test_matching_pin_loads_and_a_user_choice_drops_the_pin(home: Path, zoo, tmp_path: Path) -> None:
    import torch
    from torchvision.models import squeezenet1_1

    from zoo.recipe import file_sha256

    cached = _hub_file(tmp_path / "torch")
    torch.save(squeezenet1_1().state_dict(), cached)
    registry = _pinned_registry(tmp_path / "pins.toml", "IMAGENET1K_V1", file_sha256(cached))
    env = {"ZOO_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")}
    out = json.loads(zoo("pull", "pinned", "--registry", str(registry), "--json", **env).stdout)
    assert out["cached"] is False
    info = json.loads(zoo("info", "pinned", "--registry", str(registry), "--json", **env).stdout)
    assert info["weights"]["sha256"] == file_sha256(cached)
    assert info["options"] == {"weights_sha256": file_sha256(cached)}

    from zoo.host import PluginHost
    from zoo.registry import Registry
    from zoo.resolve import resolve

    chosen = resolve("pinned", PluginHost().load(), Registry.load(registry), "none", {})
    assert chosen.spec.options == ()  # the pin is for the alias's own weights only


def test_a_pin_the_source_cannot_honour_is_an_error_not_ignored(home: Path, zoo, tmp_path: Path) -> None:
    registry = _pinned_registry(tmp_path / "pins.toml", "none", "b" * 64)  # random init has no file
    proc = zoo("pull", "pinned", "--registry", str(registry), check=False)
    one_line_error(proc, 3, "pins weights_sha256", "does not report")
    assert entry_dirs(home) == []


def test_check_weights_file_compares_before_reading_content(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    check_weights_file(path, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    check_weights_file(path, None)
    with pytest.raises(IntegrityError):
        check_weights_file(path, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AE")


# -- 6. offline ---------------------------------------------------------------------------------------------
def test_offline_cached_model_works_without_network_or_torch(copy_store: Path, tmp_path: Path) -> None:
    env = zoo_env(copy_store, ZOO_OFFLINE="1")
    proc, audit = run_audited(["pull", *TINY, "--json"], env, tmp_path / "a.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cached"] is True
    assert [e for e in audit["events"] if e[0].startswith(("socket", "urllib", "http"))] == []
    assert audit["torch"] is False


def test_offline_uncached_model_fails_in_one_line_without_network(home: Path, tmp_path: Path) -> None:
    env = zoo_env(home, ZOO_OFFLINE="1", TORCH_HOME=str(tmp_path / "empty-torch-home"))
    proc, audit = run_audited(["pull", "mobilenet_v3_small"], env, tmp_path / "a.json")
    one_line_error(proc, 4, "offline", "--weights none")
    assert [e for e in audit["events"] if e[0].startswith(("socket", "urllib", "http"))] == []
    assert entry_dirs(home) == []


# -- 8. error hygiene ------------------------------------------------------------------------------------------
HYGIENE = [
    (["pull", "resnet5", "--weights", "none"], 1, "did you mean"),
    (["pull", "../x"], 1, "invalid model name"),
    (["info", "resnet18", "--weights", "none"], 1, "not in the store"),
    (["rm", "resnet18", "--weights", "none"], 1, "not in the store"),
    (["verify", "resnet18", "--weights", "none"], 1, "not in the store"),
    (["pull", "resnet18", "--weights", "none", "--opset", "99"], 1, "--opset must be"),
    (["pull", "resnet18", "--weights", "/no/such/file.pth"], 1, "not found"),
    (["info", "/no/such/model.onnx"], 1, "no such file"),
    (["pull"], 2, "Missing argument"),
    (["pull", "resnet18", "--opset", "abc"], 2, "--opset"),
    (["pull", "resnet18", "--no-such-flag"], 2, "--no-such-flag"),
    (["frobnicate"], 2, "No such command"),
]


@pytest.mark.parametrize(("args", "code", "fragment"), HYGIENE,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_every_error_is_one_line_with_its_exit_code(home: Path, zoo, args: list[str], code: int, fragment: str) -> None:
    for json_flag in ([], ["--json"]) if code == 1 else ([],):
        one_line_error(zoo(*args, *json_flag, check=False), code, fragment)


def test_export_to_a_read_only_dir_is_one_line_exit_4(home: Path, zoo, tmp_path: Path) -> None:
    target = tmp_path / "ro"
    target.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", target=target):
        proc = zoo("export", *TINY, "-o", str(target / "out"), check=False)
        one_line_error(proc, 4, "Read-only file system", str(target / "out"))


def test_zoo_debug_shows_the_traceback(home: Path, zoo_process) -> None:
    """A real process: the traceback is the interpreter's own, printed as the exception leaves main()."""
    proc = zoo_process("pull", "../x", check=False, ZOO_DEBUG="1")
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr and "InvalidNameError" in proc.stderr
