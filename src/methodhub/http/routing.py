"""Request routing: ``(method, raw path)`` → ``(handler, path parameters)``.

Patterns are absolute paths whose segments are either literals or ``{name}`` parameters that span
exactly one segment::

    routes = Routes()
    routes.add("POST", "/twins/{device_id}/methods", invoke)
    routes.add("POST", "/twins/{device_id}/modules/{module_id}/methods", invoke_module)
    handler, params = routes.match("POST", "/twins/dev%201%2Fx/methods")
    # params == {"device_id": "dev 1/x"}

Matching splits the *raw* path on ``/`` first and percent-decodes each segment afterwards, so an
encoded slash (``%2F``) stays inside its segment (RFC 3986 §2.2: a percent-encoded reserved
character is data, not a delimiter). Literal segments are compared with the decoded segment, so
``/tw%69ns/x/methods`` matches ``/twins/{device_id}/methods`` (RFC 3986 §6.2.2.2).

Cost: one dict lookup for a path without parameters; otherwise one ``str.split`` and a scan of the
patterns with the same number of segments (a handful per bucket in practice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

if TYPE_CHECKING:
    from methodhub.http.messages import Handler

__all__ = ["MethodNotAllowed", "RouteNotFound", "Routes", "decode_segment"]


class RouteNotFound(LookupError):
    """No pattern matches the path (→ 404)."""


class MethodNotAllowed(LookupError):
    """Some pattern matches the path, but none for this method (→ 405).

    Attributes:
        allowed: the methods that the matching patterns accept, sorted; for the ``Allow`` header.
    """

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(f"allowed: {', '.join(allowed)}")
        self.allowed = allowed


def decode_segment(segment: str) -> str:
    """Percent-decode one path segment (RFC 3986 §2.1); the octets are read as UTF-8.

    Args:
        segment: the raw segment, as sent (ASCII in practice: the parser rejects other octets).

    Returns:
        The decoded text. Invalid UTF-8 becomes U+FFFD, as :func:`urllib.parse.unquote` does.
    """
    if "%" not in segment:
        return segment
    try:
        raw = segment.encode("latin-1")
    except UnicodeEncodeError:  # a caller passed already-decoded text
        raw = segment.encode("utf-8")
    return unquote_to_bytes(raw).decode("utf-8", "replace")


class _Pattern:
    """One path pattern and the handlers registered on it, by method."""

    __slots__ = ("handlers", "literals", "params", "rank", "text")

    def __init__(self, text: str, literals: tuple[tuple[int, str], ...], params: tuple[tuple[int, str], ...]):
        self.text = text
        self.literals = literals  # (segment index, literal text)
        self.params = params  # (segment index, parameter name)
        # Literal segments win over parameters, leftmost first: "/devices/{id}/modules" is tried
        # before "/devices/{id}/{other}", and "/a/b/{x}" before "/a/{y}/c".
        param_at = {index for index, _ in params}
        self.rank = tuple(index in param_at for index in range(1 + len(literals) + len(params)))
        self.handlers: dict[str, Handler] = {}


class Routes:
    """A routing table. Add every route before serving; matching never mutates the table."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Handler]] = {}
        self._buckets: dict[int, list[_Pattern]] = {}
        self._patterns: dict[str, _Pattern] = {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` on ``pattern``.

        A ``GET`` route also answers ``HEAD`` (RFC 9110 §9.3.2) unless a ``HEAD`` route is added
        for the same pattern.

        Args:
            method: an HTTP method token, e.g. ``"POST"`` (case-sensitive, RFC 9110 §9.1).
            pattern: an absolute path; ``{name}`` as a whole segment is a parameter, any other
                segment is a literal matched against the percent-decoded request segment.
            handler: called with the :class:`~methodhub.http.messages.Request`.

        Raises:
            ValueError: a malformed pattern or method, a repeated parameter name, or a route that
                is already registered for this method and pattern.
        """
        if not method or not method.isascii() or not method.isalpha():
            raise ValueError(f"not an HTTP method: {method!r}")
        if not pattern.startswith("/"):
            raise ValueError(f"a route pattern must start with '/': {pattern!r}")
        segments = pattern.split("/")
        literals: list[tuple[int, str]] = []
        params: list[tuple[int, str]] = []
        for index, segment in enumerate(segments[1:], start=1):
            if segment.startswith("{") and segment.endswith("}"):
                name = segment[1:-1]
                if not name.isidentifier():
                    raise ValueError(f"bad parameter name {name!r} in {pattern!r}")
                if any(name == seen for _, seen in params):
                    raise ValueError(f"parameter {name!r} appears twice in {pattern!r}")
                params.append((index, name))
            elif "{" in segment or "}" in segment:
                raise ValueError(f"a parameter must be a whole segment: {segment!r} in {pattern!r}")
            else:
                literals.append((index, segment))

        if not params:
            handlers = self._static.setdefault(pattern, {})
        else:
            entry = self._patterns.get(pattern)
            if entry is None:
                entry = _Pattern(pattern, tuple(literals), tuple(params))
                self._patterns[pattern] = entry
                bucket = self._buckets.setdefault(len(segments), [])
                bucket.append(entry)
                bucket.sort(key=lambda p: p.rank)  # stable: equal ranks keep insertion order
            handlers = entry.handlers
        if method in handlers:
            raise ValueError(f"{method} {pattern} is already routed")
        handlers[method] = handler

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """Find the handler for ``method`` on the raw ``path``.

        Args:
            method: the request method.
            path: the path as sent (no query), *not* percent-decoded.

        Returns:
            ``(handler, params)`` where each parameter is its percent-decoded segment. A parameter
            never matches an empty segment.

        Raises:
            RouteNotFound: no pattern matches ``path``.
            MethodNotAllowed: patterns match ``path``, none of them for ``method``.
        """
        handlers = self._static.get(path)
        if handlers is None and "%" in path:
            decoded = [decode_segment(s) for s in path.split("/")]
            if not any("/" in s for s in decoded):
                handlers = self._static.get("/".join(decoded))
        if handlers is not None:
            handler = handlers.get(method)
            if handler is None and method == "HEAD":
                handler = handlers.get("GET")
            if handler is not None:
                return handler, {}
            # A pattern with parameters may still take this method ("/devices/{id}" vs "/devices/x").
            allowed = set(handlers)
        else:
            allowed = set()

        segments = path.split("/")
        bucket = self._buckets.get(len(segments))
        if bucket:
            if "%" in path:
                segments = [decode_segment(s) for s in segments]
            for pattern in bucket:
                for index, literal in pattern.literals:
                    if segments[index] != literal:
                        break
                else:
                    params = {}
                    for index, name in pattern.params:
                        value = segments[index]
                        if not value:
                            break
                        params[name] = value
                    else:
                        found = pattern.handlers
                        handler = found.get(method)
                        if handler is None and method == "HEAD":
                            handler = found.get("GET")
                        if handler is not None:
                            return handler, params
                        allowed.update(found)
        if not allowed:
            raise RouteNotFound(path)
        if "GET" in allowed:
            allowed.add("HEAD")
        raise MethodNotAllowed(sorted(allowed))
