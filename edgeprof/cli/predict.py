"""`edgeprof predict`: a model's latency from kernel measurements (`predict MODEL.onnx`), and the kernel data and
predictors it needs (`predict collect`)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, err_console, out_console, progress_bar
from edgeprof.cli.options import Command, Format, Group, Threads
from edgeprof.errors import InputError

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)


def parse_budget(text: str) -> float:
    """``30m``, ``90s``, ``1.5h`` or plain seconds -> seconds."""
    match = _BUDGET.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"--budget must be a positive time such as 30m, 90s or 1h, got {text!r}")
    unit = (match.group(2) or "s").lower()
    return float(match.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]


class DefaultToModel(Group):
    """`edgeprof predict MODEL.onnx ...` runs the `model` command; `edgeprof predict collect ...` the collection."""

    def parse_args(self, ctx, args):
        positional = next((a for a in args if not a.startswith("-")), None)
        if args and positional is not None and positional not in self.commands and "--help" not in args[:1] \
                and "-h" not in args[:1]:
            args = ["model", *args]
        return super().parse_args(ctx, args)


predict_app = typer.Typer(
    name="predict", cls=DefaultToModel, no_args_is_help=True, add_completion=False,
    help="Predict a model's latency on this host from kernel measurements (nn-Meter's method).\n\n"
    "edgeprof predict MODEL.onnx [--acts relu,silu,mish] [--measure] [--format json]\n\n"
    "edgeprof predict collect [--budget 30m]   (first, once per host and runtime version)",
)


@predict_app.command("collect", cls=Command)
@boundary
def collect_cmd(
    budget: Annotated[str, typer.Option("--budget", help="Time to spend measuring and fitting, e.g. 30m, 90s "
                                        "(counted across resumed runs of one dataset; no batch begins that would "
                                        "end past it).")] = "30m",
    acts: Annotated[str | None, typer.Option("--acts", "-a", show_default=False, help="Activations to collect "
                                             "kernels of, comma-separated (default: every one of `edgeprof acts`).")]
    = None,
    runtime: Annotated[str, typer.Option("--runtime", help="Runtime whose kernels to measure (onnxruntime: its "
                                         "optimised graph and profiler are read).")] = "onnxruntime",
    threads: Threads = 1,
    dataset: Annotated[Path | None, typer.Option("--dataset", show_default=False, help="Dataset CSV to write or "
                                                 "continue (default: this host's, in the user cache folder).")] = None,
    predictor: Annotated[Path | None, typer.Option("--predictor", show_default=False, help="Where to save the "
                                                   "fitted predictor (default: beside the dataset).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampling.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Measure the kernels YOLO-style networks are made of on this host, then fit and save the predictors.

    Samples convs (every activation and none), C2f, SPPF, upsample+concat, head branches and activations alone at
    configurations spread over channels, sizes, kernels and strides, then more where the predictors miss most.
    Interrupted, it continues where it stopped when run again with the same dataset.

    Examples:

      edgeprof predict collect --budget 30m

      edgeprof predict collect --budget 5m --acts relu,silu --dataset kernels.csv
    """
    from edgeprof.predict.collect import CollectOptions, collect, predictor_default
    from edgeprof.predict.store import default_dataset, default_predictor
    from edgeprof.runtime.onnxruntime.session import SessionSettings

    if runtime != "onnxruntime":
        raise InputError(f"edgeprof predict reads onnxruntime's optimised graph and profiler; --runtime {runtime} is "
                         "not supported (valid: onnxruntime)")
    settings = SessionSettings(threads=threads)
    chosen = {"acts": tuple(a.strip() for a in acts.split(",") if a.strip())} if acts is not None else {}
    options = CollectOptions(budget_s=parse_budget(budget), seed=seed, **chosen)
    path = dataset or default_dataset(settings)
    out = predictor or (predictor_default(path) if dataset else default_predictor(settings))
    with progress_bar(not quiet) as progress:
        result = collect(path, settings, options, on_progress=lambda m: progress(m, 0.0), predictor_path=out)
    console = out_console()
    console.print(f"dataset {result.dataset}: {result.samples} samples ({result.measured} measured now, "
                  f"{result.failed} failed), {result.spent_s / 60:.1f} min of the budget spent measuring, "
                  f"{result.fit_s:.0f} s fitting", highlight=False)
    from edgeprof.predict.fit import load_predictor

    if Path(out).exists():
        pred, _ = load_predictor(out)
        console.print(f"predictor {out}: {pred.rows} kernels of {len(pred.models)} kinds; one run costs "
                      f"{pred.overhead_ms * 1000:.2f} us beyond its kernels", highlight=False)
        _kinds_table(pred, console)
    for act, rule in sorted(result.fusion.items()):
        console.print(f"fusion of {act} after a conv: {rule['graph']}; {rule['timing']}", highlight=False)


def _kinds_table(pred, console) -> None:
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("kind", "kernels", "median |error| out of bag", "90% interval"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for row in pred.summary():
        lo, hi = row["interval_pct"]
        table.add_row(row["kind"], str(row["rows"]), f"{row['oob_median_abs_pct']:.1f}%", f"{lo:+.0f}% / {hi:+.0f}%")
    console.print(table)


@predict_app.command("model", cls=Command, hidden=True)
@boundary
def model_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model to predict.")],
    acts: Annotated[str | None, typer.Option("--acts", "-a", show_default=False, help="Also predict the model with "
                                             "each of these activations swapped in, comma-separated.")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="Also measure the model (and each --acts variant), "
                                          "interleaved, and print the error of each prediction.")] = False,
    predictor: Annotated[Path | None, typer.Option("--predictor", show_default=False, help="Predictor file (default: "
                                                   "this host's, from `edgeprof predict collect`).")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads of the predictor to use (the default "
                                         "predictor is kept per thread count).")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Use a predictor of another host or runtime version.")] = False,
    kernels: Annotated[bool, typer.Option("--kernels", help="List every kernel, not only the breakdown by kind.")]
    = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, json, csv or md.")] = Format.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Predict MODEL's latency on this host: the interval, and where the time goes by kernel.

    Examples:

      edgeprof predict yolo.onnx

      edgeprof predict yolo.onnx --acts relu,silu,mish --measure

      edgeprof predict yolo.onnx --format json
    """
    from edgeprof.predict.model import predict_acts
    from edgeprof.predict.store import default_predictor
    from edgeprof.runtime.onnxruntime.session import SessionSettings

    act_list = [a.strip() for a in (acts or "").split(",") if a.strip()]
    if acts is not None and not act_list:
        raise InputError("--acts needs at least one activation (see edgeprof acts)")
    path = predictor or default_predictor(SessionSettings(threads=threads))
    with progress_bar(measure and not quiet and fmt == Format.table) as progress:
        results = predict_acts(model, act_list, predictor=path, force=force, measure=measure, on_progress=progress)
    for p in results:
        for w in p.warnings:
            err_console().print(f"edgeprof: warning: {w}", highlight=False, soft_wrap=True)
    if fmt == Format.json:
        data = [p.to_dict() for p in results]
        typer.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2, default=str))
        return
    if fmt in (Format.csv, Format.md):
        import pandas as pd

        rows = [{"act": p.act or "(as is)", "predicted_ms": p.predicted_ms, "low_ms": p.low_ms, "high_ms": p.high_ms,
                 "measured_ms": p.measured_ms, "error_pct": p.error_pct} for p in results]
        frame = pd.DataFrame(rows)
        if fmt == Format.csv:
            import sys

            frame.to_csv(sys.stdout, index=False)
        else:
            from edgeprof.cli.common import markdown

            typer.echo(markdown(frame))
        return
    _render(results, kernels)


def _ms(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _render(results, all_kernels: bool) -> None:
    from rich.table import Table

    console = out_console()
    first = results[0]
    table = Table(title=f"edgeprof predict: {first.model}", header_style="bold")
    for col in ("act", "predicted ms", "90% interval", "measured ms", "error"):
        table.add_column(col, justify="left" if col == "act" else "right")
    for p in results:
        err = p.error_pct
        table.add_row(p.act or "(as is)", _ms(p.predicted_ms), f"{_ms(p.low_ms)}–{_ms(p.high_ms)}", _ms(p.measured_ms),
                      "—" if err is None else f"{err:+.1f}%")
    console.print(table)
    for p in results:
        title = f"where the time goes ({p.act or 'as is'}): {len(p.kernels)} kernels, {p.activations_fused} of " \
            f"{p.convs} convs ran their activation inside; one run adds {p.overhead_ms * 1000:.0f} us"
        breakdown = Table(title=title, header_style="bold")
        for col in ("kernel", "count", "ms", "share", "fused into it", "predicted by"):
            breakdown.add_column(col, justify="left" if col in ("kernel", "fused into it", "predicted by") else "right")
        for g in p.by_kind():
            breakdown.add_row(g["kind"], str(g["count"]), _ms(g["ms"]), f"{g['share'] * 100:.1f}%", g["fused"] or "—",
                              g["predicted_by"] or "")
        console.print(breakdown)
        if all_kernels:
            each = Table(header_style="bold")
            for col in ("node", "kind", "ms", "low", "high", "fused"):
                each.add_column(col, justify="left" if col in ("node", "kind", "fused") else "right")
            for k in p.kernels:
                each.add_row(k.name, k.kind, _ms(k.ms), _ms(k.low_ms), _ms(k.high_ms), k.fused or "")
            console.print(each)
