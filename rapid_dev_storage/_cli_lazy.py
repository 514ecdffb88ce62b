"""The command line's group: the git commands load only when one runs or help lists them.

`rapid-dev-storage get` must start in about the time of ``import asyncio, msgpack``
(tools/bench_startup.py measures it): the git commands bring the editor, merge and resolve code,
which no other command needs.
"""

from __future__ import annotations

import click

GIT_COMMANDS = ("edit", "resolve", "merge-driver", "git-setup")
"""The commands of `_cli_git`, loaded when one runs (or help lists them)."""


class LazyCommands(click.Group):
    """The command group; `_cli_git`'s commands (and their editor and merge code) load lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *GIT_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in GIT_COMMANDS and cmd_name not in self.commands:
            from ._cli_git import GIT_COMMANDS as git_commands  # noqa: PLC0415  (see above)

            for command in git_commands:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)
