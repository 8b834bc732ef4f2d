"""zoo.output: the one object the CLI prints through."""

from __future__ import annotations

import json

from zoo.output import Output


def test_a_table_is_sized_to_its_cells(capsys) -> None:
    Output().table(["NAME", "SIZE", "KEY"], [["local:/a/very/long/path/model.pth", "1.5 MB", "abc"],
                                            ["r18", "12 B", None]], right=[1])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["NAME                                 SIZE  KEY",
                     "local:/a/very/long/path/model.pth  1.5 MB  abc",
                     "r18                                  12 B  -"]


def test_a_row_shorter_than_the_headers_is_padded_and_trailing_blanks_cut(capsys) -> None:
    Output().table(["MODE", "NOTE"], [["naive"], ["torch", "2.00x faster"]])
    assert capsys.readouterr().out.splitlines() == ["MODE   NOTE", "naive", "torch  2.00x faster"]


def test_json_or_the_human_form_never_both(capsys) -> None:
    out = Output()
    out.result({"a": 1}, as_json=True, human=lambda: out.text("human"))
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    out.result({"a": 1}, as_json=False, human=lambda: out.text("human"))
    assert capsys.readouterr().out == "human\n"
    out.result([1], as_json=False)  # no human form: the JSON document
    assert json.loads(capsys.readouterr().out) == [1]


def test_what_is_said_to_a_person_is_one_line_on_stderr(capsys) -> None:
    out = Output()
    out.warning("plugin x failed:\n  \x1b[31mImportError\x1b[0m: no\x00 module")
    out.error("bad", "usage error")
    out.note("the store is empty")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["zoo: warning: plugin x failed: ImportError: no\\x00 module",
                                         "zoo: usage error: bad", "zoo: the store is empty"]


def test_a_table_without_headers_prints_its_rows_only_and_nothing_when_empty(capsys) -> None:
    Output().table(None, [["resnet18", "classification", "ResNet-18"], ["ssd300_vgg16", "detection", None]])
    assert capsys.readouterr().out.splitlines() == ["resnet18      classification  ResNet-18",
                                                    "ssd300_vgg16  detection       -"]
    Output().table(None, [])
    assert capsys.readouterr().out == ""


def test_progress_is_silent_off_a_terminal(capsys) -> None:
    with Output().progress(True) as report:  # pytest's stderr is no terminal
        assert report is None
    with Output().progress(False) as report:
        assert report is None
    assert capsys.readouterr() == ("", "")
