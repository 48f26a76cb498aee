"""`edgeprof acts`: the activation registry: names, aliases, formulas, families, ONNX lowering."""

from __future__ import annotations

import typer

from edgeprof.cli.common import Format, FormatOpt, boundary, out_console


@boundary
def acts(fmt: FormatOpt = Format.table) -> None:
    """List every registered activation.

    Example: edgeprof acts --format md
    """
    import pandas as pd

    from edgeprof.spec.acts import ACTS

    df = pd.DataFrame([
        {
            "name": a.name,
            "aliases": ", ".join(a.aliases),
            "params": ", ".join(f"{p}={d:g}" for p, d in zip(a.params, a.defaults, strict=False)),
            "family": a.family,
            "formula": a.formula,
            "onnx ops (torchscript, opset 17)": a.onnx_ops or "—",
        }
        for a in ACTS
    ])
    if fmt == Format.table:
        from rich.table import Table

        table = Table(title="edgeprof activations", header_style="bold")
        for col in df.columns:
            table.add_column(col, overflow="fold")
        for row in df.itertuples(index=False):
            table.add_row(*map(str, row))
        out_console().print(table)
    elif fmt == Format.csv:
        typer.echo(df.to_csv(index=False), nl=False)
    elif fmt == Format.json:
        typer.echo(df.to_json(orient="records", indent=2))
    else:
        typer.echo("| " + " | ".join(df.columns) + " |\n| " + " | ".join("---" for _ in df.columns) + " |")
        for row in df.itertuples(index=False):
            typer.echo("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
