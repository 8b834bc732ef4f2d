"""The ``zoo`` command's entry point: Ctrl-C is handled before anything heavy is imported.

``zoo run`` spends its first tenths of a second importing typer, numpy and ONNX Runtime. A
Ctrl-C then lands inside an import: as a ``KeyboardInterrupt`` escaping before ``zoo.cli``'s
handler exists (a Python traceback), or turned into an ``ImportError`` by the C extension being
initialised (ONNX Runtime importing numpy: "import numpy failed"). So this module, which imports
nothing but the standard library, installs the SIGINT handler first and then imports the CLI;
any failure after a SIGINT arrived, or whose cause/context chain holds a ``KeyboardInterrupt``,
is an interrupt: ``zoo: interrupted`` and exit 130, one line.
"""

from __future__ import annotations

import io
import os
import sys

# The C module: ``signal`` builds its enums first, milliseconds a Ctrl-C could land in.
try:
    import _signal as signal
except ImportError:  # not CPython
    import signal  # type: ignore[no-redef]

INTERRUPTED = 130
_received = False
_stderr: io.TextIOBase | None = None  # the real stderr, once a SIGINT has muted sys.stderr


def _on_sigint(signum: int, frame: object) -> None:
    global _received, _stderr
    _received = True
    if _stderr is None and os.environ.get("ZOO_DEBUG", "").strip().lower() not in ("1", "true", "yes", "on"):
        # From here on the one line is all zoo says: a C extension whose initialisation the
        # KeyboardInterrupt broke prints that traceback itself (numpy imported by ONNX Runtime).
        _stderr, sys.stderr = sys.stderr, io.StringIO()
    raise KeyboardInterrupt


def install() -> None:
    """Note every SIGINT, then raise ``KeyboardInterrupt`` as Python does. A SIGINT that was
    ignored when zoo started (``nohup``, a background job) stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def interrupted(exc: BaseException | None = None) -> bool:
    """Whether the user interrupted zoo: a SIGINT arrived, or ``exc``'s cause/context chain holds
    a ``KeyboardInterrupt`` (an import that a Ctrl-C broke)."""
    seen = 0
    while exc is not None and seen < 50:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return _received


def say_interrupted() -> None:
    """``zoo: interrupted`` and exit 130 (``SystemExit``)."""
    stderr = _stderr if _stderr is not None else sys.stderr
    try:
        stderr.write("zoo: interrupted\n")
        stderr.flush()
    except (OSError, ValueError):  # stderr closed: the exit code still says it
        pass
    sys.exit(INTERRUPTED)


def main() -> None:
    """The ``zoo`` console script (and ``python -m zoo``)."""
    install()
    try:
        _run()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    # The command has finished and said so: a Ctrl-C during the interpreter's shutdown (ONNX
    # Runtime's teardown takes a moment) must not turn its exit code into a signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _received:
        _exit_now(code)
    sys.exit(code)


def _run() -> None:
    try:
        from .cli import main as run  # typer, the API, the plugin host: the heavy part

        run()
    except SystemExit:
        raise
    except BaseException as exc:
        if interrupted(exc):
            say_interrupted()
        raise


def _exit_now(code: object) -> None:
    """Exit with ``code`` after the atexit handlers, skipping the interpreter's finalisation.

    A KeyboardInterrupt raised inside ``exec`` of a string (dataclasses and namedtuples make
    their methods so) leaves CPython 3.11 marked as killed by SIGINT, caught or not: a normal
    exit would then end in the signal (status -2) instead of 130. The exceptions have unwound
    (temp dirs removed) before this runs.
    """
    import atexit

    try:
        atexit._run_exitfuncs()
    except BaseException:  # an exit handler failing must not change the exit code
        pass
    for stream in (sys.stdout, _stderr or sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        (_stderr or sys.stderr).write(f"{code}\n")
        status = 1
    os._exit(status)
