"""What a registry location means: a SQLite file, or a PostgreSQL URL (and how to print one safely).

No driver is imported here, so that commands that never touch PostgreSQL do not load asyncpg.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from methodhub.errors import ErrorKind, HubError

URL_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str) -> bool:
    return location.startswith(URL_SCHEMES)


def redact_url(url: str) -> str:
    """``url`` without its password or query (safe to print): ``postgresql://user@host:port/db``."""
    parts = urlsplit(url)
    user_info, at, hosts = parts.netloc.rpartition("@")
    user = user_info.partition(":")[0]
    netloc = f"{user}@{hosts}" if at and user else hosts
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def split_connect_timeout(url: str, default: float) -> tuple[str, float]:
    """``url`` without ``connect_timeout`` (asyncpg would send it as a server setting) and its value."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    timeout = default
    kept = []
    for name, value in query:
        if name == "connect_timeout":
            try:
                timeout = float(value)
            except ValueError:
                raise HubError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"connect_timeout={value!r} in the registry URL is not a number",
                ) from None
        else:
            kept.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), timeout
