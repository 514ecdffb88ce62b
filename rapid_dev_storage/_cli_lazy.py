"""The command line's group: the commands `get` does not need load only when one runs.

`rapid-dev-storage get` must start in about the time of ``import asyncio, msgpack``
(tools/bench_startup.py measures it): the git commands bring the editor, merge and resolve code,
and the whole-store commands (dump, load, copy, watch, fsck, demo) a dozen click definitions
more, which no record command needs. Help lists them all.
"""

from __future__ import annotations

import importlib

import click

GIT_COMMANDS = ("edit", "resolve", "merge-driver", "git-setup")
"""The commands of `_cli_git`, loaded when one runs (or help lists them)."""
STORE_COMMANDS = ("dump", "load", "copy", "watch", "demo", "fsck")
"""The commands of `_cli_stores`, likewise."""
_MODULES = {
    **dict.fromkeys(GIT_COMMANDS, ("_cli_git", "GIT_COMMANDS")),
    **dict.fromkeys(STORE_COMMANDS, ("_cli_stores", "STORE_COMMANDS")),
}
"""Command name: the module defining it, and the name of its list of commands."""


class LazyCommands(click.Group):
    """The command group; the commands of `_MODULES` load with the first of theirs used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _MODULES and cmd_name not in self.commands:
            module, commands = _MODULES[cmd_name]
            for command in getattr(importlib.import_module(f".{module}", __package__), commands):
                self.add_command(command)
        return super().get_command(ctx, cmd_name)
