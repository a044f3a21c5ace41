"""`hrnet-fast` command group. Subcommands are imported only when run, so `--help` stays instant."""
from __future__ import annotations

import importlib
import sys

import click

from hrnet_fast.errors import UserError

# name -> (module, attribute, one-line help shown by `hrnet-fast --help`)
COMMANDS = {
    "train": ("hrnet_fast.commands.train", "train", "Train an HRNet on packed shards (1 process or under torchrun)."),
    "eval": ("hrnet_fast.commands.evaluate", "evaluate", "Acc@1 / Acc@5 of a checkpoint on a shard split."),
    "predict": ("hrnet_fast.commands.predict", "predict", "Top-k classes for image files."),
    "bench": ("hrnet_fast.commands.bench", "bench", "Measure loader or train-step throughput."),
    "models": ("hrnet_fast.commands.models", "models", "List the model zoo: params and GFLOPs."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hrnet-fast")
def cli() -> None:
    """hrnet-fast: high-throughput HRNet training on ImageNet shards (NPU / CUDA / CPU)."""


def main() -> None:
    cli(prog_name="hrnet-fast")


if __name__ == "__main__":
    sys.exit(main())
