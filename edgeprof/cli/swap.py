"""`edgeprof swap`: replace the activations of an existing ONNX model with another one (no torch needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, out_console
from edgeprof.errors import InputError

_EXAMPLES_SHOWN = 3


@boundary
def swap(
    model: Annotated[Path, typer.Argument(help="ONNX model whose activations to replace.")],
    to: Annotated[str, typer.Option("--to", help="Activation to put in, as in a sweep: hardswish, relu, "
                                    "leakyrelu:0.2, identity... (edgeprof acts lists them).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the new model.")] = None,
    include_all: Annotated[bool, typer.Option("--all", help="Also swap activations whose input is not a conv "
                                              "output, and standalone Sigmoid/HardSigmoid (gates, head scores).")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Allow -o to be the input model itself (overwrite it).")]
    = False,
) -> None:
    """Swap the activation inside an ONNX model and report what was found and changed, by pattern.

    Finds activations of conv outputs: single ops (Relu, Clip, HardSwish, Mish...) and x*Sigmoid(x), GELU, etc.

    A head's final Sigmoid and squeeze-excitation gates stay unless --all.

    Examples:

      edgeprof swap yolo.onnx --to hardswish -o yolo-hardswish.onnx

      edgeprof swap yolo.onnx --to leakyrelu:0.1 --dry-run
    """
    try:
        import onnx  # noqa: F401  (the build extra; a device install may not have it)
    except ImportError:
        raise InputError("edgeprof swap needs the onnx package: pip install onnx") from None
    from edgeprof.swap import swap_model

    if out is None and not dry_run:
        raise InputError("no output file: add -o OUT.onnx (or --dry-run to only report)")
    if out is not None and not dry_run and not force and out.exists() and out.resolve() == model.resolve():
        raise InputError(f"-o {out} is the input model: give another file, or add --force to overwrite it")
    report = swap_model(model, to, out=None if dry_run else out, include_all=include_all)
    _render(report, dry_run)


def _render(report, dry_run: bool) -> None:
    from rich.table import Table

    console = out_console()
    table = Table(title=f"edgeprof swap: {report.source} -> {report.target} (opset {report.opset})",
                  header_style="bold")
    for col, justify in (("pattern", "left"), ("ops", "left"), ("act", "left"), ("found", "right"),
                         ("swapped", "right"), ("skipped", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    for row in report.by_pattern():
        table.add_row(row.pattern, row.ops, row.act, str(row.found), str(row.swapped), str(row.skipped))
    console.print(table)
    for reason, found in report.skip_reasons():
        examples = "; ".join(f.nodes[-1] + (f" ({f.detail})" if f.detail else "") for f in found[:_EXAMPLES_SHOWN])
        more = f" (and {len(found) - _EXAMPLES_SHOWN} more)" if len(found) > _EXAMPLES_SHOWN else ""
        console.print(f"skipped {len(found)}: {reason}: {examples}{more}", highlight=False, soft_wrap=True)
    n = len(report.swapped)
    what = f"{n} activation{'s' if n != 1 else ''}"
    nodes = f"nodes {report.nodes_before} -> {report.nodes_after}"
    if dry_run:
        console.print(f"dry run: {what} would be swapped to {report.target} ({nodes}); nothing written",
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"wrote {report.out}: {what} swapped to {report.target} ({nodes}); {report.checks}",
                      highlight=False, soft_wrap=True)
