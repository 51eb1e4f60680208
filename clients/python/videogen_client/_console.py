"""The ``videogen`` process: the console script's entry point around :func:`videogen_client.cli.main`.

It owns what only a whole process may decide, before anything heavy is imported:

- Ctrl-C (SIGINT) ends the command promptly with exit 130 and the one line ``interrupted``, at any moment:
  during the imports, mid-call, mid-download (the ``.part`` file is closed and stays resumable). Once the
  command's work is done (e.g. after ``saved …``) a Ctrl-C is ignored and its own exit code stands. Should
  the cleanup after an interrupt take longer than a few seconds, or a second Ctrl-C come, the process
  exits at once.
- The process ends with ``os._exit`` once its output is flushed: nothing is left to interpreter shutdown,
  where closing a gRPC channel interrupted mid-call could hang for minutes (the channel's ``__del__``).
- grpc's own log lines (e.g. ``ssl_transport_security.cc`` after a failed TLS handshake) stay off the
  terminal unless ``GRPC_VERBOSITY`` is set: the CLI reports every failure itself.

This module imports nothing of grpc, protobuf or rich (nor does the package's ``__init__``), so the
handler is in place a few milliseconds after the interpreter starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

EXIT_INTERRUPTED = 130
INTERRUPT_GRACE = 5.0
"""Seconds the cleanup after a Ctrl-C may take before the process exits regardless."""


class _State:
    importing = True  # still loading the CLI (grpc, protobuf, rich): nothing to clean up yet
    finished = False  # the command's work is done: a Ctrl-C no longer changes the outcome
    interrupted = False


_state = _State()


def command_finished() -> None:
    """The CLI calls this once the command's work is done (its output written, its exit code known)."""
    _state.finished = True


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _exit(code: int) -> NoReturn:
    _flush()
    os._exit(code)


def _exit_interrupted() -> NoReturn:
    """Ends the process now, with the one line an interrupt prints."""
    _state.finished = True
    _flush()
    with contextlib.suppress(OSError):
        os.write(2, b"interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _state.finished:
        return
    if _state.importing:
        # Nothing to clean up yet, and an exception raised inside a C extension's module initialisation
        # (grpc's Cython module) does not arrive as KeyboardInterrupt but as an ImportError-like failure
        # with a traceback: end here instead.
        _exit_interrupted()
    if _state.interrupted:  # a second Ctrl-C while cleaning up: stop waiting
        _exit_interrupted()
    _state.interrupted = True
    watchdog = threading.Timer(INTERRUPT_GRACE, _exit_interrupted)
    watchdog.daemon = True
    watchdog.start()
    raise KeyboardInterrupt


def main() -> NoReturn:
    signal.signal(signal.SIGINT, _on_sigint)
    # Before grpc is imported (it reads the variable once); a value the user set wins.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        from .cli import main as cli_main

        _state.importing = False
        code = cli_main()
    except KeyboardInterrupt:  # before the CLI could catch it (e.g. during the imports)
        _exit_interrupted()
    except SystemExit as exc:  # argparse: --help and usage errors
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
            code = 1
        else:
            code = exc.code or 0
    _state.finished = True
    _exit(code)
