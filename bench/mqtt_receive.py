"""CPU cost of receiving MQTT packets: the state machine alone, and a device connection end to end.

    python bench/mqtt_receive.py                 # this checkout
    PYTHONPATH=/path/to/old/src python bench/mqtt_receive.py   # another commit, same machine

In-process, no sockets: packets are fed to ``MqttConnection.receive_data`` and to a
``DeviceConnection`` over an in-memory transport, and CPU time (``time.process_time``, so other
processes on the machine matter less) per packet is printed. A call's response is one ~100-byte
PUBLISH; the other cases are the ones issue 9 is about (floods, bytes in small pieces). To compare
commits, run it once per commit in the same session and compare the columns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import methodhub
from methodhub.mqtt import Connack, Connect, MqttConnection, Publish, Role, encode


def server(level: int = 4) -> MqttConnection:
    conn = MqttConnection(Role.SERVER, max_packet_size=300_000)
    conn.receive_data(encode(Connect("dev1", protocol_level=level), level))
    conn.send(Connack(False, 0))
    if hasattr(conn, "next_events"):
        conn.next_events()
    return conn


def per_item(fn: Callable[[], int], repeat: int = 5) -> float:
    """Best-of-``repeat`` CPU µs per item; ``fn`` returns how many items it processed."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        items = fn()
        best = min(best, (time.process_time() - started) / items * 1e6)
    return best


RESPONSE = encode(
    Publish("$iothub/methods/res/200/?$rid=1f", b'{"ok":true,"value":12345}', qos=1, packet_id=7), 4
)


def state_machine_cases() -> dict[str, float]:
    def whole_responses() -> int:
        conn = server()
        for _ in range(100_000):
            conn.receive_data(RESPONSE)
        return 100_000

    def pingreq_flood() -> int:
        conn = server()
        data = b"\xc0\x00" * 100_000
        events = conn.receive_data(data)
        return len(events)

    big = encode(Publish("t", b"x" * 200_000, 0), 4)

    def big_in_1k_pieces() -> int:
        conn = server()
        for _ in range(20):
            for i in range(0, len(big), 1024):
                conn.receive_data(big[i : i + 1024])
        return 20

    return {
        "response PUBLISH, whole (µs/packet)": per_item(whole_responses),
        "PINGREQ x100k in one read (µs/packet)": per_item(pingreq_flood),
        "200 KB PUBLISH in 1 KiB reads (µs/packet)": per_item(big_in_1k_pieces, repeat=3),
    }


def connection_case() -> float:
    """A response PUBLISH through DeviceConnection.data_received (dialect stubbed)."""
    from methodhub.gateway.dialect import Dialect, Principal
    from methodhub.gateway.gateway import Gateway
    from methodhub.metrics import Metrics
    from methodhub.router import LocalRouter

    class Transport(asyncio.Transport):
        def write(self, data: Any) -> None:
            pass

        def is_closing(self) -> bool:  # asked before each burst is written (methodhub.burst)
            return False

        def get_write_buffer_size(self) -> int:
            return 0

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return default

    class Store:
        async def load_session(self, key: str) -> None:
            return None

        def save_session(self, key: str, subscriptions: Any) -> None:
            pass

        def delete_session(self, key: str) -> None:
            pass

    class Stub(Dialect):
        name = "stub"

        def claims(self, connect: Any) -> bool:
            return True

        async def authenticate(self, connect: Any, ctx: Any, *, use_cache: bool = True) -> Principal:
            return Principal("dev1", None, "dev1", self)

        def grant(self, session: Any, topic_filter: str, qos: int) -> int:
            return qos

        def on_publish(self, session: Any, publish: Any) -> bool:
            return True

        def encode_call(self, session: Any, call: Any, seq: int) -> tuple[str, str, bytes]:
            return "1", "t", b""

        def is_ready(self, session: Any) -> bool:
            return True

    async def run() -> float:
        options: dict[str, Any] = {}
        try:  # the packet-rate limit would (rightly) cut this loop off; older commits have none
            from methodhub.config import DeviceLimits

            options["limits"] = DeviceLimits(max_packets_per_second=0)
        except ImportError:
            pass
        gateway = Gateway(
            registry=Store(),  # type: ignore[arg-type]
            router=LocalRouter(),
            metrics=Metrics(),
            hostname="hub",
            dialects=[Stub()],
            max_packet_size=300_000,
            **options,
        )
        protocol = gateway.protocol_for("mqtt")
        protocol.connection_made(Transport())
        protocol.data_received(encode(Connect("dev1"), 4))
        await asyncio.sleep(0.01)

        def responses() -> int:
            for _ in range(100_000):
                protocol.data_received(RESPONSE)
            return 100_000

        return per_item(responses)

    return asyncio.run(run())


def main() -> None:
    print(f"methodhub from {methodhub.__file__}")
    for name, value in state_machine_cases().items():
        print(f"{name:<48} {value:8.3f}")
    print(f"{'response PUBLISH via DeviceConnection (µs/packet)':<48} {connection_case():8.3f}")


if __name__ == "__main__":
    main()
