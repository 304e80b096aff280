"""A Python thread state that pyreqwest's runtime thread keeps, instead of one per request.

pyreqwest hands every result to the event loop from its Tokio runtime thread, taking the GIL
through PyO3 (``PyGILState_Ensure`` ... ``PyGILState_Release``). A thread with no thread state
of its own gets a new one from each ``PyGILState_Ensure``, which the matching release deletes
again: per request, a thread state built and torn down, and the 16 KiB frame stack of the
Python code it runs (``call_soon_threadsafe``) mapped, faulted in and unmapped (``mmap``,
``munmap``, one page fault; counted with ``perf probe`` and ``strace -c``: one of each per
request, raw pyreqwest and the terminal alike). A thread that already holds a thread state
gets that one back.

So the runtime thread is given one for good: on that thread, ``PyGILState_Ensure`` is called
once more than it is released, and the count PyO3's release lowers never reaches zero. To run
code there, a throwaway blocking pyreqwest client is given a custom proxy function (reqwest
calls it on the runtime thread before it connects) and sends one request to port 0 of
127.0.0.1, where no server can listen: the connect is refused at once, nothing is sent.

At exit the interpreter deletes the kept state with every other thread's; a runtime thread
that asks for the GIL after that is stopped by CPython before it touches the state (as any
daemon thread is). CPython only (PyPy has no ``ctypes.pythonapi``); elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .._log import get_logger

__all__ = ["keep_runtime_thread_state", "kept_threads"]

_log = get_logger("httprail.terminals")

# No server can listen on port 0: the connect fails at once, on the loopback interface.
_NOWHERE = "http://127.0.0.1:0/"
_GIVE_UP = timedelta(seconds=1)  # bounds the throwaway request however the connect goes

_kept: set[int] = set()  # idents of the threads given a lasting thread state
_tried: list[bool] = [False]


def _gil_ensure() -> Callable[[], int] | None:
    """CPython's ``PyGILState_Ensure``, or ``None`` where there is no such C API."""
    if sys.implementation.name != "cpython":  # pragma: no cover - CPython runs the tests
        return None
    api = getattr(ctypes, "pythonapi", None)
    if api is None:  # pragma: no cover - CPython always has it
        return None
    ensure: Any = api.PyGILState_Ensure
    ensure.restype = ctypes.c_int
    ensure.argtypes = ()
    return ensure  # type: ignore[no-any-return]


_ENSURE = _gil_ensure()


def kept_threads() -> frozenset[int]:
    """The idents of the threads given a lasting thread state so far."""
    return frozenset(_kept)


def keep_this_thread(asking: int, ensure: Callable[[], int] | None = _ENSURE) -> None:
    """Give the calling thread a thread state for good, once; not ``asking`` (the thread that
    sent the throwaway request: it has its own already), and not where there is no C API."""
    ident = threading.get_ident()
    if ensure is None or ident == asking or ident in _kept:
        return
    _kept.add(ident)
    ensure()  # never released: the thread keeps the state it runs on now


def keep_runtime_thread_state(client_module: Any, proxy_module: Any) -> bool:
    """Give pyreqwest's runtime thread a lasting thread state (once per process); whether a
    thread has one. ``client_module``/``proxy_module``: ``pyreqwest.client``/``.proxy``."""
    if _tried[0] or _ENSURE is None:
        return bool(_kept)
    _tried[0] = True
    asking = threading.get_ident()

    def on_runtime_thread(_url: object) -> None:  # pragma: no cover - on the runtime thread
        keep_this_thread(asking)  # (coverage does not trace it); the answer: no proxy

    try:
        proxy = proxy_module.ProxyBuilder.custom(on_runtime_thread)
        builder = (
            client_module.SyncClientBuilder()
            .no_proxy()
            .proxy(proxy)
            .http1_only()
            # this client never speaks TLS: without it, building loads the system's root
            # certificates (10-18 ms here) for nothing
            .danger_accept_invalid_certs(True)
            .connect_timeout(_GIVE_UP)
            .timeout(_GIVE_UP)
        )
        with builder.build() as client:
            client.get(_NOWHERE).build().send()
    except Exception:  # noqa: BLE001 - refused, as it should be; anything else too
        pass
    if not _kept:  # a saving missed, nothing more: the terminal works the same
        _log.debug("httprail.reqwest_thread_state_not_kept")
    return bool(_kept)


def _forget() -> None:  # pragma: no cover - runs in a forked child
    """In a forked child: no runtime thread was given anything yet."""
    _kept.clear()
    _tried[0] = False


os.register_at_fork(after_in_child=_forget)
