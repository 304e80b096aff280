"""OpenAI-compatible chat completions as an httprail generator.

:class:`OpenAIChat` encodes a :class:`httprail.generators.GenerationRequest` as a Chat
Completions call, sends it through an :class:`httprail.AsyncClient` (so the client's
middleware stack retries, times out and authenticates it) and decodes the answer, plain or
streamed as Server-Sent Events. It works with any server that speaks the API.

Example:
    >>> from httprail import AsyncClient, Failure, Success
    >>> from httprail.generators import GenerationRequest
    >>> client = AsyncClient(
    ...     "https://api.openai.com/v1", headers={"Authorization": "Bearer sk-..."}
    ... )
    >>> chat = OpenAIChat(client, model="gpt-4o-mini")
    >>> outcome = await chat.generate(GenerationRequest.from_prompt("Hi"))  # doctest: +SKIP
"""

from ._chat import OpenAIChat

__all__ = ["OpenAIChat"]
