"""What Alibaba's front door tells its device dialect about a call (``Call.dialect_data``).

An **asynchronous thing service** call (a TSL's ``callType: async``) is a queued call whose method is
``async/{identifier}`` (:func:`async_method`): ``/`` is in no service identifier, and a queued call
carries nothing but its method and payload to the device's node. The dialect sends it on the
service topic ``/sys/{pk}/{dn}/thing/service/{identifier}`` and matches the reply on ``…_reply``.

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


ASYNC_PREFIX = "async/"


def async_method(identifier: str) -> str:
    """The method of an asynchronous service call to ``identifier``."""
    return ASYNC_PREFIX + identifier


def service_identifier(method: str) -> tuple[str, bool]:
    """``(identifier, asynchronous)`` of a thing service call's method."""
    if method.startswith(ASYNC_PREFIX):
        return method[len(ASYNC_PREFIX) :], True
    return method, False
