"""Thing models (TSL) on the POP API, and asynchronous ``InvokeThingService`` calls.

Actions (added to :class:`~methodhub.dialects.aliyun.pop.AliyunApi`'s table by :meth:`ThingModels.actions`):

* ``ImportThingModelTsl`` (RegistryWrite): ``ProductKey``, ``TslStr`` (the TSL JSON text),
  ``FunctionBlockId`` (a custom module's; none: the default module) → ``{RequestId, Success}``. The
  TSL is validated (:func:`~methodhub.dialects.aliyun.thing_model.parse_tsl`) and stored as given,
  replacing the module's previous one. ``TslUrl`` (a file Alibaba fetches) is refused: give
  ``TslStr``. A product methodhub does not know yet (no device) is created, so a TSL can come first.
* ``GetThingModelTsl`` (RegistryRead): ``ProductKey``, ``FunctionBlockId`` → ``Data {TslStr}``.
  ``ModelVersion`` and ``Simple`` are accepted and ignored: methodhub keeps one version, as given.

``InvokeThingService`` asks :meth:`ThingModels.call_type` for a product device's service; an
asynchronous one is :meth:`ThingModels.invoke_async`: a queued call (:mod:`methodhub.calls.delivery`)
whose method is ``async/{identifier}`` (:func:`~methodhub.dialects.aliyun.calls.async_method`), its
id the ``MessageId`` answered at once (``GET /calls/{MessageId}``, ``QueryDeviceServiceData``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from methodhub.calls.delivery import QueuedCalls
from methodhub.dialects.aliyun.calls import async_method
from methodhub.dialects.aliyun.errors import required
from methodhub.dialects.aliyun.thing_model import (
    ASYNC,
    SYNC,
    call_type,
    parse_tsl,
    product_of,
    validate_function_block_id,
)
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import Registry, Right, validate_product_key

Handler = Callable[[dict[str, str], str], Awaitable[dict[str, Any]]]

ASYNC_SERVICE_TIMEOUT = 30.0
"""Seconds an asynchronous service's device has to answer on ``…_reply`` (Alibaba documents no
limit; a sync service has 8). Past it the call is ``failed`` with ``CALL_TIMEOUT``."""
ASYNC_SERVICE_EXPIRES = ASYNC_SERVICE_TIMEOUT
"""Seconds an asynchronous ``InvokeThingService`` call may wait to be sent: it is made only to a
device online when asked (else the answer is the sync call's offline error), so it is sent at once
unless the device drops meanwhile."""


class ThingModels:
    """The actions and the sync/async choice; see the module docstring."""

    def __init__(self, registry: Registry, calls: QueuedCalls) -> None:
        self.registry = registry
        self.calls = calls

    def actions(self) -> dict[str, tuple[Right, Handler]]:
        return {
            "ImportThingModelTsl": (Right.REGISTRY_WRITE, self.import_thing_model_tsl),
            "GetThingModelTsl": (Right.REGISTRY_READ, self.get_thing_model_tsl),
        }

    async def import_thing_model_tsl(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        product_key = validate_product_key(required(params, "ProductKey"))
        module = validate_function_block_id(params.get("FunctionBlockId") or "")
        text = params.get("TslStr")
        if not text:
            if params.get("TslUrl"):
                raise HubError(
                    ErrorKind.INVALID_ARGUMENT,
                    "TslUrl is not supported by methodhub (it fetches no files); give the TSL's JSON "
                    "text as TslStr.",
                )
            required(params, "TslStr")
        assert text is not None
        parse_tsl(text)
        await self.registry.set_product_tsl(product_key, text, module)
        return {}

    async def get_thing_model_tsl(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        product_key = validate_product_key(required(params, "ProductKey"))
        module = validate_function_block_id(params.get("FunctionBlockId") or "")
        text = await self.registry.get_product_tsl(product_key, module)
        if text is None:
            where = f"module {module!r} of product" if module else "product"
            raise HubError(
                ErrorKind.TSL_NOT_FOUND,
                f"The {where} {product_key!r} has no thing model; give it one with ImportThingModelTsl "
                "or `methodhub product set-tsl`. Without one every service is called synchronously.",
            )
        return {"Data": {"TslStr": text}}

    async def call_type(self, target: str, identifier: str) -> str:
        """``"sync"`` or ``"async"`` for a call of service ``identifier`` to device ``target``."""
        product_key = product_of(target)
        if product_key is None or await call_type(self.registry, product_key, identifier) == SYNC:
            return SYNC
        # An Azure device may have an id of that shape: only a device of the product is asynchronous.
        return ASYNC if await self.registry.find_product_device(target) is not None else SYNC

    async def invoke_async(self, target: str, identifier: str, args: bytes) -> str:
        """Queue an asynchronous service call to ``target`` (online now, else ``DEVICE_OFFLINE``);
        returns its MessageId (the call's id)."""
        if not await self.calls.carrier.wait_ready(target, 0):
            if await self.registry.get_identity(target) is None:
                raise HubError(ErrorKind.DEVICE_NOT_FOUND, f"No device with IotId {target!r} is registered.")
            raise HubError(
                ErrorKind.DEVICE_OFFLINE,
                f"Device {target!r} is not online; an asynchronous service is sent only to an online device.",
            )
        call, _ = await self.calls.create(
            target,
            None,
            async_method(identifier),
            args,
            response_timeout=ASYNC_SERVICE_TIMEOUT,
            expires=ASYNC_SERVICE_EXPIRES,
        )
        return call.call_id


__all__ = ["ASYNC", "ASYNC_SERVICE_TIMEOUT", "SYNC", "ThingModels"]
