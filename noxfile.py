"""Developer tasks: `nox -s tests lint typecheck` (what CI runs), `nox -s demo`, `nox -s bench`, `nox -s docs`."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, with both vendor SDKs, against the loopback fake server."""
    session.install("-e", ".[all]", *group("test"))
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[all]", *group("typecheck"))
    session.run("mypy", "--strict", "src/tokenguard")


@nox.session
def demo(session: nox.Session) -> None:
    """The offline demonstration: a multi-team workload against the built-in fake server."""
    session.install(".[all]")
    session.run("tokenguard", "demo")


@nox.session
def bench(session: nox.Session) -> None:
    """Per-call overhead against the raw clients, in one run (see docs/performance.md)."""
    session.install("-e", ".[all]", *group("bench"))
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[all]", *group("docs"))
    session.run("mkdocs", "build", "--strict")
