"""`hrnet-fast bench loader|step`: throughput measurements (speed targets live here, not in tests)."""
from __future__ import annotations

import click

from hrnet_fast.clickutil import LazyGroup

SUBCOMMANDS = {
    "loader": ("hrnet_fast.commands.bench_loader", "bench_loader", "Images/s of the shard loader (CPU side)."),
    "step": ("hrnet_fast.commands.bench_step", "bench_step", "Train-step images/s on synthetic on-device input."),
}


@click.group(cls=LazyGroup, lazy_commands=SUBCOMMANDS)
def bench() -> None:
    """Measure throughput; `--json` prints one JSON object (with images_per_s) as the last line."""
