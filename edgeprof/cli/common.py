"""What every command shares: the error boundary, option types, progress and rendering."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from edgeprof.errors import EdgeprofError


class OptLevel(StrEnum):
    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    md = "md"


def err_console():
    from rich.console import Console

    return Console(stderr=True)


def out_console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)  # files and pipes get whole lines


def boundary(fn: Callable) -> Callable:
    """Turn EdgeprofError into one line on stderr and its exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeprofError as exc:
            typer.echo(f"edgeprof: error: {exc}" if exc.exit_code != 130 else f"edgeprof: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("edgeprof: interrupted", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: say so in one line; EDGEPROF_DEBUG=1 shows the traceback
            import os

            if os.environ.get("EDGEPROF_DEBUG"):
                raise
            text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            typer.echo(f"edgeprof: internal error: {type(exc).__name__}: {text} "
                       "(a bug in edgeprof; rerun with EDGEPROF_DEBUG=1 for the traceback)", err=True)
            raise typer.Exit(3) from None

    return wrapper


@contextmanager
def progress_bar(enabled: bool = True):
    """A progress callback ``(message, fraction)`` drawn on stderr with elapsed time and ETA."""
    if not enabled:
        yield lambda message, fraction: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1.0)
        last = [0.0]

        def update(message: str, fraction: float) -> None:
            last[0] = max(last[0], min(1.0, fraction))  # never runs backwards
            bar.update(task, description=message[:70], completed=last[0])

        yield update


def render(df, fmt: Format, title: str | None = None) -> None:
    """Print results: a rich table, or CSV/JSON/Markdown on stdout for other tools."""
    from edgeprof.report.table import render_rich, to_markdown

    if fmt == Format.table:
        render_rich(df, out_console(), title=title)
    elif fmt == Format.csv:
        df.to_csv(sys.stdout, index=False)
    elif fmt == Format.json:
        typer.echo(json.dumps(json.loads(df.to_json(orient="records")), indent=2))
    else:
        typer.echo(to_markdown(df))


Threads = Annotated[int, typer.Option("--threads", min=1, help="onnxruntime intra-op threads (1 = one big core).")]
OptLevelOpt = Annotated[OptLevel, typer.Option("--opt-level", help="onnxruntime graph optimisation level.")]
Spinning = Annotated[bool, typer.Option("--spinning/--no-spinning",
                                        help="Let idle onnxruntime threads spin (session.intra_op.allow_spinning).")]
Arena = Annotated[bool, typer.Option("--arena/--no-arena", help="onnxruntime's CPU memory arena.")]
RelCI = Annotated[float, typer.Option("--rel-ci", help="Stop when every median's 95% CI is within ± this fraction.")]
MaxTime = Annotated[float, typer.Option("--max-time", help="Time budget in seconds of measuring per model.")]
MinSamples = Annotated[int, typer.Option("--min-samples", help="At least this many timed samples per model.")]
Isolate = Annotated[bool, typer.Option("--isolate/--no-isolate",
                                       help="Each model in its own fresh worker process (needed for memory figures).")]
CsvPath = Annotated[Path | None, typer.Option("--csv", help="CSV to write (default: a new file in results/).")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="How to print the results on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def settings_and_options(threads, opt_level, spinning, arena, rel_ci, max_time, min_samples, isolate, seed=0):
    from edgeprof.measure import MeasureOptions, SessionSettings

    settings = SessionSettings(threads=threads, opt_level=opt_level.value, spinning=spinning, arena=arena)
    options = MeasureOptions(rel_ci=rel_ci, max_time=max_time, min_samples=min_samples, isolate=isolate, seed=seed)
    return settings, options


def render_per_op(csv_path: Path, df, fmt: Format = Format.table) -> None:
    """The per-op summary of this run, read back from the per-op CSV the run wrote. Under a machine format
    (csv, json) it goes to stderr, so stdout holds only the machine output."""
    import pandas as pd

    from edgeprof.report.table import per_op_summary, render_frame
    from edgeprof.results.rows import per_op_path

    path = per_op_path(csv_path)
    if not path.exists():
        typer.echo("no per-op data (onnxruntime's profiler gave none)", err=True)
        return
    ops = pd.read_csv(path, keep_default_na=False, na_values=[""])
    ops = ops[ops["run_id"].isin(set(df["run_id"]))]
    console = err_console() if fmt in (Format.csv, Format.json) else out_console()
    render_frame(per_op_summary(ops), console, title="where the time goes (onnxruntime profiler, kernel time)")


def wrote(csv_path: Path) -> None:
    typer.echo(f"results: {csv_path} (metadata: {csv_path.with_suffix('.json')})", err=True)
