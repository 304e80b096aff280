"""Generation domain types: plain frozen values with no HTTP in them.

This module imports the standard library only (a test checks it), so provider-independent code
can use the types without pulling in httpx. The dataclasses do not validate: a generator checks
a request when it encodes it (see :meth:`GenerationRequest.problems`) and answers an invalid one
with ``Failure(InvalidRequestError)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, TypedDict, Unpack

__all__ = ["GenerationRequest", "GenerationResult", "Message", "Usage"]


def _empty_extra() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message.

    Attributes:
        role: ``"system"``, ``"user"``, ``"assistant"`` or ``"tool"`` (checked by generators).
        content: the text.

    Example:
        >>> Message.user("Hello")
        Message(role='user', content='Hello')
    """

    ROLES: ClassVar[frozenset[str]] = frozenset({"system", "user", "assistant", "tool"})

    role: str
    content: str

    @classmethod
    def system(cls, text: str) -> Message:
        """A ``system`` message."""
        return cls("system", text)

    @classmethod
    def user(cls, text: str) -> Message:
        """A ``user`` message."""
        return cls("user", text)

    @classmethod
    def assistant(cls, text: str) -> Message:
        """An ``assistant`` message."""
        return cls("assistant", text)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a generation consumed."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """``input_tokens + output_tokens``."""
        return self.input_tokens + self.output_tokens


class _RequestFields(TypedDict, total=False):
    model: str | None
    max_tokens: int | None
    temperature: float | None
    stop: tuple[str, ...]
    extra: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate from, independent of any provider.

    A list given for ``messages`` or ``stop`` is stored as a tuple, and ``extra`` as a read-only
    copy, so a request cannot change after it was built.

    Attributes:
        messages: the conversation, oldest first.
        model: the model to use (``None``: the generator's default).
        max_tokens: the most tokens to generate (``None``: the provider's default).
        temperature: sampling temperature (``None``: the provider's default).
        stop: sequences that end the generation.
        extra: provider-specific body fields, sent as given.

    Example:
        >>> request = GenerationRequest.from_prompt("Name a colour", system="Be brief")
        >>> [m.role for m in request.messages]
        ['system', 'user']
    """

    messages: tuple[Message, ...]
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    extra: Mapping[str, object] = field(default_factory=_empty_extra)

    def __post_init__(self) -> None:
        if isinstance(self.messages, list):
            object.__setattr__(self, "messages", tuple(self.messages))
        if isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        if isinstance(self.extra, Mapping) and not isinstance(self.extra, MappingProxyType):
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @classmethod
    def from_prompt(
        cls, prompt: str, *, system: str | None = None, **fields: Unpack[_RequestFields]
    ) -> GenerationRequest:
        """A request of one user message, after an optional system message.

        Args:
            prompt: the user's text.
            system: a system message to put first.
            **fields: any other field (``model``, ``max_tokens``, ``temperature``, ``stop``,
                ``extra``).
        """
        user = Message.user(prompt)
        messages = (user,) if system is None else (Message.system(system), user)
        return cls(messages, **fields)

    def problems(self) -> tuple[str, ...]:
        """Why this request cannot be sent, one sentence each; empty when it can.

        Generators use it to answer ``Failure(InvalidRequestError)`` without sending anything.
        """
        found: list[str] = []
        messages: object = self.messages
        if not isinstance(messages, tuple):
            found.append(f"messages must be a tuple of Message, got {type(messages).__name__}")
        elif not messages:
            found.append("messages is empty: give at least one message")
        else:
            for index, message in enumerate(messages):
                problem = _message_problem(index, message)
                if problem is not None:
                    found.append(problem)
        model: object = self.model
        if model is not None and (not isinstance(model, str) or not model.strip()):
            found.append(f"model must be a non-empty string or None, got {model!r}")
        if not _is_count(self.max_tokens):
            found.append(f"max_tokens must be an int >= 1 or None, got {self.max_tokens!r}")
        if not _is_temperature(self.temperature):
            found.append(
                f"temperature must be a finite number >= 0 or None, got {self.temperature!r}"
            )
        stop: object = self.stop
        if not isinstance(stop, tuple) or not all(isinstance(s, str) and s for s in stop):
            found.append(f"stop must be a tuple of non-empty strings, got {stop!r}")
        extra: object = self.extra
        if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
            found.append(f"extra must be a mapping with string keys, got {extra!r}")
        return tuple(found)


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """A finished generation.

    Attributes:
        text: the generated text.
        model: the model that produced it (as the provider reported it).
        usage: tokens consumed, when the provider said.
        finish_reason: why generation stopped (``"stop"``, ``"length"``, ...), when known.
    """

    text: str
    model: str
    usage: Usage | None = None
    finish_reason: str | None = None


def _message_problem(index: int, message: object) -> str | None:
    if not isinstance(message, Message):
        return f"messages[{index}] must be a Message, got {type(message).__name__}"
    role: object = message.role
    if not isinstance(role, str) or role not in Message.ROLES:
        roles = ", ".join(sorted(Message.ROLES))
        return f"messages[{index}].role {role!r} is not one of {roles}"
    content: object = message.content
    if not isinstance(content, str):
        return f"messages[{index}].content must be a str, got {type(content).__name__}"
    return None


def _is_count(value: object) -> bool:
    if value is None:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_temperature(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0
