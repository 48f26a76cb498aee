"""What every command shares: the error boundary, progress, warnings and rendering."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import typer

from edgeprof.cli.options import Format
from edgeprof.errors import EdgeprofError


def err_console():
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, soft_wrap=True)  # CI logs: whole lines


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
def progress_bar(enabled: bool = True, console=None):
    """A progress callback ``(message, fraction)`` drawn on stderr (``console``: the one to draw on; what else is
    printed on it while the bar runs goes above the bar) with elapsed time and ETA."""
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
        console=console or err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1.0)
        last = [0.0]

        def update(message: str, fraction: float) -> None:
            last[0] = max(last[0], min(1.0, fraction))  # never runs backwards
            bar.update(task, description=message[:70], completed=last[0])

        yield update


def render(df, fmt: Format, title: str | None = None, results: bool = True, columns=None, wide: bool = False) -> None:
    """Print a frame: a rich table, or CSV/JSON/Markdown on stdout for other tools. ``results``: result rows,
    shown in the table and Markdown through the report's display columns (``columns``: the names --columns
    gave; ``wide``: every column), with the cost per size and the fusion footnote under them; otherwise the
    frame as it is."""
    from edgeprof.report.table import (
        cross_runtime_frame,
        render_frame,
        render_rich,
        runtimes_in,
        table_width,
        to_markdown,
    )

    if results and fmt in (Format.table, Format.md) and len(runtimes_in(df)) > 1:
        # several runtimes: one row per block size and activation, one column per runtime (detail: the CSV)
        if fmt == Format.table:
            console = out_console()
            render_frame(cross_runtime_frame(df, width=table_width(console)), console, title=(title or "") + " — ratio "
                         "to the baseline per runtime [95% CI]; F = fused into the conv in the runtime's graph")
        else:
            typer.echo(markdown(cross_runtime_frame(df)))
        return
    if fmt == Format.table:
        if results:
            render_rich(df, out_console(), title=title, columns=columns, wide=wide)
        else:
            render_frame(df, out_console(), title=title)
    elif fmt == Format.csv:
        df.to_csv(sys.stdout, index=False)
    elif fmt == Format.json:
        typer.echo(json.dumps(json.loads(df.to_json(orient="records")), indent=2))
    else:
        typer.echo(to_markdown(df, columns=columns, wide=wide) if results else markdown(df))


def markdown(df) -> str:
    """A frame as a Markdown table, cells as they are."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_per_op(csv_path: Path, df, fmt: Format) -> None:
    """The per-op summary of this run: after the table, or in Markdown; for csv and json, whose stdout is for
    machines, on stderr (the figures are in the per-op CSV beside the results)."""
    from edgeprof.api import per_op_table
    from edgeprof.report.table import PER_OP_KEEP, PER_OP_LIST, render_frame
    from edgeprof.results.rows import per_op_path

    summary = per_op_table(csv_path, df["run_id"]) if "run_id" in df else None
    if summary is None:
        typer.echo("no per-op data (the runtime's profiler gave none)", err=True)
        return
    title = "where the time goes (the runtime's profiler, kernel time)"
    if fmt == Format.md:
        typer.echo(f"\n{title}\n\n{markdown(summary)}")
    elif fmt == Format.table:
        render_frame(summary, out_console(), title=title, keep=PER_OP_KEEP, trim=PER_OP_LIST)
    else:
        render_frame(summary, err_console(), title=f"{title}; saved in {per_op_path(csv_path)}", keep=PER_OP_KEEP,
                     trim=PER_OP_LIST)


def note(message: str) -> None:
    """One informational line on stderr, never wrapped."""
    err_console().print(f"note: {message}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """One warning line on stderr, never wrapped."""
    err_console().print(f"warning: {message}", highlight=False, soft_wrap=True)


def warn_threads(threads: int) -> None:
    from edgeprof.api import threads_warning

    message = threads_warning(threads)
    if message:
        warn(message)


class OncePerMessage(logging.Filter):
    """Let each distinct log message through once (onnxruntime's quantizer repeats its advice per model)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def log_each_message_once() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, OncePerMessage) for f in root.filters):
        root.addFilter(OncePerMessage())


def run_and_render(command: str, output, settings, run: Callable, live: bool = False) -> None:
    """``run(progress, on_rows)`` under a progress bar, then its rows (also when they could not be saved, before
    saying so), the per-op summary with --per-op, and where the results went. ``live``: rows are shown as each
    job (a size) finishes, above the progress bar on stderr (``on_rows``; None otherwise, and under --quiet or a
    format other than the table): stdout gets the final table only."""
    from edgeprof.pipeline import ResultsNotSaved
    from edgeprof.report.table import render_rich

    columns = output.table_columns()  # an unknown column name fails here, before anything is measured
    console = err_console()

    def show_rows(rows) -> None:
        render_rich(rows, console, columns=columns, explain=False)

    on_rows = show_rows if live and not output.quiet and output.fmt == Format.table else None
    try:
        with progress_bar(not output.quiet, console) as progress:
            df, csv_path = run(progress, on_rows)
    except ResultsNotSaved as exc:  # show what was measured, then say where it could not be written
        render(exc.frame, output.fmt, title=f"edgeprof {command}: measured but not saved", columns=columns,
               wide=output.wide)
        raise
    render(df, output.fmt, title=f"edgeprof {command}: {settings_label(settings)}", columns=columns,
           wide=output.wide)
    if output.per_op:
        render_per_op(csv_path, df, output.fmt)
    quantizer_note(output.quiet)
    wrote(csv_path)


def settings_label(settings) -> str:
    """The title's words for the settings of a run: one runtime's label, or the runtimes and thread counts."""
    if not isinstance(settings, list | tuple):
        return settings.label()
    if len(settings) == 1:
        return settings[0].label()
    runtimes = list(dict.fromkeys(s.runtime for s in settings))
    threads = list(dict.fromkeys(str(s.threads) for s in settings))
    return f"{', '.join(runtimes)}, {'/'.join(threads)} thread(s)"


def quantizer_note(quiet: bool) -> None:
    """onnxruntime's quantizer logs its advice once per model it quantizes; edgeprof.quantize collects it instead.
    Say it in one line (none under --quiet)."""
    quantize = sys.modules.get("edgeprof.quantize")
    if quantize is None:  # nothing was quantized in this process
        return
    messages = quantize.quantizer_messages()
    if messages and not quiet:
        first = next(iter(messages)).split(". ")[0].rstrip(". ")
        count = sum(messages.values())
        note(f"onnxruntime's quantizer warned {count} time(s), {len(messages)} distinct message(s), e.g. "
             f"\"{first[:160]}\" (shown once here; --quiet: not at all)")


def wrote(csv_path: Path) -> None:
    typer.echo(f"results: {csv_path} (metadata: {csv_path.with_suffix('.json')})", err=True)
