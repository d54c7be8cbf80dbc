"""response_future: an engine outcome becomes an HTTP response, and a caller that leaves abandons it."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from methodhub.api.outcomes import response_future
from methodhub.calls import CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Response


def _ok(outcome: CallOutcome) -> Response:
    return Response(200, outcome.payload)


def _error(exc: HubError) -> Response:
    return Response(404 if exc.kind is ErrorKind.DEVICE_OFFLINE else 500, b"error")


async def test_an_error_is_a_response_and_an_outcome_a_200() -> None:
    loop = asyncio.get_running_loop()
    source: asyncio.Future[CallOutcome] = loop.create_future()
    out = response_future(source, _ok, _error)
    source.set_exception(HubError(ErrorKind.DEVICE_OFFLINE))
    assert (await out).status == 404


async def test_a_caller_leaving_cancels_the_call() -> None:
    loop = asyncio.get_running_loop()
    source: asyncio.Future[CallOutcome] = loop.create_future()
    out = response_future(source, _ok, _error)
    out.cancel()
    await asyncio.sleep(0)
    assert source.cancelled()


async def test_an_answer_in_the_same_iteration_the_caller_left_is_not_an_unretrieved_exception() -> None:
    """Found by the fuzzer ("Future exception was never retrieved | HubError"): the caller's future
    was cancelled and the engine failed the call before ``abandoned`` ran; ``done`` then returned
    without retrieving the exception, which asyncio logs with a traceback at collection."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    source: asyncio.Future[CallOutcome] = loop.create_future()
    out = response_future(source, _ok, _error)
    out.cancel()
    source.set_exception(HubError(ErrorKind.DEVICE_NOT_FOUND))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    del source, out
    gc.collect()
    assert [c["message"] for c in reported] == []
