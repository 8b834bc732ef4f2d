"""Plugin discovery, broken plugins, ZOO_LOAD_PLUGINS, the extension hooks and the conformance kit.

The plugins are the modules in tests/plugins/, exposed as entry points through hand-written
``.dist-info`` directories in a temporary folder: nothing is installed into the shared
environment. The CLI runs in this process with both folders on ``sys.path`` for the call (and
on PYTHONPATH for the processes zoo starts itself: the kit's ``light`` step); the plugin host
is loaded afresh for every call, as a new process would.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Ran, hf_settings, invoke, run_cli, zoo_env
from helpers import tiny_classifier as tiny_model

PLUGINS = Path(__file__).resolve().parent / "plugins"

# entry point name -> (distribution, module)
BROKEN = {
    "raises": ("zoo-test-raises", "zoo_test_raises"),
    "exits": ("zoo-test-exits", "zoo_test_exits"),
    "duplicate": ("zoo-test-duplicate", "zoo_test_duplicate"),
    "unknown_hook": ("zoo-test-unknown-hook", "zoo_test_unknown_hook"),
    "wrong_args": ("zoo-test-wrong-args", "zoo_test_wrong_args"),
    "command_clash": ("zoo-test-command-clash", "zoo_test_command_clash"),
}
TINY = {"tiny": ("zoo-test-tiny", "zoo_test_tiny")}
EXPECTED_ERRORS = {
    "raises": "RuntimeError: boom at import",
    "exits": "SystemExit: plugin exits",
    "duplicate": "source 'torchvision' is already registered by zoo_torchvision",
    "unknown_hook": "unknown hook(s) zoo_register_sauces",
    "wrong_args": "invalid hook zoo_register_sources(registrar)",
    "command_clash": "command 'list' is already registered by zoo",
}


def make_site(root: Path, plugins: dict[str, tuple[str, str]]) -> Path:
    """A folder of ``.dist-info`` entries declaring ``plugins`` in entry point group zoo."""
    site = root / "site"
    for entry_point, (dist, module) in plugins.items():
        info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[zoo]\n{entry_point} = {module}\n")
    return site


def with_site(site: Path) -> Callable[..., Ran]:
    """``run(*args, check=True, **env)``: ``zoo ARGS`` in process, the plugins of ``site`` installed.

    Uses the store of the ``home`` fixture.
    """

    def run(*args: str, check: bool = True, **extra: str) -> Ran:
        paths = [str(site), str(PLUGINS)]
        pythonpath = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        sys.path[:0] = paths
        try:
            return invoke(*args, env={"PYTHONPATH": pythonpath, **extra}, check=check)
        finally:
            for path in paths:
                sys.path.remove(path)

    return run


@pytest.fixture
def broken(home: Path, tmp_path: Path) -> Callable[..., Ran]:
    return with_site(make_site(tmp_path, {**BROKEN, **TINY}))


def test_broken_plugins_are_listed_with_reason_and_distribution(broken: Callable[..., Ran]) -> None:
    rows = {p["name"]: p for p in json.loads(broken("plugins", "--json").stdout)}
    for name, (dist, _module) in BROKEN.items():
        assert rows[name]["distribution"] == dist and rows[name]["version"] == "1.2.3"
        assert rows[name]["status"].startswith("error: ")
        assert EXPECTED_ERRORS[name] in rows[name]["status"], rows[name]["status"]
        assert rows[name]["sources"] == []
    assert rows["wrong_args"]["status"].endswith("can not be found in the hookspec")
    assert rows["tiny"]["status"] == "loaded" and rows["tiny"]["sources"] == ["tiny"]
    assert rows["tiny"]["hooks"] == ["zoo_post_export", "zoo_register_commands", "zoo_register_sources"]
    assert rows["tiny"]["commands"] == ["stats"]
    assert rows["zoo_torchvision"]["status"] == "loaded" and rows["zoo_torchvision"]["sources"] == ["torchvision"]

    table = broken("plugins").stdout
    line = next(row for row in table.splitlines() if row.startswith("duplicate "))
    assert "zoo-test-duplicate" in line and "already registered by zoo_torchvision" in line


def test_other_commands_keep_working_and_warn_once_per_broken_plugin(broken: Callable[..., Ran]) -> None:
    proc = broken("list", "--available", "mobilenet_v3_s*", "--json")
    names = [row["name"] for row in json.loads(proc.stdout)]
    assert "torchvision:mobilenet_v3_small" in names
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("zoo: warning: plugin")]
    assert len(warnings) == len(BROKEN), proc.stderr
    for name, (dist, _module) in BROKEN.items():
        assert sum(f"plugin {name} (from {dist}) skipped" in w for w in warnings) == 1
    # The built-in `list` is not replaced by the clashing plugin's command.
    assert "hijacked" not in broken("list").stdout


def test_an_entry_point_named_like_a_loaded_plugin_is_refused(home: Path, tmp_path: Path) -> None:
    site = make_site(tmp_path, {"zoo_torchvision": ("zoo-test-shadow", "zoo_test_tiny")})
    rows = json.loads(with_site(site)("plugins", "--json").stdout)
    shadow = [p for p in rows if p["distribution"] == "zoo-test-shadow"]
    assert len(shadow) == 1 and shadow[0]["status"] == "error: duplicate plugin name 'zoo_torchvision'"
    builtin = next(p for p in rows if p["name"] == "zoo_torchvision")
    assert builtin["status"] == "loaded" and builtin["sources"] == ["torchvision"]


def test_a_failing_catalogue_leaves_the_others_listed(home: Path, tmp_path: Path) -> None:
    site = make_site(tmp_path, {"badcat": ("zoo-test-bad-catalogue", "zoo_test_bad_catalogue")})
    proc = with_site(site)("list", "--available", "mobilenet_v3_s*", "--json")
    assert "torchvision:mobilenet_v3_small" in [row["name"] for row in json.loads(proc.stdout)]
    assert ("plugin badcat (zoo-test-bad-catalogue 1.2.3) failed listing the models of source badcat: "
            "RuntimeError: catalogue service down; left out of the list") in proc.stderr


def test_zoo_load_plugins_selects_entry_points(home: Path, tmp_path: Path) -> None:
    zoo = with_site(make_site(tmp_path, {**TINY, "raises": BROKEN["raises"]}))

    def loaded(**extra: str) -> set[str]:
        rows = json.loads(zoo("plugins", "--json", **extra).stdout)
        return {p["name"] for p in rows if not p["builtin"] and p["status"] != "skipped (ZOO_LOAD_PLUGINS)"}

    assert {"tiny", "raises"} <= loaded()  # unset: every entry point
    assert loaded(ZOO_LOAD_PLUGINS="") == set()  # empty: built-ins only
    assert loaded(ZOO_LOAD_PLUGINS="tiny") == {"tiny"}
    assert loaded(ZOO_LOAD_PLUGINS=" tiny , raises ") == {"tiny", "raises"}


def test_post_export_transform_runs_and_is_recorded(home: Path, tmp_path: Path) -> None:
    site = make_site(tmp_path, {**TINY, "bad_transform": ("zoo-test-bad-transform", "zoo_test_bad_transform")})
    zoo = with_site(site)
    pulled = json.loads(zoo("pull", "tiny:mlp", "--json").stdout)
    info = json.loads(zoo("info", "tiny:mlp", "--json").stdout)
    records = {r["plugin"]: r["status"] for r in info["post_export"]}
    load_order = [p["name"] for p in json.loads(zoo("plugins", "--json").stdout)]
    assert list(records) == [name for name in load_order if name in records]  # run in load order
    assert records["tiny"] == "applied"
    assert records["bad_transform"].startswith("undone: ")  # its corrupt file was rolled back
    counts = info["zoo_test_tiny"]
    assert counts["nodes_after"] <= counts["nodes_before"]
    assert info["stats"]["onnx_nodes"] == counts["nodes_after"]
    assert info["validation"]["passed"] is True
    assert json.loads(zoo("verify", "--json").stdout)["ok"] is True
    assert Path(pulled["path"]).read_bytes()[:20] != b"not an onnx model"[:20]


def test_plugin_commands_are_added_to_the_cli(home: Path, tmp_path: Path) -> None:
    zoo = with_site(make_site(tmp_path, TINY))
    assert "stats" in zoo("--help").stdout
    assert json.loads(zoo("stats", "--json").stdout) == {"entries": 0}
    no_plugins = with_site(make_site(tmp_path / "empty", {}))
    assert "stats" not in no_plugins("--help").stdout
    proc = no_plugins("stats", check=False)
    assert proc.returncode == 2 and "No such command 'stats'" in proc.stderr


def test_check_passes_a_conforming_source(home: Path, tmp_path: Path) -> None:
    data = json.loads(with_site(make_site(tmp_path, TINY))("plugins", "check", "tiny", "--json").stdout)
    steps = {s["name"]: s["status"] for s in data["reports"][0]["steps"]}
    assert data["passed"] is True
    assert steps == dict.fromkeys(("plugin", "light", "catalogue", "resolve", "alias", "unknown", "blame", "build",
                                   "export", "checker", "parity"), "pass")


def test_check_reports_each_failing_step_with_the_reason(home: Path, tmp_path: Path) -> None:
    zoo = with_site(make_site(tmp_path, {"sloppy": ("zoo-test-sloppy", "zoo_test_sloppy")}))
    proc = zoo("plugins", "check", "sloppy", "--json", check=False)
    assert proc.returncode == 1
    steps = {s["name"]: s for s in json.loads(proc.stdout)["reports"][0]["steps"]}
    assert steps["light"]["status"] == "fail" and "imported torch" in steps["light"]["detail"]
    assert steps["catalogue"]["status"] == "fail" and "apply the pattern" in steps["catalogue"]["detail"]
    assert steps["unknown"]["status"] == "fail" and "KeyError" in steps["unknown"]["detail"]
    assert all(steps[s]["status"] == "pass"
               for s in ("plugin", "resolve", "alias", "blame", "build", "export", "checker", "parity"))


def test_check_of_a_source_of_ready_onnx_files(home: Path, tmp_path: Path) -> None:
    zoo = with_site(make_site(tmp_path, {"ready": ("zoo-test-fetch", "zoo_test_fetch")}))
    data = json.loads(zoo("plugins", "check", "ready", "--json").stdout)
    steps = {s["name"]: s["status"] for s in data["reports"][0]["steps"]}
    assert data["passed"] is True, data
    assert steps == dict.fromkeys(("plugin", "light", "catalogue", "resolve", "alias", "unknown", "blame", "fetch",
                                   "checker", "run"), "pass")


def test_check_of_a_broken_plugin_or_unknown_name(broken: Callable[..., Ran]) -> None:
    proc = broken("plugins", "check", "raises", "--json", check=False)
    report = json.loads(proc.stdout)["reports"][0]
    assert proc.returncode == 1 and "boom at import" in report["steps"][0]["detail"]
    before = broken("plugins", "--json", "check", "raises", check=False)  # --json on the group means the same
    steps = [(s["name"], s["status"], s["detail"]) for s in json.loads(before.stdout)["reports"][0]["steps"]]
    assert before.returncode == 1 and steps == [(s["name"], s["status"], s["detail"]) for s in report["steps"]]
    human = broken("plugins", "check", "raises", check=False)
    assert human.returncode == 1 and "FAIL plugin" in human.stdout and "FAILED" in human.stdout
    proc = broken("plugins", "check", "nosuch", check=False)
    assert proc.returncode == 1 and "no source or plugin called 'nosuch'" in proc.stderr


def test_torchvision_passes_the_kit(home: Path) -> None:
    from zoo.testing import check_source

    report = check_source("torchvision", exporter="torchscript").assert_ok()
    assert report.model == "mobilenet_v3_small"


@pytest.mark.slow
def test_timm_passes_the_kit(home: Path) -> None:
    from zoo.host import get_host
    from zoo.testing import check_source

    report = check_source("timm").assert_ok()
    assert report.model == get_host().source("timm").example  # a small model, not the catalogue's first


def test_local_passes_the_kit(zoo: Callable[..., Ran], tmp_path: Path) -> None:
    import torch
    import torchvision

    checkpoint = tmp_path / "finetuned.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), checkpoint)  # torchvision's smallest classifier
    proc = zoo("plugins", "check", "local", "--model", str(checkpoint), "--weights", "default",
               "--option", "arch=torchvision:squeezenet1_1", "--exporter", "torchscript", "--json", check=False)
    data = json.loads(proc.stdout)
    assert data["passed"] is True, data
    build = next(s for s in data["reports"][0]["steps"] if s["name"] == "build")
    assert "SqueezeNet" in build["detail"]
    proc = zoo("plugins", "check", "local", "--option", "arch", check=False)
    assert proc.returncode == 1 and "--option takes KEY=VALUE" in proc.stderr


def test_hf_passes_the_kit(home: Path, tmp_path: Path) -> None:
    from hubserver import HubServer

    with HubServer() as server:
        server.hub.commit("acme/tiny", {"model.onnx": tiny_model().SerializeToString()})
        env = zoo_env(home, **hf_settings(server, tmp_path))
        data = json.loads(run_cli("plugins", "check", "hf", "--model", "acme/tiny", "--json", env=env).stdout)
    steps = {s["name"]: s["status"] for s in data["reports"][0]["steps"]}
    assert data["passed"] is True, data
    assert steps["fetch"] == steps["run"] == "pass" and "build" not in steps


def test_assert_ok_shows_the_report() -> None:
    from zoo.testing import CheckReport, Step

    report = CheckReport("x", "m", [Step("plugin", "pass"), Step("build", "fail", "boom")])
    with pytest.raises(AssertionError, match=r"FAIL build .* boom"):
        report.assert_ok()
