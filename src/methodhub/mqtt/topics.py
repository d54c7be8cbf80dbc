"""Topic names and topic filters [MQTT-4.7]."""

from __future__ import annotations

MAX_TOPIC_LENGTH = 65535
"""The protocol's limit (a UTF-8 string's two-byte length prefix) [MQTT-4.7.3-3]. Dialects impose
tighter ones (Alibaba: 128 bytes)."""


def topic_name_error(name: str) -> str | None:
    """Why ``name`` is not a valid PUBLISH topic name, or None if it is."""
    if not name:
        return "[MQTT-4.7.3-1] a topic name must be at least one character"
    if "+" in name or "#" in name:
        return "[MQTT-3.3.2-2] a topic name must not contain wildcards"
    return None


def topic_filter_error(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid subscription filter, or None if it is."""
    if not topic_filter:
        return "[MQTT-4.7.3-1] a topic filter must be at least one character"
    if "+" not in topic_filter and "#" not in topic_filter:
        return None
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "[MQTT-4.7.1-2] '#' must be the last level of a filter and stand alone in it"
        if "+" in level and level != "+":
            return "[MQTT-4.7.1-3] '+' must occupy an entire level of a filter"
    return None


def validate_topic_name(name: str) -> None:
    """Raise ValueError if ``name`` is not a valid topic name."""
    if (error := topic_name_error(name)) is not None:
        raise ValueError(error)


def validate_topic_filter(topic_filter: str) -> None:
    """Raise ValueError if ``topic_filter`` is not a valid topic filter."""
    if (error := topic_filter_error(topic_filter)) is not None:
        raise ValueError(error)


def topic_matches(topic_filter: str, name: str) -> bool:
    """Whether ``topic_filter`` matches the topic ``name`` [MQTT-4.7].

    ``#`` matches its parent level and any number of child levels (``sport/#`` matches ``sport``);
    ``+`` matches exactly one level; wildcards in the first level do not match topics starting with
    ``$`` [MQTT-4.7.2-1].
    """
    if topic_filter == name:
        return True
    if "+" not in topic_filter and "#" not in topic_filter:
        return False
    if name.startswith("$") and topic_filter[0] in "+#":
        return False
    filter_levels = topic_filter.split("/")
    name_levels = name.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(name_levels):
            return False
        if level != "+" and level != name_levels[index]:
            return False
    return len(filter_levels) == len(name_levels)
