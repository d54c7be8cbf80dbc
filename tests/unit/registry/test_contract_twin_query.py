"""Registry contract: twin queries evaluated in the database (registry/twin_query.py), on every
backend, checked against the reference evaluator (methodhub.query.run) over the same documents."""

from __future__ import annotations

import time

import pytest

from methodhub.query import parse, run
from methodhub.registry import Registry
from methodhub.registry.twins import patch_reported, patch_twin

QUERIES = [
    "SELECT * FROM devices",
    "SELECT * FROM devices WHERE tags.site = 'A'",
    "SELECT * FROM devices WHERE properties.reported.fw = '1.2' AND tags.floor > 1",
    "SELECT deviceId, tags.site AS site FROM devices WHERE NOT (tags.site = 'B')",
    "SELECT * FROM devices WHERE properties.desired.interval IN [30, 60]",
    "SELECT * FROM devices WHERE IS_DEFINED(properties.reported.fw)",
    "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'pump-')",
    "SELECT COUNT() AS n FROM devices",
    "SELECT tags.site, COUNT() AS n FROM devices GROUP BY tags.site",
    "SELECT * FROM devices WHERE properties.desired.$version = 2",
    "SELECT * FROM devices.modules WHERE tags.role = 'sensor'",
    "SELECT * FROM devices WHERE status = 'disabled'",
]


async def _fleet(registry: Registry) -> None:
    now = time.time()
    for n in range(12):
        device_id = f"pump-{n:02d}" if n % 3 else f"valve-{n:02d}"
        await registry.create_identity(device_id, status="disabled" if n == 4 else "enabled")
        site = "A" if n % 2 else "B"
        desired = {"interval": 30 if n % 4 else 60} if n % 5 else None
        await registry.update_twin(
            device_id,
            None,
            lambda t, s=site, d=desired, f=n: patch_twin(t, {"site": s, "floor": f % 4}, d, now),
        )
        if n % 3 == 1:
            await registry.update_twin(device_id, None, lambda t: patch_reported(t, {"fw": "1.2"}, now))
    await registry.create_identity("pump-01", "m1")
    await registry.update_twin("pump-01", "m1", lambda t: patch_twin(t, {"role": "sensor"}, None, now))


async def _documents(registry: Registry, collection: str) -> list[object]:
    return await registry.query_twins(parse(f"SELECT * FROM {collection}"), limit=1000)


def _sorted(rows: list[object]) -> list[str]:
    import json

    return sorted(json.dumps(r, sort_keys=True) for r in rows)


@pytest.mark.parametrize("text", QUERIES)
async def test_the_database_agrees_with_the_reference_evaluator(registry: Registry, text: str) -> None:
    await _fleet(registry)
    query = parse(text)
    documents = await _documents(registry, "devices.modules" if "modules" in text else "devices")
    expected = run(query, documents)
    got = await registry.query_twins(query, limit=1000)
    assert _sorted(got) == _sorted(expected), text
    if text == "SELECT COUNT() AS n FROM devices":
        assert got == [{"n": 12}]


async def test_the_document_of_a_twin(registry: Registry) -> None:
    await _fleet(registry)
    [doc] = await registry.query_twins(parse("SELECT * FROM devices WHERE deviceId = 'pump-01'"))
    assert doc["tags"] == {"site": "A", "floor": 1} and doc["status"] == "enabled"
    assert doc["properties"]["reported"] == {"fw": "1.2", "$version": 2}
    assert doc["properties"]["desired"] == {"interval": 30, "$version": 2}
    assert doc["capabilities"] == {"iotEdge": False} and doc["version"] == 2 and doc["etag"]
    [module] = await registry.query_twins(parse("SELECT * FROM devices.modules"))
    assert (module["deviceId"], module["moduleId"], module["tags"]) == ("pump-01", "m1", {"role": "sensor"})


async def test_pages_cover_the_result_once(registry: Registry) -> None:
    await _fleet(registry)
    query = parse("SELECT deviceId FROM devices")
    pages = [await registry.query_twins(query, offset=o, limit=5) for o in (0, 5, 10)]
    assert [len(p) for p in pages] == [5, 5, 2]
    ids = [row["deviceId"] for page in pages for row in page]
    assert ids == sorted(ids) and len(set(ids)) == 12
    top = parse("SELECT TOP 3 deviceId FROM devices")
    assert len(await registry.query_twins(top, offset=0, limit=2)) == 2
    assert len(await registry.query_twins(top, offset=2, limit=2)) == 1


@pytest.mark.parametrize(
    "text",
    [
        "SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'pump-') OR tags.site = 'B'",
        "SELECT * FROM devices.modules",
    ],
)
async def test_paging_after_the_last_row_gives_every_row_once_in_order(registry: Registry, text: str) -> None:
    await _fleet(registry)
    await registry.create_identity("pump-01", "m0")
    await registry.create_identity("pump-02", "m1")
    query = parse(text)
    everything = await registry.query_twins(query, limit=1000)
    assert len(everything) >= 3
    pages: list[object] = []
    after: tuple[str, str] | None = None
    while page := await registry.query_twins(query, limit=2, after=after):
        pages.extend(page)
        last = page[-1]
        assert isinstance(last, dict)
        after = (last["deviceId"], last.get("moduleId") or "")
    assert pages == everything


async def test_paging_after_a_row_is_refused_for_aggregates_and_top(registry: Registry) -> None:
    for text in ("SELECT COUNT() AS n FROM devices", "SELECT TOP 3 * FROM devices"):
        with pytest.raises(ValueError):
            await registry.query_twins(parse(text), after=("a", ""))
