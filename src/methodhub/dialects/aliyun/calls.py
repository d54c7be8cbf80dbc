"""What Alibaba's front door tells its device dialect about a call (``Call.dialect_data``).

``RRpc`` and ``InvokeThingService`` choose the request's MessageId themselves (they report it to the
caller), and custom-topic ``RRpc`` chooses the delivery topic. The engine and the routers carry these
as opaque text; :mod:`methodhub.dialects.aliyun.mqtt` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping

MESSAGE_ID = "message_id"
"""The request id the device sees (Alibaba's MessageId); unique per call."""
RRPC_TOPIC = "rrpc_topic"
"""For custom-topic RRPC: the device's topic the request is delivered under (``/ext/rrpc/{id}{topic}``)."""


def call_data(message_id: str, topic: str | None = None) -> dict[str, str]:
    """``Call.dialect_data`` for a call whose MessageId (and, for custom-topic RRPC, topic) is chosen."""
    data = {MESSAGE_ID: message_id}
    if topic is not None:
        data[RRPC_TOPIC] = topic
    return data


def message_id(data: Mapping[str, str] | None) -> str | None:
    return data.get(MESSAGE_ID) if data else None


def rrpc_topic(data: Mapping[str, str] | None) -> str | None:
    return data.get(RRPC_TOPIC) if data else None
