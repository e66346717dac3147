"""Subcommands of ``nex`` that live in their own modules.

Each module here defines ``register(subparsers) -> None`` adding its parser(s) with ``set_defaults(func=...)``;
the function receives the parsed arguments and returns an exit code. ``nex_core.cli`` registers every
module listed in ``COMMAND_MODULES`` (importing it lazily inside the command keeps ``nex --help`` fast).
"""

COMMAND_MODULES = ("prepare", "bake", "view", "export", "cameras", "doctor")
