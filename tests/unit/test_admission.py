"""methodhub.admission: which connections a full listener keeps, with no sockets."""

from __future__ import annotations

import asyncio
import logging

import pytest

from methodhub.admission import WARNING_INTERVAL, Admission, default_fd_ceiling, log_accept_errors


class Conn:
    """A connection as a listener would register it: closing records itself."""

    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self._closed = closed

    def close(self) -> None:
        self._closed.append(self.name)

    def __repr__(self) -> str:
        return self.name


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def closed() -> list[str]:
    return []


def admitted(admission: Admission, closed: list[str], *names: str, fd: int | None = None) -> list[Conn]:
    conns = [Conn(name, closed) for name in names]
    for conn in conns:
        assert admission.register(conn, conn.close, fd)
    return conns


def test_the_oldest_unestablished_connection_makes_room(closed: list[str]) -> None:
    admission = Admission("t", max_connections=100, max_unestablished=3, fd_ceiling=None)
    a, b, _ = admitted(admission, closed, "a", "b", "c")
    assert closed == [] and admission.unestablished_count == 3
    (d,) = admitted(admission, closed, "d")
    assert closed == ["a"] and a not in admission and d in admission
    admission.mark_established(b)  # established ones do not count against max_unestablished
    admitted(admission, closed, "e")
    assert closed == ["a"] and admission.count == 4 and admission.unestablished_count == 3
    admitted(admission, closed, "f")
    assert closed == ["a", "c"]
    assert admission.shed == 2 and admission.refused == 0


def test_at_the_connection_cap_unestablished_go_first_then_the_oldest_idle(closed: list[str]) -> None:
    admission = Admission("t", max_connections=3, max_unestablished=3, fd_ceiling=None)
    a, b, _ = admitted(admission, closed, "a", "b", "c")
    for conn in (a, b):
        admission.mark_established(conn)
    (d,) = admitted(admission, closed, "d")
    assert closed == ["c"]  # never established: shed before anyone idle, though the youngest
    admission.mark_established(d)
    admission.mark_busy(a)  # the oldest is busy: passed over (and put at the back), b goes
    (e,) = admitted(admission, closed, "e")
    assert closed == ["c", "b"] and admission.busy_count == 1
    admission.mark_established(e)
    admission.mark_idle(a)
    admitted(admission, closed, "f")
    assert closed == ["c", "b", "d"]  # d is now older than a in the order
    assert admission.count == 3 and admission.idle_count == 2


def test_busy_connections_are_never_shed_and_a_full_house_refuses(closed: list[str]) -> None:
    admission = Admission("t", max_connections=2, max_unestablished=2, fd_ceiling=None)
    a, b = admitted(admission, closed, "a", "b")
    for conn in (a, b):
        admission.mark_established(conn)
        admission.mark_busy(conn)
    newcomer = Conn("new", closed)
    assert not admission.register(newcomer, newcomer.close)
    assert closed == [] and newcomer not in admission and admission.refused == 1
    admission.mark_idle(b)  # b's call answered: b may now make room
    assert admission.register(newcomer, newcomer.close)
    assert closed == ["b"]


def test_near_the_fd_ceiling_the_listener_holds_what_the_fds_allow(closed: list[str]) -> None:
    clock = Clock()
    open_fds = [0]
    admission = Admission(
        "t",
        max_connections=1000,
        max_unestablished=1000,
        fd_ceiling=100,
        clock=clock,
        open_fds=lambda: open_fds[0],
    )
    conns = admitted(admission, closed, *(f"c{i}" for i in range(10)), fd=10)
    admission.mark_established(conns[0])
    open_fds[0] = 200  # not counted while new fds stay under the ceiling
    admitted(admission, closed, "low", fd=99)
    assert closed == []
    # A new fd reaches the ceiling: 105 fds open, 12 of them this listener's (with the newcomer),
    # so the other 93 leave room for 7 connections: 5 unestablished ones go, oldest first.
    open_fds[0] = 105
    admitted(admission, closed, "high", fd=100)
    assert closed == ["c1", "c2", "c3", "c4", "c5"] and admission.count == 7
    # Closes leave holes under the ceiling that new connections fill: the budget still holds.
    admitted(admission, closed, "hole", fd=40)
    assert closed[-1] == "c6" and admission.count == 7
    # Once the others' fds are gone, the next count lifts the budget.
    clock.now += 1.0
    open_fds[0] = 30
    admitted(admission, closed, "relaxed1", "relaxed2", fd=41)
    assert closed[-1] == "c6" and admission.count == 9


def test_fds_that_cannot_be_counted_are_estimated_from_the_fd_number(closed: list[str]) -> None:
    clock = Clock()
    admission = Admission(
        "t", max_connections=1000, max_unestablished=1000, fd_ceiling=100, clock=clock, open_fds=lambda: None
    )
    admitted(admission, closed, *(f"c{i}" for i in range(5)), fd=10)
    admitted(admission, closed, "high", fd=102)  # >= 103 fds open, 6 ours: room for 3
    assert closed == ["c0", "c1", "c2"] and admission.count == 3
    clock.now += 60  # a count is due, and still impossible
    admitted(admission, closed, "hole", fd=5)  # a low fd says nothing: the budget stays
    assert closed[-1] == "c3" and admission.count == 3


def test_release_forgets_any_state_and_unknown_connections_are_ignored(closed: list[str]) -> None:
    admission = Admission("t", max_connections=10, max_unestablished=10, fd_ceiling=None)
    a, b, c = admitted(admission, closed, "a", "b", "c")
    admission.mark_established(b)
    admission.mark_established(c)
    admission.mark_busy(c)
    for conn in (a, b, c):
        admission.release(conn)
        admission.release(conn)
    assert admission.count == 0
    stranger = Conn("x", closed)
    for mark in (admission.mark_established, admission.mark_busy, admission.mark_idle, admission.release):
        mark(stranger)
    assert admission.count == 0 and closed == []


def test_shedding_forgets_at_once_so_one_newcomer_sheds_one(closed: list[str]) -> None:
    # The shed connection closes later (its transport's connection_lost); meanwhile it must not
    # count, or the next newcomer would shed a second one.
    admission = Admission("t", max_connections=2, max_unestablished=2, fd_ceiling=None)
    admitted(admission, closed, "a", "b", "c", "d")
    assert closed == ["a", "b"] and admission.count == 2


def test_a_failing_close_callback_does_not_stop_admission(caplog: pytest.LogCaptureFixture) -> None:
    admission = Admission("t", max_connections=1, max_unestablished=1, fd_ceiling=None)

    def broken() -> None:
        raise RuntimeError("boom")

    assert admission.register(object(), broken)
    assert admission.register(object(), lambda: None)
    assert admission.count == 1 and "closing a shed connection failed" in caplog.text


def test_warnings_are_rate_limited_and_count_what_they_skipped(
    closed: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    admission = Admission(
        "http 127.0.0.1:8080", max_connections=1, max_unestablished=1, fd_ceiling=None, clock=clock
    )
    with caplog.at_level(logging.WARNING, "methodhub.admission"):
        admitted(admission, closed, *(f"c{i}" for i in range(50)))
        assert len(caplog.records) == 1
        assert "http 127.0.0.1:8080" in caplog.records[0].getMessage()
        assert "docs/operations.md" in caplog.records[0].getMessage()
        clock.now += WARNING_INTERVAL
        admitted(admission, closed, "late")
    assert len(caplog.records) == 2
    assert "(48 more such events since the last warning)" in caplog.records[1].getMessage()
    assert len(closed) == 50


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        Admission("t", max_connections=0, max_unestablished=1)
    with pytest.raises(ValueError, match="max_unestablished"):
        Admission("t", max_connections=1, max_unestablished=0)


def test_the_default_fd_ceiling_leaves_a_reserve_below_the_soft_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = default_fd_ceiling()
    assert ceiling is not None and ceiling <= soft - 32


async def test_accept_out_of_fds_is_one_warning_now_and_then_not_a_traceback_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    passed_on: list[str] = []

    def previous(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        passed_on.append(str(context["message"]))

    loop.set_exception_handler(previous)
    try:
        log_accept_errors(loop)
        log_accept_errors(loop)  # idempotent: one wrapper
        emfile = {
            "message": "socket.accept() out of system resource",
            "exception": OSError(24, "Too many open files"),
        }
        with caplog.at_level(logging.WARNING):
            for _ in range(1000):
                loop.call_exception_handler(emfile)
            loop.call_exception_handler({"message": "something else"})
        warnings = [r for r in caplog.records if r.name == "methodhub.admission"]
        assert len(warnings) == 1 and "Too many open files" in warnings[0].getMessage()
        assert warnings[0].exc_info is None  # no traceback
        assert passed_on == ["something else"]
    finally:
        loop.set_exception_handler(None)
