"""Giving a thread a lasting Python thread state: once per thread, never the asking thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from httprail.terminals import _reqwest_thread as module


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    kept: set[int] = set()
    monkeypatch.setattr(module, "_kept", kept)
    monkeypatch.setattr(module, "_tried", [False])
    return kept


def on_thread(function: Any) -> int:
    """Run ``function`` on a new thread; that thread's ident."""
    idents: list[int] = []

    def run() -> None:
        idents.append(threading.get_ident())
        function()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return idents[0]


def test_a_thread_is_given_its_state_once_however_often_it_asks(fresh: set[int]) -> None:
    """The first call on a thread calls ``PyGILState_Ensure``; later ones on it do not."""
    calls: list[int] = []

    def ensure() -> int:
        calls.append(threading.get_ident())
        return 0

    def three_times() -> None:
        for _ in range(3):
            module.keep_this_thread(asking=-1, ensure=ensure)

    ident = on_thread(three_times)
    assert calls == [ident]
    assert module.kept_threads() == frozenset({ident})


def test_the_asking_thread_and_a_missing_c_api_are_left_alone(fresh: set[int]) -> None:
    """The thread that sent the throwaway request has a state of its own; without the C API
    (not CPython) nothing is called."""
    calls: list[int] = []

    def ensure() -> int:
        calls.append(1)
        return 0

    module.keep_this_thread(asking=threading.get_ident(), ensure=ensure)
    on_thread(lambda: module.keep_this_thread(asking=-1, ensure=None))
    assert calls == []
    assert module.kept_threads() == frozenset()


def test_the_runtime_thread_is_asked_once_per_process(
    fresh: set[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second call sends no second throwaway request; a client that cannot be built is only
    a saving missed (the answer says nothing was kept)."""
    built: list[int] = []

    class Unbuildable:
        def SyncClientBuilder(self) -> object:
            built.append(1)
            raise RuntimeError("no client today")

    proxy = type("P", (), {"ProxyBuilder": type("B", (), {"custom": staticmethod(lambda f: f)})})
    assert module.keep_runtime_thread_state(Unbuildable(), proxy) is False
    assert module.keep_runtime_thread_state(Unbuildable(), proxy) is False
    assert built == [1]
