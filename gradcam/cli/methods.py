"""``gradcam evaluate --methods a,b,...``: each method's evaluation into its own folder, then the table
that ranks them metric by metric."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

from ..errors import UsageError
from ..names import METHOD_NAMES, did_you_mean
from .codes import EXIT_INTERRUPTED, EXIT_OK


def run_methods(args: argparse.Namespace) -> int:
    """Evaluate every method of ``args.methods`` on the inputs into OUTPUT/METHOD/ (the baselines with the
    first only: they do not depend on the method), then write OUTPUT/ranking.csv, .png and .json."""
    from .explain import run_command

    methods = list(dict.fromkeys(args.methods))
    for method in methods:
        if method not in METHOD_NAMES:
            raise UsageError(f"--methods: unknown method {method!r}{did_you_mean(method, METHOD_NAMES, list_all=True)}")
    if len(methods) < 2:
        raise UsageError("--methods ranks two or more methods (for one, use --method)")
    output = Path(args.output)
    folders, worst, evaluation = {}, EXIT_OK, None
    for i, method in enumerate(methods):
        print(f"gradcam: method {i + 1} of {len(methods)}: {method}")
        one = copy.copy(args)
        one.method, one.methods, one.output = method, None, str(output / method)
        one.baselines = args.baselines and i == 0
        code = run_command(one)
        if code == EXIT_INTERRUPTED:  # Ctrl-C or SIGTERM in one method's run stops them all: no table
            return code
        worst = max(worst, code)
        folders[method] = output / method
        evaluation = evaluation or getattr(one, "evaluation", None)  # as run_command recorded it
    from ..metrics.ranking import rank_methods

    ranking = rank_methods(folders, evaluation)  # the same images under these settings, whatever else is there
    paths = ranking.write(output)
    print("\n".join(ranking.lines()))
    print(f"gradcam: ranking in {', '.join(str(p) for p in paths)}")
    return worst
