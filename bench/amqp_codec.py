"""CPU cost of the AMQP codec on a direct method's hot path: the request out, the response in.

    python bench/amqp_codec.py                   # this checkout
    PYTHONPATH=/path/to/old/src python bench/amqp_codec.py   # another commit, same machine

In-process, no sockets. For the method request (wire doc §4.1: uuid correlation-id, the
``IoThub-methodname`` application property, one data section) and the response (§4.2:
``IoThub-status`` an AMQP int) it times, in µs per message (best of several rounds of
``time.process_time``, so other processes on the machine matter less):
- ``encode``: ``encode_message`` plus ``encode_frame`` of the transfer carrying it;
- ``decode``: ``decode_frame`` plus ``decode_message`` of those bytes;
- the same with the disposition that settles it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from methodhub.amqp import (
    Accepted,
    Disposition,
    Int,
    Message,
    Properties,
    Role,
    Transfer,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)

ROUNDS = 7
PER_ROUND = 20_000


def best_us(work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        for _ in range(PER_ROUND):
            work()
        best = min(best, (time.process_time() - start) / PER_ROUND)
    return best * 1e6


def request(correlation: uuid.UUID) -> Message:
    return Message(
        properties=Properties(correlation_id=correlation),
        application_properties={"IoThub-methodname": "reboot"},
        body=[b'{"delay": 1, "reason": "maintenance window"}'],
    )


def response(correlation: uuid.UUID) -> Message:
    return Message(
        properties=Properties(correlation_id=correlation),
        application_properties={"IoThub-status": Int(200)},
        body=[b'{"rebooted": true, "uptime": 12345}'],
    )


def main() -> None:
    correlation = uuid.uuid4()
    tag = b"\x00\x00\x00\x07"
    transfer = Transfer(handle=1, delivery_id=7, delivery_tag=tag, message_format=0)
    settle = Disposition(role=Role.RECEIVER, first=7, settled=True, state=Accepted())
    print(f"{'message':10} {'encode µs':>10} {'decode µs':>10} {'bytes':>6}")
    for name, make in (("request", request), ("response", response)):
        message = make(correlation)
        frame = encode_frame(0, transfer, encode_message(message))

        def encode_one(message: Message = message) -> bytes:
            return encode_frame(0, transfer, encode_message(message))

        def decode_one(frame: bytes = frame) -> Message:
            decoded, _ = decode_frame(frame, 0, 65536)
            assert decoded is not None
            return decode_message(decoded.payload)

        assert decode_one() == message
        print(f"{name:10} {best_us(encode_one):10.2f} {best_us(decode_one):10.2f} {len(frame):6}")
    settle_frame = encode_frame(0, settle)
    encode_us = best_us(lambda: encode_frame(0, settle))
    decode_us = best_us(lambda: decode_frame(settle_frame, 0, 65536))
    print(f"{'settle':10} {encode_us:10.2f} {decode_us:10.2f} {len(settle_frame):6}")


if __name__ == "__main__":
    main()
