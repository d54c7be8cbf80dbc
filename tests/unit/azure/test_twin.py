"""Desired-property notifications (dialects/azure/twin.py: desired_updates)."""

from __future__ import annotations

import json

from methodhub.dialects.azure.twin import desired_updates
from methodhub.registry.twins import KEPT_PATCHES, Twin, empty_twin, patch_twin, replace_twin

T0 = 1_800_000_000.0


def _changes(twin: Twin, *patches: dict[str, object], at: float = T0) -> Twin:
    for n, patch in enumerate(patches):
        twin = patch_twin(twin, None, patch, at + n)
    return twin


def test_a_device_gets_the_changes_made_since_it_subscribed_in_order() -> None:
    twin = _changes(empty_twin("d", None, T0), {"old": 1}, at=T0 - 100)  # before it subscribed
    twin = _changes(twin, {"a": 1}, {"a": None, "b": 2})
    updates, sent = desired_updates(twin, None, subscribed_at=T0)
    assert [(v, json.loads(p)) for v, p in updates] == [
        (3, {"a": 1, "$version": 3}),
        (4, {"a": None, "b": 2, "$version": 4}),
    ]
    assert sent == 4
    assert desired_updates(twin, sent, T0) == ([], 4)  # nothing new
    twin = _changes(twin, {"c": 3}, at=T0 + 10)
    updates, sent = desired_updates(twin, sent, T0)
    assert [json.loads(p) for _, p in updates] == [{"c": 3, "$version": 5}] and sent == 5


def test_missed_patches_no_longer_kept_are_replaced_by_the_whole_desired_properties() -> None:
    twin = empty_twin("d", None, T0)
    first = _changes(twin, {"k0": 0})
    updates, sent = desired_updates(first, None, T0)
    twin = _changes(first, *({f"k{n}": n} for n in range(1, KEPT_PATCHES + 3)), at=T0 + 1)
    updates, sent = desired_updates(twin, sent, T0)
    assert len(updates) == 1 and sent == twin.desired_version
    assert json.loads(updates[0][1]) == {**twin.desired, "$version": twin.desired_version}


def test_a_replace_is_notified_as_the_patch_that_removes_what_went() -> None:
    twin = _changes(empty_twin("d", None, T0), {"a": 1, "b": 2})
    twin = replace_twin(twin, None, {"b": 3}, T0 + 1)
    updates, _ = desired_updates(twin, 2, T0)
    assert [json.loads(p) for _, p in updates] == [{"a": None, "b": 3, "$version": 3}]
