"""The railway types: ``Result``/``Success``/``Failure`` (from ``returns``) and stage signatures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias

import httpx
from returns.result import Failure, Result, Success

from ._errors import RequestError

__all__ = ["Failure", "Next", "Outcome", "Result", "Success"]

Outcome: TypeAlias = Result[httpx.Response, RequestError]
"""What every stage returns: the response, or the typed reason there is none."""

Next: TypeAlias = Callable[[httpx.Request], Awaitable[Outcome]]
"""The rest of the chain, as seen by a middleware stage."""
