"""`edgeprof profile`: measure existing ONNX files with the same settings as a sweep (no torch needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import (
    Arena,
    CsvPath,
    Format,
    FormatOpt,
    Isolate,
    MaxTime,
    MinSamples,
    OptLevel,
    OptLevelOpt,
    Quiet,
    RelCI,
    Spinning,
    Threads,
    boundary,
    progress_bar,
    render,
    render_per_op,
    settings_and_options,
    wrote,
)


@boundary
def profile(
    models: Annotated[list[Path], typer.Argument(help="ONNX files to measure, interleaved; or one bundle folder "
                                                 "made by `edgeprof bundle`.")],
    shape: Annotated[list[str] | None, typer.Option("--shape", help="Shape for dynamic inputs: "
                                                   "images=1x3x640x640, 1x3x640x640 (only input) or N=1.")] = None,
    threads: Threads = 1,
    opt_level: OptLevelOpt = OptLevel.all,
    spinning: Spinning = False,
    arena: Arena = True,
    rel_ci: RelCI = 0.02,
    max_time: MaxTime = 3.0,
    min_samples: MinSamples = 20,
    isolate: Isolate = True,
    per_op: Annotated[bool, typer.Option("--per-op", help="Also print where the time goes inside each model "
                                         "(always saved as <csv>-ops.csv).")] = False,
    csv: CsvPath = None,
    fmt: FormatOpt = Format.table,
    quiet: Quiet = False,
) -> None:
    """Profile ONNX files you already have (ratios are to the first file), or a bundle folder.

    Examples:

      edgeprof profile bundle/ --csv results/device.csv

      edgeprof profile models/yolo.onnx --shape images=1x3x640x640

      edgeprof profile a.onnx b.onnx --threads 2 --csv results/ab.csv
    """
    from edgeprof.bundle import is_bundle, run_bundle
    from edgeprof.errors import InputError
    from edgeprof.pipeline import profile_models
    from edgeprof.runtime.onnxruntime.session import parse_shapes

    settings, options = settings_and_options(threads, opt_level, spinning, arena, rel_ci, max_time, min_samples,
                                             isolate)
    shapes = parse_shapes(shape)
    with progress_bar(not quiet) as progress:
        if len(models) == 1 and is_bundle(models[0]):
            df, csv_path = run_bundle(models[0], settings, options, csv_path=csv, on_progress=progress)
        elif any(m.is_dir() for m in models):
            bad = next(m for m in models if m.is_dir())
            raise InputError(f"{bad} is a folder but not an edgeprof bundle (no manifest.json); give ONNX files or "
                             "one bundle folder")
        else:
            df, csv_path = profile_models(models, settings, options, shapes=shapes, csv_path=csv,
                                          on_progress=progress)
    render(df, fmt, title=f"edgeprof profile: {threads} thread(s), opt level {opt_level.value}")
    if per_op:
        render_per_op(csv_path, df, fmt)
    wrote(csv_path)
