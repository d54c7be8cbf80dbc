"""An AMQP device for gateway tests: a client-role AmqpConnection driving the hub's AMQP connection
through an in-memory transport, as the Node SDK does (wire doc §1-§4): bare AMQP header, open,
one session, the CBS sender then receiver, put-token, the methods sender then receiver (credit 1000)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from methodhub.amqp import (
    AmqpConnection,
    AmqpValue,
    ConnectionRole,
    Int,
    LinkRef,
    Message,
    Properties,
    SaslInit,
    Source,
    Target,
    decode_message,
    encode_message,
)
from methodhub.amqp.events import Event, LinkAttached, LinkDetached, MessageReceived, SessionBegun
from methodhub.dialects.azure.sas import generate_sas_token
from tests.unit.gateway.azure_hub import HOST, WAIT, Hub, MemoryTransport


def sas_token(device_id: str, key: str, expiry: float | None = None, module_id: str | None = None) -> str:
    resource = f"{HOST}/devices/{device_id}" + (f"/modules/{module_id}" if module_id else "")
    return generate_sas_token(resource, key, int(expiry if expiry is not None else time.time() + 3600))


class AmqpDevice:
    def __init__(self, hub: Hub, sasl_init: SaslInit | None = None, protocol: Any = None) -> None:
        self.protocol = protocol if protocol is not None else hub.gateway.amqp_protocol_for("amqps")
        self.transport = MemoryTransport(self.protocol)
        self.protocol.connection_made(self.transport)
        self.amqp = AmqpConnection(
            ConnectionRole.CLIENT,
            container_id="ac02ba44-a4b8-b549-add7-f8ba40d05409",
            hostname="localhost",
            idle_timeout=None,
            sasl_init=sasl_init,
        )
        self.events: list[Event] = []
        self._read = 0
        self._tokens = 0
        self.channel: int | None = None
        self.cbs_out: LinkRef | None = None
        self.cbs_in: LinkRef | None = None
        self.responses: LinkRef | None = None
        self.requests: LinkRef | None = None

    def pump(self) -> None:
        out = self.amqp.data_to_send()
        if out and not self.transport.closed:
            self.protocol.data_received(out)
        data = bytes(self.transport.data[self._read :])
        self._read = len(self.transport.data)
        if data:
            self.events += self.amqp.receive_data(data)

    async def until(self, predicate: Any) -> Any:
        """Exchange bytes until ``predicate()`` is truthy; returns it (a hang fails after WAIT s)."""
        async with asyncio.timeout(WAIT):
            while True:
                self.pump()
                found = predicate()
                if found:
                    return found
                self.transport.written.clear()
                try:
                    async with asyncio.timeout(0.01):  # a registry read finishes off the loop
                        await self.transport.written.wait()
                except TimeoutError:
                    pass

    def take(self, kind: type, link: LinkRef | None = None) -> list[Any]:
        found = [
            e for e in self.events if type(e) is kind and (link is None or getattr(e, "link", None) == link)
        ]
        for event in found:
            self.events.remove(event)
        return found

    async def attach(self, name: str, *, sender: bool, address: str, credit: int = 0) -> tuple[LinkRef, Any]:
        assert self.channel is not None
        if sender:
            ref = self.amqp.attach(self.channel, name, sender=True, source=Source(), target=Target(address))
        else:
            ref = self.amqp.attach(self.channel, name, sender=False, source=Source(address), target=Target())
        answer = (await self.until(lambda: self.take(LinkAttached, ref)))[0]
        if credit:
            self.amqp.grant_credit(ref, credit)
            self.pump()
        return ref, answer

    async def begin(self) -> None:
        await self.until(lambda: self.amqp.opened)
        self.channel = self.amqp.begin_session()
        await self.until(lambda: self.take(SessionBegun))
        self.cbs_out, _ = await self.attach("rheaSender_1", sender=True, address="$cbs")
        self.cbs_in, _ = await self.attach("rheaReceiver_1", sender=False, address="$cbs", credit=1000)

    async def put_token(self, token: str, device_id: str, module_id: str | None = None) -> Message:
        name = f"{HOST}/devices/{device_id}" + (f"/modules/{module_id}" if module_id else "")
        return await self.put_token_for(name, token)

    async def put_token_for(self, name: str, token: str) -> Message:
        """A put-token for audience ``name``; the hub's answer."""
        assert self.cbs_out is not None
        self._tokens += 1
        request = Message(
            properties=Properties(message_id=f"token-{self._tokens}", to="$cbs", reply_to="cbs"),
            application_properties={
                "operation": "put-token",
                "type": "servicebus.windows.net:sastoken",
                "name": name,
            },
            body=AmqpValue(token),
        )
        self.amqp.send_message(self.cbs_out, encode_message(request), str(self._tokens).encode())
        received = (await self.until(lambda: self.take(MessageReceived, self.cbs_in)))[0]
        return decode_message(received.payload)

    async def methods(self, device_id: str, module_id: str | None = None) -> tuple[Any, Any]:
        address = (
            f"/devices/{device_id}" + (f"/modules/{module_id}" if module_id else "") + "/methods/devicebound"
        )
        self.responses, sent = await self.attach("rheaSender_2", sender=True, address=address)
        self.requests, received = await self.attach(
            "rheaReceiver_2", sender=False, address=address, credit=1000
        )
        return sent, received

    async def online(self, device_id: str, key: str, module_id: str | None = None) -> None:
        await self.begin()
        answer = await self.put_token(sas_token(device_id, key, module_id=module_id), device_id, module_id)
        assert answer.application_properties["status-code"] == 200, answer
        await self.methods(device_id, module_id)

    async def request(self) -> Message:
        received = (await self.until(lambda: self.take(MessageReceived, self.requests)))[0]
        return decode_message(received.payload)

    def answer(self, rid: Any, status: int | None, body: list[bytes] | None) -> None:
        assert self.responses is not None
        app = {"IoThub-status": Int(status)} if status is not None else {}
        message = Message(properties=Properties(correlation_id=rid), application_properties=app, body=body)
        self.amqp.send_message(self.responses, encode_message(message), b"r")
        self.pump()

    async def detached(self, link: LinkRef | None) -> LinkDetached:
        return (await self.until(lambda: self.take(LinkDetached, link)))[0]

    async def closed(self) -> None:
        await self.until(lambda: self.transport.closed)
        await asyncio.sleep(0)
