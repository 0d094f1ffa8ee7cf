"""The backends the conformance suite runs against: memory, SQLite files and a real `redis-server`
(started here on a free loopback port; skipped on a laptop without it, a failure in CI where
TOKENGUARD_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import require_service
from tokenguard.stores import Store, open_store

StoreFactory = Callable[[], Store]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway `redis-server` on 127.0.0.1, no persistence."""

    def __init__(self, tmp: Path, password: str | None = None) -> None:
        self.port = free_port()
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(tmp),
        ]  # fmt: skip
        if password:
            args += ["--requirepass", password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        require_service("redis-server")
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
    uri = f"{server.url}?prefix=test-{uuid.uuid4().hex[:8]}"  # a fresh namespace per test
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
