"""The ``httprail`` command line (``pip install 'httprail[cli]'``).

typer and rich are imported only when :func:`main` runs, so ``import httprail.cli`` works
without them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

MISSING_EXTRA = "httprail: the command line needs the cli extra: pip install 'httprail[cli]'"
_EXTRA_MODULES = frozenset({"typer", "rich", "click"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``httprail`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    try:
        from ._app import run
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in _EXTRA_MODULES:
            raise
        print(MISSING_EXTRA, file=sys.stderr)
        return 1
    return run(sys.argv[1:] if argv is None else argv)
