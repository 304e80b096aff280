"""The codec: breaker records and plain JSON round-trip; anything else is refused (no pickle)."""

from __future__ import annotations

import json

import pytest
from httprail import CircuitState
from httprail.middleware import BreakerRecord

from httprail_redis import decode, encode


def test_codec_round_trips_breaker_records_and_json() -> None:
    """Records and plain JSON come back equal; anything else is refused both ways."""
    record = BreakerRecord(CircuitState.OPEN, 0, 12.5, 3, 1, 0, 0, 0.0, 7)
    back = decode(encode(record))
    assert back == record
    assert back.state is CircuitState.OPEN
    assert decode(encode({"a": [1, 2.5, None]})) == {"a": [1, 2.5, None]}
    with pytest.raises(TypeError):
        encode(object())
    with pytest.raises(TypeError):
        encode(float("nan"))
    for bad in ('{"a": 1}', "[]", '["breaker", "open"]', '["what", 1]', "[" * 100_000):
        with pytest.raises(ValueError, match="stored value"):
            decode(bad)
    fields = ["breaker", "open", 0, 1.5, 1, 0, 0, 0, 0.0, 0, [0] * 10, [0] * 10, 0, 0]
    for position, wrong in ((2, "x"), (3, True), (10, [0] * 3), (3, float("inf"))):
        broken = list(fields)
        broken[position] = wrong
        with pytest.raises(ValueError, match=r"expected|window"):
            decode(json.dumps(broken))
