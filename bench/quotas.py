"""``python -m bench.quotas``: what the quotas (methodhub.calls.quotas) cost on the call path.

1. The check alone, in ns: ``Quotas.check_call`` with the limits off (what every hub without quotas
   runs: the engine does not even call it, one ``is None`` test), with the hub-wide rate on, and with
   the hub-wide and per-policy rates on (rates out of reach, so every check passes: the common case);
   plus a bucket's ``take()``. Best of ``--repeat`` timeit runs of ``--number`` checks.
2. ``--end-to-end``: bench/inproc_calls.py's figure (the hub's CPU µs per direct method call, in one
   process) with the quotas off and on, rounds interleaved in the same run, best and median of each.

Brief by design (the machine is shared): the default takes a few seconds; ``--end-to-end`` about 20.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import timeit

from methodhub.calls.quotas import QuotaLimits, Quotas, TokenBucket

OUT_OF_REACH = 1e12


def check_costs(number: int, repeat: int) -> dict[str, float]:
    """ns per check, best of ``repeat`` runs of ``number``."""
    off = Quotas(QuotaLimits())
    hub = Quotas(QuotaLimits(method_calls_per_second=OUT_OF_REACH))
    both = Quotas(
        QuotaLimits(method_calls_per_second=OUT_OF_REACH, method_calls_per_policy_per_second=OUT_OF_REACH)
    )
    bucket = TokenBucket(OUT_OF_REACH)
    engine_guard_off: Quotas | None = None
    origin = object()
    cases = {
        "engine guard, quotas off (is None)": lambda: engine_guard_off is not None and origin is not None,
        "check_call, limits off": lambda: off.check_call("service"),
        "check_call, hub rate on": lambda: hub.check_call("service"),
        "check_call, hub + per-policy rates on": lambda: both.check_call("service"),
        "TokenBucket.take()": bucket.take,
        "empty lambda (timeit overhead)": lambda: None,
    }
    return {
        name: min(timeit.repeat(case, number=number, repeat=repeat)) / number * 1e9
        for name, case in cases.items()
    }


def end_to_end(rounds: int, calls: int) -> dict[str, list[float]]:
    from bench.inproc_calls import measure, new_loop

    figures: dict[str, list[float]] = {"off": [], "on": []}
    for n in range(rounds):
        for mode in ("off", "on") if n % 2 == 0 else ("on", "off"):  # neither always goes first
            args = argparse.Namespace(
                calls=calls,
                rounds=1,
                warmup=200,
                connections=64,
                loop="uvloop",
                transport="mqtt",
                unsettled=False,
                quotas=mode == "on",
            )
            with asyncio.Runner(loop_factory=lambda: new_loop("uvloop")) as runner:
                cpu, _ = runner.run(measure(args))
            figures[mode].extend(cpu)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quotas", description=__doc__)
    parser.add_argument("--number", type=int, default=1_000_000, help="checks per timeit run")
    parser.add_argument("--repeat", type=int, default=5, help="timeit runs (the best is printed)")
    parser.add_argument("--end-to-end", action="store_true", help="also the in-process calls figure")
    parser.add_argument("--rounds", type=int, default=3, help="--end-to-end: rounds of each mode")
    parser.add_argument("--calls", type=int, default=5000, help="--end-to-end: calls per round")
    args = parser.parse_args(argv)
    for name, ns in check_costs(args.number, args.repeat).items():
        print(f"quotas: {name}: {ns:.0f} ns")
    if args.end_to_end:
        figures = end_to_end(args.rounds, args.calls)
        for mode, cpu in figures.items():
            print(
                f"quotas {mode}: inproc calls CPU best {min(cpu):.2f} median {statistics.median(cpu):.2f} "
                f"µs/call ({len(cpu)} rounds × {args.calls:,} calls, interleaved)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
