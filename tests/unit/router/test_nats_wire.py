"""The NATS router's subject tokens and message encoding (no server needed)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from methodhub.calls.model import Call, CallKind, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.router.nats.wire import (
    decode_call,
    decode_result,
    encode_call,
    encode_result,
    subject_token,
    target_of,
)


@given(st.text(min_size=1, max_size=200))
def test_subject_tokens_are_single_safe_tokens_and_reversible(target: str) -> None:
    token = subject_token(target)
    assert token and all(c.isascii() and (c.isalnum() or c in "_-~") for c in token)
    assert target_of(token) == target


def test_plain_ids_are_their_own_token_and_others_are_escaped() -> None:
    assert subject_token("pump-17_a") == "pump-17_a"
    assert subject_token("dev.1/mod") == "dev~2E1~2Fmod"
    assert subject_token("a*b>c d~") == "a~2Ab~3Ec~20d~7E"
    assert subject_token("é") == "~C3~A9"


@given(
    method=st.text(min_size=1, max_size=50),
    payload=st.binary(max_size=300),
    dialect_data=st.none() | st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=3),
)
def test_calls_survive_the_wire(method: str, payload: bytes, dialect_data: dict[str, str] | None) -> None:
    call = Call("dev/mod", method, payload, 30.0, 5.0, CallKind.MESSAGE, dialect_data)
    assert decode_call(encode_call(call)) == call


async def test_answers_survive_the_wire() -> None:
    loop = asyncio.get_running_loop()
    ok: asyncio.Future[CallOutcome] = loop.create_future()
    ok.set_result(CallOutcome(-7, b'{"a":"\\n"}\n'))
    assert decode_result(encode_result(ok)) == CallOutcome(-7, b'{"a":"\\n"}\n')

    failed: asyncio.Future[CallOutcome] = loop.create_future()
    failed.set_exception(HubError(ErrorKind.TOO_MANY_CALLS_IN_FLIGHT, "busy", {"limit": 64}))
    error = decode_result(encode_result(failed))
    assert isinstance(error, HubError)
    assert error.kind is ErrorKind.TOO_MANY_CALLS_IN_FLIGHT
    assert (error.message, error.info) == ("busy", {"limit": 64})

    crashed: asyncio.Future[CallOutcome] = loop.create_future()
    crashed.set_exception(RuntimeError("boom"))
    error = decode_result(encode_result(crashed))
    assert isinstance(error, HubError) and error.kind is ErrorKind.SERVER_ERROR


@pytest.mark.parametrize("garbage", [b"E", b"Enot json", b'E["NO_SUCH_KIND","m",{}]'])
def test_unreadable_answers_become_server_errors(garbage: bytes) -> None:
    error = decode_result(garbage)
    assert isinstance(error, HubError) and error.kind is ErrorKind.SERVER_ERROR
