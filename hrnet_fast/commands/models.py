"""`hrnet-fast models`: the zoo with parameters and compute, measured from the models themselves."""
from __future__ import annotations

import json

import click

_PAPER_UNIT = 2**30  # the HRNet paper's "GFLOPs" are multiply-adds in units of 2^30


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (exact counts) as the last line.")
@click.option("--image-size", type=click.IntRange(min=32), default=224, show_default=True,
              help="Side of the square input the compute is counted for.")
def models(as_json: bool, image_size: int) -> None:
    """List every HRNet config: params (M), GMACs and GFLOPs for one image (1000 classes).

    GFLOPs = 2 x GMACs, as torch's FlopCounterMode counts; the paper's "GFLOPs" column is
    multiply-adds / 2^30 and is shown as GFLOPs(paper).
    """
    from hrnet_fast.models import MODEL_NAMES, measure  # torch only when the command runs

    rows = []
    for name in MODEL_NAMES:
        params, macs = measure(name, image_size)
        rows.append({"model": name, "params": params, "macs": macs, "flops": 2 * macs})
    if as_json:
        click.echo(json.dumps({"image_size": image_size, "models": rows}))
        return
    header = f"{'model':<20}{'params (M)':>12}{'GMACs':>9}{'GFLOPs':>9}{'GFLOPs(paper)':>15}"
    click.echo(header)
    for row in rows:
        click.echo(
            f"{row['model']:<20}{row['params'] / 1e6:>12.1f}{row['macs'] / 1e9:>9.2f}"
            f"{row['flops'] / 1e9:>9.2f}{row['macs'] / _PAPER_UNIT:>15.2f}"
        )
    click.echo(f"Compute for one {image_size}x{image_size} image. GMACs: multiply-adds / 1e9; "
               "GFLOPs: 2 x GMACs (torch FlopCounterMode).")
    click.echo("GFLOPs(paper): multiply-adds / 2^30, the unit of the HRNet paper's GFLOPs column "
               "(HRNet-W18-C: 3.99 at 224).")
