"""Click groups shared by `hrnet-fast` and `python -m pack`."""
from __future__ import annotations

import importlib

import click

from hrnet_fast.errors import UserError


class UserErrorGroup(click.Group):
    """Prints a UserError as one `Error: …` line with exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None


class LazyGroup(UserErrorGroup):
    """Subcommands imported only when run, so `--help` stays instant (torch is slow to import).

    `lazy_commands` maps a name to (module, attribute, one-line help).
    """

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy_commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy_commands:
            return None
        module, attr, _ = self.lazy_commands[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in self.lazy_commands.items()])
