"""The CLI layer: option groups, one-line usage errors, checks before torch, and the library calls behind them."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import conv_act_model, one_line_error
from typer.testing import CliRunner

from edgeprof import __version__, api
from edgeprof.cli import app
from edgeprof.cli.options import BlockFlags, Command, SessionFlags, with_groups
from edgeprof.errors import InputError

runner = CliRunner()
FAST = ["--max-time", "0.3", "--min-samples", "10", "--sessions", "2", "--quiet"]
BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"
COMMANDS = [["sweep"], ["profile"], ["bundle"], ["acts"], ["machine"], ["swap"], ["report"], ["check"],
            ["baseline", "save"], []]


def _without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, timeout=120)


def test_version_prints_the_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"edgeprof {__version__}"


@pytest.mark.parametrize("args, needle", [
    (["sweep", "--threads", "0"], "--threads"),
    (["sweep", "--format", "xml"], "'xml' is not one of"),
    (["profile", "x.onnx", "--opt-level", "most"], "--opt-level"),
    (["sweep", "--no-such-option"], "--no-such-option"),
    (["nosuchcommand"], "nosuchcommand"),
    (["sweep", "--per-op=yes"], "--per-op"),
])
def test_usage_errors_are_one_line_exit_2(args, needle):
    line = one_line_error(runner.invoke(app, args))
    assert needle in line and "╭" not in line and "--help" in line


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "edgeprof")
def test_flags_do_not_advertise_a_bool_value(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output


def test_sweep_help_is_grouped_in_panels():
    out = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"}).output
    for panel in ("Blocks and sizes", "Export", "Runtime", "Measurement", "Output"):
        assert f"─ {panel} ─" in out, panel
    runtime = out.index("─ Runtime ─")
    assert runtime < out.index("--threads ", runtime) < out.index("╰", runtime)  # --threads is in the Runtime panel


def test_acts_needs_no_torch():
    proc = _without_torch("from edgeprof.cli import app\napp(['acts', '--format', 'json'])")
    assert proc.returncode == 0, proc.stderr
    names = [row["name"] for row in json.loads(proc.stdout)]
    assert {"relu", "silu", "mish", "hardswish"} <= set(names)


@pytest.mark.parametrize("args, needle", [
    (["--blocks", "foo"], "valid blocks"),
    (["--blocks", "c2"], "did you mean 'c2f'"),
    (["--acts", "relu,mihs"], "did you mean 'mish'"),
    (["--baseline", "rleu"], "did you mean 'relu'"),
    (["--scale", "q"], "--scale"),
    (["--scaling", "widht"], "did you mean 'width'"),
    (["--quantize", "int4"], "--quantize"),
    (["--exporter", "dynamic"], "did you mean 'dynamo'"),
    (["--acts", "nosuchpkg.mod:Act"], "nosuchpkg"),
    (["--model", "yolo-n", "--widths", "16"], "--widths does not apply to --model"),
    (["--calib", "samples.npy"], "--calib needs --quantize int8"),
    (["--shape", "images=1x3x64x64"], "--shape applies only with --onnx"),
])
def test_bad_names_fail_before_torch_is_imported(args, needle, tmp_path):
    csv = tmp_path / "r.csv"
    proc = _without_torch(f"from edgeprof.cli import app\napp(['sweep', *{args!r}, '--csv', {str(csv)!r}, '-q'])")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("edgeprof: error:") and needle in lines[0], proc.stderr
    assert not csv.exists()


def test_gate_build_options_are_checked_before_torch(tmp_path):
    proc = _without_torch("from edgeprof.cli import app\n"
                          f"app(['baseline', 'save', '--blocks', 'foo', '-o', {str(tmp_path / 'b')!r}, '-q'])")
    assert proc.returncode == 2 and "valid blocks" in proc.stderr and "Traceback" not in proc.stderr


def test_calib_file_must_be_numpy(tmp_path):
    csv = tmp_path / "samples.csv"
    csv.write_text("a,b\n1,2\n")
    line = one_line_error(runner.invoke(app, ["sweep", "--quantize", "int8", "--calib", str(csv), "-q"]))
    assert ".npy" in line and ".npz" in line and "pickle" not in line
    fake = tmp_path / "fake.npy"
    fake.write_text("not numpy at all\n")
    line = one_line_error(runner.invoke(app, ["sweep", "--quantize", "int8", "--calib", str(fake), "-q"]))
    assert "not a numpy .npy/.npz file" in line and "pickle" not in line
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((4, 3, 8, 8), np.float32))
    assert api.check_calib(good) == good
    with pytest.raises(InputError, match="--calib needs --quantize int8"):
        api.make_plan(quantize="int8-dynamic", calib=str(good))


def test_dynamic_shape_hint_names_the_dim(tmp_path):
    model = conv_act_model(tmp_path / "dyn.onnx", "relu", dynamic_batch=True)
    line = one_line_error(runner.invoke(app, ["profile", str(model), "--csv", str(tmp_path / "r.csv"), *FAST]))
    assert "--shape images=1x8x16x16 or --shape N=1" in line and "N=N" not in line


def test_shape_for_an_input_the_model_lacks_is_an_error(tmp_path):
    model = conv_act_model(tmp_path / "dyn.onnx", "relu", dynamic_batch=True)
    line = one_line_error(runner.invoke(app, ["profile", str(model), "--shape", "input=1x8x16x16",
                                              "--csv", str(tmp_path / "r.csv"), *FAST]))
    assert "'input'" in line and "images ['N', 8, 16, 16]" in line
    assert not (tmp_path / "r.csv").exists()


def test_threads_above_the_cores_warn_on_one_line(tmp_path):
    from edgeprof.measure.host import usable_cores

    many = usable_cores() + 7
    assert api.threads_warning(1) is None
    result = runner.invoke(app, ["profile", str(tmp_path / "missing.onnx"), "--threads", str(many), *FAST])
    assert result.exit_code == 2
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"--threads {many}" in warnings[0] and len(warnings[0]) > 80


def test_machine_formats_print_only_machine_output(tiny_models, tmp_path, monkeypatch):
    results = tmp_path / "res"
    monkeypatch.setenv("EDGEPROF_RESULTS_DIR", str(results))
    args = ["profile", str(tiny_models["relu"]), str(tiny_models["mish"]), "--per-op", *FAST]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # the whole of stdout is JSON
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert "where the time goes" in result.stderr  # the per-op table went to stderr
    written = sorted(results.glob("profile-*.csv"))
    assert [p.name for p in written if not p.name.endswith("-ops.csv")], "--results-dir (env) not used"
    result = runner.invoke(app, [*args, "--format", "csv"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith(result.stdout.split(",")[0]) and "┃" not in result.stdout
    assert len(result.stdout.strip().splitlines()) == 3  # header and two rows, nothing else


def test_each_library_warning_once(caplog):
    from edgeprof.cli.common import OncePerMessage, log_each_message_once

    root = logging.getLogger()
    log_each_message_once()
    log_each_message_once()
    try:
        assert sum(isinstance(f, OncePerMessage) for f in root.filters) == 1
        with caplog.at_level(logging.WARNING):
            for _ in range(16):
                logging.warning("Please consider to run pre-processing before quantization.")
        assert len([r for r in caplog.records if "pre-processing" in r.getMessage()]) == 1
    finally:
        for f in [f for f in root.filters if isinstance(f, OncePerMessage)]:
            root.removeFilter(f)


def test_model_defaults_live_in_the_library():
    plan = api.make_plan(model="yolo-n", acts="relu,silu")
    assert (plan.blocks, plan.widths, plan.imgsz) == (("yolo-n",), (3,), api.MODEL_IMGSZ)
    assert api.make_plan(model="yolo-s", imgsz="640").imgsz == (640,)
    assert api.make_plan(widths=[8, 16], acts=("relu",)).widths == (8, 16)
    with pytest.raises(InputError, match="--blocks does not apply to --model"):
        api.make_plan(model="yolo-n", blocks="conv")
    with pytest.raises(TypeError, match="unknown option 'colour'"):
        api.make_plan(colour="red")


def test_models_dir_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(api.MODELS_DIR_ENV, raising=False)
    from platformdirs import user_cache_path

    assert api.default_models_dir() == user_cache_path("edgeprof") / "models"
    monkeypatch.setenv(api.MODELS_DIR_ENV, str(tmp_path))
    assert api.default_models_dir() == tmp_path


def test_profile_chooses_between_a_bundle_and_files(tmp_path):
    with pytest.raises(InputError, match="not an edgeprof bundle"):
        api.profile([tmp_path])
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match="--shape does not apply to a bundle"):
        api.profile([bundle], shapes={"images": (1, 3, 8, 8)})


def test_gate_takes_files_or_build_options_not_both(tmp_path):
    from edgeprof.gate.models import BuildOptions, choose_models

    model = conv_act_model(tmp_path / "m.onnx", "relu")
    with pytest.raises(InputError, match="not both"):
        choose_models([model], BuildOptions(acts="relu"), tmp_path)
    assert choose_models(None, BuildOptions(), tmp_path, default=None) is None
    assert [m.name for m in choose_models([model], BuildOptions(), tmp_path)] == ["m"]


def test_groups_know_which_options_were_given():
    seen = {}

    @with_groups
    def command(blocks: BlockFlags, session: SessionFlags, name: str = "x") -> None:
        seen.update(blocks=blocks, session=session, name=name)

    probe = typer.Typer()
    probe.command(cls=Command)(command)
    result = runner.invoke(probe, ["--widths", "8,16", "--no-arena", "--name", "y"])
    assert result.exit_code == 0, result.output
    assert seen["blocks"].given == {"widths"} and seen["blocks"].widths == "8,16"
    assert seen["blocks"].given_values() == {"widths": "8,16"}
    assert seen["session"].settings().arena is False and seen["session"].given == {"arena"}
    assert seen["name"] == "y"


def test_python_users_get_what_the_cli_prints(tiny_models, tmp_path):
    from edgeprof.measure import MeasureOptions

    df, csv = api.profile([tiny_models["relu"], tiny_models["mish"]], csv_path=tmp_path / "r.csv",
                          options=MeasureOptions(max_time=0.3, min_samples=10, sessions=3))
    summary = api.per_op_table(csv, df["run_id"])
    assert summary is not None and len(summary) == 2 and "act share" in summary.columns
    assert api.per_op_table(csv, ["another-run"]) is None
    table = api.acts_table()
    assert list(table.columns[:3]) == ["name", "aliases", "params"] and Path(csv).exists()
