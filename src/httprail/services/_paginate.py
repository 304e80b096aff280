"""Pagination: the items of every page as an async iterator of Results.

Four styles: :class:`PageNumber` (``?page=1,2,...``), :class:`Offset` (``?offset=0,50,...``),
:class:`Cursor` (the next cursor read from the body) and :class:`LinkHeader` (the
``Link: <...>; rel="next"`` header). Every page goes through the same client, so through the
same stack (retry, breaker, auth...). Iteration ends when the service says there is nothing
more, after ``max_items`` items, or with one ``Failure``: yielded once, then the iterator stops
(the generators' rule). A service that keeps announcing pages past ``max_pages`` (100 by
default) ends with ``Failure(PaginationError)`` rather than silently cut short.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, cast, get_args, get_origin, overload

import httpx
from pydantic import TypeAdapter, ValidationError
from returns.result import Failure, Result, Success

from .._args import need
from .._decode import decode_json, model_name, model_problem, validation_problems
from .._errors import ConfigError, PaginationError, RequestError, ResponseValidationError
from ._links import next_link
from ._typed import _bind, _options, _Route, _Slot, _wrapped

if TYPE_CHECKING:
    from .._client import AsyncClient, RequestOptions

__all__ = [
    "Cursor",
    "LinkHeader",
    "Offset",
    "PageNumber",
    "PageStyle",
    "collect",
    "paginate",
    "paginated",
]

T = TypeVar("T")

DEFAULT_MAX_PAGES = 100
_MISSING: Any = object()


def _positive(owner: str, low: int = 1, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")


def _names(owner: str, *, optional: Collection[str] = (), **values: object) -> None:
    """Each value a non-empty string (a query parameter or a dotted path in the body); those
    named in ``optional`` may be ``None``."""
    for name, value in values.items():
        if value is None and name in optional:
            continue
        if not isinstance(value, str) or not value:
            what = "a non-empty string or None" if name in optional else "a non-empty string"
            raise ConfigError(f"{owner}: {name} must be {what}, got {value!r}")


@dataclass(frozen=True, slots=True)
class PageNumber:
    """``?page=1``, ``2``, ... with ``?limit=size``; ends on an empty page, or a short one
    when ``size_param`` is sent. ``items``: where the list is in the body (dotted path),
    ``None`` when the body is the list."""

    param: str = "page"
    size_param: str | None = "limit"
    size: int = 50
    start: int = 1
    items: str | None = None

    def __post_init__(self) -> None:
        _positive("PageNumber", size=self.size)
        _positive("PageNumber", 0, start=self.start)
        _names("PageNumber", optional=("size_param", "items"), param=self.param,
               size_param=self.size_param, items=self.items)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Offset:
    """``?offset=0``, ``50``, ... (advanced by the items received) with ``?limit=size``;
    ends on an empty page, or a short one when ``size_param`` is sent."""

    param: str = "offset"
    size_param: str | None = "limit"
    size: int = 50
    start: int = 0
    items: str | None = None

    def __post_init__(self) -> None:
        _positive("Offset", size=self.size)
        _positive("Offset", 0, start=self.start)
        _names("Offset", optional=("size_param", "items"), param=self.param,
               size_param=self.size_param, items=self.items)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cursor:
    """The next page's cursor is read from the body at ``next`` (a dotted path such as
    ``"meta.next_cursor"``) and sent as ``?cursor=...``; ends when it is missing, null or
    empty. The same cursor twice is a loop: ``Failure(PaginationError)``."""

    next: str = "next_cursor"
    param: str = "cursor"
    items: str | None = "data"

    def __post_init__(self) -> None:
        _names("Cursor", optional=("items",), next=self.next, param=self.param, items=self.items)


@dataclass(frozen=True, slots=True)
class LinkHeader:
    """The next page is the ``Link`` header's ``rel="next"`` target (RFC 8288), resolved
    against the request's URL; ends when there is none. A target on another origin, or one
    already visited, is ``Failure(PaginationError)``."""

    items: str | None = None

    def __post_init__(self) -> None:
        _names("LinkHeader", optional=("items",), items=self.items)


PageStyle = PageNumber | Offset | Cursor | LinkHeader


def _check_style(owner: str, style: object) -> None:
    need(isinstance(style, PageStyle), owner, "style",
         "PageNumber(), Offset(), Cursor(...) or LinkHeader()", style)  # fmt: skip


@lru_cache(maxsize=256)
def _list_of(item: Any) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[item])


def _at(body: Any, path: str | None) -> Any:
    if path is None:
        return body
    for key in path.split("."):
        if not isinstance(body, Mapping) or key not in body:
            return _MISSING
        body = body[key]
    return body


def _items(
    body: Any, style: PageStyle, item: Any, request: httpx.Request | None
) -> Result[list[Any], RequestError]:
    found = _at(body, style.items)
    prefix: tuple[str | int, ...] = tuple(style.items.split(".")) if style.items else ()
    what = f"a page of {model_name(item) if item is not None else 'items'}"
    if found is _MISSING or not isinstance(found, list):
        kind = "missing" if found is _MISSING else "list_type"
        return Failure(
            ResponseValidationError(what, [{"loc": prefix, "type": kind}], request=request)
        )
    if item is None:
        return Success(found)
    try:
        return Success(_list_of(item).validate_python(found))
    except ValidationError as exc:
        problems = validation_problems(exc, prefix)
        return Failure(ResponseValidationError(what, problems, request=request))


@overload
def paginate(
    client: AsyncClient,
    url: httpx.URL | str,
    *,
    style: PageStyle,
    item: type[T],
    method: str = ...,
    max_pages: int = ...,
    max_items: int | None = ...,
    **options: Unpack[RequestOptions],
) -> AsyncIterator[Result[T, RequestError]]: ...
@overload
def paginate(
    client: AsyncClient,
    url: httpx.URL | str,
    *,
    style: PageStyle,
    item: None = None,
    method: str = ...,
    max_pages: int = ...,
    max_items: int | None = ...,
    **options: Unpack[RequestOptions],
) -> AsyncIterator[Result[Any, RequestError]]: ...
def paginate(
    client: AsyncClient,
    url: httpx.URL | str,
    *,
    style: PageStyle,
    item: Any = None,
    method: str = "GET",
    max_pages: int = DEFAULT_MAX_PAGES,
    max_items: int | None = None,
    **options: Unpack[RequestOptions],
) -> AsyncIterator[Result[Any, RequestError]]:
    """Every item of every page of ``url``, each as ``Success(item)``, validated as ``item``
    (a pydantic model or any type; ``None``: as decoded).

    Args:
        client: sends every page (its base URL, stack and settings).
        url: the first page (relative to the client's base URL, as any call).
        style: how pages follow each other: :class:`PageNumber`, :class:`Offset`,
            :class:`Cursor` or :class:`LinkHeader`.
        item: the type of one item.
        method: the HTTP method of every page.
        max_pages: the most pages read; a service announcing more ends the iteration with
            ``Failure(PaginationError)``.
        max_items: stop quietly after this many items (``None``: no limit but ``max_pages``).
        options: client options for every page (``params``, ``headers``, ``timeout``, ...).

    A failed page (any ``RequestError``, a body that is not JSON, items that do not fit
    ``item``: ``ResponseValidationError``) is yielded as a ``Failure`` and ends the iteration.
    """
    _positive("paginate", max_pages=max_pages)
    if max_items is not None:
        _positive("paginate", max_items=max_items)
    _check_style("paginate", style)
    if item is not None:
        problem = model_problem(item)
        if problem is not None:
            raise ConfigError(f"paginate(item=...): {problem}")
    return _pages(client, url, style, item, method, max_pages, max_items, options)


async def _pages(
    client: AsyncClient,
    url: httpx.URL | str,
    style: PageStyle,
    item: Any,
    method: str,
    max_pages: int,
    max_items: int | None,
    options: Mapping[str, Any],
) -> AsyncIterator[Result[Any, RequestError]]:
    extra = dict(options)
    params = dict(extra.pop("params", None) or {})
    position = style.start if isinstance(style, PageNumber | Offset) else None
    cursor: Any = None
    target: httpx.URL | str = url
    seen: set[str] = set()
    pages = yielded = 0
    while True:
        query = dict(params)
        if isinstance(style, PageNumber | Offset):
            query[style.param] = position
            if style.size_param is not None:
                query[style.size_param] = style.size
        elif isinstance(style, Cursor) and cursor is not None:
            query[style.param] = cursor
        if isinstance(style, LinkHeader) and pages:
            outcome = await client.request(method, target, **extra)  # the link has the query
        else:
            outcome = await client.request(method, target, params=query, **extra)
        pages += 1
        if isinstance(outcome, Failure):
            yield outcome
            return
        response = outcome.unwrap()
        request = response.request
        decoded = decode_json(response)
        found = (
            _items(decoded.unwrap(), style, item, request)
            if isinstance(decoded, Success)
            else decoded
        )
        if isinstance(found, Failure):
            yield found
            return
        items = found.unwrap()
        for value in items:
            yield Success(value)
            yielded += 1
            if max_items is not None and yielded >= max_items:
                return
        following: Result[Any, RequestError] | None
        if isinstance(style, PageNumber | Offset):
            short = style.size_param is not None and len(items) < style.size
            following = None if not items or short else Success(None)
            position = (position or 0) + (1 if isinstance(style, PageNumber) else len(items))
        elif isinstance(style, Cursor):
            following = _next_cursor(decoded.unwrap(), style, seen, request)
            cursor = following.unwrap() if isinstance(following, Success) else None
        else:
            seen.add(str(request.url))
            following = next_link(response.headers.get_list("link"), request.url, request)
            if isinstance(following, Success) and str(following.unwrap()) in seen:
                following = Failure(_loop("link", request))
            target = following.unwrap() if isinstance(following, Success) else target
        if following is None:
            return
        if isinstance(following, Failure):
            yield following
            return
        if pages >= max_pages:
            yield Failure(
                PaginationError(
                    f"stopped after max_pages={max_pages} pages; the service announces more "
                    "(raise max_pages to read further)",
                    request=request,
                )
            )
            return


def _next_cursor(
    body: Any, style: Cursor, seen: set[str], request: httpx.Request
) -> Result[Any, RequestError] | None:
    value = _at(body, style.next)
    if value is _MISSING or value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problem = {"loc": tuple(style.next.split(".")), "type": "cursor_type"}
        return Failure(ResponseValidationError("a page's next cursor", [problem], request=request))
    key = json.dumps(value)
    if key in seen:
        return Failure(_loop("cursor", request))
    seen.add(key)
    return Success(value)


def _loop(what: str, request: httpx.Request) -> PaginationError:
    return PaginationError(
        f"the service gave the same next {what} twice: paging would loop, stopped",
        request=request,
    )


async def collect(pages: AsyncIterator[Result[T, RequestError]]) -> Result[list[T], RequestError]:
    """Every item of ``pages`` as one list, or the Failure that ended them (items before it
    are dropped: iterate yourself to keep them)."""
    found: list[T] = []
    async for outcome in pages:
        if isinstance(outcome, Failure):
            close = getattr(pages, "aclose", None)
            if close is not None:
                await close()
            return Failure(outcome.failure())
        found.append(outcome.unwrap())
    return Success(found)


P = TypeVar("P", bound=Callable[..., AsyncIterator[Result[Any, Any]]])


class _PagedSlot(_Slot):
    """A declared paginated method: returns ``AsyncIterator[Result[T, E]]``, T per item."""

    def _response(self, annotation: Any) -> Any:
        origin = get_origin(annotation)
        args = get_args(annotation)
        if not (isinstance(origin, type) and issubclass(origin, AsyncIterable) and args):
            raise ConfigError(
                f"{self.where}: the return annotation must be "
                f"AsyncIterator[Result[Item, RequestError]], got {model_name(annotation)}"
            )
        return super()._response(args[0])


async def _once(failure: Result[Any, RequestError]) -> AsyncIterator[Result[Any, RequestError]]:
    yield failure


def paginated(
    path: str,
    *,
    style: PageStyle,
    method: str = "GET",
    max_pages: int = DEFAULT_MAX_PAGES,
    max_items: int | None = None,
    **options: Unpack[RequestOptions],
) -> Callable[[P], P]:
    """Declare a paginated endpoint on a :class:`ServiceClient` method (a plain ``def``)
    returning ``AsyncIterator[Result[Item, RequestError]]``: parameters travel as with
    :func:`~httprail.services.get`, pages follow ``style`` as in :func:`paginate`."""
    _positive("paginated", max_pages=max_pages)
    if max_items is not None:
        _positive("paginated", max_items=max_items)
    _check_style("paginated", style)

    def decorate(func: P) -> P:
        slot = _PagedSlot(func, _Route.parse(method, path, func.__qualname__), options)

        def call(*args: Any, **kwargs: Any) -> AsyncIterator[Result[Any, RequestError]]:
            arguments, extra = slot.arguments(args, kwargs)
            bound = _bind(slot.route, slot.params, arguments, slot.where)
            if isinstance(bound, Failure):
                return _once(bound)
            sent = _options(bound.unwrap(), slot.options, extra)
            return _pages(
                arguments["self"].client,
                bound.unwrap().path,
                style,
                slot.response,
                slot.route.method,
                max_pages,
                max_items,
                sent,
            )

        return cast("P", _wrapped(call, func, slot))

    return decorate
