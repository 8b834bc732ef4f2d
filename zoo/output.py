"""How the CLI speaks, in one place: a command's result on stdout (one JSON document with
``--json``, else lines for a person, tables sized to their cells), and notes, warnings and
errors on stderr, one line each with the ``zoo:`` prefix.

Stdout holds only what scripts read; everything said to a person goes to stderr. The streams
are looked up at each write, so a caller (or a test) that swaps ``sys.stdout`` is followed.
Cheap to import: the CLI's start-up pays for it on every command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import one_line


class Output:
    """The one object the CLI prints through."""

    prefix = "zoo"

    # -- stdout: results ---------------------------------------------------------------------
    def result(self, data: Any, as_json: bool, human: Callable[[], Any] | None = None) -> None:
        """A command's result: ``data`` as one JSON document with ``--json`` (or when there is
        no human form), else ``human()``, which prints through this object."""
        if as_json or human is None:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        else:
            human()

    def json_line(self, data: Any) -> None:
        """One compact JSON document on its own line, flushed (a stream of results, as bulk's)."""
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        sys.stdout.flush()

    def text(self, line: str = "") -> None:
        sys.stdout.write(line + "\n")

    def table(self, headers: Sequence[str] | None, rows: Iterable[Sequence[Any]], *,
              right: Iterable[int] = ()) -> None:
        """Columns as wide as their widest cell (long ``local:`` names and ``sha256:`` tags fit),
        two spaces apart; ``right`` holds the indices of right-aligned (numeric) columns. A cell
        is shown with ``str``; ``None`` as ``-``. The last column is not padded. ``headers``
        None: rows only (no rows, no output)."""
        lines = [[str(h) for h in headers]] if headers is not None else []
        lines += [["-" if cell is None else str(cell) for cell in row] for row in rows]
        if not lines:
            return
        columns = max(len(line) for line in lines)
        lines = [line + [""] * (columns - len(line)) for line in lines]
        widths = [max(len(line[i]) for line in lines) for i in range(columns)]
        aligned = set(right)
        for line in lines:
            cells = [cell.rjust(w) if i in aligned else cell.ljust(w)
                     for i, (cell, w) in enumerate(zip(line, widths, strict=True))]
            self.text("  ".join(cells).rstrip())

    # -- stderr: one line each ---------------------------------------------------------------
    def note(self, text: str) -> None:
        """One line for a person; stdout stays what scripts read."""
        self._say(None, text)

    def warning(self, text: str) -> None:
        self._say("warning", text)

    def error(self, text: str, kind: str = "error") -> None:
        """``zoo: error: ...`` (or another ``kind``: ``usage error``, ``internal error``)."""
        self._say(kind, text)

    @contextmanager
    def progress(self, enabled: bool) -> Iterator[Callable[[str], None] | None]:
        """A spinner on stderr while long steps run, only on a terminal: yields the function
        that names the step now running (the ``progress`` callback ``zoo.api`` takes), or None."""
        if not enabled or not sys.stderr.isatty():
            yield None
            return
        from rich.console import Console  # only on a terminal: rich costs start-up time

        with Console(stderr=True).status("working...") as status:
            yield lambda message: status.update(message)

    def _say(self, kind: str | None, text: str) -> None:
        label = f"{self.prefix}: {kind}: " if kind else f"{self.prefix}: "
        sys.stderr.write(label + one_line(text) + "\n")


out = Output()
