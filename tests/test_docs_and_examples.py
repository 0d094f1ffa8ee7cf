"""The documentation's code runs: every ``examples/*.py`` script, and every ```python block of
README.md and docs/**/*.md, against the loopback fake LLM server.

Examples are self-contained (they start their own fake server) and run in subprocesses, all started
at once so the slow vendor-SDK imports overlap. Documentation blocks run in this process with
``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` (and API keys) pointing at the ``fake_llm`` server, so
unmodified snippets such as ``OpenAI()`` reach it. The blocks of one file share a namespace and run
in order; a block preceded by ``<!-- skip -->`` (or ``<!-- skip: reason -->``) is not run.
```toml blocks of the docs are loaded with ``tg.Guard.from_file``.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tokenguard as tg
import tokenguard.guard
from tokenguard.testing import FakeLLMServer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLE_TIMEOUT_S = 60

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_SKIP = re.compile(r"<!--\s*skip\b.*-->")

# Variables that would send the SDKs somewhere else than the fake server, or authenticate differently.
_VENDOR_ENV = (
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_ADMIN_KEY",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_CUSTOM_HEADERS",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_CUSTOM_HEADERS",
)
_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    skip: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, dedented (blocks may sit in admonitions)."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip().splitlines()
        skip = bool(before) and _SKIP.fullmatch(before[-1].strip()) is not None
        indent = m.group("indent")
        lines = m.group("body").splitlines(keepends=True)
        body = "".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
        line = text.count("\n", 0, m.start()) + 2  # the first line of code, 1-based
        blocks.append(Block(path, line, m.group("lang").lower(), textwrap.dedent(body), skip))
    return blocks


def _blocks_of(lang: str) -> list[tuple[Path, list[Block]]]:
    found = []
    for path in DOC_FILES:
        blocks = [b for b in code_blocks(path) if b.lang == lang]
        if blocks:
            found.append((path, blocks))
    return found


PYTHON_DOCS = _blocks_of("python")
TOML_BLOCKS = [b for _, blocks in _blocks_of("toml") for b in blocks]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- examples -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, subprocess.Popen[str]]]:
    """Every example started at once, in a scratch directory, without vendor or proxy settings."""
    env = {k: v for k, v in os.environ.items() if k not in _VENDOR_ENV and k not in _PROXY_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cwd = tmp_path_factory.mktemp("examples")
    procs = {
        path: subprocess.Popen(
            [sys.executable, str(path)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in EXAMPLES
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "openai_quickstart.py",
        "anthropic_quickstart.py",
        "async_and_streaming.py",
        "tasks_and_reviews.py",
        "threads_with_bind.py",
        "otlp_export.py",
        "price_overrides.py",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path, example_runs: dict[Path, subprocess.Popen[str]]) -> None:
    proc = example_runs[path]
    try:
        out, err = proc.communicate(timeout=EXAMPLE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{path.name} did not finish in {EXAMPLE_TIMEOUT_S} s\n--- stdout\n{out}\n--- stderr\n{err}")
    assert proc.returncode == 0, f"{path.name} exited with {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert out.strip(), f"{path.name} printed nothing\n--- stderr\n{err}"
    assert "Traceback" not in err, f"{path.name} printed a traceback\n{err}"


# -- documentation blocks -------------------------------------------------------------------------


@pytest.fixture
def docs_env(fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeLLMServer]:
    """The environment a reader would set to try the docs against the fake server; the default
    Guard is restored afterwards (snippets may call ``tg.configure``)."""
    for name in (*_VENDOR_ENV, *_PROXY_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_llm.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-docs-test")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)  # snippets may write files (a tokenguard.toml)
    saved = tokenguard.guard._default
    try:
        yield fake_llm
    finally:
        gc.collect()  # settle anything a snippet abandoned while the server still answers
        tokenguard.guard._default = saved


def test_docs_have_python_blocks() -> None:
    files = {_rel(path) for path, _ in PYTHON_DOCS}
    assert "README.md" in files
    assert "docs/quickstart.md" in files


@pytest.mark.parametrize(("path", "blocks"), PYTHON_DOCS, ids=[_rel(p) for p, _ in PYTHON_DOCS])
def test_doc_python_blocks_run(path: Path, blocks: list[Block], docs_env: FakeLLMServer) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks:
        if block.skip:
            continue
        try:
            exec(compile(block.code, block.where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"the python block at {block.where} failed: {exc!r}\n{block.code}") from exc


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=[b.where for b in TOML_BLOCKS])
def test_doc_toml_blocks_are_valid_policy_files(block: Block, tmp_path: Path) -> None:
    if block.skip:
        pytest.skip("marked <!-- skip --> (deliberately invalid)")
    path = tmp_path / "tokenguard.toml"
    path.write_text(block.code, encoding="utf-8")
    guard = tg.Guard.from_file(path)
    guard.close()


def test_skip_markers_are_rare() -> None:
    """Skipping is for blocks that cannot run (deliberate errors, other processes), not for
    snippets that are merely inconvenient: keep it to a handful."""
    skipped = [b.where for _, blocks in PYTHON_DOCS for b in blocks if b.skip]
    assert len(skipped) <= 5, skipped
