"""What Azure IoT Hub's AMQP device protocol means (azure-amqp-wire.md), over the codec's messages.

Pure functions over :class:`~methodhub.amqp.Message` and the performatives: no I/O, no connection
state. The gateway's AMQP transport (:mod:`methodhub.gateway.amqp_connection`) carries what these
make and hands over what it receives, asking them through :class:`AzureAmqpDialect` (the
gateway's :class:`~methodhub.gateway.amqp_dialect.AmqpDialect`).

* Links (§3.1, §5, §9.7): :func:`classify_address` says what an attach's address is — ``$cbs``,
  an identity's methods, telemetry, cloud-to-device or twin node — and
  :func:`link_handling` what the server does with the link, by the role the device attached it in.
* CBS (§2): :func:`parse_put_token` reads a put-token request, :func:`verify_put_token` checks its
  SAS token with the check the MQTT dialect uses (:mod:`methodhub.dialects.azure.device_auth`),
  :func:`put_token_response` words the answer (correlation-id of the request's message-id type,
  ``status-code`` an AMQP int).
* Methods (§4): :func:`method_request` puts a call on the wire, :func:`parse_method_response`
  reads the device's answer (matched by UUID value whatever the correlation-id's AMQP type).
* SASL PLAIN (§1): :func:`plain_credentials` reads ``{deviceId}@sas.{hubName}`` (or a policy's
  ``{policyName}@sas.root.{hubName}``) and its SAS token.
* The errors used to refuse or detach links (§7.2), with when each is used.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from methodhub.amqp import (
    AmqpSequence,
    AmqpValue,
    Attach,
    Error,
    ErrorCondition,
    Int,
    Message,
    Properties,
    Role,
    Symbol,
    decode_message,
    encode_application_properties,
    encode_plain_message,
    read_plain_message,
)
from methodhub.calls.model import Call, CallOutcome, identity_key
from methodhub.config import TokenPolicy
from methodhub.dialects.azure.device_auth import (
    DeviceKeys,
    TokenRefused,
    verify_device_certificate,
    verify_device_token,
    verify_hub_token,
)
from methodhub.dialects.azure.methods import check_method_call, method_result
from methodhub.dialects.azure.sas import DEFAULT_TOKEN_POLICY, SasToken, SasTokenError
from methodhub.dialects.azure.twin import (
    DESIRED_NOTIFICATIONS,
    DeviceTwins,
    TwinAnswer,
    answer_twin_request,
    desired_updates,
)
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.amqp_dialect import (
    AmqpDialect,
    LinkHandling,
    LinkRoute,
    TokenClaim,
    TokenGrant,
    TokenRefusal,
)

if TYPE_CHECKING:
    from methodhub.gateway.auth import AuthContext
    from methodhub.registry.twins import Twin

# -- link addresses (§3.1, §5) ----------------------------------------------------------------------

CBS_ADDRESS = "$cbs"


class LinkKind(StrEnum):
    """Which node of the hub a link's address names."""

    CBS = "cbs"
    """``$cbs``: claims-based security, put-token requests and their responses (§2.1)."""
    METHODS = "methods"
    """``/devices/{d}[/modules/{m}]/methods/devicebound``: requests out, responses in (§3)."""
    EVENTS = "events"
    """``…/messages/events``: telemetry from the device (C, C#, Java open it unasked, §5)."""
    CLOUD_TO_DEVICE = "cloud-to-device"
    """``…/messages/devicebound``: cloud-to-device messages (C#, Java open it unasked, §5)."""
    TWIN = "twin"
    """``…/twin``: twin requests and responses (C opens both directions unasked, §5)."""


@dataclass(frozen=True, slots=True)
class LinkAddress:
    """A classified link address.

    Attributes:
        kind: which node it names.
        device_id / module_id: the identity in the address (None for ``$cbs``).
        key: ``identity_key(device_id, module_id)``, or None for ``$cbs``; a link may only be
            attached for a key a put-token on this connection authorized.
    """

    kind: LinkKind
    device_id: str | None = None
    module_id: str | None = None
    key: str | None = None


_PATHS = {
    ("methods", "devicebound"): LinkKind.METHODS,
    ("messages", "events"): LinkKind.EVENTS,
    ("messages", "devicebound"): LinkKind.CLOUD_TO_DEVICE,
    ("twin",): LinkKind.TWIN,
}


def _path(address: str) -> str:
    """``address`` without ``amqps://host[:port]`` (or ``amqp://``) and without a query."""
    lowered = address[:8].lower()
    for scheme in ("amqps://", "amqp://"):
        if lowered.startswith(scheme):
            rest = address[len(scheme) :]
            slash = rest.find("/")
            address = "" if slash < 0 else rest[slash:]
            break
    return address.partition("?")[0]


def _decoded(segment: str) -> str | None:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return None


def classify_address(address: str) -> LinkAddress | None:
    """What ``address`` names, or None for anything else (the link is refused ``amqp:not-found``).

    Every SDK's spelling (§3.1): Node's and Java's ``/devices/{d}/methods/devicebound``, C's
    ``amqps://{host}/devices/…``, C#'s ``amqps://{host}:5671/devices/{UrlEncode(d)}/methods/deviceBound``.
    The scheme and host are stripped, each path segment is URL-decoded (so an encoded ``/`` cannot
    make a segment), the fixed words match case-insensitively, the ids keep their case. A leading
    and one trailing ``/`` are optional.
    """
    path = _path(address).removeprefix("/").removesuffix("/")
    raw = path.split("/")
    segments = [_decoded(s) for s in raw]
    if any(s is None or "/" in s for s in segments):
        return None
    parts: list[str] = [s for s in segments if s is not None]
    if len(parts) == 1 and parts[0].lower() == CBS_ADDRESS:
        return LinkAddress(LinkKind.CBS)
    if len(parts) < 3 or parts[0].lower() != "devices" or not parts[1]:
        return None
    device_id, module_id, rest = parts[1], None, parts[2:]
    if len(rest) >= 3 and rest[0].lower() == "modules" and rest[1]:
        module_id, rest = rest[1], rest[2:]
    kind = _PATHS.get(tuple(s.lower() for s in rest))
    if kind is None:
        return None
    return LinkAddress(kind, device_id, module_id, identity_key(device_id, module_id))


def attach_address(attach: Attach) -> str | None:
    """The address of the device's end of ``attach``: its target when the device attached as
    sender, its source when as receiver (None when absent or not text)."""
    terminus = attach.target if attach.role == Role.SENDER else attach.source
    address = getattr(terminus, "address", None)
    return address if isinstance(address, str) else None


def link_handling(kind: LinkKind, device_role: bool) -> LinkHandling:
    """What the server does with a link of ``kind`` the device attached as ``device_role``
    (:class:`~methodhub.amqp.Role`: ``SENDER`` when the device sends on it)."""
    sends = device_role == Role.SENDER
    if kind is LinkKind.CBS:
        return LinkHandling.CBS_REQUESTS if sends else LinkHandling.CBS_RESPONSES
    if kind is LinkKind.METHODS:
        return LinkHandling.METHOD_RESPONSES if sends else LinkHandling.METHOD_REQUESTS
    if kind is LinkKind.TWIN:
        return LinkHandling.TWIN_REQUESTS if sends else LinkHandling.TWIN_RESPONSES
    return LinkHandling.ACCEPT_AND_DROP if sends else LinkHandling.NEVER_SEND


# -- CBS (§2) ---------------------------------------------------------------------------------------

PUT_TOKEN = "put-token"
TOKEN_TYPES = frozenset({"servicebus.windows.net:sastoken", "azure-devices.net:sastoken"})
"""Node, C and Java send the first, C# the second (§2.2); both carry the same SAS token."""
STATUS_OK = 200
STATUS_BAD_REQUEST = 400
STATUS_UNAUTHORIZED = 401
STATUS_UNAVAILABLE = 503
SIGNATURE_MISMATCH = (
    "The specified SAS token has an invalid signature. It does not match either the primary or secondary key."
)
"""IoT Hub's put-token description for a wrong signature (§2.4)."""


@dataclass(frozen=True, slots=True)
class PutToken:
    """A well-formed put-token request (§2.2).

    Attributes:
        message_id: ``properties.message-id`` as received, AMQP type kept (a ``ULong`` from C, a
            ``str`` from Node and C#, a ``UUID`` from Java; None if absent): the response's
            correlation-id must have the same type (§2.3).
        operation: ``put-token``.
        token_type: one of :data:`TOKEN_TYPES`.
        name: the audience, URL-decoded (``{host}/devices/{d}[/modules/{m}]``; the host part is not
            checked: C# and Java put the gateway host there).
        device_id / module_id / key: the identity the audience names.
        token: the body, the SAS token text.
    """

    message_id: Any
    operation: str
    token_type: str
    name: str
    device_id: str
    module_id: str | None
    key: str
    token: str
    hub_wide: bool = False
    """The audience is the hub (``{host}``, or ``{host}/devices``): device_id and key are empty."""


CbsGrant = TokenGrant
"""A put-token that holds (the gateway's :class:`~methodhub.gateway.amqp_dialect.TokenGrant`):
answer ``put_token_response(message_id, STATUS_OK, "OK")``."""

CbsError = TokenRefusal
"""A put-token that does not hold (the gateway's :class:`~methodhub.gateway.amqp_dialect.TokenRefusal`):
answer ``put_token_response(message_id, status, description)`` and keep the connection (§7.2).

``status`` is 400 for a malformed request, 401 for a token that proves nothing, 503 when the
registry could not be read (``retryable``: the device is not at fault; as Node gives up for
good on any status but 200, the connection may rather drop TCP, which Node retries at once).
"""


def _audience(name: str) -> tuple[str, str | None] | None:
    """``(device_id, module_id)`` of ``{anything}/devices/{d}[/modules/{m}]`` (already decoded)."""
    parts = name.removesuffix("/").split("/")
    if len(parts) >= 4 and parts[-4].lower() == "devices" and parts[-2].lower() == "modules":
        if parts[-3] and parts[-1]:
            return parts[-3], parts[-1]
        return None
    if len(parts) >= 2 and parts[-2].lower() == "devices" and parts[-1]:
        return parts[-1], None
    return None


def _hub_wide(name: str) -> bool:
    """Whether the (decoded) audience is the hub itself: ``{host}`` or ``{host}/devices``."""
    parts = name.strip("/").split("/")
    return bool(parts[0]) and (len(parts) == 1 or (len(parts) == 2 and parts[1].lower() == "devices"))


def parse_put_token(message: Message) -> PutToken | CbsError:
    """The put-token request ``message`` (received on a ``$cbs`` sender), or the 400 to answer."""
    message_id = message.properties.message_id if message.properties is not None else None
    app = message.application_properties or {}

    def bad(description: str) -> CbsError:
        return CbsError(message_id, STATUS_BAD_REQUEST, description)

    operation = app.get("operation")
    if operation != PUT_TOKEN:
        return bad(f"The $cbs node takes operation 'put-token' only, not {operation!r}.")
    token_type = app.get("type")
    if token_type not in TOKEN_TYPES:
        return bad(
            f"The token type {token_type!r} is not supported; send a SAS token as "
            "'servicebus.windows.net:sastoken' or 'azure-devices.net:sastoken'."
        )
    name = app.get("name")
    if not isinstance(name, str):
        return bad("The put-token has no 'name' (the audience {host}/devices/{deviceId}).")
    decoded = _decoded(name)
    identity = _audience(decoded) if decoded is not None else None
    hub_wide = identity is None and decoded is not None and _hub_wide(decoded)
    if decoded is None or (identity is None and not hub_wide):
        return bad(
            f"The put-token audience '{name}' names no device: it must be "
            "'{host}/devices/{deviceId}', '{host}/devices/{deviceId}/modules/{moduleId}' or, with a "
            "shared access policy's token, the hub '{host}'."
        )
    body = message.body
    if not isinstance(body, AmqpValue) or not isinstance(body.value, str):
        return bad("The put-token body must be the SAS token as an amqp-value string.")
    if hub_wide:
        return PutToken(message_id, PUT_TOKEN, str(token_type), decoded, "", None, "", str(body.value), True)
    assert identity is not None
    device_id, module_id = identity
    return PutToken(
        message_id=message_id,
        operation=PUT_TOKEN,
        token_type=str(token_type),
        name=decoded,
        device_id=device_id,
        module_id=module_id,
        key=identity_key(device_id, module_id),
        token=str(body.value),
    )


async def verify_put_token(
    put_token: PutToken,
    registry: DeviceKeys,
    hostname: str,
    now: float | None = None,
    policy: TokenPolicy = DEFAULT_TOKEN_POLICY,
) -> CbsGrant | CbsError:
    """Whether ``put_token``'s SAS token proves its audience's identity on hub ``hostname``.

    The check is the MQTT dialect's (:func:`~methodhub.dialects.azure.device_auth.verify_device_token`):
    the token's ``sr`` names this hub (a port allowed) and the identity, it has not expired, the
    identity is registered and its device enabled, the signature matches a key. A wrong signature
    is answered with IoT Hub's wording (:data:`SIGNATURE_MISMATCH`), the rest with ours. ``now``
    defaults to the wall clock (epoch seconds).
    """
    at = time.time() if now is None else now
    try:
        token = SasToken.parse(put_token.token)
    except SasTokenError as exc:
        return CbsError(
            put_token.message_id, STATUS_UNAUTHORIZED, f"The put-token is not a valid SAS token: {exc}."
        )
    try:
        if put_token.hub_wide:
            expiry = await verify_hub_token(token, registry, hostname, at, policy)
            return CbsGrant(put_token.message_id, "", None, "", expiry)
        verified = await verify_device_token(
            token, put_token.device_id, put_token.module_id, registry, hostname, at, policy
        )
    except TokenRefused as refused:
        if refused.cause == "unavailable":
            return CbsError(put_token.message_id, STATUS_UNAVAILABLE, _sentence(refused.reason), True)
        if refused.cause == "signature":
            return CbsError(put_token.message_id, STATUS_UNAUTHORIZED, SIGNATURE_MISMATCH)
        return CbsError(put_token.message_id, STATUS_UNAUTHORIZED, _sentence(refused.reason))
    return CbsGrant(
        put_token.message_id, verified.device_id, verified.module_id, verified.key, verified.expires_at
    )


def _sentence(reason: str) -> str:
    return reason[:1].upper() + reason[1:] + "."


def put_token_response(message_id: Any, status: int, description: str) -> Message:
    """The answer to a put-token (§2.3): correlation-id = the request's message-id, same AMQP type
    (C demands a ulong, Node compares a string with ``===``, Java casts to a UUID);
    ``status-code`` an AMQP int (Node and Java accept only 200); ``status-description`` a string;
    no body."""
    return Message(
        properties=Properties(correlation_id=message_id),
        application_properties={"status-code": Int(status), "status-description": description},
    )


# -- direct methods (§4) ----------------------------------------------------------------------------

METHOD_NAME = "IoThub-methodname"
METHOD_STATUS = "IoThub-status"
_INT_LOW, _INT_HIGH = -0x8000_0000, 0x7FFF_FFFF


def method_request(rid: bytes, call: Call) -> bytes:
    """The request for ``call`` (§4.1), encoded: correlation-id the uuid whose 16 bytes are ``rid``
    (C rejects any other type), ``IoThub-methodname`` a string, the JSON payload in one data
    section.

    Raises:
        HubError: ``INVALID_ARGUMENT`` for a MESSAGE call (raw RRPC), as the MQTT dialect does.
    """
    check_method_call(call, call.target, "AMQP")
    method = call.method
    properties = _method_properties.get(method)
    if properties is None:
        if len(_method_properties) >= _METHOD_PROPERTIES_KEPT:
            _method_properties.clear()
        properties = _method_properties[method] = encode_application_properties({METHOD_NAME: method})
    return encode_plain_message(rid, properties, call.payload)


_method_properties: dict[str, bytes] = {}
"""A method name's encoded application properties (a fleet calls a few methods over and over)."""
_METHOD_PROPERTIES_KEPT = 1024
"""The most method names kept (all are dropped when it is reached: a bound, not a cache policy)."""


def request_key(value: Any) -> str | None:
    """The key a request is known by (:func:`new_uuid`'s ``hex``, 32 hex digits) from a
    correlation-id's UUID value: a uuid, UUID text (Node re-types ids, §4.2) or 16 bytes; None for
    anything else."""
    if type(value) is uuid.UUID:
        return value.hex
    if isinstance(value, str):
        try:
            return uuid.UUID(value).hex
        except ValueError:
            return None
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 16:
        return bytes(value).hex()
    return None


def _payload(body: Any) -> bytes | None:
    """A response body's bytes: the data sections joined (none: empty); an amqp-value holding
    binary or a string is taken too (a client that does not mark its bytes as data); None else."""
    if body is None:
        return b""
    if isinstance(body, AmqpValue):
        value = body.value
        if isinstance(value, bytes):
            return value
        return value.encode("utf-8") if isinstance(value, str) else None
    if any(isinstance(section, AmqpSequence) for section in body):
        return None
    return b"".join(body)


def parse_method_response(data: bytes) -> tuple[str, CallOutcome | HubError] | None:
    """The device's answer (§4.2), the bytes of its message, as ``(request key, result)``, or None
    when its correlation-id is no UUID (the connection counts it as stray and accepts it). The
    key is :func:`request_key`'s.

    The result: ``CallOutcome(IoThub-status, payload)`` with the payload validated as the MQTT
    dialect validates it (over 128 KiB → ``PAYLOAD_TOO_LARGE``; JSON, or empty/absent → ``null``;
    else ``INVALID_DEVICE_RESPONSE``). A missing ``IoThub-status``, or one that is not an integer
    in AMQP int's range, is ``INVALID_DEVICE_RESPONSE``: every SDK sends one, and inventing a
    status would hide the client's bug (UNCONFIRMED what IoT Hub does).

    Raises:
        DecodeError: ``data`` is no AMQP message.
    """
    plain = read_plain_message(data)  # what every SDK's answer is: no Message built
    payload: bytes | None
    if plain is not None:
        correlation_id, properties, body = plain.correlation_id, plain.application_properties, plain.body
        payload = b"" if body is None else body[0] if len(body) == 1 else b"".join(body)  # data sections
    else:
        message = decode_message(data)
        correlation_id = message.properties.correlation_id if message.properties is not None else None
        properties, payload = message.application_properties, _payload(message.body)
    key = request_key(correlation_id)
    if key is None:
        return None
    status = (properties or {}).get(METHOD_STATUS)
    # (not ``in range(...)``: for an int subclass such as Int that is a linear scan)
    if not isinstance(status, int) or isinstance(status, bool) or not _INT_LOW <= status <= _INT_HIGH:
        return key, HubError(
            ErrorKind.INVALID_DEVICE_RESPONSE,
            f"The device answered without a valid '{METHOD_STATUS}' application property "
            f"(got {status!r:.40}); Azure devices send their status as an AMQP int such as 200.",
        )
    if payload is None:
        return key, HubError(
            ErrorKind.INVALID_DEVICE_RESPONSE,
            "The device answered with an amqp-sequence body, or an amqp-value that is neither binary "
            "nor text; Azure devices answer with their JSON payload in a data section (or no body).",
        )
    return key, method_result(int(status), payload)


# -- twin -------------------------------------------------------------------------------------------

TWIN_OPERATION = Symbol("operation")
TWIN_RESOURCE = Symbol("resource")
TWIN_STATUS = Symbol("status")
TWIN_VERSION = Symbol("version")


def twin_request(request: Message) -> tuple[Any, str, str | None, bytes] | None:
    """``(correlation-id, operation, resource, body)`` of a twin request the device sent on its
    ``/twin`` sender (see :func:`twin_response`), or None when it has no correlation-id to answer
    with (it is accepted and dropped)."""
    properties = request.properties
    correlation_id = properties.correlation_id if properties is not None else None
    if correlation_id is None:
        return None
    annotations = request.message_annotations or {}
    operation = annotations.get(TWIN_OPERATION)
    resource = annotations.get(TWIN_RESOURCE)
    body = _payload(request.body) or b""
    return (
        correlation_id,
        operation if isinstance(operation, str) else "",
        resource if isinstance(resource, str) else None,
        body,
    )


def twin_answer(correlation_id: Any, answer: TwinAnswer) -> Message:
    """The answer message: the request's correlation-id with its AMQP type, the message
    annotations ``status`` (an AMQP int) and, after a reported PATCH, ``version`` (a long), the
    body (if any) in one data section."""
    annotations: dict[Any, Any] = {TWIN_STATUS: Int(answer.status)}
    if answer.version is not None:
        annotations[TWIN_VERSION] = answer.version
    return Message(
        message_annotations=annotations,
        properties=Properties(correlation_id=correlation_id),
        body=[answer.body] if answer.body else None,
    )


def twin_response(request: Message) -> Message | None:
    """The answer to a twin request the device sent on its ``/twin`` sender, or None when it has no
    correlation-id to answer with (it is accepted and dropped).

    The request (Node's ``amqp_twin_client``, C's twin messenger): message annotations
    ``operation`` (``GET``, ``PATCH``, ``PUT``, ``DELETE``) and ``resource`` (none for GET,
    ``/properties/reported`` for PATCH, ``/notifications/twin/properties/desired`` to subscribe to
    desired-property updates), a correlation-id, the JSON in a data section. The answer: the same
    correlation-id with its AMQP type, the message annotation ``status`` (an AMQP int; Node takes
    200-300 as success, C reads an int), the body (if any) in one data section. What each
    operation gets is :func:`~methodhub.dialects.azure.twin.answer_twin_request`'s, as over MQTT.
    """
    parsed = twin_request(request)
    if parsed is None:
        return None
    correlation_id, operation, resource, _ = parsed
    return twin_answer(correlation_id, answer_twin_request(operation, resource))


# -- detach and refusal errors (§7.2) ---------------------------------------------------------------

THROTTLED_CONDITION = "com.microsoft:device-container-throttled"

TOKEN_INVALID = Error(ErrorCondition.UNAUTHORIZED_ACCESS, "Token Invalid.")
"""Detach every link of an identity whose token expired with no renewal put-token, or whose
credentials stopped verifying (the registry changed): IoT Hub's own condition and wording (§2.4).
Node takes it as final (``UnauthorizedError``, no retry)."""

SHUTTING_DOWN = Error(ErrorCondition.DETACH_FORCED, "The hub is shutting down; reconnect.")
"""Detach each link at a planned shutdown or restart (§7.2, §9.12): Node reconnects at once. Never
close the connection with ``amqp:connection:forced`` instead: Node stalls 45 s and gives up."""

THROTTLED = Error(THROTTLED_CONDITION, "The hub is at its connection limit; retry later.")
"""Detach (or refuse) links when the hub sheds load: Node retries with backoff (§7.1)."""


def unauthorized_link(address: str, key: str | None) -> Error:
    """Refuse a link whose identity no put-token on this connection authorized (§7.2, §9.7): the
    attach is answered and detached at once with ``amqp:unauthorized-access``. Node then tears
    down the connection for good, so this is for real authorization failures only."""
    who = f"'{key}'" if key else "its identity"
    return Error(
        ErrorCondition.UNAUTHORIZED_ACCESS,
        f"Token Invalid. No CBS put-token on this connection authorizes {who} for link '{address}'; "
        "send a put-token for it first.",
    )


def unknown_address(address: str | None) -> Error:
    """Refuse a link whose address :func:`classify_address` does not know (``amqp:not-found``;
    Node: ``DeviceNotFoundError``, final)."""
    return Error(
        ErrorCondition.NOT_FOUND,
        f"No node '{address}' on this hub: devices attach $cbs, /devices/{{id}}/methods/devicebound, "
        "/messages/events, /messages/devicebound or /twin.",
    )


def taken_over(key: str) -> Error:
    """Detach the links of ``key`` on its old connection when a newer connection (AMQP or MQTT)
    took the identity over (§9.10): ``amqp:link:detach-forced``, which Node retries at once, as
    after a shutdown. (Whether IoT Hub sends ``amqp:link:stolen`` instead is UNCONFIRMED.)"""
    return Error(ErrorCondition.DETACH_FORCED, f"Another connection took over '{key}'; this one is detached.")


def rejected_message(reason: str) -> Error:
    """The error of a ``rejected`` outcome for a message that does not decode or is not what its
    link carries (e.g. a put-token that is no AMQP message): ``amqp:decode-error``."""
    return Error(ErrorCondition.DECODE_ERROR, reason)


# -- SASL PLAIN (§1) --------------------------------------------------------------------------------


def plain_credentials(initial_response: bytes | None, hostname: str) -> PutToken | None:
    """The identity and SAS token of a SASL PLAIN initial response (``authzid NUL authcid NUL
    password``, RFC 4616) with authcid ``{deviceId}@sas.{hubName}`` (or
    ``{deviceId}/modules/{moduleId}@sas.{hubName}``; a shared access policy's hub-wide token as
    ``{policyName}@sas.root.{hubName}``), hubName this hub's first DNS label or its whole host name;
    None when it is not in that form."""
    if not initial_response:
        return None
    parts = initial_response.split(b"\0")
    if len(parts) != 3:
        return None
    try:
        user, password = parts[1].decode(), parts[2].decode()
    except UnicodeDecodeError:
        return None
    identity, sep, hub = user.rpartition("@sas.")
    if hub.lower().startswith("root."):  # ``{policyName}@sas.root.{hubName}``: a hub-wide token
        hub = hub[len("root.") :]
        if (
            not sep
            or not identity
            or hub.lower() not in (hostname.lower(), hostname.split(".", 1)[0].lower())
        ):
            return None
        return PutToken(None, PUT_TOKEN, "", user, "", None, "", password, True)
    if not sep or not identity or hub.lower() not in (hostname.lower(), hostname.split(".", 1)[0].lower()):
        return None
    device_id, _, module_id = identity.partition("/modules/")
    if not device_id or "/" in device_id or "/" in module_id:
        return None
    key = identity_key(device_id, module_id or None)
    return PutToken(None, PUT_TOKEN, "", user, device_id, module_id or None, key, password)


# -- the AMQP transport's view ----------------------------------------------------------------------


def _claim(put_token: PutToken) -> TokenClaim:
    return TokenClaim(
        put_token.message_id,
        put_token.device_id,
        put_token.module_id,
        put_token.key,
        put_token.token,
        put_token.hub_wide,
    )


class AzureAmqpDialect(AmqpDialect):
    """Azure IoT Hub's AMQP device protocol for the gateway's AMQP transport
    (:mod:`methodhub.gateway.amqp_connection`), by the functions of this module. Its identities'
    sessions are the Azure MQTT dialect's (``name`` ``"azure"``)."""

    name = "azure"
    shutting_down = SHUTTING_DOWN
    token_invalid = TOKEN_INVALID

    def __init__(self, twins: DeviceTwins | None = None, token_policy: TokenPolicy | None = None) -> None:
        self.twins = twins
        """Answers twin requests from the registry (None: a hub without twins)."""
        self.token_policy = token_policy or DEFAULT_TOKEN_POLICY
        """Token lifetime and clock skew the hub accepts."""

    def link_address(self, attach: Attach) -> str | None:
        return attach_address(attach)

    def classify_link(self, address: str, device_role: bool) -> LinkRoute | None:
        named = classify_address(address)
        if named is None:
            return None
        return LinkRoute(link_handling(named.kind, device_role), named.key, named.device_id, named.module_id)

    def parse_put_token(self, message: Message) -> TokenClaim | TokenRefusal:
        parsed = parse_put_token(message)
        return parsed if isinstance(parsed, TokenRefusal) else _claim(parsed)

    def plain_credentials(self, initial_response: bytes | None, hostname: str) -> TokenClaim | None:
        put_token = plain_credentials(initial_response, hostname)
        return None if put_token is None else _claim(put_token)

    async def verify(self, claim: TokenClaim, auth: AuthContext, now: float) -> TokenGrant | TokenRefusal:
        if claim.certificate is not None:  # X.509: the TLS client certificate, no token
            try:
                verified = await verify_device_certificate(
                    claim.certificate, claim.device_id, claim.module_id, auth.registry, now
                )
            except TokenRefused as refused:
                retryable = refused.cause == "unavailable"
                status = STATUS_UNAVAILABLE if retryable else STATUS_UNAUTHORIZED
                return TokenRefusal(claim.message_id, status, _sentence(refused.reason), retryable)
            return TokenGrant(
                claim.message_id, verified.device_id, verified.module_id, verified.key, verified.expires_at
            )
        put_token = PutToken(
            claim.message_id,
            PUT_TOKEN,
            "",
            "",
            claim.device_id,
            claim.module_id,
            claim.key,
            claim.token,
            claim.hub_wide,
        )
        return await verify_put_token(put_token, auth.registry, auth.hostname, now, self.token_policy)

    def put_token_response(self, message_id: Any, status: int, description: str) -> Message:
        return put_token_response(message_id, status, description)

    def method_request(self, rid: bytes, call: Call) -> bytes:
        return method_request(rid, call)

    def parse_method_response(self, data: bytes) -> tuple[str, CallOutcome | HubError] | None:
        return parse_method_response(data)

    def request_key(self, rid: bytes) -> str:
        return rid.hex()

    def twin_subscription(self, request: Message) -> bool | None:
        parsed = twin_request(request)
        if parsed is None or (parsed[2] or "").rstrip("/") != DESIRED_NOTIFICATIONS:
            return None
        operation = parsed[1].upper()
        return True if operation == "PUT" else False if operation == "DELETE" else None

    def desired_notifications(
        self, twin: Twin, last_sent: int | None, subscribed_at: float
    ) -> tuple[list[Message], int | None]:
        """Each a message with no correlation-id (how Node tells an update from an answer) and the
        patch with ``$version`` in one data section."""
        updates, version = desired_updates(twin, last_sent, subscribed_at)
        return [Message(body=[payload]) for _, payload in updates], version

    async def twin_response(self, device_id: str, module_id: str | None, request: Message) -> Message | None:
        parsed = twin_request(request)
        if parsed is None:
            return None
        correlation_id, operation, resource, body = parsed
        if self.twins is None:
            return twin_answer(correlation_id, answer_twin_request(operation, resource))
        answer = await self.twins.answer(device_id, module_id, operation, resource, body)
        return twin_answer(correlation_id, answer)

    def unknown_link(self, address: str | None) -> Error:
        return unknown_address(address)

    def unauthorized_link(self, address: str, key: str | None) -> Error:
        return unauthorized_link(address, key)

    def taken_over(self, key: str) -> Error:
        return taken_over(key)
