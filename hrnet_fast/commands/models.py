"""`hrnet-fast models`: the zoo with parameters and compute, measured from the models themselves."""
from __future__ import annotations

import json
from typing import TypedDict

import click

from hrnet_fast import log as logs

log = logs.get(__name__)

_PAPER_UNIT = 2**30  # the HRNet paper's "GFLOPs" are multiply-adds in units of 2^30


class _Counts(TypedDict):
    model: str
    params: int
    macs: int
    flops: int


class _Row(_Counts, total=False):
    """One model's line; the aligned entries only with --align-channels."""

    aligned_params: int
    aligned_macs: int
    branch_channels: list[int]
    aligned_branch_channels: list[int]


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (exact counts) as the last line.")
@click.option("--image-size", type=click.IntRange(min=32), default=224, show_default=True,
              help="Side of the square input the compute is counted for.")
@click.option("--align-channels", type=click.Choice(["8", "16"]),
              help="Also show each model as it runs with channels aligned to this multiple.")
def models(as_json: bool, image_size: int, align_channels: str | None) -> None:
    """List every HRNet config: params (M), GMACs and GFLOPs for one image (1000 classes).

    GFLOPs = 2 x GMACs, as torch's FlopCounterMode counts; the paper's "GFLOPs" column is
    multiply-adds / 2^30 and is shown as GFLOPs(paper). With --align-channels, the branch widths
    and the size and compute of the zero-padded model that train, eval and bench run by default
    on accelerators (8 on CUDA, 16 on NPU); checkpoints keep the official sizes.
    """
    from hrnet_fast.models import MODEL_NAMES, aligned_config, get_config, measure  # torch only when run

    align = int(align_channels) if align_channels else None
    rows: list[_Row] = []
    for name in MODEL_NAMES:
        params, macs = measure(name, image_size)
        row: _Row = {"model": name, "params": params, "macs": macs, "flops": 2 * macs}
        if align:
            row["aligned_params"], row["aligned_macs"] = measure(name, image_size, align)
            row["branch_channels"] = list(get_config(name).branch_channels)
            row["aligned_branch_channels"] = list(aligned_config(get_config(name), align).branch_channels)
        rows.append(row)
    if as_json:
        log.info(json.dumps({"image_size": image_size, "align_channels": align, "models": rows}))
        return
    header = f"{'model':<20}{'params (M)':>12}{'GMACs':>9}{'GFLOPs':>9}{'GFLOPs(paper)':>15}"
    if align:
        header += f"  {'branch widths':<18}{f'aligned to {align}':<20}{'params (M)':>11}{'GMACs':>9}"
    log.info(header)
    for row in rows:
        line = (f"{row['model']:<20}{row['params'] / 1e6:>12.1f}{row['macs'] / 1e9:>9.2f}"
                f"{row['flops'] / 1e9:>9.2f}{row['macs'] / _PAPER_UNIT:>15.2f}")
        if align:
            widths = "/".join(map(str, row["branch_channels"]))
            aligned = "/".join(map(str, row["aligned_branch_channels"]))
            line += (f"  {widths:<18}{aligned:<20}{row['aligned_params'] / 1e6:>11.1f}"
                     f"{row['aligned_macs'] / 1e9:>9.2f}")
        log.info(line)
    log.info(f"Compute for one {image_size}x{image_size} image. GMACs: multiply-adds / 1e9; "
             "GFLOPs: 2 x GMACs (torch FlopCounterMode).")
    log.info("GFLOPs(paper): multiply-adds / 2^30, the unit of the HRNet paper's GFLOPs column "
             "(HRNet-W18-C: 3.99 at 224).")
