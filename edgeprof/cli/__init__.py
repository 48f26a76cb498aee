"""The `edgeprof` command: thin Typer commands over the library (parse, call, render, exit)."""

from __future__ import annotations

import typer

from edgeprof.cli.acts import acts
from edgeprof.cli.bundle import bundle
from edgeprof.cli.gate import baseline_app, check
from edgeprof.cli.machine import machine
from edgeprof.cli.profile import profile
from edgeprof.cli.report import report
from edgeprof.cli.swap import swap
from edgeprof.cli.sweep import sweep

app = typer.Typer(
    name="edgeprof",
    help="Measure what activation functions cost inside YOLO-style conv blocks on your onnxruntime and CPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("sweep")(sweep)
app.command("profile")(profile)
app.command("acts")(acts)
app.command("bundle")(bundle)
app.command("machine")(machine)
app.add_typer(baseline_app, name="baseline")
app.command("check")(check)
app.command("swap")(swap)
app.command("report")(report)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from edgeprof import __version__

        typer.echo(f"edgeprof {__version__}")
        raise typer.Exit()


def main() -> None:
    app()
