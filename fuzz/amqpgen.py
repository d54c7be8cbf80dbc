"""AMQP 1.0 device dialogues, built by hand, and their mutations (the ``amqp``, ``amqps`` and
``amqpws`` targets).

A dialogue is what an Azure AMQP device sends (azure-amqp-wire.md): the protocol header — with a
SASL layer (ANONYMOUS, MSSBCBS, PLAIN ``{deviceId}@sas.{hub}`` with a SAS token, or a mechanism the
hub does not offer) or without — then ``open``, ``begin``, the two ``$cbs`` links, a CBS put-token
(valid, or refused in one of a dozen ways), the two direct-methods links on
``/devices/{id}/methods/devicebound`` and, sometimes, the telemetry / cloud-to-device / twin links,
then a body of method responses, telemetry, renewal put-tokens, flows, dispositions, empty frames,
other links and sessions, and maybe detach / end / close. A unit is one frame (or a protocol
header); ``wait_after`` marks where a real device waits for the hub's answer (after its ``$cbs``
links were granted credit, after its put-token, after its methods links) — the transfers that
follow need that credit and that authorization.

Half of the frames get fuzzed field values that keep them well-formed (link names, addresses,
properties, message ids of every type, settle modes, credits, bodies, open's limits): the hub must
serve them. Then 0–8 mutations (:func:`AmqpGenerator.dialogue`): structure-aware ones on a frame's
value tree (:func:`fuzz.amqpvalues.mutate_value`), byte-level ones on its encoding (flips, cuts, a
wrong frame size, data offset, type or channel), and sequence ones (duplicates, frames before
``open``, transfers on unknown handles, frames on channels with no session, a handle attached
twice, a second ``open`` or header, junk, frames over max-frame-size, floods of empty frames,
sessions or links, a delivery that never completes, ...).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from bench.common import sign

from fuzz.amqpframes import (
    AMQP_HEADER,
    COPIES,
    HEADER_SECTION,
    HUB_MAX_FRAME_SIZE,
    SASL_HEADER,
    SASL_RESPONSE,
    SOURCE,
    TARGET,
    WELL_FORMED,
    Piece,
    application_properties,
    attach_frame,
    begin_frame,
    close_frame,
    data_section,
    detach_frame,
    disposition_frame,
    end_frame,
    error_value,
    flow_frame,
    message_id,
    open_frame,
    outcome_value,
    properties_section,
    sasl_init,
    terminus,
    transfer_frame,
    value_section,
)
from fuzz.amqpmutate import mutate
from fuzz.amqpvalues import (
    V,
    binary,
    boolean,
    composite,
    enc,
    int32,
    map_value,
    null,
    string,
    symbol,
    symbol_array,
    timestamp,
    ulong,
    uuid_value,
)
from fuzz.mqttgen import Credentials, Unit, _text

API_VERSION = "2021-04-12"
TOKEN_TYPES = ("servicebus.windows.net:sastoken", "azure-devices.net:sastoken")
EXPIRED = 1_000_000_000
"""2001-09-09: the expiry of the "expired" tokens (fixed, so a seed gives the same bytes every run)."""
TOKEN_EXPIRY = 4102444800
"""2100-01-01, as the harness's device tokens (fuzz/hub.py)."""
CREDIT_CAP = 80
"""Transfers per link in one stage: the hub grants 100 and tops up once it has handled a batch."""


@dataclass(slots=True)
class AmqpDialogue:
    """What to send on one AMQP connection.

    Attributes:
        units: the frames (and headers), encoded.
        frames: how many of them are frames (protocol headers and junk not counted).
        mutations: frames value-fuzzed or mutated (copies of well-formed frames not counted), as
            MQTT's are counted.
        malformed: frames that may be malformed (mutated; value-fuzzed ones and copies are not).
        authenticated: the dialogue carries a valid put-token or SASL PLAIN for a fuzz device.
        sasl_plain: its SASL layer is PLAIN (an ``ok`` outcome then means the hub authorized it).
        put_token_answered: it has a put-token the hub must answer (valid or not, 200 or 40x): the
            frames up to it are well-formed, its ``$cbs`` receiver has credit and window, and a
            device waiting where ``wait_after`` says gets the answer before it sends more.
    """

    units: list[Unit]
    frames: int
    mutations: int
    malformed: int
    authenticated: bool
    sasl_plain: bool
    put_token_answered: bool = False


def _ascii(rng: random.Random) -> str:
    return "".join(rng.choices("abcXYZ019-_.:/", k=rng.randint(1, 20)))


# -- dialogues --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Link:
    handle: int
    channel: int
    kind: str
    """"cbs-out", "cbs-in", "methods-out", "methods-in", "events", "c2d", "twin-out", "twin-in", "other"."""
    receiver: bool
    transfers: int = 0


@dataclass(slots=True)
class _Session:
    channel: int
    next_delivery: int = 0
    next_handle: int = 0
    links: list[_Link] = field(default_factory=list)


class _Dialogue:
    """The state of one dialogue while its frames are made (sessions, handles, delivery ids)."""

    def __init__(self, gen: AmqpGenerator, rng: random.Random, device: Credentials) -> None:
        self.gen = gen
        self.rng = rng
        self.device = device
        self.pieces: list[Piece] = []
        self.sessions: list[_Session] = []
        self.authenticated = False
        self.authorized = False
        self.answered: Piece | None = None
        """The (last frame of the) first put-token: the hub answers it, whatever its token says."""
        """The dialogue's identity will be authorized once its put-token (or PLAIN) is verified."""

    # -- helpers --

    def soft(self) -> bool:
        """Whether the next frame gets fuzzed (well-formed) field values."""
        return self.rng.random() < 0.5

    def add(self, label: str, body: V | None, channel: int = 0, **kw: object) -> Piece:
        piece = Piece(label, body, channel=channel, **kw)  # type: ignore[arg-type]
        self.pieces.append(piece)
        return piece

    def new_session(self, channel: int) -> _Session:
        rng = self.rng
        soft = self.soft()
        session = _Session(channel)
        body = begin_frame(
            next_outgoing_id=rng.randrange(1 << 32) if soft else 0,
            incoming_window=rng.choice((1, 100, 2048, 0xFFFFFFFF)) if soft else 2048,
            outgoing_window=rng.choice((0, 1, 100, 0xFFFFFFFF)) if soft else 0xFFFFFFFF,
            handle_max=rng.choice((None, 255, 1000, 0xFFFFFFFF)) if soft else None,
        )
        self.add(f"begin ch{channel}", body, channel, mutated="value" if soft else "")
        self.sessions.append(session)
        return session

    def attach(
        self,
        session: _Session,
        kind: str,
        address: str | None,
        *,
        receiver: bool,
        name: str | None = None,
        properties: V | None = None,
    ) -> _Link:
        rng = self.rng
        soft = self.soft()
        handle = session.next_handle
        session.next_handle += 1
        link = _Link(handle, session.channel, kind, receiver)
        session.links.append(link)
        if name is None:
            name = f"{kind}-{uuid.UUID(int=rng.getrandbits(128))}"
        if soft:
            name = rng.choice((name, _text(rng) or "n", "l" * rng.choice((1, 255, 300, 5000))))
        ours = terminus(TARGET if receiver else SOURCE, None if rng.random() < 0.7 else _text(rng))
        theirs = terminus(SOURCE if receiver else TARGET, address)
        if soft and rng.random() < 0.3:
            ours = null()
        body = attach_frame(
            name,
            handle,
            receiver=receiver,
            source=theirs if receiver else ours,
            target=ours if receiver else theirs,
            snd_settle_mode=rng.choice((None, 0, 1, 2)) if soft else None,
            rcv_settle_mode=rng.choice((None, 0, 1)) if soft else (0 if kind.startswith("methods") else None),
            max_message_size=rng.choice((None, 0, 512, 1 << 20, (1 << 64) - 1)) if soft else None,
            properties=properties,
        )
        role = "receiver" if receiver else "sender"
        self.add(f"attach {role} h{handle} {address}", body, session.channel, mutated="value" if soft else "")
        return link

    def flow(
        self, session: _Session, link: _Link | None, credit: int = 1000, open_: bool = False, **kw: object
    ) -> Piece:
        """A flow; ``open_``: its fuzzed values never shut the window or the credit, nor drain it (the
        hub must be able to answer on the link)."""
        rng = self.rng
        soft = self.soft()
        if soft:
            credit = rng.choice((1, 50, 1000, 0xFFFFFFFF) if open_ else (0, 1, 50, 1000, 0xFFFFFFFF))
            kw.setdefault("echo", rng.random() < 0.3)
            if not open_:  # a drain gives the credit back at once (the hub queues nothing for it)
                kw.setdefault("drain", rng.random() < 0.1)
        windows = (1, 2048, 0xFFFFFFFF) if open_ else (0, 1, 2048, 0xFFFFFFFF)
        body = flow_frame(
            incoming_window=rng.choice(windows) if soft else 2048,
            handle=link.handle if link is not None else None,
            delivery_count=(link.transfers if not link.receiver else 0) if link is not None else None,
            link_credit=credit if link is not None else None,
            **kw,  # type: ignore[arg-type]
        )
        what = f"h{link.handle} credit {credit}" if link is not None else "session"
        return self.add(f"flow {what}", body, session.channel, mutated="value" if soft else "")

    def transfer(
        self,
        session: _Session,
        link: _Link,
        label: str,
        sections: list[V],
        *,
        settled: bool | None = None,
        soft: bool = False,
    ) -> Piece | None:
        """A one-frame delivery (split in several frames when its message is large)."""
        if link.transfers >= CREDIT_CAP:
            return None
        link.transfers += 1
        rng = self.rng
        delivery = session.next_delivery
        session.next_delivery += 1
        tag = rng.randbytes(rng.choice((0, 1, 16, 32))) if soft else delivery.to_bytes(4, "big")
        message = b"".join(enc(s) for s in sections)
        limit = HUB_MAX_FRAME_SIZE - 200
        if len(message) <= limit and rng.random() < 0.95:
            return self.add(
                label,
                transfer_frame(link.handle, delivery, tag, settled=settled),
                session.channel,
                sections=sections,
                mutated="value" if soft else "",
            )
        # several frames: the first carries delivery-id and tag, the others more=True until the last
        cut = max(1, min(limit, len(message) // rng.choice((2, 3)) or 1))
        parts = [message[i : i + cut] for i in range(0, len(message), cut)] or [b""]
        first: Piece | None = None
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            body = transfer_frame(
                link.handle,
                delivery if i == 0 else None,
                tag if i == 0 else None,
                settled=settled if i == 0 else None,
                more=not last,
            )
            piece = self.add(f"{label} (part {i + 1}/{len(parts)})", body, session.channel, payload=part)
            first = first or piece
        return first

    # -- the stages --

    def sasl(self) -> str:
        """The SASL layer (or none); the mechanism."""
        gen, rng, device = self.gen, self.rng, self.device
        mechanism = rng.choices(
            ("", "ANONYMOUS", "MSSBCBS", "PLAIN", "PLAIN-bad", "EXTERNAL", "unknown"),
            (45, 12, 12, 14, 8, 4, 5),
        )[0]
        if not mechanism:
            self.pieces.append(Piece("header AMQP 0 1 0 0", raw=AMQP_HEADER))
            return ""
        self.pieces.append(Piece("header SASL 3 1 0 0", raw=SASL_HEADER))
        hostname: str | None = rng.choice((gen.hostname, None, gen.hostname.upper()))
        refused = ""
        if mechanism == "PLAIN":
            user = f"{device.device_id}@sas.{gen.hostname.split('.')[0]}"
            response: bytes | None = b"\0" + user.encode() + b"\0" + device.password.encode()
            label = f"sasl-init PLAIN {user} (valid SAS token)"
            self.authenticated = self.authorized = True
        elif mechanism == "PLAIN-bad":
            kind = rng.randrange(7)
            user = f"{device.device_id}@sas.{gen.hostname}"
            bad: tuple[bytes, str] = (
                (b"\0" + user.encode() + b"\0SharedAccessSignature sr=x&sig=y&se=1", "wrong token"),
                (b"\0" + user.encode() + b"\0" + gen.token(device, expiry=1).encode(), "expired token"),
                (
                    b"\0" + f"{device.device_id}@sas.otherhub".encode() + b"\0" + device.password.encode(),
                    "other hub",
                ),
                (
                    b"\0nobody@sas." + gen.hostname.encode() + b"\0" + device.password.encode(),
                    "unknown device",
                ),
                (user.encode() + b"\0" + device.password.encode(), "no authzid NUL"),
                (b"\0\xff\xfe@sas." + gen.hostname.encode() + b"\0\xff", "invalid UTF-8"),
                (b"", "empty response"),
            )[kind]
            response, label = bad[0], f"sasl-init PLAIN ({bad[1]})"
            mechanism = "PLAIN"
        elif mechanism == "unknown":
            mechanism = rng.choice(("SCRAM-SHA-256", "CRAM-MD5", "", "plain", "X" * 300))
            response, label = None, f"sasl-init {mechanism[:20]!r} (not offered)"
            refused = "unoffered mechanism"
        else:
            response = rng.choice((None, b"", b"anonymous@example.org")) if mechanism != "EXTERNAL" else None
            label = f"sasl-init {mechanism}"
        body = sasl_init(mechanism, response, hostname)
        wait = "answer" if rng.random() < 0.5 else ""
        self.pieces.append(Piece(label, body, frame_type=1, wait_after=wait, mutated=refused))
        if rng.random() < 0.04:  # a SASL response nobody asked for
            unasked = composite(SASL_RESPONSE, [binary(b"x")])
            self.pieces.append(
                Piece("sasl-response (unasked)", unasked, frame_type=1, mutated="unasked sasl-response")
            )
        self.pieces.append(Piece("header AMQP 0 1 0 0", raw=AMQP_HEADER))
        return mechanism

    def open(self) -> None:
        rng = self.rng
        soft = self.soft()
        container = str(uuid.UUID(int=rng.getrandbits(128)))
        body = open_frame(
            rng.choice((container, "", _text(rng), "c" * 300)) if soft else container,
            rng.choice((self.gen.hostname, None, _text(rng))) if soft else self.gen.hostname,
            max_frame_size=rng.choice((None, 512, 4096, 65536, 0xFFFFFFFF, 0, 100)) if soft else None,
            channel_max=rng.choice((None, 255, 1000, 65535)) if soft else None,
            idle_time_out=rng.choice((None, 0, 10, 1000, 120000, 240000, 0xFFFFFFFF)) if soft else None,
            properties=(
                map_value([(symbol("com.microsoft:client-version"), string(_text(rng)))])
                if soft and rng.random() < 0.5
                else None
            ),
            capabilities=symbol_array(["ANONYMOUS-RELAY", _ascii(rng)])
            if soft and rng.random() < 0.3
            else None,
        )
        self.add("open", body, 0, mutated="value" if soft else "")

    def cbs(self, session: _Session) -> tuple[_Link, _Link]:
        out = self.attach(session, "cbs-out", "$cbs", receiver=False)
        into = self.attach(session, "cbs-in", "$cbs", receiver=True)
        self.flow(session, into, credit=100, open_=True).wait_after = "answer"
        return out, into

    def put_token(self, session: _Session, out: _Link, renewal: bool = False) -> bool:
        """A put-token on the ``$cbs`` sender; whether it is valid."""
        gen, rng, device = self.gen, self.rng, self.device
        resource = f"{gen.hostname}/devices/{device.device_id}"
        name = rng.choice((resource.replace("/", "%2F"), resource, resource.replace("/", "%2f")))
        token = device.password
        token_type = rng.choice(TOKEN_TYPES)
        operation = "put-token"
        body = value_section(string(token))
        valid = rng.random() < (0.7 if not renewal else 0.8)
        what = "valid"
        if not valid:
            kind = rng.randrange(12)
            other = rng.choice([d for d in gen.devices if d.device_id != device.device_id] or [device])
            if kind == 0:
                token, what = token.replace("sig=", "sig=AA"), "wrong signature"
            elif kind == 1:
                token, what = gen.token(device, expiry=EXPIRED), "expired"
            elif kind == 2:
                token, what = other.password, "another device's token"
            elif kind == 3:
                name, what = f"{gen.hostname}%2Fdevices%2F{device.device_id}%2Fmodules%2Fm1", "a module"
                token = gen.token(device, module="m1")
            elif kind == 4:
                token_type, what = rng.choice(("jwt", "", "servicebus.windows.net:jwt")), "token type"
            elif kind == 5:
                operation, what = rng.choice(("get-token", "", "PUT-TOKEN")), "operation"
            elif kind == 6:
                name, what = rng.choice((gen.hostname, "", "%ZZ", "localhost%2Fdevices%2F")), "audience"
            elif kind == 7:
                body, what = value_section(binary(token.encode())), "binary body"
            elif kind == 8:
                body, what = data_section(token.encode()), "data body"
            elif kind == 9:
                token, what = (
                    rng.choice(
                        ("", "SharedAccessSignature", "x" * 5000, "SharedAccessSignature sr=&sig=&se=")
                    ),
                    "garbage",
                )
            elif kind == 10:
                name, what = f"{gen.hostname}%2Fdevices%2Ffuzz-unknown", "unknown device"
                token = sign(f"{gen.hostname}/devices/fuzz-unknown", "a2V5", TOKEN_EXPIRY)
            else:
                token, what = gen.token(device, expiry=(1 << 62)), "se far beyond 2100"
            if kind not in (7, 8):
                body = value_section(string(token))
        app: list[tuple[str, V]] = [
            ("operation", string(operation)),
            ("type", string(token_type)),
            ("name", string(name)),
        ]
        if valid and rng.random() < 0.2:
            app.append(("expiration", timestamp(TOKEN_EXPIRY * 1000)))
        if not valid and rng.random() < 0.1:
            del app[rng.randrange(len(app))]
        sections = [
            properties_section(
                message_id(rng), to=rng.choice(("$cbs", None)), reply_to=rng.choice(("cbs", None))
            ),
            application_properties(app),
            body,
        ]
        label = f"transfer put-token {device.device_id} ({what}){' renewal' if renewal else ''}"
        piece = self.transfer(session, out, label, sections, settled=rng.choice((None, False, True)))
        if piece is not None and not renewal:
            self.pieces[-1].wait_after = "put-token"  # after the delivery's last frame
            self.answered = self.pieces[-1]
        return valid

    def methods(self, session: _Session) -> tuple[_Link, _Link]:
        rng = self.rng
        device_id = self.device.device_id
        address = rng.choices(
            (
                f"/devices/{device_id}/methods/devicebound",
                f"amqps://{self.gen.hostname}/devices/{device_id}/methods/devicebound",
                f"amqps://{self.gen.hostname}:5671/devices/{device_id}/methods/deviceBound",
            ),
            (70, 15, 15),
        )[0]
        correlation = f"methods:{uuid.UUID(int=rng.getrandbits(128))}"
        props = map_value(
            [
                (symbol("com.microsoft:api-version"), string(API_VERSION)),
                (symbol("com.microsoft:channel-correlation-id"), string(correlation)),
            ]
        )
        out = self.attach(session, "methods-out", address, receiver=False, properties=props)
        into = self.attach(session, "methods-in", address, receiver=True, properties=props.copy())
        self.flow(session, into, credit=1000)
        return out, into

    def other_links(self, session: _Session) -> list[_Link]:
        rng = self.rng
        device_id = self.device.device_id
        links = []
        if rng.random() < 0.3:
            links.append(
                self.attach(session, "events", f"/devices/{device_id}/messages/events", receiver=False)
            )
        if rng.random() < 0.2:
            c2d = self.attach(session, "c2d", f"/devices/{device_id}/messages/devicebound", receiver=True)
            links.append(c2d)
            self.flow(session, c2d, credit=10)
        if rng.random() < 0.15:
            links.append(self.attach(session, "twin-out", f"/devices/{device_id}/twin", receiver=False))
            links.append(self.attach(session, "twin-in", f"/devices/{device_id}/twin", receiver=True))
        if rng.random() < 0.2:
            address = rng.choice(
                (
                    "/devices/fuzz-canary/methods/devicebound",  # another device: not authorized
                    f"/devices/{device_id}/modules/m1/methods/devicebound",
                    "/messages/serviceBound/feedback",
                    "$management",
                    "",
                    "/devices/%2F/methods/devicebound",
                    _text(rng),
                )
            )
            links.append(self.attach(session, "other", address, receiver=rng.random() < 0.5))
        return links

    def body(self, session: _Session, links: dict[str, _Link], count: int) -> None:
        """``count`` frames of what a connected device sends, drawn by weight among those its links
        allow: method responses, telemetry, renewal put-tokens, flows, dispositions, empty frames,
        more links, another session, detaches."""
        rng = self.rng
        for _ in range(count):
            actions = {
                "response": 35 if "methods-out" in links else 0,
                "telemetry": 10 if "events" in links else 0,
                "renewal": 4 if "cbs-out" in links else 0,
                "flow": 12,
                "disposition": 10,
                "empty": 10,
                "links": 5,
                "session": 4,
                "detach": 3 if links else 0,
            }
            action = rng.choices(list(actions), list(actions.values()))[0]
            soft = self.soft()
            if action == "response":
                self.method_response(session, links["methods-out"], soft, big=rng.random() < 0.02)
            elif action == "telemetry":
                payload = rng.randbytes(rng.randrange(64)) if soft else b'{"t":1}'
                self.transfer(
                    session, links["events"], "transfer telemetry", [data_section(payload)], soft=soft
                )
            elif action == "renewal":
                self.put_token(session, links["cbs-out"], renewal=True)
            elif action == "flow":
                link = rng.choice(list(links.values())) if links and rng.random() < 0.7 else None
                self.flow(session, link, credit=rng.choice((10, 100, 1000)))
            elif action == "disposition":
                first = rng.randrange(max(1, session.next_delivery + 2))
                last = first + rng.choice((0, 0, 1, 10, 1000)) if rng.random() < 0.5 else None
                self.add(
                    f"disposition {first}..{last}",
                    disposition_frame(
                        first, last, rng.random() < 0.8, outcome_value(rng) if rng.random() < 0.8 else None
                    ),
                    session.channel,
                )
            elif action == "empty":
                self.add("empty frame (heartbeat)", None, session.channel)
            elif action == "links":
                self.other_links(session)
            elif action == "session":  # another session, used a little, then ended
                taken = {s.channel for s in self.sessions}
                channel = next(c for c in range(1, 300) if c not in taken)
                other = self.new_session(channel)
                if rng.random() < 0.5:
                    self.cbs(other)
                self.add(f"end ch{channel}", end_frame(), channel)
            else:
                key = rng.choice(list(links))
                link = links.pop(key)
                error = error_value("amqp:link:detach-forced", "bye") if rng.random() < 0.3 else None
                self.add(
                    f"detach h{link.handle} ({key})",
                    detach_frame(link.handle, rng.random() < 0.8, error),
                    session.channel,
                )

    def method_response(self, session: _Session, link: _Link, soft: bool, big: bool = False) -> None:
        rng = self.rng
        correlation = uuid_value(uuid.UUID(int=rng.getrandbits(128)))
        if soft:
            correlation = rng.choice((correlation, message_id(rng), string("not-a-uuid")))
        status: V = int32(rng.choice((200, 404, 500)))
        if soft and rng.random() < 0.5:
            status = rng.choice((int32(-(1 << 31)), ulong(200), string("200"), null(), int32((1 << 31) - 1)))
        payload = rng.choice((b'{"ok":true}', b"", b"null", b"[1,2]"))
        if soft:
            payload = rng.choice((rng.randbytes(rng.randrange(64)), _text(rng).encode(), b'{"a":' * 30))
        too_big = big and rng.random() < 0.25
        if big:  # the hub takes messages up to 260 KiB
            payload = b'"' + b"x" * (300_000 if too_big else rng.choice((70_000, 140_000))) + b'"'
        sections = [
            properties_section(correlation_id=correlation),
            application_properties([("IoThub-status", status)]),
        ]
        if payload or rng.random() < 0.5:
            sections.append(data_section(payload))
        if soft and rng.random() < 0.2:
            sections.insert(0, composite(HEADER_SECTION, [boolean(True)]))
        first = self.transfer(
            session,
            link,
            f"transfer method response ({len(payload)} B)",
            sections,
            settled=rng.choice((None, False, True)),
            soft=soft,
        )
        if first is not None and too_big:
            first.mutated = "over max-message-size"

    def ending(self, session: _Session, links: dict[str, _Link]) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            for key, link in list(links.items())[: rng.randint(0, len(links))]:
                self.add(f"detach h{link.handle} ({key})", detach_frame(link.handle), session.channel)
            self.add(f"end ch{session.channel}", end_frame(), session.channel)
            self.add("close", close_frame())
        elif roll < 0.4:
            self.add(
                "close",
                close_frame(error_value("amqp:internal-error", "bye") if rng.random() < 0.2 else None),
            )


class AmqpGenerator:
    """Builds and mutates AMQP device dialogues from a :class:`random.Random`."""

    def __init__(self, devices: list[Credentials], hostname: str, keys: dict[str, str] | None = None) -> None:
        self.devices = devices
        self.hostname = hostname
        self.keys = keys or {}
        """Device id -> key, to sign tokens of other kinds (expired, for a module); without a key
        the device's own token stands in."""

    def token(self, device: Credentials, *, expiry: int = TOKEN_EXPIRY, module: str | None = None) -> str:
        key = self.keys.get(device.device_id)
        if key is None:
            return device.password
        resource = f"{self.hostname}/devices/{device.device_id}" + (f"/modules/{module}" if module else "")
        return sign(resource, key, expiry)

    def dialogue(self, rng: random.Random) -> AmqpDialogue:
        d = _Dialogue(self, rng, rng.choice(self.devices))
        mechanism = d.sasl()
        d.open()
        session = d.new_session(0 if rng.random() < 0.85 else rng.randrange(1, 256))
        links: dict[str, _Link] = {}
        stop = rng.random()
        if stop < 0.05:  # open and begin only
            pass
        else:
            if rng.random() < 0.92:
                links["cbs-out"], links["cbs-in"] = d.cbs(session)
                if stop >= 0.1 and d.put_token(session, links["cbs-out"]):
                    d.authenticated = d.authorized = True
            if stop >= 0.15:
                before = len(d.pieces)
                if d.authorized or rng.random() < 0.15:  # unauthorized: the hub refuses the links
                    links["methods-out"], links["methods-in"] = d.methods(session)
                for link in d.other_links(session):
                    links.setdefault(link.kind, link)
                if len(d.pieces) > before:  # the links' credit comes with the hub's answer
                    d.pieces[-1].wait_after = "answer"
                size = rng.choices(
                    (rng.randint(0, 3), rng.randint(4, 40), rng.randint(40, 150), rng.randint(150, 400)),
                    (3, 5, 2, 1),
                )[0]
                d.body(session, links, size)
        d.ending(session, links)
        pieces = d.pieces
        for _ in range(rng.choices((0, 1, 2, 3, 8), (15, 45, 20, 12, 8))[0]):
            mutate(rng, pieces, self.hostname)
        units = [p.unit() for p in pieces]
        frames = sum(1 for p in pieces if p.is_frame)
        mutations = sum(1 for p in pieces if p.is_frame and p.mutated and p.mutated not in COPIES)
        malformed = sum(1 for p in pieces if p.is_frame and p.mutated not in WELL_FORMED)
        at = next((i for i, p in enumerate(pieces) if p is d.answered), None)
        answered = at is not None and all(p.mutated in WELL_FORMED for p in pieces[: at + 1])
        return AmqpDialogue(
            units, frames, mutations, malformed, d.authenticated, mechanism == "PLAIN", answered
        )
