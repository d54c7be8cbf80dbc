"""methodhub.process.memory: the malloc tuning is on by default on glibc and off when switched off."""

from __future__ import annotations

import asyncio

import pytest

from methodhub.process import memory


def test_the_tuning_applies_on_glibc_unless_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memory.ENV_SWITCH, raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.tune_malloc() is True  # this project's machines run glibc
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory.tune_malloc() is False  # the operator's own setting is left alone
    monkeypatch.setenv(memory.ENV_SWITCH, "off")
    assert memory.tune_malloc() is False
    assert memory.MemoryTrimmer()._trim is None


async def test_the_trimmer_runs_on_the_loop_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memory.ENV_SWITCH, raising=False)
    trimmer = memory.MemoryTrimmer(interval=0.01)
    calls: list[int] = []
    real = trimmer._trim
    assert real is not None
    trimmer._trim = lambda pad: calls.append(pad) or real(pad)
    trimmer.start()
    await asyncio.sleep(0.1)
    trimmer.stop()
    count = len(calls)
    await asyncio.sleep(0.05)
    assert count >= 2 and len(calls) == count and set(calls) == {0}
