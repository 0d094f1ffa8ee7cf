"""The backends the conformance suite runs against. Each backend adds one factory here; the
Redis one starts a real `redis-server` (skipped on a laptop without it, a failure in CI)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokenguard.stores import Store, open_store

StoreFactory = Callable[[], Store]


def _memory(tmp_path: Path) -> Iterator[StoreFactory]:
    # memory:// is one process: every factory call returns the same store, like a shared backend.
    store = open_store("memory://")
    yield lambda: store


BACKENDS: dict[str, Callable[[Path], Iterator[StoreFactory]]] = {"memory": _memory}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Returns a function that opens a new connection to one shared, empty backend."""
    yield from BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(store_factory: StoreFactory) -> Iterator[Store]:
    s = store_factory()
    yield s
    s.close()
