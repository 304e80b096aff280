"""Generators: AI providers behind one protocol, their domain types, SSE and a factory.

- :class:`Generator` — the protocol a provider implements (``generate``, ``generate_stream``).
- :class:`Message`, :class:`GenerationRequest`, :class:`GenerationResult`, :class:`Usage` —
  pure domain values (no HTTP import).
- :class:`GenerationStream` — a stream of text pieces that ends with at most one ``Failure``.
- :class:`SSEParser`, :class:`SSEEvent`, :func:`iter_sse` — Server-Sent Events, WHATWG rules.
- :class:`ProviderFactory` — builders by key, each generator built once and cached.

Example:
    >>> request = GenerationRequest.from_prompt("Say hi", system="Be brief", max_tokens=10)
    >>> match await generator.generate(request):  # doctest: +SKIP
    ...     case Success(result): print(result.text, result.usage)
    ...     case Failure(error): print("failed:", error)
"""

from ._factory import ProviderFactory, StackGenerator
from ._protocol import GenerationStream, Generator
from ._sse import SSEEvent, SSEParser, iter_sse
from ._types import GenerationRequest, GenerationResult, Message, Usage

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "GenerationStream",
    "Generator",
    "Message",
    "ProviderFactory",
    "SSEEvent",
    "SSEParser",
    "StackGenerator",
    "Usage",
    "iter_sse",
]
