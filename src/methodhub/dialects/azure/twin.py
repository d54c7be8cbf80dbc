"""What a device's twin request gets, whatever carries it (MQTT ``$iothub/twin/...`` topics or the
AMQP ``/twin`` links): one answer per operation, so the transports cannot drift apart.

methodhub does not store device twins yet (docs/azure-compatibility.md). So that SDK calls fail fast
instead of hanging:

- a twin GET gets an empty twin (no desired properties: there is no API to set any);
- subscribing to desired-property updates (AMQP ``PUT``/``DELETE`` of
  ``/notifications/twin/properties/desired``; MQTT grants the subscription) succeeds, and no update
  ever comes;
- a reported-properties PATCH, and anything else, gets 405 with a message saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

EMPTY_TWIN = b'{"desired":{"$version":1},"reported":{"$version":1}}'
TWIN_NOT_SUPPORTED = (
    b'{"errorCode":405000,"message":"methodhub does not store device twins; reported properties are '
    b'not kept. See docs/azure-compatibility.md."}'
)
"""IoT Hub's error body shape: Node's MQTT twin client ignores the status in the topic and fails a
request only when the body has an ``errorCode``."""
DESIRED_NOTIFICATIONS = "/notifications/twin/properties/desired"
"""The AMQP resource of desired-property update notifications (Node and C send it)."""


@dataclass(frozen=True, slots=True)
class TwinAnswer:
    """The status and body (JSON bytes, or empty) of the answer to one twin request."""

    status: int
    body: bytes


def answer_twin_request(operation: str, resource: str | None) -> TwinAnswer:
    """The answer to twin ``operation`` (``GET``, ``PATCH``, ``PUT``, ``DELETE``, any case) on
    ``resource`` (None or ``/`` for the whole twin, ``/properties/reported``, or
    :data:`DESIRED_NOTIFICATIONS`)."""
    operation = operation.upper()
    whole = resource in (None, "", "/")
    if operation == "GET" and whole:
        return TwinAnswer(200, EMPTY_TWIN)
    if (
        operation in ("PUT", "DELETE")
        and resource is not None
        and resource.rstrip("/") == DESIRED_NOTIFICATIONS
    ):
        return TwinAnswer(200, b"")
    return TwinAnswer(405, TWIN_NOT_SUPPORTED)
