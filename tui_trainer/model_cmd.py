"""``cifar-tui model``: a network's summary under a parameter budget, without torch.

    cifar-tui model                                   # the report's network
    cifar-tui model --blocks 2,2,2,2 --channels 64,128,256,512 --se blocks --json

Each stage's blocks, output shape and parameters; in total the trainable parameters, the
forward FLOPs per 32x32 image and the activation memory per training image, and the budget
line (``--max-params``, default 5,000,000). Imports no torch: it answers at once.
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from engine.shape import DEFAULT_MAX_PARAMS, NetShape, ShapeError

from .cliargs import one_line
from .formatting import fmt_mib

# The shape options, shared by `model` and `train` (one definition each).
BLOCKS_HELP = "Residual blocks per stage, e.g. 4,3,2,3 (1 to 6 stages)."
CHANNELS_HELP = "Channels per stage, e.g. 64,128,128,256."
STRIDES_HELP = "Stride per stage (1 or 2), e.g. 1,2,1,2."
STEM_HELP = "Channels of the stem convolution."
SE_HELP = "Squeeze-and-Excitation: stem (one block after the stem, the report's), blocks (on each residual block), none."
SE_REDUCTION_HELP = "Reduction ratio of the SE bottleneck."
MAX_PARAMS_HELP = "The trainable-parameter budget."


def shape_from_options(blocks: Optional[str], channels: Optional[str], strides: Optional[str],
                       stem_channels: Optional[int], se: Optional[str], se_reduction: Optional[int],
                       width: Optional[float]) -> NetShape:
    """The shape the options give (the report's network where they are silent); a bad
    option exits 2 with one line."""
    try:
        return NetShape.parse(blocks=blocks, channels=channels, strides=strides, stem_channels=stem_channels,
                              se=se, se_reduction=se_reduction, width=width)
    except ShapeError as e:
        typer.echo(f"error: {one_line(e)}", err=True)
        raise typer.Exit(2) from None


def model(
    blocks: Optional[str] = typer.Option(None, "--blocks", help=BLOCKS_HELP),
    channels: Optional[str] = typer.Option(None, "--channels", help=CHANNELS_HELP),
    strides: Optional[str] = typer.Option(None, "--strides", help=STRIDES_HELP),
    stem_channels: Optional[int] = typer.Option(None, "--stem-channels", help=STEM_HELP),
    se: Optional[str] = typer.Option(None, "--se", help=SE_HELP),
    se_reduction: Optional[int] = typer.Option(None, "--se-reduction", help=SE_REDUCTION_HELP),
    width: Optional[float] = typer.Option(None, "--width", "-w", help="Multiplier on every channel count."),
    max_params: int = typer.Option(DEFAULT_MAX_PARAMS, "--max-params", help=MAX_PARAMS_HELP, min=1),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise a network: stages, parameters, FLOPs, activation memory, budget (exit 1: over it)."""
    shape = shape_from_options(blocks, channels, strides, stem_channels, se, se_reduction, width)
    summary = shape.summary(max_params)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in summary.items() if k != "layers"} | {"layers": summary["layers"]}))
        raise typer.Exit(0 if summary["within_budget"] else 1)
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False)
    t = Table(title=f"SEResNet {shape.describe()}", title_justify="left")
    for col, just in (("layer", "left"), ("blocks", "right"), ("output", "right"), ("parameters", "right"),
                      ("MFLOPs", "right"), ("activations", "right")):
        t.add_column(col, justify=just)
    for x in summary["layers"]:
        out = f"{x['channels']}" if x["name"] == "head" else f"{x['channels']}x{x['size']}x{x['size']}"
        t.add_row(x["name"], str(x["blocks"]), out, f"{x['params']:,}", f"{x['flops'] / 1e6:,.1f}",
                  fmt_mib(x["activation_bytes"]))
    con.print(t)
    con.print(f"trainable parameters  {summary['params']:,}")
    con.print(f"forward FLOPs         {summary['flops'] / 1e9:,.3f} G per 32x32 image")
    con.print(f"activation memory     {fmt_mib(summary['activation_bytes'])} per training image (fp32)")
    style = "green" if summary["within_budget"] else "bold red"
    con.print(f"budget                [{style}]{summary['budget']}[/]")
    raise typer.Exit(0 if summary["within_budget"] else 1)
