"""The ``nex`` command: the parser assembled from :mod:`nex_core.commands`, and exit codes for errors.

Also what ``python -m nex_core.cli`` runs (the Blender add-on's workers, torchrun).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType
from typing import Sequence

from .commands import COMMAND_MODULES
from .io.errors import NexError
from .io.output_paths import describe_os_error

# Marks an OS error that no command turned into a NexError (a gap the CLI fuzz test looks for).
UNEXPECTED_OS_ERROR = "nex: error (OS):"

# Commands whose CPU work allocates and frees large tensors every step or chunk.
HEAVY_COMMANDS = ("train", "eval", "render", "demo", "bake")


def command_module(name: str) -> ModuleType:
    """Import ``nex_core.commands.NAME``; a failure is an ImportError naming that module."""
    full = f"{__package__}.commands.{name}"
    try:
        return importlib.import_module(full)
    except ImportError as exc:
        raise ImportError(f"cannot import the nex command module {full}: {exc}", name=full) from exc


def build_parser() -> argparse.ArgumentParser:
    """The ``nex`` parser with every subcommand of ``COMMAND_MODULES``."""
    parser = argparse.ArgumentParser(
        prog="nex", description="NeX: view-dependent multiplane images from photos. Train a scene, "
        "evaluate it on held-out views, render videos.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        command_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nex ARGV``; returns the exit code (2 for a NexError or an OS error, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    if args.command in HEAVY_COMMANDS and os.environ.get("NEX_ALLOCATOR", "tuned") != "default":
        from .runtime.allocator import keep_freed_memory

        keep_freed_memory()
    try:
        return args.func(args)
    except NexError as exc:
        print(f"nex: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the last resort: the file and the OS's reason, without a traceback
        print(f"{UNEXPECTED_OS_ERROR} {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nex: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
