"""Where a crawl's CPU time goes: a pyinstrument session summed by library and by snapcrawl function.

Each sample's time is charged to an *owner*: the innermost frame that belongs to a known library (snapcrawl,
aiohttp, asyncio, anyio, structlog), or a msgspec C function. Standard-library helpers and other C functions
(``hmac``, ``base64``, ``str.encode``, ...) are charged to whoever called them, so a snapcrawl function's time
includes the helpers it calls, but not msgspec's decoding and encoding or the libraries it awaits. Time blocked
in ``epoll`` is idle, not CPU.

msgspec calls back into Python (``Snapshot.__post_init__``) while decoding, and pyinstrument then loses the
``Decoder.decode`` frame, so its time shows up as the *self* time of the snapcrawl function that called it. The
self time of such a wrapper (one that calls a msgspec decoder directly, or is named in ``_MSGSPEC_WRAPPERS``) is
charged to msgspec.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Final

from pyinstrument.frame import Frame
from pyinstrument.session import Session

__all__ = ["breakdown"]

_LIBRARIES: Final = (
    ("aiohttp", ("/aiohttp/", "/yarl/", "/multidict/", "/propcache/", "/aiosignal/", "/frozenlist/", "/aiohappy")),
    ("anyio", ("/anyio/", "/sniffio/")),
    ("structlog", ("/structlog/",)),
    ("msgspec", ("/msgspec/",)),
    ("asyncio", ("/asyncio/", "/selectors.py", "/socket.py", "/ssl.py")),
    ("benchmarks", ("/benchmarks/",)),
    ("pyinstrument", ("/pyinstrument/",)),
)
_IDLE: Final = frozenset({"epoll.poll", "poll", "select", "select.epoll.poll"})
_MSGSPEC_PREFIXES: Final = ("Decoder.", "Encoder.", "json_", "msgpack_")
_MSGSPEC_WRAPPERS: Final = frozenset({"decode_page"})

Owner = tuple[str, str]


def _label(frame: Frame) -> str:
    name = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
    return f"{name} ({Path(frame.file_path or '?').name}:{frame.line_no})"


def _category(path: str) -> str | None:
    if "/snapcrawl/" in path:
        return "other" if path.endswith("simulator.py") else "snapcrawl"
    for name, needles in _LIBRARIES:
        if any(needle in path for needle in needles):
            return name
    return None


def _owner(frame: Frame, parent: Owner | None) -> Owner | None:
    """The owner of ``frame``'s own time; ``None`` while only unclassified frames are on the stack."""
    if frame.is_synthetic:
        return parent
    path = frame.file_path or ""
    if path == "<built-in>":
        name = frame.function
        if name in _IDLE:
            return ("idle", name)
        if name.startswith(_MSGSPEC_PREFIXES):
            return ("msgspec", name)
        return parent
    category = _category(path)
    if category is None:
        return parent
    return (category, _label(frame))


def _wraps_msgspec(frame: Frame) -> bool:
    """Whether ``frame``'s self time is really a msgspec decoder's (see the module docstring)."""
    return frame.function in _MSGSPEC_WRAPPERS or any(
        child.file_path == "<built-in>" and child.function.startswith("Decoder.") for child in frame.children
    )


def breakdown(session: Session, *, requests: int, top: int = 15) -> dict[str, Any]:
    """Seconds by library, top snapcrawl functions, all also in microseconds per request (as profiled)."""
    by_owner: defaultdict[Owner, float] = defaultdict(float)
    python_self = 0.0  # strictly inside snapcrawl's Python frames, helpers excluded
    root = session.root_frame()
    stack: list[tuple[Frame, Owner | None, bool]] = [] if root is None else [(root, None, False)]
    while stack:
        frame, parent_owner, parent_in_snapcrawl = stack.pop()
        owner = _owner(frame, parent_owner)
        in_snapcrawl = not frame.is_synthetic and _category(frame.file_path or "") == "snapcrawl"
        if in_snapcrawl and _wraps_msgspec(frame):
            in_snapcrawl, owner = False, ("msgspec", f"Decoder.decode (in {_label(frame)})")
        own_time = frame.time - sum(child.time for child in frame.children)
        if own_time > 0:
            by_owner[owner or ("other", _label(frame))] += own_time
            if in_snapcrawl or (frame.is_synthetic and parent_in_snapcrawl):
                python_self += own_time
        stack.extend((child, owner, in_snapcrawl) for child in frame.children)
    by_library: defaultdict[str, float] = defaultdict(float)
    for (category, _), seconds in by_owner.items():
        by_library[category] += seconds
    idle = by_library.pop("idle", 0.0)
    active = sum(by_library.values())
    per_request = 1e6 / max(requests, 1)
    functions = sorted(
        ((label, seconds) for (category, label), seconds in by_owner.items() if category == "snapcrawl"),
        key=lambda item: item[1],
        reverse=True,
    )
    owners = sorted(
        ((owner, seconds) for owner, seconds in by_owner.items() if owner[0] != "idle"),
        key=lambda item: item[1],
        reverse=True,
    )
    return {
        "requests": requests,
        "sampled_seconds": session.duration,
        "idle_seconds": idle,
        "active_seconds": active,
        "by_library_seconds": dict(sorted(by_library.items(), key=lambda item: item[1], reverse=True)),
        "share": {name: seconds / active for name, seconds in by_library.items()} if active else {},
        "by_library_us_per_request": {name: seconds * per_request for name, seconds in by_library.items()},
        "snapcrawl_python_self_us_per_request": python_self * per_request,
        "snapcrawl_functions": [
            {"function": label, "us_per_request": seconds * per_request, "share": seconds / active if active else 0}
            for label, seconds in functions[:top]
        ],
        "top_owners": [
            {
                "library": category,
                "function": label,
                "us_per_request": seconds * per_request,
                "share": seconds / active if active else 0,
            }
            for (category, label), seconds in owners[:top]
        ],
    }
