"""The CSV contract: schema, dtypes, appending, reading back, unwritable paths."""

import math

import pandas as pd
import pytest

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.results.rows import append_rows, check_writable, read_results, to_frame, write_metadata
from edgeprof.results.schema import COLUMNS

REQUIRED = ("act, block, width, depth, imgsz, batch, params, macs, threads, runtime, runtime_settings, "
            "runtime_version, exporter, opset, median_ms, mean_ms, std_ms, min_ms, p90_ms, p99_ms, n, "
            "ratio_to_baseline, fused, act_ops, session_ms, first_run_ms")


def test_schema_has_every_required_column():
    for col in REQUIRED.split(", "):
        assert col in COLUMNS


def _row(**kw):
    base = {"act": "relu", "block": "conv", "width": 16, "median_ms": 1.25, "n": 30, "fused": True,
            "noisy": False, "status": "ok", "model": "m.onnx"}
    return {**base, **kw}


def test_to_frame_orders_columns_and_keeps_missing_as_na():
    df = to_frame([_row(), _row(act="mish", fused=False, ratio_to_baseline=2.1)])
    assert list(df.columns) == list(COLUMNS)
    assert df["fused"].tolist() == [True, False]
    assert pd.isna(df["ratio_to_baseline"].iloc[0]) and df["ratio_to_baseline"].iloc[1] == 2.1


def test_append_writes_header_once_and_round_trips(tmp_path):
    path = tmp_path / "r.csv"
    append_rows(path, [_row()])
    append_rows(path, [_row(act="mish", fused=False, median_ms=2.5123456789)])
    text = path.read_text().splitlines()
    assert text[0].startswith("precision,act,block,width") and sum(line.startswith("precision,") for line in text) == 1
    df = read_results(path)
    assert df["act"].tolist() == ["relu", "mish"]
    assert df["median_ms"].iloc[1] == 2.5123456789  # full precision: nothing rounded away
    assert df["fused"].tolist() == [True, False]
    plain = pd.read_csv(path)  # what another tool sees
    assert plain["fused"].dtype == bool and plain["width"].dtype.kind == "i"


def test_read_results_rejects_other_csvs(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not an edgeprof results CSV"):
        read_results(other)
    with pytest.raises(InputError, match="not found"):
        read_results(tmp_path / "missing.csv")


def test_unwritable_paths_fail_early(tmp_path):
    with pytest.raises(InputError, match="cannot write results"):
        check_writable(tmp_path)  # a folder
    with pytest.raises(InputError, match="cannot write results"):
        check_writable("/proc/edgeprof/results.csv")
    assert check_writable(tmp_path / "new" / "r.csv").parent.is_dir()


def test_disk_errors_are_one_line_failures(tmp_path):
    with pytest.raises(RuntimeFailure, match="cannot write results to /dev/full"):
        append_rows("/dev/full", [_row()])


def test_metadata_json_beside_csv(tmp_path):
    path = write_metadata(tmp_path / "r.csv", {"run_id": "x"})
    assert path.name == "r.json" and '"schema_version": 1' in path.read_text()


def test_nan_is_not_invented():
    df = to_frame([_row(median_ms=math.nan)])
    assert pd.isna(df["median_ms"].iloc[0])


def test_readme_documents_every_column():
    from pathlib import Path

    from edgeprof.results.schema import markdown_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [c for c in COLUMNS if f"| `{c}` |" not in readme]
    assert not missing, f"README's CSV column table lacks {missing}"
    assert markdown_table() in readme, "README's column table is stale: python -m edgeprof.results.schema"
