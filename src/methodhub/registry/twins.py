"""Device and module twins: tags, desired and reported properties, their versions and metadata.

A twin is a value (:class:`Twin`); the functions here compute the next value from a change, and the
registry stores it (``Registry.get_twin`` / ``update_twin``, one transaction per change, with the
twin's etag checked). Every identity has a twin from its creation on: a registry with no stored row
for it answers :func:`empty_twin`.

Rules (azure-jobs-twins-query.md §3, IoT Hub's documented behaviour):

- The service merges into ``tags`` and ``desired`` (:func:`patch_twin`, PATCH) or replaces them
  (:func:`replace_twin`, PUT); a ``null`` in a merge removes the key. It never writes ``reported``.
- The device merges into ``reported`` (:func:`patch_reported`); it never writes ``desired``.
- ``version`` counts service changes (tags and desired); ``desired_version`` and
  ``reported_version`` start at 1 and increase with every change of their side; the etag changes
  with every change of any part.
- Metadata: every node of desired and reported has ``$lastUpdated`` (the time it or a node under it
  last changed) and every leaf ``$lastUpdatedVersion`` (the side's version that wrote it).
- Limits (:func:`check_properties`): keys ≤ 1 KiB of UTF-8, without control characters, ``.``,
  ``$`` or space; depth ≤ 10; tags ≤ 8 KiB, desired and reported ≤ 32 KiB each (compact JSON);
  strings ≤ 4 KiB; integers within ±2^52. Arrays are accepted as values (newer IoT Hubs take them;
  the 2020 documentation said they were not: decided here, docs/azure-compatibility.md).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from methodhub.errors import ErrorKind, HubError

MAX_TAGS_BYTES = 8 * 1024
MAX_PROPERTIES_BYTES = 32 * 1024
MAX_STRING_BYTES = 4 * 1024
MAX_KEY_BYTES = 1024
MAX_DEPTH = 10
KEPT_PATCHES = 8
MAX_INTEGER = 4503599627370495
MIN_INTEGER = -4503599627370496
_BAD_KEY = re.compile(r"[\x00-\x1f\x7f-\x9f.$ ]")


@dataclass(frozen=True, slots=True)
class Twin:
    """One identity's twin. The property dicts hold JSON values only (no ``$version`` or
    ``$metadata`` keys: those are rendered from the fields)."""

    device_id: str
    module_id: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    desired: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    desired_metadata: dict[str, Any] = field(default_factory=dict)
    reported_metadata: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    desired_version: int = 1
    reported_version: int = 1
    etag: str = ""
    desired_patches: tuple[tuple[int, float, dict[str, Any]], ...] = ()
    """The last :data:`KEPT_PATCHES` changes of the desired properties as ``(desired_version,
    epoch seconds, patch)``, oldest first: what a device is notified of (a replace is the patch
    that turns the old properties into the new, ``null`` for each removed key)."""

    @property
    def key(self) -> str:
        return self.device_id if self.module_id is None else f"{self.device_id}/{self.module_id}"

    def document(self) -> dict[str, Any]:
        """What is stored in one JSON column (the versions and etag have columns of their own)."""
        return {
            "tags": self.tags,
            "desired": self.desired,
            "reported": self.reported,
            "desiredMetadata": self.desired_metadata,
            "reportedMetadata": self.reported_metadata,
            "desiredPatches": [list(entry) for entry in self.desired_patches],
        }

    @classmethod
    def from_document(
        cls,
        device_id: str,
        module_id: str | None,
        document: dict[str, Any],
        version: int,
        desired_version: int,
        reported_version: int,
        etag: str,
    ) -> Twin:
        return cls(
            device_id,
            module_id,
            document.get("tags", {}),
            document.get("desired", {}),
            document.get("reported", {}),
            document.get("desiredMetadata", {}),
            document.get("reportedMetadata", {}),
            version,
            desired_version,
            reported_version,
            etag,
            tuple((int(v), float(at), p) for v, at, p in document.get("desiredPatches", [])),
        )


def twin_etag(version: int, desired_version: int, reported_version: int) -> str:
    """The etag of a twin state: distinct for every (version, desired, reported) triple, as
    IoT Hub's base64 etags look (``AAAAAAAAAAE=``)."""
    raw = (
        version.to_bytes(8, "big") + desired_version.to_bytes(8, "big") + reported_version.to_bytes(8, "big")
    )
    return base64.b64encode(raw.lstrip(b"\0") or b"\0").decode()


def timestamp(now: float) -> str:
    """IoT Hub's metadata time: ISO 8601 UTC with 7 fractional digits and ``Z``."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def empty_twin(device_id: str, module_id: str | None, now: float) -> Twin:
    """The twin of a new identity: no tags, no properties, every version 1."""
    at = timestamp(now)
    return Twin(
        device_id,
        module_id,
        desired_metadata={"$lastUpdated": at},
        reported_metadata={"$lastUpdated": at},
        etag=twin_etag(1, 1, 1),
    )


def check_twin_etag(etag: str | None, current: Twin) -> None:
    """Raise ``PRECONDITION_FAILED`` unless ``etag`` is None, ``"*"`` or ``current.etag``."""
    if etag in (None, "*") or etag == current.etag:
        return
    raise HubError(
        ErrorKind.PRECONDITION_FAILED,
        f"The etag {etag!r} does not match the current twin of '{current.key}' ({current.etag!r}).",
    )


# -- checks --------------------------------------------------------------------------------------------


def _invalid(message: str) -> HubError:
    return HubError(ErrorKind.INVALID_ARGUMENT, message)


def check_properties(value: object, what: str, limit: int, *, patch: bool) -> dict[str, Any]:
    """``value`` as a property object within the limits (module docstring); ``patch``: ``null``
    leaves are allowed (they remove keys). Raises ``INVALID_ARGUMENT`` saying what is wrong."""
    if not isinstance(value, dict):
        raise _invalid(f"The twin's {what} must be a JSON object, not {type(value).__name__}.")
    _check_node(value, what, 1, patch)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limit:
        raise _invalid(f"The twin's {what} are {size} bytes; at most {limit} are allowed.")
    return value


def _check_node(node: dict[str, Any], path: str, depth: int, patch: bool) -> None:
    if depth > MAX_DEPTH:
        raise _invalid(f"The twin's {path} nests deeper than {MAX_DEPTH} levels.")
    for key, value in node.items():
        if not key or _BAD_KEY.search(key) or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise _invalid(
                f"The property name {key[:64]!r} in the twin's {path} is not allowed: names are 1 to "
                f"{MAX_KEY_BYTES} bytes without control characters, '.', '$' or spaces."
            )
        _check_value(value, f"{path}.{key}", depth, patch)


def _check_value(value: object, path: str, depth: int, patch: bool) -> None:
    if value is None:
        if not patch:
            raise _invalid(f"The twin's {path} is null; null only removes a property in a patch.")
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if not MIN_INTEGER <= value <= MAX_INTEGER:
            raise _invalid(f"The twin's {path} is an integer outside ±2^52.")
    elif isinstance(value, float):
        pass
    elif isinstance(value, str):
        if len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES:
            raise _invalid(f"The twin's {path} is a string over {MAX_STRING_BYTES} bytes.")
    elif isinstance(value, dict):
        _check_node(value, path, depth + 1, patch)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            if item is None or isinstance(item, dict | list):
                _check_value(item, f"{path}[{n}]", depth + 1, False)
            else:
                _check_value(item, f"{path}[{n}]", depth, False)
    else:
        raise _invalid(f"The twin's {path} is not a JSON value.")


# -- changes -------------------------------------------------------------------------------------------


def _merge(
    target: dict[str, Any], metadata: dict[str, Any], patch: dict[str, Any], at: str, version: int
) -> None:
    """Merge ``patch`` into ``target`` in place (``None`` removes), updating ``metadata``."""
    metadata["$lastUpdated"] = at
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
            metadata.pop(key, None)
        elif isinstance(value, dict):
            inner = target.get(key)
            inner_meta = metadata.get(key)
            if not isinstance(inner, dict):
                inner = target[key] = {}
                inner_meta = metadata[key] = {}
            elif not isinstance(inner_meta, dict):
                inner_meta = metadata[key] = {}
            _merge(inner, inner_meta, value, at, version)
        else:
            target[key] = value
            metadata[key] = {"$lastUpdated": at, "$lastUpdatedVersion": version}


def _tree(properties: dict[str, Any], at: str, version: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    _merge({}, metadata, properties, at, version)
    return metadata


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


def _stamped(twin: Twin, **changes: Any) -> Twin:
    new = replace(twin, **changes)
    return replace(new, etag=twin_etag(new.version, new.desired_version, new.reported_version))


def _kept(
    twin: Twin, version: int, now: float, patch: dict[str, Any]
) -> tuple[tuple[int, float, dict[str, Any]], ...]:
    return (*twin.desired_patches, (version, now, _copy(patch)))[-KEPT_PATCHES:]


def desired_patches_since(
    twin: Twin, version: int | None, since: float = 0.0
) -> list[tuple[int, dict[str, Any]]] | None:
    """The desired-property patches after ``version`` (None: those made at or after ``since``,
    epoch seconds), oldest first; None when some after ``version`` are no longer kept (then only
    the whole desired properties tell the device what it missed)."""
    if version is None:
        return [(v, p) for v, at, p in twin.desired_patches if at >= since]
    missing = [(v, p) for v, _, p in twin.desired_patches if v > version]
    if len(missing) != twin.desired_version - version:
        return None
    return missing


def patch_twin(twin: Twin, tags: object | None, desired: object | None, now: float) -> Twin:
    """The service's merge (PATCH): ``tags`` and/or ``desired`` (None: not in the request)."""
    at = timestamp(now)
    changes: dict[str, Any] = {"version": twin.version + 1}
    if tags is not None:
        merged = _copy(twin.tags)
        _merge(merged, {}, check_properties(tags, "tags", MAX_TAGS_BYTES, patch=True), at, 0)
        changes["tags"] = check_properties(merged, "tags", MAX_TAGS_BYTES, patch=False)
    if desired is not None:
        patch = check_properties(desired, "desired properties", MAX_PROPERTIES_BYTES, patch=True)
        version = twin.desired_version + 1
        merged, metadata = _copy(twin.desired), _copy(twin.desired_metadata)
        _merge(merged, metadata, patch, at, version)
        check_properties(merged, "desired properties", MAX_PROPERTIES_BYTES, patch=False)
        changes.update(
            desired=merged,
            desired_metadata=metadata,
            desired_version=version,
            desired_patches=_kept(twin, version, now, patch),
        )
    return _stamped(twin, **changes)


def replace_twin(twin: Twin, tags: object | None, desired: object | None, now: float) -> Twin:
    """The service's replace (PUT): ``tags`` and ``desired`` wholesale (None: emptied)."""
    at = timestamp(now)
    new_tags = check_properties(tags if tags is not None else {}, "tags", MAX_TAGS_BYTES, patch=False)
    new_desired = check_properties(
        desired if desired is not None else {}, "desired properties", MAX_PROPERTIES_BYTES, patch=False
    )
    version = twin.desired_version + 1
    return _stamped(
        twin,
        version=twin.version + 1,
        tags=_copy(new_tags),
        desired=_copy(new_desired),
        desired_metadata=_tree(new_desired, at, version),
        desired_version=version,
        desired_patches=_kept(
            twin, version, now, {**{k: None for k in twin.desired if k not in new_desired}, **new_desired}
        ),
    )


def patch_reported(twin: Twin, patch: object, now: float) -> Twin:
    """The device's merge into its reported properties."""
    checked = check_properties(patch, "reported properties", MAX_PROPERTIES_BYTES, patch=True)
    at = timestamp(now)
    version = twin.reported_version + 1
    merged, metadata = _copy(twin.reported), _copy(twin.reported_metadata)
    _merge(merged, metadata, checked, at, version)
    check_properties(merged, "reported properties", MAX_PROPERTIES_BYTES, patch=False)
    return _stamped(twin, reported=merged, reported_metadata=metadata, reported_version=version)
