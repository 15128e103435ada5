"""``snapcrawl completion bash|zsh``: print a shell completion script, generated from the argument parser by shtab
(the ``completion`` extra), so that it always knows every command and option."""

from __future__ import annotations

import argparse
import sys

from .._exceptions import ConfigError

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``completion`` command."""
    completion = commands.add_parser(
        "completion",
        help="print a completion script for bash or zsh",
        description='bash: eval "$(snapcrawl completion bash)" in ~/.bashrc; zsh: snapcrawl completion zsh > '
        "a file named _snapcrawl in a directory of $fpath.",
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(run=_cmd_completion)


async def _cmd_completion(args: argparse.Namespace) -> int:
    try:
        import shtab  # noqa: PLC0415 - the completion extra is optional
    except ImportError:
        raise ConfigError("snapcrawl completion needs shtab: pip install 'snapcrawl[completion]'") from None
    # The whole command line's parser, handed down by build_parser: importing it from here would run back up.
    script: str = shtab.complete(args.root_parser, shell=args.shell)
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
    return 0
