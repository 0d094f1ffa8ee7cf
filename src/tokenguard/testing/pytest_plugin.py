"""Pytest fixtures for :mod:`tokenguard.testing` (auto-registered as the ``tokenguard`` plugin).

Fixtures:

``fake_llm_server`` (session)
    One :class:`~tokenguard.testing.FakeLLMServer` started for the whole session.
``fake_llm``
    The same server after :meth:`~tokenguard.testing.FakeLLMServer.reset`, so each
    test starts with an empty request log and default settings.
``fake_openai_client`` / ``fake_async_openai_client``
    Real ``openai.OpenAI`` / ``openai.AsyncOpenAI`` clients pointed at the server.
``fake_anthropic_client`` / ``fake_async_anthropic_client``
    Real ``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic`` clients pointed at the server.

The clients use ``api_key="test-key"``, ``max_retries=0`` and ignore proxy
environment variables (the server is on ``127.0.0.1``); they are closed after
the test. The SDKs are imported only when a client fixture is used.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from tokenguard.testing import FakeLLMServer

if TYPE_CHECKING:
    from anthropic import Anthropic, AsyncAnthropic
    from openai import AsyncOpenAI, OpenAI

    _async_fixture = pytest.fixture
else:
    try:  # works in both strict and auto asyncio modes
        from pytest_asyncio import fixture as _async_fixture
    except ImportError:  # pragma: no cover - pytest-asyncio not installed
        _async_fixture = pytest.fixture

_API_KEY = "test-key"
_ENTRY_POINT_NAME = "tokenguard"


def pytest_plugin_registered(plugin: object, plugin_name: str, manager: pytest.PytestPluginManager) -> None:
    """Let ``-p tokenguard.testing.pytest_plugin`` coexist with the auto-loaded entry point.

    ``-p <module path>`` registers this module under its dotted name *before*
    pytest auto-loads the ``tokenguard`` entry point, which then fails with
    "Plugin already registered under a different name". Blocking the entry-point
    name in that case keeps the single, already-registered copy.
    """
    if (
        plugin is sys.modules[__name__]
        and plugin_name != _ENTRY_POINT_NAME
        and not manager.has_plugin(_ENTRY_POINT_NAME)
    ):
        manager.set_blocked(_ENTRY_POINT_NAME)


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    """The session-wide fake LLM server (not reset between tests; prefer ``fake_llm``)."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The fake LLM server, reset to a clean state for this test."""
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()


@pytest.fixture
def fake_openai_client(fake_llm: FakeLLMServer) -> Iterator[OpenAI]:
    """A real ``openai.OpenAI`` client talking to ``fake_llm``."""
    import openai

    client = openai.OpenAI(
        base_url=fake_llm.openai_base_url,
        api_key=_API_KEY,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )
    try:
        yield client
    finally:
        client.close()


@_async_fixture
async def fake_async_openai_client(fake_llm: FakeLLMServer) -> AsyncIterator[AsyncOpenAI]:
    """A real ``openai.AsyncOpenAI`` client talking to ``fake_llm``."""
    import openai

    async with openai.AsyncOpenAI(
        base_url=fake_llm.openai_base_url,
        api_key=_API_KEY,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
    ) as client:
        yield client


@pytest.fixture
def fake_anthropic_client(fake_llm: FakeLLMServer) -> Iterator[Anthropic]:
    """A real ``anthropic.Anthropic`` client talking to ``fake_llm``."""
    import anthropic

    client = anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url,
        api_key=_API_KEY,
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(trust_env=False),
    )
    try:
        yield client
    finally:
        client.close()


@_async_fixture
async def fake_async_anthropic_client(fake_llm: FakeLLMServer) -> AsyncIterator[AsyncAnthropic]:
    """A real ``anthropic.AsyncAnthropic`` client talking to ``fake_llm``."""
    import anthropic

    async with anthropic.AsyncAnthropic(
        base_url=fake_llm.anthropic_base_url,
        api_key=_API_KEY,
        max_retries=0,
        http_client=anthropic.DefaultAsyncHttpxClient(trust_env=False),
    ) as client:
        yield client
