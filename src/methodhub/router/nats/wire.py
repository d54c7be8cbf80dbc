"""What cluster nodes say to each other through NATS: subjects and message bytes (no I/O).

Subjects (``P`` is the prefix, ``mh`` by default; a *token* is the target key made safe for a
subject, see :func:`subject_token`):

``P.call.{token}``
    The device's *call subject*. The node a device is connected to subscribes to it (queue group
    ``node``, so one node gets each message even while two briefly overlap) when the connection
    carries the device's session, and unsubscribes when the connection ends. Messages, by first byte:

    * ``C`` a call (``C`` + JSON of the call's fields + ``\\n`` + the payload bytes), with a reply
      subject in the caller's inbox; answered with ``O{status}\\n{payload}`` (the device's answer) or
      ``E`` + JSON ``[kind, message, info]`` (a :class:`~methodhub.errors.HubError`; ``DEVICE_OFFLINE``
      when connected but not yet subscribed to method requests, or just let go: a call NATS routed
      here before it processed this node's UNSUB is answered so, never dropped). With nobody
      subscribed, NATS itself answers "no responders" (status 503) at once: the device is offline.
    * ``P`` + a call's reply subject: "do you still hold this call?" — ``1`` or ``0``.
    * ``Q``: "is the device ready?" — ``1`` or ``0``.
    * ``S``: "is the device connected here, since when?" — ``1{epoch seconds}`` or ``0`` (for the
      registry's ``connectionState``).
    * ``T`` + node id: "the device connected to that node": the node holding the older connection
      closes it (MQTT session takeover, across nodes). Sent *before* the new holder subscribes, so it
      never reaches the new holder itself.

``P.ready.{token}``
    Published (empty) when a session becomes ready; subscribed only while a call waits for that
    device to connect (``connectTimeoutInSeconds``), by the node where the call waits.

``P.r.{node}.*``
    A node's inbox: answers to its calls (``{n}``) and to its probes (``p{n}``, ``q{n}``).
"""

from __future__ import annotations

import asyncio
import re

import orjson

from methodhub.calls.model import Call, CallKind, CallOutcome
from methodhub.errors import ErrorKind, HubError

DEFAULT_PREFIX = "mh"
QUEUE_GROUP = "node"

NO_RESPONDERS = b"NATS/1.0 503"
"""How the headers of NATS's own "no responders" answer begin (nobody subscribed to the subject)."""

_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def subject_token(target: str) -> str:
    """``target`` as one NATS subject token: ``[A-Za-z0-9_-]`` stay, every other UTF-8 byte
    becomes ``~XX`` (hex). Reversible, and never contains ``.``, ``*``, ``>`` or white space."""
    if _SAFE.fullmatch(target):
        return target
    return "".join(chr(b) if b in _SAFE_CHARS else f"~{b:02X}" for b in target.encode())


def target_of(token: str) -> str:
    """The inverse of :func:`subject_token`."""
    if "~" not in token:
        return token
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "~":
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(token[i]))
            i += 1
    return out.decode()


def target_of_subject(subject: bytes) -> str:
    """The target whose call subject (``P.call.{token}``) this is."""
    return target_of(subject.decode().rsplit(".", 1)[1])


def encode_call(call: Call) -> bytes:
    meta = orjson.dumps(
        (
            call.target,
            call.method,
            call.kind.value,
            call.response_timeout,
            call.connect_timeout,
            call.dialect_data,
        )
    )
    return b"C" + meta + b"\n" + call.payload


def decode_call(data: bytes) -> Call:
    end = data.index(b"\n")
    target, method, kind, response_timeout, connect_timeout, dialect_data = orjson.loads(data[1:end])
    return Call(
        target,
        method,
        data[end + 1 :],
        response_timeout,
        connect_timeout,
        CallKind(kind),
        dialect_data,
    )


def encode_result(future: asyncio.Future[CallOutcome]) -> bytes:
    """The answer to a served call, from its finished (not cancelled) reply future."""
    exc = future.exception()
    if exc is None:
        outcome = future.result()
        return b"O%d\n%b" % (outcome.status, outcome.payload)
    if isinstance(exc, HubError):
        return encode_error(exc)
    return b"E" + orjson.dumps((ErrorKind.SERVER_ERROR.name, f"The serving node failed: {exc}", {}))


def encode_error(error: HubError) -> bytes:
    return b"E" + orjson.dumps((error.kind.name, error.message, error.info))


def decode_result(data: bytes) -> CallOutcome | HubError:
    if data[:1] == b"O":
        end = data.index(b"\n")
        return CallOutcome(int(data[1:end]), data[end + 1 :])
    try:
        name, message, info = orjson.loads(data[1:])
        return HubError(ErrorKind[name], message, info)
    except (ValueError, KeyError, TypeError):
        return HubError(ErrorKind.SERVER_ERROR, "Another node sent an answer this node cannot read.")
