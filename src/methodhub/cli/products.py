"""``methodhub product set-tsl|show-tsl``: an Alibaba Cloud product's thing model (TSL).

The TSL says which services are synchronous (RRPC mode) and which asynchronous (the service topic
and its ``_reply``); a service a product's TSL does not define is synchronous
(:mod:`methodhub.dialects.aliyun.thing_model`). ``ImportThingModelTsl`` / ``GetThingModelTsl`` do the
same over the POP API.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from methodhub.cli.exits import EXIT_USAGE, fail
from methodhub.cli.registry import open_hub_registry
from methodhub.dialects.aliyun.thing_model import parse_tsl, validate_function_block_id
from methodhub.errors import HubError
from methodhub.registry import validate_product_key


def add_product_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    product = commands.add_parser(
        "product", parents=[common], help="manage Alibaba Cloud products (their thing models)"
    )
    product_commands = product.add_subparsers(dest="product_command", metavar="ACTION", required=True)
    set_tsl = product_commands.add_parser(
        "set-tsl",
        parents=[common],
        help="give product PK its thing model (TSL JSON file, '-' for stdin): its services' callType "
        "(sync or async) decides how they are called",
    )
    set_tsl.add_argument("product_key", metavar="PK")
    set_tsl.add_argument("file", metavar="TSL_FILE")
    show_tsl = product_commands.add_parser(
        "show-tsl", parents=[common], help="print product PK's thing model"
    )
    show_tsl.add_argument("product_key", metavar="PK")
    for sub in (set_tsl, show_tsl):
        sub.add_argument(
            "--module", default="", metavar="ID", help="a custom module's TSL (its FunctionBlockId)"
        )


def manage_products(args: argparse.Namespace, data_dir: Path) -> None:
    """``product set-tsl|show-tsl``."""
    try:
        validate_product_key(args.product_key)
        validate_function_block_id(args.module)
    except HubError as exc:
        fail(exc.message, EXIT_USAGE)
    text = summary = None
    if args.product_command == "set-tsl":
        text = _read(args.file)
        try:
            services = parse_tsl(text)
        except HubError as exc:
            fail(f"{args.file}: {exc.message}")
        asyncs = sorted(name for name, kind in services.items() if kind == "async")
        module = f" module '{args.module}'" if args.module else ""
        summary = (
            f"product '{args.product_key}'{module}: thing model set, {len(services)} services, "
            f"asynchronous: {', '.join(asyncs) or 'none'}; any other service is called synchronously"
        )
    asyncio.run(_product(args, data_dir, text))
    if summary is not None:
        print(summary, file=sys.stderr)


def _read(name: str) -> str:
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        fail(f"cannot read {name}: {exc.strerror or exc}")
    try:
        return data.decode("utf-8-sig")  # the console's export may carry a BOM
    except UnicodeDecodeError:
        fail(f"{name}: a TSL is UTF-8 JSON text")


async def _product(args: argparse.Namespace, data_dir: Path, text: str | None) -> None:
    registry = await open_hub_registry(data_dir, args.registry_url, create=text is not None)
    try:
        if text is not None:
            await registry.set_product_tsl(args.product_key, text, args.module)
        else:
            found = await registry.get_product_tsl(args.product_key, args.module)
            if found is None:
                where = f"module '{args.module}' of product" if args.module else "product"
                fail(
                    f"{where} '{args.product_key}' has no thing model (every service is called "
                    f"synchronously); give it one with `methodhub product set-tsl {args.product_key} FILE`"
                )
            print(found)
    except HubError as exc:
        fail(exc.message)
    finally:
        await registry.close()
