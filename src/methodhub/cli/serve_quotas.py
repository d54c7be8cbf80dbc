"""``serve``'s quotas and token policy: ``DIR/methodhub.toml`` and the flags that override it.

The file (optional; read with :mod:`tomllib`)::

    [quotas]
    preset = "S1"                          # S1, S2, S3 (Azure's tiers) or "off"; default off
    units = 2                              # the tier's unit count (default 1)
    method_calls_per_second = 100          # a number, or "off"
    method_calls_per_policy_per_second = 20
    device_connects_per_second = 100
    registry_operations_per_second = 10
    job_device_operations_per_second = 10
    burst_seconds = 1                      # each bucket holds this many seconds of its rate
    nodes = 3                              # nodes sharing the hub-wide rates (each enforces 1/3)
    max_calls_in_flight_per_device = 64

    [tokens]
    max_lifetime = "365d"                  # a duration ("90s", "30m", "1h", "7d"), seconds, or "off"
    clock_skew = "5m"

Precedence, lowest first: the preset (``--quota-preset`` or the file's), the file's own keys, the
flags. A bad value stops ``serve`` with one line naming the file, the key and what is allowed.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from methodhub.calls.quotas import QuotaLimits
from methodhub.config import TokenPolicy
from methodhub.dialects.azure.quota_presets import PRESETS, azure_preset

CONFIG_FILE = "methodhub.toml"
DEFAULT_IN_FLIGHT = 64

RATE_KEYS = (
    "method_calls_per_second",
    "method_calls_per_policy_per_second",
    "device_connects_per_second",
    "registry_operations_per_second",
    "job_device_operations_per_second",
)
RATE_FLAGS = {
    "method_calls_per_second": "max_calls_per_second",
    "method_calls_per_policy_per_second": "max_calls_per_second_per_policy",
    "device_connects_per_second": "max_connects_per_second",
    "registry_operations_per_second": "max_registry_ops_per_second",
    "job_device_operations_per_second": "max_job_device_ops_per_second",
}
QUOTA_KEYS = {*RATE_KEYS, "preset", "units", "burst_seconds", "nodes", "max_calls_in_flight_per_device"}
TOKEN_KEYS = {"max_lifetime", "clock_skew"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class SettingsError(ValueError):
    """A bad setting; the message names where it came from and what is allowed."""


def add_quota_options(serve: argparse.ArgumentParser) -> None:
    """The flags (each overrides ``methodhub.toml``; docs/operations.md, "Quotas")."""
    group = serve.add_argument_group(
        f"quotas and token policy (override DIR/{CONFIG_FILE}; docs/operations.md)"
    )
    group.add_argument(
        "--quota-preset",
        type=_plain(_preset),
        default=None,
        metavar="S1|S2|S3|off",
        help="Azure IoT Hub's throttles for a tier (direct methods, device connects, registry, jobs); "
        "default off: no rate limits",
    )
    group.add_argument(
        "--quota-units",
        type=_flag(_units),
        default=None,
        metavar="N",
        help="units of the preset's tier (default 1)",
    )
    helps = {
        "method_calls_per_second": "synchronous calls per second for the whole hub",
        "method_calls_per_policy_per_second": "synchronous calls per second per caller (the shared "
        "access policy, or Alibaba AccessKeyId)",
        "device_connects_per_second": "new device connections per second for the whole hub",
        "registry_operations_per_second": "identity registry operations per second for the whole hub",
        "job_device_operations_per_second": "device calls per second jobs start, whole hub",
    }
    for key, dest in RATE_FLAGS.items():
        group.add_argument(
            "--" + dest.replace("_", "-"),
            dest=dest,
            type=_flag(_rate),
            default=None,
            metavar="N|off",
            help=f"{helps[key]} (0 or off: no limit)",
        )
    group.add_argument(
        "--quota-burst",
        type=_flag(_burst),
        default=None,
        metavar="SECONDS",
        help="seconds of its rate each limit lets through at once (default 1; presets 60)",
    )
    group.add_argument(
        "--quota-nodes",
        type=_flag(_units),
        default=None,
        metavar="N",
        help="nodes sharing the hub-wide rates: each enforces 1/N (default 1; --workers multiplies it)",
    )
    group.add_argument(
        "--max-calls-in-flight",
        type=_flag(_units),
        default=None,
        metavar="N",
        help=f"calls one device may have pending at once (default {DEFAULT_IN_FLIGHT})",
    )
    group.add_argument(
        "--max-token-lifetime",
        type=_flag(_lifetime),
        default=None,
        metavar="DURATION|off",
        help="refuse SAS tokens expiring further ahead than this (e.g. 365d; default off)",
    )
    group.add_argument(
        "--token-clock-skew",
        type=_flag(_skew),
        default=None,
        metavar="DURATION",
        help="accept SAS tokens this long past their expiry, for late clocks (e.g. 5m; default 0)",
    )


def quota_settings(args: argparse.Namespace, data_dir: Path) -> tuple[QuotaLimits, TokenPolicy, int]:
    """The quotas, the token policy and the in-flight limit ``serve`` runs with.

    Raises:
        SettingsError: the file is not TOML, or a value there is bad.
    """
    path = data_dir / CONFIG_FILE
    quotas_file, tokens_file = _read(path)
    where = str(path)
    try:
        preset = args.quota_preset or _key(quotas_file, "preset", _preset)
        units = args.quota_units.value if args.quota_units is not None else _key(quotas_file, "units", _units)
        units = units or 1
        limits = azure_preset(preset, units) if preset not in (None, "off") else QuotaLimits()
        changes: dict[str, Any] = {}
        for key in RATE_KEYS:
            if key in quotas_file:
                changes[key] = _key(quotas_file, key, _rate)
        for key, parse in (("burst_seconds", _burst), ("nodes", _units)):
            if key in quotas_file:
                changes[key] = _key(quotas_file, key, parse)
        in_flight = _key(quotas_file, "max_calls_in_flight_per_device", _units) or DEFAULT_IN_FLIGHT
        policy = TokenPolicy(
            max_lifetime=_key(tokens_file, "max_lifetime", _lifetime),
            clock_skew=_key(tokens_file, "clock_skew", _skew) or 0.0,
        )
    except SettingsError as exc:
        raise SettingsError(f"{where}: {exc}") from None
    for key, dest in RATE_FLAGS.items():  # flags last: they override the file
        value = getattr(args, dest)
        if value is not None:
            changes[key] = value.value
    if args.quota_burst is not None:
        changes["burst_seconds"] = args.quota_burst.value
    if args.quota_nodes is not None:
        changes["nodes"] = args.quota_nodes.value
    if args.max_calls_in_flight is not None:
        in_flight = args.max_calls_in_flight.value
    if args.max_token_lifetime is not None:
        policy = replace(policy, max_lifetime=args.max_token_lifetime.value)
    if args.token_clock_skew is not None:
        policy = replace(policy, clock_skew=args.token_clock_skew.value)
    return replace(limits, **changes), policy, in_flight


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from None
    unknown_tables = set(document) - {"quotas", "tokens"}
    if unknown_tables:
        raise SettingsError(
            f"{path}: unknown table(s) {', '.join(sorted(unknown_tables))}; "
            "methodhub reads [quotas] and [tokens]"
        )
    tables: list[dict[str, Any]] = []
    for name, known in (("quotas", QUOTA_KEYS), ("tokens", TOKEN_KEYS)):
        table = document.get(name, {})
        if not isinstance(table, dict):
            raise SettingsError(f"{path}: {name} must be a table ([{name}])")
        unknown = set(table) - known
        if unknown:
            raise SettingsError(
                f"{path}: unknown key(s) {', '.join(sorted(unknown))} in [{name}]; "
                f"known: {', '.join(sorted(known))}"
            )
        tables.append(table)
    return tables[0], tables[1]


def _key(table: dict[str, Any], key: str, parse: Any) -> Any:
    if key not in table:
        return None
    try:
        return parse(table[key])
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{key}: {exc}") from None


class _Given:
    """A flag's parsed value (``None`` included: "off"), told apart from "not given"."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _flag(parse: Any) -> Any:
    def parse_flag(text: str) -> _Given:
        try:
            return _Given(parse(text))
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_flag


def _plain(parse: Any) -> Any:
    def parse_flag(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_flag


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None


def _rate(value: Any) -> float | None:
    """A rate per second; 0 or "off": no limit."""
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    rate = _number(value)
    if rate < 0 or rate != rate or rate == float("inf"):
        raise ValueError(f"a rate is a number of requests per second, 0 or more (or off), got {value!r}")
    return rate or None


def _burst(value: Any) -> float:
    seconds = _number(value)
    if not 0 < seconds <= 3600:
        raise ValueError(f"burst_seconds must be more than 0 and at most 3600, got {value!r}")
    return seconds


def _units(value: Any) -> int:
    whole = isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    if isinstance(value, bool) or not whole:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    number = int(value)
    if number < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return number


def _preset(value: Any) -> str:
    text = str(value).strip()
    if text.lower() == "off":
        return "off"
    if text.upper() not in PRESETS:
        raise ValueError(f"the quota preset is one of {', '.join(PRESETS)} or off, got {value!r}")
    return text.upper()


def _seconds(value: Any) -> float:
    """Seconds of a number or of ``90s``, ``30m``, ``1h``, ``7d``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower()
        number, unit = (text[:-1], text[-1]) if text[-1] in _UNITS else (text, "s")
        try:
            seconds = float(number) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"{value!r} is not a duration such as 90s, 30m, 1h or 7d") from None
    else:
        raise ValueError(f"{value!r} is not a duration such as 90s, 30m, 1h or 7d")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{value!r}: a duration cannot be negative")
    return seconds


def _lifetime(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    seconds = _seconds(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: the longest token lifetime must be positive (or off)")
    return seconds


def _skew(value: Any) -> float:
    seconds = _seconds(value)
    if seconds > 86_400:
        raise ValueError(f"{value!r}: a clock skew of more than a day is not a skew")
    return seconds
