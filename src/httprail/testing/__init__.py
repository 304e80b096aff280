"""Test helpers: a real fault server, an in-memory terminal and a clock that never waits.

- :class:`ChaosServer` — HTTP/1.1 on 127.0.0.1 with replies scripted per path (statuses,
  ``Retry-After``, delays, resets, truncated bodies, hangs, garbage, SSE streams); it records
  every request it saw. :class:`TokenBucket` (and ``script_rate_limited``) model a server's
  capacity. :class:`ChaosScript` (from :func:`load_chaos_script`) declares its replies in a
  TOML file, as ``httprail chaos --script`` reads them.
- :class:`MockTerminal` — answers from a function, for unit tests without a network.
- :class:`FakeClock` — inject as ``clock=`` and ``sleep=`` so backoff never sleeps for real.

The pytest plugin (installed with httprail) exposes ``chaos_server`` and ``fake_clock`` fixtures.
"""

from ._chaos import ChaosServer, Fault, RecordedRequest, Reply, ReplyFunction, TokenBucket
from ._mock import FakeClock, Handler, MockTerminal
from ._script import ChaosScript, load_chaos_script

__all__ = [
    "ChaosScript",
    "ChaosServer",
    "FakeClock",
    "Fault",
    "Handler",
    "MockTerminal",
    "RecordedRequest",
    "Reply",
    "ReplyFunction",
    "TokenBucket",
    "load_chaos_script",
]
