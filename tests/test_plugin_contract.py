"""The plugin contract (issue 12) and the plugin surface ``zoo.plugin`` (issue 10).

Fixture plugins from tests/plugins/ are declared as entry points in a temporary
``.dist-info`` folder and loaded in this process (both folders on ``sys.path``); the CLI
runs in process through ``zoo.cli.main``, so its one-line errors and exit codes are the
real ones. Only the torch-free cache hit needs a process of its own.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import zoo
import zoo.plugin
from zoo.host import PluginHost, get_host, reset_host
from zoo.registry import Registry
from zoo.resolve import resolve
from zoo.spec import ModelSpec

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "plugins"
REPO = TESTS.parent
# entry point name -> (distribution, module)
PLUGINS = {
    "tinycnn": ("zoo-test-tinycnn", "zoo_test_tinycnn"),
    "faulty": ("zoo-test-faulty", "zoo_test_faulty"),
    "meddling": ("zoo-test-meddling", "zoo_test_meddling"),
}
SKIPPED = "skipped (ZOO_LOAD_PLUGINS)"


@pytest.fixture
def install(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``install("tinycnn", ...)``: those fixture plugins become installed entry points."""

    def install(*names: str) -> Path:
        site = tmp_path / "site"
        for name in names:
            dist, module = PLUGINS[name]
            info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
            info.mkdir(parents=True)
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
            (info / "entry_points.txt").write_text(f"[zoo]\n{name} = {module}\n")
        monkeypatch.syspath_prepend(str(FIXTURES))
        monkeypatch.syspath_prepend(str(site))
        # For the processes zoo starts itself (the kit's `light` step) and the torch-free hit.
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(FIXTURES), *sys.path]))
        reset_host()
        return site

    yield install
    reset_host()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)`` runs ``zoo ARGS`` in process: (exit code, stdout, stderr)."""
    from zoo import cli as module

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["zoo", *args])
        with pytest.raises(SystemExit) as stopped:
            module.main()
        out, err = capsys.readouterr()
        return stopped.value.code, out, err

    return run


# -- 1. listing by source ------------------------------------------------------------------------
def test_list_available_by_source(install: Callable[..., Path], cli: Callable[..., tuple[int, str, str]]) -> None:
    install("tinycnn")
    code, out, _err = cli("list", "--available", "tinycnn:*", "--json")
    assert code == 0 and [row["name"] for row in json.loads(out)] == ["tinycnn:l", "tinycnn:m"]
    code, out, _err = cli("list", "--available", "tinycnn:M*", "--json")
    assert code == 0 and [row["ref"] for row in json.loads(out)] == ["tinycnn:m"]
    code, out, err = cli("list", "--available", "tinycnn*")  # bare: matched against bare names only
    assert (code, out) == (0, "") and err == ("zoo: nothing available matches 'tinycnn*'; try SOURCE:* or see "
                                              "`zoo plugins`\n")
    code, out, _err = cli("list", "--available", "l", "--json")
    assert code == 0 and "tinycnn:l" in [row["name"] for row in json.loads(out)]
    code, _out, err = cli("list", "--available", "nosource:*")
    assert code == 1 and "unknown source 'nosource'" in err


# -- 2. an alias takes the ref's path --------------------------------------------------------------
def test_an_alias_resolves_to_the_refs_key_and_hits_without_torch(install: Callable[..., Path],
                                                                  tmp_path: Path) -> None:
    install("tinycnn")
    registry = tmp_path / "aliases.toml"
    registry.write_text('[models.tinym]\nsource = "tinycnn"\nname = "m"\nexporter = "torchscript"\n')
    direct = zoo.resolve_name("tinycnn:m", exporter="torchscript")
    via_alias = zoo.resolve_name("tinym", registry=registry)
    assert direct.spec == ModelSpec("tinycnn", "m", "seed1234", (("arch", "cnn-w4"),))  # spec() ran
    assert via_alias.spec == direct.spec and via_alias.key == direct.key

    assert zoo.pull("tinycnn:m", exporter="torchscript").cached is False
    code = ("import json, sys, zoo; r = zoo.pull('tinym', registry=sys.argv[1]); "
            "print(json.dumps({'cached': r.cached, 'torch': 'torch' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code, str(registry)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cached": True, "torch": False}


def test_a_source_says_what_its_build_is_doing(install: Callable[..., Path]) -> None:
    install("tinycnn")
    said: list[str] = []
    zoo.pull("tinycnn:l", exporter="torchscript", progress=said.append)
    start = said.index("building tinycnn:l (weights seed1234)")
    assert said[start + 1] == "making a 8-channel CNN"  # zoo.plugin.report, from inside build
    zoo.plugin.report("nobody is listening now")  # outside a build: dropped
    assert "nobody is listening now" not in said
    assert zoo.pull("tinycnn:m", exporter="torchscript").cached is False  # no progress: dropped too


def test_the_kit_checks_alias_and_bare_name_keys(install: Callable[..., Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.testing import SourceCheck

    install("tinycnn")
    host = get_host()
    check = SourceCheck("tinycnn", None, host, light=False, weights="none", options=None, recipe_flags={})
    check.plugin(), check.catalogue(), check.resolve()
    assert check.alias().startswith("alias -> key ")
    # A bare-name claim that skips what spec() adds would export the same model twice.
    monkeypatch.setattr(host.sources["tinycnn"], "resolve", lambda name: ModelSpec("tinycnn", name, "none"))
    with pytest.raises(Exception, match=r"return from resolve\(\) what spec\(\) returns"):
        check.alias()


def test_tinycnn_passes_the_whole_kit(install: Callable[..., Path]) -> None:
    from zoo.testing import check_source

    install("tinycnn")
    report = check_source("tinycnn", exporter="torchscript").assert_ok()
    steps = [step.name for step in report.steps]
    assert steps == ["plugin", "light", "catalogue", "resolve", "alias", "unknown", "blame", "build", "export",
                     "checker", "parity"]
    blame = next(step for step in report.steps if step.name == "blame")
    assert blame.detail.startswith("plugin tinycnn (zoo-test-tinycnn 1.2.3) failed resolving")


# -- 3. a plugin's exception is the plugin's failure -------------------------------------------------
@pytest.mark.parametrize(("fault", "args", "doing"), [
    ("models", ["list", "--available", "faulty:*"], "listing the models of source faulty"),
    ("resolve", ["pull", "nosuchbare"], "resolving 'nosuchbare' in source faulty"),
    ("spec", ["pull", "faulty:x"], "reading faulty:x"),
    ("build", ["pull", "faulty:x", "--weights", "none"], "building faulty:x"),
    ("fetch", ["pull", "faultyready:x"], "fetching faultyready:x"),
    ("command", ["faulty-cmd"], "in command 'faulty-cmd'"),
])
def test_an_exception_from_plugin_code_is_reported_as_the_plugins_failure(
        install: Callable[..., Path], cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch,
        fault: str, args: list[str], doing: str) -> None:
    install("faulty")
    monkeypatch.setenv("ZOO_TEST_FAULT", fault)
    code, _out, err = cli(*args)
    blamed = f"plugin faulty (zoo-test-faulty 1.2.3) failed {doing}: RuntimeError: faulty {fault}"
    if fault == "resolve":  # one source failing on a bare name is skipped, named, and the others answer
        assert (code, err) == (1, f"zoo: warning: {blamed}; source faulty skipped\n"
                                  "zoo: error: unknown model 'nosuchbare'; see `zoo list --available`\n")
        return
    assert (code, err) == (1, f"zoo: error: {blamed}\n")


def test_zoos_own_bug_stays_an_internal_error(install: Callable[..., Path], cli: Callable[..., tuple[int, str, str]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    install("faulty")
    assert cli("faulty-cmd")[:2] == (0, "ok\n")

    def broken(*args: object) -> str:
        raise ZeroDivisionError("zoo's own bug")

    monkeypatch.setattr("zoo.resolve.cache_key", broken)
    code, _out, err = cli("pull", "faulty:x")
    assert code == 1 and err.startswith("zoo: internal error: ZeroDivisionError: zoo's own bug")


# -- 4. ZOO_LOAD_PLUGINS says what it leaves out ---------------------------------------------------
def test_zoo_load_plugins_warns_lists_skipped_and_explains_unknown_sources(
        install: Callable[..., Path], cli: Callable[..., tuple[int, str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    install("tinycnn", "faulty")
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "faulty,tinycnm")  # a typo
    code, out, err = cli("plugins", "--json")
    status = {row["name"]: row["status"] for row in json.loads(out)}
    assert code == 0 and status["tinycnn"] == SKIPPED and status["faulty"] == "loaded"
    assert err == ("zoo: warning: ZOO_LOAD_PLUGINS names tinycnm: no installed plugin is called that "
                   "(installed: faulty, tinycnn)\n")
    code, _out, err = cli("pull", "tinycnn:m")
    assert code == 1
    assert ("unknown source 'tinycnn'" in err and "skips installed plugin(s) tinycnn (from zoo-test-tinycnn)"
            in err and "add it to ZOO_LOAD_PLUGINS" in err)
    code, out, _err = cli("plugins")
    assert code == 0 and any(line.startswith("tinycnn ") and line.endswith(SKIPPED) for line in out.splitlines())


# -- 5. a failed transform is undone whole -------------------------------------------------------
def test_a_failed_transform_is_undone_with_its_metadata_and_a_warning(
        install: Callable[..., Path], cli: Callable[..., tuple[int, str, str]]) -> None:
    install("tinycnn", "meddling")
    code, out, err = cli("pull", "tinycnn:m", "--exporter", "torchscript", "--json")
    assert code == 0, err
    assert err == ("zoo: warning: plugin meddling (zoo-test-meddling 1.2.3): its post-export transform failed "
                   "on tinycnn:m and was undone: RuntimeError: optimizer crashed\n")
    model = Path(json.loads(out)["path"])
    metadata = json.loads((model.parent / "zoo.json").read_text())
    assert metadata["post_export"] == [{"plugin": "meddling", "status": "undone: RuntimeError: optimizer crashed"}]
    assert "meddling" not in metadata and "meddled" not in metadata["stats"]
    assert metadata["labels"] == ["cat", "dog", "fox"]
    assert model.read_bytes() != b"half-written"
    code, out, _err = cli("verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


# -- 6. suggestions are refs that work ---------------------------------------------------------------
def test_suggestions_are_source_refs_never_the_input(install: Callable[..., Path],
                                                     cli: Callable[..., tuple[int, str, str]]) -> None:
    install("tinycnn")
    code, _out, err = cli("pull", "m")
    assert code == 1 and err.startswith("zoo: error: unknown model 'm'; did you mean: ")
    suggested = err.split("did you mean: ", 1)[1].rstrip("?\n").split(", ")
    assert "tinycnn:m" in suggested and "m" not in suggested


# -- the surface -----------------------------------------------------------------------------------
def test_built_in_plugins_import_only_the_surface() -> None:
    for path in sorted((REPO / "plugins").glob("*/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("zoo"):
                assert node.module == "zoo.plugin", f"{path}: from {node.module} import ..."
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("zoo") and a.name != "zoo.plugin" for a in node.names), path


def test_every_name_of_the_surface_is_documented_and_old_paths_still_work() -> None:
    import zoo.checkpoint
    import zoo.errors
    import zoo.recipe
    import zoo.source

    docs = (REPO / "docs" / "plugins.md").read_text()
    undocumented = [name for name in zoo.plugin.__all__ if f"`{name}" not in docs]
    assert undocumented == []
    assert all(hasattr(zoo.plugin, name) for name in zoo.plugin.__all__)
    # What earlier docs showed: the same objects, still importable.
    assert (zoo.Source, zoo.ModelSpec, zoo.BuiltModel, zoo.Preprocessing, zoo.hookimpl) == (
        zoo.plugin.Source, zoo.plugin.ModelSpec, zoo.plugin.BuiltModel, zoo.plugin.Preprocessing, zoo.plugin.hookimpl)
    assert zoo.source.match is zoo.plugin.match and zoo.recipe.looks_like_path is zoo.plugin.looks_like_path
    assert zoo.errors.UnknownModelError is zoo.plugin.UnknownModelError
    assert zoo.checkpoint.load_into is zoo.plugin.load_into


def test_the_surface_imports_nothing_heavy_and_sits_below_the_host() -> None:
    code = ("import sys, zoo.plugin; print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'huggingface_hub', "
            "'zoo.host', 'zoo.api', 'zoo.resolve') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.stdout.strip() == "[]", proc.stderr


class Duck:
    """A source that does not subclass ``Source``: it keeps working."""

    name = "duck"

    def models(self, pattern=None):
        return ["a"]

    def resolve(self, name):
        return None

    def spec(self, name, weights, options):
        return ModelSpec(self.name, name, weights, tuple(sorted(options.items())))

    def build(self, spec, recipe):
        raise KeyError(spec.name)


class Ready(zoo.plugin.Source):
    """A fetch-only source: ``fetch`` alone, no ``build`` stub."""

    name = "ready"

    def fetch(self, spec, recipe, directory, progress=None):
        return {}


def test_duck_typed_and_fetch_only_sources() -> None:
    host = PluginHost()
    host.sources = {"duck": Duck(), "ready": Ready()}
    resolved = resolve("duck:a", host, Registry({}), options={"arch": "x"})
    assert resolved.spec == ModelSpec("duck", "a", "default", (("arch", "x"),))
    assert host.source("duck").fetches is False and host.source("ready").fetches is True
    with pytest.raises(zoo.plugin.PluginFailure, match=r"a source registered without a plugin failed building "
                                                       r"duck:a: KeyError: 'a'"):
        host.source("duck").build(resolved.spec, resolved.recipe)
    with pytest.raises(zoo.plugin.ExportError, match="serves ready ONNX files"):
        host.source("ready").build(ModelSpec("ready", "a"), resolved.recipe)
    with pytest.raises(zoo.plugin.UserError, match="source 'ready' takes no --arch"):
        resolve("ready:a", host, Registry({}), options={"arch": "x"})
