"""Which device and module ids are allowed."""

from __future__ import annotations

import string

from methodhub.errors import ErrorKind, HubError

MAX_ID_LENGTH = 128
ID_PUNCTUATION = "-.%_*?!(),:=@$'"
ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + ID_PUNCTUATION)
"""Azure's rule: ASCII letters, digits and ``- . + % _ # * ? ! ( ) , : = @ $ '``, up to 128
characters, case-sensitive. methodhub refuses ``+`` and ``#``: they are MQTT wildcards and a device
id appears in topic names (``devices/{id}/messages/events``), where they are illegal."""


def _validate(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"A {kind} id is required.")
    if len(value) > MAX_ID_LENGTH:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"A {kind} id has at most {MAX_ID_LENGTH} characters.")
    bad = sorted({c for c in value if c not in ID_CHARACTERS})
    if bad:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"The {kind} id {value!r} contains {''.join(bad)!r}; "
            f"use ASCII letters, digits and {ID_PUNCTUATION}",
        )
    return value


def validate_device_id(device_id: object) -> str:
    """Return ``device_id`` if allowed, else raise ``INVALID_ARGUMENT`` saying what is allowed."""
    return _validate("device", device_id)


def validate_module_id(module_id: object) -> str:
    """Return ``module_id`` if allowed, else raise ``INVALID_ARGUMENT`` saying what is allowed."""
    return _validate("module", module_id)
