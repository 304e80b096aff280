"""Load httprail's pytest plugin here rather than through its entry point (see pyproject).

``HTTPRAIL_TEST_MONOTONIC_ZERO=1`` makes ``time.monotonic()`` start at zero for the run, as on
a freshly booted machine, so that a test mixing a fake clock with the real one (a deadline on
one compared with the other) fails here rather than only on a young CI box. CI runs the unit
tests a second time under it (see ``.ci/run``). It must act before httprail is imported:
several modules keep a reference to ``time.monotonic`` taken at import.
"""

from __future__ import annotations

import os
import sys
import time

MONOTONIC_ZERO = "HTTPRAIL_TEST_MONOTONIC_ZERO"


def _monotonic_from_zero() -> None:
    """Replace ``time.monotonic`` by the same clock shifted to start at zero now."""
    loaded = sorted(name for name in sys.modules if name.partition(".")[0] == "httprail")
    if loaded:
        raise RuntimeError(
            f"{MONOTONIC_ZERO}=1 needs time.monotonic patched before httprail is imported; "
            f"already imported: {', '.join(loaded)}"
        )
    real = time.monotonic
    offset = real()

    def monotonic() -> float:
        return real() - offset

    time.monotonic = monotonic


if os.environ.get(MONOTONIC_ZERO) == "1":
    _monotonic_from_zero()

pytest_plugins = ("httprail.testing.pytest_plugin",)
