"""Every numeric option of every command has documented bounds, checked when the command line is parsed."""

from __future__ import annotations

import argparse
import math
from typing import Any

import pytest

from snapcrawl.cli import build_parser
from snapcrawl.cli._common import Bounded

#: What the options that are required (or must come along) need, so that only the number under test is wrong.
REQUIRED = {
    "--volume": "vol-1",
    "--queue": "redis://127.0.0.1:1/0",
    "--job": "j",
    "--limiter": "redis://127.0.0.1:1/0",
    "--out": "sqlite:///unused.db",
}
HOSTILE = ["nan", "NaN", "inf", "-inf", "0", "-1", "1e30", "99999999999999999999999", "1e-300", "", "x"]


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(((*prefix, name), sub))
                found.extend(_commands(sub, (*prefix, name)))
    return found


def _numeric_options() -> list[tuple[tuple[str, ...], list[str], argparse.Action]]:
    options: list[tuple[tuple[str, ...], list[str], argparse.Action]] = []
    for command, sub in _commands(build_parser()):
        required = [
            arg
            for a in sub._actions
            if a.required and a.option_strings
            for arg in (a.option_strings[0], REQUIRED[a.option_strings[0]])
        ]
        options.extend(
            (command, required, action)
            for action in sub._actions
            if action.option_strings and action.choices is None and _numeric(action.type)
        )
    return options


def _numeric(kind: Any) -> bool:
    """Whether an argparse ``type`` reads numbers (``int``, ``float``, a bounded type, or any that gives one)."""
    if kind in (None, str):
        return False
    for text in ("1", "100"):
        try:
            value = kind(text)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            continue
        return isinstance(value, int | float) and not isinstance(value, bool)
    return False


OPTIONS = _numeric_options()


def test_every_numeric_option_is_bounded() -> None:
    """No number is read with a bare int or float: each goes through the one bounded type."""
    assert len(OPTIONS) > 30
    loose = [f"{' '.join(c)} {a.option_strings[0]}" for c, _, a in OPTIONS if not isinstance(a.type, Bounded)]
    assert loose == []


@pytest.mark.parametrize(
    ("command", "required", "action"),
    OPTIONS,
    ids=lambda v: getattr(v, "dest", v) if not isinstance(v, (tuple, list)) else " ".join(v),
)
def test_hostile_numbers_run_or_exit_2(
    command: tuple[str, ...], required: list[str], action: argparse.Action, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN, infinities, 0, negatives, huge and garbage: each is a finite value within the bounds the help
    states, or exit 2 with a one-line message naming the option and its bounds."""
    option = action.option_strings[0]
    bounds = action.type
    assert isinstance(bounds, Bounded)
    for text in HOSTILE:
        args = _parse([*command, *required, f"{option}={text}"])
        if isinstance(args, argparse.Namespace):
            value = getattr(args, action.dest)
            assert math.isfinite(value) and bounds.low <= value <= bounds.high, (option, text, value)
            assert text not in ("nan", "NaN", "inf", "-inf", "1e30", "x", "")
        else:
            assert args == 2
            err = capsys.readouterr().err
            assert err.startswith("snapcrawl: error: ") and option in err and bounds.bounds in err, err
            assert err.count("\n") == 1


def _parse(argv: list[str]) -> argparse.Namespace | int | str | None:
    """The parsed arguments, or the exit status argparse stopped with."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as stop:
        return stop.code
