"""Start-up work a command does not repeat (issue 10, item 7).

The plugins' entry points are remembered while no ``sys.path`` folder changes
(``zoo.entry_points``); a command line that names a built-in command builds only that
command; help shows no type placeholders.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import typer
from helpers import invoke

from zoo import cli, entry_points


def add_distribution(site: Path, dist: str, entry: str, module: str) -> None:
    """An installed distribution declaring ``entry = module`` in group zoo, as pip leaves it."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[zoo]\n{entry} = {module}\n")


def settle(path: Path) -> None:
    """Move ``path``'s mtime safely into the past, as for a distribution installed a while ago."""
    past = time.time_ns() - int(60e9)
    os.utime(path, ns=(past, past))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that is the whole of ``sys.path``, so that its distributions are all there is."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.setattr(sys, "path", [str(folder)])
    return folder


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time the installed distributions are really read, its group is appended here."""
    seen: list[str] = []
    real = entry_points._scan
    monkeypatch.setattr(entry_points, "_scan", lambda group: seen.append(group) or real(group))
    return seen


def names(found: list[entry_points.EntryPoint]) -> list[tuple[str, str, str | None, str | None]]:
    return sorted((ep.name, ep.value, ep.distribution, ep.version) for ep in found)


def test_entry_points_are_remembered_until_a_path_folder_changes(site: Path, tmp_path: Path,
                                                                 scans: list[str]) -> None:
    cache = tmp_path / "cache"
    add_distribution(site, "zoo_alpha", "alpha", "zoo_alpha_plugin")
    settle(site)
    first = entry_points.installed("zoo", cache)
    assert names(first) == [("alpha", "zoo_alpha_plugin", "zoo_alpha", "1.0")]
    assert len(scans) == 1 and len(list(cache.glob("*.json"))) == 1
    assert entry_points.installed("zoo", cache) == first and len(scans) == 1  # from memory

    add_distribution(site, "zoo_beta", "beta", "zoo_beta_plugin:plugin")  # `pip install` moves the mtime
    both = [("alpha", "zoo_alpha_plugin", "zoo_alpha", "1.0"), ("beta", "zoo_beta_plugin:plugin", "zoo_beta", "1.0")]
    assert names(entry_points.installed("zoo", cache)) == both and len(scans) == 2
    # Changed just now, so within the clock's granularity of another change: not remembered.
    assert names(entry_points.installed("zoo", cache)) == both and len(scans) == 3
    settle(site)
    assert names(entry_points.installed("zoo", cache)) == both and len(scans) == 4
    assert names(entry_points.installed("zoo", cache)) == both and len(scans) == 4

    (site / "zoo_beta-1.0.dist-info" / "entry_points.txt").unlink()  # `pip uninstall`
    (site / "zoo_beta-1.0.dist-info" / "METADATA").unlink()
    (site / "zoo_beta-1.0.dist-info").rmdir()
    assert names(entry_points.installed("zoo", cache)) == both[:1] and len(scans) == 5


@pytest.mark.parametrize("damage", [
    b"{not json",
    b"[1, 2]",
    b'{"stamps": STAMPS, "entry_points": [{"name": "alpha", "value": "os; import this"}]}',
    b'{"stamps": STAMPS, "entry_points": [{"name": 7, "value": "zoo_alpha_plugin"}]}',
    b'{"stamps": STAMPS, "entry_points": [{"name": "alpha", "value": "m", "extra": 1}]}',
    b'{"stamps": STAMPS, "entry_points": "alpha"}',
])
def test_a_damaged_record_is_read_again_from_the_distributions(site: Path, tmp_path: Path, scans: list[str],
                                                               damage: bytes) -> None:
    cache = tmp_path / "cache"
    add_distribution(site, "zoo_alpha", "alpha", "zoo_alpha_plugin")
    settle(site)
    entry_points.installed("zoo", cache)
    [record] = cache.glob("*.json")
    stamps = json.loads(record.read_text())["stamps"]
    record.write_bytes(damage.replace(b"STAMPS", json.dumps(stamps).encode()))
    assert names(entry_points.installed("zoo", cache)) == [("alpha", "zoo_alpha_plugin", "zoo_alpha", "1.0")]
    assert len(scans) == 2
    assert json.loads(record.read_text())["entry_points"][0]["name"] == "alpha"  # written anew


def test_an_unwritable_cache_only_costs_a_scan(site: Path, tmp_path: Path, scans: list[str]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    add_distribution(site, "zoo_alpha", "alpha", "zoo_alpha_plugin")
    settle(site)
    for _ in range(2):
        assert [ep.name for ep in entry_points.installed("zoo", blocker / "cache")] == ["alpha"]
    assert len(scans) == 2


def test_an_entry_point_loads_the_attribute_it_names(site: Path) -> None:
    (site / "zoo_gamma_plugin.py").write_text("class hooks:\n    inner = 'found'\n")
    assert entry_points.EntryPoint("g", "zoo_gamma_plugin:hooks.inner [extra]").load() == "found"
    assert entry_points.EntryPoint("g", "zoo_gamma_plugin").load().hooks.inner == "found"
    with pytest.raises(ValueError, match="is not MODULE"):
        entry_points.EntryPoint("g", "zoo_gamma_plugin:hooks;rm").load()


# -- the command line ------------------------------------------------------------------------------
@pytest.fixture
def built(home: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands of each click group the CLI builds."""
    seen: list[list[str]] = []
    real = typer.main.get_command

    def spy(app: typer.Typer) -> object:
        group = real(app)
        seen.append(sorted(group.commands))
        return group

    monkeypatch.setattr(typer.main, "get_command", spy)
    return seen


def test_a_command_line_naming_a_built_in_command_builds_only_that_one(built: list[list[str]]) -> None:
    assert json.loads(invoke("list", "--json").stdout) == []
    assert "list" in invoke("remote", "--help").stdout
    assert built == [["list"], ["remote"]]
    invoke("--help")  # the overview: every command, the plugins' too
    assert {"list", "run", "remote", "eval"} <= set(built[-1])
    assert "No such command 'rnu'" in invoke("rnu", check=False).stderr  # could have been a plugin's
    assert len(built[-1]) > 10


def test_a_command_built_alone_is_the_same_command() -> None:
    def described(command: object) -> list[tuple]:
        return [(p.name, tuple(p.opts), tuple(p.secondary_opts), p.metavar, p.default) for p in command.params]

    everything = cli.command()
    for name in ("pull", "run", "bench", "remote"):
        alone = cli.command(name)
        assert list(alone.commands) == [name]
        assert described(alone.commands[name]) == described(everything.commands[name])
        assert alone.commands[name].help == everything.commands[name].help


@pytest.mark.parametrize("args", [("--help",), ("pull", "--help"), ("run", "--help"), ("bench", "--help"),
                                  ("remote", "list", "--help")])
def test_help_shows_names_not_type_placeholders(home: Path, args: tuple[str, ...]) -> None:
    text = invoke(*args, env={"COLUMNS": "200"}).stdout
    assert not re.search(r"<(str|int|bool|float|path|text|integer)>", text, re.IGNORECASE), text
    if "pull" in args:
        assert re.search(r"--opset +OPSET ", text) and re.search(r"--force +--no-force ", text)


def test_a_plugin_list_memo_leading_out_of_its_folder_is_never_written_through(site: Path, tmp_path: Path,
                                                                               scans: list[str]) -> None:
    """As for the store's folders: a symlinked ``entry-points`` folder (or memo) is not written through."""
    add_distribution(site, "zoo_alpha", "alpha", "zoo_alpha_plugin")
    settle(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = tmp_path / "zoo" / "entry-points"
    cache.parent.mkdir()
    cache.symlink_to(elsewhere)
    for _ in range(2):
        assert names(entry_points.installed("zoo", cache)) == [("alpha", "zoo_alpha_plugin", "zoo_alpha", "1.0")]
    assert os.listdir(elsewhere) == [] and len(scans) == 2  # nothing written there, nothing read from there
    cache.unlink()
    cache.mkdir()
    entry_points.installed("zoo", cache)
    (memo,) = cache.glob("*.json")
    memo.unlink()
    memo.symlink_to(elsewhere / "planted.json")
    (elsewhere / "planted.json").write_text('{"stamps": [], "entry_points": []}')
    assert names(entry_points.installed("zoo", cache)) == [("alpha", "zoo_alpha_plugin", "zoo_alpha", "1.0")]
    assert (elsewhere / "planted.json").read_text() == '{"stamps": [], "entry_points": []}' and len(scans) == 4
