"""--per-op as a user runs it: the summary table under the results, and machine formats left machine-readable."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.results.rows import per_op_path
from edgeprof.results.schema import COLUMNS

runner = CliRunner()
FAST = ["--max-time", "0.3", "--min-samples", "10", "--sessions", "2", "--quiet"]
TITLE = "where the time goes"


def _summary_rows(text: str) -> dict[str, str]:
    """The per-op table's body lines, by activation (the third cell)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 6 and cells[2] in ("relu", "mish"):
            rows[cells[2]] = line
    return rows


def test_sweep_per_op_table(tmp_path):
    csv = tmp_path / "r.csv"
    result = runner.invoke(app, ["sweep", "--acts", "relu,mish", "--widths", "8", "--imgsz", "16", "--per-op",
                                 "--csv", str(csv), "--models-dir", str(tmp_path / "models"), "--no-roofline", *FAST])
    assert result.exit_code == 0, result.output
    assert TITLE in result.stdout and result.stdout.index("× relu") < result.stdout.index(TITLE)
    rows = _summary_rows(result.stdout[result.stdout.index(TITLE):])
    assert set(rows) == {"relu", "mish"}
    assert "│ 0%" in rows["relu"]  # relu fuses into the Conv: none of the kernel time is the activation's
    assert "Softplus" in rows["mish"] and "│ 0%" not in rows["mish"]
    ops = pd.read_csv(per_op_path(csv))
    assert set(ops["act"]) == {"relu", "mish"}
    shares = ops.groupby("act")["share"].sum()
    assert shares.to_numpy() == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_per_op_with_a_machine_format_keeps_stdout_machine_readable(tiny_models, tmp_path, fmt):
    csv = tmp_path / "r.csv"
    result = runner.invoke(app, ["profile", str(tiny_models["relu"]), str(tiny_models["mish"]), "--per-op",
                                 "--format", fmt, "--csv", str(csv), *FAST])
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        out = pd.read_csv(io.StringIO(result.stdout))
        assert list(out.columns) == list(COLUMNS)
    else:
        out = pd.DataFrame(json.loads(result.stdout))
    assert len(out) == 2 and (out["status"] == "ok").all()
    assert TITLE not in result.stdout and TITLE in result.stderr  # the summary still shown, on stderr
    ops = pd.read_csv(per_op_path(csv))
    mish = ops[ops["model"].str.contains("tiny_mish")]
    assert {"Softplus", "Tanh"} <= set(mish.loc[mish["is_act"], "op_type"])
    assert not ops.loc[ops["model"].str.contains("tiny_relu"), "is_act"].any()
