"""A product's thing model (TSL): what methodhub reads of it, and the sync/async choice.

A TSL is Alibaba's JSON document describing a product's properties, services and events (the
console's export, ``thing_setup``'s file). methodhub stores it as given (one per module:
:meth:`~methodhub.registry.Registry.set_product_tsl`) and interprets only ``services``: a list of
objects each with an ``identifier`` and a ``callType`` of ``"sync"`` or ``"async"``. Everything else
(``schema``, ``profile``, ``properties``, ``events``, a service's ``inputData``...) is kept, not
checked.

The call mode of ``InvokeThingService`` / ``InvokeThingsService`` / ``CreateJob`` (:func:`call_type`):
the ``callType`` of the service in the product's TSL — for ``module:identifier``, in the TSL of
module ``module`` (``FunctionBlockId``). **No TSL, or no such service in it: synchronous** (RRPC
mode, as methodhub did before TSLs, and as a device built for synchronous calls expects).
"""

from __future__ import annotations

import re
from typing import Any

from methodhub import jsontext
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import Registry, split_product_device_id

SYNC = "sync"
ASYNC = "async"
CALL_TYPES = (SYNC, ASYNC)
MAX_TSL = 256 * 1024
"""The longest TSL text accepted (bytes of UTF-8): Alibaba's own limit is 256 KB [DOC ImportThingModelTsl]."""
SERVICE_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,50}")
FUNCTION_BLOCK_ID = re.compile(r"[A-Za-z0-9_]{1,30}")
"""A custom module's identifier (``FunctionBlockId``); '' is the default module."""


def _bad(message: str) -> HubError:
    return HubError(ErrorKind.INVALID_ARGUMENT, message)


def validate_function_block_id(text: str) -> str:
    if text and not FUNCTION_BLOCK_ID.fullmatch(text):
        raise _bad(
            f"FunctionBlockId {text[:40]!r} is not a module identifier (letters, digits and _, up to 30)."
        )
    return text


def parse_tsl(text: str) -> dict[str, str]:
    """The services of TSL ``text``: identifier → ``callType``. Raises ``INVALID_ARGUMENT`` saying
    what is wrong: not JSON, not an object, no ``services`` list, a service without a valid
    ``identifier`` or ``callType``, an identifier given twice."""
    if len(text.encode()) > MAX_TSL:
        raise _bad(f"The TSL is {len(text.encode())} bytes; the limit is {MAX_TSL} bytes.")
    try:
        document = jsontext.loads(text)
    except jsontext.NotJson as exc:
        raise _bad(f"The TSL is not JSON: {exc}.") from None
    if not isinstance(document, dict):
        raise _bad('The TSL must be a JSON object ({"services": [...], ...}).')
    services = document.get("services")
    if not isinstance(services, list):
        raise _bad('The TSL has no "services" list (give "services": [] for a product without services).')
    found: dict[str, str] = {}
    for n, service in enumerate(services):
        where = f"services[{n}]"
        if not isinstance(service, dict):
            raise _bad(f"{where} is not an object.")
        identifier = service.get("identifier")
        if not isinstance(identifier, str) or not SERVICE_IDENTIFIER.fullmatch(identifier):
            raise _bad(
                f"{where}.identifier {_shown(identifier)} is not a service identifier (letters, digits "
                "and _, up to 50)."
            )
        call_type = service.get("callType")
        if call_type not in CALL_TYPES:
            raise _bad(f'{where} ({identifier}): callType {_shown(call_type)} must be "sync" or "async".')
        if identifier in found:
            raise _bad(f"{where}: the service {identifier!r} is defined twice.")
        found[identifier] = call_type
    return found


def _shown(value: Any) -> str:
    return "missing" if value is None else repr(value)[:60]


def tsl_call_type(tsl: str | None, identifier: str) -> str:
    """The call mode of service ``identifier`` (without its module) in ``tsl``; sync when there is
    no TSL, no such service, or (stored before a check was added) the text no longer parses."""
    if tsl is None:
        return SYNC
    try:
        return parse_tsl(tsl).get(identifier, SYNC)
    except HubError:
        return SYNC


async def call_type(registry: Registry, product_key: str | None, identifier: str) -> str:
    """:data:`SYNC` or :data:`ASYNC` for service ``identifier`` (``module:identifier`` for a custom
    module's) of product ``product_key`` (None: a device of no product, always sync)."""
    if product_key is None:
        return SYNC
    module, _, name = identifier.rpartition(":")
    return tsl_call_type(await registry.get_product_tsl(product_key, module), name)


def product_of(device_id: str) -> str | None:
    """The ProductKey of an Alibaba device id (``pk:dn``), else None."""
    names = split_product_device_id(device_id)
    return names[0] if names else None
