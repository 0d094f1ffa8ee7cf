"""The backends the conformance suite runs against: memory, SQLite files and a real `redis-server`
(started here on a free loopback port; skipped on a laptop without it, a failure in CI where
TOKENGUARD_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import RedisServer
from tokenguard.stores import Store, open_store

StoreFactory = Callable[[], Store]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    # memory:// is one process: every factory call returns the same store, like a shared backend.
    store = open_store("memory://")
    return lambda: store


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    uri = f"sqlite:///{tmp_path / 'tokenguard.db'}"
    return lambda: open_store(uri)


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    server: RedisServer = request.getfixturevalue("redis_server")
    uri = server.uri(prefix=f"test-{uuid.uuid4().hex[:8]}")  # a fresh namespace per test
    return lambda: open_store(uri)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A function that opens a new connection to one shared, empty backend."""
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(store_factory: StoreFactory) -> Iterator[Store]:
    s = store_factory()
    yield s
    s.close()
