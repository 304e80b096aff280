"""``async with`` for anything with an ``aclose()``: entering returns it, leaving closes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self

__all__ = ["ClosesOnExit", "close_all"]


async def close_all(closers: Iterable[Callable[[], Awaitable[object]]], what: str) -> None:
    """Await every closer, even after one raised; then raise the one error, or an
    ``ExceptionGroup("closing <what> failed", ...)`` of several."""
    errors: list[Exception] = []
    for close in closers:
        try:
            await close()
        except Exception as exc:  # noqa: BLE001 - close the others, then report
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup(f"closing {what} failed", errors)


class ClosesOnExit:
    """Mixin: ``async with obj:`` gives ``obj`` and awaits ``obj.aclose()`` on the way out."""

    __slots__ = ()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
