"""The examples of the guides run, and print what the guides say they print.

In the pages listed in ``PAGES``, a ```` ```python ```` block preceded by ``<!-- run -->`` is
executed as a script (``__name__ == "__main__"``). When the next fenced block is preceded by
``<!-- output -->``, the script's standard output must equal that block. Every other python
block in those pages must say why it is not run, with ``<!-- not run: reason -->``, so that no
example is skipped by accident.

The examples need no network: they start their own ``ChaosServer`` or use a ``MockTerminal``.
Log lines are dropped (the pages show only what the examples print), and environment variables
set by an example are undone after it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = (
    "quickstart.md",
    "railway.md",
    "plugins/timeout.md",
    "plugins/retry.md",
    "plugins/auth.md",
    "plugins/redirects.md",
    "plugins/logging.md",
    "plugins/metrics.md",
    "plugins/overview.md",
    "sync.md",
    "services.md",
    "observability.md",
    "fastapi.md",
)

MARKER = re.compile(r"^<!--\s*(run|output|not run:.+?)\s*-->$")
FENCE = re.compile(r"^(`{3,})\s*([\w-]*)")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: str
    line: int  # the line of the opening fence, 1-based
    language: str
    marker: str | None  # the HTML comment just before the block, if any
    code: str


@dataclass(frozen=True)
class Example:
    """A block marked ``run``, with the output the page promises (if it shows one)."""

    block: Block
    output: str | None


def blocks(page: str) -> list[Block]:
    """The fenced blocks of ``docs/<page>``, each with the marker line just before it."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    marker: str | None = None
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        fence = FENCE.match(stripped)
        if fence is None:
            if stripped:
                comment = MARKER.match(stripped)
                marker = comment[1] if comment else None
            index += 1
            continue
        start = index
        index += 1
        while index < len(lines) and lines[index].strip() != fence[1]:
            index += 1
        code = textwrap.dedent("\n".join(lines[start + 1 : index]))
        found.append(Block(page, start + 1, fence[2], marker, code))
        marker = None
        index += 1
    return found


def examples() -> list[Example]:
    """Every block marked ``run`` in ``PAGES``."""
    result = []
    for page in PAGES:
        page_blocks = blocks(page)
        for position, block in enumerate(page_blocks):
            if block.marker != "run":
                continue
            following = page_blocks[position + 1] if position + 1 < len(page_blocks) else None
            output = following.code if following and following.marker == "output" else None
            result.append(Example(block, output))
    return result


@pytest.fixture
def isolated() -> Iterator[None]:
    """Drop log lines during the example; restore the environment and structlog after it."""
    environ = dict(os.environ)
    config = structlog.get_config()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        structlog.configure(**config)


@pytest.mark.parametrize(
    "example", [pytest.param(e, id=f"{e.block.page}:{e.block.line}") for e in examples()]
)
@pytest.mark.usefixtures("isolated")
def test_example_runs_and_prints_what_the_page_shows(example: Example) -> None:
    """A runnable example runs without error, and prints its output block exactly."""
    block = example.block
    # Padded so that a traceback points at the page's own line numbers.
    source = "\n" * block.line + block.code
    code = compile(source, str(DOCS / block.page), "exec")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {"__name__": "__main__"})
    if example.output is not None:
        got = [line.rstrip() for line in printed.getvalue().strip().splitlines()]
        assert got == [line.rstrip() for line in example.output.strip().splitlines()]


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_is_run_or_says_why_not(page: str) -> None:
    """No python example is skipped silently, and each page has examples that run."""
    python = [b for b in blocks(page) if b.language == "python"]
    unmarked = [b.line for b in python if b.marker is None or b.marker == "output"]
    assert unmarked == [], f"docs/{page}: python blocks without a marker at lines {unmarked}"
    assert any(b.marker == "run" for b in python)


@pytest.mark.parametrize("page", PAGES)
def test_every_output_block_follows_a_runnable_example(page: str) -> None:
    """An ``<!-- output -->`` block is checked, so it must come right after a run block."""
    page_blocks = blocks(page)
    for position, block in enumerate(page_blocks):
        if block.marker == "output":
            assert position > 0, f"docs/{page}:{block.line}: output block comes first"
            assert page_blocks[position - 1].marker == "run", (
                f"docs/{page}:{block.line}: output block does not follow a runnable example"
            )
