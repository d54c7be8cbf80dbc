"""Twin changes (registry/twins.py): merges, replacement, versions, metadata and limits."""

from __future__ import annotations

import pytest

from methodhub.errors import ErrorKind
from methodhub.registry.twins import (
    MAX_PROPERTIES_BYTES,
    empty_twin,
    patch_reported,
    patch_twin,
    replace_twin,
    timestamp,
)
from tests.unit.registry.helpers import raises_hub_error

T0 = 1_800_000_000.0


def test_a_merge_adds_replaces_and_null_removes_recursively() -> None:
    twin = patch_twin(empty_twin("d", None, T0), {"a": {"b": 1, "c": 2}}, {"x": {"y": 1, "z": 2}, "w": 3}, T0)
    twin = patch_twin(twin, {"a": {"b": None, "d": 4}}, {"x": {"y": None}, "w": {"deep": True}}, T0 + 1)
    assert twin.tags == {"a": {"c": 2, "d": 4}}
    assert twin.desired == {"x": {"z": 2}, "w": {"deep": True}}
    assert (twin.version, twin.desired_version, twin.reported_version) == (3, 3, 1)


def test_metadata_has_last_updated_on_every_node_and_the_version_on_leaves() -> None:
    twin = patch_twin(empty_twin("d", None, T0), None, {"x": {"y": 1}, "z": 2}, T0)
    later = patch_twin(twin, None, {"z": 3}, T0 + 10)
    meta = later.desired_metadata
    assert meta["$lastUpdated"] == timestamp(T0 + 10)
    assert meta["z"] == {"$lastUpdated": timestamp(T0 + 10), "$lastUpdatedVersion": 3}
    assert meta["x"]["$lastUpdated"] == timestamp(T0)  # untouched
    assert meta["x"]["y"] == {"$lastUpdated": timestamp(T0), "$lastUpdatedVersion": 2}
    assert timestamp(T0).endswith("0Z") and len(timestamp(T0)) == 28


def test_replace_empties_what_it_is_not_given_and_leaves_reported() -> None:
    twin = patch_reported(patch_twin(empty_twin("d", None, T0), {"a": 1}, {"b": 2}, T0), {"r": 1}, T0)
    replaced = replace_twin(twin, {"c": 3}, None, T0 + 1)
    assert (replaced.tags, replaced.desired, replaced.reported) == ({"c": 3}, {}, {"r": 1})
    assert set(replaced.desired_metadata) == {"$lastUpdated"}


def test_every_change_has_a_new_etag() -> None:
    twin = empty_twin("d", None, T0)
    etags = {twin.etag}
    for step in range(5):
        twin = patch_reported(twin, {"n": step}, T0) if step % 2 else patch_twin(twin, {"n": step}, None, T0)
        etags.add(twin.etag)
    assert len(etags) == 6


@pytest.mark.parametrize(
    ("tags", "desired", "words"),
    [
        ({"a.b": 1}, None, "is not allowed"),
        ({"$a": 1}, None, "is not allowed"),
        ({"a b": 1}, None, "is not allowed"),
        (None, {"x": None}, None),  # a null in a patch is a removal, fine
        (None, {"x": 2**60}, "outside"),
        (None, {"x": "s" * 5000}, "string over"),
        (None, {"x": {"y": {"z": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}}}, "deeper"),
        (None, {"x": "s" * 4000, "y": "s" * 4000, "z": ["s" * 4000] * 8}, "bytes; at most"),
        (None, [1], "must be a JSON object"),
    ],
)
def test_limits(tags: object, desired: object, words: str | None) -> None:
    twin = empty_twin("d", None, T0)
    if words is None:
        patch_twin(twin, tags, desired, T0)
        return
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, words):
        patch_twin(twin, tags, desired, T0)
    assert MAX_PROPERTIES_BYTES == 32 * 1024


def test_arrays_are_values_and_a_null_cannot_be_stored_by_replace() -> None:
    twin = patch_reported(empty_twin("d", None, T0), {"list": [1, "a", {"k": True}]}, T0)
    assert twin.reported == {"list": [1, "a", {"k": True}]}
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        replace_twin(twin, {"a": None}, None, T0)
