"""`hrnet-fast` command group. Subcommands are imported only when run, so `--help` stays instant."""
from __future__ import annotations

import click

from hrnet_fast import log
from hrnet_fast.clickutil import LazyGroup

# name -> (module, attribute, one-line help shown by `hrnet-fast --help`)
COMMANDS = {
    "train": ("hrnet_fast.commands.train", "train", "Train an HRNet on packed shards (1 process or under torchrun)."),
    "eval": ("hrnet_fast.commands.evaluate", "evaluate", "Acc@1 / Acc@5 of a checkpoint on a shard split."),
    "predict": ("hrnet_fast.commands.predict", "predict", "Top-k classes for image files."),
    "bench": ("hrnet_fast.commands.bench", "bench", "Measure loader or train-step throughput."),
    "models": ("hrnet_fast.commands.models", "models", "List the model zoo: params and GFLOPs."),
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hrnet-fast")
def cli() -> None:
    """hrnet-fast: high-throughput HRNet training on ImageNet shards (NPU / CUDA / CPU)."""


def main() -> None:
    log.configure()
    cli(prog_name="hrnet-fast")


if __name__ == "__main__":
    main()
