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
    session.run("mypy", "--strict", "src/tokenguard", "tests/typing/public_api.py")


@nox.session
def demo(session: nox.Session) -> None:
    """The offline demonstration: a multi-team workload against the built-in fake server."""
    session.install(".[all]")
    session.run("tokenguard", "demo")


@nox.session
def bench(session: nox.Session) -> None:
    """Per-call overhead against the raw clients, budgets, stores and policy, and the sensitive-data
    scanner's throughput (see docs/performance.md).

    `nox -s bench -- --quick` for a short run. Redis figures need a running redis-server: pass its
    URI with `nox -s bench -- --redis redis://127.0.0.1:6379/0`."""
    session.install("-e", ".[all]", *group("bench"))
    args = list(session.posargs)
    redis = None
    if "--redis" in args:
        i = args.index("--redis")
        redis = args[i + 1]
        del args[i : i + 2]
    quick = ["--quick"] if "--quick" in args else []
    session.run("python", "benchmarks/run.py", *args)
    tmp = session.create_tmp()
    uris = ["memory://", f"sqlite:///{tmp}/bench.db", *([redis] if redis else [])]
    session.run("python", "benchmarks/budgets.py", *quick, *(a for u in uris for a in ("--uri", u)))
    session.run("python", "benchmarks/stores.py", *(a for u in uris for a in ("--uri", u)))
    session.run("python", "benchmarks/policy.py", *quick)
    session.run("python", "benchmarks/scan.py", *quick)
    session.run("python", "benchmarks/reports.py", *quick)


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[all]", *group("docs"))
    session.run("mkdocs", "build", "--strict")
