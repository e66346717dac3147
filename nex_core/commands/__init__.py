"""The subcommands of ``nex``, one module each.

Each module listed in ``COMMAND_MODULES`` defines ``register(subparsers) -> None``, adding its parser with
``set_defaults(func=...)``; that function receives the parsed arguments and returns an exit code (or raises
:class:`nex_core.io.errors.NexError`, which ``nex_core.cli`` turns into exit code 2). Heavy imports stay
inside the command functions, so building the parser (``nex --help``) stays fast. Helpers that several
commands share live beside them: ``console`` (terminal output and progress bars), ``stop_flag`` (Ctrl-C)
and ``baked_input`` (the baked MPI a command reads). The order here is the order of ``nex --help``.
"""


COMMAND_MODULES = ("train", "evaluate", "render", "demo", "prepare", "bake", "view", "export", "cameras", "doctor")
