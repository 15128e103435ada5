"""The documentation's examples run as written: every Python block of README.md and docs/*.md, and the shell
blocks of the getting-started page (README.md), against the simulator.

A block preceded by ``<!-- fragment -->`` continues the block before it and is not run alone; every other Python
block is a whole program. Programs get ``SCP_ENDPOINT``, ``SCP_ACCESS_KEY`` and ``SCP_SECRET_KEY`` for a running
simulator and a ``volumes.txt`` of its volume ids in their working directory; one that reads ``REDIS_URL`` or
``DATABASE_URL`` also gets a throwaway Redis or PostgreSQL server (skipped outside CI when not installed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapcrawl.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
FRAGMENT = "<!-- fragment -->"
_FENCE = re.compile(r"^(`{3,})(\w*)\s*$")
# Lines of the getting-started page that the test environment has done already: installing (the dev extra holds
# every extra the page installs), and running this very test suite.
_DONE_ALREADY = re.compile(r"python -m pip install \S+( && )?")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    fragment: bool

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path, text: str) -> list[Block]:
    """The fenced blocks of ``text``, each marked a fragment when ``<!-- fragment -->`` is the line before it."""
    found: list[Block] = []
    lines = text.splitlines()
    opened: tuple[int, str, str] | None = None  # line, language, the fence's backticks
    for number, line in enumerate(lines, start=1):
        fence = _FENCE.match(line)
        if fence is None:
            continue
        if opened is None:
            opened = (number, fence.group(2), fence.group(1))
            continue
        start, language, ticks = opened
        if fence.group(2) or len(fence.group(1)) < len(ticks):
            continue  # a fence inside a longer one (an example of Markdown), not the end of this block
        before = next((lines[i].strip() for i in range(start - 2, -1, -1) if lines[i].strip()), "")
        code = "\n".join(lines[start : number - 1]) + "\n"
        found.append(Block(page, start, language, code, fragment=before == FRAGMENT))
        opened = None
    assert opened is None, f"{page}:{opened[0]}: a code fence is never closed"
    return found


def _all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page, page.read_text(encoding="utf-8"))]


PYTHON = [block for block in _all_blocks() if block.language == "python" and not block.fragment]
SHELL = [block for block in blocks(PAGES[0], PAGES[0].read_text(encoding="utf-8")) if block.language == "bash"]


def test_blocks_are_programs_or_marked_fragments() -> None:
    """A fragment follows a block of its own language; there are several whole Python programs to run."""
    for page in PAGES:
        previous: Block | None = None
        for block in blocks(page, page.read_text(encoding="utf-8")):
            if block.fragment:
                assert previous is not None, f"{block.name}: a fragment of nothing"
                assert previous.language == block.language, f"{block.name}: a fragment of another language"
            previous = block
    assert len(PYTHON) >= 8, [block.name for block in PYTHON]
    assert any(block.page.name == "README.md" for block in PYTHON)


def test_fragment_marker_is_read() -> None:
    """The parser sees the marker on the line before a fence, blank lines between allowed, and nowhere else."""
    text = "```python\nx = 1\n```\n\n<!-- fragment -->\n\n```python\nprint(x)\n```\n\n```bash\necho\n```\n"
    text += "````markdown\n<!-- fragment -->\n```python\nnot run\n```\n````\n"
    found = blocks(ROOT / "README.md", text)
    expected = [(1, "python", False), (7, "python", True), (11, "bash", False), (14, "markdown", False)]
    assert [(b.line, b.language, b.fragment) for b in found] == expected
    assert found[1].code == "print(x)\n"


# -- the servers a program may need -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server (tests/redis_server.py), for the programs that read REDIS_URL."""
    from tests.redis_server import RedisServer, _redis_server_binary  # noqa: PLC0415 - only when a block needs it

    server = RedisServer(_redis_server_binary())
    server.start()
    yield f"redis://127.0.0.1:{server.port}/1"
    server.kill()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A throwaway PostgreSQL server (tests/sinks's), for the programs that read DATABASE_URL."""
    from tests.sinks.pgserver import postgres_bindir, temporary_server  # noqa: PLC0415 - only when needed

    if postgres_bindir() is None:
        reason = "PostgreSQL binaries not found: install the Debian package postgresql"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with temporary_server("snippets") as url:
        yield f"{url}/postgres"


def _environment(sim: Simulator, home: Path) -> dict[str, str]:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("SCP_")}
    return environ | {
        "HOME": str(home),
        "SCP_ENDPOINT": sim.url,
        "SCP_ACCESS_KEY": sim.credentials.access_key,
        "SCP_SECRET_KEY": sim.credentials.secret_key,
    }


@pytest.mark.timeout(90)
@pytest.mark.parametrize("block", PYTHON, ids=lambda block: block.name)
def test_python_block_runs(block: Block, simulator: Simulator, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The program runs to its end (exit 0) against the simulator."""
    environ = _environment(simulator, tmp_path)
    if "REDIS_URL" in block.code:
        environ["REDIS_URL"] = request.getfixturevalue("redis_url")
    if "DATABASE_URL" in block.code:
        environ["DATABASE_URL"] = request.getfixturevalue("database_url")
    (tmp_path / "volumes.txt").write_text("\n".join(simulator.dataset.volume_ids[:20]) + "\n", encoding="utf-8")
    program = tmp_path / "snippet.py"
    program.write_text(block.code, encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - the docs' own example
        [sys.executable, str(program)], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=80,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{block.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


# -- the getting-started page's shell blocks ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def shell_script(code: str, port: int) -> str:
    """The block as the test runs it: installs already done, the simulator's port 8765 replaced by a free one."""
    lines = [_DONE_ALREADY.sub("", line) if line.startswith("python -m pip install") else line
             for line in code.splitlines()]  # fmt: skip
    return "set -euo pipefail\n" + "\n".join(line.replace("8765", str(port)) for line in lines) + "\n"


def test_shell_script_rewrites() -> None:
    """Only install commands are dropped; what they chain to still runs."""
    script = shell_script("python -m pip install . && snapcrawl demo\npython -m pip install '.[bench]'\nx 8765\n", 9)
    assert script.splitlines()[1:] == ["snapcrawl demo", "", "x 9"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", SHELL, ids=lambda block: block.name)
def test_getting_started_shell_block_runs(block: Block, tmp_path: Path) -> None:
    """Each shell block of the getting-started page runs as pasted into bash, in an empty directory."""
    script = shell_script(block.code, _free_port())
    if "python -m pytest" in script:
        pytest.skip("the test command itself: .ci/run checks the README shows it and runs it")
    environ = {name: value for name, value in os.environ.items() if not name.startswith("SCP_")}
    process = subprocess.Popen(  # noqa: S603 - the docs' own example
        ["bash", "-c", script], cwd=tmp_path, env=environ | {"HOME": str(tmp_path)},  # noqa: S607
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=110)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a simulator left in the background goes with its session
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"{block.name} failed:\n{out[-2000:]}\n{err[-4000:]}"
    if "snapcrawl crawl" in script:
        assert (tmp_path / "snapshots.jsonl").stat().st_size > 0
