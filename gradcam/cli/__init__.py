"""Command line: parses arguments, calls the library, prints, and picks exit codes.

The package is the only place that prints: ``explain`` runs a model over inputs (``gradcam``,
``gradcam evaluate``, ``gradcam sanity``), ``methods`` ranks several methods (``gradcam evaluate
--methods``), ``reports`` reads output folders (``gradcam status``, ``atlas``, ``compare``). Imports only
the standard library at module level, so ``gradcam --help`` and ``gradcam --version`` answer without
loading TensorFlow.
"""
from __future__ import annotations

import signal
import sys
from typing import Sequence

from ..arguments import SUBCOMMANDS, build_parser
from ..errors import GradcamError
from .codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from .reports import REPORTS

    if argv and argv[0] in REPORTS:
        return _guarded(lambda: REPORTS[argv[0]](argv[1:]))
    command = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
        args.command = command
    except SystemExit as exc:  # --help, --version, or an argparse error (already printed)
        return int(exc.code or 0)
    if command == "evaluate" and args.methods:
        from .methods import run_methods

        return _guarded(lambda: run_methods(args))
    from .explain import run_command

    return _guarded(lambda: run_command(args))


def _guarded(command) -> int:
    """Run ``command()`` with SIGTERM as an interrupt; a GradcamError is its one line and exit status."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        previous = None
    try:
        return command()
    except GradcamError as exc:
        print(f"gradcam: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gradcam: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame):
    raise KeyboardInterrupt
