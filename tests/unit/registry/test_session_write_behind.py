"""The session write-behind both registry backends use (registry.sessions), against a fake backend."""

from __future__ import annotations

import asyncio
import logging

import pytest

from methodhub.registry.sessions import SessionChanges, SessionWriteBehind

log = logging.getLogger("test.session_writes")


class FakeBackend:
    """Records each batch ("transaction"); can be made to fail or to wait before it commits."""

    def __init__(self) -> None:
        self.batches: list[SessionChanges] = []
        self.stored: dict[str, dict[str, int]] = {}
        self.failures = 0
        """How many of the next writes fail."""
        self.gate: asyncio.Event | None = None
        """If set, a write waits for it before it commits."""
        self.writing = asyncio.Event()
        self.written = asyncio.Event()
        self.open = True

    async def write(self, changes: SessionChanges) -> None:
        self.writing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the store is down")
        self.batches.append(dict(changes))
        for client_id, subscriptions in changes.items():
            if subscriptions is None:
                self.stored.pop(client_id, None)
            else:
                self.stored[client_id] = subscriptions
        self.written.set()


def write_behind(backend: FakeBackend, *, retry_delay: float = 0.0) -> SessionWriteBehind:
    return SessionWriteBehind(backend.write, log, lambda: backend.open, retry_delay=retry_delay)


async def spin(iterations: int = 20) -> None:
    """Let the loop run queued callbacks and tasks (a zero-delay timer fires on the next pass)."""
    for _ in range(iterations):
        await asyncio.sleep(0)


async def test_a_burst_of_changes_is_one_batch_with_the_latest_state_per_client() -> None:
    backend = FakeBackend()
    writes = write_behind(backend)
    for n in range(500):
        writes.save(f"dev{n}", {"a": n % 2})
    writes.save("dev1", {"b": 1})
    writes.delete("dev2")
    writes.save("dev3", {"c": 0})
    writes.delete("dev3")
    await backend.written.wait()  # written without being asked
    assert len(backend.batches) == 1
    batch = backend.batches[0]
    assert len(batch) == 500
    assert batch["dev0"] == {"a": 0}
    assert batch["dev1"] == {"b": 1}
    assert batch["dev2"] is None
    assert batch["dev3"] is None
    assert writes.unsaved("dev1") == (False, None)


async def test_changes_queued_while_a_batch_is_written_go_in_the_next_batch() -> None:
    backend = FakeBackend()
    backend.gate = asyncio.Event()
    writes = write_behind(backend)
    writes.save("dev1", {"a": 1})
    await backend.writing.wait()
    writes.save("dev1", {"a": 2})
    writes.save("dev2", {"b": 0})
    flushed = asyncio.create_task(writes.flush())
    await spin()
    assert not flushed.done()  # flush waits for the batch being written
    backend.gate.set()
    await flushed
    assert backend.batches == [{"dev1": {"a": 1}}, {"dev1": {"a": 2}, "dev2": {"b": 0}}]


async def test_unsaved_state_is_visible_until_it_is_written() -> None:
    backend = FakeBackend()
    backend.gate = asyncio.Event()
    writes = write_behind(backend)
    assert writes.unsaved("dev1") == (False, None)
    subscriptions = {"a": 1}
    writes.save("dev1", subscriptions)
    subscriptions["b"] = 0  # the queued state is a copy
    writes.delete("dev2")
    assert writes.unsaved("dev1") == (True, {"a": 1})
    assert writes.unsaved("dev2") == (True, None)
    loaded = writes.unsaved("dev1")[1]
    assert loaded is not None
    loaded["c"] = 1  # so is what a reader gets
    await backend.writing.wait()  # the batch is in the backend's transaction, not committed
    assert writes.unsaved("dev1") == (True, {"a": 1})
    assert writes.unsaved("dev2") == (True, None)
    backend.gate.set()
    await writes.flush()
    assert writes.unsaved("dev1") == (False, None)
    assert writes.unsaved("dev2") == (False, None)
    assert backend.stored == {"dev1": {"a": 1}}


async def test_flush_returns_once_written_and_writes_at_once() -> None:
    backend = FakeBackend()
    writes = SessionWriteBehind(backend.write, log, lambda: True, delay=3600)  # the timer never fires
    writes.save("dev1", {"a": 1})
    await writes.flush()
    assert backend.stored == {"dev1": {"a": 1}}
    await writes.flush()  # nothing queued: no empty transaction
    assert len(backend.batches) == 1


async def test_a_failed_write_is_logged_kept_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    backend = FakeBackend()
    backend.failures = 3
    backend.gate = asyncio.Event()
    writes = write_behind(backend)
    writes.save("dev1", {"a": 1})
    writes.save("dev2", {"b": 1})
    await backend.writing.wait()
    writes.save("dev1", {"a": 2})  # queued while the failing write runs: the newer state wins
    backend.gate.set()
    await backend.written.wait()  # retried in the background until it worked
    await spin(2)  # the run's end is reported (logged) by its done callback
    assert backend.stored == {"dev1": {"a": 2}, "dev2": {"b": 1}}
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("WARNING", "cannot write persisted session changes (will retry): the store is down"),
        ("INFO", "persisted session changes written again"),
    ]


async def test_flush_raises_when_the_write_fails_and_keeps_the_changes() -> None:
    backend = FakeBackend()
    backend.failures = 1
    writes = write_behind(backend, retry_delay=3600)
    writes.save("dev1", {"a": 1})
    with pytest.raises(ConnectionError):
        await writes.flush()
    assert writes.unsaved("dev1") == (True, {"a": 1})
    await writes.flush()  # a flush does not wait for the scheduled retry
    assert backend.stored == {"dev1": {"a": 1}}
    writes.close()


async def test_no_retry_once_the_backend_is_closed() -> None:
    backend = FakeBackend()
    backend.failures = 1
    backend.open = False
    writes = write_behind(backend)
    writes.save("dev1", {"a": 1})
    await backend.writing.wait()
    backend.writing.clear()
    await spin()
    assert not backend.writing.is_set()  # a zero-delay retry would have run by now
    assert writes.unsaved("dev1") == (True, {"a": 1})


async def test_close_cancels_a_scheduled_retry() -> None:
    backend = FakeBackend()
    backend.failures = 1
    writes = SessionWriteBehind(backend.write, log, lambda: backend.open, delay=3600, retry_delay=0)
    writes.save("dev1", {"a": 1})
    with pytest.raises(ConnectionError):
        await writes.flush()  # as the backend's close() does first; a retry is now scheduled
    backend.writing.clear()
    writes.close()
    await spin()
    assert not backend.writing.is_set()
    assert writes.unsaved("dev1") == (True, {"a": 1})


async def test_deleting_an_identity_drops_the_queued_changes_of_it_and_its_modules() -> None:
    backend = FakeBackend()
    writes = write_behind(backend)
    for client_id in ("dev1", "dev1/m", "dev1/n", "dev10", "dev10/m", "dev2"):
        writes.save(client_id, {"a": 1})
    deleted: list[str] = []

    async def delete() -> str:
        deleted.append("dev1")
        return "done"

    assert await writes.forget_identity("dev1", delete) == "done"
    assert deleted == ["dev1"]
    assert writes.unsaved("dev1/m") == (False, None)
    await writes.flush()
    assert backend.stored == {"dev10": {"a": 1}, "dev10/m": {"a": 1}, "dev2": {"a": 1}}


async def test_deleting_a_module_drops_only_its_queued_change() -> None:
    backend = FakeBackend()
    writes = write_behind(backend)
    for client_id in ("dev1", "dev1/m", "dev1/mm"):
        writes.save(client_id, {"a": 1})

    async def delete() -> None:
        pass

    await writes.forget_identity("dev1/m", delete)
    await writes.flush()
    assert backend.stored == {"dev1": {"a": 1}, "dev1/mm": {"a": 1}}


async def test_a_failed_identity_deletion_keeps_the_queued_changes() -> None:
    backend = FakeBackend()
    writes = write_behind(backend)
    writes.save("dev1/m", {"a": 1})

    async def delete() -> None:
        raise LookupError("etag mismatch")

    with pytest.raises(LookupError):
        await writes.forget_identity("dev1", delete)
    await writes.flush()
    assert backend.stored == {"dev1/m": {"a": 1}}


async def test_no_batch_is_written_while_an_identity_is_deleted() -> None:
    """A module's session saved while its device is being deleted must not be written after the
    DELETE (it would outlive the device)."""
    backend = FakeBackend()
    writes = write_behind(backend)
    deleting = asyncio.Event()
    finish = asyncio.Event()

    async def delete() -> None:
        deleting.set()
        await finish.wait()

    deletion = asyncio.create_task(writes.forget_identity("dev1", delete))
    await deleting.wait()
    writes.save("dev1/m", {"a": 1})  # a module connecting now
    writes.save("dev2", {"b": 1})
    flushed = asyncio.create_task(writes.flush())
    await spin()
    assert not backend.writing.is_set()
    assert not flushed.done()
    finish.set()
    await deletion
    await flushed
    assert backend.batches == [{"dev2": {"b": 1}}]
