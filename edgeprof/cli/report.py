"""`edgeprof report`: turn result CSVs into a report folder (tables, scaling verdicts, plots; Markdown or HTML)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary


class ReportFormat(StrEnum):
    md = "md"
    html = "html"


@boundary
def report(
    results: Annotated[list[Path], typer.Argument(help="Result CSVs written by edgeprof sweep or profile "
                                                  "(their -ops.csv and .json beside them are read too).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the report into (created if needed).")]
    = Path("results/report"),
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="md: report.md beside the PNGs; html: one "
                                              "self-contained report.html with the figures embedded.")]
    = ReportFormat.md,
    baseline: Annotated[str, typer.Option("--baseline", help="Activation to take ratios against for rows that "
                                          "carry no ratio of their own.")] = "relu",
) -> None:
    """Write a report: comparison tables per host, latency fits and grows/shrinks/flat verdicts, plots.

    Rows from different hosts, runtimes or runtime versions are never combined. Needs matplotlib:
    pip install 'edgeprof\\[plots]'.

    Examples:

      edgeprof report results/*.csv

      edgeprof report laptop.csv phone.csv --format html -o compare
    """
    from edgeprof.report.summary import write_report

    path = write_report(results, out, fmt=fmt.value, baseline=baseline)
    typer.echo(str(path))  # the figures and merged CSVs are beside it
