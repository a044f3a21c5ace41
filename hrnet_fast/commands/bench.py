"""`hrnet-fast bench loader|step`: throughput measurements (speed targets live here, not in tests)."""
from __future__ import annotations

import importlib

import click

SUBCOMMANDS = {
    "loader": ("hrnet_fast.commands.bench_loader", "bench_loader", "Images/s of the shard loader (CPU side)."),
    "step": ("hrnet_fast.commands.bench_step", "bench_step", "Train-step images/s on synthetic on-device input."),
}


class _LazyBench(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attr, _ = SUBCOMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, _, h) in SUBCOMMANDS.items()])


@click.group(cls=_LazyBench)
def bench() -> None:
    """Measure throughput; `--json` prints one JSON object (with images_per_s) as the last line."""
