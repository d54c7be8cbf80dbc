"""Azure IoT Hub's device-side MQTT grammar, in one place for the hub and for methodhub's SDK
(azure-direct-methods-wire.md §1): ``$iothub`` method and twin topics, request ids, method names.

* Requests: ``$iothub/methods/POST/{method}/?$rid={rid}``, QoS 0, JSON payload.
* Responses: ``$iothub/methods/res/{status}/?$rid={rid}``, JSON or empty payload.
* MQTT 5 responses (methodhub's, beside the above): a request to an MQTT 5 connection carries the
  Response Topic ``$iothub/methods/response`` and the rid as its Correlation Data; the device may
  answer there, copying the Correlation Data, with its status in the user property ``status``
  (decimal; 200 when absent) and the same JSON or empty payload.
* Twin: ``$iothub/twin/GET/?$rid={rid}`` and ``$iothub/twin/PATCH/properties/reported/?$rid={rid}``,
  answered on ``$iothub/twin/res/{status}/?$rid={rid}``.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from methodhub.errors import ErrorKind, HubError

API_VERSION = "2021-04-12"
"""The api-version devices and services send (any is accepted)."""
METHODS_PREFIX = "$iothub/methods/POST/"
METHODS_FILTER = "$iothub/methods/POST/#"
RESPONSE_PREFIX = "$iothub/methods/res/"
MQTT5_RESPONSE_TOPIC = "$iothub/methods/response"
"""The Response Topic of every method request sent to an MQTT 5 connection. Like every ``$iothub``
topic it names no device: it is scoped to the connection, and the Correlation Data (the rid) is
looked up among that device's own calls only."""
STATUS_PROPERTY = "status"
"""The user property holding the status of an MQTT 5 answer (decimal text)."""
DEFAULT_STATUS = 200
"""The status of an MQTT 5 answer without a ``status`` user property."""
_INT32 = 2**31
TWIN_PREFIX = "$iothub/twin/"
TWIN_GET = "$iothub/twin/GET/"
TWIN_RESPONSE_PREFIX = "$iothub/twin/res/"
TWIN_SUBSCRIPTIONS = (TWIN_RESPONSE_PREFIX, "$iothub/twin/PATCH/properties/desired/")

MAX_METHOD_NAME_LENGTH = 128
"""Azure documents no limit; 128 matches its limit on identifiers and keeps topics short."""
METHOD_NAME_FORBIDDEN = frozenset('$()<>@,;:\\"/[]?={} \t#+%')
"""Azure's forbidden property-name characters, plus ``# + %``: MQTT wildcards cannot appear in a
topic name, and devices percent-decode the name they receive (azure-direct-methods-wire.md §1.6)."""


def query_value(query: str, name: str) -> str | None:
    """The (still percent-encoded) value of ``name`` in a topic's ``?a=b&c=d`` part, or None."""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == name and value:
            return value
    return None


def request_topic(method: str, rid: str) -> str:
    """Where the hub publishes a method request (the name is valid, the rid is hex: no quoting)."""
    return f"{METHODS_PREFIX}{method}/?$rid={rid}"


def parse_request_topic(topic: str) -> tuple[str, str] | None:
    """``$iothub/methods/POST/{method}/?$rid={rid}`` → (method, rid), decoded; None if it is not one."""
    if not topic.startswith(METHODS_PREFIX):
        return None
    name, _, query = topic[len(METHODS_PREFIX) :].partition("/?")
    rid = query_value(query, "$rid")
    return None if rid is None else (unquote(name), unquote(rid))


def response_topic(status: int, rid: str) -> str:
    """Where a device answers request ``rid`` with ``status``."""
    return f"{RESPONSE_PREFIX}{status}/?$rid={quote(rid, safe='')}"


def parse_response_topic(topic: str) -> tuple[int, str] | None:
    """``$iothub/methods/res/{status}/?$rid={rid}`` → (status, rid), or None if malformed."""
    status_text, sep, query = topic[len(RESPONSE_PREFIX) :].partition("/?")
    if not sep:
        return None
    try:
        status = int(status_text)
    except ValueError:
        return None
    rid = query_value(query, "$rid")
    return None if rid is None else (status, unquote(rid))


def response_status(user_properties: list[tuple[str, str]] | None) -> int | None:
    """The status an MQTT 5 answer gives in its ``status`` user property: :data:`DEFAULT_STATUS`
    when there is none; None (a bad answer) unless there is exactly one and it is a decimal
    integer (ASCII digits, an optional ``-``) in the 32-bit signed range."""
    values = [value for name, value in user_properties or () if name == STATUS_PROPERTY]
    if not values:
        return DEFAULT_STATUS
    if len(values) > 1:
        return None
    text = values[0]
    digits = text[1:] if text.startswith("-") else text
    if not (0 < len(digits) <= 10 and digits.isascii() and digits.isdigit()):
        return None
    status = int(text)
    return status if -_INT32 <= status < _INT32 else None


def validate_method_name(name: object) -> str:
    """Return ``name`` if it is a usable method name, else raise ``INVALID_ARGUMENT``.

    A method name travels inside MQTT topics, so it must be 1..128 printable US-ASCII characters
    and none of ``$ ( ) < > @ , ; : \\ " / [ ] ? = { } # + %``, space or tab.
    """
    if not isinstance(name, str) or not name:
        raise HubError(ErrorKind.INVALID_ARGUMENT, "methodName is required and must be a non-empty string.")
    if len(name) > MAX_METHOD_NAME_LENGTH:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, f"methodName is longer than {MAX_METHOD_NAME_LENGTH} characters."
        )
    for char in name:
        if char in METHOD_NAME_FORBIDDEN or not (" " < char < "\x7f"):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT,
                f"methodName contains {char!r}; use printable US-ASCII without "
                '$ ( ) < > @ , ; : \\ " / [ ] ? = { } # + % or spaces.',
            )
    return name
