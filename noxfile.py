"""``nox``: the checks CI makes (``.ci/run``: tests, lint, types), each in its own venv, and the mutation run.

    nox                      # lint, types, tests
    nox -s tests -- tests/sinks -x
    nox -s mutation -- --only walk,sinks --per-module 20

``mutation`` is run by hand, never in CI: it takes about an hour on 2 cores (see docs/development.md). Tests that
need servers (PostgreSQL, Redis) skip without them unless ``CI`` is set, as under ``.ci/run``.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "types", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, as CI runs it."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy --strict over the package and the typing tests, as CI runs it."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "snapcrawl", "tests/typing")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (the README's test command); arguments after ``--`` go to pytest."""
    session.install(".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def mutation(session: nox.Session) -> None:
    """The sampled mutation run over the modules that guard data and quota (``python -m benchmarks.mutation``)."""
    session.install(".[dev,mutation]")
    session.run("python", "-m", "benchmarks.mutation", *session.posargs)
