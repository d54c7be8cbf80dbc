"""AMQP devices on a running hub: a put-token's expiry ends the identity's links at that time
unless renewed (as Azure), and new connections over the connect rate are closed with
``amqp:resource-limit-exceeded``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from methodhub.amqp.events import ConnectionClosed, LinkDetached
from tests.amqp_support import AmqpClosed, AmqpDevice
from tests.support import Backend, HubProcess, error_code

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def amqp_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(
        tmp_path_factory.mktemp("quota-amqp"),
        listeners=("mqtt", "http", "amqp"),
        args=["--max-connects-per-second", "0.1", "--quota-burst", "1"],
    ).start()
    yield hub
    hub.stop()


def test_token_expiry_detaches_the_links_and_the_connection_over_the_rate_is_closed(
    amqp_hub: HubProcess,
) -> None:
    key = amqp_hub.create_device("amqp-short")
    device = AmqpDevice(amqp_hub, "amqp-short", key, plain=True).connect()  # the one connect allowed
    try:
        assert device.authenticate(ttl=3) == (200, "OK")
        device.enable_methods()
        methods = {device.methods_in, device.methods_out}
        started = time.monotonic()
        detached = device.wait_for(
            LinkDetached, lambda e: e.link in methods and e.error is not None, timeout=15
        )
        assert detached.error is not None and detached.error.condition == "amqp:unauthorized-access"
        assert 1.0 <= time.monotonic() - started <= 8  # at the token's expiry (3 s after signing)
        backend = Backend(amqp_hub)
        try:
            assert error_code(backend.invoke("amqp-short")) == 404103  # its session ended with the links
        finally:
            backend.close()

        second = AmqpDevice(amqp_hub, "amqp-short", key, plain=True)
        # The hub's open and its close arrive together: the client cannot even begin a session.
        with pytest.raises((AmqpClosed, RuntimeError), match=r"not open|closed"):
            second.connect()
        closes = [event for event in second.events if isinstance(event, ConnectionClosed)]
        assert len(closes) == 1
        error = closes[0].error
        assert error is not None and error.condition == "amqp:resource-limit-exceeded"
        assert "new device connections per second" in (error.description or "")
        assert amqp_hub.metric('methodhub_throttled_total{limit="device_connects"}') == 1
    finally:
        device.close()
