"""Tests of the harness logic of the scripts in ``benchmarks/``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (not a package) as the module ``<name>_bench``."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_bench", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def load_http2_benchmark() -> ModuleType:
    """``benchmarks/http2.py`` (its servers: hypercorn over TLS with a trustme certificate),
    or the test is skipped where those are not installed."""
    import pytest

    pytest.importorskip("hypercorn")
    pytest.importorskip("trustme")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports throughput.py
        return load_benchmark("http2")
