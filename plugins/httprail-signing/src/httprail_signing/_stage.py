"""``HmacSigning``: sign every attempt, and ``SigningError``: why a request could not be signed.

```
httprail.RequestError
└── httprail.InvalidRequestError
    └── SigningError           the request cannot be signed as given; it was not sent
```
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import httpx
from httprail import (
    Failure,
    InvalidRequestError,
    RequestError,
    RequestResponsePlugin,
    Result,
    Success,
)

from ._canonical import (
    CONTENT_SHA256_HEADER,
    TIMESTAMP_HEADER,
    Algorithm,
    body_sha256,
    combine,
    format_signature,
    hmac_digest,
    signing_string,
)
from ._options import (
    check_algorithm,
    check_clock,
    check_header,
    check_key_id,
    check_secret,
    check_signed_headers,
)

__all__ = ["HmacSigning", "SigningError"]

_OWNER = "HmacSigning"


class SigningError(InvalidRequestError):
    """The request could not be signed (streamed body, missing signed header, broken clock).

    It was not sent. Being an ``InvalidRequestError``, it is neither retried by ``Retry`` nor
    counted against the upstream by ``CircuitBreaker``.
    """


class HmacSigning(RequestResponsePlugin):
    """Sign every attempt with an HMAC over the method, target, time, body hash and headers.

    Adds ``X-Signature-Timestamp`` (Unix seconds from ``clock``), ``X-Content-SHA256`` (hex
    SHA-256 of the body) and the signature header::

        Signature: keyId="k1",algorithm="hmac-sha256",
            headers="(request-target) x-signature-timestamp x-content-sha256 host",
            signature="<base64>"

    (one line on the wire). The signing string is documented in the package README and built
    by :func:`httprail_signing.signing_string`; :func:`httprail_signing.verify` checks it.

    Place it inside ``Retry`` (after ``Auth``, before ``Timeout(attempt)``) so each attempt is
    signed afresh with a new timestamp. A streamed body (an async iterator) cannot be hashed
    before it is sent, so such a request gives ``Failure(SigningError)`` and is not sent; read
    it first (``await request.aread()``) to sign it. So does a request lacking a header listed
    in ``signed_headers``, or a ``clock`` that raises or returns something other than seconds.

    Args:
        key_id: tells the server which secret to check with (sent in ``keyId``).
        secret: the shared HMAC key; never shown in ``repr``.
        header: the name of the header carrying the signature.
        algorithm: ``"sha256"`` or ``"sha512"`` (the HMAC hash; the body hash is always SHA-256).
        clock: returns Unix time in seconds (inject a fixed one in tests).
        signed_headers: more headers to cover, after the timestamp and body hash.

    Raises:
        ConfigError: an option is invalid; the message names it.

    Example:
        >>> signing = HmacSigning("client-1", secret)  # doctest: +SKIP
        >>> client = AsyncClient(url, plugins=[Retry(), BearerAuth(token), signing])
    """

    name = "hmac-signing"

    def __init__(
        self,
        key_id: str,
        secret: str | bytes,
        *,
        header: str = "Signature",
        algorithm: Algorithm = "sha256",
        clock: Callable[[], float] = time.time,
        signed_headers: Sequence[str] = ("host",),
    ) -> None:
        self._key_id = check_key_id(_OWNER, key_id)
        self._secret = check_secret(_OWNER, secret)
        self._header = check_header(_OWNER, header)
        self._algorithm = check_algorithm(_OWNER, algorithm)
        self._clock = check_clock(_OWNER, clock)
        self._signed_headers = check_signed_headers(_OWNER, signed_headers, self._header)

    def __repr__(self) -> str:
        return (
            f"HmacSigning(key_id={self._key_id!r}, algorithm={self._algorithm!r}, "
            f"header={self._header!r}, signed_headers={self._signed_headers!r}, "
            "secret=[REDACTED])"
        )

    @property
    def key_id(self) -> str:
        """The key id sent in ``keyId``."""
        return self._key_id

    @property
    def algorithm(self) -> Algorithm:
        """The HMAC hash."""
        return self._algorithm

    @property
    def header(self) -> str:
        """The name of the header carrying the signature."""
        return self._header

    @property
    def signed_headers(self) -> tuple[str, ...]:
        """The extra signed headers, lower-case, in signing order."""
        return self._signed_headers

    async def process_request(self, request: httpx.Request) -> Result[httpx.Request, RequestError]:
        """Add the timestamp, body hash and signature headers, or say why it cannot."""
        if not isinstance(request.stream, httpx.ByteStream):
            return Failure(
                SigningError(
                    f"cannot sign a streamed request body: {CONTENT_SHA256_HEADER} needs the "
                    "whole body before sending and a stream can be read only once; send bytes, "
                    "or read the request first (await request.aread())",
                    request=request,
                )
            )
        extra: list[tuple[str, str]] = []
        for name in self._signed_headers:
            values = request.headers.get_list(name)
            if not values:
                message = f"cannot sign: the request has no {name!r} header (in signed_headers)"
                return Failure(SigningError(message, request=request))
            extra.append((name, combine(values)))
        timestamp = self._timestamp(request)
        if isinstance(timestamp, SigningError):
            return Failure(timestamp)
        digest = body_sha256(request.read())
        request.headers[TIMESTAMP_HEADER] = timestamp
        request.headers[CONTENT_SHA256_HEADER] = digest
        covered = [(TIMESTAMP_HEADER, timestamp), (CONTENT_SHA256_HEADER, digest), *extra]
        target = request.url.raw_path.decode("latin-1")  # path?query as on the request line
        text = signing_string(request.method, target, covered)
        mac = hmac_digest(self._secret, self._algorithm, text)
        request.headers[self._header] = format_signature(
            self._key_id, self._algorithm, self._signed_headers, mac
        )
        return Success(request)

    def _timestamp(self, request: httpx.Request) -> str | SigningError:
        try:
            now = self._clock()
        except Exception as exc:  # noqa: BLE001 - user code: its failure becomes a value
            error = SigningError(f"clock failed: {type(exc).__name__}", request=request)
            error.__cause__ = exc
            return error
        if (
            isinstance(now, bool)
            or not isinstance(now, int | float)
            or not math.isfinite(now)
            or now < 0
        ):
            return SigningError(f"clock returned {now!r}, not Unix seconds", request=request)
        return str(math.floor(now))
