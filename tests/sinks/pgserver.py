"""A throwaway PostgreSQL server from the Debian binaries: initdb into a temp dir, fsync off, loopback only.

Run as root, the binaries run as the ``postgres`` user (``runuser``), which then owns the cluster directory.
Used by the tests' session fixture and by ``python -m benchmarks.studies.sinks``.
"""

# Fixed argument lists of trusted system tools (initdb, postgres, pg_ctl):
# ruff: noqa: S603

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["postgres_bindir", "temporary_server"]


def postgres_bindir() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/*/bin``, or ``None``."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def temporary_server(password: str, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Run a server until the block ends, then stop it and remove its files; yield ``postgresql://...`` (no db)."""
    bindir = postgres_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL binaries not found: install the Debian package postgresql")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="snapcrawl-pg-"))
    data = base / "data"
    process: subprocess.Popen[bytes] | None = None
    try:
        (base / "pwfile").write_text(password + "\n", encoding="utf-8")
        if as_postgres:
            shutil.chown(base, "postgres", "postgres")
            shutil.chown(base / "pwfile", "postgres", "postgres")
        subprocess.run(
            [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "snapcrawl", "--pwfile",
             str(base / "pwfile"), "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        port = _free_port()
        process = subprocess.Popen(
            [*as_postgres, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=50"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + start_timeout
        while subprocess.run(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], check=False, timeout=30
        ).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start (exit code {process.poll()})")
            time.sleep(0.1)
        yield f"postgresql://snapcrawl:{password}@127.0.0.1:{port}"
    finally:
        if process is not None:
            # Through pg_ctl: runuser does not pass a signal on to the server it started.
            subprocess.run(
                [*as_postgres, str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-s"],
                check=False,
                capture_output=True,
                timeout=60,
            )
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(base, ignore_errors=True)
