"""Azure IoT Hub's MQTT dialect (azure-direct-methods-wire.md §1).

* CONNECT: client id ``{deviceId}`` or ``{deviceId}/{moduleId}``; user name
  ``{hostname}/{clientId}/?api-version=...``; password a SAS token signed with the device's key
  (``sr = {hostname}/devices/{deviceId}[/modules/{moduleId}]``), or with a policy key holding
  DeviceConnect (``skn`` set); or, for an identity registered with X.509 authentication, no
  password and the device's client certificate on the TLS connection
  (:func:`~methodhub.dialects.azure.device_auth.verify_device_certificate`).
* Requests and responses: the ``$iothub`` grammar of :mod:`methodhub.dialects.azure.topics`; an
  MQTT 5 device may also answer on a request's Response Topic with its Correlation Data.
* The device may subscribe only inside its own namespace; anything else is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from methodhub.auth.x509 import ClientCertificate
from methodhub.calls.model import Call, identity_key
from methodhub.config import TokenPolicy
from methodhub.dialects.azure.device_auth import TokenRefused, verify_device_certificate, verify_device_token
from methodhub.dialects.azure.methods import check_method_call, method_result
from methodhub.dialects.azure.sas import DEFAULT_TOKEN_POLICY, SasToken, SasTokenError
from methodhub.dialects.azure.topics import (
    METHODS_FILTER,
    METHODS_PREFIX,
    MQTT5_RESPONSE_TOPIC,
    RESPONSE_PREFIX,
    TWIN_PREFIX,
    TWIN_RESPONSE_PREFIX,
    TWIN_SUBSCRIPTIONS,
    parse_response_topic,
    query_value,
    request_topic,
    response_status,
)
from methodhub.dialects.azure.twin import DeviceTwins, TwinAnswer, answer_twin_request, desired_updates
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.auth import AuthContext
from methodhub.gateway.dialect import (
    SUBSCRIPTION_REFUSED,
    ConnectRefused,
    DeviceView,
    Dialect,
    PendingReply,
    Principal,
    Reply,
)
from methodhub.mqtt import ConnackCode, Connect, Publish, topic_matches
from methodhub.registry.twins import Twin

DESIRED_NOTIFICATION_PREFIX = "$iothub/twin/PATCH/properties/desired/"
"""Desired-property notifications go out on ``{prefix}?$version={v}``."""
DESIRED_PROBE = DESIRED_NOTIFICATION_PREFIX + "?$version=1"
"""A notification topic: a filter matching it subscribes to the notifications."""
RESTORED_SUBSCRIPTION_GRACE = 5.0
"""A persisted subscription restored at CONNECT (no SUBSCRIBE this time) is taken as made this many
seconds before the first change is noticed: the change feed reports changes within its poll
interval (0.5 s by default)."""


@dataclass(slots=True)
class DesiredState:
    """What the session knows of the device's desired-property notifications."""

    subscribed_at: float
    """Epoch seconds of the SUBSCRIBE: changes since are the device's to be told."""
    sent: int | None = None
    """The desired ``$version`` of the last notification sent."""


def _answer(device: DeviceView, rid: str, status: int, payload: bytes) -> None:
    """The device answered request ``rid`` (on either response topic): complete it, or fail it if
    the payload is too large or not JSON. A rid that is not one of this device's calls in flight
    is dropped and counted as stray by ``device.complete``."""
    device.complete(rid, method_result(status, payload))


def _answer_mqtt5(device: DeviceView, publish: Publish) -> None:
    """An answer on :data:`MQTT5_RESPONSE_TOPIC`: the Correlation Data is the rid, the ``status``
    user property the status. Without a Correlation Data (e.g. from a 3.1.1 connection) it answers
    nothing and is counted as stray."""
    props = publish.properties
    correlation = props.get("correlation_data") if props else None
    if not correlation:
        device.count_stray()
        return
    try:
        rid = correlation.decode("ascii")
    except UnicodeDecodeError:
        device.count_stray()
        return
    status = response_status(props.get("user_property") if props else None)
    if status is None:
        device.complete(
            rid,
            HubError(
                ErrorKind.INVALID_DEVICE_RESPONSE,
                "The device answered with a bad 'status' user property; an MQTT 5 answer carries at "
                "most one, a decimal 32-bit integer such as '200' (200 when there is none).",
            ),
        )
        return
    _answer(device, rid, status, publish.payload)


class AzureDialect(Dialect):
    """See the module docstring."""

    name = "azure"

    def __init__(self, twins: DeviceTwins | None = None, token_policy: TokenPolicy | None = None) -> None:
        self.twins = twins
        """Answers twin requests from the registry (None: a hub without twins, see
        :func:`~methodhub.dialects.azure.twin.answer_twin_request`)."""
        self.token_policy = token_policy or DEFAULT_TOKEN_POLICY
        """Token lifetime and clock skew the hub accepts."""

    def claims(self, connect: Connect) -> bool:
        username = connect.username
        return username is not None and "/" in username and "&" not in username.partition("/?")[0]

    async def authenticate(
        self,
        connect: Connect,
        ctx: AuthContext,
        *,
        use_cache: bool = True,
        client_certificate: ClientCertificate | None = None,
    ) -> Principal:
        client_id = connect.client_id
        device_id, _, module_id = client_id.partition("/")
        if not device_id or "/" in module_id:
            raise ConnectRefused(
                ConnackCode.IDENTIFIER_REJECTED,
                f"client id '{client_id}' must be a device id or '{{deviceId}}/{{moduleId}}'",
            )
        self._check_username(connect.username or "", client_id, ctx)
        if connect.password is None:
            if client_certificate is not None:  # X.509: Azure's SDKs send no password
                return await self._authenticate_x509(client_certificate, device_id, module_id or None, ctx)
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD,
                "no password; send a SAS token as the password, or connect over TLS with the "
                "device's X.509 certificate",
            )
        try:
            password = connect.password.decode("utf-8")
        except UnicodeDecodeError:
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD, "the password is not UTF-8 text; send a SAS token"
            ) from None
        key = identity_key(device_id, module_id or None)
        cache_key = f"{key}\n{password}"
        now = time.time()
        if use_cache:
            cached = ctx.tokens.get(cache_key, now)
            if cached is not None:
                return cached
        try:
            token = SasToken.parse(password)
        except SasTokenError as exc:
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD, f"the password is not a valid SAS token: {exc}"
            ) from None
        try:
            verified = await verify_device_token(
                token, device_id, module_id or None, ctx.registry, ctx.hostname, now, self.token_policy
            )
        except TokenRefused as refused:
            code = (
                ConnackCode.SERVER_UNAVAILABLE
                if refused.cause == "unavailable"
                else ConnackCode.NOT_AUTHORIZED
            )
            raise ConnectRefused(code, refused.reason) from None
        principal = Principal(device_id, module_id or None, key, self, expires_at=verified.expires_at)
        if not token.key_name:
            ctx.tokens.put(cache_key, principal, verified.expires_at, key)
        return principal

    async def _authenticate_x509(
        self, certificate: ClientCertificate, device_id: str, module_id: str | None, ctx: AuthContext
    ) -> Principal:
        try:
            verified = await verify_device_certificate(
                certificate, device_id, module_id, ctx.registry, time.time()
            )
        except TokenRefused as refused:
            code = (
                ConnackCode.SERVER_UNAVAILABLE
                if refused.cause == "unavailable"
                else ConnackCode.NOT_AUTHORIZED
            )
            raise ConnectRefused(code, refused.reason) from None
        return Principal(
            device_id,
            module_id,
            verified.key,
            self,
            expires_at=verified.expires_at,
            attributes={"x509": True},
        )

    def _check_username(self, username: str, client_id: str, ctx: AuthContext) -> None:
        head, sep, _query = username.partition("/?")
        if not sep:
            head = username.rstrip("/")
        suffix = "/" + client_id
        if not head.endswith(suffix) or len(head) == len(suffix):
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD,
                f"user name must be '{ctx.hostname}/{client_id}/?api-version=...', got '{username}'",
            )
        host = head[: -len(suffix)]
        if not ctx.host_matches(host):
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD,
                f"user name names host '{host}', but this hub is '{ctx.hostname}'",
            )

    # -- topics ---------------------------------------------------------------------------------------

    def _own_prefixes(self, device: DeviceView) -> tuple[str, ...]:
        principal = device.principal
        if principal.module_id:
            return (f"devices/{principal.device_id}/modules/{principal.module_id}/inputs/",)
        return (f"devices/{principal.device_id}/messages/devicebound/",)

    def grant(self, device: DeviceView, topic_filter: str, qos: int) -> int:
        if (
            topic_filter.startswith(METHODS_PREFIX)
            or topic_filter.startswith(TWIN_SUBSCRIPTIONS)
            or topic_filter.startswith(self._own_prefixes(device))
        ):
            if topic_matches(topic_filter, DESIRED_PROBE) and not isinstance(
                device.dialect_state, DesiredState
            ):
                device.dialect_state = DesiredState(time.time())
            return min(qos, 1)  # Azure grants QoS 1 for a QoS 2 request
        return SUBSCRIPTION_REFUSED

    def is_ready(self, device: DeviceView) -> bool:
        return any(f.startswith(METHODS_PREFIX) for f in device.subscriptions)

    def encode_call(self, device: DeviceView, call: Call, seq: int) -> tuple[str, str, bytes]:
        check_method_call(call, device.key, "MQTT")
        rid = format(seq, "x")
        topic = request_topic(call.method, rid)
        subscriptions = device.subscriptions
        if METHODS_FILTER not in subscriptions and not any(topic_matches(f, topic) for f in subscriptions):
            raise HubError(
                ErrorKind.DEVICE_OFFLINE,
                f"Device '{device.key}' has not subscribed to method '{call.method}'.",
            )
        return rid, topic, call.payload

    def request_properties(self, device: DeviceView, rid: str) -> dict[str, Any] | None:
        return {"response_topic": MQTT5_RESPONSE_TOPIC, "correlation_data": rid.encode("ascii")}

    def on_publish(self, device: DeviceView, publish: Publish) -> bool | Reply | PendingReply:
        topic = publish.topic
        if topic.startswith(RESPONSE_PREFIX):
            parsed = parse_response_topic(topic)
            if parsed is None:
                device.count_stray()
                return True
            status, rid = parsed
            _answer(device, rid, status, publish.payload)
            return True
        if topic == MQTT5_RESPONSE_TOPIC:
            _answer_mqtt5(device, publish)
            return True
        principal = device.principal
        events = f"devices/{principal.device_id}/" + (
            f"modules/{principal.module_id}/messages/events/" if principal.module_id else "messages/events/"
        )
        if topic.startswith(events) or topic == events[:-1]:
            device.count_telemetry()
            return True
        if topic.startswith(TWIN_PREFIX):
            return self._answer_twin(device, topic, publish.payload)
        return False

    def _answer_twin(self, device: DeviceView, topic: str, payload: bytes) -> bool | Reply | PendingReply:
        """``$iothub/twin/{OPERATION}/{resource}/?$rid={rid}``, answered as over AMQP
        (:class:`~methodhub.dialects.azure.twin.DeviceTwins`) on
        ``$iothub/twin/res/{status}/?$rid={rid}`` (``&$version=`` after a reported PATCH) when the
        device subscribed to it."""
        path, _, query = topic.partition("/?")
        rid = query_value(query, "$rid")
        if rid is None:
            return True
        operation, _, resource = path.removeprefix(TWIN_PREFIX).partition("/")
        if self.twins is None:
            answer = answer_twin_request(operation, "/" + resource if resource else None)
            return self._twin_reply(device, rid, answer) or True
        return self._reply_when(
            self.twins, device, rid, operation, "/" + resource if resource else None, payload
        )

    def twin_notifications(self, device: DeviceView, twin: Twin) -> list[Reply]:
        """``$iothub/twin/PATCH/properties/desired/?$version={v}`` with the patch (and ``$version``)
        for each change the device has not been sent, when it subscribed to them."""
        if not any(topic_matches(f, DESIRED_PROBE) for f in device.subscriptions):
            return []
        state = device.dialect_state
        if not isinstance(state, DesiredState):  # a persisted subscription, restored at CONNECT
            state = device.dialect_state = DesiredState(time.time() - RESTORED_SUBSCRIPTION_GRACE)
        updates, state.sent = desired_updates(twin, state.sent, state.subscribed_at)
        return [(f"{DESIRED_NOTIFICATION_PREFIX}?$version={v}", payload) for v, payload in updates]

    @classmethod
    async def _reply_when(
        cls,
        twins: DeviceTwins,
        device: DeviceView,
        rid: str,
        operation: str,
        resource: str | None,
        body: bytes,
    ) -> Reply | None:
        principal = device.principal
        answer = await twins.answer(principal.device_id, principal.module_id, operation, resource, body)
        return cls._twin_reply(device, rid, answer)

    @staticmethod
    def _twin_reply(device: DeviceView, rid: str, answer: TwinAnswer) -> Reply | None:
        response_topic = f"{TWIN_RESPONSE_PREFIX}{answer.status}/?$rid={rid}"
        if answer.version is not None:
            response_topic += f"&$version={answer.version}"
        if any(topic_matches(f, response_topic) for f in device.subscriptions):
            return response_topic, answer.body
        return None
