"""The docs site's strict build (what CI runs) fails on a broken link, anchor or API reference."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build(tree: Path) -> subprocess.CompletedProcess[str]:
    environ = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(  # noqa: S603 - mkdocs of this environment
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tree / "site")],
        cwd=tree, env=environ, capture_output=True, text=True, timeout=50, check=False,
    )  # fmt: skip


@pytest.mark.timeout(120)
def test_strict_build_fails_on_broken_references(tmp_path: Path) -> None:
    """A copy of the site builds; with a missing page, a missing anchor and an unknown API name it does not."""
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI"):
            pytest.fail("mkdocs is missing: pip install '.[docs]'")
        pytest.skip("mkdocs is missing: pip install '.[docs]'")
    for name in ("mkdocs.yml", "README.md", "CHANGELOG.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("docs", "snapcrawl"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = _build(tmp_path)
    assert built.returncode == 0, built.stderr
    page = tmp_path / "docs" / "cli.md"
    broken_links = "[a](no-such-page.md) [b](cli.md#no-such-anchor) [c][snapcrawl.NoSuchName]"
    page.write_text(page.read_text(encoding="utf-8") + f"\n{broken_links}\n", encoding="utf-8")
    broken = _build(tmp_path)
    assert broken.returncode == 1
    for what in ("no-such-page.md", "no-such-anchor", "snapcrawl.NoSuchName"):
        assert what in broken.stderr, broken.stderr
