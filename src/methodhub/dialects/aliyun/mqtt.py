"""Alibaba Cloud IoT Platform's MQTT dialect, as the Link SDK speaks it (aliyun-rrpc-wire.md §1).

* CONNECT: user name ``{deviceName}&{productKey}``; client id ``{clientId}|securemode=..,
  signmethod=..,timestamp=..,ext=1,_ss=1,...|``; password the device-secret signature
  (:mod:`methodhub.dialects.aliyun.signing`). Azure's user names always contain ``/`` and Alibaba's never do,
  so the two dialects claim disjoint CONNECTs.
* Server-side subscription (``_ss=1``): the Link SDK for Python subscribes nothing itself, so the
  hub subscribes the device to the topics it delivers calls on: system RRPC requests
  ``/sys/{pk}/{dn}/rrpc/request/+``, asynchronous services ``/sys/{pk}/{dn}/thing/service/+`` and, for
  ``ext=1`` devices, synchronous services ``/ext/rrpc/+/sys/{pk}/{dn}/thing/service/+``. Devices
  without ``_ss=1`` subscribe themselves.
* Calls, by :class:`~methodhub.calls.CallKind` (the front door chooses; the id is the call's
  MessageId, :mod:`methodhub.dialects.aliyun.calls`):

  ============================  ==================================================  =====================
  call                          request topic (payload)                             reply topic
  ============================  ==================================================  =====================
  MESSAGE                       ``/sys/{pk}/{dn}/rrpc/request/{id}`` (raw bytes)    ``…/rrpc/response/{id}``
  MESSAGE + topic, ``ext=1``    ``/ext/rrpc/{id}{topic}`` (raw bytes)               the same topic
  METHOD, ``ext=1``             ``/ext/rrpc/{id}/sys/{pk}/{dn}/thing/service/{m}``  the same topic
                                (Alink ``{"id","version","params","method"}``)      (``{"id","code","data"}``)
  METHOD ``async/{m}``          ``/sys/{pk}/{dn}/thing/service/{m}`` (Alink)        ``…/{m}_reply``, by id
  ============================  ==================================================  =====================

  An asynchronous service call (method ``async/{m}``, :func:`~methodhub.dialects.aliyun.calls.async_method`:
  a TSL's ``callType: async``) is answered on ``…/thing/service/{m}_reply`` (linkkit's
  ``thing_answer_service``, QoS 0), shared by every call to that service: a reply completes the call
  whose request ``id`` it carries; a reply with another id is a stray response; one that is no JSON
  object with an ``id`` ends the only call waiting on that topic with ``INVALID_DEVICE_RESPONSE``
  (with several waiting, it cannot say which: a stray response, and they time out).

  Without ``ext=1`` the custom-topic and service forms fall back to the system RRPC topics (with the
  same payloads): Alibaba documents it for custom-topic RRPC; for services it is our choice (wire doc
  §1.8 leaves it unconfirmed). Azure direct methods
  sent to an Alibaba device are METHOD calls: they arrive as synchronous thing services.
* A reply completes its call only on the exact reply topic of that call; anything else in the
  device's own namespace is accepted and dropped (a late or foreign message id counts as a stray
  response). Topics outside the device's namespace (another device's) close the connection, and
  subscriptions to them are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from methodhub import jsontext
from methodhub.auth.x509 import ClientCertificate
from methodhub.calls.model import Call, CallKind, CallOutcome
from methodhub.dialects.aliyun.calls import message_id, rrpc_topic, service_identifier
from methodhub.dialects.aliyun.signing import (
    DEFAULT_SIGN_METHOD,
    SIGN_METHODS,
    MqttClientId,
    verify_device_password,
)
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.auth import AuthContext
from methodhub.gateway.dialect import SUBSCRIPTION_REFUSED, ConnectRefused, DeviceView, Dialect, Principal
from methodhub.mqtt import ConnackCode, Connect, Publish, topic_matches
from methodhub.registry import validate_product_names

EXT_RRPC = "/ext/rrpc/"
MAX_TOPIC_BYTES = 128
"""Alibaba's limit on a topic (filter) a device uses [DOC 使用限制]; longer subscriptions are refused."""
CREDENTIAL_CACHE_SECONDS = 3600.0
"""How long a verified login (client id + user name + password) is remembered, so reconnect storms
cost no registry reads. Registry changes to the device drop it at once (change feed)."""
ALINK_VERSION = "1.0"


@dataclass(slots=True)
class _Expected:
    """A call in flight on an Alibaba session: its request id and how to read its reply."""

    rid: str
    kind: CallKind


@dataclass(slots=True)
class AliyunSessionState:
    """What the dialect keeps per session: reply topic → the call it answers."""

    expected: dict[str, _Expected] = field(default_factory=dict)


def _names(principal: Principal) -> tuple[str, str]:
    return principal.attributes["product_key"], principal.attributes["device_name"]


def _state(device: DeviceView) -> AliyunSessionState:
    state = device.dialect_state
    if not isinstance(state, AliyunSessionState):
        state = AliyunSessionState()
        device.dialect_state = state
    return state


def alink_request(request_id: str, identifier: str, params: bytes) -> bytes:
    """An Alink service request; ``params`` (JSON text) is embedded as it is. The id is a JSON
    string: the Link SDK for Python concatenates it to a string and fails on a number."""
    return b'{"id":"%s","version":"%s","params":%s,"method":"thing.service.%s"}' % (
        request_id.encode(),
        ALINK_VERSION.encode(),
        params or b"null",
        identifier.encode(),
    )


def alink_outcome(payload: bytes) -> CallOutcome | HubError:
    """An Alink reply ``{"id","code","data"}`` → the device's code and ``data`` (JSON text)."""
    try:
        reply = jsontext.loads(payload)
    except jsontext.NotJson:
        reply = None
    code = reply.get("code") if isinstance(reply, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        return HubError(
            ErrorKind.INVALID_DEVICE_RESPONSE,
            'The device answered a service call with something other than an Alink reply {"id": ..., '
            '"code": <integer>, "data": {...}}.',
        )
    return CallOutcome(code, jsontext.dumps(reply.get("data", {})))


def _async_key(reply_topic: str, request_id: str) -> str:
    """Where an asynchronous call waits in :attr:`AliyunSessionState.expected`: its reply topic is
    shared by every call to the service, so the request id is part of the key."""
    return f"{reply_topic}\n{request_id}"


def _alink_id(payload: bytes) -> str | None:
    """The ``id`` of an Alink reply (a JSON string, or a number some devices send), else None."""
    try:
        reply = jsontext.loads(payload)
    except jsontext.NotJson:
        return None
    request_id = reply.get("id") if isinstance(reply, dict) else None
    if isinstance(request_id, str):
        return request_id
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        return str(request_id)
    return None


class AliyunDialect(Dialect):
    """See the module docstring."""

    name = "aliyun"

    def claims(self, connect: Connect) -> bool:
        username = connect.username
        return username is not None and "&" in username and "/" not in username

    async def authenticate(
        self,
        connect: Connect,
        ctx: AuthContext,
        *,
        use_cache: bool = True,
        client_certificate: ClientCertificate | None = None,
    ) -> Principal:
        username = connect.username or ""
        device_name, _, product_key = username.partition("&")
        try:
            validate_product_names(product_key, device_name)
        except HubError as exc:
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD,
                f"user name must be '{{deviceName}}&{{productKey}}': {exc.message}",
            ) from None
        try:
            client_id = MqttClientId.parse(connect.client_id)
        except ValueError as exc:
            raise ConnectRefused(
                ConnackCode.IDENTIFIER_REJECTED,
                f"client id '{connect.client_id}' is not '{{clientId}}|securemode=..,signmethod=..,"
                f"timestamp=..|': {exc}",
            ) from None
        params = client_id.params
        if "authType" in params:
            raise ConnectRefused(
                ConnackCode.NOT_AUTHORIZED,
                "dynamic registration (authType) is not supported; register the device with "
                "`methodhub device create --product PK DN` and connect with its DeviceSecret",
            )
        sign_method = params.get("signmethod", DEFAULT_SIGN_METHOD)
        if sign_method not in SIGN_METHODS:
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD,
                f"signmethod '{sign_method}' is not supported; use {', '.join(sorted(SIGN_METHODS))}",
            )
        if connect.password is None:
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD,
                "no password; send the DeviceSecret signature as the password",
            )
        try:
            password = connect.password.decode("ascii")
        except UnicodeDecodeError:
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD, "the password is not a hex signature"
            ) from None
        cache_key = f"aliyun\n{connect.client_id}\n{username}\n{password}"
        if use_cache:
            cached = ctx.tokens.get(cache_key, time.time())
            if cached is not None:
                return cached
        try:
            device = await ctx.registry.get_product_device(product_key, device_name)
        except Exception as exc:
            raise ConnectRefused(
                ConnackCode.SERVER_UNAVAILABLE, f"the registry is unavailable: {exc}"
            ) from None
        if device is None:
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD,
                f"no device '{device_name}' of product '{product_key}' is registered",
            )
        if device.identity.status != "enabled":
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"device '{device.device_id}' is disabled")
        if not verify_device_password(
            password,
            device.device_secret,
            client_id.base,
            product_key,
            device_name,
            params.get("timestamp"),
            sign_method,
        ):
            raise ConnectRefused(
                ConnackCode.BAD_USERNAME_OR_PASSWORD,
                f"the password is not the {sign_method} signature of this client id with the DeviceSecret "
                f"of '{device.device_id}'",
            )
        principal = Principal(
            device.device_id,
            None,
            device.device_id,
            self,
            attributes={
                "product_key": product_key,
                "device_name": device_name,
                "ext": params.get("ext") == "1",
                "auto_subscribe": params.get("_ss") == "1",
                "securemode": params.get("securemode"),
            },
        )
        ctx.tokens.put(cache_key, principal, time.time() + CREDENTIAL_CACHE_SECONDS, device.device_id)
        return principal

    # -- topics ---------------------------------------------------------------------------------------

    def initial_subscriptions(self, principal: Principal) -> dict[str, int]:
        if not principal.attributes.get("auto_subscribe"):
            return {}
        product_key, device_name = _names(principal)
        subscriptions = {
            f"/sys/{product_key}/{device_name}/rrpc/request/+": 0,
            f"/sys/{product_key}/{device_name}/thing/service/+": 0,
        }
        if principal.attributes.get("ext"):
            subscriptions[f"{EXT_RRPC}+/sys/{product_key}/{device_name}/thing/service/+"] = 0
        return subscriptions

    def grant(self, device: DeviceView, topic_filter: str, qos: int) -> int:
        if len(topic_filter.encode()) <= MAX_TOPIC_BYTES and self._owns(device.principal, topic_filter):
            return min(qos, 1)
        return SUBSCRIPTION_REFUSED

    def _async_reply(
        self, device: DeviceView, state: AliyunSessionState, topic: str, payload: bytes
    ) -> _Expected | None:
        """Complete the asynchronous call a ``…_reply`` answers (see the module docstring); None if
        it answers none."""
        request_id = _alink_id(payload)
        if request_id is not None:
            expected = state.expected.pop(_async_key(topic, request_id), None)
            if expected is not None:
                device.complete(expected.rid, alink_outcome(payload))
            return expected
        prefix = _async_key(topic, "")
        waiting = [key for key in state.expected if key.startswith(prefix)]
        if len(waiting) != 1:
            return None
        expected = state.expected.pop(waiting[0])
        device.complete(
            expected.rid,
            HubError(
                ErrorKind.INVALID_DEVICE_RESPONSE,
                f"The device answered the asynchronous service call on {topic} with something other "
                'than an Alink reply {"id": "<the request id>", "code": <integer>, "data": {...}}.',
            ),
        )
        return expected

    def _owns(self, principal: Principal, topic: str) -> bool:
        """Whether ``topic`` (a name or a filter) is in the device's own namespace: its custom topics
        ``/{pk}/{dn}/...``, its system topics ``/sys/{pk}/{dn}/...``, ``/ext/rrpc/{id}`` followed by
        one of those, its OTA and shadow topics, and its product's broadcasts. Wildcards can only
        follow the levels naming the device, so no filter reaches another device's topics."""
        product_key, device_name = _names(principal)
        if topic.startswith(EXT_RRPC):
            message_id, slash, rest = topic[len(EXT_RRPC) :].partition("/")
            if not message_id or not slash or message_id == "#":
                return False
            topic = "/" + rest
        return topic.startswith((f"/{product_key}/{device_name}/", f"/sys/{product_key}/{device_name}/")) or (
            topic
            in (
                f"/ota/device/upgrade/{product_key}/{device_name}",
                f"/ota/device/inform/{product_key}/{device_name}",
                f"/ota/device/progress/{product_key}/{device_name}",
                f"/shadow/get/{product_key}/{device_name}",
                f"/shadow/update/{product_key}/{device_name}",
            )
            or topic.startswith(f"/broadcast/{product_key}/")
        )

    def is_ready(self, device: DeviceView) -> bool:
        product_key, device_name = _names(device.principal)
        probe = f"/sys/{product_key}/{device_name}/rrpc/request/0"
        return any(f.startswith(EXT_RRPC) or topic_matches(f, probe) for f in device.subscriptions)

    # -- calls ----------------------------------------------------------------------------------------

    def encode_call(self, device: DeviceView, call: Call, seq: int) -> tuple[str, str, bytes]:
        principal = device.principal
        product_key, device_name = _names(principal)
        rid = message_id(call.dialect_data) or str(seq)
        custom_topic = rrpc_topic(call.dialect_data)
        ext = bool(principal.attributes.get("ext"))
        system_request = f"/sys/{product_key}/{device_name}/rrpc/request/{rid}"
        system_reply = f"/sys/{product_key}/{device_name}/rrpc/response/{rid}"
        refusal = ErrorKind.DEVICE_OFFLINE
        if call.kind is CallKind.MESSAGE:
            payload = call.payload
            if custom_topic is not None and ext:
                if not custom_topic.startswith(f"/{product_key}/{device_name}/"):
                    raise HubError(
                        ErrorKind.INVALID_ARGUMENT,
                        f"The RRPC topic '{custom_topic}' is not one of device '{device.key}''s topics "
                        f"(/{product_key}/{device_name}/...).",
                    )
                topic = reply = f"{EXT_RRPC}{rid}{custom_topic}"
                hint = f"the RRPC topic '{EXT_RRPC}+{custom_topic}'"
            else:
                topic, reply, hint = system_request, system_reply, "system RRPC requests"
        else:
            identifier, asynchronous = service_identifier(call.method)
            if not identifier or any(c in identifier for c in "/+#"):
                raise HubError(
                    ErrorKind.INVALID_ARGUMENT, f"'{identifier}' cannot be a service identifier in a topic."
                )
            payload = alink_request(rid, identifier, call.payload)
            if asynchronous:
                topic = f"/sys/{product_key}/{device_name}/thing/service/{identifier}"
                reply = _async_key(f"{topic}_reply", rid)
                hint = (
                    f"asynchronous services (/sys/{product_key}/{device_name}/thing/service/+: connect "
                    "with _ss=1 or subscribe to it); the call is not retried"
                )
                refusal = ErrorKind.INVALID_ARGUMENT
            elif ext:
                topic = reply = f"{EXT_RRPC}{rid}/sys/{product_key}/{device_name}/thing/service/{identifier}"
                hint = "synchronous services"
            else:
                topic, reply, hint = system_request, system_reply, "system RRPC requests"
        if not any(topic_matches(f, topic) for f in device.subscriptions):
            # An async call comes from a queued call, whose delivery retries an "offline" device as
            # soon as it is ready (subscribed to RRPC): it would retry at once, again and again.
            raise HubError(refusal, f"Device '{device.key}' is connected but has not subscribed to {hint}.")
        state = _state(device)
        if len(state.expected) >= device.max_in_flight:
            # Calls that ended without a reply (timed out, abandoned) leave their entry behind.
            state.expected = {t: e for t, e in state.expected.items() if device.is_pending(e.rid)}
        state.expected[reply] = _Expected(rid, call.kind)
        return rid, topic, payload

    def on_publish(self, device: DeviceView, publish: Publish) -> bool:
        topic = publish.topic
        state = _state(device)
        expected = state.expected.pop(topic, None)
        if expected is None and topic.endswith("_reply") and state.expected:
            expected = self._async_reply(device, state, topic, publish.payload)
            if expected is not None:
                return True
        if expected is not None:
            if expected.kind is CallKind.MESSAGE:
                device.complete(expected.rid, CallOutcome(200, publish.payload))
            else:
                device.complete(expected.rid, alink_outcome(publish.payload))
            return True
        if not self._owns(device.principal, topic):
            return False
        product_key, device_name = _names(device.principal)
        services = f"/sys/{product_key}/{device_name}/thing/service/"
        if topic.startswith((EXT_RRPC, f"/sys/{product_key}/{device_name}/rrpc/response/")) or (
            topic.startswith(services) and topic.endswith("_reply") and "/" not in topic[len(services) :]
        ):
            device.count_stray()
        else:
            device.count_telemetry()
        return True
