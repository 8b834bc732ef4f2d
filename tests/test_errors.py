"""One error voice (zoo.errors): one way to make a message one line, one repair hint, and
library warnings as ``ZooWarning`` (the CLI shows each as one ``zoo: warning:`` line)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

from zoo.errors import ExportError, ZooWarning, one_line, repair_hint


def test_one_line_of_an_exception_or_a_text() -> None:
    coloured = RuntimeError("\n  \x1b[1;31mfirst\x1b[0m line\x00\n  second line")
    assert one_line(coloured) == "first line\\x00"  # the first line only, plain
    assert one_line(coloured, kind=True) == "RuntimeError: first line\\x00"
    assert one_line(KeyError()) == "KeyError" and one_line(KeyError(), kind=True) == "KeyError"
    assert one_line(ExportError("x" * 500), limit=300) == "x" * 300
    assert one_line("a\nb\t\tc\x07") == "a b c\\x07"  # a text: all of it, on one line


def test_the_repair_hint_names_both_commands_that_work() -> None:
    key = "0" * 20
    assert repair_hint(key) == f"make it again with `zoo pull --force {key}` or remove it with `zoo rm {key}`"


def test_no_module_keeps_its_own_one_liner_or_writes_warnings_to_stderr() -> None:
    """The library says what went wrong through zoo.errors and warnings.warn; only the CLI (and its
    Output) writes to stderr."""
    for path in sorted((REPO / "zoo").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert not names & {"_one_line", "one_line", "_first_line", "_first"} or path.name == "errors.py", path
        if path.name in ("cli.py", "output.py"):
            continue
        text = path.read_text()
        for line in text.splitlines():
            if "sys.stderr.write" in line:
                assert "test pause" in line or "log.text" in line, f"{Path(path).name}: {line.strip()}"


def test_a_library_warning_is_a_zoo_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo import remote

    with pytest.warns(ZooWarning, match="remote cache file:///x is off"):
        remote._say_off("file:///x")
