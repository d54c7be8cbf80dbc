"""The NATS router's liveness bookkeeping, driven with explicit times: no sockets, no nats-server,
no event loop, no clock. A "tick" below is what the router does once per PROBE_INTERVAL: call
``check(now)``, send the probes it asks for (``probe_sent``), and complete the replies it fails."""

from __future__ import annotations

import itertools

from methodhub.errors import ErrorKind, HubError
from methodhub.router.nats.liveness import (
    PROBE_INTERVAL,
    READY_REPROBE,
    Fail,
    Liveness,
    Probe,
    RemoteCall,
    reask_after,
)
from methodhub.router.nats.wire import subject_token


class FakeReply:
    """Stands in for a call's reply future: only whether it is done matters to the bookkeeping."""

    def __init__(self) -> None:
        self.finished = False

    def done(self) -> bool:
        return self.finished


SUBJECT = b"mh.call.dev"


class Node:
    """The calling node's side: sends calls and runs ticks, as NatsRouter does."""

    def __init__(self) -> None:
        self.liveness: Liveness[FakeReply] = Liveness()
        self.numbers = itertools.count(1)
        self.sent_probes: list[tuple[int, int]] = []
        """(call, probe number) of every probe sent."""
        self.failed: list[tuple[FakeReply, HubError]] = []

    def send(self, now: float, subject: bytes = SUBJECT) -> tuple[int, FakeReply]:
        n, reply = next(self.numbers), FakeReply()
        self.liveness.calls[n] = RemoteCall(reply, subject, now)
        return n, reply

    def tick(self, now: float, *, deliver_probes: bool = True) -> list[Probe | Fail[FakeReply]]:
        actions = self.liveness.check(now)
        for action in actions:
            if isinstance(action, Probe):
                if deliver_probes:  # False: NATS refused the publish (disconnected)
                    p = next(self.numbers)
                    self.liveness.probe_sent(action.call, p)
                    self.sent_probes.append((action.call, p))
            else:
                self.failed.append((action.reply, action.error))
        return actions

    def last_probe(self, call: int) -> int:
        return [p for c, p in self.sent_probes if c == call][-1]


def test_a_call_younger_than_the_interval_is_left_alone_and_then_probed() -> None:
    node = Node()
    n, _ = node.send(now=10.0)
    assert node.tick(10.0 + PROBE_INTERVAL * 0.99) == []
    assert node.tick(10.0 + PROBE_INTERVAL) == [Probe(n, SUBJECT)]
    assert n in node.liveness.calls
    assert node.failed == []


def test_a_call_whose_node_stops_answering_fails_at_the_tick_after_its_unanswered_probe() -> None:
    node = Node()
    n, reply = node.send(now=0.0)
    node.tick(0.5)
    node.tick(1.5)  # probed
    assert node.sent_probes and node.failed == []  # not before: a probe is still on its way
    actions = node.tick(2.5)  # the probe went unanswered for a whole interval
    assert len(actions) == 1 and isinstance(actions[0], Fail)
    assert actions[0].reply is reply
    error = actions[0].error
    assert error.kind is ErrorKind.DEVICE_DISCONNECTED
    assert error.message == "Device 'dev' disconnected before it answered (its hub node stopped answering)."
    assert n not in node.liveness.calls
    assert node.tick(3.5) == []  # failed once, then forgotten
    assert node.liveness.probe_answered(node.last_probe(n), held=True) is None  # a late answer: ignored


def test_heartbeats_keep_a_long_call_alive() -> None:
    node = Node()
    n, _ = node.send(now=0.0)
    for second in range(1, 30):  # a call the device takes 30 s to answer
        actions = node.tick(float(second))
        assert actions == [Probe(n, SUBJECT)], f"tick at {second} s"
        assert node.liveness.probe_answered(node.last_probe(n), held=True) is None
    assert node.failed == []
    assert n in node.liveness.calls


def test_one_missed_heartbeat_after_many_answered_ones_still_fails_the_call() -> None:
    node = Node()
    n, reply = node.send(now=0.0)
    for second in (1.0, 2.0, 3.0):
        node.tick(second)
        node.liveness.probe_answered(node.last_probe(n), held=True)
    node.tick(4.0)  # probed; this time nobody answers
    assert node.failed == []
    node.tick(5.0)
    assert [(r, e.kind) for r, e in node.failed] == [(reply, ErrorKind.DEVICE_DISCONNECTED)]


def test_a_node_that_no_longer_holds_the_call_fails_it_at_once() -> None:
    node = Node()
    n, reply = node.send(now=0.0)
    node.tick(1.0)
    fail = node.liveness.probe_answered(node.last_probe(n), held=False)
    assert fail is not None and fail.reply is reply
    assert fail.error.kind is ErrorKind.DEVICE_DISCONNECTED
    assert fail.error.message.endswith("(the node it was connected to let it go).")
    assert n not in node.liveness.calls
    assert node.tick(2.0) == []


def test_a_probe_that_could_not_be_sent_is_sent_again_rather_than_failing_the_call() -> None:
    node = Node()
    n, _ = node.send(now=0.0)
    assert node.tick(1.0, deliver_probes=False) == [Probe(n, SUBJECT)]
    assert node.tick(2.0) == [Probe(n, SUBJECT)]  # no probe was on its way: ask, do not fail
    assert node.failed == []


def test_only_calls_older_than_the_interval_are_probed() -> None:
    node = Node()
    old, _ = node.send(now=0.0)
    young, _ = node.send(now=0.6)
    assert node.tick(1.2) == [Probe(old, SUBJECT)]
    node.liveness.probe_answered(node.last_probe(old), held=True)
    assert node.tick(2.2) == [Probe(old, SUBJECT), Probe(young, SUBJECT)]


def test_an_answered_call_is_forgotten_with_its_probe() -> None:
    node = Node()
    n, _ = node.send(now=0.0)
    node.tick(1.0)
    probe = node.last_probe(n)
    remote = node.liveness.calls.pop(n)  # the answer arrived: what the router does
    node.liveness.forget_probe(remote.probe)
    assert remote.probe == probe
    assert node.liveness.probe_answered(probe, held=False) is None  # no failure for an answered call
    assert node.tick(2.0) == []


def test_a_call_the_engine_gave_up_on_is_dropped_quietly() -> None:
    node = Node()
    n, reply = node.send(now=0.0)
    node.tick(1.0)
    probe = node.last_probe(n)
    reply.finished = True  # the engine's response timer, or the caller went away
    assert node.tick(2.0) == []  # no failure for it, although its probe went unanswered
    assert n not in node.liveness.calls
    assert node.liveness.probe_answered(probe, held=False) is None


def test_the_error_names_the_device_not_its_subject_token() -> None:
    node = Node()
    target = "dev.1/mod é"
    subject = f"mh.call.{subject_token(target)}".encode()
    n, _ = node.send(now=0.0, subject=subject)
    node.tick(1.0)
    fail = node.liveness.probe_answered(node.last_probe(n), held=False)
    assert fail is not None
    assert fail.error.message.startswith(f"Device '{target}' disconnected")


def test_dropping_all_calls_returns_their_replies_and_ignores_late_probe_answers() -> None:
    node = Node()
    (a, ra), (_, rb) = node.send(now=0.0), node.send(now=0.1)
    calls = node.liveness.calls
    node.tick(1.5)
    assert node.liveness.drop_all() == [ra, rb]
    assert node.liveness.calls is calls and calls == {}  # emptied in place: the router holds it
    assert node.liveness.probe_answered(node.last_probe(a), held=False) is None
    assert node.tick(5.0) == []


def test_a_served_call_expires_with_a_timeout_at_its_deadline_and_not_before() -> None:
    liveness: Liveness[FakeReply] = Liveness()
    served = FakeReply()
    liveness.serving[b"mh.r.a.7"] = (served, 32.0)
    assert liveness.check(31.9) == []
    assert b"mh.r.a.7" in liveness.serving
    actions = liveness.check(32.0)
    assert len(actions) == 1 and isinstance(actions[0], Fail) and actions[0].reply is served
    assert actions[0].error.kind is ErrorKind.CALL_TIMEOUT
    assert liveness.serving == {}


def test_a_served_call_answered_meanwhile_is_forgotten_without_a_failure() -> None:
    liveness: Liveness[FakeReply] = Liveness()
    served = FakeReply()
    served.finished = True
    liveness.serving[b"mh.r.a.7"] = (served, 5.0)
    assert liveness.check(6.0) == []
    assert liveness.serving == {}


def test_a_readiness_question_is_answered_until_it_is_a_whole_interval_old() -> None:
    liveness: Liveness[FakeReply] = Liveness()
    liveness.ready_asked(1, "dev", now=0.0)
    liveness.ready_asked(2, "other", now=0.5)
    assert liveness.ready_answered(2) == "other"
    assert liveness.ready_answered(2) is None  # once
    liveness.check(PROBE_INTERVAL * 0.99)
    liveness.ready_asked(3, "dev", now=0.7)
    liveness.check(PROBE_INTERVAL)  # question 1 is forgotten, question 3 is not
    assert liveness.ready_answered(1) is None
    assert liveness.ready_answered(3) == "dev"


def test_a_wait_for_a_device_re_asks_every_interval_until_its_deadline() -> None:
    now, deadline = 100.0, 100.0 + 2.5 * READY_REPROBE
    delays = []
    while (delay := reask_after(deadline, now)) is not None:
        delays.append(delay)
        now += delay  # nobody answered: the wait re-asks after sleeping this long
    assert delays == [READY_REPROBE, READY_REPROBE, 0.5 * READY_REPROBE]
    assert now == deadline
    assert reask_after(deadline, deadline + 1.0) is None
