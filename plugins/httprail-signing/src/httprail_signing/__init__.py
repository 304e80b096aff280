"""httprail-signing: HMAC request signing as an httprail middleware plugin.

:class:`HmacSigning` signs every attempt (place it inside ``Retry``) with a timestamp, the
body's SHA-256 and an HMAC over a canonical signing string; :func:`verify` checks such a
signature on the receiving side. The package reaches httprail only through its public API
and the ``httprail.plugins`` entry point ``hmac-signing``.

Errors::

    httprail.RequestError
    └── httprail.InvalidRequestError
        └── SigningError        the request cannot be signed as given; it was not sent

Example:
    >>> from httprail import AsyncClient                                     # doctest: +SKIP
    >>> from httprail.middleware import Retry
    >>> stack = [Retry(), HmacSigning("client-1", secret)]
    >>> client = AsyncClient("https://api.example.com", plugins=stack)
"""

from ._canonical import CONTENT_SHA256_HEADER, TIMESTAMP_HEADER, Algorithm, signing_string
from ._stage import HmacSigning, SigningError
from ._verify import RequestParts, verify

__all__ = [
    "CONTENT_SHA256_HEADER",
    "TIMESTAMP_HEADER",
    "Algorithm",
    "HmacSigning",
    "RequestParts",
    "SigningError",
    "signing_string",
    "verify",
]
