"""Run every async test here on both asyncio's loop and uvloop (what the hub runs on when installed).

The loop is chosen per test through pytest-asyncio's loop-factory hook; nothing installs a policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories
