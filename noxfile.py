"""``nox``: the checks CI makes (``.ci/run``), each in its own venv: lint, types, tests and the docs site.

    nox                      # all four
    nox -s tests -- tests/sinks -x
    nox -s mutation -- --only walk,sinks --per-module 8     # by hand only, never in CI

``mutation`` is the sampled mutation run (see docs/development.md): about an hour on 2 cores. Tests that need
servers (PostgreSQL, Redis) skip without them unless ``CI`` is set, as under ``.ci/run``.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "types", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, as CI runs it."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy --strict over the package and the tests, as CI runs it."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "snapcrawl", "tests")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (the README's test command); arguments after ``--`` go to pytest."""
    session.install(".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The docs site in strict mode: a broken link, anchor or API reference fails it."""
    session.install("-e", ".[docs]")
    tmp = session.create_tmp()
    session.run("mkdocs", "build", "--strict", "--site-dir", tmp, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python=PYTHON)
def mutation(session: nox.Session) -> None:
    """The sampled mutation run over the modules that guard data and quota (``benchmarks.studies.mutation``)."""
    session.install(".[dev,mutation]")
    session.run("python", "-m", "benchmarks.studies.mutation", *session.posargs)
