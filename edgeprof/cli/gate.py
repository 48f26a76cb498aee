"""`edgeprof baseline save` and `edgeprof check`: the CI latency regression gate (parse, call edgeprof.gate, render)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, err_console, out_console, progress_bar
from edgeprof.cli.options import (
    BlockFlags,
    Command,
    ExportFlags,
    Group,
    ModelsDir,
    OptionGroup,
    Quiet,
    RuntimeOpt,
    SessionFlags,
    Shape,
    with_groups,
)
from edgeprof.errors import InconclusiveError, InputError, RegressionError, RuntimeFailure


class Mode(StrEnum):
    relative = "relative"
    stored = "stored"


class Clock(StrEnum):
    auto = "auto"
    cpu = "cpu"
    wall = "wall"


Models = Annotated[list[Path] | None, typer.Argument(
    help="ONNX files, named by their file stem; or nothing, and sweep options to build blocks.", show_default=False)]
ClockOpt = Annotated[Clock, typer.Option("--clock", help="What a block's time is: cpu (on-CPU time of the worker, "
                                         "waiting for a core left out), wall, or auto (cpu when single-threaded).")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed of the random measuring order (default: fresh; "
                                          "the one used is recorded).")]


@dataclass(frozen=True)
class GateFlags(OptionGroup):
    """The options `baseline save` and `check` share beyond the blocks to build."""

    models_dir: ModelsDir = None
    shape: Shape = None
    clock: ClockOpt = Clock.auto
    seed: Seed = None
    quiet: Quiet = False


def _models(models, build: BlockFlags, export: ExportFlags, models_dir, progress, for_check: bool = False):
    from edgeprof.api import default_models_dir
    from edgeprof.gate.models import DEFAULT_BUILD, BuildOptions, choose_models

    return choose_models(models, BuildOptions(**build.given_values()), models_dir or default_models_dir(),
                         **export.values(), default=None if for_check else DEFAULT_BUILD, on_progress=progress)


def _shapes(shape: list[str] | None) -> dict | None:
    from edgeprof.runtime.onnxruntime.session import parse_shapes

    return parse_shapes(shape) if shape else None


@boundary
@with_groups
def save(
    build: BlockFlags,
    export: ExportFlags,
    session: SessionFlags,
    models: Models = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Baseline folder to write (new, empty, or an earlier "
                                      "baseline, which is replaced).", show_default=False)] = ...,
    gate: GateFlags = None,
) -> None:
    """Save a baseline: the models themselves (by content hash), their raw timings, this host and its A/A noise.

    With neither files nor sweep options, the default sweep's blocks are built (5 activations x widths
    16,32,64 at 160 px). Names: ONNX file stem, or the block's slug.

    Examples:

      edgeprof baseline save -o baseline/

      edgeprof baseline save --acts relu,silu --widths 32,64 -o baseline/

      edgeprof baseline save models/detector.onnx models/backbone.onnx -o baseline/
    """
    from edgeprof.cli.common import warn_threads
    from edgeprof.gate.check import save_baseline

    settings = session.settings()
    warn_threads(settings.threads)
    shapes = _shapes(gate.shape)
    with progress_bar(not gate.quiet) as progress:
        chosen = _models(models, build, export, gate.models_dir, progress)
        path, manifest = save_baseline(chosen, out, settings, _options(seed=gate.seed, clock=gate.clock.value),
                                       shapes=shapes, on_progress=progress)
    console = err_console()
    for m in manifest["models"]:
        aa = m["aa"]
        if aa.get("verdict") != "same":
            console.print(f"warning: {m['name']} against a copy of itself: {aa.get('verdict')} "
                          f"({(aa.get('ratio') or 1) * 100 - 100:+.1f}%); this host looks noisy", highlight=False)
    typer.echo(f"baseline: {len(manifest['models'])} model(s) saved to {path.parent} "
               f"(host {manifest['host_fingerprint']}, {manifest['gate']['wall_s']:.0f} s)")


@boundary
@with_groups
def check(
    build: BlockFlags,
    export: ExportFlags,
    models: Models = None,
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline folder from `edgeprof baseline save`.",
                                           show_default=False)] = ...,
    mode: Annotated[Mode, typer.Option("--mode", help="relative: re-measure the baseline's models next to the "
                                       "current ones; stored: compare ratios to a reference with the stored ones "
                                       "(same host only).")] = Mode.relative,
    threshold: Annotated[float, typer.Option("--threshold", help="Slowdown that fails the gate when significant "
                                             "(0.10 = 10%).")] = 0.10,
    alpha: Annotated[float, typer.Option("--alpha", help="One-sided significance level, split over the models "
                                         "(Bonferroni).")] = 0.01,
    allow_inconclusive: Annotated[bool, typer.Option("--allow-inconclusive", help="Exit 0 instead of 4 when a "
                                                     "model is inconclusive (a slowdown over the threshold could "
                                                     "neither be shown nor ruled out); it is still reported.")
                                  ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    max_time: Annotated[float, typer.Option("--max-time", help="Wall-time budget of the measuring, in seconds: no "
                                            "session is started that would end after it; models still undecided "
                                            "are then inconclusive.")] = 120.0,
    runtime: RuntimeOpt = None,
    gate: GateFlags = None,
) -> None:
    """Check current models against a baseline: exit 0 if every model was judged and none regressed, 1 if one
    regressed, 2 on a usage error, 3 if a model failed while measured, 4 if one is inconclusive, 130 on Ctrl-C.

    Models are matched to the baseline's by name (ONNX file stem, or block slug). With neither files
    nor sweep options, the baseline's blocks are rebuilt with the code installed now. Settings
    (runtime, threads, opt level, spinning, arena) are the baseline's; stored mode also uses its clock. A
    Markdown summary is appended to $GITHUB_STEP_SUMMARY when it is set. Details: docs/gate.md.

    Examples:

      edgeprof check --baseline baseline/

      edgeprof check --baseline baseline/ --acts relu,silu --widths 32,64

      edgeprof check --baseline baseline/ models/detector.onnx --threshold 0.05 --json
    """
    from edgeprof.gate import baseline as bl
    from edgeprof.gate.check import CheckInterrupted, current_from_baseline, run_check
    from edgeprof.gate.decide import DecisionRule
    from edgeprof.gate.render import markdown, to_json

    rule = DecisionRule(threshold=threshold, alpha=alpha)
    options = _options(max_time=max_time, seed=gate.seed, clock=gate.clock.value)
    shapes = _shapes(gate.shape)
    base = bl.load(baseline)
    if runtime is not None and runtime != base.settings().runtime:
        raise InputError(f"baseline {baseline} was measured with runtime {base.settings().runtime}, not {runtime}; "
                         f"check with the baseline's runtime, or save a baseline with --runtime {runtime}")
    with progress_bar(not gate.quiet) as progress:
        current = _models(models, build, export, gate.models_dir, progress, for_check=True)
        if current is None:
            from edgeprof.api import default_models_dir

            current = current_from_baseline(base, gate.models_dir or default_models_dir(), on_progress=progress)
        try:
            report = run_check(base, current, mode=mode.value, rule=rule, options=options, shapes=shapes,
                               on_progress=progress)
        except CheckInterrupted as interrupted:  # what was decided so far, then exit 130
            report = interrupted.report
    code, message = report.outcome(allow_inconclusive)
    if json_out:
        typer.echo(to_json(report, allow_inconclusive))
    else:
        _print_table(report)
    console = err_console()
    for w in report.warnings:
        console.print(f"warning: {w}", highlight=False, soft_wrap=True)
    _append_summary(markdown(report, allow_inconclusive))
    finish_check(code, message, json_out)


def finish_check(code: int, message: str, json_out: bool) -> None:
    """A check's exit: 130 (Ctrl-C, what was decided printed), 1 regressed, 3 failed, 4 inconclusive, each with
    its one line; 0 prints the line on stdout (unless JSON went there)."""
    if code == 130:
        typer.echo(f"edgeprof: {message}", err=True)
        raise typer.Exit(130)
    if code:
        raise {1: RegressionError, 3: RuntimeFailure, 4: InconclusiveError}[code](message)
    if not json_out:
        typer.echo(message)


def _print_table(report) -> None:
    from rich.table import Table

    from edgeprof.gate.render import COLUMNS, caption, rows

    table = Table(title="edgeprof check", caption=caption(report), caption_justify="left")
    styles = {"regressed": "bold red", "inconclusive": "yellow", "failed": "bold red", "faster": "green",
              "same": "green", "slower-within-threshold": "cyan"}
    for col in COLUMNS:
        table.add_column(col, justify="right" if col.endswith(("ms", "change")) else "left")
    for row in rows(report):
        style = styles.get(row[5], "")
        table.add_row(*row[:5], f"[{style}]{row[5]}[/]" if style else row[5], row[6])
    out_console().print(table)


def _append_summary(text: str) -> None:
    """Append to $GITHUB_STEP_SUMMARY when it is set; a failure to write is a warning, not an error."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    except OSError as exc:
        typer.echo(f"warning: cannot append to GITHUB_STEP_SUMMARY {path}: {exc.strerror or exc}", err=True)


# What the gate's measuring options are; tests may replace it with quicker ones.
DEFAULT_OPTIONS = None


def _options(**overrides):
    from edgeprof.gate.measure import GateOptions

    base = DEFAULT_OPTIONS if DEFAULT_OPTIONS is not None else GateOptions()
    return GateOptions(**{**base.as_dict(), **overrides})


baseline_app = typer.Typer(cls=Group, help="Save a baseline that `edgeprof check` compares with.",
                           no_args_is_help=True)
baseline_app.command("save", cls=Command)(save)
