"""Store backends, chosen by URI."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import CallQuery, Store, TaskQuery

__all__ = ["CallQuery", "Store", "TaskQuery", "open_store"]

SUPPORTED = ("memory://", "sqlite:///path.db", "redis://host:port/db", "rediss://host:port/db")


def open_store(uri: str | Store) -> Store:
    """The store for ``uri`` (or ``uri`` itself when it already is a :class:`Store`).

    Validates the URI without connecting. Raises :class:`~tokenguard.ConfigError` for an unknown or
    malformed URI, saying which forms are supported.
    """
    if isinstance(uri, Store):
        return uri
    if not isinstance(uri, str):
        raise ConfigError(f"store must be a URI string such as 'memory://', got {type(uri).__name__}")
    scheme = urlsplit(uri).scheme if "://" in uri else ""
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore.from_uri(uri)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStore

        return RedisStore.from_uri(uri)
    raise ConfigError(
        f"store URI {uri!r} is not supported: use one of {', '.join(SUPPORTED)}"
        + (" (no scheme found; a URI looks like 'memory://')" if not scheme else "")
    )
