"""Azure IoT Hub's S1, S2 and S3 throttles as :class:`~methodhub.calls.quotas.QuotaLimits` presets.

From Microsoft's "IoT Hub quotas and throttling" page (learn.microsoft.com/azure/iot-hub/
iot-hub-devguide-quotas-throttling; MicrosoftDocs/azure-docs articles/iot-hub/
iot-hub-devguide-quotas-throttling.md), per hub, for ``units`` units of the tier:

================================= ======================= ======================= ====================
Throttle                          S1                      S2                      S3
================================= ======================= ======================= ====================
Direct methods                    160 KB/s/unit           480 KB/s/unit           24 MB/s/unit
New device connections            max(100/s, 12/s/unit)   120/s/unit              6,000/s/unit
Identity registry operations      1.67/s/unit (100/min)   1.67/s/unit (100/min)   83.33/s/unit (5,000/min)
Jobs device operations            10/s                    max(10/s, 1/s/unit)     50/s/unit
================================= ======================= ======================= ====================

Approximations: direct methods are metered in 4 KB chunks ("you can make up to 40 calls per second
per unit" on S1); methodhub counts calls, so the presets allow 40, 120 and 6,000 calls/s/unit
(24 MB read as 24,000 KB), which is exact for payloads up to 4 KB and generous above. Azure applies
its throttles "in minute ranges" and shapes bursts before refusing; the presets' buckets hold 60
seconds of their rate. Azure has no per-policy call rate: the presets leave it off.
"""

from __future__ import annotations

from methodhub.calls.quotas import QuotaLimits

PRESETS = ("S1", "S2", "S3")
PRESET_BURST_SECONDS = 60.0
"""Azure's throttles are "applied in minute ranges": a preset's buckets hold a minute of rate."""
METER_KB = 4
"""Azure's direct-method throttling meter: a call of up to 4 KB counts as 4 KB."""


def azure_preset(name: str, units: int = 1) -> QuotaLimits:
    """The throttles of an Azure IoT Hub of ``units`` units of tier ``name`` (``S1``, ``S2``, ``S3``).

    Raises:
        ValueError: an unknown tier, or ``units`` below 1.
    """
    tier = name.upper()
    if tier not in PRESETS:
        raise ValueError(f"unknown quota preset {name!r}; choose one of {', '.join(PRESETS)} or off")
    if units < 1:
        raise ValueError(f"units must be at least 1, not {units}")
    if tier == "S1":
        methods_kb, connects, registry, jobs = 160, max(100.0, 12.0 * units), 100 / 60, 10.0
    elif tier == "S2":
        methods_kb, connects, registry, jobs = 480, 120.0 * units, 100 / 60, max(10.0, 1.0 * units)
    else:
        methods_kb, connects, registry, jobs = 24_000, 6000.0 * units, 5000 / 60, 50.0 * units
    return QuotaLimits(
        method_calls_per_second=methods_kb / METER_KB * units,
        device_connects_per_second=connects,
        registry_operations_per_second=round(registry * units, 4),
        job_device_operations_per_second=jobs,
        burst_seconds=PRESET_BURST_SECONDS,
        preset=f"{tier}x{units}" if units > 1 else tier,
    )
