"""The `edgeprof` command: thin Typer commands over the library (parse, call, render, exit)."""

from __future__ import annotations

import sys

import typer

from edgeprof.cli.acts import acts
from edgeprof.cli.bundle import bundle
from edgeprof.cli.common import log_each_message_once
from edgeprof.cli.gate import baseline_app, check
from edgeprof.cli.lab import lab_app
from edgeprof.cli.machine import machine
from edgeprof.cli.options import Command, Group
from edgeprof.cli.predict import predict_app
from edgeprof.cli.profile import profile
from edgeprof.cli.report import report
from edgeprof.cli.swap import swap
from edgeprof.cli.sweep import sweep


class OneLineErrors(Group):
    """Usage errors (a bad value, an unknown option) as one line on stderr, exit 2, like edgeprof's own."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer.exceptions import Abort

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:  # `edgeprof` alone: the help
            typer.echo(exc.format_message())
            sys.exit(exc.exit_code)
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path if ctx is not None else 'edgeprof'} --help)"
            message = " ".join(exc.format_message().split())
            typer.echo(f"edgeprof: error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except Abort:
            typer.echo("edgeprof: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _print_version(value: bool) -> None:
    if value:
        from edgeprof import __version__

        typer.echo(f"edgeprof {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="edgeprof",
    cls=OneLineErrors,
    help="Measure what activation functions cost inside YOLO-style conv blocks on your onnxruntime and CPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("sweep", cls=Command)(sweep)
app.command("profile", cls=Command)(profile)
app.command("acts", cls=Command)(acts)
app.command("bundle", cls=Command)(bundle)
app.command("machine", cls=Command)(machine)
app.add_typer(baseline_app, name="baseline")
app.command("check", cls=Command)(check)
app.command("swap", cls=Command)(swap)
app.command("report", cls=Command)(report)
app.add_typer(lab_app, name="lab")
app.add_typer(predict_app, name="predict")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    log_each_message_once()


def main() -> None:
    app()
