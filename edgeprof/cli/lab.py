"""`edgeprof lab`: one sweep on many devices through Ray (devices, join, sweep, check); parse, call edgeprof.lab,
render."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, err_console, note, out_console, progress_bar, warn
from edgeprof.cli.gate import GateFlags, Mode
from edgeprof.cli.options import (
    BlockFlags,
    Command,
    ExportFlags,
    Format,
    Group,
    MeasureFlags,
    PlanFlags,
    Quiet,
    SessionFlags,
    with_groups,
)

_LAB = "Lab"
Address = Annotated[str | None, typer.Option(
    "--address", envvar="RAY_ADDRESS", rich_help_panel=_LAB, show_default=False,
    help="The lab's Ray head, HOST:PORT (default $RAY_ADDRESS; neither: an embedded Ray instance whose one device "
    "is this machine).")]
Devices = Annotated[str, typer.Option("--devices", "-d", rich_help_panel=_LAB,
                                      help="Devices to measure on: all, or names from `edgeprof lab devices`, "
                                      "comma-separated.")]
Out = Annotated[Path | None, typer.Option(
    "--out", "-o", rich_help_panel=_LAB, show_default=False,
    help="Folder of the results: <device>.csv per device (with its -ops.csv and .json); default results/lab-<time>.")]
Resume = Annotated[bool, typer.Option("--resume", rich_help_panel=_LAB,
                                      help="Continue the run in --out: only what a device's CSV lacks is measured.")]
Timeout = Annotated[float, typer.Option("--timeout", rich_help_panel=_LAB,
                                        help="Seconds a size group may run on a device before its task is cancelled "
                                        "and the device reported as failed.")]


@contextmanager
def _lab(address: str | None):
    from edgeprof.lab.cluster import connect, disconnect

    started = connect(address, on_warning=warn)
    try:
        yield started
    finally:
        disconnect(started)


@boundary
def devices(address: Address = None, fmt: Annotated[Format, typer.Option(
        "--format", "-f", help="How to print the devices.")] = Format.table) -> None:
    """List the lab's devices: name, address, host, fingerprint, CPU, cores, runtimes with versions, busy.

    A busy device (measuring now) is listed without probing it, so nothing runs beside its measurement.

    Examples:

      edgeprof lab devices --address 10.0.0.5:6379

      RAY_ADDRESS=10.0.0.5:6379 edgeprof lab devices --format json
    """
    import pandas as pd

    from edgeprof.cli.common import render
    from edgeprof.lab.devices import list_devices

    with _lab(address):
        found = list_devices()
    frame = pd.DataFrame([d.row() for d in found])
    if not len(frame):
        note("no device in the lab yet: on each device, `edgeprof lab join HEAD --name NAME`")
        return
    render(frame, fmt, title="edgeprof lab devices", results=False)


@boundary
def join(
    head: Annotated[str, typer.Argument(help="The head's address, HOST or HOST:PORT (port 6379 by default).")],
    name: Annotated[str, typer.Option("--name", "-n", help="This device's name in the lab (e.g. jetson-1).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the `ray start` command instead of running "
                                          "it.")] = False,
) -> None:
    """Make this machine a device of the lab: `ray start` as a worker node with the resource edgeprof-device:NAME,
    no CPUs for other Ray work, usage statistics off. Leave with `ray stop`.

    Examples:

      edgeprof lab join 10.0.0.5 --name jetson-1

      edgeprof lab join 10.0.0.5:6379 --name pi5 --dry-run
    """
    import shlex

    from edgeprof.errors import RuntimeFailure
    from edgeprof.lab.cluster import import_ray, join_command, public_head_warning

    import_ray()  # one line naming the extra when Ray is missing
    command = join_command(head, name)
    message = public_head_warning(head.rsplit(":", 1)[0] if head.count(":") == 1 else head)
    if message:
        warn(message)
    typer.echo(" ".join(shlex.quote(c) for c in command))
    if dry_run:
        return
    code = subprocess.call(command, env=_no_usage_stats())
    if code:
        raise RuntimeFailure(f"`ray start` exited with {code} (its output is above)")


def _no_usage_stats() -> dict:
    import os

    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


@boundary
@with_groups
def sweep(
    plan: PlanFlags,
    export: ExportFlags,
    session: SessionFlags,
    measuring: MeasureFlags,
    devices: Devices = "all",
    address: Address = None,
    out: Out = None,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", rich_help_panel=_LAB, show_default=False, help="Measure this bundle (from `edgeprof bundle`) "
        "instead of building one from the sweep options.")] = None,
    resume: Resume = False,
    shard: Annotated[bool, typer.Option(
        "--shard", rich_help_panel=_LAB, help="Spread the size groups over the devices (all of one class), each "
        "measured on one device; the first group is measured on every device as the shared reference that shows a "
        "slow outlier.")] = False,
    outlier: Annotated[float, typer.Option(
        "--outlier", rich_help_panel=_LAB, help="With --shard: a device whose reference is slower than the devices' "
        "median by more than this fraction is reported as an outlier.")] = 0.10,
    timeout: Timeout = 1800.0,
    any_version: Annotated[bool, typer.Option(
        "--any-version", rich_help_panel=_LAB, help="Measure on a device whose runtime version differs from the one "
        "the bundle was made with (refused by default); its rows record the version it ran.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="How to print the cross-device table.")] = Format.table,
    quiet: Quiet = False,
) -> None:
    """Measure one sweep on many devices at once: build and export here, ship the bundle through Ray, measure on
    each device (one measurement per device at a time), one CSV per device, then a cross-device table of each
    activation's ratio to the baseline.

    Examples:

      edgeprof lab sweep --acts relu,silu,mish --widths 16,32   (embedded: this machine is the one device)

      edgeprof lab sweep --address 10.0.0.5:6379 --devices jetson-1,pi5 --out results/lab1

      edgeprof lab sweep --address 10.0.0.5:6379 --out results/lab1 --resume   (after a device failed)

      edgeprof lab sweep --shard --widths 16,24,32,48,64,96 --devices all --out results/big
    """
    from edgeprof.api import make_plan, resolve_runtimes
    from edgeprof.errors import InputError, RuntimeFailure
    from edgeprof.lab import Session, cross_device_table, lab_sweep, run_lab
    from edgeprof.lab.cluster import import_ray
    from edgeprof.pipeline import new_csv_path

    import_ray()
    if not timeout > 0:
        raise InputError(f"--timeout must be positive (seconds a size group may run on a device), got {timeout:g}")
    if not outlier > 0:
        raise InputError(f"--outlier must be a positive fraction (0.10 = 10% slower than the median), got {outlier:g}")
    if resume and out is None:
        raise InputError("--resume needs --out: the folder of the lab run to continue")
    out = out or new_csv_path(Path("results"), prefix="lab").with_suffix("")
    names = None
    if session.runtimes is not None:
        names, left_out = resolve_runtimes(session.runtimes)
        if left_out:
            note(left_out)
    elif session.runtime is not None:
        names = [session.runtime]
    threads = session.thread_counts()[0]
    lab_session = Session(runtimes=tuple(names or ()), threads=threads, opt_level=session.opt_level.value,
                          spinning=session.spinning, arena=session.arena, cache=measuring.cache.value)
    options = measuring.options()
    sweep_plan = None if bundle is not None else make_plan(**plan.given_values(), **export.given_values())
    building = (plan.given - {"roofline"}) | export.given  # --roofline is how a device measures, not what
    if bundle is not None and building:
        raise InputError("--bundle measures a bundle made before: its sweep options are in it; leave out "
                         f"{', '.join('--' + g.replace('_', '-') for g in sorted(building))}")
    console = err_console()

    def show(device: str, rows) -> None:
        from edgeprof.report.table import render_rich

        render_rich(rows, console, title=f"{device}", explain=False)

    run = {"devices": devices, "session": lab_session, "options": options, "resume": resume, "shard": shard,
           "timeout": timeout, "roofline": plan.roofline, "outlier": outlier, "on_note": note,
           "any_version": any_version,
           "on_rows": show if not quiet and fmt == Format.table else None}
    with _lab(address), progress_bar(not quiet, console) as progress:
        if bundle is not None:
            result = run_lab(bundle, out, on_progress=progress, **run)
        else:
            result = lab_sweep(sweep_plan, out, bundle_runtimes=names, on_progress=progress, **run)
    _render_table(cross_device_table(result.all_rows()), fmt)
    for line in result.outliers:
        warn(f"outlier: {line}")
    for path in result.csv_paths.values():
        typer.echo(f"results: {path}", err=True)
    if result.failed:
        raise RuntimeFailure("device(s) failed: " + "; ".join(f"{n}: {r}" for n, r in result.failed.items())
                             + f"; the others' rows are in {result.out_dir}; --resume re-runs only what is missing")


def _render_table(table, fmt: Format) -> None:
    from edgeprof.cli.common import markdown
    from edgeprof.report.table import render_frame

    title = "ratio to the baseline per device [95% CI]"
    if fmt == Format.table:
        render_frame(table, out_console(), title=title)
    elif fmt == Format.md:
        typer.echo(markdown(table))
    elif fmt == Format.csv:
        import sys

        table.to_csv(sys.stdout, index=False)
    else:
        typer.echo(table.to_json(orient="records", indent=2, force_ascii=False))


@boundary
@with_groups
def check(
    build: BlockFlags,
    export: ExportFlags,
    models: Annotated[list[Path] | None, typer.Argument(
        help="ONNX files, named by their file stem; or nothing, and sweep options to build blocks (here).",
        show_default=False)] = None,
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline folder from `edgeprof baseline save`.",
                                           show_default=False)] = ...,
    mode: Annotated[Mode, typer.Option("--mode", help="relative or stored, as in `edgeprof check`.")] = Mode.relative,
    threshold: Annotated[float, typer.Option("--threshold", help="Slowdown that fails the gate when significant "
                                             "(0.10 = 10%).")] = 0.10,
    alpha: Annotated[float, typer.Option("--alpha", help="One-sided significance level, split over the models.")
                     ] = 0.01,
    allow_inconclusive: Annotated[bool, typer.Option("--allow-inconclusive", help="Exit 0 instead of 4 when a "
                                                     "model is inconclusive on a device.")] = False,
    max_time: Annotated[float, typer.Option("--max-time", help="Wall-time budget of the measuring on each device, "
                                            "in seconds.")] = 120.0,
    devices: Devices = "all",
    address: Address = None,
    timeout: Timeout = 1800.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print every device's report as JSON on stdout.")] = False,
    gate: GateFlags = None,
) -> None:
    """Run the regression gate on every device: exit 1 if any device regressed (naming it), 3 if a device failed
    or could not run it, 4 if inconclusive somewhere, 2 on a usage error, 130 on Ctrl-C.

    The current models are chosen (or built) here and shipped with the baseline to each device, which judges them
    as `edgeprof check` would there. With relative mode (the default) every device re-measures the baseline's
    models next to the current ones, so one baseline serves all devices.

    Examples:

      edgeprof lab check --baseline baseline/ --acts relu,silu --widths 32,64

      edgeprof lab check --baseline baseline/ models/detector.onnx --devices jetson-1,pi5 --json
    """
    import json

    from edgeprof.cli.gate import _models, _options, _print_table, _shapes, finish_check
    from edgeprof.errors import InputError
    from edgeprof.gate import baseline as bl
    from edgeprof.gate.check import current_from_baseline
    from edgeprof.gate.decide import DecisionRule
    from edgeprof.lab.check import check_devices, outcome
    from edgeprof.lab.cluster import import_ray

    import_ray()
    if not timeout > 0:
        raise InputError(f"--timeout must be positive (seconds a check may run on a device), got {timeout:g}")
    base = bl.load(baseline)
    rule = DecisionRule(threshold=threshold, alpha=alpha)
    options = _options(max_time=max_time, seed=gate.seed, clock=gate.clock.value)
    with progress_bar(not gate.quiet) as progress:
        current = _models(models, build, export, gate.models_dir, progress, for_check=True)
        if current is None:
            from edgeprof.api import default_models_dir

            current = current_from_baseline(base, gate.models_dir or default_models_dir(), on_progress=progress)
        with _lab(address):
            reports, reasons = check_devices(baseline, current, devices, mode.value, rule, options,
                                             _shapes(gate.shape), timeout, on_progress=progress, on_note=note)
    if json_out:
        typer.echo(json.dumps({name: r.as_dict(allow_inconclusive) for name, r in reports.items()} |
                              {name: {"error": why} for name, why in reasons.items()}, indent=2, default=str))
    else:
        for name, report in reports.items():
            typer.echo(f"device {name}: {report.outcome(allow_inconclusive)[1]}")
            _print_table(report)
    code, message = outcome(reports, reasons, allow_inconclusive)
    finish_check(code, message, json_out)


lab_app = typer.Typer(cls=Group, no_args_is_help=True, help="One sweep on many devices at once, through Ray (pip "
                      "install 'edgeprof\\[lab]'): devices, join, sweep, check.")
lab_app.command("devices", cls=Command)(devices)
lab_app.command("join", cls=Command)(join)
lab_app.command("sweep", cls=Command)(sweep)
lab_app.command("check", cls=Command)(check)
