"""Where the benchmark's fake OpenAI/Anthropic server runs: a thread of this process, or its own process.

``thread``: ``FakeLLMServer`` as tests use it. Client and server then share one GIL, so every
request hands the GIL to a server thread and back.

``process``: the same server in a child process (the same interpreter), optionally pinned
to its own CPU, with this process pinned to another. The client process then only runs client code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Literal, Protocol

ServerMode = Literal["thread", "process"]


class ServerHandle(Protocol):
    @property
    def base_url(self) -> str: ...

    def reset(self) -> None:
        """Reset the server's settings and request count between scenarios."""
        ...

    def close(self) -> None: ...


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return set()


def _pin(cpus: set[int]) -> None:
    if cpus:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(0, cpus)


class ThreadServer:
    def __init__(self) -> None:
        from tokenguard.testing import FakeLLMServer

        self._server = FakeLLMServer(record_requests=False).start()

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def reset(self) -> None:
        self._server.reset()

    def close(self) -> None:
        self._server.stop()


_CHILD = """
import sys
from tokenguard.testing import FakeLLMServer

server = FakeLLMServer(record_requests=False).start()
print(server.port, flush=True)
try:
    for line in sys.stdin:
        if line.strip() == "reset":
            server.reset()
            print("ok", flush=True)
        else:
            break
finally:
    server.stop()
"""
"""The child process: serve until stdin says otherwise or closes (the parent went away)."""


class ProcessServer:
    """The fake server in a child process. With ``pin`` and 2+ CPUs the two processes get a CPU each."""

    def __init__(self, *, pin: bool = True) -> None:
        cpus = sorted(_affinity())
        self.pinned = pin and len(cpus) >= 2
        self._saved_affinity = set(cpus)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self._proc.stdout is not None
        assert self._proc.stdin is not None
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        line = self._stdout.readline()
        if not line.strip().isdigit():
            self._proc.kill()
            raise RuntimeError(f"the fake LLM server process did not start (it said {line!r})")
        self._port = int(line)
        if self.pinned:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self._proc.pid, {cpus[-1]})
            _pin(set(cpus[:-1]))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def reset(self) -> None:
        self._stdin.write("reset\n")
        self._stdin.flush()
        self._stdout.readline()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stdout.close()
        if self.pinned:
            _pin(self._saved_affinity)


def start_server(mode: ServerMode, *, pin: bool = True) -> ServerHandle:
    if mode == "thread":
        return ThreadServer()
    return ProcessServer(pin=pin)


def openai_base_url(server: ServerHandle) -> str:
    return server.base_url + "/v1"


def anthropic_base_url(server: ServerHandle) -> str:
    return server.base_url
