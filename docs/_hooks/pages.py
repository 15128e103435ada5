"""MkDocs hook: the README is the site's home page and CHANGELOG.md its changelog page, generated at build time
so that each text has one source. Links the README makes into docs/ are rewritten to the site's pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_ROOT = Path(__file__).resolve().parents[2]
_INTO_DOCS = re.compile(r"\]\(docs/")


def on_files(files: Files, config: Any) -> Files:
    """Add ``index.md`` (the README, its ``docs/`` links made relative) and ``changelog.md``."""
    readme = (_ROOT / "README.md").read_text(encoding="utf-8")
    readme = _INTO_DOCS.sub("](", readme).replace("](CHANGELOG.md)", "](changelog.md)")
    files.append(File.generated(config, "index.md", content=readme))
    changelog = (_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Links from a page to ``../README.md`` or ``../CHANGELOG.md`` (right on GitHub) go to the generated pages."""
    return markdown.replace("](../README.md", "](index.md").replace("](../CHANGELOG.md", "](changelog.md")


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>~?([\w.]+)</code>")


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Docstrings name objects in Sphinx roles (``:class:`Crawler```); the reference shows the name as code."""
    return _ROLE.sub(lambda match: f"<code>{match.group(1).rsplit('.', 1)[-1]}</code>", html)
