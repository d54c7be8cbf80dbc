"""Process-wide counters and gauges, rendered in the Prometheus text format at ``GET /metrics``.

Deliberately tiny: a counter increment on the hot path is one dict operation.
"""

from __future__ import annotations

from collections.abc import Callable


class Counter:
    """A monotonically increasing count, optionally split by one label."""

    __slots__ = ("help", "label", "name", "values")

    def __init__(self, name: str, help: str, label: str | None = None) -> None:
        self.name = name
        self.help = help
        self.label = label
        self.values: dict[str, float] = {}

    def inc(self, label_value: str = "", amount: float = 1) -> None:
        values = self.values
        values[label_value] = values.get(label_value, 0) + amount

    def get(self, label_value: str = "") -> float:
        return self.values.get(label_value, 0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not self.values and self.label is None:
            lines.append(f"{self.name} 0")
        for value, count in sorted(self.values.items()):
            labels = f'{{{self.label}="{value}"}}' if self.label else ""
            lines.append(f"{self.name}{labels} {_number(count)}")
        return lines


class Gauge:
    """A value read when the metrics are rendered."""

    __slots__ = ("help", "name", "read")

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.name = name
        self.help = help
        self.read = read

    def render(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help}",
            f"# TYPE {self.name} gauge",
            f"{self.name} {_number(self.read())}",
        ]


class Metrics:
    """The hub's metrics. One instance per hub, passed to whoever counts."""

    def __init__(self) -> None:
        self.calls = Counter("methodhub_calls_total", "Calls finished, by outcome.", "outcome")
        self.stray_responses = Counter(
            "methodhub_stray_responses_total",
            "Device responses dropped because their request id was unknown, already answered, "
            "or belonged to another device.",
        )
        self.connections = Counter(
            "methodhub_mqtt_connections_total", "MQTT connections accepted (CONNACK 0)."
        )
        self.connects_refused = Counter(
            "methodhub_mqtt_connects_refused_total", "MQTT CONNECTs refused, by reason.", "reason"
        )
        self.protocol_errors = Counter(
            "methodhub_mqtt_protocol_errors_total", "MQTT connections closed for a protocol violation."
        )
        self.telemetry = Counter(
            "methodhub_telemetry_messages_total", "Device-to-cloud messages accepted and discarded."
        )
        self.device_limits = Counter(
            "methodhub_mqtt_limits_total",
            "MQTT connections closed or requests refused by a limit (packet rate, CONNECT deadline, "
            "subscriptions), by limit.",
            "limit",
        )
        self.amqp_connections = Counter(
            "methodhub_amqp_connections_total",
            "AMQP device sessions opened (an identity authorized by put-token or SASL PLAIN and its "
            "session open).",
        )
        self.amqp_auth_refused = Counter(
            "methodhub_amqp_auth_refused_total",
            "AMQP credentials refused, by where they came (put_token, sasl_plain).",
            "reason",
        )
        self.amqp_protocol_errors = Counter(
            "methodhub_amqp_protocol_errors_total",
            "AMQP connections, sessions or links ended for a protocol violation.",
        )
        self.amqp_limits = Counter(
            "methodhub_amqp_limits_total",
            "AMQP connections closed or refused by a limit (connections, put-token deadline), by limit.",
            "limit",
        )
        self.connection_failures = Counter(
            "methodhub_connection_failures_total",
            "Connections closed because serving them failed unexpectedly (a bug: see the log).",
        )
        self.history_dropped = Counter(
            "methodhub_call_history_dropped_total",
            "Call history records dropped unwritten (the store fell behind, or failed to take them).",
        )
        self._gauges: list[Gauge] = []

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self._gauges.append(Gauge(name, help, read))

    def render(self) -> str:
        lines: list[str] = []
        items: list[Counter | Gauge] = [
            self.calls,
            self.stray_responses,
            self.connections,
            self.connects_refused,
            self.protocol_errors,
            self.telemetry,
            self.device_limits,
            self.amqp_connections,
            self.amqp_auth_refused,
            self.amqp_protocol_errors,
            self.amqp_limits,
            self.connection_failures,
            self.history_dropped,
            *self._gauges,
        ]
        for item in items:
            lines.extend(item.render())
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
